"""Removing a dead node for good: ``CLUSTER FORGET`` on a real 4-node RF=3 cluster.

A node is killed with SIGKILL and stays down; writes go on (sloppy quorum, hints
for the dead node).  ``respkv cluster remove`` (``CLUSTER FORGET`` on one
survivor) removes it from every member (the tombstone is gossiped), the ring is rebuilt on the three left, the
hints held for the dead node are redirected to the nodes that now replicate its
keys, and anti-entropy fills the new replicas: every acknowledged key stays
readable and ends on all three survivors, ``redis-cli --cluster check`` is clean
and counts every key once.
"""

from __future__ import annotations

import sys
import time

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from respkv.launcher import LauncherError

from .test_antientropy_e2e import node_id
from .test_cluster_e2e import _ANSI, HOST, cluster_nodes, poll, run_tool, start_cluster
from .test_replication_e2e import CONVERGE, flags_of, local, write_acknowledged

pytestmark = pytest.mark.cluster

NODES = 4


def test_a_forgotten_dead_node_leaves_every_member_and_its_keys_stay(tmp_path):
    cluster = start_cluster(tmp_path / "c", nodes=NODES, rf=3)
    try:
        ports = [node.port for node in cluster.nodes]
        rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=5)
        acknowledged: dict[str, str] = {}
        for i in range(400):
            assert rc.set(f"before:{i}", f"v{i}")
            acknowledged[f"before:{i}"] = f"v{i}"

        victim = cluster.nodes[3]
        victim_id = node_id(victim.port)
        survivors = ports[:3]
        plain = redis.Redis(host=HOST, port=survivors[0], socket_timeout=10)
        with pytest.raises(redis.ResponseError, match="^Can't forget a live node"):
            plain.execute_command("CLUSTER", "FORGET", victim_id)
        with pytest.raises(redis.ResponseError, match=r"^I tried hard but I can't forget myself\.\.\.$"):
            plain.execute_command("CLUSTER", "FORGET", node_id(survivors[0]))
        with pytest.raises(redis.ResponseError, match="^Unknown node " + "0" * 40 + "$"):
            plain.execute_command("CLUSTER", "FORGET", "0" * 40)

        cluster.kill_node(victim.index)
        assert poll(lambda: all("fail" in flags_of(p, victim_id) for p in survivors), CONVERGE)
        deadline = time.monotonic() + CONVERGE
        for i in range(400):  # with the victim down: fallbacks and hints for it
            if write_acknowledged(rc, f"after:{i}", f"w{i}", deadline):
                acknowledged[f"after:{i}"] = f"w{i}"
        assert len(acknowledged) == 800
        assert poll(lambda: any(hints_for(p, victim_id) for p in survivors), CONVERGE)

        out = run_tool(sys.executable, "-m", "respkv", "cluster", "remove", "node-3", "--dir", cluster.directory,
                       "--timeout", str(CONVERGE))  # CLUSTER FORGET on node-0, then waits for every member
        assert out.returncode == 0 and f"removed node-3 ({victim_id})" in out.stdout, out
        # Gossiped: every survivor dropped it; telling another one again is harmless.
        assert all(victim_id not in {line.node_id for line in cluster_nodes(p)} for p in survivors)
        assert redis.Redis(host=HOST, port=survivors[1]).execute_command("CLUSTER", "FORGET", victim_id) == b"OK"
        with pytest.raises(LauncherError, match="removed already"):
            launcher.remove(cluster.directory, victim_id)
        assert poll(lambda: all(b"cluster_state:ok" in launcher.command(HOST, p, "CLUSTER", "INFO")
                                for p in survivors), CONVERGE)
        # Its hints went to the nodes that now replicate those keys, and were delivered.
        assert poll(lambda: not any(hints_for(p, victim_id) for p in survivors), CONVERGE)

        rc = RedisCluster(host=HOST, port=survivors[0], socket_timeout=5)
        assert all(rc.get(key) == value.encode() for key, value in acknowledged.items())
        # RF=3 on three nodes: anti-entropy puts every key on every survivor, without reads.

        def everywhere() -> bool:
            for p in survivors:
                redis.Redis(host=HOST, port=p).execute_command("CLUSTER", "REPAIR")
            return all(set(local(p).keys("*")) >= {k.encode() for k in acknowledged} for p in survivors)

        assert poll(everywhere, CONVERGE * 2, interval=1.0)
        out = run_tool("redis-cli", "--cluster", "check", f"{HOST}:{survivors[0]}")
        text = _ANSI.sub("", out.stdout + out.stderr)
        assert out.returncode == 0, text
        assert "[OK] All 16384 slots covered." in text and "[ERR]" not in text, text
        assert f"[OK] {len(acknowledged)} keys in 3 masters." in text, text
        st = launcher.status(cluster.directory)
        assert st.ok and len(st.members) == 3 and sum(m.keys for m in st.members) == len(acknowledged)
        assert "removed: node-3" in launcher.format_status(st)
        with pytest.raises(LauncherError, match="was removed"):
            launcher.LocalCluster.load(cluster.directory).start_node(3)
    finally:
        cluster.stop()


def hints_for(port: int, node: str) -> int:
    return int(redis.Redis(host=HOST, port=port).info("replication").get(f"hints_pending_{node}", 0))
