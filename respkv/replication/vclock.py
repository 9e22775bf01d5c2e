"""Vector clocks: which writes a version has seen.

Theory of operation
-------------------
Every version of a key carries a vector clock: for each node (an *actor*) that
coordinated a write in the version's history, how many writes it coordinated, and
the wall-clock time of the latest one.  Comparing clocks tells apart the three
cases replication needs:

* ``descends(a, b)``: ``a`` has seen every write ``b`` has (``a >= b`` entry by entry),
  so a version with clock ``a`` may replace one with clock ``b``;
* ``dominates(a, b)``: ``a`` descends ``b`` and is not equal to it;
* ``concurrent(a, b)``: neither descends the other: two writes that did not see each
  other, whose versions must both be kept (siblings).

A coordinator writes by taking the merged clock of the versions it supersedes
(``merge``) and ``increment``-ing its own entry.  The timestamps play no part in
causality; they let ``prune`` drop the oldest entries of a clock that grew long (as
Dynamo and Riak bound theirs), accepting that a pruned clock may later look
concurrent with a version it actually descends (a false sibling, never a lost write).

A clock is an immutable tuple of ``(actor, counter, stamp)`` entries sorted by actor,
where ``actor`` is the 20 raw bytes of a 40-hex node id and ``stamp`` is Unix ms.  On
the wire and in version records it is the concatenation of its entries packed as
36 bytes each (``encode``/``decode``), so equal clocks have equal encodings and a
clock costs 36 bytes per actor.  Nothing here does I/O.
"""

from __future__ import annotations

import struct

Entry = tuple[bytes, int, int]
VClock = tuple[Entry, ...]

EMPTY: VClock = ()

#: One packed entry: actor, counter, stamp.
ENTRY_FORMAT = "<20sQQ"
ACTOR_SIZE = 20  # bytes of an actor (a node id's 40 hex digits)
_ENTRY = struct.Struct(ENTRY_FORMAT)
_COUNTER = struct.Struct("<Q")
ENTRY_SIZE = _ENTRY.size

#: Pruning defaults (as Riak's small/big/young/old vclock settings).
SMALL_CLOCK = 10
BIG_CLOCK = 20
YOUNG_MS = 20_000
OLD_MS = 86_400_000


_INCARNATION = struct.Struct(">I")
#: Bytes of the node id that start an actor; the incarnation fills the rest.
NODE_PART = ACTOR_SIZE - _INCARNATION.size


def actor_of(node_id: str, incarnation: int = 0) -> bytes:
    """The clock actor of one incarnation of a node: the first 16 bytes of its
    40-hex id, then the incarnation (u32, big-endian, so actors of one node sort
    by incarnation).  A node writes as a new actor after each start and each
    FLUSHALL (see :mod:`respkv.replication.incarnation`)."""
    return bytes.fromhex(node_id)[:NODE_PART] + _INCARNATION.pack(incarnation % (1 << 32))


def encode(clock: VClock) -> bytes:
    """The packed form of ``clock`` (36 bytes per entry, in actor order)."""
    pack = _ENTRY.pack
    return b"".join([pack(actor, counter, stamp) for actor, counter, stamp in clock])


def decode(blob: bytes) -> VClock:
    """The clock packed in ``blob``; ValueError if it is not a valid packing."""
    if len(blob) % ENTRY_SIZE:
        raise ValueError("vector clock length is not a multiple of its entry size")
    clock = tuple(_ENTRY.iter_unpack(blob))
    for previous, entry in zip(clock, clock[1:]):
        if previous[0] >= entry[0]:
            raise ValueError("vector clock entries are not in strictly increasing actor order")
    return clock


def counter(clock: VClock, actor: bytes) -> int:
    """``actor``'s counter in ``clock`` (0 when absent)."""
    for entry in clock:
        if entry[0] == actor:
            return entry[1]
    return 0


def increment(clock: VClock, actor: bytes, now_ms: int) -> VClock:
    """``clock`` with ``actor``'s counter one higher and its stamp set to ``now_ms``."""
    entries = []
    placed = False
    for entry in clock:
        if entry[0] == actor:
            entries.append((actor, entry[1] + 1, now_ms))
            placed = True
        else:
            if not placed and entry[0] > actor:
                entries.append((actor, 1, now_ms))
                placed = True
            entries.append(entry)
    if not placed:
        entries.append((actor, 1, now_ms))
    return tuple(entries)


def first(actor: bytes, now_ms: int) -> bytes:
    """``encode(increment(EMPTY, actor, now_ms))``: the clock of a key's first write."""
    return _ENTRY.pack(actor, 1, now_ms)


def increment_encoded(blob: bytes, actor: bytes, now_ms: int) -> bytes:
    """``encode(increment(decode(blob), actor, now_ms))``, without decoding when
    ``actor`` already has an entry (every write after a coordinator's first)."""
    if len(blob) == ENTRY_SIZE and blob.startswith(actor):
        # The clock of a key only this node has written: the hot case.
        return _ENTRY.pack(actor, _COUNTER.unpack_from(blob, ACTOR_SIZE)[0] + 1, now_ms)
    at = blob.find(actor)
    while at >= 0 and at % ENTRY_SIZE:
        at = blob.find(actor, at + 1)
    if at < 0:
        return encode(increment(decode(blob), actor, now_ms))
    count = _COUNTER.unpack_from(blob, at + 20)[0]
    return blob[:at] + _ENTRY.pack(actor, count + 1, now_ms) + blob[at + ENTRY_SIZE :]


def descends(a: VClock, b: VClock) -> bool:
    """Whether ``a`` has seen everything ``b`` has (every counter of b is <= a's)."""
    if not b:
        return True
    if a == b:
        return True
    counters = {entry[0]: entry[1] for entry in a}
    for actor, count, _ in b:
        if counters.get(actor, 0) < count:
            return False
    return True


def dominates(a: VClock, b: VClock) -> bool:
    """Whether ``a`` descends ``b`` and has seen something more."""
    return descends(a, b) and not descends(b, a)


def concurrent(a: VClock, b: VClock) -> bool:
    """Whether neither clock descends the other (writes that did not see each other)."""
    return not descends(a, b) and not descends(b, a)


def equal(a: VClock, b: VClock) -> bool:
    """Whether both clocks record the same writes (timestamps aside)."""
    return descends(a, b) and descends(b, a)


def merge(*clocks: VClock) -> VClock:
    """The least clock descending all of ``clocks``: per actor the highest counter
    (and the stamp that came with it, the later one on a tie)."""
    best: dict[bytes, tuple[int, int]] = {}
    for clock in clocks:
        for actor, count, stamp in clock:
            seen = best.get(actor)
            if seen is None or (count, stamp) > seen:
                best[actor] = (count, stamp)
    return tuple((actor, *best[actor]) for actor in sorted(best))


def prune(
    clock: VClock,
    now_ms: int,
    *,
    small: int = SMALL_CLOCK,
    big: int = BIG_CLOCK,
    young_ms: int = YOUNG_MS,
    old_ms: int = OLD_MS,
) -> VClock:
    """Drop the oldest entries of a long clock, as Riak prunes.

    A clock of at most ``small`` entries is kept whole.  Otherwise entries are
    considered oldest stamp first: one younger than ``young_ms`` stops the pruning;
    one is dropped while the clock has more than ``big`` entries or the entry is
    older than ``old_ms``; the first entry that is neither stops it.
    """
    if len(clock) <= small:
        return clock
    by_age = sorted(clock, key=lambda entry: entry[2])
    dropped: set[bytes] = set()
    remaining = len(clock)
    for actor, _, stamp in by_age:
        if remaining <= small:
            break
        age = now_ms - stamp
        if age < young_ms:
            break
        if remaining > big or age > old_ms:
            dropped.add(actor)
            remaining -= 1
        else:
            break
    if not dropped:
        return clock
    return tuple(entry for entry in clock if entry[0] not in dropped)
