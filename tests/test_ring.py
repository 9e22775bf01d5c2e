"""Tests for the consistent-hash ring.

Placement is checked against a literal reading of the rules (tokens, slot
positions, clockwise walk); balance and movement are checked as properties over
seeded random clusters of 40-hex node ids, with the tolerances stated beside each
test.
"""

from __future__ import annotations

import random

import pytest
from cityhash import CityHash64

from respkv.cluster.ring import (
    DEFAULT_VNODES,
    SLOT_SPACING,
    Move,
    Ring,
    moves,
    node_tokens,
    ranges,
    slot_position,
)
from respkv.keyspace.slots import SLOT_COUNT

CLUSTER_SIZES = (3, 4, 5, 8, 10)


def node_ids(seed: int, count: int) -> list[str]:
    """``count`` random 40-hex node ids, the same for the same seed."""
    rng = random.Random(seed)
    return ["%040x" % rng.getrandbits(160) for _ in range(count)]


def equal_ring(ids: list[str], **kwargs) -> Ring:
    return Ring(dict.fromkeys(ids, 1), **kwargs)


def reference_walk(members: dict[str, int], vnodes: int, slot: int) -> list[str]:
    """Distinct nodes clockwise from ``slot``, computed straight from the rules."""
    tokens = sorted(
        (CityHash64(b"%s#%d" % (node_id.encode(), i)), node_id)
        for node_id, weight in members.items()
        for i in range(vnodes * weight)
    )
    position = slot * 2**64 // SLOT_COUNT
    start = next((i for i, (token, _) in enumerate(tokens) if token >= position), 0)
    order: list[str] = []
    for i in range(len(tokens)):
        node_id = tokens[(start + i) % len(tokens)][1]
        if node_id not in order:
            order.append(node_id)
    return order


# -- placement rules ---------------------------------------------------------------


def test_slot_positions_are_evenly_spaced():
    assert SLOT_SPACING == 2**50
    assert slot_position(0) == 0
    assert slot_position(1) == 2**50
    assert slot_position(SLOT_COUNT - 1) == 2**64 - 2**50


def test_small_ring_matches_reference_including_wraparound():
    # Two tokens per node leave long arcs; the slots above the highest token wrap
    # past the top of the ring to the lowest one.
    members = dict.fromkeys(node_ids(1, 3), 1)
    ring = Ring(members, vnodes=2)
    top = max(node_tokens(node_id, 2)[i] for node_id in members for i in range(2))
    wrapping = [slot for slot in range(SLOT_COUNT) if slot_position(slot) > top]
    assert wrapping
    for slot in list(range(0, SLOT_COUNT, 64)) + wrapping[:50] + wrapping[-50:]:
        walk = reference_walk(members, 2, slot)
        assert list(ring.walk(slot)) == walk
        assert ring.owner(slot) == walk[0]
        assert ring.preference_list(slot, 2) == tuple(walk[:2])
    assert ring.owner(wrapping[-1]) == ring.owner(0)


@pytest.mark.parametrize("seed", [2, 3])
def test_weighted_ring_matches_reference(seed):
    ids = node_ids(seed, 6)
    members = {node_id: 1 + i % 3 for i, node_id in enumerate(ids)}
    ring = Ring(members, vnodes=8)
    for slot in list(range(0, SLOT_COUNT, 331)) + [SLOT_COUNT - 1]:
        walk = reference_walk(members, 8, slot)
        for rf in (1, 2, 3, 6):
            assert ring.preference_list(slot, rf) == tuple(walk[:rf])


def test_default_ring_matches_reference_on_sample_slots():
    members = dict.fromkeys(node_ids(4, 4), 1)
    ring = Ring(members)
    for slot in (0, 1, 8191, 12345, SLOT_COUNT - 1):
        assert ring.preference_list(slot, 3) == tuple(reference_walk(members, DEFAULT_VNODES, slot)[:3])


def test_token_count_is_vnodes_times_weight():
    ids = node_ids(5, 3)
    ring = Ring({ids[0]: 1, ids[1]: 2, ids[2]: 3}, vnodes=10)
    assert ring.token_count == 60
    assert Ring({ids[0]: 1}).token_count == DEFAULT_VNODES


# -- preference lists --------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_preference_lists_hold_rf_distinct_nodes_capped_at_membership(size):
    ring = equal_ring(node_ids(10 + size, size), vnodes=64)
    for rf in (1, 2, 3, 4):
        expected = min(rf, size)
        for slot, nodes in enumerate(ring.preference_lists(rf)):
            assert len(nodes) == expected
            assert len(set(nodes)) == expected
            assert nodes[0] == ring.owner(slot)


def test_preference_lists_are_prefixes_of_each_other():
    ring = equal_ring(node_ids(20, 6), vnodes=64)
    by_rf = {rf: ring.preference_lists(rf) for rf in range(1, 7)}
    for slot in range(SLOT_COUNT):
        full = by_rf[6][slot]
        assert tuple(ring.walk(slot)) == full
        for rf in range(1, 6):
            assert by_rf[rf][slot] == full[:rf]


def test_preference_lists_table_is_cached_and_shared():
    ring = equal_ring(node_ids(21, 4), vnodes=32)
    table = ring.preference_lists(3)
    assert ring.preference_lists(3) is table
    # RF beyond the membership is capped to the same table.
    assert ring.preference_lists(4) is ring.preference_lists(9)
    # Equal lists are one object, so the table stays small.
    assert len({id(nodes) for nodes in table}) == len(set(table))


def test_empty_ring_serves_nothing():
    ring = Ring()
    assert len(ring) == 0 and ring.token_count == 0
    assert ring.owner(0) is None
    assert ring.owners() == (None,) * SLOT_COUNT
    assert ring.preference_list(5, 3) == ()
    assert list(ring.walk(5)) == []
    assert ring.coordinator(5, 3, set()) is None
    assert ring.fallbacks(5, 3, set()) == {}
    assert ring.slot_counts() == {}
    assert ring.slots_of("a" * 40) == ()


def test_slots_of_and_slot_counts_agree():
    ids = node_ids(22, 4)
    ring = equal_ring(ids, vnodes=64)
    counts = ring.slot_counts()
    assert sum(counts.values()) == SLOT_COUNT
    assert sorted(s for node_id in ids for s in ring.slots_of(node_id)) == list(range(SLOT_COUNT))
    for node_id in ids:
        assert len(ring.slots_of(node_id)) == counts[node_id]
    replicated = ring.slot_counts(rf=3)
    assert sum(replicated.values()) == 3 * SLOT_COUNT
    for node_id in ids:
        assert len(ring.slots_of(node_id, rf=3)) == replicated[node_id]
    assert ring.slots_of("f" * 40) == ()


# -- balance -----------------------------------------------------------------------


@pytest.mark.parametrize("size", CLUSTER_SIZES)
@pytest.mark.parametrize("seed", range(6))
def test_equal_weights_balance_within_1_25(size, seed):
    counts = equal_ring(node_ids(100 * size + seed, size)).slot_counts()
    assert len(counts) == size
    assert max(counts.values()) / min(counts.values()) <= 1.25, counts


@pytest.mark.parametrize("seed", range(4))
def test_slots_proportional_to_weight(seed):
    # Tolerance: slots per unit of weight within the same 1.25 max/min as equal
    # weights, and each weight-2 node within 2 +/- 15% of the mean weight-1 node.
    ids = node_ids(500 + seed, 5)
    weights = {node_id: 2 if i < 2 else 1 for i, node_id in enumerate(ids)}
    counts = Ring(weights).slot_counts()
    per_unit = [counts[node_id] / weights[node_id] for node_id in ids]
    assert max(per_unit) / min(per_unit) <= 1.25, counts
    mean_single = sum(counts[node_id] for node_id in ids[2:]) / 3
    for node_id in ids[:2]:
        assert 1.7 <= counts[node_id] / mean_single <= 2.3, counts


# -- membership changes ------------------------------------------------------------


@pytest.mark.parametrize("size", CLUSTER_SIZES)
@pytest.mark.parametrize("seed", range(3))
def test_adding_a_node_moves_about_its_share_only_to_it(size, seed):
    # Tolerance: the moved slots are 1/(N+1) of all slots +/- 15%.
    ids = node_ids(1000 * size + seed, size + 1)
    old = equal_ring(ids[:size])
    newcomer = ids[size]
    new = old.with_node(newcomer)
    planned = moves(old, new)
    assert all(move.target == newcomer for move in planned)
    assert all(move.source == old.owner(move.slot) for move in planned)
    assert [move.slot for move in planned] == list(new.slots_of(newcomer))
    share = len(planned) / SLOT_COUNT
    assert abs(share * (size + 1) - 1) <= 0.15, share


@pytest.mark.parametrize("size", (3, 5, 10))
def test_adding_a_node_only_admits_it_to_replica_sets(size):
    ids = node_ids(2000 + size, size + 1)
    old = equal_ring(ids[:size])
    newcomer = ids[size]
    new = old.with_node(newcomer)
    rf = 3
    for before, after in zip(old.preference_lists(rf), new.preference_lists(rf)):
        kept = tuple(node_id for node_id in after if node_id != newcomer)
        assert kept == before[: len(kept)]


@pytest.mark.parametrize("size", CLUSTER_SIZES)
@pytest.mark.parametrize("seed", range(2))
def test_removing_a_node_moves_only_its_slots_to_their_next_replica(size, seed):
    ids = node_ids(3000 * size + seed, size)
    old = equal_ring(ids)
    leaving = ids[seed % size]
    new = old.without_node(leaving)
    planned = moves(old, new)
    assert [move.slot for move in planned] == list(old.slots_of(leaving))
    for move in planned:
        assert move.source == leaving
        assert move.target == old.preference_list(move.slot, 2)[1]


def test_moves_between_equal_rings_is_empty_and_from_empty_is_everything():
    ids = node_ids(40, 3)
    ring = equal_ring(ids, vnodes=16)
    assert moves(ring, equal_ring(list(reversed(ids)), vnodes=16)) == ()
    bootstrap = moves(Ring(vnodes=16), ring)
    assert len(bootstrap) == SLOT_COUNT
    assert bootstrap[0] == Move(0, None, ring.owner(0))


def test_with_node_and_without_node_return_new_rings():
    ids = node_ids(41, 3)
    ring = equal_ring(ids[:2], vnodes=16)
    grown = ring.with_node(ids[2], 2)
    assert ids[2] not in ring and ids[2] in grown
    assert grown.members[ids[2]] == 2
    assert grown.without_node(ids[2]) == ring
    reweighted = grown.with_node(ids[2], 3)
    assert reweighted.members[ids[2]] == 3 and len(reweighted) == 3
    with pytest.raises(KeyError):
        ring.without_node(ids[2])


# -- determinism and identity ------------------------------------------------------


def test_same_membership_builds_identical_rings_in_any_order():
    ids = node_ids(50, 6)
    weights = {node_id: 1 + i % 2 for i, node_id in enumerate(ids)}
    shuffled = list(weights.items())
    random.Random(7).shuffle(shuffled)
    first = Ring(weights, vnodes=64)
    second = Ring(dict(shuffled), vnodes=64)
    grown = Ring(vnodes=64)
    for node_id, weight in reversed(list(weights.items())):
        grown = grown.with_node(node_id, weight)
    for other in (second, grown):
        assert other == first and hash(other) == hash(first)
        assert other.owners() == first.owners()
        assert other.preference_lists(3) == first.preference_lists(3)
    assert list(first.members) == sorted(ids)


def test_rings_differ_by_membership_weight_and_vnodes():
    ids = node_ids(51, 3)
    base = equal_ring(ids, vnodes=16)
    assert base != equal_ring(ids[:2], vnodes=16)
    assert base != Ring({**dict.fromkeys(ids, 1), ids[0]: 2}, vnodes=16)
    assert base != equal_ring(ids, vnodes=17)
    assert base != dict.fromkeys(ids, 1)
    assert len({base, equal_ring(ids, vnodes=16)}) == 1


def test_members_are_read_only():
    ring = equal_ring(node_ids(52, 2), vnodes=4)
    with pytest.raises(TypeError):
        ring.members["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    "members, vnodes, error",
    [
        ({"a" * 40: 0}, 4, ValueError),
        ({"a" * 40: -1}, 4, ValueError),
        ({"a" * 40: 1.5}, 4, ValueError),
        ({b"a" * 40: 1}, 4, TypeError),
        ({"": 1}, 4, TypeError),
        ({"a" * 40: 1}, 0, ValueError),
    ],
)
def test_invalid_membership_is_rejected(members, vnodes, error):
    with pytest.raises(error):
        Ring(members, vnodes=vnodes)


def test_invalid_slot_and_rf_are_rejected():
    ring = equal_ring(node_ids(53, 2), vnodes=4)
    for slot in (-1, SLOT_COUNT):
        with pytest.raises(IndexError):
            ring.owner(slot)
        with pytest.raises(IndexError):
            ring.preference_list(slot, 1)
    with pytest.raises(ValueError):
        ring.preference_list(0, 0)


# -- coordinators and fallbacks ----------------------------------------------------


@pytest.fixture
def five() -> Ring:
    return equal_ring(node_ids(60, 5), vnodes=32)


def test_coordinator_is_first_live_node_of_preference_list(five):
    slot = 777
    walk = list(five.walk(slot))
    everyone = set(walk)
    assert five.coordinator(slot, 3, everyone) == walk[0]
    assert five.coordinator(slot, 3, everyone - {walk[0]}) == walk[1]
    assert five.coordinator(slot, 3, everyone - {walk[0], walk[1]}) == walk[2]
    # Only nodes beyond the preference list are live: nobody may coordinate.
    assert five.coordinator(slot, 3, set(walk[3:])) is None
    # A predicate works as well as a collection.
    assert five.coordinator(slot, 3, lambda node_id: node_id != walk[0]) == walk[1]


def test_fallbacks_are_next_live_nodes_beyond_the_preference_list(five):
    slot = 4242
    a, b, c, d, e = five.walk(slot)
    everyone = {a, b, c, d, e}
    assert five.fallbacks(slot, 3, everyone) == {}
    assert five.fallbacks(slot, 3, everyone - {b}) == {b: d}
    # Two down nodes take distinct fallbacks, in preference order.
    assert five.fallbacks(slot, 3, everyone - {a, c}) == {a: d, c: e}
    # A down node beyond the list is skipped over.
    assert five.fallbacks(slot, 3, everyone - {a, d}) == {a: e}
    # Not enough live nodes outside the list: the rest get no fallback.
    assert five.fallbacks(slot, 3, {c, e}) == {a: e, b: None}
    assert five.fallbacks(slot, 3, lambda node_id: node_id != b) == {b: d}


def test_fallbacks_with_rf_covering_every_member_have_nowhere_to_go():
    ring = equal_ring(node_ids(61, 3), vnodes=8)
    a, b, c = ring.walk(0)
    assert ring.fallbacks(0, 3, {a, c}) == {b: None}


# -- ranges ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owners, expected",
    [
        ([], []),
        (["a"], [(0, 0, "a")]),
        (["a", "a", "a"], [(0, 2, "a")]),
        (["a", "b", "b", "a"], [(0, 0, "a"), (1, 2, "b"), (3, 3, "a")]),
        ([None, None, "x"], [(0, 1, None), (2, 2, "x")]),
        ([("a", "b"), ("a", "b"), ("a", "c")], [(0, 1, ("a", "b")), (2, 2, ("a", "c"))]),
    ],
)
def test_ranges_table(owners, expected):
    assert ranges(owners) == expected


def test_ranges_of_a_ring_cover_every_slot_in_maximal_runs():
    ring = equal_ring(node_ids(70, 4), vnodes=32)
    for table in (ring.owners(), ring.preference_lists(2)):
        runs = ranges(table)
        assert runs[0][0] == 0 and runs[-1][1] == SLOT_COUNT - 1
        for (_, end, owner), (start, _, following) in zip(runs, runs[1:]):
            assert start == end + 1 and owner != following
        rebuilt = [owner for start, end, owner in runs for _ in range(start, end + 1)]
        assert rebuilt == list(table)
