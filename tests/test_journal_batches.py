"""The journal's batch entries: a round's entries in one frame, and how they load.

The batch format itself (:func:`batch`, :func:`split_batch`, :func:`batches`) is
checked as pure functions; the journal's commit and load on a real directory: a
round of several keys is one entry of the log, replaying it restores every key,
a torn batch drops its whole round and nothing before it; and the standalone
round imager agrees with the per-key one for every kind of value.
"""

from __future__ import annotations

import os
import time

import pytest

from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Hash
from respkv.persistence.entries import ABSENT, BATCH, VALUE, batch, batches, entry, split_batch, split_entry
from respkv.persistence.journal import Journal
from respkv.persistence.keyspace_images import keyspace_image, keyspace_images, keyspace_replay
from tests.durability_helpers import active_log, log_entries

# -- the format (pure) ---------------------------------------------------------------------


def test_a_batch_splits_into_its_entries_in_order():
    entries = [entry(VALUE, b"k%d" % i, b"body" * i) for i in range(5)] + [entry(ABSENT, b"gone")]
    payload = batch(entries)
    assert payload[:1] == BATCH
    assert split_batch(payload) == entries
    assert split_batch(memoryview(payload)) == entries


@pytest.mark.parametrize("damage", ["short", "table-past-end", "lengths-too-long", "lengths-too-short"])
def test_a_malformed_batch_is_refused(damage):
    payload = batch([entry(VALUE, b"a", b"1"), entry(VALUE, b"b", b"2")])
    if damage == "short":
        payload = payload[:3]
    elif damage == "table-past-end":
        payload = BATCH + (1 << 30).to_bytes(4, "little") + b"\0" * 8
    elif damage == "lengths-too-long":
        payload = payload[:-1]
    else:
        payload += b"x"
    with pytest.raises(ValueError):
        split_batch(payload)


def test_batches_keep_a_single_entry_and_split_big_rounds():
    one = entry(VALUE, b"k", b"v")
    assert list(batches([])) == []
    assert list(batches([one])) == [one]
    many = [entry(VALUE, b"k%d" % i, b"x" * 100) for i in range(10)]
    assert list(batches(many)) == [batch(many)]
    size = len(many[0])
    split = list(batches(many, limit=3 * size))  # three entries per batch at most
    assert split == [batch(many[0:3]), batch(many[3:6]), batch(many[6:9]), many[9]]
    huge = entry(VALUE, b"huge", b"x" * (5 * size))  # over the limit: alone
    assert list(batches([many[0], huge, many[1]], limit=3 * size)) == [many[0], huge, many[1]]


# -- commit and load ---------------------------------------------------------------------


def _journal(directory, keyspace: Keyspace, **options) -> Journal:
    journal = Journal(str(directory), keyspace_image(keyspace), images=keyspace_images(keyspace), **options)
    journal.load(keyspace_replay(keyspace))
    journal.open()
    keyspace.on_modified = journal.mark
    keyspace.on_flush = journal.mark_flushed
    return journal


def _restored(directory) -> Keyspace:
    keyspace = Keyspace()
    Journal(str(directory), keyspace_image(keyspace)).load(keyspace_replay(keyspace))
    return keyspace


def test_a_round_is_one_batch_and_loads_key_by_key(tmp_path):
    keyspace = Keyspace()
    journal = _journal(tmp_path, keyspace)
    for i in range(10):
        keyspace.set(b"k%d" % i, b"v%d" % i)
    keyspace.set(b"k3", b"again")  # a key written twice in a round: one entry
    journal.commit()
    keyspace.set(b"alone", b"1")
    journal.commit()
    keyspace.delete(b"k0")
    keyspace.set(b"k1", b"changed")
    journal.commit()
    journal.close()
    frames = log_entries(active_log(tmp_path))
    assert [(kind, keys) for _, _, kind, keys in frames] == [
        (BATCH, [b"k%d" % i for i in range(10)]),
        (VALUE, [b"alone"]),
        (BATCH, [b"k0", b"k1"]),
    ]
    restored = _restored(tmp_path)
    assert restored.data == keyspace.data
    assert restored.get(b"k0") is None and restored.get(b"k3") == b"again"


def test_a_torn_batch_drops_its_round_only(tmp_path):
    keyspace = Keyspace()
    journal = _journal(tmp_path, keyspace)
    keyspace.set(b"a", b"1")
    keyspace.set(b"b", b"2")
    journal.commit()
    for i in range(5):
        keyspace.set(b"late%d" % i, b"x")
    journal.commit()
    journal.close()
    path = active_log(tmp_path)
    offset, size, kind, _ = log_entries(path)[-1]
    assert kind == BATCH
    os.truncate(path, offset + size - 1)
    loader = Journal(str(tmp_path), keyspace_image(Keyspace()))
    restored = Keyspace()
    loader.load(keyspace_replay(restored))
    assert restored.data == {b"a": b"1", b"b": b"2"}
    assert len(loader.truncations) == 1 and f"at byte offset {offset}" in loader.truncations[0]


def test_a_round_after_flushall_keeps_no_absent_entries(tmp_path):
    keyspace = Keyspace()
    journal = _journal(tmp_path, keyspace)
    keyspace.set(b"old", b"1")
    journal.commit()
    keyspace.set(b"gone", b"1")
    keyspace.flush()
    keyspace.set(b"new", b"2")
    keyspace.set(b"other", b"3")
    keyspace.delete(b"other")
    journal.commit()
    journal.close()
    kinds = [(kind, keys) for _, _, kind, keys in log_entries(active_log(tmp_path))]
    assert kinds[-2:] == [(b"F", [b""]), (VALUE, [b"new"])]
    assert _restored(tmp_path).data == {b"new": b"2"}


def test_round_images_agree_with_key_images():
    keyspace = Keyspace()
    keyspace.set(b"plain", b"value")
    keyspace.set(b"expiring", b"soon")
    keyspace.set_deadline(b"expiring", int(time.time() * 1000) + 60_000)
    hash_value = Hash()
    hash_value[b"f"] = b"v"
    keyspace.set(b"hash", hash_value)
    image = keyspace_image(keyspace)
    keys = [b"plain", b"expiring", b"hash", b"missing"]
    marked = dict.fromkeys(keys)
    marked[b"given"] = b"an entry the changer made"
    assert keyspace_images(keyspace)(marked) == [image(key) for key in keys] + [b"an entry the changer made"]
    assert split_entry(image(b"missing"))[0] == ABSENT
