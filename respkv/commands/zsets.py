"""Sorted-set commands (the non-blocking ones), on :class:`~respkv.keyspace.zset.SortedSet`.

Every command follows Redis 7.0's order of checks, because clients observe which
error wins: options and ranges are parsed before the key is looked up (so a syntax
error beats WRONGTYPE), except for the multi-key set operations, which look their
keys up before reading their options.

Reply shapes differ by protocol in one systematic way: wherever Redis 7.0 returns
members *with* scores as an array (ZRANGE ... WITHSCORES, ZPOPMIN with a count,
ZRANDMEMBER ... WITHSCORES, ZUNION ... WITHSCORES, ZMPOP), RESP2 gets a flat
member/score list with scores as bulk strings and RESP3 gets ``[member, score]``
pairs with scores as doubles.  ZSCAN is the exception: its scores are always bulk
strings, in the text the encoding holds (see ``keyspace.zset``).

Set operations (ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD) accept
plain sets as inputs, every member scoring 1.  A value counts as a set when its
class is registered as ``set`` in ``keyspace.store.TYPE_NAMES``; it must support
``len()``, iteration over its members and ``in``.
"""

from __future__ import annotations

from ..errors import SYNTAX, WRONGTYPE
from ..keyspace.store import TYPE_NAMES
from ..keyspace.zset import (
    SortedSet,
    listpack_score_text,
    parse_lex_range,
    parse_score_range,
    score_text,
)
from ..protocol import reply
from . import numbers
from .args import float_arg, int_arg
from .keys import COPIERS, ENCODINGS, parse_cursor, parse_scan_options
from .lookups import lookup_read, read_typed, write_typed
from .table import CommandError, command

ENCODINGS[SortedSet] = lambda value: value.encoding
COPIERS[SortedSet] = SortedSet.copy

_LONG_MAX = 2**63 - 1
_SCORE_RANGE_ERROR = "ERR min or max is not a float"
_LEX_RANGE_ERROR = "ERR min or max not valid string range item"
_NAN_SCORE = "ERR resulting score is not a number (NaN)"
_EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"
#: The longest reply ZRANDMEMBER with a negative count builds (Redis tries any size
#: and runs out of memory; we refuse instead).
_RANDOM_REPLY_LIMIT = 2**32


#: Redis version that introduced each command (COMMAND DOCS).
_SINCE = {
    "zadd": "1.2.0", "zincrby": "1.2.0", "zrem": "1.2.0", "zscore": "1.2.0",
    "zmscore": "6.2.0", "zcard": "1.2.0", "zrank": "2.0.0", "zrevrank": "2.0.0",
    "zcount": "2.0.0", "zlexcount": "2.8.9", "zrange": "1.2.0", "zrangestore": "6.2.0",
    "zrangebyscore": "1.0.5", "zrevrangebyscore": "2.2.0", "zrangebylex": "2.8.9",
    "zrevrangebylex": "2.8.9", "zrevrange": "1.2.0", "zremrangebyrank": "2.0.0",
    "zremrangebyscore": "1.2.0", "zremrangebylex": "2.8.9", "zpopmin": "5.0.0",
    "zpopmax": "5.0.0", "zmpop": "7.0.0", "zrandmember": "6.2.0", "zscan": "2.8.0",
    "zunion": "6.2.0", "zinter": "6.2.0", "zdiff": "6.2.0", "zunionstore": "2.0.0",
    "zinterstore": "2.0.0", "zdiffstore": "6.2.0", "zintercard": "7.0.0",
}


def _command(name: str, summary: str):
    """Register a handler in the ``sorted-set`` group (see ``table.command``)."""
    return command(name, summary, group="sorted-set", since=_SINCE[name])


# -- lookups and replies ------------------------------------------------------------------


def _read(s, key: bytes) -> SortedSet | None:
    """The sorted set at ``key`` for a read command (counted as a keyspace hit/miss)."""
    return read_typed(s, key, SortedSet)


def _write(s, key: bytes) -> SortedSet | None:
    """The sorted set at ``key`` for a write command."""
    return write_typed(s, key, SortedSet)


def _changed(s, key: bytes, zs: SortedSet) -> None:
    """Report an in-place change; an emptied set deletes its key."""
    if zs.scores:
        s.ks.signal_modified(key)
    else:
        s.ks.delete(key)


def _with_scores(s, elements) -> bytes:
    """``(score, member)`` elements as member/score replies (see the module notes)."""
    if s.proto.version == 3:
        double = s.proto.double
        return reply.array([b"*2\r\n" + reply.bulk(m) + double(sc) for sc, m in elements])
    return reply.bulk_array([x for sc, m in elements for x in (m, score_text(sc))])


def _members(elements) -> bytes:
    return reply.bulk_array([m for _, m in elements])


def _elements_reply(s, elements, withscores: bool) -> bytes:
    return _with_scores(s, elements) if withscores else _members(elements)


def _store(s, dst: bytes, scores: dict[bytes, float]) -> bytes:
    """Replace ``dst`` with a new set (or delete it when empty); reply its size."""
    if scores:
        s.ks.set(dst, SortedSet.from_scores(scores))
    else:
        s.ks.delete(dst)
    return reply.integer(len(scores))


# -- adding and scoring -------------------------------------------------------------------

_ZADD_FLAGS = {b"NX", b"XX", b"CH", b"INCR", b"GT", b"LT"}


def _zadd(s, key: bytes, flags: set[bytes], pairs: list[tuple[float, bytes]]) -> bytes:
    """The body of ZADD and ZINCRBY once the arguments are parsed and checked."""
    nx, xx, gt, lt = b"NX" in flags, b"XX" in flags, b"GT" in flags, b"LT" in flags
    incr = b"INCR" in flags
    zs = _write(s, key)
    if zs is None:
        if xx:
            return s.proto.null if incr else reply.ZERO
        created = zs = SortedSet()
    else:
        created = None
    added = updated = 0
    result = None
    for score, member in pairs:
        current = zs.scores.get(member)
        if current is None:
            if xx:
                continue
            zs.set_score(member, score)
            added += 1
            result = score
            continue
        if nx:
            continue
        if incr:
            score += current
            if score != score:
                raise CommandError(_NAN_SCORE)
        if (lt and score >= current) or (gt and score <= current):
            continue
        result = score
        if score != current:
            zs.set_score(member, score)
            updated += 1
    if created is not None:
        if created.scores:
            s.ks.set(key, created)
    elif added or updated:
        s.ks.signal_modified(key)
    if incr:
        return s.proto.null if result is None else s.proto.double(result)
    return reply.integer(added + updated if b"CH" in flags else added)


@_command("zadd", "Adds members to a sorted set, or updates their scores; creates the key if needed.")
def zadd(s, args):
    flags: set[bytes] = set()
    i, n = 2, len(args)
    while i < n:
        opt = args[i].upper()
        if opt not in _ZADD_FLAGS:
            break
        flags.add(opt)
        i += 1
    rest = n - i
    if rest == 0 or rest % 2:
        raise CommandError(SYNTAX)
    if b"NX" in flags and b"XX" in flags:
        raise CommandError("ERR XX and NX options at the same time are not compatible")
    if (b"GT" in flags and b"NX" in flags) or (b"LT" in flags and b"NX" in flags) or (
        b"GT" in flags and b"LT" in flags
    ):
        raise CommandError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if b"INCR" in flags and rest > 2:
        raise CommandError("ERR INCR option supports a single increment-element pair")
    pairs = [(float_arg(args[j]), args[j + 1]) for j in range(i, n, 2)]
    return _zadd(s, args[1], flags, pairs)


@_command("zincrby", "Adds an increment to the score of a member of a sorted set.")
def zincrby(s, args):
    return _zadd(s, args[1], {b"INCR"}, [(float_arg(args[2]), args[3])])


@_command("zrem", "Removes members from a sorted set; deletes the key when it empties.")
def zrem(s, args):
    key = args[1]
    zs = _write(s, key)
    if zs is None:
        return reply.ZERO
    removed = sum(1 for member in args[2:] if zs.remove(member))
    if removed:
        _changed(s, key, zs)
    return reply.integer(removed)


@_command("zscore", "Returns the score of a member of a sorted set.")
def zscore(s, args):
    zs = _read(s, args[1])
    score = None if zs is None else zs.scores.get(args[2])
    return s.proto.null if score is None else s.proto.double(score)


@_command("zmscore", "Returns the scores of several members of a sorted set.")
def zmscore(s, args):
    zs = _read(s, args[1])
    get = {}.get if zs is None else zs.scores.get
    null, double = s.proto.null, s.proto.double
    out = []
    for member in args[2:]:
        score = get(member)
        out.append(null if score is None else double(score))
    return reply.array(out)


@_command("zcard", "Returns the number of members in a sorted set.")
def zcard(s, args):
    zs = _read(s, args[1])
    return reply.integer(0 if zs is None else len(zs))


def _rank(s, args, reverse: bool) -> bytes:
    zs = _read(s, args[1])
    rank = None if zs is None else zs.rank(args[2], reverse)
    return s.proto.null if rank is None else reply.integer(rank)


@_command("zrank", "Returns the rank of a member, counting from the lowest score.")
def zrank(s, args):
    return _rank(s, args, False)


@_command("zrevrank", "Returns the rank of a member, counting from the highest score.")
def zrevrank(s, args):
    return _rank(s, args, True)


# -- counting ------------------------------------------------------------------------------


@_command("zcount", "Counts the members of a sorted set within a score range.")
def zcount(s, args):
    rng = parse_score_range(args[2], args[3])
    if rng is None:
        raise CommandError(_SCORE_RANGE_ERROR)
    zs = _read(s, args[1])
    if zs is None:
        return reply.ZERO
    lo, hi = zs.score_span(rng)
    return reply.integer(hi - lo)


@_command("zlexcount", "Counts the members of a sorted set within a lexicographical range.")
def zlexcount(s, args):
    rng = parse_lex_range(args[2], args[3])
    if rng is None:
        raise CommandError(_LEX_RANGE_ERROR)
    zs = _read(s, args[1])
    if zs is None:
        return reply.ZERO
    lo, hi = zs.lex_span(rng)
    return reply.integer(hi - lo)


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
            raise CommandError(_SCORE_RANGE_ERROR)
    else:
        rng = parse_lex_range(lo_raw, hi_raw)
        if rng is None:
            raise CommandError(_LEX_RANGE_ERROR)
    zs = _read(s, args[first])
    elements = [] if zs is None else _select(zs, kind, rng, reverse, limit)
    if store:
        return _store(s, args[1], {m: sc for sc, m in elements})
    return _elements_reply(s, elements, withscores)


@_command("zrange", "Returns members of a sorted set within a rank, score or lexicographical range.")
def zrange(s, args):
    return _zrange_generic(s, args, 1, False, None, None)


@_command("zrangestore", "Stores a range of members of a sorted set in another key.")
def zrangestore(s, args):
    return _zrange_generic(s, args, 2, True, None, None)


@_command("zrangebyscore", "Returns members of a sorted set within a score range.")
def zrangebyscore(s, args):
    return _zrange_generic(s, args, 1, False, _SCORE, False)


@_command("zrevrangebyscore", "Returns members of a sorted set within a score range, highest first.")
def zrevrangebyscore(s, args):
    return _zrange_generic(s, args, 1, False, _SCORE, True)


@_command("zrangebylex", "Returns members of a sorted set within a lexicographical range.")
def zrangebylex(s, args):
    return _zrange_generic(s, args, 1, False, _LEX, False)


@_command("zrevrangebylex", "Returns members of a sorted set within a lexicographical range, highest first.")
def zrevrangebylex(s, args):
    return _zrange_generic(s, args, 1, False, _LEX, True)


@_command("zrevrange", "Returns members of a sorted set within a rank range, highest first.")
def zrevrange(s, args):
    return _zrange_generic(s, args, 1, False, _RANK, True)


# -- removing ranges -------------------------------------------------------------------------


def _remove_span(s, key: bytes, span_of) -> bytes:
    zs = _write(s, key)
    if zs is None:
        return reply.ZERO
    lo, hi = span_of(zs)
    removed = zs.remove_span(lo, hi)
    if removed:
        _changed(s, key, zs)
    return reply.integer(removed)


@_command("zremrangebyrank", "Removes the members of a sorted set within a rank range.")
def zremrangebyrank(s, args):
    start, end = int_arg(args[2]), int_arg(args[3])
    return _remove_span(s, args[1], lambda zs: _rank_bounds(start, end, len(zs)))


@_command("zremrangebyscore", "Removes the members of a sorted set within a score range.")
def zremrangebyscore(s, args):
    rng = parse_score_range(args[2], args[3])
    if rng is None:
        raise CommandError(_SCORE_RANGE_ERROR)
    return _remove_span(s, args[1], lambda zs: zs.score_span(rng))


@_command("zremrangebylex", "Removes the members of a sorted set within a lexicographical range.")
def zremrangebylex(s, args):
    rng = parse_lex_range(args[2], args[3])
    if rng is None:
        raise CommandError(_LEX_RANGE_ERROR)
    return _remove_span(s, args[1], lambda zs: zs.lex_span(rng))


# -- popping -------------------------------------------------------------------------------


def _zpop(s, args, highest: bool) -> bytes:
    count = None
    if len(args) > 3:
        raise CommandError(SYNTAX)
    if len(args) == 3:
        count = numbers.parse_int(args[2])
        if count is None or count < 0:
            raise CommandError("ERR value is out of range, must be positive")
    key = args[1]
    zs = _write(s, key)
    if zs is None or count == 0:
        return reply.EMPTY_ARRAY
    taken = zs.pop(1 if count is None else count, highest)
    _changed(s, key, zs)
    if count is None:
        score, member = taken[0]
        return b"*2\r\n" + reply.bulk(member) + s.proto.double(score)
    return _with_scores(s, taken)


@_command("zpopmin", "Removes and returns the members with the lowest scores.")
def zpopmin(s, args):
    return _zpop(s, args, False)


@_command("zpopmax", "Removes and returns the members with the highest scores.")
def zpopmax(s, args):
    return _zpop(s, args, True)


def parse_mpop(args: list[bytes], numkeys_index: int):
    """Parse ``numkeys key... MIN|MAX [COUNT n]`` (ZMPOP, BZMPOP).

    Returns ``(keys, highest, count)``.
    """
    numkeys = numbers.parse_int(args[numkeys_index])
    if numkeys is None or numkeys < 1:
        raise CommandError("ERR numkeys should be greater than 0")
    first = numkeys_index + 1
    where_index = first + numkeys
    if where_index >= len(args):
        raise CommandError(SYNTAX)
    where = args[where_index].upper()
    if where not in (b"MIN", b"MAX"):
        raise CommandError(SYNTAX)
    count = None
    i, n = where_index + 1, len(args)
    while i < n:
        if args[i].upper() == b"COUNT" and i + 1 < n and count is None:
            count = numbers.parse_int(args[i + 1])
            if count is None or count < 1:
                raise CommandError("ERR count should be greater than 0")
            i += 2
        else:
            raise CommandError(SYNTAX)
    return args[first:where_index], where == b"MAX", 1 if count is None else count


def mpop_from(s, keys: list[bytes], highest: bool, count: int) -> bytes | None:
    """Pop from the first non-empty sorted set among ``keys``; None if there is none.

    A key of another type met before that set is a WRONGTYPE error.
    """
    for key in keys:
        zs = _write(s, key)
        if zs is None:
            continue
        taken = zs.pop(count, highest)
        _changed(s, key, zs)
        pairs = [b"*2\r\n" + reply.bulk(m) + s.proto.double(sc) for sc, m in taken]
        return b"*2\r\n" + reply.bulk(key) + reply.array(pairs)
    return None


@_command("zmpop", "Removes and returns members with the lowest or highest scores from the first non-empty sorted set.")
def zmpop(s, args):
    keys, highest, count = parse_mpop(args, 1)
    result = mpop_from(s, keys, highest, count)
    return s.proto.null_array if result is None else result


# -- random members and scanning -----------------------------------------------------------


@_command("zrandmember", "Returns random members of a sorted set.")
def zrandmember(s, args):
    if len(args) == 2:
        zs = _read(s, args[1])
        if zs is None:
            return s.proto.null
        return reply.bulk(zs.random_element()[1])
    count = int_arg(args[2])
    if count < -_LONG_MAX:
        raise CommandError(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
        )
    withscores = False
    if len(args) > 4 or (len(args) == 4 and args[3].upper() != b"WITHSCORES"):
        raise CommandError(SYNTAX)
    if len(args) == 4:
        withscores = True
        if not -(_LONG_MAX // 2) <= count <= _LONG_MAX // 2:
            raise CommandError("ERR value is out of range")
    zs = _read(s, args[1])
    if zs is None or count == 0:
        return reply.EMPTY_ARRAY
    if count < 0:
        if -count > _RANDOM_REPLY_LIMIT:
            raise CommandError("ERR value is out of range")
        pick = zs.random_element
        elements = [pick() for _ in range(-count)]
    elif count >= len(zs):
        elements = list(zs.span(0, len(zs), reverse=True))  # Redis: whole set, top first
    else:
        elements = zs.random_distinct(count)
    return _elements_reply(s, elements, withscores)


@_command("zscan", "Iterates over the members and scores of a sorted set.")
def zscan(s, args):
    cursor = parse_cursor(args[2])
    zs = _read(s, args[1])
    if zs is None:
        return _EMPTY_SCAN
    count, match, _ = parse_scan_options(args, 3, False)
    next_cursor, page = zs.scan(cursor, count)
    text = listpack_score_text if zs.listpack else score_text
    flat = []
    for score, member in page:
        if match is None or match(member):
            flat.append(member)
            flat.append(text(score))
    return b"*2\r\n" + reply.bulk(b"%d" % next_cursor) + reply.bulk_array(flat)


# -- set operations --------------------------------------------------------------------------

_UNION, _INTER, _DIFF = "union", "inter", "diff"


class _Source:
    """One input of a set operation: a sorted set, a plain set, or nothing."""

    __slots__ = ("value", "weight", "is_zset")

    def __init__(self, value, weight: float = 1.0) -> None:
        self.value = value
        self.weight = weight
        self.is_zset = value.__class__ is SortedSet

    def __len__(self) -> int:
        return 0 if self.value is None else len(self.value)

    def items(self):
        """``(member, score)`` pairs; a plain set scores every member 1."""
        if self.value is None:
            return ()
        if self.is_zset:
            return self.value.scores.items()
        return ((member, 1.0) for member in self.value)

    def score(self, member: bytes) -> float | None:
        if self.value is None:
            return None
        if self.is_zset:
            return self.value.scores.get(member)
        return 1.0 if member in self.value else None


def _source_value(s, key: bytes, for_write: bool):
    value = s.ks.get(key) if for_write else lookup_read(s, key)
    if value is not None and value.__class__ is not SortedSet and TYPE_NAMES.get(value.__class__) != b"set":
        raise CommandError(WRONGTYPE)
    return value


def _parse_sources(s, args, numkeys_index: int, name: str, for_write: bool):
    """Read ``numkeys key...`` and look every key up (before any option is read)."""
    numkeys = int_arg(args[numkeys_index])
    if numkeys < 1:
        raise CommandError(f"ERR at least 1 input key is needed for '{name}' command")
    first = numkeys_index + 1
    if numkeys > len(args) - first:
        raise CommandError(SYNTAX)
    sources = [_Source(_source_value(s, key, for_write)) for key in args[first:first + numkeys]]
    return sources, first + numkeys


def _weighted(weight: float, score: float) -> float:
    value = weight * score
    return 0.0 if value != value else value


def _aggregate(mode: bytes, target: float, value: float) -> float:
    if mode == b"SUM":
        total = target + value
        return 0.0 if total != total else total
    if mode == b"MIN":
        return value if value < target else target
    return value if value > target else target


def _combine(op: str, sources: list[_Source], mode: bytes) -> dict[bytes, float]:
    """Member → score of the union, intersection or difference of ``sources``.

    Union and intersection visit the inputs from the smallest to the largest (a stable
    sort, like the C library's), which fixes the order in which scores are summed.
    """
    if op == _DIFF:
        base = sources[0]
        others = [src for src in sources[1:] if len(src)]
        return {
            member: score
            for member, score in base.items()
            if not any(src.score(member) is not None for src in others)
        }
    ordered = sorted(sources, key=len)
    result: dict[bytes, float] = {}
    if op == _INTER:
        if not len(ordered[0]):
            return result
        head, rest = ordered[0], ordered[1:]
        for member, score in head.items():
            total = _weighted(head.weight, score)
            for src in rest:
                other = src.score(member)
                if other is None:
                    break
                total = _aggregate(mode, total, _weighted(src.weight, other))
            else:
                result[member] = total
        return result
    for src in ordered:
        weight = src.weight
        for member, score in src.items():
            value = _weighted(weight, score)
            current = result.get(member)
            result[member] = value if current is None else _aggregate(mode, current, value)
    return result


def _setop_generic(s, args, op: str, store: bool, name: str) -> bytes:
    numkeys_index = 2 if store else 1
    sources, i = _parse_sources(s, args, numkeys_index, name, store)
    mode = b"SUM"
    withscores = False
    n = len(args)
    while i < n:
        remaining = n - i
        opt = args[i].upper()
        if op != _DIFF and opt == b"WEIGHTS" and remaining >= len(sources) + 1:
            for src, raw in zip(sources, args[i + 1:i + 1 + len(sources)]):
                src.weight = float_arg(raw, "ERR weight value is not a float")
            i += len(sources) + 1
        elif op != _DIFF and opt == b"AGGREGATE" and remaining >= 2:
            mode = args[i + 1].upper()
            if mode not in (b"SUM", b"MIN", b"MAX"):
                raise CommandError(SYNTAX)
            i += 2
        elif not store and opt == b"WITHSCORES":
            withscores = True
            i += 1
        else:
            raise CommandError(SYNTAX)
    result = _combine(op, sources, mode)
    if store:
        return _store(s, args[1], result)
    elements = sorted(zip(result.values(), result.keys()))
    return _elements_reply(s, elements, withscores)


@_command("zunion", "Returns the union of sorted sets.")
def zunion(s, args):
    return _setop_generic(s, args, _UNION, False, "zunion")


@_command("zinter", "Returns the intersection of sorted sets.")
def zinter(s, args):
    return _setop_generic(s, args, _INTER, False, "zinter")


@_command("zdiff", "Returns the members of the first sorted set that are in none of the others.")
def zdiff(s, args):
    return _setop_generic(s, args, _DIFF, False, "zdiff")


@_command("zunionstore", "Stores the union of sorted sets in a key.")
def zunionstore(s, args):
    return _setop_generic(s, args, _UNION, True, "zunionstore")


@_command("zinterstore", "Stores the intersection of sorted sets in a key.")
def zinterstore(s, args):
    return _setop_generic(s, args, _INTER, True, "zinterstore")


@_command("zdiffstore", "Stores the difference of sorted sets in a key.")
def zdiffstore(s, args):
    return _setop_generic(s, args, _DIFF, True, "zdiffstore")


@_command("zintercard", "Returns the number of members in the intersection of sorted sets.")
def zintercard(s, args):
    sources, i = _parse_sources(s, args, 1, "zintercard", False)
    limit = 0
    n = len(args)
    while i < n:
        if args[i].upper() == b"LIMIT" and n - i >= 2:
            limit = numbers.parse_int(args[i + 1])
            if limit is None or limit < 0:
                raise CommandError("ERR LIMIT can't be negative")
            i += 2
        else:
            raise CommandError(SYNTAX)
    ordered = sorted(sources, key=len)
    if not len(ordered[0]):
        return reply.ZERO
    head, rest = ordered[0], ordered[1:]
    count = 0
    for member, _ in head.items():
        if all(src.score(member) is not None for src in rest):
            count += 1
            if count == limit:
                break
    return reply.integer(count)

