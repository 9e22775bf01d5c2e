"""The responder side of anti-entropy exchanges, in process: what each request
answers, and that malformed requests are refused with an error (the bus answers
it to the peer) rather than served wrongly."""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest

from respkv.cluster.membership import Member
from respkv.cluster.state import ClusterState
from respkv.commands.replay import ClientlessSession, run_replayable
from respkv.config import Config
from respkv.keyspace.slots import SLOT_COUNT, key_slot
from respkv.keyspace.values import Set
from respkv.node import Node, Stats, start_replication
from respkv.persistence.keyspace_images import journal_plain_keyspace
from respkv.replication import vclock
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
from respkv.replication.merkle import GROUP_COUNT, SEGMENT_COUNT, SlotTrees, leaf_hash, slots_bitmap
from respkv.replication.ownership import Handover
from respkv.replication.pacing import repair_rate
from respkv.replication.replica import REPL

NODE = "ab" * 20


class NoBus:
    links: dict = {}


def make_node(path, name: str = NODE, appendonly: bool = False) -> Node:
    path.mkdir(parents=True, exist_ok=True)
    node = Node(Config(**{"cluster-enabled": True, "appendonly": appendonly, "dir": str(path)}))
    state = ClusterState(Member(name, "127.0.0.1", 7000, 17000), rf=3)
    node.cluster = state
    start_replication(node, state, NoBus())
    return node


@pytest.fixture
def node(tmp_path) -> Node:
    return make_node(tmp_path)


def write(node: Node, key: bytes, value: bytes) -> None:
    """A coordinator's write, and the end of its round (the commit hands the
    changed keys to the trees)."""
    node.keyspace.set(key, value)
    node.replication.store.written(key, node.keyspace.clock_ms())
    node.persist_now()


def test_the_trees_hear_of_a_change_as_the_store_makes_it(node):
    ae = node.replication.anti_entropy
    node.keyspace.set(b"k", b"v")
    node.replication.store.written(b"k", node.keyspace.clock_ms())
    assert not ae.trees.pending and ae.trees.keys == 1
    assert ae.trees.slot_sum(key_slot(b"k")) == leaf_hash(b"k", node.replication.store.digest(b"k"))


def rebuilt_trees(store) -> SlotTrees:
    """The trees of what ``store`` holds, made from scratch."""
    trees = SlotTrees(store.digest)
    trees.unhashed(store.keys())
    trees.settle()
    return trees


def test_values_adopted_from_a_plain_log_at_start_are_in_the_trees(tmp_path):
    """A directory written without replication: at the first start with
    replication its values become versions of this node, after the trees took
    the restored records (none here); the trees must hold them."""
    plain = Node(Config(**{"appendonly": True, "dir": str(tmp_path)}))
    journal_plain_keyspace(plain)
    for key in (b"a", b"{t}b"):
        plain.keyspace.set(key, b"plain")
        plain.journal.mark(key)
    plain.persist_now()
    plain.journal.close()
    node = make_node(tmp_path, appendonly=True)
    store, trees = node.replication.store, node.replication.anti_entropy.trees
    assert sorted(store.keys()) == [b"a", b"{t}b"]
    trees.settle()
    expected = rebuilt_trees(store)
    assert trees.keys == expected.keys == 2
    assert [trees.slot_sum(s) for s in range(SLOT_COUNT)] == [expected.slot_sum(s) for s in range(SLOT_COUNT)]


@pytest.mark.parametrize("written_between", [False, True])
def test_a_slot_matched_in_a_hand_over_is_released_whole_unless_written_meanwhile(tmp_path, written_between):
    """Dropping a handed-over key takes its leaf out of the slot's sum at once:
    the rest of a big slot, released segment by segment, still counts as
    matched; a write to the slot between two segments voids the match, so the
    keys not confirmed one by one stay."""
    node = make_node(tmp_path)
    ownership, trees = node.replication.ownership, node.replication.anti_entropy.trees
    keys = [b"{t}%d" % i for i in range(600)]
    for key in keys:
        write(node, key, b"v")
    slot = key_slot(keys[0])
    handover = Handover(SimpleNamespace(stats={}, store=None, trees=None), "cd" * 20, [slot], {}, lambda: 1000.0)
    handover.equal_slots[slot] = trees.slot_sum(slot)
    released = kept = dropped = 0
    for segment in range(SEGMENT_COUNT):
        part_released, part_kept, dropped = ownership.release_part(slot, segment, [handover], dropped)
        released, kept = released + part_released, kept + part_kept
        if written_between and segment == 0:
            write(node, b"{t}late", b"v")
    if written_between:  # only segment 0 went; the rest, the late key included, stays
        assert 0 < released < len(keys) and released + kept == len(keys) + 1
        assert node.replication.store.digest(b"{t}late")
    else:
        assert (released, kept) == (len(keys), 0)
        assert trees.key_count(slot) == 0 and trees.slot_sum(slot) == 0 and not node.keyspace.data


@pytest.mark.parametrize("seed", range(3))
def test_every_way_a_record_changes_reaches_the_trees_once(tmp_path, seed):
    """The trees keep no leaves: they are only right if the store reports every
    change of a record, with the digests before and after, exactly once.  Two
    nodes write, delete, expire, resolve, ship records and commands to each other,
    merge, purge, forget and relinquish keys at random; each node's trees must
    then be the trees of what it holds."""
    rng = random.Random(seed)
    nodes = [make_node(tmp_path / "a", "ab" * 20), make_node(tmp_path / "b", "cd" * 20)]
    keys = [b"{t}%d" % i for i in range(30)] + [b"k%d" % i for i in range(30)]
    for _ in range(1500):
        node, other = rng.sample(nodes, 2)
        store, ks, key = node.replication.store, node.keyspace, rng.choice(keys)
        now = ks.clock_ms()
        action = rng.randrange(10)
        shipped = None
        if action <= 2:  # a string, sometimes with a time to live
            ks.set(key, b"v%d" % rng.randrange(100))
            if action == 2:
                ks.set_deadline(key, now + rng.choice([1, 100_000]))
            shipped = store.written(key, now)
        elif action == 3:  # a set member added: shipped as the command
            if ks.peek(key).__class__ not in (type(None), Set):
                ks.delete(key)
                store.written(key, now)
            command = [b"SADD", key, b"m%d" % rng.randrange(5)]
            if run_replayable(node.table, ClientlessSession(node), key, command):
                shipped = store.written(key, now, operation=command, commands=[command])
        elif action == 4:  # deleted
            if ks.delete(key):
                shipped = store.written(key, now)
        elif action == 5:  # RESOLVE-like write that saw nothing: a sibling
            ks.set(key, b"r%d" % rng.randrange(100))
            shipped = store.written(key, now, seen=vclock.EMPTY)
        elif action == 6:  # a whole record merged (read repair, anti-entropy)
            record = store.full_record(key)
            if record is not None:
                other.replication.store.apply(key, record)
        elif action == 7:  # a tombstone purged, an expired record forgotten
            clock = store.tombstone_clock(key)
            if clock is not None:
                store.purge(key, clock)
            clock = store.expired_clock(key, now + 10**9)
            if clock is not None:
                store.forget_expired(key, clock, now + 10**9)
        elif action == 8:
            store.relinquish(key)
        if shipped is not None and rng.random() < 0.8:
            other.replication.replica.handle("peer", REPL, [key, shipped[0], shipped[1]])
    for node in nodes:
        store, trees = node.replication.store, node.replication.anti_entropy.trees
        expected = rebuilt_trees(store)
        assert trees.keys == expected.keys == len(store.keys())
        for slot in range(SLOT_COUNT):
            assert trees.slot_sum(slot) == expected.slot_sum(slot)
        for slot in {key_slot(key) for key in keys}:
            assert trees.segment_sums(slot) == expected.segment_sums(slot)
            assert trees.leaves(slot) == expected.leaves(slot)


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
