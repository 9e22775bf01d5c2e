"""Sorted-set commands through redis-py, in RESP3 and RESP2 (the ``r`` fixture)."""

from __future__ import annotations

import math

import pytest
import redis


def pairs(result) -> list[tuple[bytes, float]]:
    """WITHSCORES results as (member, score) tuples, whatever the protocol's shape.

    redis-py passes some replies through unparsed: a flat member, score list.
    """
    if result and not isinstance(result[0], (list, tuple)):
        result = list(zip(result[::2], result[1::2]))
    return [(m, float(s)) for m, s in result]


# -- ZADD, ZINCRBY ------------------------------------------------------------------------


def test_zadd_adds_and_updates(r):
    assert r.zadd("z", {"a": 1, "b": 2}) == 2
    assert r.zadd("z", {"a": 5, "c": 3}) == 1
    assert pairs(r.zrange("z", 0, -1, withscores=True)) == [(b"b", 2), (b"c", 3), (b"a", 5)]
    assert r.type("z") == b"zset"


def test_zadd_nx_xx_ch(r):
    r.zadd("z", {"a": 1})
    assert r.zadd("z", {"a": 9, "b": 2}, nx=True) == 1
    assert r.zscore("z", "a") == 1
    assert r.zadd("z", {"a": 9, "new": 2}, xx=True) == 0
    assert r.zscore("z", "a") == 9 and r.zscore("z", "new") is None
    assert r.zadd("z", {"a": 10, "b": 2, "c": 3}, ch=True) == 2
    assert r.zadd("missing", {"a": 1}, xx=True) == 0
    assert r.exists("missing") == 0


def test_zadd_gt_lt(r):
    r.zadd("z", {"a": 5})
    assert r.zadd("z", {"a": 4}, gt=True, ch=True) == 0
    assert r.zadd("z", {"a": 6}, gt=True, ch=True) == 1
    assert r.zadd("z", {"a": 7}, lt=True, ch=True) == 0
    assert r.zadd("z", {"a": 1, "b": 1}, lt=True, ch=True) == 2
    assert r.zscore("z", "a") == 1 and r.zscore("z", "b") == 1


def test_zadd_incr(r):
    assert r.zadd("z", {"a": 1.5}, incr=True) == 1.5
    assert r.zadd("z", {"a": 1}, incr=True) == 2.5
    assert r.zadd("z", {"a": 1}, incr=True, nx=True) is None
    assert r.zadd("z", {"nope": 1}, incr=True, xx=True) is None
    assert r.zadd("z", {"a": -1}, incr=True, gt=True) is None


def test_zadd_option_errors(r):
    with pytest.raises(redis.ResponseError, match="XX and NX options at the same time"):
        r.execute_command("ZADD", "z", "NX", "XX", 1, "a")
    with pytest.raises(redis.ResponseError, match="GT, LT, and/or NX options"):
        r.execute_command("ZADD", "z", "GT", "LT", 1, "a")
    with pytest.raises(redis.ResponseError, match="INCR option supports a single"):
        r.execute_command("ZADD", "z", "INCR", 1, "a", 2, "b")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("ZADD", "z", 1, "a", 2)
    with pytest.raises(redis.ResponseError, match="not a valid float"):
        r.execute_command("ZADD", "z", "nan", "a")
    assert r.exists("z") == 0


def test_incr_to_nan_is_an_error(r):
    r.zadd("z", {"a": math.inf})
    with pytest.raises(redis.ResponseError, match=r"resulting score is not a number \(NaN\)"):
        r.zincrby("z", -math.inf, "a")
    assert r.zscore("z", "a") == math.inf


def test_zincrby(r):
    assert r.zincrby("z", 2, "a") == 2
    assert r.zincrby("z", 0.5, "a") == 2.5
    with pytest.raises(redis.ResponseError, match="not a valid float"):
        r.zincrby("z", "x", "a")


def test_wrongtype(r):
    r.set("s", "v")
    for call in (
        lambda: r.zadd("s", {"a": 1}),
        lambda: r.zrange("s", 0, -1),
        lambda: r.zscore("s", "a"),
        lambda: r.zcard("s"),
        lambda: r.zpopmin("s"),
        lambda: r.zunion(["s"]),
        lambda: r.zscan("s"),
    ):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            call()


# -- reading ---------------------------------------------------------------------------------


def test_card_score_mscore_rank(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3})
    assert r.zcard("z") == 3 and r.zcard("nokey") == 0
    assert r.zscore("z", "b") == 2 and r.zscore("z", "x") is None
    assert r.zmscore("z", ["a", "x", "c"]) == [1, None, 3]
    assert r.zmscore("nokey", ["a"]) == [None]
    assert r.zrank("z", "c") == 2 and r.zrevrank("z", "c") == 0
    assert r.zrank("z", "x") is None and r.zrevrank("nokey", "a") is None


def test_zrem_deletes_empty_key(r):
    r.zadd("z", {"a": 1, "b": 2})
    assert r.zrem("z", "a", "x") == 1
    assert r.zrem("z", "b") == 1
    assert r.exists("z") == 0
    assert r.zrem("z", "b") == 0


def test_zcount_and_lexcount(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3})
    assert r.zcount("z", "-inf", "+inf") == 3
    assert r.zcount("z", "(1", 3) == 2
    r.zadd("lex", {"a": 0, "b": 0, "c": 0})
    assert r.zlexcount("lex", "[b", "+") == 2
    with pytest.raises(redis.ResponseError, match="min or max is not a float"):
        r.zcount("z", "x", 1)
    with pytest.raises(redis.ResponseError, match="min or max not valid string range item"):
        r.zlexcount("lex", "a", "+")


def test_zrange_variants(r):
    r.zadd("z", {m: i for i, m in enumerate("abcdef")})
    assert r.zrange("z", 1, 2) == [b"b", b"c"]
    assert r.zrange("z", -2, -1) == [b"e", b"f"]
    assert r.zrange("z", 0, 1, desc=True) == [b"f", b"e"]
    assert r.zrevrange("z", 0, 0) == [b"f"]
    assert r.zrange("z", 1, 3, byscore=True) == [b"b", b"c", b"d"]
    assert r.zrange("z", 3, 1, byscore=True, desc=True, offset=1, num=1) == [b"c"]
    assert r.zrangebyscore("z", "(1", 3) == [b"c", b"d"]
    assert r.zrevrangebyscore("z", 3, "-inf", start=0, num=2) == [b"d", b"c"]
    assert pairs(r.zrangebyscore("z", 0, 1, withscores=True)) == [(b"a", 0), (b"b", 1)]
    assert r.zrange("nokey", 0, -1) == []


def test_zrange_bylex(r):
    r.zadd("z", {m: 0 for m in "abcde"})
    assert r.zrangebylex("z", "[b", "(d") == [b"b", b"c"]
    assert r.zrevrangebylex("z", "+", "(c") == [b"e", b"d"]
    assert r.zrange("z", "[b", "[c", bylex=True) == [b"b", b"c"]
    assert r.zrangebylex("z", "-", "+", start=1, num=2) == [b"b", b"c"]


def test_zrange_option_errors(r):
    r.zadd("z", {"a": 1})
    with pytest.raises(redis.ResponseError, match="LIMIT is only supported"):
        r.execute_command("ZRANGE", "z", 0, -1, "LIMIT", 0, 1)
    with pytest.raises(redis.ResponseError, match="WITHSCORES not supported in combination with BYLEX"):
        r.execute_command("ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("ZRANGEBYSCORE", "z", 0, 1, "REV")


def test_zrangestore(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3})
    assert r.zrangestore("dst", "z", 0, 1) == 2
    assert pairs(r.zrange("dst", 0, -1, withscores=True)) == [(b"a", 1), (b"b", 2)]
    r.set("dst", "string")
    assert r.zrangestore("dst", "z", 10, 20) == 0
    assert r.exists("dst") == 0


def test_zremrange(r):
    r.zadd("z", {m: i for i, m in enumerate("abcdef")})
    assert r.zremrangebyrank("z", 0, 1) == 2
    assert r.zremrangebyscore("z", "(2", 4) == 2
    assert r.zrange("z", 0, -1) == [b"c", b"f"]
    r.zadd("lex", {m: 0 for m in "abc"})
    assert r.zremrangebylex("lex", "-", "+") == 3
    assert r.exists("lex") == 0


# -- popping and random members ---------------------------------------------------------------


def test_zpopmin_zpopmax(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4})
    assert pairs(r.zpopmin("z")) == [(b"a", 1)]
    assert pairs(r.zpopmax("z", 2)) == [(b"d", 4), (b"c", 3)]
    assert pairs(r.zpopmin("z", 5)) == [(b"b", 2)]
    assert r.exists("z") == 0
    assert r.zpopmin("z") == []
    with pytest.raises(redis.ResponseError, match="must be positive"):
        r.zpopmin("z", -1)


def test_zmpop(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3})
    key, popped = r.zmpop(2, ["nokey", "z"], max=True, count=2)
    assert key == b"z" and pairs(popped) == [(b"c", 3), (b"b", 2)]
    assert r.zmpop(1, ["nokey"], min=True) is None
    with pytest.raises(redis.ResponseError, match="numkeys should be greater than 0"):
        r.execute_command("ZMPOP", 0, "z", "MIN")


def test_zrandmember(r):
    r.zadd("z", {"a": 1, "b": 2, "c": 3})
    assert r.zrandmember("z") in (b"a", b"b", b"c")
    assert r.zrandmember("z", 10) == [b"c", b"b", b"a"]
    picked = r.zrandmember("z", 2)
    assert len(set(picked)) == 2
    assert len(r.zrandmember("z", -7)) == 7
    assert r.zrandmember("nokey") is None and r.zrandmember("nokey", 3) == []
    assert pairs(r.zrandmember("z", 5, withscores=True)) == [(b"c", 3), (b"b", 2), (b"a", 1)]


# -- set operations ----------------------------------------------------------------------------


def test_union_inter_diff(r):
    r.zadd("a", {"x": 1, "y": 2, "z": 3})
    r.zadd("b", {"y": 10, "z": 20, "w": 30})
    assert pairs(r.zunion(["a", "b"], withscores=True)) == [
        (b"x", 1), (b"y", 12), (b"z", 23), (b"w", 30)
    ]
    assert pairs(r.zinter({"a": 2, "b": 1}, aggregate="MAX", withscores=True)) == [(b"y", 10), (b"z", 20)]
    assert r.zdiff(["a", "b"]) == [b"x"]
    assert r.zunionstore("out", ["a", "b"], aggregate="MIN") == 4
    assert pairs(r.zrange("out", 0, -1, withscores=True)) == [(b"x", 1), (b"y", 2), (b"z", 3), (b"w", 30)]
    assert r.zinterstore("out", ["a", "nokey"]) == 0
    assert r.exists("out") == 0
    assert r.zdiffstore("out", ["b", "a"]) == 1
    assert r.zintercard(2, ["a", "b"]) == 2
    assert r.zintercard(2, ["a", "b"], limit=1) == 1


def test_set_operation_errors(r):
    with pytest.raises(redis.ResponseError, match="at least 1 input key is needed for 'zunionstore' command"):
        r.execute_command("ZUNIONSTORE", "out", 0, "a")
    with pytest.raises(redis.ResponseError, match="weight value is not a float"):
        r.execute_command("ZUNION", 1, "a", "WEIGHTS", "x")
    with pytest.raises(redis.ResponseError, match="LIMIT can't be negative"):
        r.execute_command("ZINTERCARD", 1, "a", "LIMIT", -1)


def test_plain_sets_are_inputs_with_score_one(r):
    r.sadd("s", "x", "q")
    r.zadd("a", {"x": 5, "y": 2})
    assert pairs(r.zunion(["a", "s"], withscores=True)) == [(b"q", 1), (b"y", 2), (b"x", 6)]
    assert pairs(r.zinter(["s", "a"], withscores=True)) == [(b"x", 6)]
    assert r.zdiff(["s", "a"]) == [b"q"]


# -- scanning, encodings, transactions -------------------------------------------------------------


def test_zscan_small_and_large(r):
    r.zadd("small", {"a": 1, "b": 2.5})
    assert r.zscan("small") == (0, [(b"a", 1.0), (b"b", 2.5)])
    r.zadd("big", {f"m{i}": i % 7 for i in range(500)})
    found = dict(r.zscan_iter("big", count=20))
    assert len(found) == 500 and found[b"m13"] == 6
    assert set(dict(r.zscan_iter("big", match="m1*"))) == {f"m{i}".encode() for i in range(500) if str(i).startswith("1")}


def test_object_encoding_and_copy(r):
    r.zadd("z", {f"m{i}": i for i in range(128)})
    assert r.object("encoding", "z") == b"listpack"
    r.zadd("z", {"one-more": 1})
    assert r.object("encoding", "z") == b"skiplist"
    assert r.copy("z", "z2")
    assert r.object("encoding", "z2") == b"skiplist" and r.zcard("z2") == 129
    r.zadd("z2", {"extra": 0})
    assert r.zcard("z") == 129


def test_negative_zero_depends_on_encoding(r):
    r.zadd("lp", {"a": -0.0})
    assert r.execute_command("ZSCORE", "lp", "a") in (b"0", 0.0)
    assert math.copysign(1, float(r.zscore("lp", "a"))) == 1
    r.zadd("sk", {"x" * 65: 1, "a": -0.0})
    assert math.copysign(1, float(r.zscore("sk", "a"))) == -1


def test_watch_sees_zset_changes(r, node):
    r.zadd("z", {"a": 1})
    other = node.client(protocol=2)
    try:
        with r.pipeline() as pipe:
            pipe.watch("z")
            other.zincrby("z", 1, "a")
            pipe.multi()
            pipe.zcard("z")
            with pytest.raises(redis.WatchError):
                pipe.execute()
    finally:
        other.close()
