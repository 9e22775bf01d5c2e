"""Blocking sorted-set pops: BZPOPMIN, BZPOPMAX, BZMPOP.

These are the blocking counterparts of ZPOPMIN, ZPOPMAX and ZMPOP (in ``zsets``),
built on the same machinery as the blocking list pops (``commands.blocking``): a
synchronous core answers at once when a sorted set is there, otherwise it returns a
:class:`~respkv.commands.blocking.Block` whose ``attempt`` runs the same pop when a
write makes one of the keys hold a sorted set.  A sorted set appearing at a key
wakes only clients waiting for sorted sets, a list only those waiting for lists.

Replies as in Redis 7.0: BZPOPMIN/BZPOPMAX give ``[key, member, score]`` (the score
a bulk string in RESP2, a double in RESP3), BZMPOP gives ``[key, [[member, score],
...]]`` like ZMPOP; a timeout, or a call inside EXEC with nothing to pop, gives a
null array.
"""

from __future__ import annotations

from functools import partial

from ..errors import WRONGTYPE
from ..keyspace.zset import SortedSet
from ..protocol import reply
from .blocking import Block, blocking_command, parse_timeout
from .replay import logged_as
from .table import CommandError
from .zsets import mpop_from, parse_mpop


def _null_array(s) -> bytes:
    return s.proto.null_array


def _pop_one(s, highest: bool, key: bytes) -> bytes | None:
    """Pop the lowest (highest) member of the sorted set at ``key``, if there is one."""
    zs = s.ks.get(key)
    if zs.__class__ is not SortedSet:
        return None

    def pop() -> tuple:
        taken = zs.pop(1, highest)[0]
        if len(zs):
            s.ks.signal_modified(key)
        else:
            s.ks.delete(key)
        return taken

    score, member = logged_as(s.ks, key, pop, lambda _: [b"ZPOPMAX" if highest else b"ZPOPMIN", key])
    return b"*3\r\n" + reply.bulk(key) + reply.bulk(member) + s.proto.double(score)


def _bzpop(s, args: list[bytes], highest: bool):
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]
    for key in keys:
        value = s.ks.get(key)
        if value is None:
            continue
        if value.__class__ is not SortedSet:
            raise CommandError(WRONGTYPE)
        return _pop_one(s, highest, key)
    return Block(tuple(keys), partial(_pop_one, s, highest), timeout)


@blocking_command(
    "bzpopmin",
    "Removes and returns the member with the lowest score from the first non-empty sorted set, or blocks until one is available.",
    _null_array, group="sorted-set", since="5.0.0",
)
def bzpopmin(s, args):
    return _bzpop(s, args, False)


@blocking_command(
    "bzpopmax",
    "Removes and returns the member with the highest score from the first non-empty sorted set, or blocks until one is available.",
    _null_array, group="sorted-set", since="5.0.0",
)
def bzpopmax(s, args):
    return _bzpop(s, args, True)


def _serve_mpop(s, highest: bool, count: int, key: bytes) -> bytes | None:
    if s.ks.get(key).__class__ is not SortedSet:
        return None
    return mpop_from(s, [key], highest, count)


@blocking_command(
    "bzmpop",
    "Removes and returns members by score from the first non-empty sorted set, or blocks until one is available.",
    _null_array, group="sorted-set", since="7.0.0",
)
def bzmpop(s, args):
    keys, highest, count = parse_mpop(args, 2)
    timeout = parse_timeout(args[1])  # after the other arguments, as in Redis
    result = mpop_from(s, keys, highest, count)
    if result is not None:
        return result
    return Block(tuple(keys), partial(_serve_mpop, s, highest, count), timeout)
