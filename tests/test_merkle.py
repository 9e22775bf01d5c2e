"""The anti-entropy hash trees (pure): incremental sums equal rebuilt ones, and the
comparisons find exactly the differing groups, slots, segments and keys."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.keyspace.slots import SLOT_COUNT, key_slot
from respkv.replication.merkle import (
    GROUP_COUNT,
    SEGMENT_COUNT,
    SEGMENTED_SLOT_KEYS,
    SLOTS_PER_GROUP,
    SlotTrees,
    bitmap_slots,
    diff_leaves,
    differing,
    leaf_hash,
    segment_of,
    slots_bitmap,
)


class Held:
    """What a node holds (key → digest) and its trees, told of every change as a
    store tells them."""

    def __init__(self, restored: dict[bytes, bytes] | None = None) -> None:
        self.digests: dict[bytes, bytes] = dict(restored or {})
        self.trees = SlotTrees(self.digest_of)
        self.trees.unhashed(self.digests)

    def digest_of(self, key: bytes) -> bytes:
        return self.digests.get(key, b"")

    def set(self, key: bytes, digest: bytes) -> None:
        old = self.digest_of(key)
        if digest:
            self.digests[key] = digest
        else:
            self.digests.pop(key, None)
        self.trees.moved(key, old, digest)


def built(pairs: dict[bytes, bytes]) -> SlotTrees:
    held = Held()
    for key, digest in pairs.items():
        held.set(key, digest)
    return held.trees


def all_sums(trees: SlotTrees) -> list[int]:
    return [trees.slot_sum(slot) for slot in range(SLOT_COUNT)]


def assert_same_trees(trees: SlotTrees, expected: SlotTrees, slots) -> None:
    assert all_sums(trees) == all_sums(expected)
    assert trees.keys == expected.keys
    for slot in slots:
        assert trees.leaves(slot) == expected.leaves(slot)
        assert trees.segment_sums(slot) == expected.segment_sums(slot)
        assert trees.key_count(slot) == expected.key_count(slot)


keys = st.binary(min_size=1, max_size=12)
digests = st.binary(min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(keys, st.one_of(st.just(b""), digests)), max_size=60))
def test_sums_after_any_sequence_of_changes_equal_a_tree_built_from_the_end_state(changes):
    held = Held()
    for key, digest in changes:
        held.set(key, digest)
    rebuilt = built(held.digests)
    assert held.trees.keys == len(held.digests)
    assert_same_trees(held.trees, rebuilt, {key_slot(key) for key, _ in changes})


def test_a_slot_sum_is_the_xor_of_its_leaves_and_an_emptied_slot_sums_to_zero():
    held = Held()
    a, b = b"{x}a", b"{x}b"  # one slot
    held.set(a, b"d1")
    held.set(b, b"d2")
    trees = held.trees
    slot = key_slot(a)
    assert trees.slot_sum(slot) == leaf_hash(a, b"d1") ^ leaf_hash(b, b"d2")
    assert trees.leaves(slot) == {a: leaf_hash(a, b"d1"), b: leaf_hash(b, b"d2")}
    held.set(a, b"d3")
    assert trees.slot_sum(slot) == leaf_hash(a, b"d3") ^ leaf_hash(b, b"d2")
    held.set(a, b"")
    held.set(b, b"")
    assert trees.slot_sum(slot) == 0 and trees.key_count(slot) == 0 and trees.keys == 0
    assert trees.segment_sums(slot) == [0] * SEGMENT_COUNT


def test_the_leaf_depends_on_key_and_digest_not_on_which_key_has_which_digest():
    """Two keys swapping their versions change the slot sum (a plain XOR of key and
    digest hashes would not see it)."""
    one = built({b"{s}a": b"d1", b"{s}b": b"d2"})
    swapped = built({b"{s}a": b"d2", b"{s}b": b"d1"})
    assert one.slot_sum(key_slot(b"{s}a")) != swapped.slot_sum(key_slot(b"{s}a"))


def test_a_change_that_keeps_the_digest_changes_nothing():
    held = Held()
    held.set(b"a", b"1")
    before = all_sums(held.trees)
    held.trees.moved(b"a", b"1", b"1")
    assert all_sums(held.trees) == before and held.trees.keys == 1


def test_settle_hashes_each_restored_key_once_with_its_digest_at_that_time():
    held = Held({b"a": b"1", b"gone": b"2"})
    held.set(b"a", b"3")  # changed before it was hashed: left to the settle
    held.set(b"gone", b"")
    assert held.trees.keys == 0 and held.trees.slot_sum(key_slot(b"a")) == 0
    assert held.trees.settle() == 0
    assert held.trees.keys == 1
    assert held.trees.slot_sum(key_slot(b"a")) == leaf_hash(b"a", b"3")
    assert held.trees.slot_sum(key_slot(b"gone")) == 0


def test_settle_with_a_limit_leaves_the_rest_pending():
    held = Held({b"k%d" % i: b"d" for i in range(10)})
    assert held.trees.settle(limit=4) == 6
    assert held.trees.keys == 4
    assert held.trees.settle() == 0
    assert held.trees.keys == 10


def test_group_sums_cover_only_the_slots_asked():
    trees = built({b"k%d" % i: b"d" for i in range(200)})
    some = sorted({key_slot(b"k%d" % i) for i in range(0, 200, 2)})
    sums = trees.group_sums(some)
    assert len(sums) == GROUP_COUNT
    expected = [0] * GROUP_COUNT
    for slot in some:
        expected[slot // SLOTS_PER_GROUP] ^= trees.slot_sum(slot)
    assert sums == expected


@pytest.mark.parametrize("count", [5, 500])
def test_segments_partition_a_slot(count):
    trees = built({b"{big}%d" % i: b"d%d" % i for i in range(count)})
    slot = key_slot(b"{big}0")
    sums = trees.segment_sums(slot)
    assert len(sums) == SEGMENT_COUNT
    total = 0
    for segment, value in enumerate(sums):
        leaves = trees.leaves(slot, segment)
        assert all(segment_of(key) == segment for key in leaves)
        folded = 0
        for leaf in leaves.values():
            folded ^= leaf
        assert folded == value
        total ^= value
    assert total == trees.slot_sum(slot)
    assert sum(len(trees.leaves(slot, s)) for s in range(SEGMENT_COUNT)) == count


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.one_of(st.just(b""), digests)), min_size=300, max_size=900))
def test_a_big_slot_kept_by_segment_agrees_with_its_leaves_through_any_changes(changes):
    """Past SEGMENTED_SLOT_KEYS a slot keeps its keys by segment: its sums, counts
    and listings must stay what the leaves of what it holds give, as keys come and go."""
    held = Held()
    for i, digest in changes:
        held.set(b"{hot}%d" % i, digest)
    trees, final = held.trees, held.digests
    slot = key_slot(b"{hot}0")
    leaves = {key: leaf_hash(key, digest) for key, digest in final.items()}  # computed apart from SlotTrees
    segment_sums = [0] * SEGMENT_COUNT
    total = 0
    for key, leaf in leaves.items():
        segment_sums[segment_of(key)] ^= leaf
        total ^= leaf
    assert trees.slot_sum(slot) == total
    assert trees.key_count(slot) == len(final) == trees.keys
    assert trees.leaves(slot) == leaves
    assert trees.segment_sums(slot) == segment_sums
    for segment in range(SEGMENT_COUNT):
        assert trees.leaves(slot, segment) == {k: v for k, v in leaves.items() if segment_of(k) == segment}


@pytest.mark.parametrize("seed", range(4))
def test_a_build_in_chunks_while_keys_change_gives_the_tree_of_the_end_state(seed):
    """At start the restored keys are hashed in chunks while clients change keys,
    restored or not: the trees must end as if built from what is held then, for
    hash tags of every shape, keys coming and going and a slot growing past
    :data:`SEGMENTED_SLOT_KEYS` between and during chunks."""
    rng = random.Random(seed)
    prefixes = [b"{hot}"] * 8 + [b"", b"{}", b"a{b{c}", b"{x"]

    def some_key() -> bytes:
        return rng.choice(prefixes) + b"%d" % rng.randrange(500)

    held = Held({some_key(): b"r%d" % rng.randrange(3) for _ in range(400)})
    for _ in range(3000):
        held.set(some_key(), rng.choice([b"", b"d%d" % rng.randrange(3), b"e%d" % rng.randrange(3)]))
        if rng.random() < 0.02:
            held.trees.settle(limit=rng.randrange(1, 50))
    assert held.trees.settle() == 0
    expected = built(held.digests)
    assert expected.key_count(key_slot(b"{hot}")) > SEGMENTED_SLOT_KEYS  # the big-slot path ran
    assert held.trees.keys == len(held.digests)
    assert_same_trees(held.trees, expected, {key_slot(key) for key in held.digests})


def test_settle_with_a_limit_takes_each_pending_key_once():
    """The build at start settles a million keys in chunks: each chunk takes
    keys off the pending ones (the newest first, in O(1) each), once each."""
    held = Held({b"{t}k%d" % i: b"d" for i in range(10)})
    held.set(b"{t}held", b"d")  # one slot holding a key already
    held.trees.unhashed([b"{t}k0"])  # named again: still one key
    assert held.trees.settle(limit=4) == 6
    assert sorted(held.trees.pending) == sorted(b"{t}k%d" % i for i in range(6))
    assert held.trees.settle(limit=100) == 0
    assert held.trees.keys == 11 == held.trees.key_count(key_slot(b"{t}"))
    assert held.trees.slot_sum(key_slot(b"{t}")) == built(held.digests).slot_sum(key_slot(b"{t}"))


@pytest.mark.parametrize("slots", [[], [0], [SLOT_COUNT - 1], [0, 7, 8, 9, 16383], list(range(0, SLOT_COUNT, 3))])
def test_slot_bitmaps_round_trip(slots):
    bitmap = slots_bitmap(slots)
    assert len(bitmap) == SLOT_COUNT // 8
    assert bitmap_slots(bitmap) == sorted(slots)


def test_a_bitmap_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="2048 bytes"):
        bitmap_slots(b"\x01" * 10)


@pytest.mark.parametrize(
    ("ids", "mine", "theirs", "expected"),
    [
        ([], [], [], []),
        ([1, 2, 3], [5, 6, 7], [5, 6, 7], []),
        ([1, 2, 3], [5, 6, 7], [5, 0, 8], [2, 3]),
        ([40], [0], [9], [40]),
    ],
)
def test_differing_names_the_ids_whose_sums_differ(ids, mine, theirs, expected):
    assert differing(ids, mine, theirs) == expected


def test_differing_refuses_lists_of_other_lengths():
    with pytest.raises(ValueError):
        differing([1, 2], [0, 0], [0])


@pytest.mark.parametrize(
    ("mine", "theirs", "only_mine", "only_theirs", "both"),
    [
        ({}, {}, [], [], []),
        ({b"a": 1}, {b"a": 1}, [], [], []),
        ({b"a": 1}, {}, [b"a"], [], []),
        ({}, {b"a": 1}, [], [b"a"], []),
        ({b"a": 1, b"b": 2, b"c": 3}, {b"b": 2, b"c": 4, b"d": 5}, [b"a"], [b"d"], [b"c"]),
    ],
)
def test_diff_leaves(mine, theirs, only_mine, only_theirs, both):
    diff = diff_leaves(mine, theirs)
    assert (diff.only_mine, diff.only_theirs, diff.both) == (only_mine, only_theirs, both)
    assert len(diff) == len(only_mine) + len(only_theirs) + len(both)
    assert diff.to_pull() == only_theirs + both


def test_two_replicas_differing_in_a_few_keys_differ_in_exactly_their_slots():
    rng = random.Random(7)
    common = {b"key:%d" % i: b"clock%d" % rng.randrange(1000) for i in range(5000)}
    other = dict(common)
    changed = [b"key:%d" % i for i in rng.sample(range(5000), 20)]
    for key in changed:
        other[key] = b"newer"
    del other[b"key:1"]
    changed.append(b"key:1")
    mine, theirs = built(common), built(other)
    slots = differing(range(SLOT_COUNT), all_sums(mine), all_sums(theirs))
    assert slots == sorted({key_slot(key) for key in changed})
    found = []
    for slot in slots:
        diff = diff_leaves(mine.leaves(slot), theirs.leaves(slot))
        found += diff.only_mine + diff.only_theirs + diff.both
    assert sorted(found) == sorted(set(changed))
