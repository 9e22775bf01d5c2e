"""Vector clocks: causality (the Dynamo paper's example), wire form, merge and pruning."""

from __future__ import annotations

import itertools
import struct

import pytest

from respkv.replication import vclock
from respkv.replication.vclock import EMPTY, concurrent, decode, descends, dominates, encode, equal, increment, merge

SX = b"\x0a" * 20
SY = b"\x0b" * 20
SZ = b"\x0c" * 20

# DeCandia et al. 2007, Figure 3: the history of one object's versions.
D1 = increment(EMPTY, SX, 1_000)  # written by Sx
D2 = increment(D1, SX, 2_000)  # written by Sx
D3 = increment(D2, SY, 3_000)  # written by Sy
D4 = increment(D2, SZ, 3_500)  # written by Sz
D5 = increment(merge(D3, D4), SX, 4_000)  # reconciled and written by Sx

CLOCKS = {"D1": D1, "D2": D2, "D3": D3, "D4": D4, "D5": D5}

# Row compared with column: ">" dominates, "<" is dominated, "=" same, "||" concurrent.
RELATIONS = {
    #       D1    D2    D3    D4    D5
    "D1": ("=", "<", "<", "<", "<"),
    "D2": (">", "=", "<", "<", "<"),
    "D3": (">", ">", "=", "||", "<"),
    "D4": (">", ">", "||", "=", "<"),
    "D5": (">", ">", ">", ">", "="),
}

PAIRS = [
    (row, column, RELATIONS[row][i])
    for row in RELATIONS
    for i, column in enumerate(CLOCKS)
]


def test_dynamo_example_entries():
    assert D1 == ((SX, 1, 1_000),)
    assert D2 == ((SX, 2, 2_000),)
    assert D3 == ((SX, 2, 2_000), (SY, 1, 3_000))
    assert D4 == ((SX, 2, 2_000), (SZ, 1, 3_500))
    assert D5 == ((SX, 3, 4_000), (SY, 1, 3_000), (SZ, 1, 3_500))


@pytest.mark.parametrize(("a", "b", "relation"), PAIRS)
def test_dynamo_example_relations(a, b, relation):
    ca, cb = CLOCKS[a], CLOCKS[b]
    assert descends(ca, cb) is (relation in (">", "="))
    assert dominates(ca, cb) is (relation == ">")
    assert concurrent(ca, cb) is (relation == "||")
    assert equal(ca, cb) is (relation == "=")


@pytest.mark.parametrize("name", CLOCKS)
def test_empty_is_descended_by_all(name):
    clock = CLOCKS[name]
    assert descends(clock, EMPTY)
    assert dominates(clock, EMPTY)
    assert not descends(EMPTY, clock)
    assert not concurrent(clock, EMPTY)


def test_empty_against_itself():
    assert descends(EMPTY, EMPTY)
    assert not dominates(EMPTY, EMPTY)
    assert equal(EMPTY, EMPTY)


def test_causality_ignores_stamps():
    later = ((SX, 2, 1),)  # same counter as D2, different stamp
    assert equal(D2, later)
    assert not dominates(D2, later) and not dominates(later, D2)


# -- wire form ------------------------------------------------------------------------


@pytest.mark.parametrize("clock", [EMPTY, D1, D2, D3, D4, D5])
def test_encode_decode_round_trip(clock):
    blob = encode(clock)
    assert len(blob) == vclock.ENTRY_SIZE * len(clock)
    assert decode(blob) == clock


def test_entry_size_is_36_bytes():
    assert vclock.ENTRY_SIZE == 36
    assert len(encode(D5)) == 3 * 36


@pytest.mark.parametrize("order", list(itertools.permutations([SX, SY, SZ])))
def test_actor_order_independent_of_increment_order(order):
    clock = EMPTY
    for stamp, actor in enumerate(order):
        clock = increment(clock, actor, stamp)
    assert [entry[0] for entry in clock] == [SX, SY, SZ]
    assert vclock.counter(clock, SY) == 1


def test_counter_of_absent_actor_is_zero():
    assert vclock.counter(D5, SX) == 3
    assert vclock.counter(D1, SZ) == 0
    assert vclock.counter(EMPTY, SX) == 0


def _packed(*entries) -> bytes:
    return b"".join(struct.pack("<20sQQ", *entry) for entry in entries)


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(b"\x00" * 35, id="short-entry"),
        pytest.param(b"\x00" * 37, id="long-entry"),
        pytest.param(encode(D3)[:-1], id="truncated"),
        pytest.param(encode(D3) + b"\x00", id="trailing-byte"),
        pytest.param(_packed((SY, 1, 0), (SX, 1, 0)), id="unsorted"),
        pytest.param(_packed((SX, 1, 0), (SX, 2, 0)), id="duplicate"),
        pytest.param(_packed((SX, 1, 0), (SZ, 1, 0), (SY, 1, 0)), id="unsorted-tail"),
    ],
)
def test_decode_rejects_bad_blobs(blob):
    with pytest.raises(ValueError):
        decode(blob)


# -- merge ----------------------------------------------------------------------------


def test_merge_takes_per_actor_max():
    a = ((SX, 3, 10), (SY, 1, 20))
    b = ((SX, 1, 30), (SY, 4, 40), (SZ, 2, 50))
    assert merge(a, b) == ((SX, 3, 10), (SY, 4, 40), (SZ, 2, 50))


@pytest.mark.parametrize(
    ("a", "b"),
    [(((SX, 2, 100),), ((SX, 2, 200),)), (((SX, 2, 200),), ((SX, 2, 100),))],
)
def test_merge_equal_counters_keeps_later_stamp(a, b):
    assert merge(a, b) == ((SX, 2, 200),)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(CLOCKS.values(), repeat=2)))
def test_merge_commutative_idempotent_and_an_upper_bound(a, b):
    merged = merge(a, b)
    assert merged == merge(b, a)
    assert merge(a, a) == a
    assert merge(merged, b) == merged
    assert descends(merged, a) and descends(merged, b)


def test_merge_of_nothing_is_empty():
    assert merge() == EMPTY
    assert merge(EMPTY, EMPTY) == EMPTY
    assert merge(EMPTY, D3) == D3


# -- pruning ------------------------------------------------------------------------------

NOW = 100_000
LIMITS = dict(small=3, big=5, young_ms=100, old_ms=1_000)


def _clock_with_ages(ages):
    """One entry per age, actors 0x01.., stamps NOW - age."""
    return tuple((bytes([i + 1]) * 20, 1, NOW - age) for i, age in enumerate(ages))


@pytest.mark.parametrize(
    ("ages", "kept"),
    [
        pytest.param([5_000] * 3, {0, 1, 2}, id="small-clock-untouched"),
        pytest.param([50] * 6, set(range(6)), id="all-young-untouched"),
        pytest.param([1_000] * 4, {0, 1, 2, 3}, id="not-big-not-old"),
        pytest.param([1_001, 1_000, 1_000, 1_000], {1, 2, 3}, id="just-older-than-old"),
        pytest.param([500, 600, 500, 500, 500, 500], {0, 2, 3, 4, 5}, id="big-drops-oldest"),
        pytest.param([500, 510, 520, 530, 540, 550, 560, 570], {0, 1, 2, 3, 4}, id="big-down-to-big"),
        pytest.param([2_000, 5_000, 3_000, 4_000, 6_000, 1_500], {0, 2, 5}, id="old-down-to-small"),
        pytest.param([500, 5_000, 500, 500, 5_000, 500], {0, 2, 3, 5}, id="old-then-stop"),
        pytest.param([500, 50, 50, 600, 50, 50, 50, 50], {1, 2, 4, 5, 6, 7}, id="young-stops-above-big"),
        pytest.param([5_000, 50, 50, 50, 50, 50], {1, 2, 3, 4, 5}, id="young-never-pruned"),
        pytest.param([100, 99, 99, 99, 99, 99], {1, 2, 3, 4, 5}, id="young-boundary"),
    ],
)
def test_prune(ages, kept):
    clock = _clock_with_ages(ages)
    pruned = vclock.prune(clock, NOW, **LIMITS)
    assert pruned == tuple(entry for i, entry in enumerate(clock) if i in kept)


def test_prune_with_defaults_keeps_short_clock():
    assert vclock.prune(D5, 10**12) is D5


# -- actors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_id", "incarnation", "actor"),
    [
        ("ab" * 20, 0, b"\xab" * 16 + bytes(4)),
        ("ab" * 20, 1, b"\xab" * 16 + b"\x00\x00\x00\x01"),
        ("0123456789abcdef0123456789ABCDEF01234567", 258,
         bytes.fromhex("0123456789abcdef0123456789abcdef") + b"\x00\x00\x01\x02"),
        ("ab" * 20, (1 << 32) + 5, b"\xab" * 16 + b"\x00\x00\x00\x05"),  # wraps
    ],
)
def test_actor_of(node_id, incarnation, actor):
    """A node's actor is its id's first 16 bytes and its incarnation."""
    assert vclock.actor_of(node_id, incarnation) == actor
    assert len(actor) == vclock.ACTOR_SIZE


def test_incarnations_of_one_node_are_different_actors_in_order():
    actors = [vclock.actor_of("cd" * 20, n) for n in range(1, 300)]
    assert actors == sorted(set(actors))


@pytest.mark.parametrize("entries", [(), ((b"\x01" * 20, 3, 5),), ((b"\x01" * 20, 3, 5), (b"\x09" * 20, 1, 7))])
@pytest.mark.parametrize("actor", [b"\x01" * 20, b"\x05" * 20, b"\x0a" * 20])
def test_increment_encoded_matches_increment(entries, actor):
    blob = vclock.encode(entries)
    assert vclock.increment_encoded(blob, actor, 99) == vclock.encode(vclock.increment(entries, actor, 99))


def test_increment_encoded_ignores_actor_bytes_inside_other_fields():
    actor = b"\x07" * 20
    # The actor's bytes appear across the boundary of another entry's fields, not at an entry start.
    other = (b"\x00" * 12 + b"\x07" * 8, 0x0707070707070707, 0x0707070707070707)
    blob = vclock.encode((other,))
    assert vclock.increment_encoded(blob, actor, 5) == vclock.encode(vclock.increment((other,), actor, 5))
