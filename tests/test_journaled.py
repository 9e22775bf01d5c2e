"""Version records in the commit log: the image a write hands the journal is the
record a commit would image, and a replay restores records exactly."""

from __future__ import annotations

from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Set
from respkv.persistence.entries import split_entry
from respkv.replication.journaled import RecordReplay, record_image, record_marker
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of

A = actor_of("ab" * 20, 1)
B = actor_of("cd" * 20, 1)


class Marks:
    """The part of a Journal the marker uses: what it was told, by key."""

    def __init__(self) -> None:
        self.marked: dict[bytes, bytes | None] = {}

    def mark(self, key: bytes) -> None:
        self.marked[key] = None

    def mark_image(self, key: bytes, payload: bytes) -> None:
        self.marked[key] = payload


def test_images_handed_over_by_writes_equal_the_images_a_commit_makes():
    coordinator = VersionStore(Keyspace(), A)
    replica = VersionStore(Keyspace(), B)
    marks = {store: Marks() for store in (coordinator, replica)}
    for store in (coordinator, replica):
        store.on_change = record_marker(marks[store])
    ks = coordinator.keyspace
    members = Set()
    members.add_member(b"m")
    steps = [(b"s", b"one"), (b"s", b"two"), (b"e", b"expiring"), (b"set", members), (b"s", None)]
    for now, (key, value) in enumerate(steps, start=1000):
        if value is None:
            ks.delete(key)
        else:
            ks.set(key, value)
            if key == b"e":
                ks.set_deadline(key, 10**13)
        parent, blob = coordinator.written(key, now)
        replica.apply_shipped(key, parent, blob)
    assert all(payload is not None for payload in marks[coordinator].marked.values())
    for store in (coordinator, replica):
        image = record_image(store)
        for key, payload in marks[store].marked.items():
            if payload is not None:
                assert payload == image(key), key


def test_replaying_images_restores_the_records():
    store = VersionStore(Keyspace(), A)
    store.keyspace.set(b"k", b"v")
    store.written(b"k", 1000)
    image = record_image(store)(b"k")
    restored = VersionStore(Keyspace(), B)
    RecordReplay(restored, expired=lambda key: None)(*split_entry(image))
    assert restored.keyspace.get(b"k") == b"v"
    assert restored.digest(b"k") == store.digest(b"k")
