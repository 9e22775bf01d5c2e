"""Operations in the commit log: a collection changed by a shipped command is
logged as the command over the version it ran on, not as the whole collection
(and on a plain keyspace, as the command over the value it ran on).

The journal's rules are checked on a real directory with a toy image function
(what a round logs when operations, images and a rewrite meet); the replicated
node's entries end to end in process: the operations a coordinator and a
replica report replay to the same records, and one that does not follow the
record before it is skipped and counted, never applied over the wrong state.
"""

from __future__ import annotations

import pytest
import redis
import trio

from respkv.config import Config
from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Set
from respkv.node import Node
from respkv.persistence.command_entries import command_replay, decode_command, encode_command
from respkv.persistence.entries import ABSENT, COMMAND, OPERATION, RECORD, VALUE, entry, split_entry
from respkv.persistence.journal import Journal
from respkv.persistence.keyspace_images import keyspace_image, keyspace_replay
from respkv.replication.journaled import RecordReplay, operation_marker, record_image, record_marker
from respkv.replication.replica import ReplicaSide
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of
from tests.conftest import NodeThread

A = actor_of("ab" * 20, 1)
B = actor_of("cd" * 20, 1)

# -- the journal's rules -------------------------------------------------------------------


class Toy:
    """Keys with a value each; an image is ``RECORD key value``."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def image(self, key: bytes) -> bytes:
        value = self.values.get(key)
        return entry(ABSENT, key) if value is None else entry(RECORD, key, value)


def _open(directory, toy: Toy) -> Journal:
    journal = Journal(str(directory), toy.image)
    journal.load(lambda kind, key, body: None)
    journal.open()
    return journal


def _entries(directory) -> list[tuple[bytes, bytes, bytes]]:
    """Every entry the directory's snapshot and logs hold, in replay order."""
    found: list[tuple[bytes, bytes, bytes]] = []
    Journal(str(directory), Toy().image).load(lambda kind, key, body: found.append((kind, key, body)))
    return found


def op(text: bytes) -> bytes:
    return entry(OPERATION, b"k", text)


def test_operations_are_logged_in_order_and_an_image_supersedes_them(tmp_path):
    toy = Toy()
    journal = _open(tmp_path, toy)
    toy.values[b"k"] = b"v1"
    journal.mark_operation(b"k", op(b"first"))
    journal.mark_operation(b"k", op(b"second"))
    journal.commit()
    journal.mark_operation(b"k", op(b"before the image"))
    toy.values[b"k"] = b"v2"
    journal.mark(b"k")  # the image holds the operation before it: only the image
    journal.mark_operation(b"k", op(b"after the image"))  # imaged at the commit anyway
    journal.commit()
    journal.mark_image(b"k", entry(RECORD, b"k", b"in hand"))
    journal.mark_operation(b"k", op(b"after the image in hand"))
    journal.commit()
    journal.close()
    assert _entries(tmp_path) == [
        (OPERATION, b"k", b"first"), (OPERATION, b"k", b"second"),
        (RECORD, b"k", b"v2"),
        (RECORD, b"k", b"in hand"), (OPERATION, b"k", b"after the image in hand"),
    ]


async def test_while_a_snapshot_is_written_a_key_s_first_change_is_imaged(tmp_path):
    toy = Toy()
    for i in range(3000):  # several snapshot chunks, a checkpoint after each
        toy.values[b"x%d" % i] = b"x"
    toy.values[b"k"] = b"before"
    toy.values[b"late"] = b"before"
    journal = _open(tmp_path, toy)
    rounds = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.rewrite, lambda: list(toy.values))
        await trio.testing.wait_all_tasks_blocked()
        while journal.rewriting:  # a round between two chunks of the snapshot
            toy.values[b"k"] = b"during %d" % rounds
            journal.mark_operation(b"k", op(b"during %d" % rounds))
            journal.commit()
            rounds += 1
            await trio.sleep(0)
    assert rounds >= 2
    # The first commit after the snapshot's end: a key not imaged yet still is.
    toy.values[b"late"] = b"first commit after"
    journal.mark_operation(b"late", entry(OPERATION, b"late", b"first after"))
    journal.mark_operation(b"k", op(b"first after"))
    journal.commit()
    journal.mark_operation(b"late", entry(OPERATION, b"late", b"second after"))
    journal.commit()
    journal.close()
    entries = _entries(tmp_path)
    logged = [(kind, body) for kind, key, body in entries if key == b"k"]
    # The snapshot's image of k (whichever state its chunk saw), then the new log:
    # k's first change as an image, the others as operations.
    assert logged[0][0] == RECORD and logged[0][1] in [b"before"] + [b"during %d" % i for i in range(rounds)]
    assert logged[1:] == [(RECORD, b"during 0")] + [(OPERATION, b"during %d" % i) for i in range(1, rounds)] + [
        (OPERATION, b"first after")]
    late = [(kind, body) for kind, key, body in entries if key == b"late"]
    assert late == [(RECORD, b"before"), (RECORD, b"first commit after"), (OPERATION, b"second after")]


def test_without_a_log_operations_count_as_changed_keys(tmp_path):
    toy = Toy()
    journal = Journal(str(tmp_path), toy.image, appendonly=False)
    journal.load(lambda kind, key, body: None)
    journal.open()
    journal.mark_operation(b"k", op(b"x"))
    journal.commit()
    assert journal.changes == 1


# -- replicated records: coordinator, replica, replay --------------------------------------


class Marks:
    """The part of a Journal the store's markers use, keeping what they were told."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []

    def mark(self, key: bytes) -> None:
        raise AssertionError(f"{key!r} imaged: an operation was expected")

    def mark_image(self, key: bytes, payload: bytes) -> None:
        self.entries.append(payload)

    def mark_operation(self, key: bytes, payload: bytes) -> None:
        self.entries.append(payload)


def _logged(store: VersionStore) -> Marks:
    marks = Marks()
    store.on_change = record_marker(marks)
    store.on_operation = operation_marker(marks)
    return marks


def _replica(store: VersionStore) -> ReplicaSide:
    return ReplicaSide(Node(Config(), store.keyspace), store)  # a node without a log


def _sadd(store: VersionStore, key: bytes, member: bytes, now: int) -> tuple[bytes, bytes]:
    """SADD as a coordinator runs it: change the value, then version it."""
    members = store.keyspace.get(key)
    if members is None:
        members = Set()
        store.keyspace.set(key, members)
    members.add_member(member)
    store.keyspace.signal_modified(key)
    command = [b"SADD", key, member]
    return store.written(key, now, operation=command, commands=[command])


def _replayed(entries: list[bytes]) -> tuple[VersionStore, int]:
    """A new store with ``entries`` replayed into it, and how many were skipped."""
    store = VersionStore(Keyspace(), B)
    replay = RecordReplay(store, expired=lambda key: None, operation=_replica(store).run_shipped)
    skipped = sum(replay(*split_entry(payload)) is False for payload in entries)
    return store, skipped


def test_operations_of_coordinator_and_replica_replay_to_their_records():
    coordinator = VersionStore(Keyspace(), A)
    replica = VersionStore(Keyspace(), B)
    logs = {coordinator: _logged(coordinator), replica: _logged(replica)}
    runner = _replica(replica)
    for now, member in enumerate((b"a", b"b", b"c"), start=1000):
        parent, blob = _sadd(coordinator, b"s", member, now)
        assert runner.run_shipped(b"s", parent, blob)
    for store, marks in logs.items():
        kinds = [payload[:1] for payload in marks.entries]
        assert kinds == [OPERATION] * 3
        restored, skipped = _replayed(marks.entries)
        assert skipped == 0
        assert restored.keyspace.get(b"s") == coordinator.keyspace.get(b"s")
        assert restored.digest(b"s") == store.digest(b"s")
        assert record_image(restored)(b"s") == record_image(store)(b"s")


def test_an_operation_that_does_not_follow_the_record_is_skipped_and_counted(caplog):
    coordinator = VersionStore(Keyspace(), A)
    marks = _logged(coordinator)
    for now, member in enumerate((b"a", b"b"), start=1000):
        _sadd(coordinator, b"s", member, now)
    restored, skipped = _replayed(marks.entries[1:])  # the first one is lost
    assert skipped == 1
    assert restored.keyspace.get(b"s") is None  # not {b}: never run over the wrong state
    assert "does not follow the record before it" in caplog.text


# -- a plain keyspace: COMMAND entries -------------------------------------------------------


def test_a_command_entry_body_round_trips_and_a_malformed_one_is_refused():
    args = [b"SADD", b"k", b"", b"\x00\r\n" * 10]
    assert decode_command(encode_command(args)) == args
    body = encode_command(args)
    for damaged in (b"", body[:3], body[:-1], body + b"x", encode_command([])):
        with pytest.raises(ValueError):
            decode_command(damaged)


def _keyed_entries(directory) -> list[tuple[bytes, bytes]]:
    return [(kind, key) for kind, key, _ in _entries(directory)]


def test_a_plain_node_logs_a_change_of_an_existing_collection_as_its_command(tmp_path):
    server = NodeThread(tmp_path, appendfsync="always", **{"auto-aof-rewrite-percentage": 0}).start()
    c = server.client(protocol=2)
    c.sadd("s", "a")  # a new key: its image
    c.sadd("s", "b")  # an existing collection: the command
    c.sadd("s", "b")  # no change: nothing
    with pytest.raises(redis.ResponseError):
        c.lpush("s", "x")  # refused: nothing
    c.hset("h", "f", "1")
    with c.pipeline(transaction=True) as transaction:
        transaction.hset("h", "g", "2").hdel("h", "f").execute()  # inside EXEC too
    c.rpush("l", "x", "y")
    c.rpop("l")
    c.expire("s", 1000)
    c.srem("s", "a")  # a collection with an expiry: its image
    expected = (c.smembers("s"), c.hgetall("h"), c.lrange("l", 0, -1))
    server.stop()
    logged = _keyed_entries(server.config["dir"])
    assert logged == [
        (VALUE, b"s"), (COMMAND, b"s"),
        (VALUE, b"h"), (COMMAND, b"h"), (COMMAND, b"h"),
        (VALUE, b"l"), (COMMAND, b"l"),
        (VALUE, b"s"), (VALUE, b"s"),
    ]
    restarted = NodeThread(tmp_path).start()
    c = restarted.client(protocol=2)
    assert (c.smembers("s"), c.hgetall("h"), c.lrange("l", 0, -1)) == expected
    restarted.stop()


def test_a_replicated_node_adopts_the_values_and_commands_of_a_plain_log(tmp_path):
    server = NodeThread(tmp_path, **{"auto-aof-rewrite-percentage": 0}).start()
    c = server.client(protocol=2)
    c.sadd("s", "a")
    c.sadd("s", "b", "c")
    c.srem("s", "a")
    c.set("plain", "v")
    c.rpush("gone", "x")
    c.rpush("gone", "y")
    c.delete("gone")
    server.stop()
    assert [kind for kind, _ in _keyed_entries(server.config["dir"])].count(COMMAND) == 3
    store = VersionStore(Keyspace(), A)
    replay = RecordReplay(store, expired=lambda key: None, operation=_replica(store).run_shipped,
                          command=command_replay(Node(Config(), store.keyspace)))
    Journal(str(server.config["dir"]), Toy().image).load(replay)
    assert sorted(replay.adopt()) == [b"plain", b"s"]
    assert store.keyspace.get(b"s") == {b"b", b"c"} and store.keyspace.get(b"gone") is None
    assert all(len(store.record(key)) == 1 for key in (b"plain", b"s"))  # one version each
    assert replay.adopt() == []


def test_a_command_entry_without_its_key_is_skipped_and_counted(tmp_path, caplog):
    node = Node(Config(dir=str(tmp_path)))
    journal = Journal(str(tmp_path), keyspace_image(node.keyspace))
    journal.load(lambda kind, key, body: None)
    journal.open()
    journal.mark_operation(b"s", entry(COMMAND, b"s", encode_command([b"SADD", b"s", b"x"])))  # no image before
    journal.commit()
    journal.close()
    loader = Journal(str(tmp_path), keyspace_image(node.keyspace))
    assert loader.load(keyspace_replay(node.keyspace, command_replay(node))) == 1
    assert loader.skipped_entries == 1 and node.keyspace.get(b"s") is None
    assert "does not follow the value before it" in caplog.text


def test_pops_that_equal_a_replayable_command_are_logged_as_it(tmp_path):
    server = NodeThread(tmp_path, appendfsync="always", **{"auto-aof-rewrite-percentage": 0}).start()
    c = server.client(protocol=2)
    c.rpush("l", *[f"e{i}" for i in range(10)])
    c.sadd("s", *[f"m{i}" for i in range(10)])
    c.zadd("z", {f"z{i}": i for i in range(10)})
    popped = [c.blpop(["l"], 0), c.brpop(["l"], 0), c.lmpop(1, "l", direction="LEFT", count=2)]
    drawn = [c.spop("s"), c.spop("s", 3)]
    zpopped = [c.bzpopmin(["z"], 0), c.bzpopmax(["z"], 0), c.zmpop(1, ["z"], min=True, count=2)]
    assert all(popped + drawn + zpopped), (popped, drawn, zpopped)
    expected = (c.lrange("l", 0, -1), c.smembers("s"), c.zrange("z", 0, -1, withscores=True))
    server.stop()
    entries = _entries(server.config["dir"])
    assert [(kind, key) for kind, key, _ in entries] == (
        [(VALUE, b"l"), (VALUE, b"s"), (VALUE, b"z")] + [(COMMAND, b"l")] * 3 + [(COMMAND, b"s")] * 2
        + [(COMMAND, b"z")] * 3)
    commands = [decode_command(body) for kind, _, body in entries if kind == COMMAND]
    assert [args[0] for args in commands] == [b"LPOP", b"RPOP", b"LPOP", b"SREM", b"SREM",
                                              b"ZPOPMIN", b"ZPOPMAX", b"ZPOPMIN"]
    assert commands[3][2:] == [drawn[0]] and sorted(commands[4][2:]) == sorted(drawn[1])  # what was drawn
    restarted = NodeThread(tmp_path).start()
    c = restarted.client(protocol=2)
    assert (c.lrange("l", 0, -1), c.smembers("s"), c.zrange("z", 0, -1, withscores=True)) == expected
    restarted.stop()


def test_moves_between_collections_are_logged_as_a_push_and_a_pop(tmp_path):
    """LMOVE, RPOPLPUSH, BLMOVE (served at once) and SMOVE change each side as the
    replayable command it equals; a new destination is imaged, a rotation of a
    list onto itself is a pop and a push (a one-element one is imaged)."""
    server = NodeThread(tmp_path, appendfsync="always", **{"auto-aof-rewrite-percentage": 0}).start()
    c = server.client(protocol=2)
    c.rpush("q", *[f"e{i}" for i in range(6)])
    c.rpush("done", "d")
    c.rpush("one", "x")
    c.sadd("s", "a", "b", "c")
    c.sadd("t", "z")
    assert c.lmove("q", "done", "LEFT", "RIGHT") == b"e0"
    assert c.rpoplpush("q", "done") == b"e5"
    assert c.blmove("q", "done", 0, "RIGHT", "LEFT") == b"e4"
    assert c.lmove("q", "q", "LEFT", "RIGHT") == b"e1"  # rotation
    assert c.lmove("one", "one", "LEFT", "RIGHT") == b"x"  # one element: no change
    assert c.lmove("q", "fresh", "LEFT", "LEFT") == b"e2"  # a new destination: its image
    assert c.smove("s", "t", "a") and c.smove("s", "t", "b") and not c.smove("s", "t", "nope")
    assert c.smove("s", "t", "c")  # the source's last member: SREM deletes it
    expected = [c.lrange(key, 0, -1) for key in ("q", "done", "one", "fresh")] + [c.smembers("t"), c.exists("s")]
    server.stop()
    entries = _entries(server.config["dir"])
    logged = [(kind, key, decode_command(body) if kind == COMMAND else None) for kind, key, body in entries]
    commands = [(key, args) for kind, key, args in logged if kind == COMMAND]
    assert commands == [
        (b"done", [b"RPUSH", b"done", b"e0"]), (b"q", [b"LPOP", b"q"]),
        (b"done", [b"LPUSH", b"done", b"e5"]), (b"q", [b"RPOP", b"q"]),
        (b"done", [b"LPUSH", b"done", b"e4"]), (b"q", [b"RPOP", b"q"]),
        (b"q", [b"LPOP", b"q"]), (b"q", [b"RPUSH", b"q", b"e1"]),
        (b"q", [b"LPOP", b"q"]),  # into "fresh", imaged
        (b"s", [b"SREM", b"s", b"a"]), (b"t", [b"SADD", b"t", b"a"]),
        (b"s", [b"SREM", b"s", b"b"]), (b"t", [b"SADD", b"t", b"b"]),
        (b"s", [b"SREM", b"s", b"c"]), (b"t", [b"SADD", b"t", b"c"]),
    ]
    images = [key for kind, key, _ in logged if kind != COMMAND]
    assert images.count(b"fresh") == 1  # made by the move
    assert images.count(b"one") == 2  # made, then "changed" by its rotation (one element: its image)
    restarted = NodeThread(tmp_path).start()
    c = restarted.client(protocol=2)
    assert [c.lrange(key, 0, -1) for key in ("q", "done", "one", "fresh")] + [c.smembers("t"), c.exists("s")] == expected
    restarted.stop()
