"""Convergent types through the version store: two replicas write concurrently,
exchange their records, and must show the same merged value.

Each replica is a :class:`VersionStore` over its own keyspace (no network): a
write runs the command's effect on the keyspace and versions it with
``written`` (passing the command, as the coordinator does); the other replica
gets the record with ``apply``, as replication, read repair, anti-entropy and
hand-off deliver it.
"""

from __future__ import annotations

import pytest

from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Hash, Set
from respkv.keyspace.zset import SortedSet
from respkv.replication.convergent import SETTLE_MS, Dots
from respkv.replication.counters import Tally
from respkv.replication.store import VersionStore
from respkv.replication.versions import decode_record

START = 1_000_000
KEY = b"k"


class Replica:
    def __init__(self, actor_byte: int, convergent: bool = True) -> None:
        self.now = START
        self.ks = Keyspace(clock_ms=lambda: self.now)
        self.store = VersionStore(self.ks, bytes([actor_byte]) * 20)
        self.store.convergent = convergent

    def run(self, *command: bytes, at: int | None = None) -> None:
        """Apply ``command``'s effect to the keyspace and version it."""
        self.now = at if at is not None else self.now + 1
        name, args = command[0].lower(), list(command[2:])
        value = self.ks.get(KEY)
        if name == b"sadd":
            value = value if value is not None else Set()
            for member in args:
                value.add_member(member)
        elif name == b"srem":
            for member in args:
                value.remove_member(member)
        elif name == b"hset":
            value = value if value is not None else Hash()
            for field, data in zip(args[::2], args[1::2]):
                value.put(field, data)
        elif name == b"hincrby":
            value = value if value is not None else Hash()
            value.put(args[0], str(int(value.get(args[0], b"0")) + int(args[1])).encode())
        elif name == b"hdel":
            for field in args:
                value.remove(field)
        elif name == b"zadd":
            value = value if value is not None else SortedSet()
            for score, member in zip(args[::2], args[1::2]):
                value.set_score(member, float(score))
        elif name == b"incrby":
            value = str(int(value or b"0") + int(args[0])).encode()
        elif name == b"set":
            value = args[0]
        elif name == b"del":
            value = None
        if value is None or (value.__class__ is not bytes and not len(value)):
            self.ks.delete(KEY)
        else:
            self.ks.set(KEY, value)
        self.store.written(KEY, self.now, commands=None if name in (b"set", b"del") else [list(command)])

    def send(self, other: "Replica") -> None:
        other.store.apply(KEY, decode_record(self.store.wire_record(KEY)))

    def shown(self):
        value = self.ks.get(KEY)
        if value is None or value.__class__ is bytes:
            return value
        if value.__class__ is SortedSet:
            return dict(value.scores)
        return dict(value) if value.__class__ is Hash else set(value)


def concurrent(before, side_a, side_b, convergent=True):
    """Both replicas run ``before``; then each its side, unseen by the other; then
    they exchange records.  Returns both replicas."""
    a, b = Replica(1, convergent), Replica(2, convergent)
    for command in before:
        a.run(*command)
    a.send(b)
    for command in side_a:
        a.run(*command)
    b.now = a.now
    for command in side_b:
        b.run(*command)
    a.send(b)
    b.send(a)
    assert len(a.store.record(KEY)) == len(b.store.record(KEY))
    return a, b


def test_sets_merge_add_wins_on_both_replicas():
    a, b = concurrent([(b"SADD", KEY, b"x", b"y", b"z")],
                      [(b"SADD", KEY, b"a"), (b"SREM", KEY, b"x")],
                      [(b"SADD", KEY, b"b", b"x"), (b"SREM", KEY, b"y")])
    assert a.shown() == b.shown() == {b"a", b"b", b"x", b"z"}


def test_hashes_merge_per_field():
    a, b = concurrent([(b"HSET", KEY, b"f", b"0", b"g", b"0")],
                      [(b"HSET", KEY, b"f", b"a"), (b"HDEL", KEY, b"g")],
                      [(b"HSET", KEY, b"h", b"b")])
    assert a.shown() == b.shown() == {b"f": b"a", b"h": b"b"}


def test_sorted_sets_merge_members():
    a, b = concurrent([(b"ZADD", KEY, b"1", b"m")], [(b"ZADD", KEY, b"2", b"n")], [(b"ZADD", KEY, b"3", b"o")])
    assert a.shown() == b.shown() == {b"m": 1.0, b"n": 2.0, b"o": 3.0}


def test_counters_add_up_and_a_write_over_the_merge_keeps_counting():
    a, b = concurrent([(b"SET", KEY, b"10")], [(b"INCRBY", KEY, b"5"), (b"INCRBY", KEY, b"-2")],
                      [(b"INCRBY", KEY, b"7")])
    assert a.shown() == b.shown() == b"20"
    assert isinstance(a.store.metadata(KEY), Tally)
    a.run(b"INCRBY", KEY, b"1")
    a.send(b)
    assert a.shown() == b.shown() == b"21" and len(b.store.record(KEY)) == 1


def test_hash_field_counters_add_up_and_other_fields_merge():
    a, b = concurrent([(b"HSET", KEY, b"n", b"10", b"f", b"x")],
                      [(b"HINCRBY", KEY, b"n", b"5"), (b"HINCRBY", KEY, b"m", b"1"), (b"HSET", KEY, b"f", b"a")],
                      [(b"HINCRBY", KEY, b"n", b"7"), (b"HINCRBY", KEY, b"n", b"-2"), (b"HINCRBY", KEY, b"m", b"2")])
    assert a.shown() == b.shown() == {b"n": b"20", b"m": b"3", b"f": b"a"}
    a.run(b"HINCRBY", KEY, b"n", b"1")
    a.send(b)
    assert a.shown()[b"n"] == b.shown()[b"n"] == b"21"
    assert b.store.metadata(KEY).tallies[b"n"] == a.store.metadata(KEY).tallies[b"n"]


def test_a_field_set_concurrently_with_an_increment_shows_the_newest_and_a_deleted_one_the_increments():
    a, b = concurrent([(b"HSET", KEY, b"n", b"10")], [(b"HINCRBY", KEY, b"n", b"5")], [(b"HSET", KEY, b"n", b"100")])
    assert a.shown() == b.shown() == {b"n": b"100"}
    a, b = concurrent([(b"HSET", KEY, b"n", b"10", b"o", b"1")], [(b"HINCRBY", KEY, b"n", b"5")],
                      [(b"HDEL", KEY, b"n")])
    assert a.shown() == b.shown() == {b"n": b"15", b"o": b"1"}  # the increment was not seen by the HDEL


def test_set_concurrent_with_incr_shows_the_newest():
    a, b = concurrent([(b"SET", KEY, b"10")], [(b"INCRBY", KEY, b"5")], [(b"SET", KEY, b"100")])
    assert a.shown() == b.shown() == b"100"


def test_a_deletion_removes_what_it_saw_and_keeps_concurrent_adds():
    a, b = concurrent([(b"SADD", KEY, b"old")], [(b"DEL", KEY)], [(b"SADD", KEY, b"new")])
    assert a.shown() == b.shown() == {b"new"}
    a, b = concurrent([(b"SADD", KEY, b"old")], [(b"DEL", KEY)], [(b"SREM", KEY, b"old"), (b"SADD", KEY, b"o2")])
    assert a.shown() == b.shown() == {b"o2"}
    a, b = concurrent([(b"SADD", KEY, b"old")], [(b"DEL", KEY)], [(b"SADD", KEY, b"old")])  # a re-add wins
    assert a.shown() == b.shown() == {b"old"}


def test_without_convergent_types_only_sets_merge_as_their_union():
    a, b = concurrent([(b"SADD", KEY, b"x", b"y")], [(b"SREM", KEY, b"x")], [(b"SADD", KEY, b"b")], convergent=False)
    assert a.shown() == b.shown() == {b"x", b"y", b"b"}  # the union: x comes back
    assert a.store.meta == {} and b.store.meta == {}
    a, b = concurrent([(b"HSET", KEY, b"f", b"0")], [(b"HSET", KEY, b"g", b"a")], [(b"HSET", KEY, b"h", b"b")],
                      convergent=False)
    assert a.shown() == b.shown() == {b"f": b"0", b"h": b"b"}  # the newest sibling


@pytest.mark.parametrize("gap, listed", [(1, 3), (SETTLE_MS, 1)])
def test_a_write_over_a_settled_version_drops_its_dots(gap, listed):
    a = Replica(1)
    a.run(b"SADD", KEY, b"x")
    a.run(b"SADD", KEY, b"y")
    a.run(b"SADD", KEY, b"z", at=a.now + gap)
    dots = a.store.metadata(KEY)
    assert isinstance(dots, Dots) and len(dots.dots) == listed  # settled: only z's dot is listed
    b = Replica(2)
    a.send(b)
    assert b.store.metadata(KEY) == dots and b.shown() == {b"x", b"y", b"z"}


def test_a_key_written_all_the_time_settles_what_was_there_a_minute_ago():
    a = Replica(1)
    for second in range(200):
        a.run(b"SADD", KEY, b"m%d" % second, at=START + second * 1000)
    dots = a.store.metadata(KEY)
    # Only the adds of the last one to two minutes are still listed.
    assert 60 <= len(dots.dots) <= 120, len(dots.dots)
    assert b"m199" in dots.dots and b"m0" not in dots.dots
    b = Replica(2)
    a.send(b)
    assert b.store.metadata(KEY) == dots and b.shown() == a.shown()


def test_untracked_commands_reset_the_dots():
    a = Replica(1)
    a.run(b"SADD", KEY, b"x")
    a.ks.get(KEY).add_member(b"y")  # as SMOVE into the key would
    a.now += 1
    a.store.written(KEY, a.now)
    dots = a.store.metadata(KEY)
    assert dots.dots == {} and dots.base  # every element as old as this version


@pytest.mark.parametrize("value", [b"C", b"C\x01\x00", b"C\x02\x00\x00\x00Sx", b"C\x01\x00\x00\x00sD\x01"])
def test_a_peer_sending_malformed_metadata_gets_a_value_error_and_changes_nothing(value):
    """A malformed value beside a sibling (a merge is tried): ValueError, never
    another exception, and the held record and value stay."""
    from respkv.replication.versions import Version

    a = Replica(1)
    a.run(b"SADD", KEY, b"x")
    before = (a.store.wire_record(KEY), a.shown())
    bad = Version(b"\x09" * 20 + (1).to_bytes(8, "little") + bytes(8), START + 50, b"\x09" * 20, False, 0, value)
    if value.startswith(b"C\x01\x00\x00\x00sD"):
        # Well-framed metadata is kept as it arrived and decoded only when needed:
        # then it does not decode, and the key counts as of unknown history.
        assert a.store.apply(KEY, (bad,))
        assert a.store.metadata(KEY) is None
        return
    with pytest.raises(ValueError):
        a.store.apply(KEY, (bad,))
    assert (a.store.wire_record(KEY), a.shown()) == before
