"""Cluster mode end to end: real node processes started by the launcher, stock clients.

What a user of a Redis Cluster does is what these tests do: start a local cluster
with :mod:`respkv.launcher` (as ``respkv cluster up`` does), then talk to
it with redis-py's ``RedisCluster`` in both protocols, ``redis-cli -c``,
``redis-benchmark --cluster`` and ``redis-cli --cluster check``, and check where
keys land against ``CLUSTER SLOTS``.  Proxy routing, and a node killed with
SIGKILL and restarted on its directory, get clusters of their own.

Every cluster runs on free ports with a 1000 ms node timeout; every wait polls
with a deadline and every child process has a timeout.  The tests that start
clusters carry the ``cluster`` marker (``pytest -m cluster`` selects them,
``-m "not cluster"`` skips them); the launcher's own checks (ports in use, a node
that exits, refusing to start twice, stopping) run without the marker.
"""

from __future__ import annotations

import binascii
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from respkv.launcher import ClusterRunning, LauncherError, PortInUse

NODES = 3
NODE_TIMEOUT_MS = 1000
#: Seconds for a cluster to start and converge, generous for two shared cores.
UP_TIMEOUT = 90.0
#: Seconds any one client process (redis-cli, redis-benchmark) may take.
TOOL_TIMEOUT = 180.0
HOST = "127.0.0.1"
SLOTS = 16384

cluster_mark = pytest.mark.cluster


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def key_slot(key: str | bytes) -> int:
    """Redis Cluster's slot of ``key``, computed here independently of the server."""
    if isinstance(key, str):
        key = key.encode()
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


def start_cluster(directory, nodes: int = NODES, **options) -> launcher.LocalCluster:
    """A ready cluster of ``nodes`` nodes (3) on free ports with a short node timeout.

    Free ports are found before the nodes start, so another process can take one
    in between; that (and only that) is retried on fresh ports.
    """
    options.setdefault("node_timeout", NODE_TIMEOUT_MS)
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return launcher.up(str(directory), nodes, 0, timeout=UP_TIMEOUT, **options)
        except PortInUse:
            if attempt == attempts:
                raise


def coordinators(port: int) -> dict[int, int]:
    """slot -> client port of its master, from ``CLUSTER SLOTS`` on ``port``."""
    owner = {}
    for entry in launcher.command(HOST, port, "CLUSTER", "SLOTS", timeout=10):
        for slot in range(int(entry[0]), int(entry[1]) + 1):
            owner[slot] = int(entry[2][1])
    return owner


def cluster_nodes(port: int) -> list[launcher.NodeLine]:
    return launcher.parse_cluster_nodes(launcher.command(HOST, port, "CLUSTER", "NODES", timeout=10))


def run_tool(*argv: str, timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a redis tool with no stdin and a wall-clock limit."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def keys_by_owner(owner: dict[int, int], ports: list[int], prefix: str) -> dict[int, str]:
    """One key per node port, each owned by that node."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(ports):
        key = f"{prefix}:{i}"
        found.setdefault(owner[key_slot(key)], key)
        i += 1
    return found


def poll(predicate, timeout: float, interval: float = 0.05):
    """Call ``predicate`` until it returns a true value or ``timeout`` passes;
    return the value, or the last false one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- #
# A 3-node cluster with redirect routing, shared by the client tests
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="class")
def cluster(tmp_path_factory):
    """A 3-node cluster answering MOVED (rf 1), stopped after the class using it."""
    c = start_cluster(tmp_path_factory.mktemp("redirect"), rf=1, routing="redirect")
    yield c
    c.stop()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def rc(request, cluster):
    """redis-py's RedisCluster on the cluster, once per protocol."""
    client = RedisCluster(host=HOST, port=cluster.seed.port, protocol=request.param,
                          socket_timeout=10, socket_connect_timeout=10)
    yield client
    client.close()


@cluster_mark
class TestRedirectCluster:
    """Stock clients against a 3-node cluster answering MOVED."""

    def test_redis_py_cluster_writes_and_reads_back_10000_keys(self, rc, request):
        prefix = f"e2e:{request.node.callspec.id}"
        # 10,000 keys in four quarters, one per way of writing; the third quarter
        # shares 50 hash tags so that each group of it can go in one MSET.
        keys = [f"{{{prefix}:t{i % 50}}}:{i}" if 5000 <= i < 7500 else f"{prefix}:{i}"
                for i in range(10_000)]
        expected = {key: f"value-{i}-{'x' * (i % 17)}" for i, key in enumerate(keys)}
        single, piped, tagged, spread = keys[:2500], keys[2500:5000], keys[5000:7500], keys[7500:]

        for key in single:
            assert rc.set(key, expected[key]) is True
        pipe = rc.pipeline()
        for key in piped:
            pipe.set(key, expected[key])
        assert pipe.execute() == [True] * len(piped)
        groups: dict[int, dict[str, str]] = {}
        for key in tagged:
            groups.setdefault(key_slot(key), {})[key] = expected[key]
        for group in groups.values():
            assert rc.mset(group) is True
        for j in range(0, len(spread), 500):
            results = rc.mset_nonatomic({k: expected[k] for k in spread[j:j + 500]})
            assert results and all(r is True for r in results), results

        for key in single:
            assert rc.get(key) == expected[key].encode()
        assert rc.mget_nonatomic(keys) == [expected[k].encode() for k in keys]
        pipe = rc.pipeline()
        for key in keys:
            pipe.get(key)
        assert pipe.execute() == [expected[k].encode() for k in keys]
        for group in groups.values():
            assert rc.mget(list(group)) == [v.encode() for v in group.values()]

    def test_publish_reaches_the_subscribers_of_every_node_and_shard_channels_follow_slots(self, cluster):
        ports = cluster.ports
        clients = [redis.Redis(host=HOST, port=port, socket_timeout=10) for port in ports]
        subscribers = [client.pubsub() for client in clients]
        try:
            for pubsub in subscribers:
                pubsub.subscribe("news")
                assert pubsub.get_message(timeout=5)["type"] == "subscribe"
            for i, client in enumerate(clients):
                # the count is this node's receivers, as in Redis Cluster
                assert client.publish("news", f"from-{i}") == 1
            for pubsub in subscribers:
                got = []
                deadline = time.monotonic() + 10
                while len(got) < len(clients) and time.monotonic() < deadline:
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        got.append(message["data"])
                assert sorted(got) == [f"from-{i}".encode() for i in range(len(clients))]
            # shard channels are routed like keys: MOVED away from their slot's node
            owner = coordinators(ports[0])[key_slot("orders")]
            other = next(port for port in ports if port != owner)
            with pytest.raises(redis.exceptions.MovedError):
                clients[ports.index(other)].spublish("orders", "x")
            shard = clients[ports.index(owner)].pubsub()
            shard.ssubscribe("orders")
            assert shard.get_sharded_message(timeout=5)["type"] == "ssubscribe"
            assert clients[ports.index(owner)].spublish("orders", "o1") == 1
            assert shard.get_sharded_message(timeout=5)["data"] == b"o1"
            shard.close()
        finally:
            for pubsub in subscribers:
                pubsub.close()
            for client in clients:
                client.close()

    def test_keys_land_on_the_coordinator_from_cluster_slots(self, cluster):
        ports = cluster.ports
        for port in ports:
            with redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=10) as r:
                r.flushall()
        keys = [f"ring:{i}" for i in range(3000)] + [f"{{ring-tag}}:{i}" for i in range(100)]
        with RedisCluster(host=HOST, port=ports[0], socket_timeout=10) as rc:
            pipe = rc.pipeline()
            for key in keys:
                pipe.set(key, key)
            pipe.execute()

        owner = coordinators(ports[0])
        assert len(owner) == SLOTS
        for port in ports[1:]:
            assert coordinators(port) == owner, "nodes disagree about CLUSTER SLOTS"
        expected = [0] * SLOTS
        for key in keys:
            expected[key_slot(key)] += 1

        counts: dict[int, list[int]] = {}
        for port in ports:
            with redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=30) as r:
                pipe = r.pipeline(transaction=False)
                for slot in range(SLOTS):
                    pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
                counts[port] = [int(n) for n in pipe.execute()]
                for key in keys[:50]:
                    assert r.execute_command("CLUSTER", "KEYSLOT", key) == key_slot(key)
        assert sum(sum(c) for c in counts.values()) == len(keys)
        for slot in range(SLOTS):
            for port in ports:
                want = expected[slot] if owner[slot] == port else 0
                assert counts[port][slot] == want, (
                    f"slot {slot}: node {port} holds {counts[port][slot]} keys, expected {want} "
                    f"(coordinator per CLUSTER SLOTS: {owner[slot]})")
        tag_slot = key_slot("{ring-tag}")
        with redis.Redis(host=HOST, port=owner[tag_slot], protocol=2, socket_timeout=10) as r:
            got = r.execute_command("CLUSTER", "GETKEYSINSLOT", tag_slot, 1000)
        assert sorted(got) == sorted(k.encode() for k in keys if key_slot(k) == tag_slot)

    def test_redis_cli_follows_redirects(self, cluster):
        ports = cluster.ports
        owner = coordinators(ports[0])
        targets = keys_by_owner(owner, ports, "cli")
        for via in ports:
            for target_port, key in targets.items():
                value = f"from-{via}-to-{target_port}"
                out = run_tool("redis-cli", "-c", "-p", str(via), "set", key, value)
                assert (out.returncode, out.stdout.strip()) == (0, "OK"), out
                out = run_tool("redis-cli", "-c", "-p", str(via), "get", key)
                assert (out.returncode, out.stdout.strip()) == (0, value), out
                if target_port != via:
                    out = run_tool("redis-cli", "-p", str(via), "get", key)
                    assert out.stdout.strip() == f"MOVED {key_slot(key)} {HOST}:{target_port}", out

    def test_redis_benchmark_cluster_runs_without_errors(self, cluster):
        out = run_tool("redis-benchmark", "--cluster", "-h", HOST, "-p", str(cluster.seed.port),
                       "-t", "set,get", "-n", "20000", "-q")
        text = out.stdout + out.stderr
        assert out.returncode == 0, text
        assert f"Cluster has {NODES} master nodes" in text, text
        finals = [line.strip() for line in re.split(r"[\r\n]", out.stdout)
                  if "requests per second" in line]
        assert [f.split(":")[0] for f in finals] == ["SET", "GET"], text
        assert not re.search(r"error|\bERR\b|MOVED|ASK|CLUSTERDOWN", text, re.IGNORECASE), text

    def test_redis_cli_cluster_check_sees_all_slots_covered(self, cluster):
        out = run_tool("redis-cli", "--cluster", "check", f"{HOST}:{cluster.seed.port}")
        text = _ANSI.sub("", out.stdout + out.stderr)
        assert out.returncode == 0, text
        assert "[OK] All nodes agree about slots configuration." in text, text
        assert f"[OK] All {SLOTS} slots covered." in text, text
        assert "[ERR]" not in text and "[WARNING]" not in text, text

    def test_up_refuses_while_the_cluster_runs_and_status_reports_it(self, cluster):
        with pytest.raises(ClusterRunning, match="still running"):
            launcher.up(cluster.directory, NODES, 0, timeout=5)
        st = launcher.status(cluster.directory)
        assert st is not None and st.ok, launcher.format_status(st)
        assert sorted(m.line.port for m in st.members) == sorted(cluster.ports)
        assert sum(m.line.slots for m in st.members) == SLOTS
        assert st.covered == SLOTS
        out = run_tool(sys.executable, "-m", "respkv", "cluster", "status", "--dir",
                       cluster.directory, timeout=60)
        assert out.returncode == 0, out
        assert f"slots covered: {SLOTS} of {SLOTS}" in out.stdout
        for node in cluster.nodes:
            assert node.node_id in out.stdout


# --------------------------------------------------------------------------- #
# Proxy routing
# --------------------------------------------------------------------------- #


@cluster_mark
@pytest.mark.parametrize("protocol", [3, 2], ids=["resp3", "resp2"])
def test_proxy_routing_serves_every_key_on_every_node(tmp_path, protocol):
    """With ``--routing proxy`` a plain client on any node reads and writes any key."""
    cluster = start_cluster(tmp_path / "proxy", rf=1, routing="proxy")
    try:
        ports = cluster.ports
        owner = coordinators(ports[0])
        keys = [f"proxy:{i}" for i in range(3000)]
        clients = [redis.Redis(host=HOST, port=p, protocol=protocol, socket_timeout=10)
                   for p in ports]
        try:
            for n, client in enumerate(clients):
                mine = keys[n::len(clients)]
                assert any(owner[key_slot(k)] != ports[n] for k in mine)
                pipe = client.pipeline(transaction=False)
                for key in mine:
                    pipe.set(key, f"{key}@{ports[n]}")
                assert pipe.execute() == [True] * len(mine)
                for key in mine[:100]:
                    assert client.set(key, f"{key}@{ports[n]}") is True
            expected = [f"{k}@{ports[i % len(ports)]}".encode() for i, k in enumerate(keys)]
            for client in clients:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                assert pipe.execute() == expected
                for key, want in list(zip(keys, expected))[:100]:
                    assert client.get(key) == want
            # a shard-channel subscription is never forwarded (a pooled connection
            # would be subscribed): the client is sent to the slot's node
            away = next(n for n, port in enumerate(ports) if port != owner[key_slot("proxy:shard")])
            assert clients[away].spublish("proxy:shard", "x") == 0  # a one-reply command is forwarded
            raw = socket.create_connection((HOST, ports[away]), timeout=10)
            try:
                raw.sendall(b"*2\r\n$10\r\nSSUBSCRIBE\r\n$11\r\nproxy:shard\r\n")
                assert raw.recv(1024).startswith(b"-MOVED %d " % key_slot("proxy:shard"))
            finally:
                raw.close()
        finally:
            for client in clients:
                client.close()
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# Failure detection and rejoin
# --------------------------------------------------------------------------- #


@cluster_mark
def test_killed_node_is_failed_dropped_from_slots_and_rejoins(tmp_path):
    """kill -9 one node: within 3 x node-timeout every other node flags it ``fail``
    and ``CLUSTER SLOTS`` stops listing it (with rf 2 the others still cover every
    slot); restarted on its directory it comes back with the same id, unflagged."""
    cluster = start_cluster(tmp_path / "failure", rf=2)
    try:
        victim = cluster.nodes[-1]
        survivors = [n for n in cluster.nodes if n is not victim]
        victim_id = launcher.command(HOST, victim.port, "CLUSTER", "MYID").decode()
        assert victim_id == victim.node_id

        def verdicts():
            """Per survivor: (flags of the victim's line, whether CLUSTER SLOTS names it,
            slots covered)."""
            out = {}
            for node in survivors:
                lines = {line.node_id: line for line in cluster_nodes(node.port)}
                slots = launcher.command(HOST, node.port, "CLUSTER", "SLOTS")
                named = any(len(h) > 2 and h[2].decode() == victim_id or int(h[1]) == victim.port
                            for entry in slots for h in entry[2:])
                out[node.name] = (lines[victim_id].flags, named, launcher.slots_covered(slots))
            return out

        def victim_dropped():
            return all("fail" in flags and not named for flags, named, _ in verdicts().values())

        assert not victim_dropped()
        cluster.kill_node(victim.index)
        killed_at = time.monotonic()
        dropped = poll(victim_dropped, timeout=30 * NODE_TIMEOUT_MS / 1000)
        took = time.monotonic() - killed_at
        assert dropped, f"after {took:.1f}s the survivors still show: {verdicts()}"
        assert took <= 3 * NODE_TIMEOUT_MS / 1000, (
            f"failure took {took:.2f}s to be agreed, more than 3 x node timeout")
        for name, (_, _, covered) in verdicts().items():
            assert covered == SLOTS, f"{name}: with rf 2 the live nodes cover {covered} slots"
        for node in survivors:
            assert launcher.probe(HOST, node.port).state == "ok", node.name

        cluster.start_node(victim.index)
        reports = cluster.wait_ready(UP_TIMEOUT)
        assert reports[victim.index].node_id == victim_id
        for node in cluster.nodes:
            lines = {line.node_id: line for line in cluster_nodes(node.port)}
            assert set(lines) == {n.node_id for n in cluster.nodes}
            flags = lines[victim_id].flags
            assert "fail" not in flags and "fail?" not in flags, (node.name, flags)
        assert victim.port in set(coordinators(survivors[0].port).values())
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# The launcher itself (no cluster needed)
# --------------------------------------------------------------------------- #


def test_plan_builds_the_documented_command_lines(tmp_path):
    c = launcher.plan(str(tmp_path / "c"), 3, 7000, rf=2, routing="proxy", node_timeout=1000,
                      python="python3")
    assert [(n.port, n.bus_port) for n in c.nodes] == [(7000, 17000), (7001, 17001), (7002, 17002)]
    assert [os.path.basename(n.dir) for n in c.nodes] == ["node-0", "node-1", "node-2"]
    common = ["--rf", "2", "--routing", "proxy", "--node-timeout", "1000"]
    secret = ["--cluster-secret-file", os.path.join(c.directory, "cluster-secret")]
    assert c.nodes[0].argv == ["python3", "-m", "respkv", "server", "--cluster", "--bind", HOST,
                               "--port", "7000", "--dir", c.nodes[0].dir, *secret, *common]
    assert c.nodes[2].argv == ["python3", "-m", "respkv", "server", "--cluster", "--bind", HOST,
                               "--port", "7002", "--dir", c.nodes[2].dir, *secret,
                               "--join", f"{HOST}:7000", *common]
    assert c.nodes[2].log == os.path.join(c.nodes[2].dir, "node.log")


@pytest.mark.parametrize("kwargs, message", [
    ({"nodes": 0, "port": 7000}, "at least one node"),
    ({"nodes": 3, "port": 55534}, "do not fit"),
    ({"nodes": 3, "port": 7000, "routing": "teleport"}, "routing must be"),
    ({"nodes": 3, "port": 7000, "rf": 0}, "at least 1"),
])
def test_plan_rejects_impossible_clusters(tmp_path, kwargs, message):
    with pytest.raises(LauncherError, match=message):
        launcher.plan(str(tmp_path), **kwargs)


def test_parse_cluster_nodes_and_slots():
    text = (
        "a" * 40 + " 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 9000\n"
        + "b" * 40 + " 127.0.0.1:7001@17001 master,fail? - 0 0 2 connected 5461-8999\n"
        + "c" * 40 + " 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected "
        "[9001->-" + "a" * 40 + "]\n"
    )
    lines = launcher.parse_cluster_nodes(text)
    assert [(n.port, n.slots, n.failed, n.link) for n in lines] == [
        (7000, 5462, False, "connected"), (7001, 3539, False, "connected"),
        (7002, 0, True, "disconnected")]
    reply = [[0, 99, [b"127.0.0.1", 7000, b"a" * 40, {}]],
             [50, 199, [b"127.0.0.1", 7001, b"b" * 40, {}], [b"127.0.0.1", 7000, b"a" * 40, {}]]]
    assert launcher.slots_covered(reply) == 200
    assert launcher.slot_map(reply) == ((0, 99, "a" * 40), (50, 199, "b" * 40))
    assert launcher.parse_info(b"cluster_state:ok\r\ncluster_known_nodes:3\r\n") == {
        "cluster_state": "ok", "cluster_known_nodes": "3"}


def test_up_reports_a_port_in_use(tmp_path):
    base = launcher.find_free_base_port(2)
    with socket.socket() as blocker:
        blocker.bind((HOST, base + 1 + launcher.BUS_PORT_OFFSET))
        blocker.listen()
        with pytest.raises(PortInUse, match=f"port {base + 1 + 10000} .*bus port of node-1"):
            launcher.up(str(tmp_path / "c"), 2, base, timeout=10)
    assert launcher.LocalCluster.load(str(tmp_path / "c")) is None


def test_a_stale_copy_of_the_record_never_undoes_a_removal(tmp_path):
    """Two launchers hold the record at once (two removals, or a tool's cluster
    while an operator removes a node): whatever order they save in, both
    removals stay, and a stale copy's save adopts the other's."""
    directory = str(tmp_path / "c")
    launcher.plan(directory, 4, 7000).save()
    first, second = launcher.LocalCluster.load(directory), launcher.LocalCluster.load(directory)
    first.mark_removed(3)
    second.mark_removed(2)
    assert second.nodes[3].removed  # merged in from the saved record
    first.save()  # the stale copy saves again (as a tool's cluster.stop() does)
    saved = launcher.LocalCluster.load(directory)
    assert [n.name for n in saved.nodes if n.removed] == ["node-2", "node-3"]
    assert [n.name for n in first.members] == ["node-0", "node-1"]


def test_two_launchers_adding_at_once_take_different_indices_and_ports(tmp_path):
    """Two ``cluster add`` runs loaded the record before either saved: the second
    adopts the first's node and takes the next index and port, and a stale
    copy's later save keeps both."""
    directory = str(tmp_path / "c")
    launcher.plan(directory, 3, 7000).save()
    first, second, stale = (launcher.LocalCluster.load(directory) for _ in range(3))
    python = first.nodes[0].argv[0]
    a = first.add_record(["127.0.0.1:7000"], python)
    b = second.add_record(["127.0.0.1:7000"], python)
    assert (a.name, a.port, b.name, b.port) == ("node-3", 7003, "node-4", 7004)
    stale.mark_removed(1)
    saved = launcher.LocalCluster.load(directory)
    assert [(n.name, n.port, n.removed) for n in saved.nodes] == [
        ("node-0", 7000, False), ("node-1", 7001, True), ("node-2", 7002, False),
        ("node-3", 7003, False), ("node-4", 7004, False)]


def test_an_add_whose_port_is_taken_is_recorded_removed_and_the_next_add_moves_past(tmp_path):
    cluster = start_cluster(tmp_path / "c")
    try:
        taken = max(cluster.ports) + 1
        with socket.socket() as blocker:
            try:
                blocker.bind((HOST, taken))
                blocker.listen()
            except OSError:
                pass  # another process has it: taken all the same
            with pytest.raises(PortInUse):
                launcher.add(cluster.directory, 1, timeout=UP_TIMEOUT, wait=False, cluster=cluster)
        saved = launcher.LocalCluster.load(cluster.directory)
        assert (saved.nodes[3].name, saved.nodes[3].port, saved.nodes[3].removed) == ("node-3", taken, True)
        for _ in range(3):  # a port after it may be another process's too: each try moves past
            try:
                (added,) = launcher.add(cluster.directory, 1, timeout=UP_TIMEOUT, wait=False, cluster=cluster)
                break
            except PortInUse:
                continue
        assert added.port > taken and added.index == len(cluster.nodes) - 1
        assert [n.name for n in cluster.running()] == ["node-0", "node-1", "node-2", added.name]
    finally:
        cluster.stop()


def test_up_reports_a_node_that_exits_with_its_log_tail(tmp_path):
    with pytest.raises(LauncherError) as info:
        launcher.up(str(tmp_path / "c"), 2, 0, timeout=30, server_args=["--no-such-option"])
    message = str(info.value)
    assert "node-0" in message and "exited" in message
    assert "unknown directive" in message and "--no-such-option" in message
    cluster = launcher.LocalCluster.load(str(tmp_path / "c"))
    assert cluster is not None and cluster.running() == []


def test_down_and_status_with_nothing_recorded(tmp_path, capsys):
    from respkv.cli import main

    assert launcher.down(str(tmp_path)) == []
    assert launcher.status(str(tmp_path)) is None
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "down", "--dir", str(tmp_path)])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "status", "--dir", str(tmp_path)])
    assert exit_info.value.code == 1
    assert "no cluster recorded" in capsys.readouterr().out


def test_recorded_processes_block_up_until_down_stops_them(tmp_path):
    """``up`` refuses while a recorded node runs; ``down`` stops it (SIGTERM) and
    is idempotent; a pid running something else is never taken for a node."""
    directory = str(tmp_path / "c")
    cluster = launcher.plan(directory, 1, launcher.find_free_base_port(1))
    stand_in = [sys.executable, "-c", "import signal; signal.pause()"]
    proc = subprocess.Popen(stand_in, stdin=subprocess.DEVNULL)
    try:
        cluster.nodes[0].argv = stand_in
        cluster.nodes[0].pid = proc.pid
        cluster.save()
        assert poll(lambda: launcher.process_matches(proc.pid, stand_in), timeout=10)
        assert not launcher.process_matches(proc.pid, stand_in + ["other"])
        with pytest.raises(ClusterRunning, match=rf"node-0 \(pid {proc.pid}"):
            launcher.up(directory, 1, 0, timeout=5)
        stopped = launcher.down(directory, timeout=10)
        assert [n.pid for n in stopped] == [proc.pid]
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert launcher.down(directory) == []
        assert launcher.LocalCluster.load(directory).nodes[0].pid is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_find_free_base_port_leaves_room_for_bus_ports():
    base = launcher.find_free_base_port(3)
    for p in range(base, base + 3):
        assert launcher.port_is_free(HOST, p)
        assert launcher.port_is_free(HOST, p + launcher.BUS_PORT_OFFSET)


def test_benchmark_csv_after_the_cluster_preamble_parses():
    """``redis-benchmark --cluster --csv`` lists the masters before the CSV; the
    benchmark drivers skip exactly those lines and nothing else."""
    from tools.benchlib import BenchmarkFailed, parse_csv

    csv_text = ('"test","rps","avg_latency_ms"\n'
                '"SET","1000.00","0.5"\n')
    preamble = ("Cluster has 2 master nodes:\n\n"
                f"Master 0: {'a' * 40} 127.0.0.1:7000\n"
                f"Master 1: {'b' * 40} 127.0.0.1:7001\n\n")
    assert parse_csv(preamble + csv_text) == [{"test": "SET", "rps": 1000.0, "avg_latency_ms": 0.5}]
    with pytest.raises(BenchmarkFailed):
        parse_csv("Error: CLUSTERDOWN\n" + csv_text)
