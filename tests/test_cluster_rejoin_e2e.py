"""Restarted nodes rejoin their cluster from their membership file, with real processes.

A 3-node cluster started by the launcher (rf 1, 1000 ms node timeout); then every
node's recorded command line loses its ``--join``, so each restart below is the
plain ``respkv server --cluster --port P --dir D`` the docs give, and the
launcher is told not to add one (``join_running=False``).  Node 0 is stopped with
SIGTERM and node 1 with SIGKILL, each restarted on its directory: right after
start it already knows the 3 members and coordinates only its share of the slots,
and within the deadline everyone sees it connected with the slot map unchanged.
Then the whole cluster is stopped and node 0 started alone: it keeps the 3-member
ring, flags the others ``fail?``, answers ``MOVED`` for their keys, and never
reports ``cluster_state:ok`` with all 16384 slots its own; the other two started
the same way bring the cluster back.  Last, a damaged membership file stops a
node with a message naming the file.  Every wait polls with a deadline.
"""

from __future__ import annotations

import signal
import time

import pytest

from respkv import launcher
from respkv.launcher import ReplyError
from tools.faultsuite import without_join
from tests.test_cluster_e2e import (
    HOST,
    NODE_TIMEOUT_MS,
    SLOTS,
    UP_TIMEOUT,
    cluster_nodes,
    coordinators,
    key_slot,
    poll,
    start_cluster,
)

#: Seconds a restarted node may take to be back (the bus redials within a
#: second; generous for a loaded machine).
REJOIN_TIMEOUT = 30.0


def own_line(port: int) -> launcher.NodeLine:
    return next(line for line in cluster_nodes(port) if "myself" in line.flags)


def check_restarted_view(node, ids: set[str]) -> None:
    """Right after start, before any peer answered: the saved ring, not all slots."""
    lines = cluster_nodes(node.port)
    assert {line.node_id for line in lines} == ids, lines
    mine = own_line(node.port)
    assert 0 < mine.slots < SLOTS, f"{node.name} claims {mine.slots} slots"
    info = launcher.probe(HOST, node.port).info
    assert info["cluster_known_nodes"] == "3"
    assert not (info["cluster_state"] == "ok" and mine.slots == SLOTS)


def seen_connected_by_all(cluster, node_id: str) -> bool:
    """Every running node lists ``node_id`` unflagged with a connected link."""
    for other in cluster.running():
        line = next((x for x in cluster_nodes(other.port) if x.node_id == node_id), None)
        if line is None or {"fail", "fail?"} & set(line.flags):
            return False
        if "myself" not in line.flags and line.link != "connected":
            return False
    return True


@pytest.mark.cluster
def test_restarted_nodes_rejoin_without_join_arguments(tmp_path):
    cluster = start_cluster(tmp_path / "rejoin", rf=1)
    try:
        ids = {node.node_id for node in cluster.nodes}
        slot_map = coordinators(cluster.seed.port)
        for node in cluster.nodes:
            node.argv = without_join(node.argv)
        cluster.save()

        # -- one node stopped, then restarted without --join ---------------------
        for index, how in ((0, signal.SIGTERM), (1, signal.SIGKILL)):
            node = cluster.nodes[index]
            cluster.signal_node(index, how)
            cluster.start_node(index, join_running=False)
            assert "--join" not in cluster.nodes[index].argv
            cluster.wait_listening([index], REJOIN_TIMEOUT)
            check_restarted_view(node, ids)
            started = time.monotonic()
            back = poll(lambda node_id=node.node_id: seen_connected_by_all(cluster, node_id), REJOIN_TIMEOUT)
            assert back, f"{node.name} not back after {signal.Signals(how).name}: " + "; ".join(
                f"{n.name}: {cluster_nodes(n.port)}" for n in cluster.nodes)
            reports = cluster.wait_ready(max(1.0, REJOIN_TIMEOUT - (time.monotonic() - started)))
            assert reports[index].node_id == node.node_id
            assert coordinators(node.port) == slot_map

        # -- the whole cluster stopped; node 0 comes back alone ---------------------
        cluster.stop()
        alone = cluster.nodes[0]
        cluster.start_node(0, join_running=False)
        cluster.wait_listening([0], REJOIN_TIMEOUT)
        check_restarted_view(alone, ids)
        others = ids - {alone.node_id}

        def others_suspected():
            lines = {line.node_id: line for line in cluster_nodes(alone.port)}
            return all("fail?" in lines[i].flags and lines[i].link == "disconnected" for i in others)

        assert poll(others_suspected, 10 * NODE_TIMEOUT_MS / 1000), cluster_nodes(alone.port)
        info = launcher.probe(HOST, alone.port).info
        mine = own_line(alone.port).slots
        assert mine == sum(1 for port in slot_map.values() if port == alone.port)
        assert int(info["cluster_slots_pfail"]) == SLOTS - mine
        assert not (info["cluster_state"] == "ok" and mine == SLOTS)
        # Its own keys are served; the others' are redirected as the live cluster would.
        keys = {}
        for i in range(10_000):
            port = slot_map[key_slot(f"k{i}")]
            keys.setdefault(port, f"k{i}")
            if len(keys) == 3:
                break
        assert launcher.command(HOST, alone.port, "SET", keys[alone.port], "v") == b"OK"
        for port, key in keys.items():
            if port != alone.port:
                with pytest.raises(ReplyError, match=f"MOVED {key_slot(key)} {HOST}:{port}"):
                    launcher.command(HOST, alone.port, "SET", key, "v")

        for index in (1, 2):
            cluster.start_node(index, join_running=False)
        cluster.wait_ready(UP_TIMEOUT)
        assert poll(lambda: all(seen_connected_by_all(cluster, i) for i in ids), REJOIN_TIMEOUT)
        for node in cluster.nodes:
            assert coordinators(node.port) == slot_map

        # -- a damaged membership file stops the start --------------------------------
        damaged = cluster.nodes[2]
        cluster.signal_node(2, signal.SIGTERM)
        path = f"{damaged.dir}/nodes.conf"
        with open(path, "r+b") as f:
            f.truncate(100)
        cluster.start_node(2, join_running=False)
        assert poll(lambda: cluster.exit_status(2) is not None, REJOIN_TIMEOUT)
        assert cluster.exit_status(2) == 1
        assert f"respkv: cluster membership file {path}: no checksum line" in cluster.log_tail(2)
    finally:
        cluster.stop()
