"""A bucket index over a collection's members: SCAN cursors and fair random picks.

Theory of operation
-------------------
Redis walks a big hash, set or sorted set with a cursor that names a bucket of its
hash table, advancing it in *reverse binary* order (increment the bit-reversed
index).  That order has a useful property: when the table doubles or halves between
two calls, every bucket not yet visited is still ahead of the cursor, so an element
present for the whole walk is returned at least once.  It also picks random elements
in O(1) by probing random buckets.

Python's ``dict`` and ``set`` expose neither bucket positions nor random access, so a
collection that is scanned or sampled while large gets this side index: members
grouped by ``hash(member) & mask`` in a power-of-two table.  The owner keeps it exact
by calling :meth:`BucketIndex.add` and :meth:`BucketIndex.discard` on every change of
membership while the index exists; :func:`index_of` builds it on first use and
rebuilds it (at most once per halving or doubling) when the collection's size has
drifted far from the table's.

Fair random picks use rejection sampling: a random bucket and a random slot below an
upper bound of the bucket lengths; the pick is kept only if that slot is occupied.
Every member is then equally likely, unlike Redis's plain random bucket probe.
"""

from __future__ import annotations

import random

#: Members per bucket the table is sized for (a few: fewer, larger lists).
_LOAD = 4


def _table_bits(n: int) -> int:
    """log2 of the table size suited to ``n`` members."""
    return (n // _LOAD).bit_length()


def _reverse(value: int, bits: int) -> int:
    """``value`` with its low ``bits`` bits in reverse order."""
    if bits == 0:
        return 0
    return int(format(value, "0%db" % bits)[::-1], 2)


class BucketIndex:
    """Members of one collection by bucket; see the module documentation."""

    __slots__ = ("bits", "mask", "buckets", "longest")

    def __init__(self, members, size: int) -> None:
        self.bits = _table_bits(size)
        self.mask = (1 << self.bits) - 1
        self.buckets: list[list | None] = [None] * (1 << self.bits)
        #: An upper bound of the bucket lengths (exact right after building).
        self.longest = 1
        for member in members:
            self.add(member)

    def add(self, member) -> None:
        """Record a member that was just added to the collection."""
        i = hash(member) & self.mask
        bucket = self.buckets[i]
        if bucket is None:
            self.buckets[i] = [member]
        else:
            bucket.append(member)
            if len(bucket) > self.longest:
                self.longest = len(bucket)

    def discard(self, member) -> None:
        """Forget a member that was just removed from the collection."""
        i = hash(member) & self.mask
        bucket = self.buckets[i]
        bucket.remove(member)
        if not bucket:
            self.buckets[i] = None

    def suits(self, size: int) -> bool:
        """Whether the table is still a sensible size for ``size`` members."""
        return abs(_table_bits(size) - self.bits) < 2

    def scan(self, cursor: int, count: int) -> tuple[int, list]:
        """Members of the buckets from ``cursor`` on, about ``count`` of them.

        Returns the next cursor (0 once the walk is complete) and the members seen.
        Like Redis, at most ``10 * count`` buckets are visited per call, so a call
        over a sparse table may return nothing with a non-zero cursor.
        """
        bits, mask, buckets = self.bits, self.mask, self.buckets
        found: list = []
        budget = 10 * count
        v = cursor & mask
        while True:
            bucket = buckets[v]
            if bucket is not None:
                found.extend(bucket)
            step = _reverse(v, bits) + 1
            if step >> bits:
                return 0, found
            v = _reverse(step, bits)
            budget -= 1
            if len(found) >= count or budget <= 0:
                return v, found

    def random_member(self):
        """A member chosen uniformly at random; the collection must not be empty."""
        buckets = self.buckets
        getrandbits = random.getrandbits
        randrange = random.randrange
        bits, longest = self.bits, self.longest
        while True:
            bucket = buckets[getrandbits(bits)] if bits else buckets[0]
            if bucket is not None:
                j = randrange(longest)
                if j < len(bucket):
                    return bucket[j]


def index_of(collection) -> BucketIndex:
    """The up-to-date bucket index of ``collection``, built or resized as needed.

    ``collection`` iterates its members and has an ``index`` attribute holding its
    :class:`BucketIndex` or ``None``.
    """
    index = collection.index
    size = len(collection)
    if index is None or not index.suits(size):
        index = collection.index = BucketIndex(collection, size)
    return index


# -- random picks -------------------------------------------------------------------

#: Up to this many members a pick simply copies the members into a list.
_SMALL = 128


def pick_one(collection):
    """A uniformly random member of a non-empty collection."""
    if len(collection) <= _SMALL:
        return random.choice(list(collection))
    return index_of(collection).random_member()


def pick_repeated(collection, count: int) -> list:
    """``count`` members drawn independently (repeats possible), in draw order."""
    if len(collection) <= _SMALL:
        return random.choices(list(collection), k=count)
    index = index_of(collection)
    return [index.random_member() for _ in range(count)]


def pick_distinct(collection, count: int) -> list:
    """``count`` distinct members (fewer than the collection holds), in random order.

    Drawing repeatedly until enough distinct members came up costs O(count) while
    ``count`` is a small part of the collection; otherwise sampling a copy is cheaper.
    """
    size = len(collection)
    if size <= _SMALL or count * 3 > size:
        return random.sample(list(collection), count)
    index = index_of(collection)
    chosen: dict = {}
    while len(chosen) < count:
        chosen[index.random_member()] = None
    return list(chosen)
