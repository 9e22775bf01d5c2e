"""The bucket index behind HSCAN/SSCAN cursors and random picks of big collections."""

from __future__ import annotations

import random

from respkv.keyspace.buckets import BucketIndex, index_of, pick_distinct, pick_one, pick_repeated


class Members(set):
    """A collection the way the hash and set types present one to the index."""

    __slots__ = ("index",)

    def __init__(self, members=()) -> None:
        super().__init__(members)
        self.index = None

    def add_member(self, member) -> None:
        if member not in self:
            self.add(member)
            if self.index is not None:
                self.index.add(member)

    def remove_member(self, member) -> None:
        if member in self:
            self.discard(member)
            if self.index is not None:
                self.index.discard(member)


def walk(collection, count, between=None):
    """A full cursor walk; ``between(step)`` may change the collection between calls."""
    cursor, seen, step = 0, set(), 0
    while True:
        cursor, page = index_of(collection).scan(cursor, count)
        seen.update(page)
        step += 1
        if cursor == 0:
            return seen, step
        if between is not None:
            between(step)
        assert step < 100000


def test_walk_returns_everything_once_per_bucket():
    coll = Members(f"m{i}".encode() for i in range(5000))
    seen, steps = walk(coll, 10)
    assert seen == coll
    assert steps > 100
    seen, steps = walk(coll, 100000)
    assert seen == coll and steps == 1


def test_tiny_collections():
    for n in range(1, 12):
        coll = Members(range(n))
        assert walk(coll, 1)[0] == coll
        assert pick_one(coll) in coll


def test_walk_survives_growth_and_shrinking():
    keep = {f"keep{i}".encode() for i in range(2000)}
    coll = Members(keep)

    def churn(step):
        if step < 30:
            for i in range(400):
                coll.add_member(f"tmp{step}_{i}".encode())
        elif step == 30:
            for member in [m for m in coll if m.startswith(b"tmp")]:
                coll.remove_member(member)

    seen, _ = walk(coll, 16, churn)
    assert keep <= seen


def test_index_follows_changes():
    coll = Members(range(1000))
    index = index_of(coll)
    for i in range(1000, 1500):
        coll.add_member(i)
    for i in range(0, 1000, 2):
        coll.remove_member(i)
    members = [m for bucket in index.buckets if bucket for m in bucket]
    assert sorted(members) == sorted(coll)


def test_random_member_is_uniform():
    random.seed(1234)
    coll = Members(range(2000))
    index = BucketIndex(coll, len(coll))
    counts = [0] * 2000
    draws = 200000
    for _ in range(draws):
        counts[index.random_member()] += 1
    expected = draws / 2000
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 2300  # 1999 degrees of freedom: mean 1999, sd about 63


def test_picks():
    random.seed(99)
    for size in (5, 100, 1000):
        coll = Members(range(size))
        assert set(pick_repeated(coll, 50)) <= coll
        assert len(pick_repeated(coll, 50)) == 50
        for count in (1, size // 4, size - 1):
            picked = pick_distinct(coll, count)
            assert len(picked) == count == len(set(picked))
            assert set(picked) <= coll
