"""Sorted-set range commands: ZRANGE and its older spellings, ZRANGESTORE, ZREMRANGEBY*.

A range is a span of ranks, scores or members (lexicographical), with Redis 7.0's
clamping of negative and out-of-range ranks and its LIMIT rules; ranges are parsed
before the key is looked up, so a syntax error beats WRONGTYPE.  Replies use the
sorted-set reply helpers of :mod:`respkv.commands.zsets`.
"""

from __future__ import annotations

from ..errors import SYNTAX
from ..keyspace.zset import SortedSet, parse_lex_range, parse_score_range
from ..protocol import reply
from .args import int_arg
from .table import CommandError
from .zsets import (
    LEX_RANGE_ERROR,
    SCORE_RANGE_ERROR,
    after_change,
    elements_reply,
    read_zset,
    store_scores,
    write_zset,
    zset_command,
)


# -- ranges ---------------------------------------------------------------------------------

_RANK, _SCORE, _LEX = "rank", "score", "lex"


def _rank_bounds(start: int, end: int, n: int) -> tuple[int, int]:
    """Redis's clamping of a (possibly negative) inclusive rank range → ``[lo, hi)``."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        return 0, 0
    if end >= n:
        end = n - 1
    return start, end + 1


def _limit_span(lo: int, hi: int, offset: int, count: int) -> tuple[int, int]:
    """Apply LIMIT to ``[lo, hi)``: a negative offset selects nothing, a negative
    count means no limit."""
    if offset < 0:
        return lo, lo
    lo = min(lo + offset, hi)
    if count >= 0:
        hi = min(hi, lo + count)
    return lo, hi


def _select(zs: SortedSet, kind: str, rng, reverse: bool, limit) -> list[tuple[float, bytes]]:
    """The elements a ZRANGE-style request selects, in reply order."""
    n = len(zs)
    if kind == _RANK:
        lo, hi = _rank_bounds(rng[0], rng[1], n)
        return zs.span(lo, hi, reverse)
    lo, hi = zs.score_span(rng) if kind == _SCORE else zs.lex_span(rng, reverse)
    if reverse:
        lo, hi = n - hi, n - lo  # counted from the top
    if limit is not None:
        lo, hi = _limit_span(lo, hi, limit[0], limit[1])
    return zs.span(lo, hi, reverse)


def _zrange_generic(s, args, first: int, store: bool, kind: str | None, reverse: bool | None):
    """ZRANGE and all its older spellings; ``first`` is the index of the source key.

    ``kind``/``reverse`` are fixed by the legacy commands (ZRANGEBYSCORE, ZREVRANGE,
    ...); ZRANGE and ZRANGESTORE leave them ``None`` and take BYSCORE/BYLEX/REV.
    """
    withscores = False
    limit = None
    i, n = first + 3, len(args)
    while i < n:
        opt = args[i].upper()
        if opt == b"WITHSCORES" and not store:
            withscores = True
        elif opt == b"LIMIT" and n - i - 1 >= 2:
            limit = (int_arg(args[i + 1]), int_arg(args[i + 2]))
            i += 2
        elif opt == b"REV" and reverse is None:
            reverse = True
        elif opt == b"BYSCORE" and kind is None:
            kind = _SCORE
        elif opt == b"BYLEX" and kind is None:
            kind = _LEX
        else:
            raise CommandError(SYNTAX)
        i += 1
    kind = kind or _RANK
    reverse = bool(reverse)
    if limit is not None and kind == _RANK:
        raise CommandError(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if withscores and kind == _LEX:
        raise CommandError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    lo_raw, hi_raw = args[first + 1], args[first + 2]
    if reverse and kind != _RANK:
        lo_raw, hi_raw = hi_raw, lo_raw  # given as max, min
    if kind == _RANK:
        rng = (int_arg(lo_raw), int_arg(hi_raw))
    elif kind == _SCORE:
        rng = parse_score_range(lo_raw, hi_raw)
        if rng is None:
            raise CommandError(SCORE_RANGE_ERROR)
    else:
        rng = parse_lex_range(lo_raw, hi_raw)
        if rng is None:
            raise CommandError(LEX_RANGE_ERROR)
    zs = read_zset(s, args[first])
    elements = [] if zs is None else _select(zs, kind, rng, reverse, limit)
    if store:
        return store_scores(s, args[1], {m: sc for sc, m in elements})
    return elements_reply(s, elements, withscores)


@zset_command("zrange", "Returns members of a sorted set within a rank, score or lexicographical range.")
def zrange(s, args):
    return _zrange_generic(s, args, 1, False, None, None)


@zset_command("zrangestore", "Stores a range of members of a sorted set in another key.")
def zrangestore(s, args):
    return _zrange_generic(s, args, 2, True, None, None)


@zset_command("zrangebyscore", "Returns members of a sorted set within a score range.")
def zrangebyscore(s, args):
    return _zrange_generic(s, args, 1, False, _SCORE, False)


@zset_command("zrevrangebyscore", "Returns members of a sorted set within a score range, highest first.")
def zrevrangebyscore(s, args):
    return _zrange_generic(s, args, 1, False, _SCORE, True)


@zset_command("zrangebylex", "Returns members of a sorted set within a lexicographical range.")
def zrangebylex(s, args):
    return _zrange_generic(s, args, 1, False, _LEX, False)


@zset_command("zrevrangebylex", "Returns members of a sorted set within a lexicographical range, highest first.")
def zrevrangebylex(s, args):
    return _zrange_generic(s, args, 1, False, _LEX, True)


@zset_command("zrevrange", "Returns members of a sorted set within a rank range, highest first.")
def zrevrange(s, args):
    return _zrange_generic(s, args, 1, False, _RANK, True)


# -- removing ranges -------------------------------------------------------------------------


def _remove_span(s, key: bytes, span_of) -> bytes:
    zs = write_zset(s, key)
    if zs is None:
        return reply.ZERO
    lo, hi = span_of(zs)
    removed = zs.remove_span(lo, hi)
    if removed:
        after_change(s, key, zs)
    return reply.integer(removed)


@zset_command("zremrangebyrank", "Removes the members of a sorted set within a rank range.")
def zremrangebyrank(s, args):
    start, end = int_arg(args[2]), int_arg(args[3])
    return _remove_span(s, args[1], lambda zs: _rank_bounds(start, end, len(zs)))


@zset_command("zremrangebyscore", "Removes the members of a sorted set within a score range.")
def zremrangebyscore(s, args):
    rng = parse_score_range(args[2], args[3])
    if rng is None:
        raise CommandError(SCORE_RANGE_ERROR)
    return _remove_span(s, args[1], lambda zs: zs.score_span(rng))


@zset_command("zremrangebylex", "Removes the members of a sorted set within a lexicographical range.")
def zremrangebylex(s, args):
    rng = parse_lex_range(args[2], args[3])
    if rng is None:
        raise CommandError(LEX_RANGE_ERROR)
    return _remove_span(s, args[1], lambda zs: zs.lex_span(rng))
