"""Convergent types end to end: a partition, concurrent writes on both sides, a heal.

A real 3-node cluster (RF=3).  Node A is cut off from the others with
``tools/faults.py``; on both sides, with W=1, the same set, hash, sorted set and
counter keys are changed (adds, re-adds, removals, increments).  After the heal
every node must answer plain ``SMEMBERS``/``HGETALL``/``ZRANGE``/``GET`` with:
every acknowledged add that no removal observed (a removal on one side observed
the adds made before the partition and earlier on its own side only), and the
counter equal to its start plus every acknowledged increment.  Every node answers
the same.
"""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from tools import faults

from .test_cluster_e2e import HOST, coordinators, key_slot, poll, start_cluster
from .test_replication_e2e import CONVERGE, FAULTS_ALLOWED, flags_of, local

pytestmark = pytest.mark.cluster

BEFORE = {b"x1", b"x2", b"x3", b"x4", b"x5"}
#: Per side, in order: the set operations (SADD/SREM of one member).
SET_OPS = {
    "a": [("add", b"a1"), ("add", b"a2"), ("rem", b"x1"), ("rem", b"x3"), ("rem", b"x4"), ("add", b"both"),
          ("rem", b"a2"), ("add", b"x5")],
    "b": [("add", b"b1"), ("add", b"x1"), ("rem", b"x2"), ("rem", b"x3"), ("add", b"x4"), ("add", b"both"),
          ("rem", b"both")],
}
HASH_BEFORE = {b"f1": b"v1", b"f2": b"v2", b"f3": b"v3"}
HASH_OPS = {
    "a": [("add", b"fa", b"va"), ("rem", b"f1"), ("add", b"f3", b"from-a")],
    "b": [("add", b"fb", b"vb"), ("rem", b"f2"), ("add", b"f1", b"again-b")],
}
ZSET_BEFORE = {b"z1": 1.0, b"z2": 2.0}
ZSET_OPS = {
    "a": [("add", b"za", 5.0), ("rem", b"z1")],
    "b": [("add", b"zb", 7.0), ("rem", b"z2"), ("add", b"z1", 9.0)],
}
INCREMENTS = {"a": [3, 5, -2], "b": [4, -1, 10, 1]}


def expected_elements(before, ops_by_side) -> set[bytes]:
    """Add-wins observed-remove: present if some side's last operation on it was
    an add (made in the partition, so the other side's removals never saw it),
    or if it was there before and no side's last operation on it was a removal."""
    last = {side: {} for side in ops_by_side}
    for side, ops in ops_by_side.items():
        for op in ops:
            last[side][op[1]] = op[0]
    elements = set(before) | {op[1] for ops in ops_by_side.values() for op in ops}
    present = set()
    for element in elements:
        ends = [last[side].get(element) for side in last]
        if "add" in ends or (element in before and "rem" not in ends):
            present.add(element)
    return present


def test_expected_elements_follow_add_wins():
    assert expected_elements(BEFORE, SET_OPS) == {b"x1", b"x4", b"x5", b"a1", b"b1", b"both"}


def apply_side(client_for, side: str, keys: dict[str, str]) -> None:
    """Run one side's writes, each through ``client_for(key)``; each must be
    acknowledged (W=1)."""
    client = client_for(keys["set"])
    for op, member in SET_OPS[side]:
        if op == "add":
            client.sadd(keys["set"], member)
        else:
            assert client.srem(keys["set"], member) == 1
    client = client_for(keys["hash"])
    for op, field, *value in HASH_OPS[side]:
        if op == "add":
            client.hset(keys["hash"], field, value[0])
        else:
            assert client.hdel(keys["hash"], field) == 1
    client = client_for(keys["zset"])
    for op, member, *score in ZSET_OPS[side]:
        if op == "add":
            client.zadd(keys["zset"], {member: score[0]})
        else:
            assert client.zrem(keys["zset"], member) == 1
    client = client_for(keys["counter"])
    for amount in INCREMENTS[side]:
        client.incrby(keys["counter"], amount)


def test_partitioned_writes_to_sets_hashes_sorted_sets_and_counters_merge(tmp_path):
    cluster = start_cluster(tmp_path / "c", server_args=FAULTS_ALLOWED)
    try:
        ports = [node.port for node in cluster.nodes]
        addresses = [f"{HOST}:{port}" for port in ports]
        a_port, rest = ports[0], ports[1:]
        owner = coordinators(a_port)
        names = iter(f"k{i}" for i in range(100000) if owner[key_slot(f"k{i}")] == a_port)
        keys = {kind: next(names) for kind in ("set", "hash", "zset", "counter")}

        rc = RedisCluster(host=HOST, port=a_port, socket_timeout=10)
        rc.sadd(keys["set"], *BEFORE)
        rc.hset(keys["hash"], mapping=HASH_BEFORE)
        rc.zadd(keys["zset"], ZSET_BEFORE)
        rc.set(keys["counter"], 100)
        rc.close()
        # Every replica has the starting state (RF=3 on 3 nodes).
        assert poll(lambda: all(local(p).smembers(keys["set"]) == BEFORE and local(p).get(keys["counter"]) == b"100"
                                for p in ports), CONVERGE)

        a_id = faults.node_id(addresses[0])
        faults.isolate(addresses[0], addresses)
        assert poll(lambda: all("fail" in flags_of(p, a_id) for p in rest), CONVERGE)

        clients: dict[int, redis.Redis] = {}

        def w1(port: int) -> redis.Redis:
            if port not in clients:
                clients[port] = redis.Redis(host=HOST, port=port, socket_timeout=10)
                clients[port].execute_command("CONSISTENCY", "W", "1")
            return clients[port]

        apply_side(lambda key: w1(a_port), "a", keys)
        b_owner = coordinators(rest[0])  # the majority side's coordinators of A's slots
        assert {b_owner[key_slot(key)] for key in keys.values()} <= set(rest)
        apply_side(lambda key: w1(b_owner[key_slot(key)]), "b", keys)

        faults.heal(addresses)
        ids = [faults.node_id(address) for address in addresses]
        assert poll(lambda: all(not (flags_of(p, i) & {"fail", "fail?"}) for p in ports for i in ids), CONVERGE)

        want_set = expected_elements(BEFORE, SET_OPS)
        want_fields = expected_elements(HASH_BEFORE, {s: [op[:2] for op in ops] for s, ops in HASH_OPS.items()})
        want_zset = expected_elements(ZSET_BEFORE, {s: [op[:2] for op in ops] for s, ops in ZSET_OPS.items()})
        want_counter = 100 + sum(sum(amounts) for amounts in INCREMENTS.values())

        rc = RedisCluster(host=HOST, port=ports[1], socket_timeout=10)

        def through_cluster():
            return (rc.smembers(keys["set"]) == want_set
                    and set(rc.hgetall(keys["hash"])) == want_fields
                    and {m for m, _ in rc.zrange(keys["zset"], 0, -1, withscores=True)} == want_zset
                    and rc.get(keys["counter"]) == str(want_counter).encode())

        assert poll(through_cluster, CONVERGE, interval=0.2)

        def answers(port):
            node = local(port)
            return (frozenset(node.smembers(keys["set"])), tuple(sorted(node.hgetall(keys["hash"]).items())),
                    tuple(node.zrange(keys["zset"], 0, -1, withscores=True)), node.get(keys["counter"]))

        def everywhere_the_same():
            seen = {answers(port) for port in ports}
            return len(seen) == 1 and next(iter(seen))[0] == want_set

        assert poll(everywhere_the_same, CONVERGE, interval=0.2)
        fields = dict(answers(ports[0])[1])
        assert fields[b"fa"] == b"va" and fields[b"fb"] == b"vb" and fields[b"f1"] == b"again-b"
        assert fields[b"f3"] == b"from-a"
        scores = dict(answers(ports[0])[2])
        assert scores[b"za"] == 5.0 and scores[b"zb"] == 7.0 and scores[b"z1"] == 9.0

        # A write after the heal keeps every merged element (it supersedes all siblings).
        rc.sadd(keys["set"], "after")
        assert poll(lambda: all(local(p).smembers(keys["set"]) == want_set | {b"after"} for p in ports), CONVERGE)
        assert all(len(local(p).execute_command("SIBLINGS", keys["set"])[1]) == 1 for p in ports)
    finally:
        cluster.stop()
