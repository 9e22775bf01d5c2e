"""Hinted hand-off end to end: real node processes, ``kill -9`` and restarts.

* Durable hints: a coordinator writes while a replica is down (it keeps hints
  for it), is killed with SIGKILL and restarted while the replica is still down:
  its hints come back from its commit log, and once the replica returns it gets
  every key from them (checked on the replica's own copy).
* Sloppy quorum, 5 nodes, RF = 3, W = 2: two of the three preferred nodes of some
  slots are killed with ``kill -9``; with a strict quorum (the directive, or
  ``CONSISTENCY SLOPPY no``) writes to those slots get ``-NOQUORUM``, with a sloppy
  one they are acknowledged and held by the ring's fallbacks with hints; after the
  two restart, every acknowledged write is on each preferred replica's own copy,
  deleted keys are tombstones there, and no fallback keeps a copy.

Every wait polls with a deadline; clusters run on free ports with a 1000 ms node
timeout, as in ``test_cluster_e2e``.
"""

from __future__ import annotations

import pytest
import redis

from respkv import launcher
from respkv.cluster.ring import Ring

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


# --------------------------------------------------------------------------- #
# Sloppy quorum: 5 nodes, RF = 3, W = 2, two preferred nodes of some slots down
# --------------------------------------------------------------------------- #


def test_sloppy_quorum_writes_through_fallbacks_and_hands_off(tmp_path):
    cluster = start_cluster(tmp_path / "c", nodes=5)
    try:
        ports = [node.port for node in cluster.nodes]
        ids = [node_id(port) for port in ports]
        port_of = dict(zip(ids, ports))
        ring = Ring({node: 1 for node in ids})
        down = (ids[1], ids[2])  # killed below

        def preferred(key: str) -> tuple[str, ...]:
            return ring.preference_list(key_slot(key), 3)

        chosen = (f"sloppy:{i}" for i in range(100_000))
        keys = [key for key in chosen if set(down) <= set(preferred(key))][:40]
        doomed = keys[30:]  # written now, deleted while two of their replicas are down
        keys = keys[:30]
        assert len(doomed) == 10

        def coordinator_of(key: str) -> redis.Redis:
            live = [node for node in preferred(key) if node not in down]
            return redis.Redis(host=HOST, port=port_of[live[0]], socket_timeout=10)

        for key in doomed:  # through the primary, all nodes up
            assert redis.Redis(host=HOST, port=port_of[preferred(key)[0]], socket_timeout=10).set(key, "old")
        assert poll(lambda: all(own_copy(port_of[node]).get(key) == b"old"
                                for key in doomed for node in preferred(key)), CONVERGE)

        cluster.kill_node(1)
        cluster.kill_node(2)
        live_ports = [ports[0], ports[3], ports[4]]
        assert poll(lambda: all(failed_everywhere(live_ports, node) for node in down), CONVERGE)

        # Strict quorum, globally or per connection: one preferred replica is up, W = 2.
        strict = coordinator_of(keys[0])
        strict.config_set("sloppy-quorum", "no")
        with pytest.raises(redis.ResponseError, match="NOQUORUM"):
            strict.set("strict:global{%s}" % keys[0], "x")
        strict.config_set("sloppy-quorum", "yes")
        strict.execute_command("CONSISTENCY", "SLOPPY", "no")
        with pytest.raises(redis.ResponseError, match="NOQUORUM"):
            strict.set("strict:connection{%s}" % keys[0], "x")

        # Sloppy (the default): the fallbacks' acknowledgements make W.
        for key in keys:
            assert coordinator_of(key).set(key, "v-" + key)
        for key in doomed:
            assert coordinator_of(key).delete(key) == 1
        # Each fallback (the ring's next live node beyond the preference list) holds
        # the key, with a hint for the node it stood in for.
        live = set(ids) - set(down)
        for key in keys:
            for node, fallback in ring.fallbacks(key_slot(key), 3, live).items():
                client = own_copy(port_of[fallback])  # READONLY: counts the copies it holds, not only its slots
                assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(key)) > 0
                assert replication_info(port_of[fallback]).get(f"hints_pending_{node}", 0) > 0

        cluster.start_node(1)
        cluster.start_node(2)
        cluster.wait_ready(UP_TIMEOUT)

        def on_preferred_replicas():
            for key in keys:
                if any(own_copy(port_of[node]).get(key) != b"v-" + key.encode() for node in preferred(key)):
                    return False
            return all(own_copy(port_of[node]).get(key) is None for key in doomed for node in preferred(key))

        assert poll(on_preferred_replicas, CONVERGE, interval=0.2)
        # Every hint delivered; fallbacks (outside the preference lists) dropped their copies.
        assert poll(lambda: all(replication_info(port)["hints_pending"] == 0 for port in ports), CONVERGE)
        outside = {port for port, node in zip(ports, ids)
                   if any(node not in preferred(key) for key in keys)}

        def copies_outside(port: int) -> int:
            node = dict(zip(ports, ids))[port]
            slots = {key_slot(key) for key in keys + doomed if node not in preferred(key)}
            client = own_copy(port)
            return sum(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in slots)

        assert poll(lambda: all(copies_outside(port) == 0 for port in outside), CONVERGE)
        # The deletions arrived as tombstones: the old value is nowhere.
        for key in doomed:
            for node in preferred(key):
                siblings = own_copy(port_of[node]).execute_command("SIBLINGS", key)
                assert [s[b"tombstone"] for s in siblings[1]] in ([1], [])
    finally:
        cluster.stop()
