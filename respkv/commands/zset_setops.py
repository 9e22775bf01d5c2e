"""Sorted-set algebra: ZUNION, ZINTER, ZDIFF, their STORE forms, and ZINTERCARD.

These commands look their keys up before reading their options, as Redis 7.0 does.
They accept plain sets as inputs, every member scoring 1: a value counts as a set
when its type name (:data:`respkv.keyspace.values.TYPE_NAMES`) is ``set``; it must
support ``len()``, iteration over its members and ``in``.
"""

from __future__ import annotations

from ..errors import SYNTAX, WRONGTYPE
from ..keyspace import numbers
from ..keyspace.values import TYPE_NAMES
from ..keyspace.zset import SortedSet
from ..protocol import reply
from .args import float_arg, int_arg
from .lookups import lookup_read
from .table import CommandError
from .zsets import elements_reply, store_scores, zset_command


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
        return store_scores(s, args[1], result)
    elements = sorted(zip(result.values(), result.keys()))
    return elements_reply(s, elements, withscores)


@zset_command("zunion", "Returns the union of sorted sets.")
def zunion(s, args):
    return _setop_generic(s, args, _UNION, False, "zunion")


@zset_command("zinter", "Returns the intersection of sorted sets.")
def zinter(s, args):
    return _setop_generic(s, args, _INTER, False, "zinter")


@zset_command("zdiff", "Returns the members of the first sorted set that are in none of the others.")
def zdiff(s, args):
    return _setop_generic(s, args, _DIFF, False, "zdiff")


@zset_command("zunionstore", "Stores the union of sorted sets in a key.")
def zunionstore(s, args):
    return _setop_generic(s, args, _UNION, True, "zunionstore")


@zset_command("zinterstore", "Stores the intersection of sorted sets in a key.")
def zinterstore(s, args):
    return _setop_generic(s, args, _INTER, True, "zinterstore")


@zset_command("zdiffstore", "Stores the difference of sorted sets in a key.")
def zdiffstore(s, args):
    return _setop_generic(s, args, _DIFF, True, "zdiffstore")


@zset_command("zintercard", "Returns the number of members in the intersection of sorted sets.")
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
