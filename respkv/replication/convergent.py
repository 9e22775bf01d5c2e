"""Convergent types: how concurrent versions of a set, hash, sorted set or counter merge.

Theory of operation
-------------------
Siblings (:mod:`respkv.replication.versions`) keep every write that did not see
the others; a plain client sees one value, so for the types where a merge has an
obvious meaning the value it sees is the **merge** of the siblings, computed the
same way on every node, on every path that builds a record (a write, a replica
applying it, read repair, anti-entropy, hand-off).

**Collections** (sets, hashes, sorted sets) merge as add-wins observed-remove
sets of their *elements* (members, fields).  Each version carries :class:`Dots`:
for each element, the **dots** of the adds that put it there, a dot being the
``(actor, counter)`` of the write in the version's vector clock that added it.
A removal simply drops the element and its dots; the version's clock still
covers them, which is how a concurrent sibling learns the add was seen.  When
siblings meet, an element survives if one of its dots is not covered by the
clock of some sibling that lacks the element: an add nobody who removed the
element had seen.  The value of a surviving hash field or sorted-set member is
that of the newest sibling (the ``winner`` order) holding a surviving add.

To stay compact, dots are not kept forever: ``Dots.base`` is a clock below which
every element's adds lie without being listed (an element with no entry has only
such an add).  A version of unknown history (written before this module, or by
a command whose effect on elements is not tracked, like ``SMOVE`` or
``SINTERSTORE``) has its own clock as base and no dots; its elements then survive
against any concurrent sibling, which is the union of the siblings: never a lost
add, at worst a removal undone.  A write over a version that nobody changed for
``SETTLE_MS`` **settles** it: that version's clock becomes the base and its dots
are dropped (every replica has long had it, so later siblings descend it and the
merge stays exact).

**Counters** (strings written by ``INCR``, ``INCRBY``, ``DECR``, ``DECRBY``,
``INCRBYFLOAT``) carry a :class:`Tally`: the value they started from (set by the
last other write, named by that version's clock, its ``origin``) and, per actor,
the sum of its increments and of its decrements.  Siblings with the same origin
merge to the origin's value plus every actor's largest sums: concurrent
increments add up.  Siblings with different origins (a ``SET`` concurrent with
an ``INCR``) do not merge: the newest wins, as for any string.  A hash field
written by ``HINCRBY``/``HINCRBYFLOAT`` keeps a tally too (in ``Dots.tallies``,
its origin named by the field's dots before), so its concurrent increments add
up the same way.

Wire form: a version's value with metadata is ``b"C"``, the ``u32`` length of the
value's codec blob, the blob, then the metadata (:func:`join_value`).  Nothing
here does I/O; the store (:mod:`respkv.replication.store`) calls these functions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from ..keyspace.numbers import incr_by_float, parse_int
from ..keyspace.values import Hash, Set
from ..keyspace.zset import SortedSet
from . import vclock

#: A version left alone this long (ms) is settled by the next write over it.
SETTLE_MS = 60_000

#: What starts a version value that carries metadata; codec tags never are this.
META_TAG = b"C"
_DOTS_TAG = b"D"
_TALLY_TAG = b"T"
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_DOT = struct.Struct("<20sQ")

#: Commands whose effect on a collection's elements is tracked (the rest reset
#: its dots, see the module doc), and the counter commands.
ADDS = frozenset({"sadd", "hset", "hmset", "hincrby", "hincrbyfloat", "zadd", "zincrby"})
REMOVES = frozenset({"srem", "hdel", "zrem", "zremrangebyscore", "zremrangebyrank", "zremrangebylex",
                     "zpopmin", "zpopmax"})
COUNTERS = frozenset({"incr", "incrby", "decr", "decrby", "incrbyfloat"})
_FIELD_COUNTERS = frozenset({"hincrby", "hincrbyfloat"})
#: Every command whose arguments the store wants to see (see ``VersionStore.written``).
TRACKED = ADDS | REMOVES | COUNTERS

Dot = tuple[bytes, int]
#: The dot that stands for an element's adds at or below its version's base
#: (an element with only that one is not listed).  No write has counter 0.
BASE_DOT: Dot = (bytes(vclock.ACTOR_SIZE), 0)
_UNLISTED = (BASE_DOT,)


@dataclass(slots=True)
class Dots:
    """The causal metadata of one version of a collection (see the module doc).

    ``base`` is an encoded clock; ``dots`` maps an element to the tuple of its
    listed dots.  An element of the value without an entry was added at or below
    ``base``.  ``tallies`` maps a hash field written by ``HINCRBY`` or
    ``HINCRBYFLOAT`` to its counter's :class:`Tally`.
    """

    base: bytes = b""
    dots: dict[bytes, tuple[Dot, ...]] = dataclass_field(default_factory=dict)
    tallies: dict[bytes, "Tally"] = dataclass_field(default_factory=dict)

    def copy(self) -> "Dots":
        return Dots(self.base, dict(self.dots), dict(self.tallies))


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


Meta = Dots | Tally

# -- numbers of counters -------------------------------------------------------------------


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


# -- collections ------------------------------------------------------------------------------


def elements_of(value):
    """The elements of a collection value: members or fields (a live view)."""
    if value.__class__ is SortedSet:
        return value.scores
    return value


def _covers(counters: dict[bytes, int], dot: Dot) -> bool:
    return counters.get(dot[0], 0) >= dot[1]


def _counters(clock: vclock.VClock) -> dict[bytes, int]:
    return {actor: counter for actor, counter, _ in clock}


def _zadd_members(args: list[bytes]) -> list[bytes]:
    i = 2
    while i < len(args) and args[i].lower() in (b"nx", b"xx", b"gt", b"lt", b"ch", b"incr"):
        i += 1
    return args[i + 1 :: 2]


def _touched(command: list[bytes]) -> list[bytes]:
    """The elements an add command names."""
    name = command[0].lower()
    if name in (b"sadd",):
        return command[2:]
    if name in (b"hset", b"hmset"):
        return command[2::2]
    if name in (b"hincrby", b"hincrbyfloat"):
        return command[2:3]
    if name == b"zincrby":
        return command[3:4]
    return _zadd_members(command)  # zadd


def applied(dots: Dots, value, commands: list[list[bytes]], dot: Dot) -> Dots:
    """The dots of a collection after ``commands`` (all tracked, see
    :data:`TRACKED`) made ``value`` in a write whose dot is ``dot``: every element
    an add named and the value holds gets the new dot (a re-add too), every
    element gone loses its dots.  A hash field ``HINCRBY`` changed counts in its
    tally (started at the field's value before, named by the field's dots before);
    any other write of the field ends it."""
    dots = dots.copy()
    listed, tallies = dots.dots, dots.tallies
    elements = elements_of(value)
    removals = False
    increments: dict[bytes, list[bytes]] = {}
    origins: dict[bytes, bytes] = {}
    for command in commands:
        name = command[0].lower().decode()
        if name in ADDS:
            for element in _touched(command):
                if element in elements:
                    if name in _FIELD_COUNTERS:
                        if element not in origins:
                            origins[element] = _origin_of(dots.base, listed.get(element))
                        increments.setdefault(element, []).append(command[3])
                    else:
                        tallies.pop(element, None)
                    listed[element] = (dot,)
        else:
            removals = True
    for field, amounts in increments.items():
        tallies[field] = counted(tallies.get(field), origins[field], elements[field], dot[0], amounts)
    if removals:
        for element in [e for e in listed if e not in elements]:
            del listed[element]
        for element in [e for e in tallies if e not in elements]:
            del tallies[element]
    return dots


def _origin_of(base: bytes, listed: tuple[Dot, ...] | None) -> bytes:
    """What names the write a hash field's counter starts from: the field's dots
    before the increment (or the version's base, for a field absent or unlisted),
    the same on every replica that held that version."""
    if listed is None:
        return b"B" + base
    return b"".join(_DOT.pack(actor, counter) for actor, counter in listed)


def _compacted(listed: tuple[Dot, ...], base: dict[bytes, int]) -> tuple[Dot, ...] | None:
    """An element's dots with those ``base`` covers folded into :data:`BASE_DOT`;
    None when only that is left (the element goes unlisted)."""
    left = tuple(sorted(d for d in listed if d != BASE_DOT and not _covers(base, d)))
    if len(left) == len(listed):
        return left
    return (BASE_DOT, *left) if left else None


def settled(dots: Dots, clock: bytes) -> Dots:
    """``dots`` with ``clock`` (a clock the version descends) joined into its base
    and the dots it covers folded into it."""
    base = vclock.merge(vclock.decode(dots.base), vclock.decode(clock)) if dots.base else vclock.decode(clock)
    counters = _counters(base)
    kept = {}
    for element, element_dots in dots.dots.items():
        left = _compacted(element_dots, counters)
        if left is not None:
            kept[element] = left
    return Dots(vclock.encode(base), kept, dict(dots.tallies))


def merge_collections(siblings: list[tuple[bytes, object, Dots | None]]):
    """The merge of concurrent versions of one collection type (see the module doc).

    ``siblings`` are ``(clock, value, dots)`` in ``winner`` order (oldest first),
    ``dots`` None for a version without metadata.  Returns ``(value, dots)``: a
    new value (built on a copy of the newest sibling's, so its encoding carries
    on) and its merged dots.  The inputs are not changed.

    An add (a dot, or :data:`BASE_DOT` for the unlisted adds at or below a
    sibling's base) survives unless another sibling has seen it (its clock covers
    the dot, or descends the base) and does not hold it: that sibling removed
    the element, or replaced the add with a newer one.  An element is present if
    one of its adds survives; its value (hash field, score) is that of the
    newest sibling holding a surviving add.
    """
    count = len(siblings)
    clocks = [vclock.decode(clock) for clock, _, _ in siblings]
    counters = [_counters(clock) for clock in clocks]
    metas = [dots if dots is not None else Dots(clock, {}) for clock, _, dots in siblings]
    bases = [vclock.decode(meta.base) for meta in metas]
    base_counters = [_counters(base) for base in bases]
    # base_seen[i][j]: sibling j's clock covers every unlisted add of sibling i.
    # (An empty base covers nothing: an unlisted element there is of unknown history.)
    base_seen = [[bool(bases[i]) and vclock.descends(clocks[j], bases[i]) for j in range(count)]
                 for i in range(count)]
    values = [value for _, value, _ in siblings]
    elements = [elements_of(value) for value in values]
    source: dict[bytes, int] = {}
    holders: dict[bytes, dict[int, None]] = {}  # element -> siblings with a surviving add
    merged: dict[bytes, set[Dot]] = {}
    for i in range(count):
        listed = metas[i].dots
        for element in elements[i]:
            held = [None if j == i or element not in elements[j] else metas[j].dots.get(element, _UNLISTED)
                    for j in range(count)]
            for dot in listed.get(element, _UNLISTED):
                for j in range(count):
                    if j == i:
                        continue
                    theirs = held[j]
                    if dot == BASE_DOT:
                        if base_seen[i][j] and (theirs is None or BASE_DOT not in theirs):
                            break
                    elif _covers(counters[j], dot) and not (
                        theirs is not None and (dot in theirs or (BASE_DOT in theirs and _covers(base_counters[j], dot)))
                    ):
                        break
                else:
                    merged.setdefault(element, set()).add(dot)
                    source[element] = i
                    holders.setdefault(element, {})[i] = None
    base = vclock.merge(*bases) if count > 1 else bases[0]
    joined = _counters(base)
    kept = {}
    for element, element_dots in merged.items():
        left = _compacted(tuple(element_dots), joined)
        if left is not None:
            kept[element] = left
    tallies, counts = _merged_tallies(metas, holders, source)
    return _rebuild(values, source, counts), Dots(vclock.encode(base), kept, tallies)


def _merged_tallies(metas: list[Dots], holders: dict[bytes, dict[int, None]], source: dict[bytes, int]):
    """The tallies of the merged hash fields, and the values of those whose
    concurrent counters add up: a field every sibling holding a surviving add of
    counts from one origin."""
    tallies: dict[bytes, Tally] = {}
    counts: dict[bytes, bytes] = {}
    if not any(meta.tallies for meta in metas):
        return tallies, counts
    for element, owners in holders.items():
        found = [metas[i].tallies.get(element) for i in owners]
        if None not in found:
            tally = merge_tallies(found)
            if tally is not None:
                tallies[element] = tally
                counts[element] = tally_value(tally)
                continue
        tally = metas[source[element]].tallies.get(element)
        if tally is not None:
            tallies[element] = tally
    return tallies, counts


def _rebuild(values: list, source: dict[bytes, int], counts: dict[bytes, bytes]):
    """A copy of the newest value holding exactly ``source``'s elements, each with
    its value (hash field, score) from the sibling ``source`` names, or for a hash
    field whose counters merged, from ``counts``."""
    newest = len(values) - 1
    result = values[newest].copy()
    elements = elements_of(result)
    if result.__class__ is Set:
        for member in [m for m in result if m not in source]:
            result.remove_member(member)
        for member in source:
            result.add_member(member)
    elif result.__class__ is Hash:
        for field in [f for f in result if f not in source]:
            result.remove(field)
        for field, i in source.items():
            if field in counts:
                result.put(field, counts[field])
            elif i != newest or field not in elements:
                result.put(field, values[i][field])
    else:
        for member in [m for m in result.scores if m not in source]:
            result.remove(member)
        for member, i in source.items():
            if i != newest or member not in elements:
                result.set_score(member, values[i].scores[member])
    return result


def mergeable_collection(values: list) -> bool:
    """Whether ``values`` are all collections of one mergeable type."""
    kind = values[0].__class__
    return kind in (Set, Hash, SortedSet) and all(v.__class__ is kind for v in values)


# -- wire form -----------------------------------------------------------------------------------


def join_value(blob: bytes, meta: Meta | None) -> bytes:
    """A version value: the codec ``blob`` of the value, with ``meta`` if any."""
    if meta is None:
        return blob
    return b"".join((META_TAG, _U32.pack(len(blob)), blob, encode_meta(meta)))


def split_value(value: bytes) -> tuple[bytes, Meta | None]:
    """``(codec blob, metadata or None)`` of a version value; ValueError if malformed."""
    if value[:1] != META_TAG:
        return value, None
    if len(value) < 5:
        raise ValueError("truncated version value")
    (length,) = _U32.unpack_from(value, 1)
    end = 5 + length
    if end > len(value):
        raise ValueError("truncated version value")
    return value[5:end], decode_meta(value[end:])


def encode_meta(meta: Meta) -> bytes:
    if meta.__class__ is Dots:
        parts = [_DOTS_TAG, _U16.pack(len(meta.base)), meta.base, _U32.pack(len(meta.dots))]
        for element, dots in meta.dots.items():
            parts.append(_U32.pack(len(element)))
            parts.append(element)
            parts.append(_U16.pack(len(dots)))
            parts.extend(_DOT.pack(actor, counter) for actor, counter in dots)
        if meta.tallies:
            parts.append(_U32.pack(len(meta.tallies)))
            for field, tally in meta.tallies.items():
                blob = encode_meta(tally)
                parts += [_U32.pack(len(field)), field, _U32.pack(len(blob)), blob]
        return b"".join(parts)
    parts = [_TALLY_TAG, _U16.pack(len(meta.origin)), meta.origin, _U16.pack(len(meta.start)), meta.start,
             _U16.pack(len(meta.parts))]
    for actor, (up, down) in meta.parts.items():
        parts += [actor, _U16.pack(len(up)), up, _U16.pack(len(down)), down]
    return b"".join(parts)


class _Reader:
    __slots__ = ("blob", "at")

    def __init__(self, blob: bytes, at: int) -> None:
        self.blob, self.at = blob, at

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.blob):
            raise ValueError("truncated convergent metadata")
        chunk = self.blob[self.at : end]
        self.at = end
        return chunk

    def number(self, form: struct.Struct) -> int:
        return form.unpack(self.take(form.size))[0]

    def counted(self) -> bytes:
        return self.take(self.number(_U16))


def decode_meta(blob: bytes) -> Meta:
    """The metadata encoded by :func:`encode_meta`; ValueError if malformed."""
    reader = _Reader(blob, 1)
    if blob[:1] == _DOTS_TAG:
        base = reader.counted()
        vclock.decode(base)
        listed = {}
        for _ in range(reader.number(_U32)):
            element = reader.take(reader.number(_U32))
            listed[element] = tuple(_DOT.unpack(reader.take(_DOT.size)) for _ in range(reader.number(_U16)))
        tallies = {}
        if reader.at < len(blob):  # hash fields counted by HINCRBY
            for _ in range(reader.number(_U32)):
                field = reader.take(reader.number(_U32))
                counter = reader.take(reader.number(_U32))
                if counter[:1] != _TALLY_TAG:
                    raise ValueError("a field's counter is not a tally")
                tallies[field] = decode_meta(counter)
        meta: Meta = Dots(base, listed, tallies)
    elif blob[:1] == _TALLY_TAG:
        origin, start = reader.counted(), reader.counted()
        parts = {}
        for _ in range(reader.number(_U16)):
            actor = reader.take(vclock.ACTOR_SIZE)
            parts[actor] = (reader.counted(), reader.counted())
        for number in [start, *[n for pair in parts.values() for n in pair]]:
            if parse_int(number) is None:
                float(number)  # ValueError if not a number
        meta = Tally(origin, start, parts)
    else:
        raise ValueError("unknown convergent metadata")
    if reader.at != len(blob):
        raise ValueError("trailing bytes after convergent metadata")
    return meta


# -- what the coordinator passes -------------------------------------------------------------

#: Commands that add elements: under convergent types a re-add of an element
#: already there is a write too (its add gets a new dot, winning over a
#: concurrent removal), though Redis's value does not change.
READDS = frozenset({"sadd", "hset", "hmset", "zadd"})


def readded(name: str, requests: list[list[bytes]], value_of) -> list[bytes]:
    """The keys of ``requests`` (of command ``name``) that re-add elements to a
    collection (``value_of(key)`` is the key's value): written even when Redis's
    value did not change."""
    if name not in READDS:
        return []
    return [args[1] for args in requests if len(args) > 2 and value_of(args[1]).__class__ in (Set, Hash, SortedSet)]
