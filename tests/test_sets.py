"""Set commands against a live node through redis-py, in RESP3 and RESP2.

Expected replies, error texts, encodings and listing orders are those of Redis 7.0:
an intset (at most 512 integers) lists its members in ascending numeric order.
"""

from __future__ import annotations

import pytest
import redis

WRONGTYPE = "^WRONGTYPE Operation against a key holding the wrong kind of value$"
SYNTAX = "^syntax error$"
NOT_INTEGER = "^value is not an integer or out of range$"
NOT_POSITIVE = "^value is out of range, must be positive$"


def raw(r, *args):
    """Run a command and return its parsed reply without redis-py's response callbacks."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        r.connection_pool.release(conn)


def encoding(r, key) -> bytes:
    return raw(r, "OBJECT", "ENCODING", key)


def listing(r, *args) -> list:
    """A set reply as a list in the order the server sent it.

    redis-py's parsers read RESP3 sets (``~``) into lists, so without response
    callbacks the order survives in both protocols.  The exact reply types are
    checked byte for byte by the conformance scripts.
    """
    return raw(r, *args)


def ints(*values) -> list[bytes]:
    return [str(v).encode() for v in values]


# -- SADD, SREM, SCARD, SISMEMBER, SMISMEMBER, SMEMBERS -------------------------------


def test_sadd_srem_scard(r):
    assert r.sadd("s", "a", "b", "c") == 3
    assert r.sadd("s", "b", "d") == 1
    assert r.scard("s") == 4
    assert r.scard("nokey") == 0
    assert r.srem("s", "a", "zz") == 1
    assert r.srem("nokey", "a") == 0
    assert r.smembers("s") == {b"b", b"c", b"d"}
    assert r.srem("s", "b", "c", "d") == 3
    assert r.exists("s") == 0


def test_sismember_smismember(r):
    r.sadd("s", "a", "1")
    assert r.sismember("s", "a") == 1
    assert r.sismember("s", "zz") == 0
    assert r.sismember("nokey", "a") == 0
    assert raw(r, "SMISMEMBER", "s", "a", "zz", "1") == [1, 0, 1]
    assert raw(r, "SMISMEMBER", "nokey", "a", "b") == [0, 0]


def test_smembers(r):
    r.sadd("s", "3", "1", "2")
    assert r.smembers("s") == {b"1", b"2", b"3"}
    assert listing(r, "SMEMBERS", "s") == [b"1", b"2", b"3"]
    assert r.smembers("nokey") == set()
    assert listing(r, "SMEMBERS", "nokey") == []


def test_intset_lists_sorted(r):
    r.sadd("s", 5, -3, 100, 0, 9223372036854775807, -9223372036854775808, 7)
    assert encoding(r, "s") == b"intset"
    assert listing(r, "SMEMBERS", "s") == ints(
        -9223372036854775808, -3, 0, 5, 7, 100, 9223372036854775807
    )
    assert listing(r, "SSCAN", "s", "0") == [b"0", listing(r, "SMEMBERS", "s")]


def test_keeps_ttl(r):
    r.sadd("s", 1, 2)
    r.expire("s", 100)
    r.sadd("s", 3)
    r.srem("s", 1)
    assert 0 < r.ttl("s") <= 100


def test_wrongtype(r):
    r.set("str", "v")
    r.sadd("s", "a")
    for call in (
        lambda: r.sadd("str", "a"),
        lambda: r.srem("str", "a"),
        lambda: r.scard("str"),
        lambda: r.sismember("str", "a"),
        lambda: r.smismember("str", ["a"]),
        lambda: r.smembers("str"),
        lambda: r.spop("str"),
        lambda: r.spop("str", 2),
        lambda: r.srandmember("str"),
        lambda: r.srandmember("str", 2),
        lambda: r.sinter("s", "str"),
        lambda: r.sinter("nokey", "str"),
        lambda: r.sintercard(2, ["s", "str"]),
        lambda: r.sunion("str", "s"),
        lambda: r.sdiff("s", "str"),
        lambda: r.sinterstore("d", ["s", "str"]),
        lambda: r.sunionstore("d", ["s", "str"]),
        lambda: r.sdiffstore("d", ["s", "nokey", "str"]),
        lambda: r.smove("str", "s", "a"),
        lambda: r.smove("s", "str", "a"),
        lambda: r.sscan("str", 0),
    ):
        with pytest.raises(redis.ResponseError, match=WRONGTYPE):
            call()
    assert r.smembers("s") == {b"a"}
    assert r.exists("d") == 0
    assert r.type("s") == b"set"


# -- encodings --------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["x", "007", "-0", "+1", " 1", "1.0", "9223372036854775808"])
def test_non_integers_make_a_hashtable(r, member):
    r.sadd("s", 1, 2)
    r.sadd("s", member)
    assert encoding(r, "s") == b"hashtable"
    r.srem("s", member)
    assert encoding(r, "s") == b"hashtable"  # never converts back


def test_intset_limit(r):
    r.sadd("s", *range(512))
    assert encoding(r, "s") == b"intset"
    r.sadd("s", 512)
    assert encoding(r, "s") == b"hashtable"
    # duplicates in one SADD do not count
    r.sadd("d", *[i % 300 for i in range(600)])
    assert encoding(r, "d") == b"intset"


def test_copy_keeps_encoding(r):
    r.sadd("s", "a", 1)
    r.srem("s", "a")
    r.copy("s", "c")
    assert encoding(r, "c") == b"hashtable"
    r.sadd("c", 2)
    assert r.smembers("s") == {b"1"}


# -- SMOVE ------------------------------------------------------------------------------


def test_smove(r):
    r.sadd("src", 1, 2, 3)
    r.sadd("dst", 3, 4)
    assert r.smove("src", "dst", 1) is True
    assert r.smove("src", "dst", 3) is True  # already in dst: only removed from src
    assert r.smembers("src") == {b"2"}
    assert r.smembers("dst") == {b"1", b"3", b"4"}
    assert r.smove("src", "dst", 9) is False
    assert r.smove("src", "src", 2) is True
    assert r.smove("src", "src", 9) is False
    assert r.smove("src", "new", 2) is True
    assert r.exists("src") == 0
    assert r.smembers("new") == {b"2"}
    assert encoding(r, "new") == b"intset"


def test_smove_missing_source_before_destination_type(r):
    r.set("str", "v")
    assert r.smove("nokey", "str", "a") is False
    r.sadd("s", "a")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.smove("s", "str", "a")
    assert r.smembers("s") == {b"a"}


# -- SPOP -------------------------------------------------------------------------------


def test_spop_single(r):
    assert r.spop("nokey") is None
    r.sadd("s", "a", "b", "c")
    popped = {r.spop("s") for _ in range(3)}
    assert popped == {b"a", b"b", b"c"}
    assert r.exists("s") == 0


def test_spop_count(r):
    r.sadd("s", *range(10))
    popped = r.spop("s", 4)
    assert len(popped) == 4
    assert r.scard("s") == 6
    assert not set(popped) & r.smembers("s")
    assert r.spop("s", 0) in ([], set())
    assert r.spop("nokey", 3) in ([], set())
    rest = listing(r, "SPOP", "s", "100")
    assert rest == sorted(rest, key=int) and len(rest) == 6
    assert r.exists("s") == 0


def test_spop_count_lists_like_sunion(r):
    # A hashtable set of integers pops everything in ascending order, as SUNION does.
    r.sadd("s", "x", 30, 10, 20)
    r.srem("s", "x")
    assert listing(r, "SPOP", "s", "3") == ints(10, 20, 30)


def test_spop_errors(r):
    r.sadd("s", 1)
    for bad in ("-1", "x", "1.5", str(-(2**63))):
        with pytest.raises(redis.ResponseError, match=NOT_POSITIVE):
            r.execute_command("SPOP", "s", bad)
    with pytest.raises(redis.ResponseError, match=NOT_POSITIVE):
        r.execute_command("SPOP", "nokey", "-1")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("SPOP", "s", "1", "2")


def test_spop_big_set(r):
    r.sadd("s", *[f"m{i}" for i in range(2000)])
    popped = set()
    for _ in range(100):
        popped.add(r.spop("s"))
    popped.update(r.spop("s", 900))
    assert len(popped) == 1000
    assert r.scard("s") == 1000
    assert not popped & r.smembers("s")


# -- SRANDMEMBER ------------------------------------------------------------------------


def test_srandmember(r):
    assert r.srandmember("nokey") is None
    assert r.srandmember("nokey", 5) == []
    assert r.srandmember("nokey", -5) == []
    r.sadd("s", 3, 1, 2)
    assert r.srandmember("s") in (b"1", b"2", b"3")
    assert r.srandmember("s", 0) == []
    assert raw(r, "SRANDMEMBER", "s", "10") == ints(1, 2, 3)  # an array, in set order
    picked = r.srandmember("s", 2)
    assert len(picked) == 2 and len(set(picked)) == 2
    picked = r.srandmember("s", -10)
    assert len(picked) == 10 and set(picked) <= {b"1", b"2", b"3"}
    assert r.scard("s") == 3


def test_srandmember_errors(r):
    r.sadd("s", 1)
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("SRANDMEMBER", "s", "x")
    with pytest.raises(redis.ResponseError, match="must between -9223372036854775807 and 9223372036854775807"):
        r.execute_command("SRANDMEMBER", "s", str(-(2**63)))
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("SRANDMEMBER", "s", "1", "2")


def test_srandmember_is_fair(r):
    r.sadd("s", *[f"m{i}" for i in range(1000)])
    counts: dict[bytes, int] = {}
    for member in r.srandmember("s", -20000):
        counts[member] = counts.get(member, 0) + 1
    assert len(counts) > 950
    assert max(counts.values()) < 60  # expected 20 per member
    picked = r.srandmember("s", 100)
    assert len(set(picked)) == 100


# -- SINTER, SINTERSTORE, SINTERCARD ---------------------------------------------------


def test_sinter(r):
    r.sadd("a", 1, 2, 3, 4, 5, 6)
    r.sadd("b", 4, 5, 6, 7, 8)
    r.sadd("c", 6, 5, 9)
    assert listing(r, "SINTER", "a", "b") == ints(4, 5, 6)
    assert listing(r, "SINTER", "a", "b", "c") == ints(5, 6)
    assert listing(r, "SINTER", "a", "nokey") == []
    assert r.sinter("a", "a") == r.smembers("a")
    r.sadd("x", "a", "b", 5, 6)
    assert r.sinter("x", "a") == {b"5", b"6"}


def test_sinter_lists_the_smallest_set_in_its_order(r):
    r.sadd("i", 3, 1, 2)
    r.sadd("h", "x", 2, 3, 1)
    r.srem("h", "x")
    # equally small: the first one given wins, an intset lists sorted
    assert listing(r, "SINTER", "i", "h") == ints(1, 2, 3)


def test_sinterstore(r):
    r.sadd("a", 1, 2, 3)
    r.sadd("b", 2, 3, 4)
    assert r.sinterstore("d", ["a", "b"]) == 2
    assert listing(r, "SMEMBERS", "d") == ints(2, 3)
    assert encoding(r, "d") == b"intset"
    r.set("t", "string")
    r.expire("t", 100)
    assert r.sinterstore("t", ["a", "b"]) == 2
    assert r.type("t") == b"set"
    assert r.ttl("t") == -1
    assert r.sinterstore("d", ["a", "nokey"]) == 0
    assert r.exists("d") == 0
    assert r.sinterstore("a", ["a", "b"]) == 2
    assert r.smembers("a") == {b"2", b"3"}


def test_sintercard(r):
    r.sadd("a", 1, 2, 3, 4)
    r.sadd("b", 2, 3, 4, 5)
    assert r.sintercard(2, ["a", "b"]) == 3
    assert r.sintercard(2, ["a", "b"], limit=2) == 2
    assert r.sintercard(2, ["a", "b"], limit=0) == 3
    assert r.sintercard(2, ["a", "nokey"]) == 0
    assert r.sintercard(1, ["a"]) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (("0", "a"), "^numkeys should be greater than 0$"),
        (("-1", "a"), "^numkeys should be greater than 0$"),
        (("x", "a"), "^numkeys should be greater than 0$"),
        (("3", "a", "b"), "^Number of keys can't be greater than number of args$"),
        (("1", "a", "LIMIT", "-1"), "^LIMIT can't be negative$"),
        (("1", "a", "LIMIT", "x"), "^LIMIT can't be negative$"),
        (("1", "a", "LIMIT"), SYNTAX),
        (("1", "a", "b"), SYNTAX),
    ],
)
def test_sintercard_errors(r, args, message):
    r.sadd("a", 1)
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("SINTERCARD", *args)


# -- SUNION, SDIFF and their STORE variants -------------------------------------------


def test_sunion(r):
    r.sadd("a", 3, 1)
    r.sadd("b", 2, 3)
    assert listing(r, "SUNION", "a", "b") == ints(1, 2, 3)
    assert listing(r, "SUNION", "a", "nokey") == ints(1, 3)
    assert listing(r, "SUNION", "nokey") == []
    r.sadd("w", "x")
    assert r.sunion("a", "w") == {b"1", b"3", b"x"}
    assert r.sunionstore("d", ["a", "b"]) == 3
    assert encoding(r, "d") == b"intset"
    assert r.sunionstore("d", ["a", "w"]) == 3
    assert encoding(r, "d") == b"hashtable"
    assert r.sunionstore("d", ["nokey"]) == 0
    assert r.exists("d") == 0


def test_sdiff(r):
    r.sadd("a", 1, 2, 3, 4)
    r.sadd("b", 2)
    r.sadd("c", 4, 5)
    assert listing(r, "SDIFF", "a", "b", "c") == ints(1, 3)
    assert listing(r, "SDIFF", "a", "nokey") == ints(1, 2, 3, 4)
    assert listing(r, "SDIFF", "nokey", "a") == []
    assert listing(r, "SDIFF", "a", "b", "a") == []
    assert r.sdiffstore("d", ["a", "b"]) == 3
    assert listing(r, "SMEMBERS", "d") == ints(1, 3, 4)
    assert r.sdiffstore("d", ["a", "a"]) == 0
    assert r.exists("d") == 0


def test_sdiff_result_encoding(r):
    # Copying a hashtable first set (Redis's second algorithm, chosen when there
    # are many small sets to subtract) leaves a hashtable even for a few integers.
    r.sadd("big", *range(600))
    r.sadd("s1", *range(100))
    r.sadd("s2", *range(100, 200))
    r.sadd("s3", *range(200, 300))
    assert r.sdiffstore("d", ["big", "s1", "s2", "s3"]) == 300
    assert encoding(r, "d") == b"hashtable"
    assert r.sdiffstore("d", ["big", "s1"]) == 500
    assert encoding(r, "d") == b"intset"


# -- SSCAN ------------------------------------------------------------------------------


def full_sscan(r, key, **kwargs):
    cursor, found, calls = 0, set(), 0
    while True:
        cursor, page = r.sscan(key, cursor, **kwargs)
        found.update(page)
        calls += 1
        if cursor == 0:
            return found, calls


def test_sscan_intset(r):
    r.sadd("s", 30, 10, 20)
    assert r.sscan("s", 0) == (0, [b"10", b"20", b"30"])
    assert r.sscan("s", 5, count=1) == (0, [b"10", b"20", b"30"])
    assert r.sscan("s", 0, match="1*") == (0, [b"10"])
    assert r.sscan("nokey", 0) == (0, [])


def test_sscan_errors(r):
    r.sadd("s", 1)
    with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
        r.execute_command("SSCAN", "s", "abc")
    for opts in (("COUNT", "0"), ("MATCH",), ("TYPE", "set")):
        with pytest.raises(redis.ResponseError, match=SYNTAX):
            r.execute_command("SSCAN", "s", "0", *opts)
    assert raw(r, "SSCAN", "nokey", "0", "COUNT", "0") == [b"0", []]


def test_sscan_hashtable(r):
    members = {f"m{i}".encode() for i in range(3000)}
    r.sadd("s", *members)
    found, calls = full_sscan(r, "s")
    assert found == members
    assert calls > 10
    found, _ = full_sscan(r, "s", match="m1*", count=100)
    assert found == {m for m in members if m.startswith(b"m1")}


def test_sscan_survives_changes(r):
    r.sadd("s", *[f"keep{i}" for i in range(500)])
    cursor, found, step = 0, set(), 0
    while True:
        cursor, page = r.sscan("s", cursor, count=10)
        found.update(page)
        step += 1
        if step % 2:
            r.sadd("s", *[f"tmp{step}_{i}" for i in range(200)])
        else:
            r.srem("s", *[f"tmp{step - 1}_{i}" for i in range(200)])
        if cursor == 0:
            break
    assert {f"keep{i}".encode() for i in range(500)} <= found


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


def test_watch_sees_set_changes(node, r):
    r.sadd("s", 1, 2, 3)
    r.sadd("t", 9)
    # commands that change nothing leave the watch alone
    assert _watched_exec_succeeds(node, r, "s", lambda o: o.sadd("s", 2))
    assert _watched_exec_succeeds(node, r, "s", lambda o: o.srem("s", 99))
    assert _watched_exec_succeeds(node, r, "s", lambda o: o.smove("s", "t", 99))
    assert _watched_exec_succeeds(node, r, "nokey", lambda o: o.sinterstore("nokey", ["s", "missing"]))
    assert not _watched_exec_succeeds(node, r, "s", lambda o: o.sadd("s", 4))
    assert not _watched_exec_succeeds(node, r, "s", lambda o: o.srem("s", 4))
    assert not _watched_exec_succeeds(node, r, "t", lambda o: o.smove("s", "t", 1))
    assert not _watched_exec_succeeds(node, r, "d", lambda o: o.sunionstore("d", ["s"]))
    assert not _watched_exec_succeeds(node, r, "s", lambda o: o.spop("s"))
