"""Generic key commands against a live node through redis-py, in RESP3 and RESP2.

Expected replies and error texts are those of Redis 7.0.  Expiry timing uses short
PEXPIREs with polling up to a deadline, or absolute times far in the past or future.
"""

from __future__ import annotations

import time

import pytest
import redis
import trio

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)

SYNTAX = "^syntax error$"
NOT_INTEGER = "^value is not an integer or out of range$"
NX_CONFLICT = "^NX and XX, GT or LT options at the same time are not compatible$"
GT_LT_CONFLICT = "^GT and LT options at the same time are not compatible$"


def invalid_expire(name):
    return f"^invalid expire time in '{name}' command$"


def now_ms():
    return int(time.time() * 1000)


class _StandIn(list):
    """A non-string value for type tests while no other data type exists."""


@pytest.fixture
def make_list(node, r):
    """Create a list key: RPUSH once lists exist, else a stand-in typed ``list``
    put straight into the node's keyspace from the node's own trio thread."""

    def make(key: str, *items: str) -> None:
        items = items or ("a",)
        try:
            r.rpush(key, *items)
            return
        except redis.ResponseError as exc:
            if "unknown command" not in str(exc):
                raise
        from respkv.keyspace.values import TYPE_NAMES

        TYPE_NAMES.setdefault(_StandIn, b"list")
        value = _StandIn(item.encode() for item in items)
        trio.from_thread.run_sync(node.node.keyspace.set, key.encode(), value, trio_token=node._token)

    return make


def wait_gone(r, key, timeout=5.0):
    deadline = time.monotonic() + timeout
    while r.exists(key):
        assert time.monotonic() < deadline, f"{key!r} did not expire"
        time.sleep(0.005)


# -- DEL / UNLINK / EXISTS / TOUCH / TYPE -----------------------------------------------


@pytest.mark.parametrize("name", ["DEL", "UNLINK"])
def test_del_unlink(r, name):
    r.mset({"a": "1", "b": "2"})
    assert r.execute_command(name, "a", "b", "a", "missing") == 2
    assert r.execute_command(name, "a") == 0
    assert r.dbsize() == 0


def test_exists_counts_repeats(r):
    r.mset({"a": "1", "b": "2"})
    assert r.exists("a") == 1
    assert r.exists("a", "a", "b", "missing") == 3
    assert r.exists("missing") == 0


def test_touch(r):
    r.mset({"a": "1", "b": "2"})
    assert r.touch("a", "a", "b", "missing") == 3
    assert r.touch("missing") == 0


def test_type(r, make_list):
    assert r.type("missing") == b"none"
    r.set("s", "1")
    assert r.type("s") == b"string"
    make_list("l")
    assert r.type("l") == b"list"


def test_expired_keys_are_gone(r):
    r.set("k", "v", px=10)
    wait_gone(r, "k")
    assert r.type("k") == b"none"
    assert r.delete("k") == 0
    assert r.touch("k") == 0


# -- EXPIRE family ----------------------------------------------------------------------


def test_expire_and_ttl(r):
    assert r.expire("missing", 100) is False
    r.set("k", "v")
    assert r.ttl("k") == -1
    assert r.pttl("k") == -1
    assert r.ttl("missing") == -2
    assert r.pttl("missing") == -2
    assert r.expire("k", 100) is True
    assert 99 <= r.ttl("k") <= 100
    assert 99000 <= r.pttl("k") <= 100000
    assert r.pexpire("k", 200000) is True
    assert 199 <= r.ttl("k") <= 200
    at = int(time.time()) + 300
    assert r.expireat("k", at) is True
    assert r.expiretime("k") == at
    at_ms = now_ms() + 400000
    assert r.pexpireat("k", at_ms) is True
    assert r.pexpiretime("k") == at_ms
    assert r.expiretime("k") == (at_ms + 500) // 1000


def test_expiretime_rounds(r):
    r.set("k", "v")
    r.pexpireat("k", 99999999999600)
    assert r.expiretime("k") == 100000000000
    r.pexpireat("k", 99999999999400)
    assert r.expiretime("k") == 99999999999
    r.pexpireat("k", LLONG_MAX)
    assert r.pexpiretime("k") == LLONG_MAX
    assert r.expiretime("k") == 9223372036854776


def test_expiretime_missing_and_persistent(r):
    assert r.expiretime("missing") == -2
    assert r.pexpiretime("missing") == -2
    r.set("k", "v")
    assert r.expiretime("k") == -1
    assert r.pexpiretime("k") == -1


def test_pexpire_expires(r):
    r.set("k", "v")
    assert r.pexpire("k", 15) is True
    wait_gone(r, "k")
    assert r.get("k") is None
    assert r.ttl("k") == -2


@pytest.mark.parametrize("command,value", [
    ("EXPIRE", "0"), ("EXPIRE", "-5"), ("PEXPIRE", "-1"), ("EXPIREAT", "1"), ("PEXPIREAT", "1"),
    ("PEXPIREAT", "-100"), ("EXPIREAT", str(-(LLONG_MAX // 1000))),
])
def test_deadline_in_the_past_deletes(r, command, value):
    r.set("k", "v")
    assert r.execute_command(command, "k", value) == 1
    assert r.exists("k") == 0


@pytest.mark.parametrize("command,value", [
    ("EXPIRE", str(LLONG_MAX // 1000)), ("EXPIRE", str(LLONG_MAX)), ("EXPIRE", str(LLONG_MIN)),
    ("EXPIRE", str(-(LLONG_MAX // 1000) - 1)), ("PEXPIRE", str(LLONG_MAX)),
    ("EXPIREAT", str(LLONG_MAX)), ("EXPIREAT", str(LLONG_MAX // 1000 + 1)),
])
def test_invalid_expire_time(r, command, value):
    r.set("k", "v")
    with pytest.raises(redis.ResponseError, match=invalid_expire(command.lower())):
        r.execute_command(command, "k", value)
    assert r.ttl("k") == -1
    # checked before the key is looked up
    with pytest.raises(redis.ResponseError, match=invalid_expire(command.lower())):
        r.execute_command(command, "missing", value)


def test_expire_extreme_values_accepted(r):
    r.set("k", "v")
    assert r.execute_command("PEXPIREAT", "k", str(LLONG_MAX)) == 1
    assert r.pexpiretime("k") == LLONG_MAX
    assert r.execute_command("EXPIREAT", "k", str(LLONG_MAX // 1000)) == 1
    assert r.expiretime("k") == LLONG_MAX // 1000


def test_expire_not_integer(r):
    r.set("k", "v")
    for command in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"):
        with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
            r.execute_command(command, "k", "abc")
        with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
            r.execute_command(command, "k", "1.5")


def test_expire_nx_xx(r):
    r.set("k", "v")
    assert r.expire("k", 100, xx=True) is False
    assert r.ttl("k") == -1
    assert r.expire("k", 100, nx=True) is True
    assert r.expire("k", 200, nx=True) is False
    assert r.expire("k", 200, xx=True) is True
    assert 199 <= r.ttl("k") <= 200
    assert r.execute_command("EXPIRE", "k", "300", "nx") == 0  # options are case-insensitive


def test_expire_gt_lt(r):
    r.set("k", "v")
    # no TTL counts as infinite: GT never beats it, LT always does
    assert r.expire("k", 100, gt=True) is False
    assert r.ttl("k") == -1
    assert r.expire("k", 100, lt=True) is True
    assert r.expire("k", 50, gt=True) is False
    assert r.expire("k", 200, gt=True) is True
    assert 199 <= r.ttl("k") <= 200
    assert r.expire("k", 300, lt=True) is False
    assert r.expire("k", 50, lt=True) is True
    assert 49 <= r.ttl("k") <= 50
    assert r.execute_command("EXPIRE", "k", "60", "XX", "GT") == 1
    assert r.execute_command("PEXPIRE", "k", "1000", "XX", "LT") == 1


def test_expire_options_with_past_deadline(r):
    r.set("k", "v")
    assert r.execute_command("EXPIRE", "k", "-5", "NX") == 1
    assert r.exists("k") == 0
    r.set("k", "v", ex=100)
    assert r.execute_command("EXPIRE", "k", "-5", "GT") == 0
    assert r.exists("k") == 1
    assert r.execute_command("EXPIRE", "k", "-5", "LT") == 1
    assert r.exists("k") == 0
    r.set("k", "v")
    assert r.execute_command("EXPIREAT", "k", "100", "XX") == 0
    assert r.exists("k") == 1


@pytest.mark.parametrize("options,message", [
    (("NX", "XX"), NX_CONFLICT), (("NX", "GT"), NX_CONFLICT), (("LT", "NX"), NX_CONFLICT),
    (("GT", "LT"), GT_LT_CONFLICT), (("XX", "GT", "LT"), GT_LT_CONFLICT),
    (("FOO",), "^Unsupported option FOO$"), (("NX", "GT", "bar"), "^Unsupported option bar$"),
])
def test_expire_option_errors(r, options, message):
    r.set("k", "v")
    for command in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"):
        with pytest.raises(redis.ResponseError, match=message):
            r.execute_command(command, "k", "100", *options)
        with pytest.raises(redis.ResponseError, match=message):
            r.execute_command(command, "missing", "100", *options)
    # options are checked before the time value
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("EXPIRE", "k", "abc", *options)
    assert r.ttl("k") == -1


def test_persist(r):
    assert r.persist("missing") is False
    r.set("k", "v")
    assert r.persist("k") is False
    r.expire("k", 100)
    assert r.persist("k") is True
    assert r.ttl("k") == -1
    assert r.persist("k") is False


def test_ttl_of_other_types(r, make_list):
    make_list("l")
    assert r.ttl("l") == -1
    assert r.expire("l", 100) is True
    assert 99 <= r.ttl("l") <= 100


# -- KEYS / SCAN / RANDOMKEY ------------------------------------------------------------


def test_keys(r):
    assert r.keys("*") == []
    r.mset({"one": "1", "two": "2", "three": "3", "four": "4", "": "empty"})
    assert sorted(r.keys("*")) == [b"", b"four", b"one", b"three", b"two"]
    assert sorted(r.keys("t*")) == [b"three", b"two"]
    assert sorted(r.keys("?o*")) == [b"four"]
    assert sorted(r.keys("*o")) == [b"two"]
    assert sorted(r.keys("[ot]*")) == [b"one", b"three", b"two"]
    assert r.keys("[") == []
    assert r.keys("nomatch*") == []


def test_keys_skips_expired(r):
    r.set("a", "1")
    r.set("b", "2", px=10)
    wait_gone(r, "b")
    assert r.keys("*") == [b"a"]


def _scan_all(r, **kwargs):
    cursor, seen, calls = 0, [], 0
    while True:
        cursor, keys = r.scan(cursor, **kwargs)
        seen.extend(keys)
        calls += 1
        assert calls < 20000
        if cursor == 0:
            return seen


def test_scan_full_iteration(r):
    names = [f"key:{i}" for i in range(300)]
    r.mset({name: "v" for name in names})
    seen = _scan_all(r)
    assert sorted(set(seen)) == sorted(name.encode() for name in names)
    seen = _scan_all(r, count=1000)
    assert sorted(set(seen)) == sorted(name.encode() for name in names)


def test_scan_match_and_count(r):
    r.mset({f"user:{i}": "v" for i in range(50)})
    r.mset({f"item:{i}": "v" for i in range(50)})
    seen = _scan_all(r, match="user:*", count=7)
    assert sorted(set(seen)) == sorted(f"user:{i}".encode() for i in range(50))
    assert _scan_all(r, match="nothing*") == []


def test_scan_type(r, make_list):
    r.mset({"s1": "v", "s2": "v"})
    make_list("l")
    assert sorted(_scan_all(r, _type="string")) == [b"s1", b"s2"]
    assert sorted(_scan_all(r, _type="STRING")) == [b"s1", b"s2"]
    assert _scan_all(r, _type="list") == [b"l"]
    assert _scan_all(r, _type="nosuchtype") == []
    assert _scan_all(r, _type="string", match="*2") == [b"s2"]


def test_scan_repeated_options(r):
    r.mset({"a": "1", "b": "2"})
    cursor, keys = r.execute_command("SCAN", "0", "MATCH", "a", "MATCH", "b", "COUNT", "1", "COUNT", "100")
    assert int(cursor) == 0
    assert keys == [b"b"]


@pytest.mark.parametrize("cursor", ["abc", " 1", "1 ", "18446744073709551616", "-18446744073709551616", "-", "+", "1.0"])
def test_scan_invalid_cursor(r, cursor):
    with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
        r.execute_command("SCAN", cursor)
    # the cursor is checked before the options
    with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
        r.execute_command("SCAN", cursor, "COUNT", "0")


@pytest.mark.parametrize("cursor", ["", "00", "-0", "+0"])
def test_scan_cursor_zero_spellings(r, cursor):
    r.set("a", "1")
    next_cursor, keys = r.execute_command("SCAN", cursor)
    assert int(next_cursor) == 0
    assert keys == [b"a"]


@pytest.mark.parametrize("cursor", ["18446744073709551615", "-1", "-18446744073709551615"])
def test_scan_cursor_past_the_end(r, cursor):
    # large (and, like strtoul, negative wrap-around) cursors end the iteration
    r.set("a", "1")
    if cursor == "-18446744073709551615":  # wraps to 1, a real slot
        next_cursor, _ = r.execute_command("SCAN", cursor, "COUNT", "100000")
        assert int(next_cursor) == 0
        return
    next_cursor, keys = r.execute_command("SCAN", cursor)
    assert int(next_cursor) == 0
    assert keys == []


@pytest.mark.parametrize("options,message", [
    (("COUNT", "0"), SYNTAX), (("COUNT", "-1"), SYNTAX), (("COUNT", "abc"), NOT_INTEGER),
    (("COUNT", str(2**63)), NOT_INTEGER), (("MATCH",), SYNTAX), (("COUNT",), SYNTAX),
    (("TYPE",), SYNTAX), (("FOO", "bar"), SYNTAX), (("MATCH", "*", "extra"), SYNTAX),
])
def test_scan_option_errors(r, options, message):
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("SCAN", "0", *options)


def test_scan_skips_expired(r):
    r.set("a", "1")
    r.set("b", "2", px=10)
    wait_gone(r, "b")
    assert _scan_all(r) == [b"a"]


def test_randomkey(r):
    assert r.randomkey() is None
    r.set("only", "1")
    assert r.randomkey() == b"only"
    r.mset({f"k{i}": "v" for i in range(20)})
    names = {f"k{i}".encode() for i in range(20)} | {b"only"}
    for _ in range(10):
        assert r.randomkey() in names


# -- RENAME / RENAMENX / COPY -----------------------------------------------------------


def test_rename(r):
    r.set("a", "1")
    assert r.rename("a", "b") is True
    assert r.get("a") is None
    assert r.get("b") == b"1"
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.rename("a", "c")
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.rename("a", "a")
    assert r.rename("b", "b") is True
    assert r.get("b") == b"1"


def test_rename_ttl(r):
    r.set("src", "1", ex=100)
    r.set("dst", "old")
    r.rename("src", "dst")
    assert 99 <= r.ttl("dst") <= 100  # the source's TTL moves along
    r.set("src", "2")
    r.expire("dst", 100)
    r.rename("src", "dst")
    assert r.ttl("dst") == -1  # the destination's TTL goes away
    assert r.get("dst") == b"2"


def test_rename_other_type(r, make_list):
    make_list("l", "a", "b")
    r.set("dst", "x")
    assert r.rename("l", "dst") is True
    assert r.type("dst") == b"list"
    assert r.exists("l") == 0


def test_renamenx(r):
    r.mset({"a": "1", "b": "2"})
    assert r.renamenx("a", "b") is False
    assert r.get("a") == b"1"
    assert r.renamenx("a", "a") is False
    assert r.renamenx("a", "c") is True
    assert r.get("c") == b"1"
    assert r.exists("a") == 0
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.renamenx("missing", "d")
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.renamenx("missing", "missing")


def test_copy(r):
    r.set("a", "1")
    assert r.copy("a", "b") is True
    assert r.get("b") == b"1"
    assert r.copy("a", "b") is False
    r.set("a", "2")
    assert r.copy("a", "b", replace=True) is True
    assert r.get("b") == b"2"
    assert r.copy("missing", "b") is False
    assert r.execute_command("COPY", "a", "b", "DB", "0") == 0
    assert r.execute_command("COPY", "a", "b", "DB", "0", "REPLACE") == 1
    assert r.execute_command("COPY", "a", "b", "REPLACE", "REPLACE") == 1


def test_copy_ttl_and_independence(r, make_list):
    r.set("a", "1", ex=100)
    r.copy("a", "b")
    assert 99 <= r.ttl("b") <= 100
    r.set("b", "x")
    r.expire("b", 100)
    r.set("c", "persistent")
    r.copy("c", "b", replace=True)
    assert r.ttl("b") == -1
    make_list("l", "x", "y")
    assert r.copy("l", "l2") is True
    assert r.type("l2") == b"list"


def test_copy_errors(r):
    r.set("a", "1")
    same = "^source and destination objects are the same$"
    with pytest.raises(redis.ResponseError, match=same):
        r.copy("a", "a")
    with pytest.raises(redis.ResponseError, match=same):
        r.execute_command("COPY", "a", "a", "DB", "0", "REPLACE")
    with pytest.raises(redis.ResponseError, match=same):
        r.copy("missing", "missing")
    # only database 0 exists, so every other index is out of range
    for db in ("1", "16", "-1"):
        with pytest.raises(redis.ResponseError, match="^DB index is out of range$"):
            r.execute_command("COPY", "a", "b", "DB", db)
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.execute_command("COPY", "a", "b", "DB", "abc")
    with pytest.raises(redis.ResponseError, match="^value is out of range, value must between -2147483648 and 2147483647$"):
        r.execute_command("COPY", "a", "b", "DB", "99999999999")
    for options in (("FOO",), ("DB",), ("DB", "0", "FOO"), ("FOO", "DB", "1")):
        with pytest.raises(redis.ResponseError, match=SYNTAX):
            r.execute_command("COPY", "a", "b", *options)
    assert r.exists("b") == 0


# -- OBJECT -----------------------------------------------------------------------------


@pytest.mark.parametrize("value,encoding", [
    ("1", b"int"), ("-9223372036854775808", b"int"), ("9223372036854775807", b"int"),
    ("9223372036854775808", b"embstr"), (" 1", b"embstr"), ("01", b"embstr"), ("-0", b"embstr"),
    ("", b"embstr"), ("abc", b"embstr"), ("a" * 44, b"embstr"), ("a" * 45, b"raw"), ("1" * 45, b"raw"),
])
def test_object_encoding_strings(r, value, encoding):
    r.set("k", value)
    assert r.object("encoding", "k") == encoding


def test_object_missing_key(r):
    for sub in ("ENCODING", "FREQ", "IDLETIME", "REFCOUNT"):
        assert r.execute_command("OBJECT", sub, "missing") is None


def test_object_refcount(r):
    r.set("k", "abc")
    assert r.object("refcount", "k") == 1
    r.set("k", "100")  # Redis shares the objects of the integers 0..9999
    assert r.object("refcount", "k") == 2**31 - 1
    r.set("k", "99999")
    assert r.object("refcount", "k") == 1
    r.set("k", "-1")
    assert r.object("refcount", "k") == 1


def test_object_idletime_and_freq(r):
    r.set("k", "v")
    # Whole seconds of a clock that moves at housekeeping ticks (as Redis's): a
    # tick crossing a second between the two commands makes it 1.
    assert r.object("idletime", "k") in (0, 1)
    with pytest.raises(redis.ResponseError, match="^An LFU maxmemory policy is not selected, access frequency not tracked"):
        r.object("freq", "k")


def test_object_help_and_errors(r):
    lines = r.execute_command("OBJECT", "HELP")
    assert len(lines) == 15
    assert lines[0] in (b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    with pytest.raises(redis.ResponseError, match=r"^unknown subcommand 'foo'. Try OBJECT HELP.$"):
        r.execute_command("OBJECT", "foo")
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'object\|encoding' command$"):
        r.execute_command("OBJECT", "ENCODING")
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'object\|help' command$"):
        r.execute_command("OBJECT", "HELP", "x")
