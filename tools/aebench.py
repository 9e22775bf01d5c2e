"""Anti-entropy benchmark: how fast replicas converge without reads, what it ships,
and what a large repair costs clients.

Usage (from the repository root)::

    python -m tools.aebench                       # all three sections (~10 min)
    python -m tools.aebench --quick               # small sizes: checks the tool (~1 min)
    python -m tools.aebench --only wiped --keys 100000

Every section starts a 3-node cluster (replication factor 3, W = 2, R = 2) of real
``respkv`` processes with :mod:`respkv.launcher`, loads ``--keys`` keys with
``--value-size``-byte values through a cluster client, and waits until every node
holds every key (``versioned_keys`` of ``INFO replication``).  Convergence is
watched through INFO counters and ``CLUSTER REPAIR`` only, never through reads,
which would repair what they read.

* **wiped**: one node is killed with ``kill -9``, every file of its directory but
  its identity (``node-id``, ``nodes.conf``, the cluster secret) is deleted, as
  after a disk replacement, and it is started again.  Exchanges run on the nodes'
  default schedule (``anti-entropy-interval``).  Reported: seconds from the
  restart until the node holds every key again, and the bytes the exchanges moved
  (``ae_bytes_sent`` + ``ae_bytes_received`` of all nodes) against the data size
  (keys and values).
* **diverge**: exchanges off and no hints (``max-hints-per-node 0``), one node is
  cut off the bus, ``--diverge-percent`` of the keys are overwritten through the
  others, the links heal.  Then ``CLUSTER REPAIR`` on that node runs one exchange
  with each peer; reported: bytes moved against the data size, keys repaired,
  seconds; a second ``CLUSTER REPAIR`` must find nothing left to repair.
* **load**: the same divergence with ``--load-keys`` keys and
  ``--load-percent`` of them overwritten; ``redis-benchmark --cluster -t set,get``
  (``-P 16``, 50 clients) runs ``--repeat`` times idle, then up to three times as
  often while the repair runs (only runs that ended before the repair did
  count), then ``--repeat`` times idle again.  Reported per test: median
  throughput and p99 latency while idle and during the repair, and the ratio of
  the repair runs to the idle median (the issue's target is >= 0.8).
* **move**: ``--move-keys`` keys on 3 nodes; ``redis-benchmark`` (``-r 100000``) runs
  ``--repeat`` times, then a fourth node joins (``respkv cluster add``) and runs
  go on while the other nodes hand it its share (only runs that ended before the
  move did count), then ``--repeat`` times on the 4 nodes.  Reported per test:
  the median throughput during the move against the 4-node runs (same members,
  no move) and against the 3-node runs, and the move's duration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools import benchlib, faults
from tools.procs import sigterm_interrupts

HOST = launcher.DEFAULT_HOST
NODES = 3
IDENTITY_FILES = {"node-id", "nodes.conf", "cluster-secret", "node.log"}
FORM_TIMEOUT = 120.0
#: Seconds a convergence may take before the section fails.
CONVERGE_TIMEOUT = 600.0
LOAD_BATCH = 5000
#: ``redis-benchmark -r`` of the move section.
BENCHMARK_KEYS_DURING_MOVE = 100_000


def progress(text: str) -> None:
    print(f"aebench: {text}", file=sys.stderr, flush=True)


def local(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_timeout=30)


def info(port: int, section: str = "replication") -> dict:
    return local(port).info(section)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise benchlib.BenchmarkFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


def key_name(i: int) -> str:
    return f"aekey:{i:012d}"


def start(directory: str, extra: list[str]) -> launcher.LocalCluster:
    return launcher.up(directory, NODES, 0, rf=3, node_timeout=2000, timeout=FORM_TIMEOUT,
                       server_args=["--enable-debug-command", "yes", *extra])


def load(cluster: launcher.LocalCluster, keys: int, value: bytes, first: int = 0) -> None:
    """SET ``keys`` keys (from index ``first``) through a cluster client, in pipelines."""
    client = RedisCluster(host=HOST, port=cluster.nodes[0].port, socket_timeout=60)
    started = time.monotonic()
    for start_at in range(first, first + keys, LOAD_BATCH):
        pipe = client.pipeline()
        for i in range(start_at, min(first + keys, start_at + LOAD_BATCH)):
            pipe.set(key_name(i), value)
        if not all(pipe.execute()):
            raise benchlib.BenchmarkFailed("a SET of the load was not acknowledged")
    client.close()
    progress(f"wrote {keys} keys in {time.monotonic() - started:.1f} s")


def wait_everywhere(cluster: launcher.LocalCluster, keys: int) -> None:
    wait_for(lambda: all(info(n.port)["versioned_keys"] >= keys for n in cluster.nodes), CONVERGE_TIMEOUT,
             "every node holding every key")


def ae_bytes(cluster: launcher.LocalCluster) -> int:
    total = 0
    for node in cluster.nodes:
        fields = info(node.port)
        total += fields["ae_bytes_sent"] + fields["ae_bytes_received"]
    return total


def ae_total(cluster: launcher.LocalCluster, field: str) -> int:
    return sum(info(node.port)[field] for node in cluster.nodes)


def config_all(cluster: launcher.LocalCluster, name: str, value) -> None:
    for node in cluster.nodes:
        local(node.port).config_set(name, value)


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #


def wiped(directory: str, keys: int, value_size: int) -> dict:
    cluster = start(directory, [])
    try:
        load(cluster, keys, b"v" * value_size)
        wait_everywhere(cluster, keys)
        victim = cluster.nodes[2]
        before = ae_bytes(cluster)
        cluster.kill_node(victim.index)
        for name in os.listdir(victim.dir):
            if name not in IDENTITY_FILES:
                os.remove(os.path.join(victim.dir, name))
        started = time.monotonic()
        cluster.start_node(victim.index)
        cluster.wait_ready(FORM_TIMEOUT)
        wait_for(lambda: info(victim.port)["versioned_keys"] >= keys, CONVERGE_TIMEOUT, "the wiped node refilled")
        seconds = time.monotonic() - started
        # The restarted node's counters started at 0; the others' kept counting.
        moved = ae_bytes(cluster) - before
        data = keys * (len(key_name(0)) + value_size)
        result = {"keys": keys, "seconds": round(seconds, 2), "bytes_moved": moved, "data_bytes": data,
                  "bytes_ratio": round(moved / data, 3),
                  "keys_pulled": ae_total(cluster, "ae_keys_pulled"),
                  "keys_pushed": ae_total(cluster, "ae_keys_pushed")}
        progress(f"wiped: {keys} keys back in {seconds:.1f} s, {moved} bytes moved for {data} bytes of data "
                 f"({moved / data:.2f})")
        return result
    finally:
        cluster.stop()


def make_divergence(cluster: launcher.LocalCluster, keys: int, changed: int, value_size: int) -> int:
    """Cut the last node off, overwrite ``changed`` keys through the others (no
    hints: ``max-hints-per-node 0``), heal; returns the victim's port."""
    config_all(cluster, "anti-entropy-interval", 0)
    config_all(cluster, "max-hints-per-node", 0)
    addresses = [f"{HOST}:{node.port}" for node in cluster.nodes]
    victim = cluster.nodes[-1]
    victim_id = faults.node_id(addresses[-1])
    faults.isolate(addresses[-1], addresses)
    first = cluster.nodes[0].port

    def victim_failed() -> bool:
        nodes = launcher.parse_cluster_nodes(launcher.command(HOST, first, "CLUSTER", "NODES", timeout=10))
        return any(line.node_id == victim_id and "fail" in line.flags for line in nodes)

    wait_for(victim_failed, 60, "the cut-off node marked failed")
    client = RedisCluster(host=HOST, port=first, socket_timeout=60)
    step = max(1, keys // changed)
    indexes = list(range(0, keys, step))[:changed]
    newer = b"n" * value_size
    for start_at in range(0, len(indexes), LOAD_BATCH):
        pipe = client.pipeline()
        for i in indexes[start_at : start_at + LOAD_BATCH]:
            pipe.set(key_name(i), newer)
        if not all(pipe.execute()):
            raise benchlib.BenchmarkFailed("an overwrite was not acknowledged")
    client.close()
    faults.heal(addresses)
    wait_for(lambda: not victim_failed(), 60, "the healed node live again")
    return victim.port


def repair_once(cluster: launcher.LocalCluster, port: int) -> float:
    """``CLUSTER REPAIR`` on ``port`` and wait until its exchanges are done."""
    before = info(port)["ae_exchanges"] + info(port)["ae_exchanges_failed"]
    peers = local(port).execute_command("CLUSTER", "REPAIR")
    return wait_for(lambda: info(port)["ae_exchanges"] + info(port)["ae_exchanges_failed"] >= before + peers,
                    CONVERGE_TIMEOUT, "the repair exchanges")


def diverge(directory: str, keys: int, percent: float, value_size: int) -> dict:
    cluster = start(directory, [])
    try:
        load(cluster, keys, b"v" * value_size)
        wait_everywhere(cluster, keys)
        changed = max(1, int(keys * percent / 100))
        port = make_divergence(cluster, keys, changed, value_size)
        bytes_before = ae_bytes(cluster)
        repaired_before = ae_total(cluster, "ae_keys_pulled") + ae_total(cluster, "ae_keys_pushed")
        seconds = repair_once(cluster, port)
        moved = ae_bytes(cluster) - bytes_before
        repaired = ae_total(cluster, "ae_keys_pulled") + ae_total(cluster, "ae_keys_pushed") - repaired_before
        differing_before = info(port)["ae_keys_differing"]
        repair_once(cluster, port)
        left = info(port)["ae_keys_differing"] - differing_before
        data = keys * (len(key_name(0)) + value_size)
        result = {"keys": keys, "changed": changed, "seconds": round(seconds, 2), "bytes_moved": moved,
                  "data_bytes": data, "bytes_ratio": round(moved / data, 4), "keys_repaired": repaired,
                  "differing_after": left}
        progress(f"diverge: {changed} of {keys} keys repaired ({repaired} records) in {seconds:.1f} s, "
                 f"{moved} bytes moved for {data} bytes of data ({moved / data:.3f}); left after: {left}")
        if left:
            raise benchlib.BenchmarkFailed(f"a second exchange still found {left} differing keys")
        return result
    finally:
        cluster.stop()


def benchmark(cluster: launcher.LocalCluster, keys: int, requests: int) -> dict[str, tuple[float, float]]:
    """One ``redis-benchmark --cluster -t set,get`` run: test -> (rps, p99 ms).

    ``redis-benchmark --cluster`` puts a hash tag of its own in every key, so its
    keys are not the loaded ones: the run is client traffic competing with the
    repair for the same processes and cores, as any other traffic would."""
    entry = benchlib.ServerProcess("node", cluster.nodes[0].port, cluster.process(0), cluster.nodes[0].dir,
                                   _owns_workdir=False)
    run = benchlib.run_redis_benchmark(entry, [
        "--cluster", "-c", "50", "-P", "16", "-n", str(requests), "-r", str(keys), "-d", "100",
        "-t", "set,get"])
    return {row["test"]: (row["rps"], row.get("p99_latency_ms", float("nan"))) for row in run.rows}


def runs_while(busy: Callable[[], bool], cluster: launcher.LocalCluster, keys: int, requests: int,
               most: int) -> list[dict[str, tuple[float, float]]]:
    """Benchmark runs while ``busy()`` (at most ``most``); a run the work outlasted
    is not kept, since part of it was idle."""
    during = []
    while len(during) < most and busy():
        sample = benchmark(cluster, keys, requests)
        if not busy():
            break  # the work ended during this run: it does not count
        during.append(sample)
    return during


def load_phase(directory: str, keys: int, percent: float, value_size: int, repeat: int, requests: int) -> dict:
    cluster = start(directory, [])
    try:
        load(cluster, keys, b"v" * value_size)
        wait_everywhere(cluster, keys)
        changed = max(1, int(keys * percent / 100))
        port = make_divergence(cluster, keys, changed, value_size)

        def exchanges_done() -> int:
            fields = info(port)
            return fields["ae_exchanges"] + fields["ae_exchanges_failed"]

        idle = [benchmark(cluster, keys, requests) for _ in range(repeat)]
        before = exchanges_done()
        started = time.monotonic()
        peers = local(port).execute_command("CLUSTER", "REPAIR")
        during = runs_while(lambda: exchanges_done() < before + peers, cluster, keys, requests, repeat * 3)
        wait_for(lambda: exchanges_done() >= before + peers, CONVERGE_TIMEOUT, "the repair")
        repair_seconds = time.monotonic() - started
        after = [benchmark(cluster, keys, requests) for _ in range(repeat)]
        if not during:
            raise benchlib.BenchmarkFailed("the repair ended before one benchmark run: raise --load-keys")
        result: dict = {"keys": keys, "changed": changed, "repair_seconds": round(repair_seconds, 1),
                        "runs_during_repair": len(during)}
        for test in during[0]:
            idle_all = [sample[test] for sample in idle + after]
            busy = [sample[test] for sample in during]
            idle_rps = statistics.median(r for r, _ in idle_all)
            result[test] = {
                "idle_rps": [round(r) for r, _ in idle_all], "repair_rps": [round(r) for r, _ in busy],
                "ratio": round(statistics.median(r for r, _ in busy) / idle_rps, 3),
                "ratio_range": [round(min(r for r, _ in busy) / idle_rps, 3),
                                round(max(r for r, _ in busy) / idle_rps, 3)],
                "idle_p99_ms": statistics.median(p for _, p in idle_all),
                "repair_p99_ms": statistics.median(p for _, p in busy),
            }
            progress(f"load {test}: idle {result[test]['idle_rps']} rps, during the repair "
                     f"{result[test]['repair_rps']} rps, ratio {result[test]['ratio']}; p99 "
                     f"{result[test]['repair_p99_ms']} ms (idle {result[test]['idle_p99_ms']} ms)")
        return result
    finally:
        cluster.stop()


def move_phase(directory: str, keys: int, value_size: int, repeat: int, requests: int) -> dict:
    cluster = start(directory, [])
    try:
        load(cluster, keys, b"v" * value_size)
        wait_everywhere(cluster, keys)
        # The benchmark's keyspace is kept small: its keys sit in three hash-tagged
        # slots, which would otherwise dwarf the loaded keys in the move.
        span = min(keys, BENCHMARK_KEYS_DURING_MOVE)
        before = [benchmark(cluster, span, requests) for _ in range(repeat)]

        def moving() -> bool:
            return any(not p.idle for p in launcher.cluster_moves(cluster))

        started = time.monotonic()
        launcher.add(cluster.directory, 1, timeout=FORM_TIMEOUT, wait=False, cluster=cluster)
        during = runs_while(moving, cluster, span, requests, repeat * 3)
        wait_for(lambda: not moving(), CONVERGE_TIMEOUT, "the move")
        move_seconds = time.monotonic() - started
        after = [benchmark(cluster, span, requests) for _ in range(repeat)]
        if not during:
            raise benchlib.BenchmarkFailed("the move ended before one benchmark run: raise --move-keys")
        result: dict = {"keys": keys, "move_seconds": round(move_seconds, 1), "runs_during_move": len(during)}
        for test in during[0]:
            rps = lambda samples: [round(sample[test][0]) for sample in samples]  # noqa: E731
            busy = statistics.median(rps(during))
            result[test] = {
                "rps_3_nodes": rps(before), "rps_during_move": rps(during), "rps_4_nodes": rps(after),
                "ratio_to_4_nodes": round(busy / statistics.median(rps(after)), 3),
                "ratio_to_3_nodes": round(busy / statistics.median(rps(before)), 3),
                "ratio_range_to_4_nodes": [round(min(rps(during)) / statistics.median(rps(after)), 3),
                                           round(max(rps(during)) / statistics.median(rps(after)), 3)],
            }
            progress(f"move {test}: 3 nodes {result[test]['rps_3_nodes']}, during the move "
                     f"{result[test]['rps_during_move']}, 4 nodes {result[test]['rps_4_nodes']} rps; ratio "
                     f"{result[test]['ratio_to_4_nodes']} (to 4 nodes), {result[test]['ratio_to_3_nodes']} (to 3)")
        return result
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.aebench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="wiped,diverge,load", help="sections to run (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="small sizes, one round: checks the tool")
    p.add_argument("--keys", type=int, default=100_000, help="keys of wiped and diverge (default %(default)s)")
    p.add_argument("--diverge-percent", type=float, default=1.0, help="default %(default)s")
    p.add_argument("--load-keys", type=int, default=1_000_000, help="keys of the load section (default %(default)s)")
    p.add_argument("--load-percent", type=float, default=10.0, help="default %(default)s")
    p.add_argument("--move-keys", type=int, default=1_000_000, help="keys of the move section (default %(default)s)")
    p.add_argument("--value-size", type=int, default=100, help="default %(default)s")
    p.add_argument("--repeat", type=int, default=3, help="idle runs before and after the repair (default %(default)s)")
    p.add_argument("--requests", type=int, default=400_000,
                   help="requests per redis-benchmark run and test; it notices the end of a --cluster run on "
                        "a 250 ms tick, so runs of a few seconds keep that error small (default %(default)s)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.keys, args.load_keys, args.move_keys, args.repeat, args.requests = 3000, 20_000, 20_000, 1, 20_000
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - {"wiped", "diverge", "load", "move"}
    if unknown:
        print(f"aebench: unknown sections {sorted(unknown)}", file=sys.stderr)
        return 2
    results: dict = {"machine": benchlib.machine_info()}
    try:
        with tempfile.TemporaryDirectory(prefix="respkv-aebench-") as workdir:
            if "wiped" in sections:
                results["wiped"] = wiped(os.path.join(workdir, "wiped"), args.keys, args.value_size)
            if "diverge" in sections:
                results["diverge"] = diverge(os.path.join(workdir, "diverge"), args.keys, args.diverge_percent,
                                             args.value_size)
            if "load" in sections:
                results["load"] = load_phase(os.path.join(workdir, "load"), args.load_keys, args.load_percent,
                                             args.value_size, args.repeat, args.requests)
            if "move" in sections:
                results["move"] = move_phase(os.path.join(workdir, "move"), args.move_keys, args.value_size,
                                             args.repeat, args.requests)
    except (benchlib.BenchmarkFailed, launcher.LauncherError) as exc:
        print(f"aebench: failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    if args.json:
        benchlib.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
