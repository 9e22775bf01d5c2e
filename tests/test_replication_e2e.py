"""Replication end to end: real 3-node clusters with RF=3, W=2, R=2 (the defaults).

* A node killed with SIGKILL: every write acknowledged before and after the kill
  stays readable through redis-py's ``RedisCluster``; restarted (empty: there is no
  persistence yet), the node converges by read repair for the keys read.
* A partition made with ``tools/faults.py``: node A is cut off, key k is written
  on both sides with W=1, the partition heals, ``SIBLINGS k`` shows both values,
  ``GET k`` the deterministic winner everywhere, and a ``RESOLVE`` with the
  context leaves exactly one version on every node.

Every wait polls with a deadline; clusters run on free ports with a 1000 ms node
timeout, as in ``test_cluster_e2e``.  Clusters that ``tools/faults.py`` partitions
run with ``--enable-debug-command yes`` (BUSFAULT is refused otherwise).
"""

from __future__ import annotations

import time

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools import faults

from .test_cluster_e2e import (
    _ANSI,
    HOST,
    UP_TIMEOUT,
    cluster_nodes,
    coordinators,
    key_slot,
    poll,
    run_tool,
    start_cluster,
)

pytestmark = pytest.mark.cluster

#: Seconds for failure detection and healing to show, generous for two shared cores.
CONVERGE = 30.0
#: What ``respkv cluster up --enable-debug-command`` passes to the nodes: allows BUSFAULT.
FAULTS_ALLOWED = ["--enable-debug-command", "yes"]


def local(port: int) -> redis.Redis:
    """A READONLY connection: reads answer from this node's own copy."""
    client = redis.Redis(host=HOST, port=port, socket_timeout=10)
    client.execute_command("READONLY")
    return client


def flags_of(port: int, node_id: str) -> set[str]:
    for line in cluster_nodes(port):
        if line.node_id == node_id:
            return set(line.flags)
    return set()


def write_acknowledged(rc: RedisCluster, key: str, value: str, deadline: float) -> bool:
    """SET until one attempt is acknowledged (True) or the deadline passes."""
    while time.monotonic() < deadline:
        try:
            if rc.set(key, value):
                return True
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, redis.exceptions.ClusterError):
            time.sleep(0.1)
    return False


def test_kill_one_node_keeps_every_acknowledged_write_readable(tmp_path):
    cluster = start_cluster(tmp_path / "c")
    try:
        rc = RedisCluster(host=HOST, port=cluster.nodes[0].port, socket_timeout=5)
        acknowledged: dict[str, str] = {}
        for i in range(300):
            key, value = f"before:{i}", f"v{i}"
            assert rc.set(key, value)
            acknowledged[key] = value

        victim = cluster.nodes[1]
        victim_id = launcher.command(HOST, victim.port, "CLUSTER", "MYID").decode()
        cluster.kill_node(victim.index)
        deadline = time.monotonic() + CONVERGE
        for i in range(300):
            key, value = f"after:{i}", f"w{i}"
            if write_acknowledged(rc, key, value, deadline):
                acknowledged[key] = value
        assert len(acknowledged) == 600, "writes kept failing after the node died"

        def all_readable():
            try:
                return all(rc.get(key) == value.encode() for key, value in acknowledged.items())
            except (redis.ConnectionError, redis.exceptions.ClusterError):
                return False

        assert poll(all_readable, CONVERGE, interval=0.2)

        # Restarted on its directory (its commit log) with the command line it had.
        cluster.start_node(victim.index)
        cluster.wait_ready(UP_TIMEOUT)
        others = [node.port for node in cluster.nodes if node is not victim]
        assert poll(lambda: all("fail" not in flags_of(p, victim_id) and "fail?" not in flags_of(p, victim_id)
                                for p in others), CONVERGE)
        rc = RedisCluster(host=HOST, port=cluster.nodes[0].port, socket_timeout=5)
        assert poll(all_readable, CONVERGE, interval=0.2)

        # Every key read is now on the restarted node too (read repair, hand-off).
        restarted = local(victim.port)

        def victim_converged():
            return all(restarted.get(key) == value.encode() for key, value in acknowledged.items())

        assert poll(victim_converged, CONVERGE, interval=0.2)
        info = restarted.info("replication")
        assert info["versioned_keys"] >= len(acknowledged)
        # The keys written before the kill came back from its own commit log (every
        # node holds every key with RF=3 on three nodes); the later ones by hand-off
        # and read repair.
        assert restarted.info("persistence")["rdb_last_load_keys_loaded"] >= 300
    finally:
        cluster.stop()


def test_moves_shipped_as_commands_survive_kill_9_of_a_replica_and_of_the_coordinator(tmp_path):
    """SMOVE and RPOPLPUSH between big collections, sent to replicas and logged
    as the commands they amount to: a replica killed -9 mid-run and the
    coordinator killed -9 after it reload their logs (no entry skipped), every
    acknowledged move is in its destination, nothing is lost or doubled, and the
    three copies end the same."""
    cluster = start_cluster(tmp_path / "c")
    try:
        ports = [node.port for node in cluster.nodes]
        owner = coordinators(ports[0])[key_slot("{m}")]
        client = redis.Redis(host=HOST, port=owner, socket_timeout=5)
        items = [f"i{n}" for n in range(2000)]
        client.rpush("{m}queue", *items)
        client.sadd("{m}set", *items)
        moved_members, moved_items = [], []
        attempts = iter(items)

        def move(count: int) -> None:
            for _ in range(count):
                member = next(attempts)
                try:
                    if client.smove("{m}set", "{m}moved", member) == 1:
                        moved_members.append(member)
                    item = client.rpoplpush("{m}queue", "{m}done")
                    if item is not None:
                        moved_items.append(item.decode())
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    time.sleep(0.05)  # not acknowledged: not counted

        move(100)
        replica = next(node for node in cluster.nodes if node.port != owner)
        cluster.kill_node(replica.index)
        move(100)
        cluster.start_node(replica.index)
        cluster.wait_ready(UP_TIMEOUT)
        move(100)
        coordinator = next(node for node in cluster.nodes if node.port == owner)
        cluster.kill_node(coordinator.index)
        cluster.start_node(coordinator.index)
        cluster.wait_ready(UP_TIMEOUT)
        for node in (replica, coordinator):
            assert local(node.port).info("persistence")["journal_load_skipped_entries"] == 0

        def settled():
            views = []
            for port in ports:
                view = local(port)
                views.append((sorted(view.smembers("{m}set")), sorted(view.smembers("{m}moved")),
                              view.lrange("{m}queue", 0, -1), view.lrange("{m}done", 0, -1)))
            return views if all(v == views[0] for v in views) else None

        views = poll(settled, CONVERGE, interval=0.2)
        assert views, "the copies did not converge"
        members, moved, queue, done = views[0]
        assert set(moved_members) <= {m.decode() for m in moved}
        assert sorted(members + moved) == sorted(m.encode() for m in items)  # nothing lost or doubled
        assert set(moved_items) <= {d.decode() for d in done}
        assert sorted(queue + done) == sorted(i.encode() for i in items)
        assert len(moved_members) > 250 and len(moved_items) > 250
    finally:
        cluster.stop()


def sibling_values(reply) -> list[bytes | None]:
    return sorted((s[b"value"] for s in reply[1]), key=lambda v: v or b"")


def test_partition_keeps_both_writes_as_siblings_until_resolved(tmp_path):
    cluster = start_cluster(tmp_path / "c", server_args=FAULTS_ALLOWED)
    try:
        ports = [node.port for node in cluster.nodes]
        addresses = [f"{HOST}:{port}" for port in ports]
        owner = coordinators(ports[0])
        # k is coordinated by node A; the other side will coordinate it once A is failed.
        a_port = ports[0]
        key = next(f"k{i}" for i in range(10000) if owner[key_slot(f"k{i}")] == a_port)
        a_id = faults.node_id(addresses[0])
        rest = ports[1:]

        faults.isolate(addresses[0], addresses)
        assert faults.status(addresses)[addresses[0]], "A has no cut links"
        # The majority side fails A; A alone can only suspect the others.
        assert poll(lambda: all("fail" in flags_of(p, a_id) for p in rest), CONVERGE)

        side_a = redis.Redis(host=HOST, port=a_port, socket_timeout=10)
        side_a.execute_command("CONSISTENCY", "W", "1")
        assert side_a.set(key, "from-a")
        b_port = coordinators(rest[0])[key_slot(key)]
        assert b_port in rest
        side_b = redis.Redis(host=HOST, port=b_port, socket_timeout=10)
        side_b.execute_command("CONSISTENCY", "W", "1")
        assert side_b.set(key, "from-b")

        faults.heal(addresses)
        ids = [faults.node_id(address) for address in addresses]

        def healed():
            return all(not (flags_of(p, i) & {"fail", "fail?"}) for p in ports for i in ids)

        assert poll(healed, CONVERGE)
        assert coordinators(ports[1])[key_slot(key)] == a_port

        rc = RedisCluster(host=HOST, port=ports[1], socket_timeout=5)
        both = [b"from-a", b"from-b"]
        assert poll(lambda: sibling_values(rc.execute_command("SIBLINGS", key)) == both, CONVERGE)
        reply = rc.execute_command("SIBLINGS", key)
        context = reply[0]
        winners = [s for s in reply[1] if s[b"winner"] == 1]
        assert len(winners) == 1
        newest = max(reply[1], key=lambda s: (s[b"timestamp"], s[b"clock"][-1][0]))
        assert winners[0] is newest
        assert rc.get(key) == winners[0][b"value"]

        # Every node converges on the same two siblings and the same winner.
        def everywhere(expected_values, expected_get):
            def check():
                for port in ports:
                    node = local(port)
                    if sibling_values(node.execute_command("SIBLINGS", key)) != expected_values:
                        return False
                    if node.get(key) != expected_get:
                        return False
                return True
            return check

        assert poll(everywhere(both, winners[0][b"value"]), CONVERGE)

        assert rc.execute_command("RESOLVE", key, context, "merged") in (b"OK", "OK", True)
        assert rc.get(key) == b"merged"
        assert poll(everywhere([b"merged"], b"merged"), CONVERGE)
        one = local(ports[2]).execute_command("SIBLINGS", key)
        assert len(one[1]) == 1 and one[1][0][b"tombstone"] == 0
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# One cluster shared by the tests that leave it healthy
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("shared"), server_args=FAULTS_ALLOWED)
    yield cluster
    cluster.stop()


def owner_and_replicas(cluster, key: str) -> tuple[int, list[int]]:
    ports = [node.port for node in cluster.nodes]
    owner = coordinators(ports[0])[key_slot(key)]
    return owner, [p for p in ports if p != owner]


def test_ttls_replicate_as_absolute_expiry(shared):
    rc = RedisCluster(host=HOST, port=shared.nodes[0].port, socket_timeout=5)
    assert rc.set("ttl-key", "v", px=600_000)
    owner, replicas = owner_and_replicas(shared, "ttl-key")
    deadline = redis.Redis(host=HOST, port=owner).execute_command("PEXPIRETIME", "ttl-key")
    assert deadline > 0
    assert poll(lambda: all(local(p).execute_command("PEXPIRETIME", "ttl-key") == deadline for p in replicas),
                CONVERGE)
    rc.persist("ttl-key")
    assert poll(lambda: all(local(p).ttl("ttl-key") == -1 for p in replicas), CONVERGE)


def test_pubsub_on_a_replicated_cluster(shared):
    """PUBLISH reaches every member's subscribers; a shard channel is served by its
    slot's coordinator (SPUBLISH/SSUBSCRIBE take no replication path)."""
    ports = [node.port for node in shared.nodes]
    subscribers = [redis.Redis(host=HOST, port=port, socket_timeout=5).pubsub() for port in ports]
    try:
        for pubsub in subscribers:
            pubsub.subscribe("rf3-news")
            assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert redis.Redis(host=HOST, port=ports[1]).publish("rf3-news", "hello") == 1
        for pubsub in subscribers:
            assert poll(lambda: (m := pubsub.get_message(timeout=0.1)) is not None and m["data"] == b"hello",
                        CONVERGE)
        owner, _ = owner_and_replicas(shared, "rf3-shard")
        shard = redis.Redis(host=HOST, port=owner, socket_timeout=5).pubsub()
        shard.ssubscribe("rf3-shard")
        assert shard.get_sharded_message(timeout=5)["type"] == "ssubscribe"
        assert redis.Redis(host=HOST, port=owner).spublish("rf3-shard", "s1") == 1
        assert shard.get_sharded_message(timeout=5)["data"] == b"s1"
        shard.close()
    finally:
        for pubsub in subscribers:
            pubsub.close()


def test_delete_replicates_a_tombstone_that_is_purged_after_the_grace(shared):
    ports = [node.port for node in shared.nodes]
    for port in ports:
        redis.Redis(host=HOST, port=port).config_set("tombstone-grace", 300)
    try:
        rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=5)
        rc.set("gone", "v")
        assert rc.delete("gone") == 1
        owner, replicas = owner_and_replicas(shared, "gone")
        siblings = rc.execute_command("SIBLINGS", "gone")
        assert siblings[1] and siblings[1][0][b"tombstone"] == 1
        # Every replica got the tombstone, so after the grace it is purged everywhere.
        assert poll(lambda: all(local(p).execute_command("SIBLINGS", "gone") == [b"", []] for p in ports),
                    CONVERGE)
        assert redis.Redis(host=HOST, port=owner).info("replication")["tombstones_purged"] >= 1
    finally:
        for port in ports:
            redis.Redis(host=HOST, port=port).config_set("tombstone-grace", 60000)


def test_below_the_write_quorum_the_client_gets_noquorum(shared):
    ports = [node.port for node in shared.nodes]
    addresses = [f"{HOST}:{p}" for p in ports]
    owner, replicas = owner_and_replicas(shared, "nq")
    client = redis.Redis(host=HOST, port=owner, socket_timeout=10)
    for replica in replicas:
        faults.cut(f"{HOST}:{owner}", f"{HOST}:{replica}")
    try:
        client.execute_command("CONSISTENCY", "W", "2")
        with pytest.raises(redis.ResponseError, match="NOQUORUM write quorum not reached: 1 of 2"):
            client.set("nq", "v")
        client.execute_command("CONSISTENCY", "R", "3")
        with pytest.raises(redis.ResponseError, match="NOQUORUM read quorum not reached"):
            client.get("nq")
        client.execute_command("CONSISTENCY", "W", "1", "R", "1")
        assert client.set("nq", "w1") and client.get("nq") == b"w1"
        assert client.info("replication")["hints_pending"] >= 1
    finally:
        faults.heal(addresses)
    # The hints are handed off once the links are back.
    assert poll(lambda: all(local(p).get("nq") == b"w1" for p in replicas), CONVERGE)


def test_a_stale_replica_converges_when_its_link_heals(shared):
    ports = [node.port for node in shared.nodes]
    addresses = [f"{HOST}:{p}" for p in ports]
    owner, (stale, _) = owner_and_replicas(shared, "rr")
    rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=5)
    rc.set("rr", "old")
    assert poll(lambda: local(stale).get("rr") == b"old", CONVERGE)
    # Cut one replica off the owner only: the write still reaches W=2 through the other.
    faults.cut(f"{HOST}:{owner}", f"{HOST}:{stale}")
    try:
        assert redis.Redis(host=HOST, port=owner, socket_timeout=10).set("rr", "new")
        assert local(stale).get("rr") == b"old"
    finally:
        faults.heal(addresses)
    # Hinted hand-off (or a read through the owner) brings the replica up to date.
    assert poll(lambda: local(stale).get("rr") == b"new" and rc.get("rr") == b"new", CONVERGE)


def test_faults_command_line_cuts_reports_and_heals(shared, capsys):
    addresses = [f"{HOST}:{node.port}" for node in shared.nodes]
    assert faults.main(["cut", addresses[0], addresses[1]]) == 0
    try:
        assert faults.main(["status", "--cluster", *addresses]) == 0
        shown = capsys.readouterr().out.splitlines()
        ids = [faults.node_id(address) for address in addresses]
        assert shown[0] == f"{addresses[0]}: {ids[1]}"
        assert shown[1] == f"{addresses[1]}: {ids[0]}"
        assert shown[2] == f"{addresses[2]}: -"
    finally:
        assert faults.main(["heal", "--cluster", *addresses]) == 0
    assert all(not cut for cut in faults.status(addresses).values())
    assert faults.main(["status", "--cluster", "127.0.0.1:1"]) == 1  # nobody there: an error, not a crash


def test_collections_changed_by_shipped_commands_converge_on_every_replica(shared):
    rc = RedisCluster(host=HOST, port=shared.nodes[0].port, socket_timeout=5)
    pipe = rc.pipeline()
    for i in range(300):
        pipe.rpush("coll:{l}", f"e{i}")
        pipe.hset("coll:{h}", f"f{i % 50}", i)
        pipe.zadd("coll:{z}", {f"m{i % 70}": i})
    pipe.execute()
    rc.lpop("coll:{l}", 5)
    rc.hdel("coll:{h}", "f1")
    rc.zpopmin("coll:{z}")
    ports = [node.port for node in shared.nodes]

    def same_everywhere():
        views = []
        for port in ports:
            node = local(port)
            views.append((node.lrange("coll:{l}", 0, -1), node.hgetall("coll:{h}"),
                          node.zrange("coll:{z}", 0, -1, withscores=True)))
        return all(view == views[0] for view in views) and len(views[0][0]) == 295
    assert poll(same_everywhere, CONVERGE)
    assert local(ports[0]).zrange("coll:{z}", 0, 0) == [b"m21"]  # m20 (score 230) was popped


def test_moves_and_pops_shipped_as_commands_converge_on_every_replica(shared):
    """LMOVE, RPOPLPUSH, SMOVE, SPOP, LMPOP and BLPOP reach replicas as the pushes,
    pops, SREMs and SADDs they amount to; every copy ends the same."""
    rc = RedisCluster(host=HOST, port=shared.nodes[0].port, socket_timeout=5)
    rc.rpush("mv:{q}:src", *[f"e{i}" for i in range(500)])
    rc.sadd("mv:{q}:set", *[f"m{i}" for i in range(500)])
    for i in range(40):
        rc.lmove("mv:{q}:src", "mv:{q}:dst", "LEFT", "RIGHT")
        rc.rpoplpush("mv:{q}:dst", "mv:{q}:src")
        rc.smove("mv:{q}:set", "mv:{q}:moved", f"m{i}")
    drawn = rc.spop("mv:{q}:set", 10)
    rc.execute_command("LMPOP", 1, "mv:{q}:src", "RIGHT", "COUNT", 3)
    assert rc.blpop(["mv:{q}:src"], 1) is not None
    ports = [node.port for node in shared.nodes]
    keys = ("mv:{q}:src", "mv:{q}:dst")

    def same_everywhere():
        views = []
        for port in ports:
            node = local(port)
            views.append(([node.lrange(key, 0, -1) for key in keys], node.smembers("mv:{q}:set"),
                          node.smembers("mv:{q}:moved")))
        return all(view == views[0] for view in views)
    assert poll(same_everywhere, CONVERGE)
    view = local(ports[0])
    assert view.llen("mv:{q}:src") + view.llen("mv:{q}:dst") == 500 - 4
    assert view.scard("mv:{q}:moved") == 40 and view.scard("mv:{q}:set") == 450
    assert not set(drawn) & view.smembers("mv:{q}:set")


def test_moves_while_a_replica_is_cut_off_reach_it_once_healed(shared):
    """A reliable queue (RPOPLPUSH, LMOVE, SMOVE) keeps moving while one replica is
    cut off from the coordinator (W=2 is met by the other); once the bus heals,
    hinted hand-off and anti-entropy bring the cut replica the same lists and sets:
    nothing lost, nothing doubled, on every copy."""
    owner, replicas = owner_and_replicas(shared, "pq:{p}:src")
    ports = [node.port for node in shared.nodes]
    rc = RedisCluster(host=HOST, port=ports[0], socket_timeout=5)
    items = [f"job{i}" for i in range(300)]
    rc.rpush("pq:{p}:src", *items)
    rc.sadd("pq:{p}:todo", *items)
    keys = ("pq:{p}:src", "pq:{p}:work", "pq:{p}:done")
    assert poll(lambda: all(local(p).llen("pq:{p}:src") == 300 for p in ports), CONVERGE)
    faults.cut(f"{HOST}:{owner}", f"{HOST}:{replicas[0]}")
    try:
        client = redis.Redis(host=HOST, port=owner, socket_timeout=10)
        for i in range(120):
            assert client.rpoplpush("pq:{p}:src", "pq:{p}:work") == items[-1 - i].encode()
            if i % 2:
                client.lmove("pq:{p}:work", "pq:{p}:done", "LEFT", "RIGHT")
            assert client.smove("pq:{p}:todo", "pq:{p}:taken", items[i]) is True
    finally:
        faults.heal([f"{HOST}:{p}" for p in ports])

    def view(port):
        node = local(port)
        return ([node.lrange(key, 0, -1) for key in keys], node.smembers("pq:{p}:todo"),
                node.smembers("pq:{p}:taken"))
    assert poll(lambda: all(view(p) == view(owner) for p in ports), CONVERGE)
    lists, todo, taken = view(replicas[0])
    moved = [item for chain in lists for item in chain]
    assert sorted(moved) == sorted(item.encode() for item in items)  # each item once, none lost
    assert len(lists[2]) == 60 and len(lists[1]) == 60
    assert len(taken) == 120 and len(todo) == 180 and not todo & taken


def test_each_node_counts_the_keys_it_coordinates_and_readonly_shows_its_copies(shared):
    """DBSIZE, KEYS, SCAN, INFO keyspace and CLUSTER COUNTKEYSINSLOT on a node
    cover the slots it coordinates, so they add up to the cluster's keys (as
    ``redis-cli --cluster check`` sums them); READONLY shows the replica copies."""
    rc = RedisCluster(host=HOST, port=shared.nodes[0].port, socket_timeout=5)
    pipe = rc.pipeline()
    for i in range(600):
        pipe.set(f"count:{i}", i)
    assert all(pipe.execute())
    ports = [node.port for node in shared.nodes]
    # RF=3: every node holds a copy of every key (other tests' keys included).
    assert poll(lambda: all(len(local(p).keys("count:*")) == 600 for p in ports), CONVERGE)
    every = set(local(ports[0]).keys("*"))
    assert poll(lambda: all(set(local(p).keys("*")) == every for p in ports), CONVERGE)
    assert all(local(p).dbsize() == len(every) for p in ports)

    owner = coordinators(ports[0])
    plain = {p: redis.Redis(host=HOST, port=p, socket_timeout=5) for p in ports}
    own = {p: set(client.keys("*")) for p, client in plain.items()}
    assert all(owner[key_slot(key)] == p for p, keys in own.items() for key in keys)
    assert set().union(*own.values()) == every
    assert sum(len(keys) for keys in own.values()) == len(every)
    for p, client in plain.items():
        assert client.dbsize() == len(own[p])
        assert set(client.scan_iter(count=50)) == own[p]
        assert client.info("keyspace")["db0"]["keys"] == len(own[p])
        assert local(p).info("keyspace")["db0"]["keys"] == len(every)

    slot = key_slot("count:0")
    in_slot = sum(1 for key in every if key_slot(key) == slot)
    for p, client in plain.items():
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == (in_slot if p == owner[slot] else 0)
        assert local(p).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == in_slot

    out = run_tool("redis-cli", "--cluster", "check", f"{HOST}:{ports[0]}")
    text = _ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == 0, text
    assert f"[OK] {len(every)} keys in {len(ports)} masters." in text, text
