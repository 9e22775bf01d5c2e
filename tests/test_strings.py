"""String commands against a live node through redis-py, in RESP3 and RESP2.

Expected replies and error texts are those of Redis 7.0.
"""

from __future__ import annotations

import re
import time

import pytest
import redis
import trio

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)

WRONGTYPE = "^WRONGTYPE Operation against a key holding the wrong kind of value$"
SYNTAX = "^syntax error$"
NOT_INTEGER = "^value is not an integer or out of range$"
NOT_FLOAT = "^value is not a valid float$"
TOO_LONG = "^" + re.escape("string exceeds maximum allowed size (proto-max-bulk-len)") + "$"


def invalid_expire(name):
    return f"^invalid expire time in '{name}' command$"


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def make_list(node, r):
    """Create a key of another type, for WRONGTYPE checks.

    Uses RPUSH once lists exist; until then a stand-in value typed ``list`` is put
    straight into the node's keyspace (from the node's own trio thread).
    """

    def make(key: str) -> None:
        try:
            r.rpush(key, "a")
            return
        except redis.ResponseError as exc:
            if "unknown command" not in str(exc):
                raise
        from respkv.keyspace.values import TYPE_NAMES

        TYPE_NAMES.setdefault(_StandIn, b"list")
        trio.from_thread.run_sync(
            node.node.keyspace.set, key.encode(), _StandIn(), trio_token=node._token
        )

    return make


class _StandIn(list):
    """A non-string value for WRONGTYPE tests while no other data type exists."""


def raw(r, *args):
    """Run a command and return its parsed reply without redis-py's response callbacks."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        try:
            return conn.read_response()
        except redis.ResponseError as exc:
            raise exc from None
    finally:
        r.connection_pool.release(conn)


def wait_gone(r, key, timeout=5.0):
    deadline = time.monotonic() + timeout
    while r.exists(key):
        assert time.monotonic() < deadline, f"{key!r} did not expire"
        time.sleep(0.005)


# -- GET / SET --------------------------------------------------------------------------


def test_get_set_basic(r):
    assert r.get("k") is None
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.set("k", b"\x00\xff binary") is True
    assert r.get("k") == b"\x00\xff binary"
    assert r.set("empty", "") is True
    assert r.get("empty") == b""


def test_set_nx_xx(r):
    assert r.set("k", "v", xx=True) is None
    assert r.exists("k") == 0
    assert r.set("k", "v", nx=True) is True
    assert r.set("k", "w", nx=True) is None
    assert r.get("k") == b"v"
    assert r.set("k", "w", xx=True) is True
    assert r.get("k") == b"w"
    # repeating the same option is allowed
    assert r.execute_command("SET", "k", "x", "XX", "xx") is True


def test_set_get_option(r):
    assert r.set("k", "v1", get=True) is None
    assert r.set("k", "v2", get=True) == b"v1"
    assert r.get("k") == b"v2"
    # GET combined with NX/XX (allowed since 7.0): the old value either way
    assert raw(r, "SET", "k", "v3", "NX", "GET") == b"v2"
    assert r.get("k") == b"v2"
    assert raw(r, "SET", "new", "v", "XX", "GET") is None
    assert r.exists("new") == 0
    assert raw(r, "SET", "k", "v3", "XX", "GET", "GET") == b"v2"
    assert r.get("k") == b"v3"


def test_set_expire_options(r):
    assert r.set("k", "v", ex=100) is True
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "v", px=100000) is True
    assert 99000 <= r.pttl("k") <= 100000
    assert r.set("k", "v", exat=int(time.time()) + 200) is True
    assert 198 <= r.ttl("k") <= 200
    assert r.set("k", "v", pxat=now_ms() + 300000) is True
    assert 298 <= r.ttl("k") <= 300
    # a plain SET drops the TTL, KEEPTTL keeps it
    assert r.set("k", "v2", keepttl=True) is True
    assert r.ttl("k") > 0
    assert r.set("k", "v3") is True
    assert r.ttl("k") == -1
    # the same expiry option twice: the last one wins
    assert r.execute_command("SET", "k", "v", "EX", "10", "EX", "20") is True
    assert 19 <= r.ttl("k") <= 20
    assert r.execute_command("SET", "k", "v", "KEEPTTL", "KEEPTTL") is True


def test_set_deadline_in_the_past(r):
    assert r.execute_command("SET", "k", "v", "EXAT", "1") is True
    assert r.get("k") is None
    assert r.execute_command("SET", "k", "v", "PXAT", "1") is True
    assert r.exists("k") == 0


def test_set_expires(r):
    r.set("k", "v", px=20)
    wait_gone(r, "k")
    assert r.get("k") is None


@pytest.mark.parametrize("options", [
    ("NX", "XX"), ("XX", "NX"), ("EX", "10", "PX", "100"), ("PX", "10", "EX", "10"),
    ("EX", "10", "KEEPTTL"), ("KEEPTTL", "EX", "10"), ("EXAT", "10", "PXAT", "10"),
    ("PERSIST",), ("FOO",), ("EX",), ("EX", "10", "PX"), ("KEEPTTL", "PXAT", "1"),
])
def test_set_syntax_errors(r, options):
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("SET", "k", "v", *options)
    assert r.exists("k") == 0


@pytest.mark.parametrize("options", [
    ("EX", "0"), ("EX", "-1"), ("PX", "0"), ("EXAT", "0"), ("PXAT", "-5"),
    ("EX", str(LLONG_MAX // 1000)), ("EX", str(LLONG_MAX)), ("PX", str(LLONG_MAX)),
    ("EXAT", str(LLONG_MAX // 1000 + 1)),
])
def test_set_invalid_expire(r, options):
    with pytest.raises(redis.ResponseError, match=invalid_expire("set")):
        r.execute_command("SET", "k", "v", *options)
    assert r.exists("k") == 0


def test_set_extreme_absolute_deadlines(r):
    assert r.execute_command("SET", "k", "v", "PXAT", str(LLONG_MAX)) is True
    assert r.pexpiretime("k") == LLONG_MAX
    assert r.execute_command("SET", "k", "v", "EXAT", str(LLONG_MAX // 1000)) is True
    assert r.expiretime("k") == LLONG_MAX // 1000


def test_set_non_integer_expire(r):
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("SET", "k", "v", "EX", "abc")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("SET", "k", "v", "PX", "1.5")


def test_set_overwrites_other_types_and_get_wrongtype(r, make_list):
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.get("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.set("l", "v", get=True)
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.execute_command("SET", "l", "v", "NX", "GET")
    assert r.type("l") == b"list"
    assert r.set("l", "v") is True
    assert r.get("l") == b"v"


# -- SETNX / SETEX / PSETEX / GETSET / GETDEL --------------------------------------------


def test_setnx(r):
    assert r.setnx("k", "v") is True
    assert r.setnx("k", "w") is False
    assert r.get("k") == b"v"


def test_setex_psetex(r):
    r.set("k", "old")
    assert raw(r, "SETEX", "k", 100, "v") == b"OK"
    assert r.get("k") == b"v"
    assert 99 <= r.ttl("k") <= 100
    assert raw(r, "PSETEX", "k", 100000, "w") == b"OK"
    assert r.get("k") == b"w"
    assert 99000 <= r.pttl("k") <= 100000
    raw(r, "PSETEX", "short", 15, "v")
    wait_gone(r, "short")


def test_setex_errors(r):
    for value in ("0", "-1", str(LLONG_MAX // 1000)):
        with pytest.raises(redis.ResponseError, match=invalid_expire("setex")):
            r.execute_command("SETEX", "k", value, "v")
    for value in ("0", "-10", str(LLONG_MAX)):
        with pytest.raises(redis.ResponseError, match=invalid_expire("psetex")):
            r.execute_command("PSETEX", "k", value, "v")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("SETEX", "k", "abc", "v")
    assert r.exists("k") == 0


def test_setex_replaces_other_type(r, make_list):
    make_list("l")
    assert raw(r, "SETEX", "l", 10, "v") == b"OK"
    assert r.type("l") == b"string"


def test_getset(r, make_list):
    assert r.getset("k", "v1") is None
    assert r.getset("k", "v2") == b"v1"
    assert r.get("k") == b"v2"
    r.expire("k", 100)
    r.getset("k", "v3")
    assert r.ttl("k") == -1  # GETSET drops the TTL like SET
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.getset("l", "v")


def test_getdel(r, make_list):
    r.set("k", "v")
    assert r.getdel("k") == b"v"
    assert r.exists("k") == 0
    assert r.getdel("k") is None
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.getdel("l")
    assert r.exists("l") == 1


# -- GETEX ------------------------------------------------------------------------------


def test_getex(r):
    assert r.getex("missing", ex=10) is None
    r.set("k", "v")
    assert r.getex("k") == b"v"
    assert r.ttl("k") == -1
    assert r.getex("k", ex=100) == b"v"
    assert 99 <= r.ttl("k") <= 100
    assert r.getex("k", px=200000) == b"v"
    assert 199 <= r.ttl("k") <= 200
    assert r.getex("k", exat=int(time.time()) + 300) == b"v"
    assert 298 <= r.ttl("k") <= 300
    assert r.getex("k", pxat=now_ms() + 400000) == b"v"
    assert 398 <= r.ttl("k") <= 400
    assert r.getex("k", persist=True) == b"v"
    assert r.ttl("k") == -1
    assert r.execute_command("GETEX", "k", "EX", "10", "EX", "20") == b"v"
    assert 19 <= r.ttl("k") <= 20
    assert r.execute_command("GETEX", "k", "PERSIST", "PERSIST") == b"v"
    assert r.ttl("k") == -1


def test_getex_past_deadline_deletes(r):
    r.set("k", "v")
    assert r.getex("k", exat=1) == b"v"
    assert r.exists("k") == 0
    r.set("k", "v")
    assert r.getex("k", pxat=1) == b"v"
    assert r.exists("k") == 0


def test_getex_expires(r):
    r.set("k", "v")
    assert r.getex("k", px=15) == b"v"
    wait_gone(r, "k")


@pytest.mark.parametrize("options", [
    ("NX",), ("XX",), ("GET",), ("KEEPTTL",), ("PERSIST", "EX", "10"), ("EX", "10", "PERSIST"),
    ("EX", "10", "PX", "10"), ("FOO",), ("EX",),
])
def test_getex_syntax_errors(r, options):
    r.set("k", "v")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("GETEX", "k", *options)
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("GETEX", "missing", *options)


def test_getex_invalid_values(r, make_list):
    # Redis looks the key up before validating the expiry value
    assert r.execute_command("GETEX", "missing", "EX", "abc") is None
    assert r.execute_command("GETEX", "missing", "EX", "0") is None
    r.set("k", "v")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("GETEX", "k", "EX", "abc")
    with pytest.raises(redis.ResponseError, match=invalid_expire("getex")):
        r.execute_command("GETEX", "k", "EX", "0")
    with pytest.raises(redis.ResponseError, match=invalid_expire("getex")):
        r.execute_command("GETEX", "k", "PX", str(LLONG_MAX))
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.execute_command("GETEX", "l", "EX", "abc")


# -- MGET / MSET / MSETNX ---------------------------------------------------------------


def test_mget_mset(r, make_list):
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "missing") == [b"1", b"2", None]
    make_list("l")
    assert r.mget("l", "a") == [None, b"1"]
    assert r.execute_command("MSET", "a", "x", "a", "y") is True
    assert r.get("a") == b"y"


def test_mset_drops_ttl(r):
    r.set("a", "1", ex=100)
    r.mset({"a": "2"})
    assert r.ttl("a") == -1


def test_msetnx(r):
    assert r.msetnx({"a": "1", "b": "2"}) is True
    assert r.msetnx({"b": "x", "c": "3"}) is False
    assert r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.execute_command("MSETNX", "c", "1") == 1


@pytest.mark.parametrize("name", ["MSET", "MSETNX"])
def test_mset_odd_arguments(r, name):
    with pytest.raises(redis.ResponseError, match=f"^wrong number of arguments for '{name.lower()}' command$"):
        r.execute_command(name, "a", "1", "b")
    assert r.exists("a") == 0


# -- APPEND / STRLEN / GETRANGE / SETRANGE ----------------------------------------------


def test_append_strlen(r, make_list):
    assert r.strlen("k") == 0
    assert r.append("k", "hello") == 5
    assert r.append("k", " world") == 11
    assert r.get("k") == b"hello world"
    assert r.strlen("k") == 11
    assert r.append("k", "") == 11
    r.expire("k", 100)
    r.append("k", "!")
    assert r.ttl("k") > 0  # APPEND keeps the TTL
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.append("l", "x")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.strlen("l")


@pytest.mark.parametrize("start,end,expected", [
    (0, 4, b"hello"), (-5, -1, b"world"), (5, 2, b""), (-100, 100, b"hello world"),
    (100, 200, b""), (-1, -5, b""), (0, -100, b"h"), (0, LLONG_MAX, b"hello world"),
    (LLONG_MIN, -1, b"hello world"), (3, 3, b"l"), (-3, LLONG_MAX, b"rld"), (0, -1, b"hello world"),
])
def test_getrange(r, start, end, expected):
    r.set("k", "hello world")
    assert r.getrange("k", start, end) == expected
    assert r.execute_command("SUBSTR", "k", start, end) == expected


def test_getrange_edge_cases(r, make_list):
    assert r.getrange("missing", 0, 10) == b""
    r.set("e", "")
    assert r.getrange("e", 0, -1) == b""
    assert r.getrange("e", -1, -1) == b""
    r.set("n", 12345)
    assert r.getrange("n", 1, 2) == b"23"
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("GETRANGE", "n", "abc", "1")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("GETRANGE", "missing", "0", "x")
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.getrange("l", 0, 1)


def test_setrange(r):
    r.set("k", "hello world")
    assert r.setrange("k", 0, "HE") == 11
    assert r.get("k") == b"HEllo world"
    assert r.setrange("k", 6, "WORLD!!") == 13
    assert r.get("k") == b"HEllo WORLD!!"
    assert r.setrange("k", 15, "X") == 16
    assert r.get("k") == b"HEllo WORLD!!\x00\x00X"
    assert r.setrange("new", 3, "abc") == 6
    assert r.get("new") == b"\x00\x00\x00abc"
    r.expire("k", 100)
    r.setrange("k", 0, "z")
    assert r.ttl("k") > 0  # SETRANGE keeps the TTL


def test_setrange_empty_value(r):
    # nothing to set on a missing key: reply 0 and create nothing, even far out
    assert r.setrange("missing", 0, "") == 0
    assert r.setrange("missing", 600_000_000, "") == 0
    assert r.exists("missing") == 0
    # on an existing key: its length, without the size check
    r.set("k", "abc")
    assert r.setrange("k", 600_000_000, "") == 3
    assert r.get("k") == b"abc"
    r.set("e", "")
    assert r.setrange("e", 0, "") == 0
    assert r.exists("e") == 1


def test_setrange_errors(r, make_list):
    r.set("k", "abc")
    with pytest.raises(redis.ResponseError, match="^offset is out of range$"):
        r.setrange("k", -1, "x")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("SETRANGE", "k", "abc", "x")
    with pytest.raises(redis.ResponseError, match=TOO_LONG):
        r.setrange("k", 512 * 1024 * 1024, "x")
    with pytest.raises(redis.ResponseError, match=TOO_LONG):
        r.setrange("missing", 512 * 1024 * 1024 - 1, "xy")
    assert r.exists("missing") == 0
    make_list("l")
    with pytest.raises(redis.ResponseError, match="^offset is out of range$"):
        r.setrange("l", -1, "x")  # the offset is checked before the type
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.setrange("l", 0, "")


# -- counters ---------------------------------------------------------------------------


def test_incr_decr(r):
    assert r.incr("n") == 1
    assert r.incr("n") == 2
    assert r.decr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decrby("n", 20) == -9
    assert r.incrby("n", -1) == -10
    assert r.get("n") == b"-10"
    assert r.decr("fresh") == -1
    r.set("n", "41", ex=100)
    assert r.incr("n") == 42
    assert r.ttl("n") > 0  # counters keep the TTL


def test_incr_overflow(r):
    r.set("n", LLONG_MAX)
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.incr("n")
    assert r.incrby("n", -1) == LLONG_MAX - 1
    r.set("n", LLONG_MIN)
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.decr("n")
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.decrby("n", 1)
    r.set("m", 0)
    assert r.decrby("m", LLONG_MAX) == -LLONG_MAX
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.incrby("m", LLONG_MIN)


def test_decrby_llong_min(r, make_list):
    with pytest.raises(redis.ResponseError, match="^decrement would overflow$"):
        r.decrby("m", LLONG_MIN)
    make_list("l")
    with pytest.raises(redis.ResponseError, match="^decrement would overflow$"):
        r.decrby("l", LLONG_MIN)  # checked before the key


@pytest.mark.parametrize("value", ["abc", " 1", "1 ", "01", "+1", "-0", "", "1.0", "9223372036854775808", "0x10"])
def test_incr_not_integer(r, value):
    r.set("s", value)
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.incr("s")
    assert r.get("s") == value.encode()


def test_incrby_bad_increment(r, make_list):
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("INCRBY", "n", "1.5")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("DECRBY", "n", "abc")
    make_list("l")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("INCRBY", "l", "abc")  # increment parsed before the key
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.incr("l")


@pytest.mark.parametrize("start,increment,expected", [
    (None, "1.5", b"1.5"), ("1.5", "0.1", b"1.6"), ("5", "3e2", b"305"), ("10.50", "0.1", b"10.6"),
    ("5.0e3", "2.0e2", b"5200"), ("5200", "1e-20", b"5200"), (None, "0x10", b"16"),
    ("1", "-1", b"0"), (None, "-0.5", b"-0.5"),
])
def test_incrbyfloat(r, start, increment, expected):
    if start is not None:
        r.set("f", start)
    assert raw(r, "INCRBYFLOAT", "f", increment) == expected
    assert r.get("f") == expected


def test_incrbyfloat_long_double_range(r):
    r.set("f", "1e308")
    result = raw(r, "INCRBYFLOAT", "f", "1e308")
    assert result == (
        b"19999999999999999999337175931169129132112019969483113441559409598984346973767612374420"
        b"02538437770786408934944501080264463042694991879211671948416288603928375359182000392063"
        b"81557326219209014213335878306791577877829121087126122536729803237260434173178506889763"
        b"247582601711514636284849020905456510092687857156096"
    )


def test_incrbyfloat_errors(r, make_list):
    with pytest.raises(redis.ResponseError, match=NOT_FLOAT):
        raw(r, "INCRBYFLOAT", "f", "abc")
    with pytest.raises(redis.ResponseError, match=NOT_FLOAT):
        raw(r, "INCRBYFLOAT", "f", "nan")
    with pytest.raises(redis.ResponseError, match=NOT_FLOAT):
        raw(r, "INCRBYFLOAT", "f", " 1")
    with pytest.raises(redis.ResponseError, match="^increment would produce NaN or Infinity$"):
        raw(r, "INCRBYFLOAT", "f", "inf")
    assert r.exists("f") == 0
    r.set("f", "abc")
    with pytest.raises(redis.ResponseError, match=NOT_FLOAT):
        raw(r, "INCRBYFLOAT", "f", "1")
    make_list("l")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        raw(r, "INCRBYFLOAT", "l", "abc")  # the key is checked first


def test_incrbyfloat_keeps_ttl(r):
    r.set("f", "1", ex=100)
    r.incrbyfloat("f", 1)
    assert r.ttl("f") > 0


# -- LCS --------------------------------------------------------------------------------


def test_lcs(r):
    r.mset({"s1": "ohmytext", "s2": "mynewtext"})
    assert r.lcs("s1", "s2") == b"mytext"
    assert r.lcs("s1", "s2", len=True) == 6
    assert r.lcs("s1", "missing") == b""
    assert r.lcs("missing", "missing2", len=True) == 0
    assert r.execute_command("LCS", "s1", "s2", "WITHMATCHLEN") == b"mytext"
    assert r.execute_command("LCS", "s1", "s2", "LEN", "WITHMATCHLEN") == 6


def _idx(reply):
    """LCS IDX reply as a dict in both protocols."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2]))


def test_lcs_idx(r):
    r.mset({"s1": "ohmytext", "s2": "mynewtext"})
    result = _idx(r.execute_command("LCS", "s1", "s2", "IDX"))
    assert result == {b"matches": [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len": 6}
    result = _idx(r.execute_command("LCS", "s1", "s2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"))
    assert result == {b"matches": [[[4, 7], [5, 8], 4]], b"len": 6}
    result = _idx(r.execute_command("LCS", "s1", "s2", "MINMATCHLEN", "-5", "IDX"))
    assert result[b"matches"] == [[[4, 7], [5, 8]], [[2, 3], [0, 1]]]
    result = _idx(r.execute_command("LCS", "s1", "missing", "IDX"))
    assert result == {b"matches": [], b"len": 0}


def test_lcs_matches_reference(r):
    """The LEN fast path and the DP table agree with a brute-force reference."""
    import random

    rng = random.Random(7)

    def reference(a, b):
        prev = [0] * (len(b) + 1)
        for ca in a:
            row = [0]
            for j, cb in enumerate(b):
                row.append(prev[j] + 1 if ca == cb else max(prev[j + 1], row[j]))
            prev = row
        return prev[-1]

    for _ in range(30):
        a = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 40)))
        b = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 40)))
        r.mset({"a": a, "b": b})
        expected = reference(a, b)
        assert r.lcs("a", "b", len=True) == expected
        assert len(r.lcs("a", "b")) == expected


def test_lcs_errors(r, make_list):
    r.mset({"s1": "ohmytext", "s2": "mynewtext"})
    with pytest.raises(redis.ResponseError, match="^If you want both the length and indexes, please just use IDX.$"):
        r.execute_command("LCS", "s1", "s2", "LEN", "IDX")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LCS", "s1", "s2", "FOO")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LCS", "s1", "s2", "MINMATCHLEN")
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("LCS", "s1", "s2", "MINMATCHLEN", "abc")
    make_list("l")
    with pytest.raises(redis.ResponseError, match="^The specified keys must contain string values$"):
        r.execute_command("LCS", "s1", "l")
    with pytest.raises(redis.ResponseError, match="^The specified keys must contain string values$"):
        r.execute_command("LCS", "l", "s1", "FOO")  # keys are checked before options


def test_lcs_transient_memory_limit(r):
    # Redis's DP table would be (len(a)+1) * (len(b)+1) 32-bit counters
    r.mset({"a": "a" * 11584, "b": "a" * 11584})
    assert r.lcs("a", "b", len=True) == 11584
    r.mset({"a": "a" * 11585, "b": "a" * 11585})
    with pytest.raises(redis.ResponseError, match="^Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len$"):
        r.lcs("a", "b", len=True)
    with pytest.raises(redis.ResponseError, match="^If you want both the length and indexes"):
        r.execute_command("LCS", "a", "b", "LEN", "IDX")  # options are checked first
