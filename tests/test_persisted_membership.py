"""The membership file (``cluster-config-file``) and what a node does with it at start.

First the file itself: its format round-trips, it is replaced atomically, and
every kind of damage is an error that names the file.  Then the start-up
decision (:func:`~respkv.cluster.persisted.restore`) and the recorder that keeps
the file in step with the node's view.  Last, whole nodes on loopback sockets
(0.5 s node timeout, every wait bounded by ``trio.fail_after``): a node restarted
on its directory without ``--join`` rejoins its cluster, and one restarted while
the others are gone keeps the cluster's ring instead of claiming every slot.
The same stories with real processes are in ``test_cluster_rejoin_e2e.py``.
"""

from __future__ import annotations

import logging
import os
import zlib

import pytest
import trio

from respkv.cluster import persisted
from respkv.cluster.failure import NodeState
from respkv.cluster.membership import Member, Membership
from respkv.cluster.persisted import (
    MembershipFileError,
    MembershipRecorder,
    SavedMembership,
    decode,
    encode,
    load,
    restore,
    save,
)
from respkv.cluster.state import ClusterState
from respkv.config import Config
from respkv.keyspace.slots import SLOT_COUNT
from respkv.node import Node, serve_node

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
VNODES = 16
T = 0.5  # node timeout of the whole-node tests, seconds
HOST = "127.0.0.1"


def saved_cluster() -> SavedMembership:
    """Three members, one with weight 2 on IPv6, and a tombstone."""
    return SavedMembership(
        A,
        VNODES,
        Membership([
            Member(A, "127.0.0.1", 7000, 17000, epoch=3),
            Member(B, "::1", 7001, 17001, weight=2),
            Member(C, "10.0.0.3", 7002, 27002, epoch=7),
            Member(D, "10.0.0.4", 7003, 17003, epoch=2, left=True),
        ]),
    )


# -- the format ---------------------------------------------------------------------


def test_encoding_round_trips_every_field():
    saved = saved_cluster()
    data = encode(saved)
    assert decode(data, "nodes.conf") == saved
    text = data.decode()
    assert text.startswith("# respkv cluster membership")
    assert f"\nrespkv-nodes 1\nmyself {A}\nvnodes {VNODES}\n" in text
    assert f"\nmember {B} ::1 7001 17001 2 1 0\n" in text
    assert f"\nmember {D} 10.0.0.4 7003 17003 1 2 1\n" in text  # the tombstone is kept
    assert text.splitlines()[-1].startswith("checksum ")


def test_save_and_load_round_trip(tmp_path):
    path = str(tmp_path / "nodes.conf")
    assert load(path) is None
    save(path, saved_cluster())
    assert load(path) == saved_cluster()
    assert sorted(os.listdir(tmp_path)) == ["nodes.conf"]


def test_save_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "nodes.conf"
    save(str(path), saved_cluster())
    # A writer that crashed before its rename left a temporary file behind: it
    # is not read, and the next save overwrites it.
    (tmp_path / "nodes.conf.tmp").write_bytes(b"half a file")
    assert load(str(path)) == saved_cluster()
    smaller = SavedMembership(A, VNODES, Membership([Member(A, "127.0.0.1", 7000, 17000)]))
    save(str(path), smaller)
    assert load(str(path)) == smaller
    assert sorted(os.listdir(tmp_path)) == ["nodes.conf"]
    # A write that fails leaves the previous file whole.
    (tmp_path / "nodes.conf.tmp").mkdir()
    with pytest.raises(MembershipFileError, match="cannot write the cluster membership file .*nodes.conf"):
        save(str(path), saved_cluster())
    assert load(str(path)) == smaller


def with_checksum(body: str) -> bytes:
    """``body`` with a valid checksum line: damage the checksum cannot catch."""
    data = body.encode()
    return data + b"checksum %08x\n" % zlib.crc32(data)


GOOD = encode(saved_cluster())
MEMBER_B = f"member {B} ::1 7001 17001 2 1 0\n"

DAMAGED = {
    "empty": (b"", "no checksum line"),
    "truncated": (GOOD[: len(GOOD) // 2], "no checksum line"),
    "last line lost": (GOOD.rsplit(b"\n", 2)[0] + b"\n", "no checksum line"),
    "bit flip": (GOOD.replace(b"7001", b"7011", 1), "checksum does not match"),
    "garbage": (os.urandom(64) + b"\nchecksum 00000000\n", "checksum does not match"),
    "not ascii": (with_checksum("respkv-nodes 1\nmyself \u00e9\n"), "not ASCII"),
    "other format": (with_checksum("something 1\n"), "expected 'respkv-nodes 1' first"),
    "newer version": (with_checksum("respkv-nodes 2\n"), "format version '2'"),
    "no myself": (with_checksum(f"respkv-nodes 1\nvnodes 16\nmember {A} 127.0.0.1 7000 17000 1 1 0\n"),
                  "no 'myself' line"),
    "bad vnodes": (with_checksum(f"respkv-nodes 1\nmyself {A}\nvnodes zero\n"), "bad vnodes"),
    "short member": (with_checksum(f"respkv-nodes 1\nmyself {A}\nvnodes 16\nmember {A} 127.0.0.1\n"),
                     "line 4: a member line has 7 fields"),
    "bad port": (with_checksum(f"respkv-nodes 1\nmyself {A}\nvnodes 16\nmember {A} 127.0.0.1 0 17000 1 1 0\n"),
                 "line 4: bad member record: port must be"),
    "repeated member": (with_checksum(f"respkv-nodes 1\nmyself {B}\nvnodes 16\n{MEMBER_B}{MEMBER_B}"),
                        "a node id appears in two member lines"),
    "myself missing": (with_checksum(f"respkv-nodes 1\nmyself {A}\nvnodes 16\n{MEMBER_B}"),
                       "no member line for this node"),
    "unknown line": (with_checksum(f"respkv-nodes 1\nmyself {B}\nvnodes 16\nslots 0-100\n"),
                     "line 4: unknown line 'slots'"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_file_is_an_error_naming_the_file(tmp_path, name):
    data, reason = DAMAGED[name]
    path = tmp_path / "nodes.conf"
    path.write_bytes(data)
    with pytest.raises(MembershipFileError) as caught:
        restore(str(path), A, VNODES)
    message = str(caught.value)
    assert message.startswith(f"cluster membership file {path}")
    assert reason in message
    assert "remove it to start this node knowing only itself" in message


def test_an_unreadable_file_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "nodes.conf").mkdir()  # unreadable as a file, even for root
    with pytest.raises(MembershipFileError, match=f"cannot read the cluster membership file {tmp_path}/nodes.conf"):
        restore(str(tmp_path / "nodes.conf"), A, VNODES)


# -- the start-up decision -------------------------------------------------------------


def test_restore_uses_only_this_nodes_file_with_the_same_vnodes(tmp_path):
    path = str(tmp_path / "nodes.conf")
    assert restore(path, A, VNODES) is None  # never part of a cluster
    save(path, saved_cluster())
    assert restore(path, A, VNODES) == saved_cluster().membership
    with pytest.raises(MembershipFileError, match=f"belongs to node {A}, but this node's id is {B}"):
        restore(path, B, VNODES)
    with pytest.raises(MembershipFileError, match=f"uses cluster-vnodes {VNODES}, but it is configured with 64"):
        restore(path, A, 64)
    # A node that only ever knew itself may change its ring parameter.
    alone = SavedMembership(A, VNODES, Membership([Member(A, "127.0.0.1", 7000, 17000)]))
    save(path, alone)
    assert restore(path, A, 64) == alone.membership


def test_config_file_directive_and_path():
    config = Config()
    assert config["cluster-config-file"] == "nodes.conf"
    assert persisted.config_file_path("/data/n1", "nodes.conf") == "/data/n1/nodes.conf"
    assert persisted.config_file_path("/data/n1", "/etc/respkv/n1.conf") == "/etc/respkv/n1.conf"


def test_a_restored_state_has_the_clusters_ring_not_all_slots():
    known = saved_cluster().membership
    fresh = ClusterState(Member(A, "127.0.0.1", 7000, 17000), vnodes=VNODES)
    assert sum(fresh.served) == SLOT_COUNT  # the bug: alone, every slot is its own
    state = ClusterState(Member(A, "127.0.0.1", 7000, 17000), vnodes=VNODES, known=known)
    assert state.membership is known  # same address: nothing to re-assert
    assert set(state.membership.active_ids()) == {A, B, C}
    assert 0 < sum(state.served) < SLOT_COUNT
    others = ClusterState(Member(B, "::1", 7001, 17001, weight=2), vnodes=VNODES, known=known)
    assert not any(a and b for a, b in zip(state.served, others.served))
    # Back on another port: the own record is re-asserted above the saved epoch.
    moved = ClusterState(Member(A, "127.0.0.1", 7100, 17100), vnodes=VNODES, known=known)
    assert moved.membership[A] == Member(A, "127.0.0.1", 7100, 17100, epoch=4)
    assert moved.served == state.served  # the ring depends on ids and weights only


# -- the recorder ------------------------------------------------------------------------


async def test_recorder_writes_every_membership_change_and_retries_failures(tmp_path, autojump_clock, caplog):
    path = tmp_path / "nodes.conf"
    state = ClusterState(Member(A, "127.0.0.1", 7000, 17000), vnodes=VNODES)
    recorder = MembershipRecorder(str(path), state)
    recorder.attach()
    assert load(str(path)) == SavedMembership(A, VNODES, state.membership)
    state.merge(Membership([Member(B, "127.0.0.1", 7001, 17001)]))
    assert load(str(path)).membership == state.membership
    written = path.stat().st_mtime_ns, path.read_bytes()
    state.set_states({B: NodeState.PFAIL})  # not a membership change: no write
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            (tmp_path / "nodes.conf.tmp").mkdir()  # every write fails now
            with caplog.at_level(logging.ERROR, logger="respkv.cluster.persisted"):
                state.merge(Membership([Member(C, "127.0.0.1", 7002, 17002)]))
            assert "cannot write the cluster membership file" in caplog.text
            assert load(str(path)).membership != state.membership
            await trio.sleep(3 * persisted.RETRY_INTERVAL)
            assert recorder.failures >= 3
            (tmp_path / "nodes.conf.tmp").rmdir()
            await trio.sleep(persisted.RETRY_INTERVAL + 0.1)
            assert load(str(path)).membership == state.membership
            assert recorder.failures == 0
            nursery.cancel_scope.cancel()


def test_attach_fails_when_the_file_cannot_be_written(tmp_path):
    (tmp_path / "nodes.conf.tmp").mkdir()
    state = ClusterState(Member(A, "127.0.0.1", 7000, 17000), vnodes=VNODES)
    with pytest.raises(MembershipFileError, match="nodes.conf"):
        MembershipRecorder(str(tmp_path / "nodes.conf"), state).attach()


# -- whole nodes on loopback sockets ----------------------------------------------------


def config_for(tmp_path, name: str) -> Config:
    return Config(
        dir=str(tmp_path / name),
        port=0,
        cluster_enabled=True,
        cluster_node_timeout=int(T * 1000),
        cluster_vnodes=VNODES,
        replication_factor=1,
        cluster_secret="the test cluster's secret",
    )


class Running:
    """A node served by :func:`run_node`, stoppable on its own (like kill -9)."""

    def __init__(self, node: Node, scope: trio.CancelScope, stopped: trio.Event) -> None:
        self.node, self.scope, self.stopped = node, scope, stopped

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


async def run_node(config: Config, join=(), *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve a node in a cancel scope of its own; reports a :class:`Running`."""
    stopped = trio.Event()
    try:
        with trio.CancelScope() as scope:
            node = Node(config)
            node.cluster_join = list(join)
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_node, node)
                task_status.started(Running(node, scope, stopped))
    finally:
        stopped.set()


async def wait_for(predicate, step: float = 0.02) -> None:
    while not predicate():
        await trio.sleep(step)


def bus_address(node: Node) -> str:
    member = node.cluster.membership[node.cluster.myself]
    return f"{member.host}:{member.port}@{member.bus_port}"


async def start_three(nursery, tmp_path) -> list[Running]:
    first = await nursery.start(run_node, config_for(tmp_path, "n0"))
    rest = [await nursery.start(run_node, config_for(tmp_path, f"n{i}"), [bus_address(first.node)])
            for i in (1, 2)]
    started = [first, *rest]
    await wait_for(lambda: all(len(r.node.cluster.membership.active_ids()) == 3 for r in started))
    return started


async def test_a_node_restarted_without_join_rejoins_its_cluster(tmp_path):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            started = await start_three(nursery, tmp_path)
            a, b, c = [r.node for r in started]
            c_id = c.cluster.myself
            # Everything c knew is on disk once c shows it.
            assert load(str(tmp_path / "n2" / "nodes.conf")).membership == c.cluster.membership
            await started[2].stop()
            await wait_for(lambda: all(n.cluster.topology.state(c_id) is NodeState.FAIL for n in (a, b)))

            again = (await nursery.start(run_node, config_for(tmp_path, "n2"))).node  # no --join
            assert again.cluster.myself == c_id
            assert len(again.cluster.membership.active_ids()) == 3
            assert 0 < sum(again.cluster.served) < SLOT_COUNT
            await wait_for(
                lambda: all(n.cluster.topology.state(c_id) is NodeState.OK for n in (a, b))
                and len({n.cluster.membership.digest() for n in (a, b, again)}) == 1
            )
            # It came back on a new port (port 0), and everyone has that address.
            assert a.cluster.membership[c_id].port == again.port
            served = [sum(s) for s in zip(a.cluster.served, b.cluster.served, again.cluster.served)]
            assert served == [1] * SLOT_COUNT
            nursery.cancel_scope.cancel()


async def test_a_node_restarted_alone_keeps_the_clusters_ring(tmp_path):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            started = await start_three(nursery, tmp_path)
            ids = [r.node.cluster.myself for r in started]
            share = bytes(started[0].node.cluster.served)
            for running in started:
                await running.stop()

            alone = (await nursery.start(run_node, config_for(tmp_path, "n0"))).node  # no --join
            state = alone.cluster
            assert set(state.membership.active_ids()) == set(ids)
            assert bytes(state.served) == share  # its own share, not every slot
            await wait_for(lambda: all(state.topology.state(i) is NodeState.PFAIL for i in ids[1:]))
            info = dict(line.split(":") for line in state.topology.cluster_info().split("\r\n") if line)
            assert info["cluster_known_nodes"] == "3"
            assert int(info["cluster_slots_pfail"]) == SLOT_COUNT - sum(share)
            assert int(info["cluster_slots_ok"]) == sum(share)
            other_slot = next(slot for slot in range(SLOT_COUNT) if not share[slot])
            owner = state.topology.coordinator(other_slot)
            assert owner in ids[1:]
            assert state.topology.moved(other_slot).startswith(b"-MOVED %d " % other_slot)
            nursery.cancel_scope.cancel()


async def test_a_corrupt_file_stops_the_node(tmp_path):
    config = config_for(tmp_path, "bad")
    os.makedirs(config["dir"])
    (tmp_path / "bad" / "nodes.conf").write_bytes(b"respkv-nodes 1\n")
    stopped = None
    with trio.fail_after(10):
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(run_node, config)
        except* MembershipFileError as group:
            stopped = group
    while isinstance(stopped, BaseExceptionGroup):  # trio nests a group per nursery
        (stopped,) = stopped.exceptions
    assert isinstance(stopped, MembershipFileError)
    assert str(stopped).startswith(f"cluster membership file {tmp_path / 'bad' / 'nodes.conf'}: ")
