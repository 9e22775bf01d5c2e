"""Clock actors scoped to incarnations: a node that lost its counters (a restart
with the log off or behind, a FLUSHALL) must not have its new writes dropped by
replicas that hold higher counters of its old actor."""

from __future__ import annotations

import pytest

from respkv.cluster.membership import Member
from respkv.cluster.state import ClusterState
from respkv.config import Config
from respkv.keyspace.store import Keyspace
from respkv.node import Node, start_replication
from respkv.replication.incarnation import Incarnation, IncarnationError, clock_incarnation
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of

NODE = "ab" * 20
REPLICA = "cd" * 20
KEY = b"k"


def coordinator_write(store: VersionStore, value: bytes, now_ms: int) -> tuple[bytes, bytes]:
    """The coordinator sets ``value`` and versions it: (parent, record) to ship."""
    store.keyspace.set(KEY, value)
    return store.written(KEY, now_ms)


def test_a_coordinator_that_lost_its_counters_reusing_its_actor_is_dropped_by_replicas():
    """What happened before incarnations: the restarted node counts from 1 again
    and the replica, holding counter 2 of the same actor, drops the new write."""
    replica = VersionStore(Keyspace(), actor_of(REPLICA, 1))
    before = VersionStore(Keyspace(), actor_of(NODE, 1))
    for stamp, value in ((1000, b"v1"), (2000, b"v2")):
        replica.apply_shipped(KEY, *coordinator_write(before, value, stamp))
    after_restart = VersionStore(Keyspace(), actor_of(NODE, 1))  # same actor, no records
    assert not replica.apply_shipped(KEY, *coordinator_write(after_restart, b"v3", 3000))
    assert replica.keyspace.get(KEY) == b"v2"  # the acknowledged v3 is gone


def test_a_new_incarnation_writes_versions_replicas_keep():
    replica = VersionStore(Keyspace(), actor_of(REPLICA, 1))
    before = VersionStore(Keyspace(), actor_of(NODE, 1))
    for stamp, value in ((1000, b"v1"), (2000, b"v2")):
        replica.apply_shipped(KEY, *coordinator_write(before, value, stamp))
    after_restart = VersionStore(Keyspace(), actor_of(NODE, 2))
    assert replica.apply_shipped(KEY, *coordinator_write(after_restart, b"v3", 3000))
    assert replica.keyspace.get(KEY) == b"v3"


def replicated_node(directory) -> Node:
    node = Node(Config(**{"cluster-enabled": True, "appendonly": False, "dir": str(directory)}))
    state = ClusterState(Member(NODE, "127.0.0.1", 7000, 17000), rf=3)
    node.cluster = state

    class NoBus:
        links: dict = {}

    start_replication(node, state, NoBus())
    return node


def test_every_start_and_every_flushall_advance_the_incarnation(tmp_path):
    (tmp_path / "incarnation").write_bytes(b"%d\n" % (1 << 31))  # ahead of the clock
    node = replicated_node(tmp_path)
    assert node.replication.store.actor == actor_of(NODE, (1 << 31) + 1)
    node.keyspace.flush()
    assert node.replication.store.actor == actor_of(NODE, (1 << 31) + 2)
    assert replicated_node(tmp_path).replication.store.actor == actor_of(NODE, (1 << 31) + 3)
    assert (tmp_path / "incarnation").read_bytes() == b"%d\n" % ((1 << 31) + 3)


def test_a_lost_incarnation_file_restarts_from_the_clock_not_from_one(tmp_path):
    """A node whose directory was replaced keeps its id: its first incarnation
    then comes from the clock, above the ones of its earlier lives."""
    earlier_life = clock_incarnation() - 5  # started five seconds ago
    (tmp_path / "incarnation").write_bytes(b"%d\n" % earlier_life)
    assert Incarnation(str(tmp_path)).advance() > earlier_life
    (tmp_path / "incarnation").unlink()  # the disk is replaced
    assert Incarnation(str(tmp_path)).advance() > earlier_life


@pytest.mark.parametrize("content", [b"", b"x\n", b"-4\n"])
def test_a_damaged_incarnation_file_stops_the_start(tmp_path, content):
    (tmp_path / "incarnation").write_bytes(content)
    with pytest.raises(IncarnationError, match="incarnation"):
        Incarnation(str(tmp_path)).advance()
