"""The responder side of anti-entropy exchanges, in process: what each request
answers, and that malformed requests are refused with an error (the bus answers
it to the peer) rather than served wrongly."""

from __future__ import annotations

import struct

import pytest

from respkv.cluster.membership import Member
from respkv.cluster.state import ClusterState
from respkv.config import Config
from respkv.keyspace.slots import SLOT_COUNT, key_slot
from respkv.node import Node, Stats, start_replication
from respkv.replication.antientropy import (
    AE_KEYS,
    AE_ROOT,
    AE_SEGMENTS,
    AE_SLOTS,
    ExchangeNotReady,
    pack_sums,
    split_listing,
    unpack_sums,
)
from respkv.replication.merkle import GROUP_COUNT, SEGMENT_COUNT, leaf_hash, slots_bitmap
from respkv.replication.pacing import repair_rate

NODE = "ab" * 20


class NoBus:
    links: dict = {}


@pytest.fixture
def node(tmp_path) -> Node:
    node = Node(Config(**{"cluster-enabled": True, "appendonly": False, "dir": str(tmp_path)}))
    state = ClusterState(Member(NODE, "127.0.0.1", 7000, 17000), rf=3)
    node.cluster = state
    start_replication(node, state, NoBus())
    return node


def write(node: Node, key: bytes, value: bytes) -> None:
    """A coordinator's write, and the end of its round (the commit hands the
    changed keys to the trees)."""
    node.keyspace.set(key, value)
    node.replication.store.written(key, node.keyspace.clock_ms())
    node.persist_now()


def test_the_trees_hear_of_a_change_at_the_commit_of_its_round(node):
    ae = node.replication.anti_entropy
    node.keyspace.set(b"k", b"v")
    node.replication.store.written(b"k", node.keyspace.clock_ms())
    assert not ae.trees.pending
    node.persist_now()
    assert list(ae.trees.pending) == [b"k"]
    ae.settle()
    assert ae.trees.keys == 1


def test_nothing_is_answered_before_the_trees_are_built(node):
    with pytest.raises(ExchangeNotReady, match="LOADING"):
        node.replication.anti_entropy.handle("peer", AE_ROOT, [slots_bitmap(range(SLOT_COUNT))])


def test_answers_follow_the_writes(node):
    ae = node.replication.anti_entropy
    ae.ready = True
    write(node, b"a", b"1")
    write(node, b"b", b"2")
    store = node.replication.store
    leaf_a = leaf_hash(b"a", store.digest(b"a"))
    slot = key_slot(b"a")
    (groups,) = ae.handle("peer", AE_ROOT, [slots_bitmap(range(SLOT_COUNT))])
    assert unpack_sums(groups, GROUP_COUNT)[slot // 64] != 0
    (empty,) = ae.handle("peer", AE_ROOT, [slots_bitmap([])])
    assert unpack_sums(empty, GROUP_COUNT) == [0] * GROUP_COUNT
    sums, counts = ae.handle("peer", AE_SLOTS, [b"%d" % slot])
    assert unpack_sums(counts, 1) == [1]
    assert unpack_sums(sums, 1) == [leaf_a]
    (segments,) = ae.handle("peer", AE_SEGMENTS, [b"%d" % slot])
    assert sorted(unpack_sums(segments, SEGMENT_COUNT))[-1] == leaf_a
    listing = ae.handle("peer", AE_KEYS, [b"%d" % slot, b"", b"%d" % key_slot(b"b"), b""])
    assert listing == [b"1", b"a", struct.pack("<Q", leaf_a),
                       b"1", b"b", struct.pack("<Q", leaf_hash(b"b", store.digest(b"b")))]
    node.keyspace.flush()
    assert ae.handle("peer", AE_SLOTS, [b"%d" % slot])[1] == pack_sums([0])


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        (AE_ROOT, [], "one slot bitmap"),
        (AE_ROOT, [b"\x00" * 10], "2048 bytes"),
        (AE_SLOTS, [b"16384"], "out of range"),
        (AE_SLOTS, [b"x"], "invalid literal"),
        (AE_SEGMENTS, [], "one slot"),
        (AE_SEGMENTS, [b"-1"], "out of range"),
        (AE_KEYS, [], "pairs"),
        (AE_KEYS, [b"1"], "pairs"),
        (AE_KEYS, [b"1", b"64"], "out of range"),
        (b"AENOPE", [], "unknown anti-entropy operation"),
    ],
)
def test_malformed_requests_are_refused(node, op, args, message):
    ae = node.replication.anti_entropy
    ae.ready = True
    with pytest.raises(ValueError, match=message):
        ae.handle("peer", op, args)


def test_sums_pack_and_unpack_and_refuse_a_wrong_count():
    assert unpack_sums(pack_sums([1, 2**64 - 1]), 2) == [1, 2**64 - 1]
    with pytest.raises(ValueError, match="expected 3 sums"):
        unpack_sums(pack_sums([1, 2]), 3)


@pytest.mark.parametrize(
    ("answer", "parts", "message"),
    [
        ([], 1, "fewer parts"),
        ([b"2", b"k", b"\x00" * 8], 1, "cut short"),
        ([b"0", b"0"], 1, "more than asked"),
        ([b"x"], 1, "invalid literal"),
    ],
)
def test_a_malformed_listing_from_a_peer_stops_the_exchange(answer, parts, message):
    with pytest.raises(ValueError, match=message):
        split_listing(answer, parts)


def test_a_listing_splits_into_one_map_per_part():
    leaf = struct.pack("<Q", 5)
    assert split_listing([b"1", b"k", leaf, b"0"], 2) == [{b"k": 5}, {}]


def test_a_listing_with_a_leaf_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="not 8 bytes"):
        split_listing([b"1", b"k", b"\x00" * 7], 1)


@pytest.mark.parametrize("cap, load, load_ops, expected", [
    (5000, 0, 10000, 5000),          # an idle node repairs at the full rate
    (5000, 10000, 10000, 2500),      # at the configured load: half
    (5000, 20000, 10000, 5000 / 3),  # twice that load: a third
    (5000, 1000, 10000, 5000 * 10 / 11),
    (5000, 90000, 10000, 500),
    (5000, 50000, 0, 5000),          # 0: the load is ignored
    (1, 1e9, 1, 1 / (1 + 1e9)),      # never zero: a repair always ends
])
def test_the_repair_rate_falls_with_the_clients_load(cap, load, load_ops, expected):
    assert repair_rate(cap, load, load_ops) == pytest.approx(expected)


@pytest.mark.parametrize("pressure, half, expected", [
    (0, 10, 5000),              # no task waited for a CPU: the full rate
    (10, 10, 2500),             # at the configured pressure: half
    (20, 10, 5000 / 3),         # twice as much: a third
    (100, 10, 5000 / 11),       # every moment someone waited: still moving
    (80, 0, 5000),              # 0: pressure is ignored
])
def test_the_repair_rate_falls_with_cpu_pressure(pressure, half, expected):
    assert repair_rate(5000, 0, 10000, pressure, half) == pytest.approx(expected)
    # Both factors apply together: load and pressure each take their share.
    assert repair_rate(5000, 10000, 10000, pressure, half) == pytest.approx(expected / 2)


def test_the_repair_rate_never_rises_with_the_load():
    rates = [repair_rate(5000, load, 10000) for load in range(0, 200_000, 5000)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[0] == 5000 and rates[-1] > 0


def test_a_node_busy_with_clients_repairs_slower(node):
    ae = node.replication.anti_entropy
    node.config.set_text("anti-entropy-cpu-pressure", "0")  # this machine's own pressure left out
    assert ae.info()["ae_repair_rate"] == 5000  # idle: the configured cap
    node.instantaneous.sample(0.0, Stats())
    node.instantaneous.sample(1.0, Stats(commands_processed=30_000))
    assert ae.info()["ae_repair_rate"] == 1250  # 5000 * 10000 / (10000 + 30000)
    node.config.set_text("anti-entropy-load-ops", "0")
    assert ae.info()["ae_repair_rate"] == 5000


def test_a_node_on_contended_cores_repairs_slower(node, tmp_path):
    """The pressure sampled by the cron (here from a file written by the test)
    lowers the rate and shows in INFO."""
    from respkv.net.rates import CpuPressure

    stall = tmp_path / "cpu.pressure"
    pressure = CpuPressure((str(stall),))
    node.instantaneous.cpu_pressure = pressure
    node.config.set_text("anti-entropy-load-ops", "0")
    ae = node.replication.anti_entropy
    stall.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    node.instantaneous.sample(0.0, Stats())
    stall.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1300000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    node.instantaneous.sample(1.0, Stats())  # 0.3 s of stall in 1 s: 30 %
    info = ae.info()
    assert info["ae_cpu_pressure"] == 30.0
    assert info["ae_repair_rate"] == 1250  # 5000 * 10 / (10 + 30)
    node.config.set_text("anti-entropy-cpu-pressure", "0")
    assert ae.info()["ae_repair_rate"] == 5000
