"""Counters that add up: the tallies convergent types keep for ``INCR`` and its kin.

Theory of operation
-------------------
A counter version carries a :class:`Tally`: the value the counter started from
(``start``, set by the last write that was not an increment, named by
``origin``) and, per actor (a node incarnation), the sum of its increments and
the sum of its decrements.  An actor's sums only grow along its own writes, so
the merge of concurrent tallies of one origin takes each actor's largest sums
(a grow-only counter per direction); the value is the start plus every actor's
increments less its decrements, summed in actor order so that every node
computes the same bytes.  Integers add exactly; a float anywhere uses
``INCRBYFLOAT``'s arithmetic and format.  Tallies of different origins (a
``SET`` concurrent with an ``INCR``) do not merge.  Pure; used by
:mod:`respkv.replication.convergent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

from ..keyspace.numbers import incr_by_float, parse_int

#: The commands that increment a string counter.
COUNTERS = frozenset({"incr", "incrby", "decr", "decrby", "incrbyfloat"})


@dataclass(slots=True)
class Tally:
    """The metadata of one version of a counter: ``origin`` (the clock of the write
    that set ``start``, ``b""`` for a counter started from nothing), ``start`` (its
    value, decimal bytes) and ``parts``: actor → (sum of increments, sum of
    decrements), decimal bytes, both never negative."""

    origin: bytes
    start: bytes
    parts: dict[bytes, tuple[bytes, bytes]] = dataclass_field(default_factory=dict)

    def copy(self) -> "Tally":
        return Tally(self.origin, self.start, dict(self.parts))


def add_numbers(a: bytes, b: bytes) -> bytes:
    """``a + b`` of two decimal numbers: exact for integers, else with INCRBYFLOAT's
    arithmetic and format."""
    x, y = parse_int(a), parse_int(b)
    if x is not None and y is not None:
        return str(x + y).encode()
    return incr_by_float(a, b)


def negate(number: bytes) -> bytes:
    return number[1:] if number.startswith(b"-") else b"-" + number


def _magnitude(number: bytes) -> float | int:
    value = parse_int(number)
    return float(number) if value is None else value


def tally_value(tally: Tally) -> bytes:
    """The counter's value: its start plus every actor's increments less its
    decrements (in actor order, so every node computes the same bytes)."""
    total = tally.start
    for actor in sorted(tally.parts):
        up, down = tally.parts[actor]
        if up != b"0":
            total = add_numbers(total, up)
        if down != b"0":
            total = add_numbers(total, negate(down))
    return total


def counted(tally: Tally | None, origin: bytes, value: bytes, actor: bytes, increments: list[bytes]) -> Tally:
    """The tally of a counter after ``actor`` added ``increments`` (decimal bytes,
    negative for decrements) and got ``value``.  Without a tally before, the
    counter starts at the value before them, named by ``origin`` (the clock of
    the version they were applied to, ``b""`` for none)."""
    if tally is None:
        start = value
        for increment in reversed(increments):
            start = add_numbers(start, negate(increment))
        tally = Tally(origin, start)
    else:
        tally = tally.copy()
    up, down = tally.parts.get(actor, (b"0", b"0"))
    for increment in increments:
        if increment.startswith(b"-"):
            down = add_numbers(down, increment[1:])
        else:
            up = add_numbers(up, increment)
    tally.parts[actor] = (up, down)
    return tally


def merge_tallies(tallies: list[Tally]) -> Tally | None:
    """The merge of concurrent counters (largest sums per actor), or None when
    they started from different writes and do not merge."""
    first = tallies[0]
    if any(t.origin != first.origin or t.start != first.start for t in tallies[1:]):
        return None
    parts: dict[bytes, tuple[bytes, bytes]] = {}
    for tally in tallies:
        for actor, (up, down) in tally.parts.items():
            held = parts.get(actor)
            if held is None:
                parts[actor] = (up, down)
            else:
                parts[actor] = (max(held[0], up, key=_magnitude), max(held[1], down, key=_magnitude))
    return Tally(first.origin, first.start, parts)


def increments_of(command: list[bytes]) -> bytes:
    """The signed increment a counter command applies (decimal bytes)."""
    name = command[0].lower()
    if name == b"incr":
        return b"1"
    if name == b"decr":
        return b"-1"
    if name == b"decrby":
        return negate(command[2])
    return command[2]  # incrby, incrbyfloat
