"""The sorted-set value on its own: ordering, ranges, encodings, scanning."""

from __future__ import annotations

import math
import random

from respkv.keyspace.values import TYPE_NAMES
from respkv.keyspace.zset import (
    LEX_MAX,
    LEX_MIN,
    LexRange,
    ScoreRange,
    SortedSet,
    listpack_score_text,
    parse_lex_range,
    parse_score_range,
    score_text,
)


def make(*pairs) -> SortedSet:
    zs = SortedSet()
    for score, member in pairs:
        zs.set_score(member, score)
    return zs


def members(zs: SortedSet, lo: int, hi: int, reverse: bool = False) -> list[bytes]:
    return [m for _, m in zs.span(lo, hi, reverse)]


def test_registered_as_zset():
    assert TYPE_NAMES[SortedSet] == b"zset"


def test_order_is_score_then_member_bytes():
    zs = make((2, b"b"), (1, b"z"), (2, b"a"), (2, b"ab"), (2, b""), (2, b"\xff"), (-math.inf, b"low"))
    assert [m for _, m in zs] == [b"low", b"z", b"", b"a", b"ab", b"b", b"\xff"]


def test_update_moves_member_and_keeps_one_entry():
    zs = make((1, b"a"), (2, b"b"))
    zs.set_score(b"a", 3)
    assert list(zs) == [(2, b"b"), (3, b"a")]
    assert len(zs) == 2 and zs.score(b"a") == 3


def test_remove_and_contains():
    zs = make((1, b"a"), (2, b"b"))
    assert zs.remove(b"a") and not zs.remove(b"a")
    assert b"a" not in zs and b"b" in zs
    assert list(zs) == [(2, b"b")]


def test_rank_both_directions():
    zs = make((10, b"a"), (20, b"b"), (30, b"c"))
    assert [zs.rank(m) for m in (b"a", b"b", b"c")] == [0, 1, 2]
    assert [zs.rank(m, reverse=True) for m in (b"a", b"b", b"c")] == [2, 1, 0]
    assert zs.rank(b"nope") is None


def test_span_forward_and_reverse():
    zs = make(*[(i, b"m%d" % i) for i in range(5)])
    assert members(zs, 1, 3) == [b"m1", b"m2"]
    assert members(zs, 0, 2, reverse=True) == [b"m4", b"m3"]
    assert members(zs, 3, 3) == []


def test_negative_zero_equals_zero_in_order():
    zs = make((0.0, b"b"))
    zs.listpack = False  # a skiplist keeps the sign
    zs.set_score(b"a", -0.0)
    assert [m for _, m in zs] == [b"a", b"b"]
    assert math.copysign(1, zs.score(b"a")) == -1


def test_listpack_stores_negative_zero_as_zero():
    zs = make((-0.0, b"a"))
    assert zs.listpack and math.copysign(1, zs.score(b"a")) == 1


def test_conversion_keeps_negative_zero_of_the_converting_insert():
    zs = make(*[(i, b"m%d" % i) for i in range(128)])
    assert zs.listpack
    zs.set_score(b"new", -0.0)
    assert not zs.listpack
    assert math.copysign(1, zs.score(b"new")) == -1


def test_encoding_converts_at_129_members_and_never_back():
    zs = make(*[(i, b"m%d" % i) for i in range(128)])
    assert zs.encoding == b"listpack"
    zs.set_score(b"one-more", 1)
    assert zs.encoding == b"skiplist"
    zs.pop(100, highest=False)
    assert zs.encoding == b"skiplist"


def test_encoding_converts_on_long_member():
    zs = make((1, b"x" * 64))
    assert zs.listpack
    zs.set_score(b"y" * 65, 1)
    assert not zs.listpack


def test_from_scores_picks_the_encoding_of_the_result():
    small = SortedSet.from_scores({b"a": -0.0, b"b": 1.0})
    assert small.listpack and math.copysign(1, small.score(b"a")) == 1
    big = SortedSet.from_scores({b"m%d" % i: float(i) for i in range(129)})
    assert not big.listpack
    long_member = SortedSet.from_scores({b"x" * 65: -0.0})
    assert not long_member.listpack and math.copysign(1, long_member.score(b"x" * 65)) == -1


def test_copy_is_independent():
    zs = make((1, b"a"))
    zs.listpack = False
    twin = zs.copy()
    twin.set_score(b"b", 2)
    assert len(zs) == 1 and len(twin) == 2 and not twin.listpack


def test_pop_from_both_ends():
    zs = make((1, b"a"), (2, b"b"), (3, b"c"))
    assert zs.pop(2, highest=True) == [(3, b"c"), (2, b"b")]
    assert zs.pop(5, highest=False) == [(1, b"a")]
    assert len(zs) == 0 and not zs.scores


def test_remove_span():
    zs = make(*[(i, b"m%d" % i) for i in range(6)])
    assert zs.remove_span(1, 4) == 3
    assert [m for _, m in zs] == [b"m0", b"m4", b"m5"]
    assert set(zs.scores) == {b"m0", b"m4", b"m5"}
    assert zs.remove_span(2, 2) == 0


# -- score ranges --------------------------------------------------------------------------


def score_members(zs, lo, hi):
    rng = parse_score_range(lo, hi)
    a, b = zs.score_span(rng)
    return [m for _, m in zs.span(a, b)]


def test_score_range_bounds():
    zs = make((-math.inf, b"ninf"), (1, b"a"), (2, b"b"), (2, b"b2"), (3, b"c"), (math.inf, b"pinf"))
    assert score_members(zs, b"2", b"3") == [b"b", b"b2", b"c"]
    assert score_members(zs, b"(2", b"3") == [b"c"]
    assert score_members(zs, b"2", b"(3") == [b"b", b"b2"]
    assert score_members(zs, b"-inf", b"+inf") == [b"ninf", b"a", b"b", b"b2", b"c", b"pinf"]
    assert score_members(zs, b"(-inf", b"(inf") == [b"a", b"b", b"b2", b"c"]
    assert score_members(zs, b"3", b"2") == []
    assert score_members(zs, b"(2", b"2") == []
    assert score_members(zs, b"(inf", b"+inf") == []


def test_score_range_around_zero():
    zs = make((0.0, b"z"), (5e-324, b"tiny"), (-5e-324, b"ntiny"))
    assert score_members(zs, b"(0", b"1") == [b"tiny"]
    assert score_members(zs, b"-1", b"(-0") == [b"ntiny"]
    assert score_members(zs, b"-0", b"0") == [b"z"]


def test_score_range_parsing_follows_strtod():
    parse = parse_score_range
    assert parse(b"", b"1").min == 0.0
    r = parse(b"(", b"1")
    assert r.min == 0.0 and r.minex
    assert parse(b" 1", b"2").min == 1.0
    assert parse(b"   ", b"2") is None
    assert parse(b"0x10", b"0x1p4").max == 16.0
    assert parse(b"1e400", b"-1e400").min == math.inf
    assert parse(b"1e-400", b"1").min == 0.0
    assert parse(b"-Infinity", b"inf").min == -math.inf
    assert parse(b"1\x00junk", b"2").min == 1.0
    for bad in (b"nan", b"a", b"1e", b"0x", b"-", b"((1", b"1 ", b"infinit"):
        assert parse(bad, b"1") is None, bad


def test_score_range_contains():
    r = ScoreRange(1.0, True, 2.0, False)
    assert not r.contains(1.0) and r.contains(1.5) and r.contains(2.0) and not r.contains(2.5)


# -- lex ranges ----------------------------------------------------------------------------


def lex_members(zs, lo, hi, reverse=False):
    rng = parse_lex_range(lo, hi)
    a, b = zs.lex_span(rng, reverse)
    return [m for _, m in zs.span(a, b)]


def test_lex_range_on_equal_scores():
    zs = make(*[(0, m) for m in (b"a", b"b", b"c", b"d", b"", b"aa")])
    assert lex_members(zs, b"-", b"+") == [b"", b"a", b"aa", b"b", b"c", b"d"]
    assert lex_members(zs, b"[b", b"[d") == [b"b", b"c", b"d"]
    assert lex_members(zs, b"(b", b"(d") == [b"c"]
    assert lex_members(zs, b"[a", b"(b") == [b"a", b"aa"]
    assert lex_members(zs, b"[", b"(a") == [b""]
    assert lex_members(zs, b"+", b"-") == []
    assert lex_members(zs, b"-", b"-") == []
    assert lex_members(zs, b"[b", b"[b") == [b"b"]
    assert lex_members(zs, b"(b", b"[b") == []


def test_lex_range_parsing():
    assert parse_lex_range(b"-", b"+").min is LEX_MIN
    assert parse_lex_range(b"-", b"+").max is LEX_MAX
    assert parse_lex_range(b"-\x00x", b"+").min is LEX_MIN
    for bad in (b"", b"a", b"+a", b"-b"):
        assert parse_lex_range(bad, b"+") is None, bad
    r = parse_lex_range(b"(a", b"[b")
    assert (r.min, r.minex, r.max, r.maxex) == (b"a", True, b"b", False)


def test_lex_range_with_mixed_scores_scans_like_a_listpack():
    zs = make((1, b"a"), (2, b"c"), (3, b"b"), (4, b"d"))
    assert lex_members(zs, b"[a", b"[b") == [b"a"]
    assert lex_members(zs, b"[b", b"[c") == [b"c", b"b"]
    assert lex_members(zs, b"[a", b"[b", reverse=True) == [b"a", b"c", b"b"]


def test_lex_range_is_empty_rules():
    assert LexRange(LEX_MAX, True, LEX_MIN, True).is_empty()
    assert LexRange(b"b", False, b"a", False).is_empty()
    assert not LexRange(b"a", False, b"a", False).is_empty()
    assert LexRange(b"a", True, b"a", False).is_empty()


def test_lex_bisect_matches_linear_scan_on_random_data():
    rnd = random.Random(7)
    words = sorted({bytes(rnd.choice(b"abc") for _ in range(rnd.randint(0, 3))) for _ in range(40)})
    zs = make(*[(0, w) for w in words])
    bounds = [b"-", b"+"] + [p + w for w in words[:10] for p in (b"[", b"(")]
    for lo in bounds:
        for hi in bounds:
            rng = parse_lex_range(lo, hi)
            expected = [w for w in words if rng.above_min(w) and rng.below_max(w)]
            if rng.is_empty():
                expected = []
            assert lex_members(zs, lo, hi) == expected, (lo, hi)


# -- text, random picks, scanning ------------------------------------------------------------


def test_score_text():
    assert score_text(1.0) == b"1"
    assert score_text(0.1) == b"0.10000000000000001"
    assert score_text(-0.0) == b"-0"
    assert score_text(math.inf) == b"inf" and score_text(-math.inf) == b"-inf"
    assert score_text(1e17) == b"1e+17"


def test_listpack_score_text_prints_integers_up_to_2_62():
    assert listpack_score_text(123456789012345678.0) == b"123456789012345680"
    assert listpack_score_text(float(2**62)) == b"4611686018427387904"
    assert listpack_score_text(float(2**62 + 1024)) == b"4.6116860184273889e+18"
    assert listpack_score_text(-0.0) == b"0"
    assert listpack_score_text(0.5) == b"0.5"


def test_random_picks_are_members():
    zs = make(*[(i, b"m%d" % i) for i in range(10)])
    assert zs.random_element() in list(zs)
    picked = zs.random_distinct(5)
    assert len(picked) == 5 and len(set(picked)) == 5


def test_scan_of_listpack_is_whole():
    zs = make((1, b"a"), (2, b"b"))
    assert zs.scan(0, 1) == (0, [(1, b"a"), (2, b"b")])
    assert zs.scan(12345, 1)[0] == 0


def full_scan(zs, count):
    cursor, seen, calls = 0, [], 0
    while True:
        cursor, page = zs.scan(cursor, count)
        seen.extend(m for _, m in page)
        calls += 1
        if cursor == 0:
            return seen, calls


def test_scan_of_skiplist_pages_in_score_order():
    zs = make(*[(i // 3, b"m%03d" % i) for i in range(300)])
    assert not zs.listpack
    seen, calls = full_scan(zs, 10)
    assert sorted(seen) == sorted(zs.scores) and len(seen) == 300
    assert calls > 10


def test_scan_returns_members_present_throughout_despite_deletions():
    zs = make(*[(float(i), b"m%03d" % i) for i in range(300)])
    cursor, page = zs.scan(0, 50)
    seen = {m for _, m in page}
    for i in range(0, 40):  # delete members already returned
        zs.remove(b"m%03d" % i)
    while cursor:
        cursor, page = zs.scan(cursor, 50)
        seen.update(m for _, m in page)
    assert {b"m%03d" % i for i in range(40, 300)} <= seen


def test_scan_never_splits_equal_scores():
    zs = make(*[(0.0, b"m%03d" % i) for i in range(200)])
    assert zs.scan(0, 10) == (0, list(zs))


def test_scan_cursor_with_extreme_scores():
    zs = make(*[(float(i), b"m%03d" % i) for i in range(150)])
    zs.set_score(b"low", -math.inf)
    zs.set_score(b"high", math.inf)
    zs.set_score(b"nz", -0.0)
    seen, _ = full_scan(zs, 7)
    assert sorted(seen) == sorted(zs.scores)
