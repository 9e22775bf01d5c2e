"""Elastic membership end to end, with real processes.

* The short form of ``tools/movesuite.py``: a 3-node RF=3 cluster under steady
  writes (every acknowledgement recorded) and reads grows to 5 nodes
  (``respkv.launcher.add``), shrinks back to 3 by decommission (``CLUSTER LEAVE``,
  hand-off, ``CLUSTER FORGET``), then loses a node to ``kill -9`` that is removed
  for good.  No acknowledged write may be lost, no read may see a wrong value,
  no join or decommission may cost a client an error, each new node must end
  with its full share of the keys having been sent no more than 1.5x that share,
  and each move's progress must have been shown while it ran.
* ``redis-cli --cluster add-node`` and ``del-node`` against a node started by
  hand, with ``redis-cli --cluster check`` counting every key once before and
  after; ``CLUSTER LEAVE``/``FORGET``/``RESET`` refusals as Redis words them.
* ``respkv cluster restart``.
* Faults during a move: the giving node, then the receiving node, killed with
  ``kill -9`` mid-move (the rest of the keys arrive after its restart); the
  bus between giver and receiver cut mid-move while clients write (nothing
  acknowledged is lost); two nodes removed at once by two ``respkv cluster
  remove`` processes (both hand everything over, both are marked removed).

Throughput during the moves is reported by the tool, not asserted here (timing
targets live in benchmarks).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools import movesuite
from tools.procs import free_port

from .test_cluster_e2e import _ANSI, HOST, cluster_nodes, poll, run_tool, start_cluster

pytestmark = pytest.mark.cluster

MOVE_TIMEOUT = 120.0
#: The test run itself keeps the machine's CPU pressure near 100 %, where hand-off
#: runs at a tenth of its cap (``anti-entropy-cpu-pressure``, tested on its own)
#: and a move could outlast MOVE_TIMEOUT (a decommission did, in CI): these
#: tests pace hand-off by the keys-per-second cap alone.
UNPACED = "--anti-entropy-cpu-pressure=0"


def test_grow_shrink_and_remove_under_load_lose_nothing(tmp_path):
    lines: list[str] = []
    settings = movesuite.Settings(prefill=6000, clients=3, readers=2, steady_seconds=1.0,
                                  keep=str(tmp_path / "c"), move_timeout=MOVE_TIMEOUT,
                                  server_args=["--handoff-keys-per-second=3000", UNPACED])
    report = movesuite.run(settings, lines.append)
    print(report.summary())
    assert report.verdict.ok and report.prefill_lost == 0, report.summary()
    assert all(p.wrong_reads == 0 for p in report.phases), report.summary()
    moves = [p for p in report.phases if p.is_move]
    assert [p.name for p in moves] == ["add node-3", "add node-4", "remove node-4", "remove node-1"]
    assert all(p.write_errors == 0 and p.read_errors == 0 for p in moves), report.summary()
    assert report.ok
    for join in moves[:2]:
        moved = join.moved
        assert moved["pushed_vs_ideal"] <= 1.5, moved
        assert moved["holds_vs_ideal"] >= 0.9, moved  # its full share, less what a rounding of the ring gives
    # Progress bars were shown while keys moved, for the joins and the decommissions.
    bars = [line for line in lines if "[" in line and "keys/s" in line]
    assert any(line.startswith(("node-0", "node-1", "node-2")) for line in bars), lines
    assert any(line.startswith("node-4") for line in bars) and any(line.startswith("node-1") for line in bars), lines


def test_redis_cli_add_node_and_del_node(tmp_path):
    cluster = start_cluster(tmp_path / "c", nodes=3, rf=3, server_args=[UNPACED])
    hand = None
    try:
        seed = cluster.nodes[0].port
        rc = RedisCluster(host=HOST, port=seed, socket_timeout=10)
        for i in range(0, 3000, 500):
            pipe = rc.pipeline()
            for j in range(i, i + 500):
                pipe.set(f"cli:{j}", j)
            pipe.execute()
        port = free_port()  # with its bus port: the next port up may still be a stopped test's
        hand_dir = tmp_path / "hand"
        hand_dir.mkdir()
        argv = launcher.node_argv(python=sys.executable, host=HOST, port=port, node_dir=str(hand_dir),
                                  rf=3, node_timeout=1000,
                                  secret_file=os.path.join(cluster.directory, "cluster-secret"))
        hand = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        assert poll(lambda: _answers(port), 30)
        out = run_tool("redis-cli", "--cluster", "add-node", f"{HOST}:{port}", f"{HOST}:{seed}")
        assert out.returncode == 0 and "[OK] New node added correctly." in _ANSI.sub("", out.stdout), out
        hand_id = launcher.command(HOST, port, "CLUSTER", "MYID").decode()
        assert poll(lambda: len(cluster_nodes(seed)) == 4 and _moves_done([*cluster.ports, port]), MOVE_TIMEOUT)
        check = _ANSI.sub("", run_tool("redis-cli", "--cluster", "check", f"{HOST}:{seed}").stdout)
        assert "[OK] 3000 keys in 4 masters." in check, check
        assert int(launcher.command(HOST, port, "DBSIZE", readonly=True)) > 1500  # its share (3/4) moved to it

        # Refusals, with Redis's words where Redis has them.
        plain = redis.Redis(host=HOST, port=seed, socket_timeout=10)
        with pytest.raises(redis.ResponseError, match="^Can't forget a live node"):
            plain.execute_command("CLUSTER", "FORGET", hand_id)
        with pytest.raises(redis.ResponseError, match="^CLUSTER RESET can't be called with master nodes containing keys$"):
            plain.execute_command("CLUSTER", "RESET", "SOFT")
        out = run_tool("redis-cli", "--cluster", "del-node", f"{HOST}:{seed}", hand_id)
        assert out.returncode != 0 and "is not empty" in _ANSI.sub("", out.stdout), out

        # Decommission: it gives its slots up at once and hands its keys over;
        # del-node then works (FORGET everywhere, CLUSTER RESET SOFT on it).
        assert launcher.command(HOST, port, "CLUSTER", "LEAVE") == b"OK"
        assert launcher.command(HOST, port, "CLUSTER", "LEAVE") == b"OK"  # leaving already: OK again
        deleted = poll(lambda: run_tool("redis-cli", "--cluster", "del-node", f"{HOST}:{seed}", hand_id).returncode == 0,
                       MOVE_TIMEOUT, interval=0.5)
        assert deleted
        assert all(hand_id not in {line.node_id for line in cluster_nodes(p)} for p in cluster.ports)
        known = [line.node_id for line in cluster_nodes(port)]
        assert known == [hand_id], launcher.command(HOST, port, "CLUSTER", "NODES")  # reset: it knows only itself
        assert int(launcher.command(HOST, port, "DBSIZE", readonly=True)) == 0
        check = _ANSI.sub("", run_tool("redis-cli", "--cluster", "check", f"{HOST}:{seed}").stdout)
        assert "[OK] 3000 keys in 3 masters." in check and "All 16384 slots covered." in check, check
        rc = RedisCluster(host=HOST, port=seed, socket_timeout=10)
        assert rc.mget_nonatomic([f"cli:{j}" for j in range(3000)]) == [str(j).encode() for j in range(3000)]

        # respkv cluster restart: SIGTERM, start on its directory, ready again.
        out = run_tool(sys.executable, "-m", "respkv", "cluster", "restart", "node-2", "--dir", cluster.directory)
        assert out.returncode == 0 and "restarted node-2" in out.stdout, out
        assert rc.get("cli:7") == b"7"
    finally:
        if hand is not None:
            hand.kill()
            hand.wait(10)
        launcher.down(cluster.directory)  # first: node-2 as restarted by the command above is in the record
        cluster.stop()


def test_the_last_node_with_slots_cannot_leave_and_a_restart_goes_on_leaving(tmp_path):
    cluster = start_cluster(tmp_path / "c", nodes=2, rf=2, server_args=[UNPACED])
    try:
        a, b = cluster.ports
        assert launcher.command(HOST, b, "CLUSTER", "LEAVE") == b"OK"
        with pytest.raises(launcher.ReplyError, match="last node holding slots"):
            launcher.command(HOST, a, "CLUSTER", "LEAVE")
        assert poll(lambda: _moves_done([a, b]) and int(launcher.command(HOST, b, "DBSIZE", readonly=True)) == 0,
                    MOVE_TIMEOUT)
        assert os.path.exists(os.path.join(cluster.nodes[1].dir, "leaving"))
        cluster.kill_node(1)
        cluster.start_node(1)
        cluster.wait_listening([1], MOVE_TIMEOUT)
        b_id = launcher.command(HOST, b, "CLUSTER", "MYID").decode()
        assert poll(lambda: {line.node_id: line.slots for line in cluster_nodes(a)}.get(b_id) == 0
                    and {line.node_id: line.slots for line in cluster_nodes(b)}.get(b_id) == 0, MOVE_TIMEOUT)
    finally:
        cluster.stop()


def _answers(port: int) -> bool:
    try:
        return launcher.command(HOST, port, "PING", timeout=1.0) == b"PONG"
    except OSError:
        return False


def _moves_done(ports) -> bool:
    for port in ports:
        info = launcher.parse_info(launcher.command(HOST, port, "INFO", "replication", timeout=5.0))
        if info.get("handoff_slots_held") != "0" or info.get("handoff_running") != "0":
            return False
    return True


def _fill(rc: RedisCluster, prefix: str, count: int) -> None:
    for i in range(0, count, 500):
        pipe = rc.pipeline()
        for j in range(i, min(count, i + 500)):
            pipe.set(f"{prefix}:{j}", j)
        pipe.execute()


def _all_readable(cluster, prefix: str, count: int) -> None:
    rc = RedisCluster(host=HOST, port=cluster.running()[0].port, socket_timeout=10)
    values = rc.mget_nonatomic([f"{prefix}:{j}" for j in range(count)])
    wrong = [j for j, value in enumerate(values) if value != str(j).encode()]
    assert not wrong, f"{len(wrong)} keys wrong or missing, e.g. {wrong[:5]}"


def _receiving(node) -> bool:
    """``node`` answers and holds some keys (handed to it, or written to it)."""
    try:
        return int(launcher.command(HOST, node.port, "DBSIZE", readonly=True, timeout=2.0)) > 0
    except OSError:
        return False


def _join_and_catch_mid_move(cluster, prefix: str, count: int):
    """Write ``count`` keys, add a node without waiting, and return its record
    once it holds some of its share while its givers still hold more."""
    _fill(RedisCluster(host=HOST, port=cluster.ports[0], socket_timeout=10), prefix, count)
    launcher.add(cluster.directory, 1, timeout=MOVE_TIMEOUT, wait=False, cluster=cluster)
    new = cluster.nodes[3]
    assert poll(lambda: _receiving(new) and not _moves_done(cluster.ports[:3]), MOVE_TIMEOUT)
    return new


def _moved_in_full(cluster, new, prefix: str, count: int, share: float) -> None:
    """Once the moves end: the ``count`` keys are readable, ``new`` holds at
    least 0.9 of ``share`` keys and no giver keeps anything it handed over."""
    launcher.wait_for_moves(cluster, MOVE_TIMEOUT)
    _all_readable(cluster, prefix, count)
    assert int(launcher.command(HOST, new.port, "DBSIZE", readonly=True)) >= 0.9 * share
    for node in cluster.nodes[:3]:
        assert launcher.move_progress(node.name, HOST, node.port, None).keys_held == 0


def test_a_giving_node_killed_mid_move_hands_over_the_rest_after_its_restart(tmp_path):
    """kill -9 of a node while it hands keys over (some dropped and logged, some
    not yet pushed): restarted on its directory, it finds what it still holds and
    hands that over; every key stays readable and the new node gets its share."""
    cluster = start_cluster(tmp_path / "c", nodes=3, rf=3, server_args=["--handoff-keys-per-second=300", UNPACED])
    try:
        _fill(RedisCluster(host=HOST, port=cluster.ports[0], socket_timeout=10), "mid", 4000)
        launcher.add(cluster.directory, 1, timeout=MOVE_TIMEOUT, wait=False, cluster=cluster)

        def giving_midway():
            for node in cluster.nodes[:3]:
                p = launcher.move_progress(node.name, HOST, node.port, None)
                if p is not None and p.running and p.keys_done > 0 and p.keys_held > 0:
                    return node
            return None

        victim = poll(giving_midway, MOVE_TIMEOUT)
        assert victim is not None, "no node was caught in the middle of its hand-off"
        cluster.kill_node(victim.index)
        cluster.start_node(victim.index)
        cluster.wait_ready(MOVE_TIMEOUT)
        _moved_in_full(cluster, cluster.nodes[3], "mid", 4000, 0.75 * 4000)  # RF=3 of 4 nodes: 3/4 of the keys
    finally:
        cluster.stop()


def test_a_receiving_node_killed_mid_move_gets_the_rest_after_its_restart(tmp_path):
    """kill -9 of the joining node while keys stream to it: what it had logged
    stays, the givers keep what they had not had confirmed and push it again
    once it is back; nothing is lost and it ends with its share."""
    cluster = start_cluster(tmp_path / "c", nodes=3, rf=3, server_args=["--handoff-keys-per-second=300", UNPACED])
    try:
        new = _join_and_catch_mid_move(cluster, "recv", 4000)
        cluster.kill_node(new.index)
        cluster.start_node(new.index)
        cluster.wait_ready(MOVE_TIMEOUT)
        _moved_in_full(cluster, new, "recv", 4000, 0.75 * 4000)  # RF=3 of 4 nodes: 3/4 of the keys
    finally:
        cluster.stop()


def test_a_partition_between_giver_and_receiver_mid_move_loses_nothing(tmp_path):
    """The bus link between a giving node and the joining node is cut in the
    middle of the move while clients keep writing; after the heal the move
    completes, every acknowledged write is readable and nobody keeps what it
    handed over."""
    from tools import faults

    cluster = start_cluster(tmp_path / "c", nodes=3, rf=3,
                            server_args=["--handoff-keys-per-second=300", "--enable-debug-command", "yes", UNPACED])
    try:
        new = _join_and_catch_mid_move(cluster, "cut", 3000)
        giver, receiver = f"{HOST}:{cluster.ports[0]}", f"{HOST}:{new.port}"
        faults.cut(giver, receiver)
        acked = {}
        try:
            rc = RedisCluster(host=HOST, port=cluster.ports[1], socket_timeout=10)
            for j in range(1000):  # writes during the cut: only what was acknowledged must stay
                try:
                    if rc.set(f"during:{j}", j):
                        acked[j] = True
                except redis.RedisError:
                    pass
        finally:
            faults.heal([f"{HOST}:{p}" for p in cluster.ports])
        assert len(acked) > 500, f"only {len(acked)} of 1000 writes acknowledged during the cut"
        # Its share of the keys written before the cut; of those written during it,
        # the ones node-0 coordinated reach it by anti-entropy, in its own time.
        _moved_in_full(cluster, new, "cut", 3000, 0.75 * 3000)
        rc = RedisCluster(host=HOST, port=cluster.ports[1], socket_timeout=10)
        values = rc.mget_nonatomic([f"during:{j}" for j in acked])
        assert values == [str(j).encode() for j in acked]
    finally:
        cluster.stop()


def test_two_nodes_leaving_at_once_hand_everything_over(tmp_path):
    """Two of five nodes removed at the same time, by two ``respkv cluster
    remove`` processes (two operators): both hand their keys to the three that
    stay, both end marked removed in the record, and every key stays readable
    and is counted once."""
    cluster = start_cluster(tmp_path / "c", nodes=5, rf=3, server_args=["--handoff-keys-per-second=2000", UNPACED])
    try:
        rc = RedisCluster(host=HOST, port=cluster.ports[0], socket_timeout=10)
        _fill(rc, "two", 3000)
        removals = [subprocess.Popen([sys.executable, "-m", "respkv", "cluster", "remove", name,
                                      "--dir", cluster.directory, "--timeout", str(MOVE_TIMEOUT)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
                    for name in ("node-3", "node-4")]
        outputs = [p.communicate(timeout=MOVE_TIMEOUT + 30)[0] for p in removals]
        assert [p.returncode for p in removals] == [0, 0], outputs
        assert [n.index for n in cluster.running()] == [0, 1, 2]
        saved = launcher.LocalCluster.load(cluster.directory)
        assert [n.name for n in saved.nodes if n.removed] == ["node-3", "node-4"]
        _all_readable(cluster, "two", 3000)
        assert sum(int(launcher.command(HOST, p, "DBSIZE")) for p in cluster.ports[:3]) == 3000
    finally:
        cluster.stop()


def test_a_removal_that_runs_out_of_time_says_the_node_goes_on_leaving(tmp_path):
    """A removal whose node is still handing keys over at its ``--timeout`` says
    so and how to wait; run again, it waits for the rest and completes."""
    cluster = start_cluster(tmp_path / "c", nodes=3, rf=2, server_args=["--handoff-keys-per-second=1", UNPACED])
    try:
        _fill(RedisCluster(host=HOST, port=cluster.ports[0], socket_timeout=10), "slow", 600)
        with pytest.raises(launcher.LauncherError,
                           match=r"^node-2 is still handing its keys over after 3 s \(\d+ keys still held\); it goes "
                                 r"on leaving: run 'respkv cluster remove node-2' again to wait for the rest"):
            launcher.remove(cluster.directory, "node-2", timeout=3.0)
        launcher.command(HOST, cluster.ports[2], "CONFIG", "SET", "handoff-keys-per-second", "100000")
        launcher.remove(cluster.directory, "node-2", timeout=MOVE_TIMEOUT)
        assert [n.name for n in launcher.LocalCluster.load(cluster.directory).members] == ["node-0", "node-1"]
        _all_readable(cluster, "slow", 600)
    finally:
        launcher.down(cluster.directory)
        cluster.stop()


def test_a_node_that_never_held_a_key_can_be_removed(tmp_path):
    """A node that joined an empty cluster (or whose slots held none of the
    keys) announced "I hold nothing" before it left; leaving raises its record's
    epoch, and the members forget it only once it announced that again at the
    new epoch (it used to announce only when what it held changed, so the
    removal waited forever)."""
    cluster = start_cluster(tmp_path / "c", nodes=3, rf=3, server_args=[UNPACED])
    try:
        launcher.add(cluster.directory, 1, timeout=MOVE_TIMEOUT, cluster=cluster)
        launcher.remove(cluster.directory, "node-3", timeout=30.0)
        assert [n.name for n in launcher.LocalCluster.load(cluster.directory).members] == ["node-0", "node-1", "node-2"]
    finally:
        launcher.down(cluster.directory)
        cluster.stop()
