"""Anti-entropy end to end: real 3-node clusters (RF=3, W=2, R=2) with exchanges
every second, checked through each node's own copy (``READONLY`` reads), never
through reads that would repair.

* A node whose data directory is wiped while it is down (its identity kept, as
  after a disk replacement) gets every key of its slots back, deletions included.
* A replica that missed deletions while cut off, with hints off, ends up with
  the tombstones: the deleted keys stay deleted on every node (the exchange
  never brings the old values back).
* ``CLUSTER REPAIR`` starts exchanges and checks its argument.
"""

from __future__ import annotations

import os
import time

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools import faults

from .test_cluster_e2e import HOST, UP_TIMEOUT, coordinators, key_slot, poll, start_cluster
from .test_replication_e2e import CONVERGE, FAULTS_ALLOWED, flags_of, local

pytestmark = pytest.mark.cluster

#: Exchanges every second, so that tests wait seconds, not the default ten.
FAST_EXCHANGES = ["--anti-entropy-interval", "1000"]
#: What identifies a node and its cluster in its directory; the rest is its data.
IDENTITY_FILES = {"node-id", "nodes.conf", "cluster-secret", "node.log"}


def wipe_data(directory: str) -> list[str]:
    """Delete every file of a node's directory but its identity (a new disk with
    the identity restored); returns what was deleted."""
    deleted = []
    for name in os.listdir(directory):
        if name not in IDENTITY_FILES:
            os.remove(os.path.join(directory, name))
            deleted.append(name)
    return deleted


def node_id(port: int) -> str:
    return redis.Redis(host=HOST, port=port, socket_timeout=10).execute_command("CLUSTER", "MYID").decode()


def wait_live_everywhere(cluster, victim_id: str, ports) -> None:
    assert poll(lambda: all(not {"fail", "fail?"} & flags_of(p, victim_id) for p in ports), CONVERGE)


def test_a_wiped_node_gets_every_key_back_without_reads(tmp_path):
    cluster = start_cluster(tmp_path / "c", server_args=FAST_EXCHANGES)
    try:
        ports = [node.port for node in cluster.nodes]
        rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=10)
        written = {f"ae:{i}": f"value-{i}" for i in range(3000)}
        pipe = rc.pipeline()
        for key, value in written.items():
            pipe.set(key, value)
        assert all(pipe.execute())
        deleted = [f"ae:{i}" for i in range(0, 3000, 30)]
        assert rc.delete(*deleted) == len(deleted)
        victim = cluster.nodes[2]
        # Every replica has every write (RF=3 on three nodes) before the disk goes.
        assert poll(lambda: local(victim.port).info("replication")["versioned_keys"] == len(written), CONVERGE)

        victim_id = node_id(victim.port)
        cluster.kill_node(victim.index)
        assert "incarnation" in wipe_data(victim.dir)
        cluster.start_node(victim.index)
        cluster.wait_ready(UP_TIMEOUT)
        started = time.monotonic()
        wait_live_everywhere(cluster, victim_id, ports[:2])
        replica = local(victim.port)
        assert replica.info("persistence")["rdb_last_load_keys_loaded"] == 0  # nothing came from its disk

        def holds_everything():
            return replica.info("replication")["versioned_keys"] == len(written)

        assert poll(holds_everything, CONVERGE, interval=0.2)
        elapsed = time.monotonic() - started
        pipe = replica.pipeline(transaction=False)
        for key in written:
            pipe.get(key)
        values = pipe.execute()
        gone = set(deleted)
        for (key, value), got in zip(written.items(), values):
            assert got == (None if key in gone else value.encode()), key
        infos = [local(p).info("replication") for p in ports]
        assert sum(info["ae_keys_pulled"] + info["ae_keys_pushed"] for info in infos) >= len(written)
        assert sum(info["ae_exchanges"] for info in infos) >= 1
        print(f"wiped node repaired {len(written)} keys in {elapsed:.1f} s")
    finally:
        cluster.stop()


def start_without_hints(tmp_path):
    """(cluster, client ports, ``host:port`` addresses) of a cluster with fast
    exchanges, BUSFAULT allowed and no hints: only exchanges repair a replica."""
    cluster = start_cluster(tmp_path / "c", server_args=[*FAST_EXCHANGES, *FAULTS_ALLOWED,
                                                         "--max-hints-per-node", "0"])
    ports = [node.port for node in cluster.nodes]
    return cluster, ports, [f"{HOST}:{p}" for p in ports]


def test_deleted_keys_stay_deleted_after_a_replica_missed_the_deletes_without_hints(tmp_path):
    """No hints (``max-hints-per-node 0``) and no reads of the stale replica's keys
    through a coordinator: only exchanges can bring it the tombstones."""
    cluster, ports, addresses = start_without_hints(tmp_path)
    try:
        rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=10)
        owner_port, stale_port = ports[0], ports[2]
        owned = coordinators(owner_port)
        keys = [key for key in (f"del:{i}" for i in range(2000)) if owned[key_slot(key)] == owner_port][:40]
        assert len(keys) == 40
        for key in keys:
            assert rc.set(key, "old")
        stale = local(stale_port)  # coordinates none of these keys: reads its own copy
        assert poll(lambda: all(stale.get(key) == b"old" for key in keys), CONVERGE)

        faults.isolate(addresses[2], addresses)  # the stale replica hears nothing
        try:
            owner = redis.Redis(host=HOST, port=owner_port, socket_timeout=10)
            for key in keys:
                assert owner.delete(key) == 1  # W=2: the owner and the other replica
            assert all(stale.get(key) == b"old" for key in keys)
            assert owner.info("replication")["hints_pending"] == 0
        finally:
            faults.heal(addresses)

        assert poll(lambda: all(stale.get(key) is None for key in keys), CONVERGE, interval=0.2)
        # The tombstones themselves reached it, and no node brings the value back.
        assert all(stale.execute_command("SIBLINGS", key)[1][0][b"tombstone"] == 1 for key in keys)
        assert all(rc.get(key) is None for key in keys)
        assert all(local(p).get(key) is None for p in ports for key in keys)
        assert sum(local(p).info("replication")["ae_keys_pushed"] + local(p).info("replication")["ae_keys_pulled"]
                   for p in ports) >= len(keys)
    finally:
        cluster.stop()


def test_a_big_hash_tagged_slot_is_repaired_segment_by_segment(tmp_path):
    """20,000 keys in one slot (its tree kept by segment, listed a few segments per
    request): a replica that missed overwrites spread over all of them gets every
    one back from exchanges alone (no hints, no reads through a coordinator)."""
    cluster, ports, addresses = start_without_hints(tmp_path)
    try:
        rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=30)
        keys = [f"{{big}}:{i}" for i in range(20_000)]
        owner_port = coordinators(ports[0])[key_slot(keys[0])]
        stale_port = next(p for p in ports if p != owner_port)
        owner = redis.Redis(host=HOST, port=owner_port, socket_timeout=30)
        for start in range(0, len(keys), 1000):
            pipe = owner.pipeline(transaction=False)
            for key in keys[start:start + 1000]:
                pipe.set(key, "old")
            assert all(pipe.execute())
        stale = local(stale_port)
        assert poll(lambda: stale.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(keys[0])) == len(keys),
                    CONVERGE)
        changed = keys[::50]  # 400 keys, in every segment
        faults.isolate(f"{HOST}:{stale_port}", addresses)
        try:
            pipe = owner.pipeline(transaction=False)
            for key in changed:
                pipe.set(key, "new")  # W=2: the owner and the third node
            assert all(pipe.execute())
        finally:
            faults.heal(addresses)
        assert all(stale.get(key) == b"old" for key in changed[:20])

        def repaired() -> bool:
            pipe = stale.pipeline(transaction=False)
            for key in changed:
                pipe.get(key)
            return all(value == b"new" for value in pipe.execute())

        assert poll(repaired, CONVERGE * 2, interval=0.5)
        assert rc.get(keys[1]) == b"old" and rc.get(changed[3]) == b"new"
    finally:
        cluster.stop()


def test_cluster_repair_starts_exchanges_and_checks_its_argument(tmp_path):
    cluster = start_cluster(tmp_path / "c")
    try:
        client = redis.Redis(host=HOST, port=cluster.nodes[0].port, socket_timeout=10)
        before = client.info("replication")["ae_exchanges"]
        assert client.execute_command("CLUSTER", "REPAIR") == 2
        assert client.execute_command("CLUSTER", "REPAIR", "0") == 2
        assert poll(lambda: client.info("replication")["ae_exchanges"] >= before + 3, CONVERGE)
        assert client.info("replication")["ae_oldest_slot_exchange_seconds"] >= 0
        raw = launcher.command(HOST, cluster.nodes[0].port, "CLUSTER", "REPAIRINFO", "0", timeout=10)
        status = dict(zip(raw[::2], raw[1::2]))
        assert status[b"slot"] == 0 and 0 <= status[b"last-exchange-ms-ago"] < 60_000
        assert len(status[b"replicas"]) == 3 and status[b"last-exchange-peer"] in status[b"replicas"]
        with pytest.raises(redis.ResponseError, match="Invalid slot"):
            client.execute_command("CLUSTER", "REPAIRINFO", "-1")
        with pytest.raises(redis.ResponseError, match="Invalid slot"):
            client.execute_command("CLUSTER", "REPAIR", "16384")
        with pytest.raises(redis.ResponseError, match="not an integer"):
            client.execute_command("CLUSTER", "REPAIR", "x")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            client.execute_command("CLUSTER", "REPAIR", "1", "2")
    finally:
        cluster.stop()
