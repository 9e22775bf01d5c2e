"""Eviction in a replicated cluster (real processes, RF=3 on 3 nodes): each node
evicts only keys it coordinates, and replicates the deletion, so every key ends
up on all of its replicas or on none, repair does not bring evicted keys back,
and the tombstones go once every replica has them."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster

from .test_cluster_e2e import HOST, poll, start_cluster
from .test_replication_e2e import CONVERGE, local

pytestmark = pytest.mark.cluster

KEYS = 3000
VALUE = b"v" * 200


def info(port: int, section: str) -> dict:
    return local(port).info(section)


def test_evictions_are_coordinated_and_replicated(tmp_path):
    cluster = start_cluster(tmp_path / "c", server_args=["--maxmemory-policy", "allkeys-lru",
                                                         "--tombstone-grace", "200"])
    try:
        ports = [node.port for node in cluster.nodes]
        assert poll(lambda: all(info(p, "cluster")["cluster_enabled"] and b"cluster_known_nodes:3" in
                                local(p).execute_command("CLUSTER", "INFO") for p in ports), CONVERGE)
        limits = {}
        for port in ports:  # room for about a third of the keys on each node
            used = info(port, "memory")["used_memory"]
            limits[port] = used + KEYS * (len(VALUE) + 200) // 3
            local(port).config_set("maxmemory", limits[port])
        client = RedisCluster(host=HOST, port=ports[0], socket_timeout=10)
        for start in range(0, KEYS, 100):
            pipe = client.pipeline()
            for i in range(start, start + 100):
                pipe.set(f"key:{i}", VALUE)
            pipe.execute()
        client.close()

        evicted = {port: info(port, "stats")["evicted_keys"] for port in ports}
        assert all(count > 0 for count in evicted.values()), evicted
        names = [f"key:{i}".encode() for i in range(KEYS)]

        def held(port: int) -> set[bytes]:
            reader = local(port)  # kept: a dropped client closes its pool, READONLY connection included
            pipe = reader.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            return {name for name, value in zip(names, pipe.execute()) if value is not None}

        def agreed():
            copies = [held(port) for port in ports]
            return copies if copies[0] == copies[1] == copies[2] else None

        def settled():
            """The replicas' agreed keys once every node is within its maxmemory (a
            node waiting for the other coordinators' evictions gets there at a
            cron tick after the last write)."""
            if any(info(port, "memory")["used_memory"] > limits[port] + 20_000 for port in ports):
                return None
            return agreed()

        copies = poll(settled, CONVERGE)
        assert copies, ("replicas disagree on which keys were evicted, or a node stays over its maxmemory: "
                        f"{[(info(port, 'memory')['used_memory'], limits[port]) for port in ports]}")
        kept = copies[0]
        assert 0 < len(kept) < KEYS

        before = {port: info(port, "replication")["ae_exchanges"] for port in ports}
        for port in ports:  # anti-entropy must not bring evicted keys back
            local(port).execute_command("CLUSTER", "REPAIR")
        assert poll(lambda: all(info(p, "replication")["ae_exchanges"] >= before[p] + 2 for p in ports), CONVERGE)
        for port in ports:  # none back (the cron may have evicted a few more meanwhile)
            back = held(port) - kept
            assert not back, f"evicted keys came back on {port}: {sorted(back)[:5]}"
        # The tombstones are purged once every replica has them (grace 200 ms).
        assert poll(lambda: all(info(p, "replication")["versioned_keys"] == local(p).dbsize() for p in ports),
                    CONVERGE)
    finally:
        cluster.stop()
