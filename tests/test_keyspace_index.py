"""The keyspace's slot index: built on first use, then exact through every change."""

from __future__ import annotations

from respkv.keyspace.slots import SLOT_COUNT, key_slot
from respkv.keyspace.store import Keyspace


def _scan_all(ks: Keyspace, count: int = 10) -> list[bytes]:
    seen: list[bytes] = []
    cursor = 0
    while True:
        cursor, keys = ks.scan(cursor, count)
        seen.extend(keys)
        if cursor == 0:
            return seen


def _indexed_keys(ks: Keyspace) -> set[bytes]:
    return {key for slot in range(SLOT_COUNT) for key in ks.keys_in_slot(slot, 10**9)}


def test_index_is_built_from_the_keys_present_at_first_use():
    ks = Keyspace()
    for i in range(500):
        ks.set(b"k%d" % i, b"v")
    assert ks._slot_index is None  # nobody walked the keys yet
    assert sorted(_scan_all(ks)) == sorted(b"k%d" % i for i in range(500))
    assert ks._slot_index is not None


def test_index_follows_inserts_overwrites_deletes_expiry_and_flush():
    now = [1_700_000_000_000]
    ks = Keyspace(lambda: now[0])
    ks.set(b"a", b"1")
    ks.set(b"{t}b", b"2")
    assert _indexed_keys(ks) == {b"a", b"{t}b"}
    ks.set(b"a", b"overwritten")
    ks.set(b"{t}c", b"3")
    assert ks.count_in_slot(key_slot(b"t")) == 2  # {t}b and {t}c share a slot
    assert ks.delete(b"{t}b")
    ks.set_deadline(b"a", now[0] + 10)
    now[0] += 10
    assert ks.expire_due(100) == 1
    assert _indexed_keys(ks) == {b"{t}c"}
    assert ks.count_in_slot(key_slot(b"a")) == 0
    ks.flush()
    assert _indexed_keys(ks) == set()
    ks.set(b"after", b"flush")
    assert _scan_all(ks) == [b"after"]


def test_scan_returns_every_key_present_for_the_whole_walk():
    ks = Keyspace()
    stable = {b"stable:%d" % i for i in range(300)}
    for key in stable:
        ks.set(key, b"v")
    seen: set[bytes] = set()
    cursor, step = 0, 0
    while True:
        cursor, keys = ks.scan(cursor, 7)
        seen.update(keys)
        # Churn between calls: keys come and go while the walk is under way.
        ks.set(b"churn:%d" % step, b"v")
        ks.delete(b"churn:%d" % (step - 3))
        step += 1
        if cursor == 0:
            break
    assert stable <= seen


def test_random_key_and_keys_in_slot_use_the_index():
    ks = Keyspace()
    assert ks.random_key() is None
    for i in range(50):
        ks.set(b"{same}%d" % i, b"v")
    assert ks.random_key() in {b"{same}%d" % i for i in range(50)}
    slot = key_slot(b"same")
    assert len(ks.keys_in_slot(slot, 10)) == 10
    assert ks.count_in_slot(slot) == 50
    assert ks.keys_in_slot((slot + 1) % SLOT_COUNT, 10) == []


def test_counts_and_listings_restricted_to_flagged_slots():
    """A cluster node counts and lists only the slots it coordinates (a mask)."""
    ks = Keyspace(clock_ms=lambda: 1_000)
    keys = [b"m%d" % i for i in range(400)]
    for key in keys:
        ks.set(key, b"v")
    ks.set_deadline(keys[0], 10**12)
    ks.set_deadline(keys[1], 10**12)
    mine = bytearray(SLOT_COUNT)
    for slot in range(0, SLOT_COUNT, 3):
        mine[slot] = 1
    flagged = {key for key in keys if mine[key_slot(key)]}
    assert 0 < len(flagged) < len(keys)
    assert ks.dbsize(mine) == len(flagged) and ks.dbsize() == len(keys)
    assert set(ks.live_keys(mine)) == flagged and len(ks.live_keys()) == len(keys)
    assert ks.volatile_count(mine) == sum(1 for key in keys[:2] if mine[key_slot(key)])
    assert ks.volatile_count() == 2
    seen, cursor = [], 0
    while True:
        cursor, found = ks.scan(cursor, 7, mine)
        seen += found
        if cursor == 0:
            break
    assert sorted(seen) == sorted(flagged)
    for _ in range(50):
        assert ks.random_key(mine) in flagged
    assert ks.random_key(bytearray(SLOT_COUNT)) is None  # no slot flagged: no key
    slot_in, slot_out = key_slot(next(iter(flagged))), key_slot(next(k for k in keys if k not in flagged))
    assert ks.count_in_slot(slot_in, mine) == ks.count_in_slot(slot_in) > 0
    assert ks.count_in_slot(slot_out, mine) == 0 and ks.count_in_slot(slot_out) > 0
    assert ks.keys_in_slot(slot_out, 10, mine) == [] and ks.keys_in_slot(slot_out, 10)
    assert ks.dbsize(bytearray(SLOT_COUNT)) == 0
