"""Hash commands against a live node through redis-py, in RESP3 and RESP2.

Expected replies, error texts and encodings are those of Redis 7.0.
"""

from __future__ import annotations

import pytest
import redis

WRONGTYPE = "^WRONGTYPE Operation against a key holding the wrong kind of value$"
SYNTAX = "^syntax error$"
NOT_INTEGER = "^value is not an integer or out of range$"
NOT_FLOAT = "^value is not a valid float$"
LLONG_MAX = 2**63 - 1


def raw(r, *args):
    """Run a command and return its parsed reply without redis-py's response callbacks."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        r.connection_pool.release(conn)


def resp3(r) -> bool:
    return r.connection_pool.connection_kwargs.get("protocol") == 3


def encoding(r, key) -> bytes:
    return raw(r, "OBJECT", "ENCODING", key)


# -- HSET, HGET, HMSET, HSETNX, HMGET -------------------------------------------------


def test_hset_hget(r):
    assert r.hset("h", "f1", "v1") == 1
    assert r.hset("h", mapping={"f2": "v2", "f3": "v3"}) == 2
    assert r.hset("h", mapping={"f1": "new", "f4": "v4"}) == 1
    assert r.hget("h", "f1") == b"new"
    assert r.hget("h", "missing") is None
    assert r.hget("nokey", "f") is None
    assert r.hset("h", b"bin\x00", b"\x00\xff") == 1
    assert r.hget("h", b"bin\x00") == b"\x00\xff"
    assert r.hset("h", "", "") == 1
    assert r.hget("h", "") == b""


def test_hset_odd_arguments(r):
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'hset' command$"):
        r.execute_command("HSET", "h", "f", "v", "g")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'hmset' command$"):
        r.execute_command("HMSET", "h", "f", "v", "g")
    assert r.exists("h") == 0


def test_hmset_replies_ok(r):
    assert r.execute_command("HMSET", "h", "a", "1", "b", "2") in (True, b"OK")
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}


def test_hsetnx(r):
    assert r.hsetnx("h", "f", "v") == 1
    assert r.hsetnx("h", "f", "other") == 0
    assert r.hget("h", "f") == b"v"


def test_hmget(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hmget("h", ["a", "zz", "b"]) == [b"1", None, b"2"]
    assert r.hmget("nokey", ["a", "b"]) == [None, None]


def test_insertion_order_of_small_hashes(r):
    r.hset("h", mapping={"c": "3", "a": "1", "b": "2"})
    r.hset("h", "c", "30")  # an overwritten field keeps its place
    assert r.hkeys("h") == [b"c", b"a", b"b"]
    r.hdel("h", "c")
    r.hset("h", "c", "300")  # a re-added one goes last
    assert r.hkeys("h") == [b"a", b"b", b"c"]
    assert r.hvals("h") == [b"1", b"2", b"300"]
    assert list(r.hgetall("h").items()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"300")]


def test_hgetall_shape(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    reply = raw(r, "HGETALL", "h")
    if resp3(r):
        assert reply == {b"a": b"1", b"b": b"2"}
        assert raw(r, "HGETALL", "nokey") == {}
    else:
        assert reply == [b"a", b"1", b"b", b"2"]
        assert raw(r, "HGETALL", "nokey") == []


# -- HDEL, HEXISTS, HLEN, HSTRLEN, HKEYS, HVALS ---------------------------------------


def test_hdel_deletes_empty_key(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hdel("h", "a", "zz", "a") == 1
    assert r.hdel("nokey", "a") == 0
    assert r.hdel("h", "b", "c") == 1
    assert r.exists("h") == 0


def test_hdel_keeps_ttl(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    r.expire("h", 100)
    r.hdel("h", "a")
    r.hset("h", "c", "3")
    assert 0 < r.ttl("h") <= 100


def test_hexists_hlen_hstrlen(r):
    r.hset("h", mapping={"a": "hello", "n": "12345"})
    assert r.hexists("h", "a") is True
    assert r.hexists("h", "zz") is False
    assert r.hexists("nokey", "a") is False
    assert r.hlen("h") == 2
    assert r.hlen("nokey") == 0
    assert r.hstrlen("h", "a") == 5
    assert r.hstrlen("h", "n") == 5
    assert r.hstrlen("h", "zz") == 0
    assert r.hstrlen("nokey", "zz") == 0


def test_hkeys_hvals_missing(r):
    assert r.hkeys("nokey") == []
    assert r.hvals("nokey") == []
    assert r.hgetall("nokey") == {}


def test_wrongtype(r):
    r.set("s", "v")
    for call in (
        lambda: r.hset("s", "f", "v"),
        lambda: r.hsetnx("s", "f", "v"),
        lambda: r.hget("s", "f"),
        lambda: r.hmget("s", ["f"]),
        lambda: r.hdel("s", "f"),
        lambda: r.hexists("s", "f"),
        lambda: r.hlen("s"),
        lambda: r.hstrlen("s", "f"),
        lambda: r.hkeys("s"),
        lambda: r.hvals("s"),
        lambda: r.hgetall("s"),
        lambda: r.hincrby("s", "f", 1),
        lambda: r.hincrbyfloat("s", "f", 1.5),
        lambda: r.hrandfield("s"),
        lambda: r.hrandfield("s", 2, withvalues=True),
        lambda: r.hscan("s", 0),
    ):
        with pytest.raises(redis.ResponseError, match=WRONGTYPE):
            call()
    assert r.get("s") == b"v"
    r.hset("h", "f", "v")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.get("h")
    assert r.type("h") == b"hash"


# -- HINCRBY, HINCRBYFLOAT --------------------------------------------------------------


def test_hincrby(r):
    assert r.hincrby("h", "n", 5) == 5
    assert r.hincrby("h", "n", -7) == -2
    assert r.hget("h", "n") == b"-2"
    r.hset("h", "max", LLONG_MAX)
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.hincrby("h", "max", 1)
    assert r.hincrby("h", "max", -1) == LLONG_MAX - 1
    r.hset("h", "min", -(2**63))
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.hincrby("h", "min", -1)


def test_hincrby_errors(r):
    r.hset("h", mapping={"text": "abc", "float": "1.5", "lz": "01", "sp": " 1"})
    for field in ("text", "float", "lz", "sp"):
        with pytest.raises(redis.ResponseError, match="^hash value is not an integer$"):
            r.hincrby("h", field, 1)
    for bad in ("x", "1.5", "", "9223372036854775808", "+1", " 1"):
        with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
            r.execute_command("HINCRBY", "h", "n", bad)
    # the increment is checked before the key's type, and nothing is created
    r.set("s", "v")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("HINCRBY", "s", "n", "x")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("HINCRBY", "new", "n", "x")
    assert r.exists("new") == 0


def test_hincrbyfloat(r):
    assert r.hincrbyfloat("h", "x", 10.5) == 10.5
    assert r.hincrbyfloat("h", "x", 0.1) == pytest.approx(10.6)
    assert r.hget("h", "x") == b"10.6"
    assert raw(r, "HINCRBYFLOAT", "h", "y", "3.0e3") == b"3000"
    assert raw(r, "HINCRBYFLOAT", "h", "z", "1e100") == (
        b"9999999999999999999669353532207342619498699019828496079271391541752018669482644324418977840117055488"
    )
    r.hset("h", "int", "10")
    assert raw(r, "HINCRBYFLOAT", "h", "int", "-0.5") == b"9.5"


def test_hincrbyfloat_errors(r):
    r.hset("h", mapping={"text": "abc", "sp": " 1"})
    for field in ("text", "sp"):
        with pytest.raises(redis.ResponseError, match="^hash value is not a float$"):
            r.hincrbyfloat("h", field, 1)
    for bad in ("abc", "", "nan", "1 "):
        with pytest.raises(redis.ResponseError, match=NOT_FLOAT):
            r.execute_command("HINCRBYFLOAT", "h", "x", bad)
    for bad in ("inf", "-inf"):
        with pytest.raises(redis.ResponseError, match="^value is NaN or Infinity$"):
            r.execute_command("HINCRBYFLOAT", "h", "x", bad)
    r.hset("h", "huge", "1e4932")
    with pytest.raises(redis.ResponseError, match="^increment would produce NaN or Infinity$"):
        r.execute_command("HINCRBYFLOAT", "h", "huge", "1e4932")
    # the increment is checked before the key's type
    r.set("s", "v")
    with pytest.raises(redis.ResponseError, match="^value is NaN or Infinity$"):
        r.execute_command("HINCRBYFLOAT", "s", "x", "inf")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.execute_command("HINCRBYFLOAT", "s", "x", "1")


# -- encodings --------------------------------------------------------------------------


def test_listpack_to_hashtable_by_length(r):
    r.hset("h", mapping={"keep": "1", "f": "x" * 64})
    assert encoding(r, "h") == b"listpack"
    r.hset("h", "f", "x" * 65)
    assert encoding(r, "h") == b"hashtable"
    r.hdel("h", "f")
    r.hset("h", "f", "short")
    assert encoding(r, "h") == b"hashtable"  # never converts back
    r.hset("long-field", "f" * 65, "v")
    assert encoding(r, "long-field") == b"hashtable"
    r.hincrby("incr", "f" * 65, 1)
    assert encoding(r, "incr") == b"hashtable"
    r.hincrbyfloat("incrf", "f", 1e100)  # the 101-digit result is too long
    assert encoding(r, "incrf") == b"hashtable"


def test_hsetnx_converts_only_when_it_sets(r):
    r.hset("h", "a", "1")
    assert r.hsetnx("h", "a", "x" * 65) == 0
    assert encoding(r, "h") == b"listpack"
    assert r.hsetnx("h", "b", "x" * 65) == 1
    assert encoding(r, "h") == b"hashtable"


def test_listpack_to_hashtable_by_count(r):
    r.hset("h", mapping={f"f{i}": i for i in range(512)})
    assert encoding(r, "h") == b"listpack"
    assert r.hkeys("h") == [f"f{i}".encode() for i in range(512)]
    r.hset("h", "one-more", "v")
    assert encoding(r, "h") == b"hashtable"
    r.hdel("h", "one-more", "f0")
    assert encoding(r, "h") == b"hashtable"
    assert r.hlen("h") == 511


def test_copy_keeps_encoding(r):
    r.hset("h", mapping={f"f{i}": i for i in range(600)})
    r.copy("h", "c")
    assert encoding(r, "c") == b"hashtable"
    assert r.hgetall("c") == r.hgetall("h")
    r.hset("c", "extra", "1")
    assert r.hexists("h", "extra") is False


# -- HRANDFIELD -------------------------------------------------------------------------


def test_hrandfield_single(r):
    assert r.hrandfield("nokey") is None
    r.hset("h", mapping={"a": "1", "b": "2", "c": "3"})
    seen = {r.hrandfield("h") for _ in range(200)}
    assert seen == {b"a", b"b", b"c"}


def test_hrandfield_count(r):
    fields = {f"f{i}".encode(): str(i).encode() for i in range(20)}
    r.hset("h", mapping=fields)
    assert r.hrandfield("h", 0) == []
    assert r.hrandfield("nokey", 5) == []
    assert r.hrandfield("nokey", -5, withvalues=True) == []
    # a count covering the hash returns it whole, in its order
    assert r.hrandfield("h", 100) == list(fields)
    picked = r.hrandfield("h", 7)
    assert len(picked) == 7 and len(set(picked)) == 7 and set(picked) <= set(fields)
    picked = r.hrandfield("h", -50)
    assert len(picked) == 50 and set(picked) <= set(fields)


def test_hrandfield_withvalues_shape(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    reply = raw(r, "HRANDFIELD", "h", "2", "WITHVALUES")
    if resp3(r):
        assert reply == [[b"a", b"1"], [b"b", b"2"]]
    else:
        assert reply == [b"a", b"1", b"b", b"2"]
    reply = raw(r, "HRANDFIELD", "h", "-5", "WITHVALUES")
    pairs = reply if resp3(r) else [reply[i:i + 2] for i in range(0, len(reply), 2)]
    assert len(pairs) == 5
    assert all(pair in ([b"a", b"1"], [b"b", b"2"]) for pair in pairs)


def test_hrandfield_errors(r):
    r.hset("h", "a", "1")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("HRANDFIELD", "h", "x")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("HRANDFIELD", "h", "1", "WITHSCORES")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("HRANDFIELD", "h", "1", "WITHVALUES", "x")
    with pytest.raises(redis.ResponseError, match="must between -9223372036854775807 and 9223372036854775807"):
        r.execute_command("HRANDFIELD", "h", str(-(2**63)))
    with pytest.raises(redis.ResponseError, match="^value is out of range$"):
        r.execute_command("HRANDFIELD", "h", str(2**62), "WITHVALUES")
    # the count is checked before the key
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("HRANDFIELD", "nokey", "x")


def test_hrandfield_big_hash_is_fair(r):
    r.hset("h", mapping={f"f{i}": i for i in range(1000)})
    counts: dict[bytes, int] = {}
    for field in r.hrandfield("h", -20000):
        counts[field] = counts.get(field, 0) + 1
    assert len(counts) > 950
    assert max(counts.values()) < 60  # expected 20 per field
    picked = r.hrandfield("h", 100, withvalues=True)
    assert len(picked) == (100 if resp3(r) else 200)


# -- HSCAN ------------------------------------------------------------------------------


def full_hscan(r, key, **kwargs):
    cursor, found, calls = 0, {}, 0
    while True:
        cursor, page = r.hscan(key, cursor, **kwargs)
        found.update(page)
        calls += 1
        if cursor == 0:
            return found, calls


def test_hscan_listpack_returns_all_at_once(r):
    r.hset("h", mapping={"a": "1", "b": "2", "c": "3"})
    assert r.hscan("h", 0) == (0, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert r.hscan("h", 0, count=1) == (0, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert r.hscan("h", 99) == (0, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert r.hscan("h", 0, match="[ab]") == (0, {b"a": b"1", b"b": b"2"})
    assert r.hscan("nokey", 0) == (0, {})
    reply = raw(r, "HSCAN", "h", "0")
    assert reply == [b"0", [b"a", b"1", b"b", b"2", b"c", b"3"]]


def test_hscan_errors(r):
    r.hset("h", "a", "1")
    with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
        r.execute_command("HSCAN", "h", "abc")
    for opts in (("COUNT", "0"), ("COUNT",), ("TYPE", "hash"), ("FOO", "1")):
        with pytest.raises(redis.ResponseError, match=SYNTAX):
            r.execute_command("HSCAN", "h", "0", *opts)
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("HSCAN", "h", "0", "COUNT", "x")
    # options are only parsed once the key was found
    assert raw(r, "HSCAN", "nokey", "0", "COUNT", "0") == [b"0", []]


def test_hscan_hashtable(r):
    data = {f"field:{i}".encode(): str(i).encode() for i in range(2000)}
    r.hset("h", mapping=data)
    found, calls = full_hscan(r, "h")
    assert found == data
    assert calls > 10  # really paged
    found, _ = full_hscan(r, "h", count=500)
    assert found == data
    found, _ = full_hscan(r, "h", match="field:1??")
    assert found == {k: v for k, v in data.items() if len(k) == 9 and k.startswith(b"field:1")}


def test_hscan_survives_changes(r):
    """Every field present for the whole walk comes back, while fields come and go."""
    r.hset("h", mapping={f"keep{i}": i for i in range(1000)})
    r.hset("h", mapping={f"drop{i}": i for i in range(1000)})
    cursor, found, step = 0, set(), 0
    while True:
        cursor, page = r.hscan("h", cursor, count=20)
        found.update(page)
        step += 1
        # grow the hash a lot, then shrink it, between calls
        if step < 20:
            r.hset("h", mapping={f"new{step}_{i}": i for i in range(300)})
        elif step == 20:
            r.hdel("h", *[f"drop{i}" for i in range(1000)])
            r.hdel("h", *[f"new{s}_{i}" for s in range(1, 20) for i in range(300)])
        if cursor == 0:
            break
    assert {f"keep{i}".encode() for i in range(1000)} <= found


# -- WATCH ------------------------------------------------------------------------------


def _watched_exec_succeeds(node, r, key, change) -> bool:
    """Whether a transaction WATCHing ``key`` still runs after ``change(other)``."""
    other = node.client(protocol=2)
    try:
        with r.pipeline() as pipe:
            pipe.watch(key)
            change(other)
            pipe.multi()
            pipe.ping()
            try:
                pipe.execute()
                return True
            except redis.WatchError:
                return False
    finally:
        other.close()


def test_watch_sees_hash_changes(node, r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert not _watched_exec_succeeds(node, r, "h", lambda o: o.hset("h", "a", "1"))
    assert not _watched_exec_succeeds(node, r, "h", lambda o: o.hincrby("h", "a", 1))
    assert not _watched_exec_succeeds(node, r, "h", lambda o: o.hdel("h", "a"))
    # commands that change nothing leave the watch alone
    assert _watched_exec_succeeds(node, r, "h", lambda o: o.hdel("h", "zz"))
    assert _watched_exec_succeeds(node, r, "h", lambda o: o.hsetnx("h", "b", "x"))
    assert _watched_exec_succeeds(node, r, "h", lambda o: o.hgetall("h"))
