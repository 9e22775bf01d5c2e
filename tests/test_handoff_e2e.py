"""Hinted hand-off end to end: real node processes, ``kill -9`` and restarts.

* Durable hints: a coordinator writes while a replica is down (it keeps hints
  for it), is killed with SIGKILL and restarted while the replica is still down:
  its hints come back from its commit log, and once the replica returns it gets
  every key from them (checked on the replica's own copy).

Every wait polls with a deadline; clusters run on free ports with a 1000 ms node
timeout, as in ``test_cluster_e2e``.
"""

from __future__ import annotations

import pytest
import redis

from respkv import launcher

from .test_cluster_e2e import HOST, UP_TIMEOUT, coordinators, key_slot, poll, start_cluster
from .test_replication_e2e import CONVERGE, flags_of

pytestmark = pytest.mark.cluster


def own_copy(port: int) -> redis.Redis:
    """A connection that reads this node's own copy: READONLY, and R = 1 so that a
    read it coordinates asks no other replica (no read repair)."""
    client = redis.Redis(host=HOST, port=port, socket_timeout=10)
    client.execute_command("READONLY")
    client.execute_command("CONSISTENCY", "R", "1")
    return client


def node_id(port: int) -> str:
    return launcher.command(HOST, port, "CLUSTER", "MYID", timeout=10).decode()


def replication_info(port: int) -> dict:
    return redis.Redis(host=HOST, port=port, socket_timeout=10).info("replication")


def info_or_empty(port: int) -> dict:
    try:
        return replication_info(port)
    except (redis.ConnectionError, redis.TimeoutError):
        return {}


def failed_everywhere(ports: list[int], node: str) -> bool:
    return all("fail" in flags_of(port, node) for port in ports)


def test_a_holder_killed_with_sigkill_still_delivers_its_hints(tmp_path):
    cluster = start_cluster(tmp_path / "c")
    try:
        ports = [node.port for node in cluster.nodes]
        holder, other, down = ports
        down_id = node_id(down)
        cluster.kill_node(2)
        assert poll(lambda: failed_everywhere([holder, other], down_id), CONVERGE)

        owner = coordinators(holder)
        keys = [key for key in (f"hinted:{i}" for i in range(5000)) if owner[key_slot(key)] == holder][:60]
        writer = redis.Redis(host=HOST, port=holder, socket_timeout=10)
        for key in keys:
            assert writer.set(key, "v-" + key)  # W = 2: the holder and the other node
        pending = f"hints_pending_{down_id}"
        assert poll(lambda: replication_info(holder).get(pending) == len(keys), CONVERGE)

        cluster.kill_node(0)  # kill -9: the hints survive in its commit log only
        cluster.start_node(0)
        assert poll(lambda: info_or_empty(holder).get(pending) == len(keys), UP_TIMEOUT)

        cluster.start_node(2)
        cluster.wait_ready(UP_TIMEOUT)

        def delivered():
            copy = own_copy(down)
            return all(copy.get(key) == b"v-" + key.encode() for key in keys)

        assert poll(delivered, CONVERGE, interval=0.2)
        assert poll(lambda: replication_info(holder).get(pending) is None, CONVERGE)
        info = replication_info(holder)
        assert info["hints_pending"] == 0 and info["hints_delivered"] >= len(keys)
    finally:
        cluster.stop()
