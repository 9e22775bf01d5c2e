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
merge stays exact); a key written all the time settles, on a write, the clock it
had ``SETTLE_MS`` before (:func:`aged`).  Dots are packed (:func:`dot_of`), so an
element costs one dictionary entry and a write's dot is shared by the elements
it adds.

**Counters** (strings written by ``INCR``, ``INCRBY``, ``DECR``, ``DECRBY``,
``INCRBYFLOAT``) carry a tally (:mod:`respkv.replication.counters`): concurrent
increments add up.  A hash field written by ``HINCRBY``/``HINCRBYFLOAT`` keeps a
tally too (in ``Dots.tallies``, its origin named by the field's dots before).

Wire form: a version's value with metadata is ``b"C"``, the ``u32`` length of the
value's codec blob, the blob, then the metadata (:func:`join_value`).  Nothing
here does I/O; the store (:mod:`respkv.replication.store`) calls these functions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from ..keyspace.numbers import parse_int
from ..keyspace.values import Hash, Set
from ..keyspace.zset import SortedSet
from . import vclock
from .counters import COUNTERS, Tally, counted, merge_tallies, tally_value

#: A version left alone this long (ms) is settled by the next write over it.
SETTLE_MS = 60_000

#: What starts a version value that carries metadata; codec tags never are this.
META_TAG = b"C"
_DOTS_TAG = b"D"
_TALLY_TAG = TALLY_TAG = b"T"
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_DOT = struct.Struct("<20sQ")
_COUNTER = struct.Struct("<Q")

#: Commands whose effect on a collection's elements is tracked (the rest reset
#: its dots, see the module doc), and the counter commands.
ADDS = frozenset({"sadd", "hset", "hmset", "hincrby", "hincrbyfloat", "zadd", "zincrby"})
REMOVES = frozenset({"srem", "hdel", "zrem", "zremrangebyscore", "zremrangebyrank", "zremrangebylex",
                     "zpopmin", "zpopmax"})
_FIELD_COUNTERS = frozenset({"hincrby", "hincrbyfloat"})
#: Removals whose arguments after the key are the elements they remove.
_NAMED_REMOVES = frozenset({"srem", "hdel", "zrem"})
#: Every command whose arguments the store wants to see (see ``VersionStore.written``).
TRACKED = ADDS | REMOVES | COUNTERS

#: A dot packed: the actor's 20 bytes, then the counter (u64).  An element's
#: dots are kept as one bytes object, its dots packed back to back in order: a
#: write's dot is one object shared by every element it adds, and encoding a
#: collection's dots is a join.
Dot = bytes
DOT_SIZE = _DOT.size
#: The dot that stands for an element's adds at or below its version's base
#: (an element with only that one is not listed).  No write has counter 0.
BASE_DOT: Dot = bytes(DOT_SIZE)


def dot_of(actor: bytes, counter: int) -> Dot:
    """The packed dot of ``actor``'s write number ``counter``."""
    return _DOT.pack(actor, counter)


def unpack_dot(dot: Dot) -> tuple[bytes, int]:
    """``(actor, counter)`` of a packed dot."""
    return _DOT.unpack(dot)


def dots_in(packed: bytes) -> list[Dot]:
    """The dots of an element's packed dots."""
    if len(packed) == DOT_SIZE:
        return [packed]
    return [packed[i : i + DOT_SIZE] for i in range(0, len(packed), DOT_SIZE)]


@dataclass(slots=True)
class Dots:
    """The causal metadata of one version of a collection (see the module doc).

    ``base`` is an encoded clock; ``dots`` maps an element to its listed dots,
    packed (:func:`dots_in`).  An element of the value without an entry was added
    at or below ``base``.  ``tallies`` maps a hash field written by ``HINCRBY`` or
    ``HINCRBYFLOAT`` to its counter's :class:`Tally`.  ``values`` keeps, for a
    hash field or sorted-set member that concurrent writes left with several
    adds of different values, each add's value (a score packed as a double): if
    a later merge finds the shown add removed, another's value shows.
    ``checkpoint`` is the clock of a version this one descends, noted at
    ``checkpoint_ms``: a write ``SETTLE_MS`` later settles the dots it covers, so
    a key written all the time does not keep dots for ever.
    """

    base: bytes = b""
    dots: dict[bytes, bytes] = dataclass_field(default_factory=dict)
    tallies: dict[bytes, "Tally"] = dataclass_field(default_factory=dict)
    values: dict[bytes, dict[Dot, bytes]] = dataclass_field(default_factory=dict)
    checkpoint: bytes = b""
    checkpoint_ms: int = 0

    def copy(self) -> "Dots":
        return Dots(self.base, dict(self.dots), dict(self.tallies), dict(self.values), self.checkpoint,
                    self.checkpoint_ms)


Meta = Dots | Tally

# -- collections ------------------------------------------------------------------------------


def elements_of(value):
    """The elements of a collection value: members or fields (a live view)."""
    if value.__class__ is SortedSet:
        return value.scores
    return value


def _covers(counters: dict[bytes, int], dot: Dot) -> bool:
    return counters.get(dot[:20], 0) >= _COUNTER.unpack_from(dot, 20)[0]


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
    any other write of the field ends it.

    ``dots`` is changed in place (the version it belonged to is superseded) and
    returned: a write costs what it touches, not the collection's size, except
    range removals and pops, whose elements are found by a scan."""
    listed, tallies = dots.dots, dots.tallies
    elements = elements_of(value)
    scan = False
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
                    elif tallies:
                        tallies.pop(element, None)
                    listed[element] = dot
                    if dots.values:
                        dots.values.pop(element, None)
        elif name in _NAMED_REMOVES:
            for element in command[2:]:
                if element not in elements:
                    listed.pop(element, None)
                    tallies.pop(element, None)
                    dots.values.pop(element, None)
        else:
            scan = True
    for field, amounts in increments.items():
        tallies[field] = counted(tallies.get(field), origins[field], elements[field], dot[:20], amounts)
    if scan:
        for table in (listed, tallies, dots.values):
            for element in [e for e in table if e not in elements]:
                del table[element]
    return dots


def _origin_of(base: bytes, listed: bytes | None) -> bytes:
    """What names the write a hash field's counter starts from: the field's dots
    before the increment (or the version's base, for a field absent or unlisted),
    the same on every replica that held that version."""
    return b"B" + base if listed is None else listed


def _compacted(dots: list[Dot], base: dict[bytes, int]) -> bytes | None:
    """An element's dots, packed in order, with those ``base`` covers folded into
    :data:`BASE_DOT`; None when only that is left (the element goes unlisted)."""
    left = sorted(d for d in dots if d != BASE_DOT and not _covers(base, d))
    if len(left) < len(dots):
        left.insert(0, BASE_DOT)
    return None if left == [BASE_DOT] else b"".join(left)


def settled(dots: Dots, clock: bytes) -> Dots:
    """``dots`` with ``clock`` (a clock the version descends) joined into its base
    and the dots it covers folded into it."""
    base = vclock.merge(vclock.decode(dots.base), vclock.decode(clock)) if dots.base else vclock.decode(clock)
    counters = _counters(base)
    kept = {}
    for element, packed in dots.dots.items():
        left = _compacted(dots_in(packed), counters)
        if left is not None:
            kept[element] = left
    return Dots(vclock.encode(base), kept, dict(dots.tallies), _folded_values(dots.values, kept), dots.checkpoint,
                dots.checkpoint_ms)


def aged(dots: Dots, parent: bytes, parent_ms: int, now_ms: int) -> Dots:
    """``dots`` before a write at ``now_ms`` over the version whose clock is
    ``parent``, written at ``parent_ms``: settled up to ``parent`` if that
    version was left alone for ``SETTLE_MS``, else up to the checkpoint if that
    is as old; and a new checkpoint when the last is ``SETTLE_MS`` old."""
    if parent and now_ms - parent_ms >= SETTLE_MS:
        dots = settled(dots, parent)
    elif dots.checkpoint and now_ms - dots.checkpoint_ms >= SETTLE_MS:
        dots = settled(dots, dots.checkpoint)
    if now_ms - dots.checkpoint_ms >= SETTLE_MS:
        dots.checkpoint, dots.checkpoint_ms = parent, now_ms
    return dots


def _folded_values(values: dict[bytes, dict[Dot, bytes]], kept: dict[bytes, bytes]):
    """``values`` after the dots not in ``kept`` folded into :data:`BASE_DOT`;
    an element left with one distinct value needs no entry."""
    folded = {}
    for element, by_dot in values.items():
        still = dots_in(kept.get(element, b""))
        remapped: dict[Dot, bytes] = {}
        for dot, blob in by_dot.items():
            remapped[dot if dot in still else BASE_DOT] = blob
        if len(set(remapped.values())) > 1:
            folded[element] = remapped
    return folded


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
    valued = values[0].__class__ is not Set
    chosen: dict[bytes, tuple[int, Dot, bytes]] = {}  # element -> the newest surviving add's value
    by_dot: dict[bytes, dict[Dot, bytes]] = {}  # element -> every surviving add's value
    for i in range(count):
        listed = metas[i].dots
        kept_values = metas[i].values
        for element in elements[i]:
            held = [None if j == i or element not in elements[j] else dots_in(metas[j].dots.get(element, BASE_DOT))
                    for j in range(count)]
            for dot in dots_in(listed.get(element, BASE_DOT)):
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
                    if valued:
                        blob = kept_values.get(element, {}).get(dot)
                        if blob is None:
                            blob = _value_blob(values[i], element)
                        by_dot.setdefault(element, {})[dot] = blob
                        if (i, dot) > chosen.get(element, (-1, b"", b""))[:2]:
                            chosen[element] = (i, dot, blob)
    base = vclock.merge(*bases) if count > 1 else bases[0]
    joined = _counters(base)
    kept = {}
    for element, element_dots in merged.items():
        left = _compacted(list(element_dots), joined)
        if left is not None:
            kept[element] = left
    tallies, counts = _merged_tallies(metas, holders, source)
    shown = {element: blob for element, (_, _, blob) in chosen.items()}
    shown.update(counts)
    dots = Dots(vclock.encode(base), kept, tallies, _folded_values(by_dot, kept))
    return _rebuild(values, source, shown), dots


_SCORE = struct.Struct("<d")


def _value_blob(value, element: bytes) -> bytes:
    """What ``values`` keeps of an element's value: a hash field's value, or a
    sorted-set member's score packed as a double."""
    if value.__class__ is Hash:
        return value[element]
    return _SCORE.pack(value.scores[element])


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


def _rebuild(values: list, source: dict[bytes, int], shown: dict[bytes, bytes]):
    """A copy of the newest value holding exactly ``source``'s elements, each with
    the value (hash field, packed score) ``shown`` gives it."""
    newest = len(values) - 1
    result = values[newest].copy()
    if result.__class__ is Set:
        for member in [m for m in result if m not in source]:
            result.remove_member(member)
        for member in source:
            result.add_member(member)
    elif result.__class__ is Hash:
        for field in [f for f in result if f not in source]:
            result.remove(field)
        for field in source:
            if result.get(field) != shown[field]:
                result.put(field, shown[field])
    else:
        for member in [m for m in result.scores if m not in source]:
            result.remove(member)
        scores = result.scores
        for member in source:
            score = _SCORE.unpack(shown[member])[0]
            if scores.get(member) != score:
                result.set_score(member, score)
    return result


def mergeable_collection(values: list) -> bool:
    """Whether ``values`` are all collections of one mergeable type."""
    kind = values[0].__class__
    return kind in (Set, Hash, SortedSet) and all(v.__class__ is kind for v in values)


# -- wire form -----------------------------------------------------------------------------------


def join_value(blob: bytes, meta: Meta | bytes | None) -> bytes:
    """A version value: the codec ``blob`` of the value, with ``meta`` (or its
    wire form) if any."""
    if meta is None:
        return blob
    return b"".join((META_TAG, _U32.pack(len(blob)), blob, meta if meta.__class__ is bytes else encode_meta(meta)))


def split_value(value: bytes, decode: bool = True):
    """``(codec blob, metadata or None)`` of a version value; ValueError if
    malformed.  With ``decode=False`` the metadata stays in its wire form (a
    non-empty bytes object starting with its tag; decoded when needed)."""
    if value[:1] != META_TAG:
        return value, None
    if len(value) < 5:
        raise ValueError("truncated version value")
    (length,) = _U32.unpack_from(value, 1)
    end = 5 + length
    if end >= len(value) or value[end : end + 1] not in (_DOTS_TAG, _TALLY_TAG):
        raise ValueError("truncated version value")
    return value[5:end], decode_meta(value[end:]) if decode else value[end:]


#: The kinds of versions (:func:`kind_of`) that merge, with convergent types and without.
MERGED = frozenset({(b"s", True), (b"S", False), (b"h", False), (b"z", False)})
UNITED = frozenset({(b"S", False)})


def kind_of(value: bytes) -> tuple[bytes, bool]:
    """``(codec tag, whether it is a counter)`` of an encoded version value."""
    if value[:1] != META_TAG:
        return value[:1], False
    if len(value) < 6:
        return b"?", False  # malformed: no merge, and decoding it refuses it
    at = 5 + _U32.unpack_from(value, 1)[0]
    return value[5:6], value[5:6] == b"s" and value[at : at + 1] == _TALLY_TAG


def encode_meta(meta: Meta) -> bytes:
    """The wire form of ``meta``.  Dots are laid out as tables, packed in a few
    calls whatever the collection's size: the base clock; the element count *n*;
    the actors the dots name (*a*, 20 bytes each); *n* element lengths and *n*
    dot counts; the elements; then for the *m* dots, *m* actor indexes and *m*
    counters.  Hash-field tallies follow, if any."""
    if meta.__class__ is Dots:
        elements = list(meta.dots)
        packed = list(meta.dots.values())
        n = len(elements)
        parts = [
            _DOTS_TAG, _U16.pack(len(meta.base)), meta.base, _U16.pack(len(meta.checkpoint)), meta.checkpoint,
            _COUNTER.pack(meta.checkpoint_ms), _U32.pack(n),
            struct.pack(f"<{2 * n}I", *map(len, elements), *map(len, packed)), *elements, *packed,
        ]
        if meta.tallies or meta.values:
            parts.append(_U32.pack(len(meta.tallies)))
            for field, tally in meta.tallies.items():
                blob = encode_meta(tally)
                parts += [_U32.pack(len(field)), field, _U32.pack(len(blob)), blob]
            parts.append(_U32.pack(len(meta.values)))
            for element, by_dot in meta.values.items():
                parts += [_U32.pack(len(element)), element, _U16.pack(len(by_dot))]
                for dot, blob in by_dot.items():
                    parts += [dot, _U32.pack(len(blob)), blob]
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


def _decode_listed(reader: _Reader) -> dict[bytes, bytes]:
    """The element → packed dots table of an encoded :class:`Dots` (see
    :func:`encode_meta`)."""
    n = reader.number(_U32)
    table = reader.take(8 * n)
    lengths = struct.unpack_from(f"<{2 * n}I", table)
    elements = [reader.take(length) for length in lengths[:n]]
    packed = []
    for length in lengths[n:]:
        if not length or length % DOT_SIZE:
            raise ValueError("an element's dots are not whole dots")
        packed.append(reader.take(length))
    listed = dict(zip(elements, packed))
    if len(listed) != n:
        raise ValueError("an element is listed twice in convergent metadata")
    return listed


def decode_meta(blob: bytes) -> Meta:
    """The metadata encoded by :func:`encode_meta`; ValueError if malformed."""
    reader = _Reader(blob, 1)
    if blob[:1] == _DOTS_TAG:
        base = reader.counted()
        checkpoint = reader.counted()
        checkpoint_ms = reader.number(_COUNTER)
        vclock.decode(base)
        vclock.decode(checkpoint)
        listed = _decode_listed(reader)
        tallies = {}
        values: dict[bytes, dict[Dot, bytes]] = {}
        if reader.at < len(blob):  # hash fields counted by HINCRBY, values of concurrent adds
            for _ in range(reader.number(_U32)):
                field = reader.take(reader.number(_U32))
                counter = reader.take(reader.number(_U32))
                if counter[:1] != _TALLY_TAG:
                    raise ValueError("a field's counter is not a tally")
                tallies[field] = decode_meta(counter)
            for _ in range(reader.number(_U32)):
                element = reader.take(reader.number(_U32))
                by_dot = values[element] = {}
                for _ in range(reader.number(_U16)):
                    dot = reader.take(DOT_SIZE)
                    by_dot[dot] = reader.take(reader.number(_U32))
        meta: Meta = Dots(base, listed, tallies, values, checkpoint, checkpoint_ms)
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
