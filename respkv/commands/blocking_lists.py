"""Blocking list pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP.

These are the blocking counterparts of LPOP, RPOP, LMOVE, RPOPLPUSH and LMPOP (in
``lists``), written as synchronous cores registered through
:func:`~respkv.commands.blocking.blocking_command`: a core answers at once when a
list is there, or returns a :class:`~respkv.commands.blocking.Block` whose
``attempt`` is the same pop run later, when a push makes a key ready.  A timeout,
or a call inside EXEC with nothing to pop, gives a null array (a null bulk string
for BLMOVE and BRPOPLPUSH), as in Redis 7.0.
"""

from __future__ import annotations

from functools import partial

from ..keyspace.values import ListValue
from ..protocol import reply
from .blocking import Block, blocking_command, parse_timeout
from .lists import after_pop, list_for_write, move_element, mpop_reply, parse_mpop, parse_where
from .replay import logged_as
from .table import CommandError


def _null_array(s) -> bytes:
    return s.proto.null_array


def _null(s) -> bytes:
    return s.proto.null


def _serve_pop(s, left: bool, key: bytes) -> bytes | None:
    """A BLPOP/BRPOP taking one element from the list at ``key``, if any (logged
    as the LPOP or RPOP it equals)."""
    lst = s.ks.get(key)
    if lst.__class__ is not ListValue:
        return None

    def pop() -> bytes:
        value = lst.popleft() if left else lst.pop()
        after_pop(s, key, lst)
        return value

    value = logged_as(s.ks, key, pop, lambda _: [b"LPOP" if left else b"RPOP", key])
    return reply.bulk_array((key, value))


def _bpop(s, args: list[bytes], left: bool):
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]
    for key in keys:
        if list_for_write(s, key) is not None:
            return _serve_pop(s, left, key)
    return Block(tuple(keys), partial(_serve_pop, s, left), timeout)


@blocking_command(
    "blpop",
    "Removes and returns the first element of a list, or blocks until one is available.",
    _null_array, group="list", since="2.0.0",
)
def blpop(s, args):
    return _bpop(s, args, True)


@blocking_command(
    "brpop",
    "Removes and returns the last element of a list, or blocks until one is available.",
    _null_array, group="list", since="2.0.0",
)
def brpop(s, args):
    return _bpop(s, args, False)


def _serve_move(s, dst_key: bytes, wherefrom: bool, whereto: bool, key: bytes) -> bytes | None:
    """A blocked BLMOVE moving one element from ``key``; WRONGTYPE ends it too."""
    src = s.ks.get(key)
    if src.__class__ is not ListValue:
        return None
    try:
        return move_element(s, key, dst_key, src, wherefrom, whereto)
    except CommandError as exc:
        return reply.error(str(exc))


def _blmove(s, src_key: bytes, dst_key: bytes, wherefrom: bool, whereto: bool, raw_timeout: bytes):
    timeout = parse_timeout(raw_timeout)
    src = list_for_write(s, src_key)
    if src is not None:
        return move_element(s, src_key, dst_key, src, wherefrom, whereto)
    return Block((src_key,), partial(_serve_move, s, dst_key, wherefrom, whereto), timeout)


@blocking_command(
    "blmove",
    "Moves an element from one list to another, or blocks until one is available.",
    _null, group="list", since="6.2.0",
)
def blmove(s, args):
    wherefrom = parse_where(args[3])
    whereto = parse_where(args[4])
    return _blmove(s, args[1], args[2], wherefrom, whereto, args[5])


@blocking_command(
    "brpoplpush",
    "Pops the last element of a list and pushes it onto another, or blocks until one is available.",
    _null, group="list", since="2.2.0",
)
def brpoplpush(s, args):
    return _blmove(s, args[1], args[2], False, True, args[3])


def _serve_mpop(s, left: bool, count: int, key: bytes) -> bytes | None:
    lst = s.ks.get(key)
    if lst.__class__ is not ListValue:
        return None
    return mpop_reply(s, key, lst, left, count)


@blocking_command(
    "blmpop",
    "Pops elements from the first non-empty list among several keys, or blocks until one is available.",
    _null_array, group="list", since="7.0.0",
)
def blmpop(s, args):
    keys, left, count = parse_mpop(args, 2)
    timeout = parse_timeout(args[1])  # after the other arguments, as in Redis
    for key in keys:
        lst = list_for_write(s, key)
        if lst is not None:
            return mpop_reply(s, key, lst, left, count)
    return Block(tuple(keys), partial(_serve_mpop, s, left, count), timeout)
