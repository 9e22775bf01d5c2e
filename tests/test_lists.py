"""List commands against a live node through redis-py, in RESP3 and RESP2.

Expected replies and error texts are those of Redis 7.0 (the conformance scripts
``lists.txt`` compare the raw bytes with a real server; these tests pin the
behaviour down through an ordinary client and check what only the node shows).
"""

from __future__ import annotations

import pytest
import redis

from respkv.commands.lists import _normalize_range
from respkv.keyspace.values import ListValue

WRONGTYPE = "^WRONGTYPE Operation against a key holding the wrong kind of value$"
SYNTAX = "^syntax error$"
NOT_INTEGER = "^value is not an integer or out of range$"
POSITIVE = "^value is out of range, must be positive$"


def items(r, key):
    return r.lrange(key, 0, -1)


# -- pushes and pops -------------------------------------------------------------------


def test_push_order_and_length(r):
    assert r.lpush("l", "a", "b") == 2
    assert r.rpush("l", "c", "d") == 4
    assert items(r, "l") == [b"b", b"a", b"c", b"d"]
    assert r.llen("l") == 4
    assert r.type("l") == b"list"
    assert r.object("encoding", "l") == b"quicklist"


def test_pushx_only_on_existing_lists(r):
    assert r.lpushx("l", "a") == 0
    assert r.rpushx("l", "a", "b") == 0
    assert r.exists("l") == 0
    r.rpush("l", "m")
    assert r.lpushx("l", "x", "y") == 3
    assert r.rpushx("l", "z") == 4
    assert items(r, "l") == [b"y", b"x", b"m", b"z"]


def test_binary_elements_round_trip(r):
    r.rpush("l", b"\x00\xff", b"", b"a b\r\n")
    assert items(r, "l") == [b"\x00\xff", b"", b"a b\r\n"]


def test_pop_single_and_count(r):
    r.rpush("l", *"abcdef")
    assert r.lpop("l") == b"a"
    assert r.rpop("l") == b"f"
    assert r.lpop("l", 2) == [b"b", b"c"]
    assert r.rpop("l", 1) == [b"e"]
    assert r.lpop("l", 0) == []
    assert r.rpop("l", 10) == [b"d"]
    assert r.exists("l") == 0


def test_pop_missing_key(r):
    assert r.lpop("missing") is None
    assert r.rpop("missing", 3) is None
    assert r.lpop("missing", 0) is None


def test_pop_count_errors(r):
    r.rpush("l", "a")
    for bad in ("-1", "abc", "1.5", ""):
        with pytest.raises(redis.ResponseError, match=POSITIVE):
            r.execute_command("LPOP", "l", bad)
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'rpop' command$"):
        r.execute_command("RPOP", "l", "1", "2")


def test_wrongtype_everywhere(r):
    r.set("s", "v")
    calls = [
        ("LPUSH", "s", "a"), ("RPUSHX", "s", "a"), ("LPOP", "s"), ("RPOP", "s", "1"),
        ("LLEN", "s"), ("LRANGE", "s", "0", "-1"), ("LINDEX", "s", "0"), ("LSET", "s", "0", "x"),
        ("LREM", "s", "0", "x"), ("LTRIM", "s", "0", "1"), ("LINSERT", "s", "BEFORE", "a", "b"),
        ("LPOS", "s", "a"), ("LMOVE", "s", "d", "LEFT", "LEFT"), ("RPOPLPUSH", "s", "d"),
        ("LMPOP", "1", "s", "LEFT"),
    ]
    for call in calls:
        with pytest.raises(redis.ResponseError, match=WRONGTYPE):
            r.execute_command(*call)
    assert r.get("s") == b"v"


# -- reading ---------------------------------------------------------------------------


def test_lrange_index_rules(r):
    r.rpush("l", *"0123456789")
    assert r.lrange("l", 0, 2) == [b"0", b"1", b"2"]
    assert r.lrange("l", -3, -1) == [b"7", b"8", b"9"]
    assert r.lrange("l", -100, 1) == [b"0", b"1"]
    assert r.lrange("l", 8, 100) == [b"8", b"9"]
    assert r.lrange("l", 5, 4) == []
    assert r.lrange("l", 10, 20) == []
    assert r.lrange("missing", 0, -1) == []
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.lrange("l", "a", 1)


@pytest.mark.parametrize(
    "start, end, length, expected",
    [
        (0, -1, 5, (0, 4)),
        (-2, -1, 5, (3, 4)),
        (-10, 2, 5, (0, 2)),
        (3, 1, 5, None),
        (5, 9, 5, None),
        (2, 99, 5, (2, 4)),
        (0, -6, 5, None),
        (0, 0, 0, None),
    ],
)
def test_normalize_range(start, end, length, expected):
    assert _normalize_range(start, end, length) == expected


def test_lrange_from_either_end_of_a_long_list(r):
    values = [str(i).encode() for i in range(1000)]
    r.rpush("l", *values)
    assert r.lrange("l", 990, 995) == values[990:996]
    assert r.lrange("l", 3, 7) == values[3:8]
    assert r.lrange("l", -501, -499) == values[-501:-498]


def test_lindex(r):
    r.rpush("l", "a", "b", "c")
    assert r.lindex("l", 0) == b"a"
    assert r.lindex("l", -1) == b"c"
    assert r.lindex("l", 3) is None
    assert r.lindex("l", -4) is None
    assert r.lindex("missing", 0) is None
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.lindex("l", "x")
    # The key is looked up before the index is parsed.
    assert r.lindex("missing", "x") is None


def test_lpos(r):
    r.rpush("l", "a", "b", "c", "1", "2", "3", "c", "c")
    assert r.lpos("l", "c") == 2
    assert r.lpos("l", "c", rank=2) == 6
    assert r.lpos("l", "c", rank=-1) == 7
    assert r.lpos("l", "c", count=0) == [2, 6, 7]
    assert r.lpos("l", "c", rank=-1, count=2) == [7, 6]
    assert r.lpos("l", "c", maxlen=2) is None
    assert r.lpos("l", "c", count=0, maxlen=7) == [2, 6]
    assert r.lpos("l", "zz") is None
    assert r.lpos("l", "zz", count=1) == []
    assert r.lpos("missing", "a") is None
    assert r.lpos("missing", "a", count=0) == []
    with pytest.raises(redis.ResponseError, match="^RANK can't be zero"):
        r.lpos("l", "c", rank=0)
    with pytest.raises(redis.ResponseError, match="^COUNT can't be negative$"):
        r.lpos("l", "c", count=-1)
    with pytest.raises(redis.ResponseError, match="^MAXLEN can't be negative$"):
        r.lpos("l", "c", maxlen=-1)
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LPOS", "l", "c", "RANK")


# -- editing ---------------------------------------------------------------------------


def test_lset(r):
    r.rpush("l", "a", "b", "c")
    assert r.lset("l", 1, "B") is True
    assert r.lset("l", -1, "C") is True
    assert items(r, "l") == [b"a", b"B", b"C"]
    with pytest.raises(redis.ResponseError, match="^index out of range$"):
        r.lset("l", 3, "x")
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.lset("missing", 0, "x")
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.execute_command("LSET", "missing", "notanumber", "x")


def test_lrem_directions(r):
    r.rpush("l", "a", "b", "a", "c", "a")
    assert r.lrem("l", 1, "a") == 1
    assert items(r, "l") == [b"b", b"a", b"c", b"a"]
    assert r.lrem("l", -1, "a") == 1
    assert items(r, "l") == [b"b", b"a", b"c"]
    assert r.lrem("l", 0, "zz") == 0
    assert r.lrem("l", 0, "a") == 1
    assert r.lrem("l", 0, "b") == 1
    assert r.lrem("l", -5, "c") == 1
    assert r.exists("l") == 0
    assert r.lrem("l", 0, "a") == 0


def test_ltrim(r):
    r.rpush("l", *"0123456789")
    assert r.ltrim("l", 1, -2) is True
    assert items(r, "l") == [c.encode() for c in "12345678"]
    r.ltrim("l", 2, 3)
    assert items(r, "l") == [b"3", b"4"]
    r.ltrim("l", 5, 10)
    assert r.exists("l") == 0
    assert r.ltrim("missing", 0, 1) is True
    with pytest.raises(redis.ResponseError, match=NOT_INTEGER):
        r.ltrim("l", "x", 1)


def test_ltrim_keeps_ttl(r):
    r.rpush("l", *"abc")
    r.expire("l", 100)
    r.ltrim("l", 0, 0)
    assert 0 < r.ttl("l") <= 100


def test_linsert(r):
    r.rpush("l", "a", "b")
    assert r.linsert("l", "BEFORE", "b", "x") == 3
    assert r.linsert("l", "after", "b", "y") == 4
    assert items(r, "l") == [b"a", b"x", b"b", b"y"]
    assert r.linsert("l", "BEFORE", "nope", "z") == -1
    assert r.linsert("missing", "BEFORE", "a", "z") == 0
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LINSERT", "l", "MIDDLE", "a", "b")


# -- moves and multi-key pops ---------------------------------------------------------


def test_lmove_and_rpoplpush(r):
    r.rpush("src", "1", "2", "3")
    assert r.lmove("src", "dst", "LEFT", "RIGHT") == b"1"
    assert r.lmove("src", "dst", "RIGHT", "LEFT") == b"3"
    assert r.rpoplpush("src", "dst") == b"2"
    assert r.exists("src") == 0
    assert items(r, "dst") == [b"2", b"3", b"1"]
    assert r.lmove("missing", "dst", "LEFT", "LEFT") is None
    assert r.rpoplpush("missing", "dst") is None
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LMOVE", "dst", "x", "UP", "LEFT")


def test_lmove_rotation_on_one_key(r):
    r.rpush("l", "a", "b", "c")
    assert r.lmove("l", "l", "LEFT", "RIGHT") == b"a"
    assert items(r, "l") == [b"b", b"c", b"a"]
    r.delete("l")
    r.rpush("l", "only")
    assert r.rpoplpush("l", "l") == b"only"
    assert items(r, "l") == [b"only"]


def test_lmove_wrongtype_destination_pops_nothing(r):
    r.rpush("src", "a")
    r.set("s", "v")
    with pytest.raises(redis.ResponseError, match=WRONGTYPE):
        r.lmove("src", "s", "LEFT", "LEFT")
    assert items(r, "src") == [b"a"]


def test_lmpop(r):
    r.rpush("b", "b1", "b2", "b3")
    assert r.lmpop(2, "a", "b", direction="LEFT") == [b"b", [b"b1"]]
    assert r.lmpop(2, "a", "b", direction="RIGHT", count=5) == [b"b", [b"b3", b"b2"]]
    assert r.exists("b") == 0
    assert r.lmpop(1, "a", direction="LEFT") is None
    with pytest.raises(redis.ResponseError, match="^numkeys should be greater than 0$"):
        r.execute_command("LMPOP", "0", "a", "LEFT")
    with pytest.raises(redis.ResponseError, match="^count should be greater than 0$"):
        r.execute_command("LMPOP", "1", "a", "LEFT", "COUNT", "0")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LMPOP", "3", "a", "LEFT")
    with pytest.raises(redis.ResponseError, match=SYNTAX):
        r.execute_command("LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "1")


# -- generic commands and the value class --------------------------------------------


def test_copy_is_independent(r):
    r.rpush("l", "a", "b")
    assert r.copy("l", "l2") is True
    r.rpush("l2", "c")
    assert items(r, "l") == [b"a", b"b"]
    assert items(r, "l2") == [b"a", b"b", b"c"]


def test_list_value_is_a_deque():
    value = ListValue((b"a",))
    value.appendleft(b"z")
    assert list(value) == [b"z", b"a"]
    assert not hasattr(value, "__dict__")


def test_keyspace_stays_consistent_after_emptying(node, r):
    r.rpush("l", "a")
    r.lpop("l")
    assert r.exists("l") == 0
    assert node.node.keyspace.get(b"l") is None
