"""Sorted-set commands on members: adding, scores and ranks, counting, pops, random members, ZSCAN.

The sorted set itself is :class:`~respkv.keyspace.zset.SortedSet`.  Range queries
and removals are in :mod:`respkv.commands.zset_ranges`, the set operations in
:mod:`respkv.commands.zset_setops` and the blocking pops in
:mod:`respkv.commands.blocking_zsets`; the lookups and reply helpers here serve all
of them.

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
"""

from __future__ import annotations

from ..errors import SYNTAX
from ..keyspace import numbers
from ..keyspace.zset import SortedSet, listpack_score_text, parse_lex_range, parse_score_range, score_text
from ..protocol import reply
from .args import float_arg, int_arg
from .keys import parse_cursor, parse_scan_options
from .lookups import read_typed, write_typed
from .replay import logged_as
from .table import CommandError, command

_LONG_MAX = 2**63 - 1
SCORE_RANGE_ERROR = "ERR min or max is not a float"
LEX_RANGE_ERROR = "ERR min or max not valid string range item"
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


def zset_command(name: str, summary: str):
    """Register a sorted-set handler in the ``sorted-set`` group (see ``table.command``)."""
    return command(name, summary, group="sorted-set", since=_SINCE[name])


# -- lookups and replies ------------------------------------------------------------------


def read_zset(s, key: bytes) -> SortedSet | None:
    """The sorted set at ``key`` for a read command (counted as a keyspace hit/miss)."""
    return read_typed(s, key, SortedSet)


def write_zset(s, key: bytes) -> SortedSet | None:
    """The sorted set at ``key`` for a write command."""
    return write_typed(s, key, SortedSet)


def after_change(s, key: bytes, zs: SortedSet) -> None:
    """Report an in-place change; an emptied set deletes its key."""
    if zs.scores:
        s.ks.signal_modified(key)
    else:
        s.ks.delete(key)


def with_scores(s, elements) -> bytes:
    """``(score, member)`` elements as member/score replies (see the module notes)."""
    if s.proto.version == 3:
        double = s.proto.double
        return reply.array([b"*2\r\n" + reply.bulk(m) + double(sc) for sc, m in elements])
    return reply.bulk_array([x for sc, m in elements for x in (m, score_text(sc))])


def _members(elements) -> bytes:
    return reply.bulk_array([m for _, m in elements])


def elements_reply(s, elements, withscores: bool) -> bytes:
    return with_scores(s, elements) if withscores else _members(elements)


def store_scores(s, dst: bytes, scores: dict[bytes, float]) -> bytes:
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
    zs = write_zset(s, key)
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


@zset_command("zadd", "Adds members to a sorted set, or updates their scores; creates the key if needed.")
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


@zset_command("zincrby", "Adds an increment to the score of a member of a sorted set.")
def zincrby(s, args):
    return _zadd(s, args[1], {b"INCR"}, [(float_arg(args[2]), args[3])])


@zset_command("zrem", "Removes members from a sorted set; deletes the key when it empties.")
def zrem(s, args):
    key = args[1]
    zs = write_zset(s, key)
    if zs is None:
        return reply.ZERO
    removed = sum(1 for member in args[2:] if zs.remove(member))
    if removed:
        after_change(s, key, zs)
    return reply.integer(removed)


@zset_command("zscore", "Returns the score of a member of a sorted set.")
def zscore(s, args):
    zs = read_zset(s, args[1])
    score = None if zs is None else zs.scores.get(args[2])
    return s.proto.null if score is None else s.proto.double(score)


@zset_command("zmscore", "Returns the scores of several members of a sorted set.")
def zmscore(s, args):
    zs = read_zset(s, args[1])
    get = {}.get if zs is None else zs.scores.get
    null, double = s.proto.null, s.proto.double
    out = []
    for member in args[2:]:
        score = get(member)
        out.append(null if score is None else double(score))
    return reply.array(out)


@zset_command("zcard", "Returns the number of members in a sorted set.")
def zcard(s, args):
    zs = read_zset(s, args[1])
    return reply.integer(0 if zs is None else len(zs))


def _rank(s, args, reverse: bool) -> bytes:
    zs = read_zset(s, args[1])
    rank = None if zs is None else zs.rank(args[2], reverse)
    return s.proto.null if rank is None else reply.integer(rank)


@zset_command("zrank", "Returns the rank of a member, counting from the lowest score.")
def zrank(s, args):
    return _rank(s, args, False)


@zset_command("zrevrank", "Returns the rank of a member, counting from the highest score.")
def zrevrank(s, args):
    return _rank(s, args, True)


# -- counting ------------------------------------------------------------------------------


@zset_command("zcount", "Counts the members of a sorted set within a score range.")
def zcount(s, args):
    rng = parse_score_range(args[2], args[3])
    if rng is None:
        raise CommandError(SCORE_RANGE_ERROR)
    zs = read_zset(s, args[1])
    if zs is None:
        return reply.ZERO
    lo, hi = zs.score_span(rng)
    return reply.integer(hi - lo)


@zset_command("zlexcount", "Counts the members of a sorted set within a lexicographical range.")
def zlexcount(s, args):
    rng = parse_lex_range(args[2], args[3])
    if rng is None:
        raise CommandError(LEX_RANGE_ERROR)
    zs = read_zset(s, args[1])
    if zs is None:
        return reply.ZERO
    lo, hi = zs.lex_span(rng)
    return reply.integer(hi - lo)


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
    zs = write_zset(s, key)
    if zs is None or count == 0:
        return reply.EMPTY_ARRAY
    taken = zs.pop(1 if count is None else count, highest)
    after_change(s, key, zs)
    if count is None:
        score, member = taken[0]
        return b"*2\r\n" + reply.bulk(member) + s.proto.double(score)
    return with_scores(s, taken)


@zset_command("zpopmin", "Removes and returns the members with the lowest scores.")
def zpopmin(s, args):
    return _zpop(s, args, False)


@zset_command("zpopmax", "Removes and returns the members with the highest scores.")
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
        zs = write_zset(s, key)
        if zs is None:
            continue

        def pop() -> list:
            popped = zs.pop(count, highest)
            after_change(s, key, zs)
            return popped

        taken = logged_as(s.ks, key, pop, lambda _: [b"ZPOPMAX" if highest else b"ZPOPMIN", key, b"%d" % count])
        pairs = [b"*2\r\n" + reply.bulk(m) + s.proto.double(sc) for sc, m in taken]
        return b"*2\r\n" + reply.bulk(key) + reply.array(pairs)
    return None


@zset_command("zmpop", "Removes and returns members with the lowest or highest scores from the first non-empty sorted set.")
def zmpop(s, args):
    keys, highest, count = parse_mpop(args, 1)
    result = mpop_from(s, keys, highest, count)
    return s.proto.null_array if result is None else result


# -- random members and scanning -----------------------------------------------------------


@zset_command("zrandmember", "Returns random members of a sorted set.")
def zrandmember(s, args):
    if len(args) == 2:
        zs = read_zset(s, args[1])
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
    zs = read_zset(s, args[1])
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
    return elements_reply(s, elements, withscores)


@zset_command("zscan", "Iterates over the members and scores of a sorted set.")
def zscan(s, args):
    cursor = parse_cursor(args[2])
    zs = read_zset(s, args[1])
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
