"""Hash trees over the versions a node holds, per slot: what anti-entropy compares.

Theory of operation
-------------------
Two replicas of a slot hold the same data exactly when they hold the same set of
``(key, digest)`` pairs, the digest being the names of the key's versions (their
vector clocks, :meth:`VersionStore.digest
<respkv.replication.store.VersionStore.digest>`).  Each pair is reduced to a
64-bit **leaf** hash, and every level of the tree is the XOR of the leaves below
it::

    root (all slots compared)
      group g: slots 64g .. 64g+63                 (GROUP_COUNT = 256 groups)
        slot s                                     (16384 slots, kept up to date)
          segment: keys whose key hash falls in it (SEGMENT_COUNT per slot;
                   a big slot keeps its leaves and sums by segment)
            leaf: CityHash64 of the key's digest, seeded with the key's hash

XOR makes every level incremental: a key changing from leaf ``a`` to leaf ``b``
changes its slot's sum by ``a ^ b`` and nothing else has to be rehashed, so the
tree is never rebuilt for an exchange.  :class:`SlotTrees` keeps, per slot, the
leaf of every key it holds and the slot's sum; a group's sum is the XOR of the
sums of the slots compared, made when asked (both sides restrict it to the slots
they share, named in the request); a small slot's segment sums are made from its
leaves when asked, a big slot keeps its leaves and sums by segment.  Keys whose
record changed are only noted on the write path (the node hands over the commit
log's list of changed keys once per event-loop round) and hashed later in
batches (:meth:`SlotTrees.settle`), so a key written many times between two
settles is hashed once.

An exchange (:mod:`respkv.replication.antientropy`) walks down only where the
sums differ: group sums, then the sums of the slots of differing groups, then —
for slots with many keys — segment sums, then the ``(key, leaf)`` lists of the
differing slots or segments.  The pure functions below compare each level; a
difference between two equal sets of pairs is impossible, and a difference left
unseen needs a 64-bit XOR collision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat

from cityhash import CityHash64, CityHash64WithSeed

from ..keyspace.slots import SLOT_COUNT, key_slot

__all__ = [
    "GROUP_COUNT",
    "SLOTS_PER_GROUP",
    "SEGMENT_COUNT",
    "SEGMENTED_SLOT_KEYS",
    "leaf_hash",
    "segment_of",
    "SlotTrees",
    "slots_bitmap",
    "bitmap_slots",
    "differing",
    "KeyDiff",
    "diff_leaves",
]

SLOTS_PER_GROUP = 64
GROUP_COUNT = SLOT_COUNT // SLOTS_PER_GROUP
SEGMENT_COUNT = 64
#: A slot holding more keys than this (on either side) is compared segment by
#: segment rather than by listing all its keys at once.
SEGMENTED_SLOT_KEYS = 256


def leaf_hash(key: bytes, digest: bytes) -> int:
    """The leaf of ``key`` holding versions named ``digest`` (never 0 in practice;
    :meth:`SlotTrees.update` computes the same inline)."""
    return CityHash64WithSeed(digest, CityHash64(key))


_SEGMENT_SHIFT = 58  # the top 6 bits of the key's hash: SEGMENT_COUNT = 64


def segment_of(key: bytes) -> int:
    """The segment of its slot that ``key`` falls in (from the key alone, so both
    sides agree whatever versions they hold)."""
    return CityHash64(key) >> _SEGMENT_SHIFT


class _Segmented:
    """A big slot's leaves kept by segment, with each segment's sum, so that an
    exchange lists or sums one segment without hashing every key of the slot."""

    __slots__ = ("parts", "sums", "count")

    def __init__(self, leaves: dict[bytes, int]) -> None:
        self.parts: list[dict[bytes, int]] = [{} for _ in range(SEGMENT_COUNT)]
        self.sums = [0] * SEGMENT_COUNT
        self.count = len(leaves)
        for key, leaf in leaves.items():
            segment = segment_of(key)
            self.parts[segment][key] = leaf
            self.sums[segment] ^= leaf


class SlotTrees:
    """The leaves and slot sums of every key one node holds (see the module doc).

    A slot's leaves are one dict while it is small; once it holds more than
    :data:`SEGMENTED_SLOT_KEYS` keys they are kept by segment (:class:`_Segmented`,
    for good), so an exchange's segment sums and listings cost what the segment
    holds."""

    def __init__(self) -> None:
        #: slot → {key: leaf} or its segments; None for a slot holding nothing.
        self._leaves: list[dict[bytes, int] | _Segmented | None] = [None] * SLOT_COUNT
        self._sums: list[int] = [0] * SLOT_COUNT
        #: Keys whose record changed since they were last hashed, in the order
        #: they changed (a dict used as an ordered set): hashed in that order,
        #: a settle walks memory about as it was written rather than in hash
        #: order (cache misses are most of a settle's cost; a quarter less time
        #: at 300,000 keys).
        self.pending: dict[bytes, None] = {}
        #: Keys held (with a leaf), for INFO.
        self.keys = 0
        #: Leaves computed since the start, for INFO.
        self.hashed = 0

    def changed(self, key: bytes) -> None:
        """``key``'s record changed: rehash it at the next :meth:`settle`."""
        self.pending[key] = None

    def changed_keys(self, keys: Iterable[bytes]) -> None:
        """:meth:`changed` for each of ``keys``."""
        self.pending.update(zip(keys, repeat(None)))

    def clear(self) -> None:
        """Hold nothing (FLUSHALL)."""
        self._leaves = [None] * SLOT_COUNT
        self._sums = [0] * SLOT_COUNT
        self.pending.clear()
        self.keys = 0

    def settle(self, digest_of: Callable[[bytes], bytes], limit: int | None = None) -> int:
        """Hash up to ``limit`` pending keys (all when None) with their digest now
        (``digest_of(key)``, empty when the key holds nothing).  Returns how many
        keys are still pending."""
        pending = self.pending
        if limit is None or limit >= len(pending):
            batch: Iterable[bytes] = pending
            self.pending = {}
        else:
            # The newest first: a dict's last entries go in O(1), where taking
            # its first ones leaves dead entries every later chunk would skip.
            batch = [pending.popitem()[0] for _ in range(limit)]
        update = self.update
        for key in batch:
            update(key, digest_of(key))
        return len(self.pending)

    def update(self, key: bytes, digest: bytes) -> None:
        """Make ``key``'s leaf the one of ``digest`` (no leaf for an empty digest)."""
        slot = key_slot(key)
        held = self._leaves[slot]
        if held is None:
            if not digest:
                return
            held = self._leaves[slot] = {}
        key_hash = CityHash64(key)
        segmented = held.__class__ is _Segmented
        leaves = held.parts[key_hash >> _SEGMENT_SHIFT] if segmented else held
        old = leaves.get(key, 0)
        if digest:
            new = CityHash64WithSeed(digest, key_hash)
            self.hashed += 1
            leaves[key] = new
            if not old:
                self.keys += 1
                if segmented:
                    held.count += 1
                elif len(held) > SEGMENTED_SLOT_KEYS:
                    self._leaves[slot] = _Segmented(held)
        else:
            new = 0
            if not old:
                return
            del leaves[key]
            self.keys -= 1
            if segmented:
                held.count -= 1
            if not (held.count if segmented else held):
                self._leaves[slot] = None
        if old != new:
            self._sums[slot] ^= old ^ new
            if segmented:
                held.sums[key_hash >> _SEGMENT_SHIFT] ^= old ^ new

    # -- what an exchange asks for ---------------------------------------------------------

    def slot_sum(self, slot: int) -> int:
        return self._sums[slot]

    def key_count(self, slot: int) -> int:
        held = self._leaves[slot]
        if held is None:
            return 0
        return held.count if held.__class__ is _Segmented else len(held)

    def group_sums(self, slots: Iterable[int]) -> list[int]:
        """Per group, the XOR of the sums of those of ``slots`` in it."""
        sums = [0] * GROUP_COUNT
        own = self._sums
        for slot in slots:
            sums[slot // SLOTS_PER_GROUP] ^= own[slot]
        return sums

    def segment_sums(self, slot: int) -> list[int]:
        """The sum of each segment of ``slot``."""
        held = self._leaves[slot]
        if held.__class__ is _Segmented:
            return list(held.sums)
        sums = [0] * SEGMENT_COUNT
        for key, leaf in (held or {}).items():
            sums[segment_of(key)] ^= leaf
        return sums

    def leaves(self, slot: int, segment: int | None = None) -> dict[bytes, int]:
        """``{key: leaf}`` of ``slot`` (of one of its segments when given)."""
        held = self._leaves[slot]
        if held is None:
            return {}
        if held.__class__ is _Segmented:
            if segment is not None:
                return dict(held.parts[segment])
            whole: dict[bytes, int] = {}
            for part in held.parts:
                whole.update(part)
            return whole
        if segment is None:
            return dict(held)
        return {key: leaf for key, leaf in held.items() if segment_of(key) == segment}


# -- pure comparisons ---------------------------------------------------------------------------


def slots_bitmap(slots: Iterable[int]) -> bytes:
    """The set of ``slots`` as a 2048-byte bitmap (slot s is bit s % 8 of byte s // 8)."""
    bitmap = bytearray(SLOT_COUNT // 8)
    for slot in slots:
        bitmap[slot >> 3] |= 1 << (slot & 7)
    return bytes(bitmap)


def bitmap_slots(bitmap: bytes) -> list[int]:
    """The slots a :func:`slots_bitmap` names; ValueError if it is not one."""
    if len(bitmap) != SLOT_COUNT // 8:
        raise ValueError(f"a slot bitmap has {SLOT_COUNT // 8} bytes, not {len(bitmap)}")
    return [i * 8 + bit for i, byte in enumerate(bitmap) if byte for bit in range(8) if byte >> bit & 1]


def differing(ids: Sequence[int], mine: Sequence[int], theirs: Sequence[int]) -> list[int]:
    """The ``ids`` whose sums differ (``mine[i]`` and ``theirs[i]`` belong to ``ids[i]``)."""
    if not len(ids) == len(mine) == len(theirs):
        raise ValueError("sums to compare must come one per id")
    return [ident for ident, a, b in zip(ids, mine, theirs) if a != b]


class KeyDiff:
    """What two ``{key: leaf}`` lists of the same slot (or segment) disagree on.

    ``only_mine``: keys the peer holds nothing of; ``only_theirs``: keys only the
    peer holds; ``both``: keys both hold in different versions.
    """

    __slots__ = ("only_mine", "only_theirs", "both")

    def __init__(self, only_mine: list[bytes], only_theirs: list[bytes], both: list[bytes]) -> None:
        self.only_mine = only_mine
        self.only_theirs = only_theirs
        self.both = both

    def __len__(self) -> int:
        return len(self.only_mine) + len(self.only_theirs) + len(self.both)

    def to_pull(self) -> list[bytes]:
        """Keys whose peer record may hold versions missing here."""
        return self.only_theirs + self.both

    def __repr__(self) -> str:
        return f"KeyDiff(only_mine={self.only_mine!r}, only_theirs={self.only_theirs!r}, both={self.both!r})"


def diff_leaves(mine: dict[bytes, int], theirs: dict[bytes, int]) -> KeyDiff:
    """Compare two ``{key: leaf}`` lists (see :class:`KeyDiff`); keys are in sorted order."""
    only_mine = sorted(key for key in mine if key not in theirs)
    only_theirs = sorted(key for key in theirs if key not in mine)
    both = sorted(key for key, leaf in mine.items() if key in theirs and theirs[key] != leaf)
    return KeyDiff(only_mine, only_theirs, both)
