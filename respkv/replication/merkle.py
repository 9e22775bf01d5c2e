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
          segment: keys whose key hash falls in it (SEGMENT_COUNT per slot,
                   kept up to date)
            leaf: CityHash64 of the key's digest, seeded with the key's hash

XOR makes every level incremental: a key whose record goes from digest ``a`` to
``b`` changes its slot's and its segment's sums by ``leaf(a) ^ leaf(b)`` and
nothing else has to be rehashed.  The store reports every change of a record
with both digests as it makes it (:meth:`SlotTrees.moved`, while the key and the
record are at hand), so no leaf is stored: :class:`SlotTrees` keeps, per slot,
the set of keys holding a record (by segment once the slot is big) and the sums
of the slot and of its segments.  An exchange's listing of a slot or segment
computes the leaves of its keys from their digests when asked.  (Keeping a
leaf per key and hashing changed keys later in batches cost a replicated node
about 32 MB more at 777,000 keys, and more CPU; see docs/replication.md,
"Benchmark".)  The keys restored at start are hashed once, in chunks, before any
exchange (:meth:`SlotTrees.settle`); a change of a key not hashed yet is left to
that.

An exchange (:mod:`respkv.replication.antientropy`) walks down only where the
sums differ: group sums, then the sums of the slots of differing groups, then —
for slots with many keys — segment sums, then the ``(key, leaf)`` lists of the
differing slots or segments.  The pure functions below compare each level; a
difference between two equal sets of pairs is impossible, and a difference left
unseen needs a 64-bit XOR collision.
"""

from __future__ import annotations

from array import array
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
    :meth:`SlotTrees.moved` computes the same inline)."""
    return CityHash64WithSeed(digest, CityHash64(key))


_SEGMENT_SHIFT = 58  # the top 6 bits of the key's hash: SEGMENT_COUNT = 64


def segment_of(key: bytes) -> int:
    """The segment of its slot that ``key`` falls in (from the key alone, so both
    sides agree whatever versions they hold)."""
    return CityHash64(key) >> _SEGMENT_SHIFT


class _Segmented:
    """A big slot's keys kept by segment, so that an exchange lists one segment
    without going through every key of the slot."""

    __slots__ = ("parts", "count")

    def __init__(self, keys: set[bytes]) -> None:
        self.parts: list[set[bytes]] = [set() for _ in range(SEGMENT_COUNT)]
        self.count = len(keys)
        for key in keys:
            self.parts[segment_of(key)].add(key)


class SlotTrees:
    """The keys and sums of every slot of one node (see the module doc).

    ``digest_of(key)`` is the digest of what the node holds of ``key`` now (empty
    when nothing): what leaves are made of.  A slot's keys are one set while it is
    small; once it holds more than :data:`SEGMENTED_SLOT_KEYS` keys they are kept
    by segment (:class:`_Segmented`, for good), so an exchange's listing of a
    segment costs what the segment holds."""

    def __init__(self, digest_of: Callable[[bytes], bytes]) -> None:
        self.digest_of = digest_of
        #: Keys restored at start and not hashed yet, in the order they were
        #: restored (a dict used as an ordered set): hashed by :meth:`settle`.
        self.pending: dict[bytes, None] = {}
        self.clear()

    def unhashed(self, keys: Iterable[bytes]) -> None:
        """``keys`` hold records not hashed yet (restored at start): hash them at
        the next :meth:`settle`, with their digest then."""
        self.pending.update(zip(keys, repeat(None)))

    def clear(self) -> None:
        """Hold nothing (FLUSHALL)."""
        #: slot → its keys, or its segments; None for a slot holding nothing.
        self._keys: list[set[bytes] | _Segmented | None] = [None] * SLOT_COUNT
        self._sums: list[int] = [0] * SLOT_COUNT
        #: The sum of segment g of slot s at s * SEGMENT_COUNT + g.
        self._segment_sums = array("Q", bytes(8 * SLOT_COUNT * SEGMENT_COUNT))
        self.pending.clear()
        #: Keys holding a record, for INFO.
        self.keys = 0

    def settle(self, limit: int | None = None) -> int:
        """Hash up to ``limit`` of the keys not hashed yet (all when None) with
        their digest now.  Returns how many are still waiting."""
        pending = self.pending
        if not pending:
            return 0
        if limit is None or limit >= len(pending):
            batch: Iterable[bytes] = pending
            self.pending = {}
        else:
            # The newest first: a dict's last entries go in O(1), where taking
            # its first ones leaves dead entries every later chunk would skip.
            batch = [pending.popitem()[0] for _ in range(limit)]
        moved = self.moved
        digest_of = self.digest_of
        for key in batch:
            moved(key, b"", digest_of(key))
        return len(self.pending)

    def moved(self, key: bytes, old: bytes, new: bytes) -> None:
        """``key``'s record went from the versions named ``old`` to those named
        ``new`` (empty: no record); a key not hashed yet is left to :meth:`settle`.
        Every change of a record must come here exactly once."""
        if old == new or (self.pending and key in self.pending):
            return
        slot = key_slot(key)
        key_hash = CityHash64(key)
        segment = key_hash >> _SEGMENT_SHIFT
        change = CityHash64WithSeed(new, key_hash) if new else 0
        if old:
            change ^= CityHash64WithSeed(old, key_hash)
        self._sums[slot] ^= change
        self._segment_sums[slot * SEGMENT_COUNT + segment] ^= change
        if old and new:
            return
        held = self._keys[slot]
        if new:  # a new record
            self.keys += 1
            if held is None:
                self._keys[slot] = {key}
            elif held.__class__ is _Segmented:
                held.parts[segment].add(key)
                held.count += 1
            else:
                held.add(key)
                if len(held) > SEGMENTED_SLOT_KEYS:
                    self._keys[slot] = _Segmented(held)
        elif held is not None:  # a record gone (None only if a change went unreported)
            self.keys -= 1
            if held.__class__ is _Segmented:
                held.parts[segment].discard(key)
                held.count -= 1
                if not held.count:
                    self._keys[slot] = None
            else:
                held.discard(key)
                if not held:
                    self._keys[slot] = None

    # -- what an exchange asks for ---------------------------------------------------------

    def slot_sum(self, slot: int) -> int:
        return self._sums[slot]

    def key_count(self, slot: int) -> int:
        held = self._keys[slot]
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
        start = slot * SEGMENT_COUNT
        return self._segment_sums[start : start + SEGMENT_COUNT].tolist()

    def leaves(self, slot: int, segment: int | None = None) -> dict[bytes, int]:
        """``{key: leaf}`` of ``slot`` (of one of its segments when given), made now
        from the keys' digests."""
        held = self._keys[slot]
        if held is None:
            return {}
        if held.__class__ is _Segmented:
            keys: Iterable[bytes] = held.parts[segment] if segment is not None else [
                key for part in held.parts for key in part]
        elif segment is None:
            keys = held
        else:
            keys = [key for key in held if segment_of(key) == segment]
        digest_of = self.digest_of
        return {key: leaf_hash(key, digest_of(key)) for key in keys}


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
