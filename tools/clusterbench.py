"""Throughput of a respkv cluster relative to a Redis Cluster, measured with
``redis-benchmark --cluster``.

Usage (from the repository root)::

    python -m tools.clusterbench                   # 3-node respkv vs 3-master Redis Cluster
    python -m tools.clusterbench --reference-only  # Redis Cluster vs Redis Cluster
    python -m tools.clusterbench --rf 3 --reference-rf 1   # replication's cost: RF=3 vs RF=1
    python -m tools.clusterbench --rf 3 --reference-rf 3 --reference-arg=--convergent-types=no \
        --tests sadd,hset,incr                     # what convergent types' metadata costs

Both clusters run on this machine at the same time, on free ports: the respkv one
started by :mod:`respkv.launcher` exactly as ``respkv cluster up`` starts
it, the reference one as ``redis-server --cluster-enabled yes`` processes joined
by ``redis-cli --cluster create ... --cluster-replicas 0``.  ``redis-benchmark
--cluster`` is pointed at the first node of each; it reads ``CLUSTER NODES``,
spreads its clients over the masters and tags its keys so that every master gets
a share.

With ``--reference-rf N`` the reference is a second respkv cluster of the same
size started with replication factor N instead of a Redis Cluster, so the ratio is
what replication costs (e.g. RF=3 with W=2/R=2 against RF=1); ``--reference-arg``
adds server arguments to that reference cluster only (the same RF with a setting
changed shows what the setting costs).  A respkv cluster
given a password (``--respkv-arg=--requirepass=PW``) is benchmarked with
``redis-benchmark -a PW``; the launcher learns the password from the same argument.

As with :mod:`tools.bench`, what counts is the ratio of the two throughputs
measured in one run: the clusters are measured alternately and every measurement
is repeated, the median is reported, and ``--reference-only`` (a second Redis
Cluster in respkv's place) shows the noise level.

Beside throughput, every measured run reports the CPU time its cluster spent per
request: user+sys time of all of the cluster's node processes (from
``/proc/<pid>/stat``), read before ``redis-benchmark`` starts and again once the
nodes have gone quiet after it exits, divided by the requests it had answered
(``-n``).  With ``--reference-rf 1`` the ratio of the two is what replication
multiplies a request's CPU cost by; throughput alone hides that on a machine
whose cores are shared by all the nodes.  The tests are the same data as
:data:`tools.bench.TESTS`; the summaries and the table are :mod:`tools.bench`'s,
the benchmark runs and result files :mod:`tools.benchlib`'s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import redis

from respkv import launcher
from tools import bench, benchlib
from tools.bench import TESTS, BenchTest
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_redis_server, sigterm_interrupts

DEFAULT_NODES = 3
DEFAULT_TESTS = ("set", "get")
DEFAULT_PIPELINES = (16,)
#: Seconds either cluster may take to form.
FORM_TIMEOUT = 90.0
#: After a run, the nodes count as quiet again once all of them together use less
#: than this many cores over :data:`SETTLE_INTERVAL` (an idle respkv node uses a few
#: hundredths of a core for gossip and timers; replication's tail uses far more).
SETTLE_CORES = 0.25
SETTLE_INTERVAL = 0.5
#: ... or after this many seconds, whichever comes first.
SETTLE_TIMEOUT = 10.0
#: Seconds over which each cluster's idle CPU use is sampled before measuring.
IDLE_SAMPLE_SECONDS = 2.0


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.clusterbench",
        description="Compare a local respkv cluster's throughput with a Redis Cluster's "
        "using redis-benchmark --cluster.",
        epilog="Options whose value starts with '-' need the '=' form, "
        "e.g. --respkv-arg=--some-flag.",
    )
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES,
                        help=f"nodes (masters) per cluster (default: {DEFAULT_NODES})")
    parser.add_argument("--rf", type=int, help="respkv replication factor (server default if omitted)")
    parser.add_argument("--reference-rf", type=int,
                        help="compare against a respkv cluster with this replication factor "
                             "instead of a Redis Cluster")
    parser.add_argument("--reference-arg", action="append", default=[],
                        help="extra server argument of the --reference-rf cluster only (repeatable)")
    parser.add_argument("--routing", choices=launcher.ROUTINGS,
                        help="respkv routing (server default if omitted)")
    bench.add_run_options(parser, tests=DEFAULT_TESTS, pipelines=DEFAULT_PIPELINES)
    benchlib.add_common_options(parser, "clusterbench")
    return parser


@dataclass
class Config(bench.Config):
    """:class:`tools.bench.Config` plus the clusters' shape."""

    nodes: int
    rf: int | None
    reference_rf: int | None
    routing: str | None
    reference_args: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> Config:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.nodes < 3:
        parser.error("--nodes must be at least 3 (redis-cli --cluster create needs 3 masters)")
    if ns.reference_only and (ns.respkv_arg or ns.rf is not None or ns.routing is not None):
        parser.error("--respkv-arg, --rf and --routing make no sense with --reference-only")
    if ns.reference_only and ns.reference_rf is not None:
        parser.error("--reference-rf and --reference-only exclude each other")
    if ns.reference_rf is not None and ns.reference_rf < 1:
        parser.error("--reference-rf must be at least 1")
    if ns.reference_arg and ns.reference_rf is None:
        parser.error("--reference-arg needs --reference-rf (it configures that respkv cluster)")
    settings = bench.run_settings(parser, ns, "clusterbench")
    single = [t.name for t in settings["tests"] if t.command]
    if single:  # redis-benchmark --cluster routes a command of our own by its {tag} keys only
        parser.error(f"{', '.join(single)} runs against one node only (tools.bench)")
    return Config(nodes=ns.nodes, rf=ns.rf, reference_rf=ns.reference_rf, routing=ns.routing,
                  reference_args=ns.reference_arg, **settings)


# --------------------------------------------------------------------------- #
# CPU time of the node processes
# --------------------------------------------------------------------------- #

_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User+sys CPU time the process ``pid`` (all its threads) has used so far.

    From fields 14 and 15 (utime, stime) of ``/proc/<pid>/stat``, in clock ticks.
    The command name in field 2 may hold spaces and parentheses, so the fields are
    counted from the last ``)``.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError) as exc:
        raise BenchmarkFailed(f"cannot read the CPU time of pid {pid}: {exc}") from None
    # fields[0] is field 3 (state), so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK


# --------------------------------------------------------------------------- #
# The two clusters
# --------------------------------------------------------------------------- #


@dataclass
class ClusterSide:
    """One of the two clusters being compared."""

    #: ``target`` (respkv, normally) or ``reference`` (Redis Cluster).
    role: str
    name: str
    #: Every node; the first is the one redis-benchmark connects to.
    servers: list[ServerProcess]
    stop: Callable[[], None] = field(repr=False)
    #: The nodes' password (a respkv cluster started with --respkv-arg=--requirepass=...).
    password: str | None = field(default=None, repr=False)
    #: For a respkv cluster: the work its nodes report deferred (see :func:`deferred_work`).
    backlog: Callable[[], int] | None = field(default=None, repr=False)

    @property
    def entry(self) -> ServerProcess:
        return self.servers[0]

    def cpu(self) -> list[float]:
        """CPU seconds used so far by each node process."""
        return [cpu_seconds(s.pid) for s in self.servers]

    def idle_cores(self, seconds: float = IDLE_SAMPLE_SECONDS) -> float:
        """Cores the nodes use together while nobody sends them requests."""
        before, started = sum(self.cpu()), time.monotonic()
        time.sleep(seconds)
        return (sum(self.cpu()) - before) / (time.monotonic() - started)

    def settle(self) -> float:
        """Wait until the nodes have finished the work a run left behind (such as
        replica writes still in flight when the last reply arrived, and commit
        log bytes not yet written): they use little CPU and report no deferred
        work; return the seconds waited."""
        started = time.monotonic()
        last = sum(self.cpu())
        while time.monotonic() - started < SETTLE_TIMEOUT:
            time.sleep(SETTLE_INTERVAL)
            now = sum(self.cpu())
            if now - last < SETTLE_CORES * SETTLE_INTERVAL and not (self.backlog and self.backlog()):
                break
            last = now
        return time.monotonic() - started

    def benchmark_args(self, args: list[str]) -> list[str]:
        """``args`` plus what redis-benchmark needs to authenticate with this side."""
        return [*args, "-a", self.password] if self.password else list(args)

    def describe(self) -> dict:
        return {"name": self.name,
                "nodes": [{"port": s.port, "argv": list(s.proc.args)} for s in self.servers]}


def _wait_formed(ports: list[int], timeout: float) -> None:
    """Wait until every node says ``cluster_state:ok`` and knows all the others."""
    deadline = time.monotonic() + timeout
    while True:
        states = {}
        for port in ports:
            try:
                info = launcher.parse_info(benchlib.command(port, "CLUSTER", "INFO", timeout=5))
                states[port] = (info.get("cluster_state"), info.get("cluster_known_nodes"))
            except (OSError, BenchmarkFailed) as exc:
                states[port] = (str(exc), None)
        if all(s == ("ok", str(len(ports))) for s in states.values()):
            return
        if time.monotonic() >= deadline:
            raise BenchmarkFailed(f"Redis Cluster did not form within {timeout:.0f}s: {states}")
        time.sleep(0.1)


def start_redis_cluster(role: str, name: str, nodes: int, extra: list[str]) -> ClusterSide:
    """``nodes`` redis-servers in cluster mode, joined by ``redis-cli --cluster create``."""
    servers: list[ServerProcess] = []

    def stop() -> None:
        for server in servers:
            server.stop()

    try:
        for _ in range(nodes):
            servers.append(benchlib.start_server(
                "redis-server", start_redis_server,
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000", *extra],
            ))
        cli = shutil.which("redis-cli")
        if cli is None:
            raise BenchmarkFailed("redis-cli is not installed (it comes with redis-tools)")
        argv = [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers),
                "--cluster-replicas", "0", "--cluster-yes"]
        try:
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=FORM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchmarkFailed(f"{' '.join(argv)} did not finish within {FORM_TIMEOUT:.0f}s") from None
        if out.returncode != 0 or "All 16384 slots covered" not in out.stdout:
            raise BenchmarkFailed(f"{' '.join(argv)} failed (exit {out.returncode}):\n"
                                  f"{(out.stdout + out.stderr)[-2000:]}")
        _wait_formed([s.port for s in servers], FORM_TIMEOUT)
    except BaseException:
        stop()
        raise
    return ClusterSide(role, name, servers, stop)


def start_respkv_cluster(role: str, name: str, cfg: Config, rf: int | None, extra: list[str] = ()) -> ClusterSide:
    """A local respkv cluster from :func:`respkv.launcher.up` in a temporary
    directory (removed again by ``stop``), with server arguments ``extra`` beside
    ``--respkv-arg``'s."""
    workdir = tempfile.mkdtemp(prefix="respkv-cluster-")
    try:
        cluster = launcher.up(workdir, cfg.nodes, 0, rf=rf, routing=cfg.routing,
                              server_args=[*cfg.respkv_args, *extra], timeout=FORM_TIMEOUT)
    except launcher.LauncherError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise BenchmarkFailed(f"could not start the respkv cluster: {exc}") from None
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    # Named "node" so that benchlib finds each node's log as <dir>/node.log.
    servers = [ServerProcess("node", n.port, cluster.process(n.index), n.dir, _owns_workdir=False)
               for n in cluster.nodes]

    def stop() -> None:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    ports = [n.port for n in cluster.nodes]
    return ClusterSide(role, name, servers, stop, password=cluster.password,
                       backlog=lambda: deferred_work(ports, cluster.password))


def deferred_work(ports: list[int], password: str | None) -> int:
    """What the respkv nodes at ``ports`` still owe the writes they answered:
    commit log bytes not yet written (``aof_buffer_length``)."""
    owed = 0
    for port in ports:
        with redis.Redis(port=port, password=password, socket_timeout=5) as client:
            info = client.info("persistence")
        owed += int(info.get("aof_buffer_length", 0))
    return owed


def start_sides(cfg: Config) -> tuple[ClusterSide, ClusterSide]:
    if cfg.reference_only:
        target = start_redis_cluster("target", "redis-cluster(as target)", cfg.nodes, cfg.redis_args)
    else:
        name = "respkv-cluster" if cfg.rf is None else f"respkv-cluster(rf={cfg.rf})"
        target = start_respkv_cluster("target", name, cfg, cfg.rf)
    try:
        if cfg.reference_rf is not None:
            label = " ".join([f"rf={cfg.reference_rf}", *cfg.reference_args])
            reference = start_respkv_cluster(
                "reference", f"respkv-cluster({label})", cfg, cfg.reference_rf, cfg.reference_args)
        else:
            reference = start_redis_cluster("reference", "redis-cluster", cfg.nodes, cfg.redis_args)
    except BaseException:
        target.stop()
        raise
    return target, reference


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #


def benchmark_args(cfg: Config, test: BenchTest, pipeline: int, requests: int) -> list[str]:
    return [
        "--cluster", "-c", str(cfg.clients), "-n", str(requests), "-P", str(pipeline),
        *cfg.benchmark_args, *test.benchmark_args(),  # a test's own command comes last
    ]


def measure(side: ClusterSide, args: list[str], requests: int, watch: list[ServerProcess],
            timeout: float) -> tuple[benchlib.BenchmarkRun, dict]:
    """One timed ``redis-benchmark`` run against ``side``, with the CPU time its
    nodes spent on it.

    The nodes' CPU time is read right before the run, when ``redis-benchmark``
    exits, and once they have settled (:meth:`ClusterSide.settle`); the last
    reading counts, so work a run leaves behind is charged to it.  Requests are
    ``-n``: ``redis-benchmark`` stops once that many replies have arrived.
    """
    before = side.cpu()
    started = time.monotonic()
    result = benchlib.run_redis_benchmark(side.entry, side.benchmark_args(args),
                                          watch=watch, timeout=timeout)
    at_exit = side.cpu()
    settle_seconds = side.settle()
    after = side.cpu()
    window = time.monotonic() - started
    per_node = [a - b for a, b in zip(after, before)]
    cpu = {
        "requests": requests,
        "cpu_seconds": round(sum(per_node), 3),
        "cpu_seconds_per_node": [round(c, 3) for c in per_node],
        "cpu_seconds_at_exit": round(sum(at_exit) - sum(before), 3),
        "settle_seconds": round(settle_seconds, 2),
        "cpu_window_seconds": round(window, 3),
        "cpu_us_per_request": sum(per_node) / requests * 1e6,
    }
    return result, cpu


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_cpu(cell: dict, idle_cores: dict[str, float]) -> None:
    """Add CPU per request to a cell that :func:`tools.bench.summarize` has seen.

    Per side: median, lowest and highest µs per request over the repeats, also net
    of the side's idle CPU use (``idle_cores`` × the sample's CPU window).  Then,
    like the throughput ratio, the target/reference ratio of the medians and the
    per-round ratios (each target sample against the reference sample of the same
    round), and the median and range of the per-round throughput and CPU ratios.
    """
    for sample in cell["samples"]:
        idle = idle_cores.get(sample["role"], 0.0) * sample["cpu_window_seconds"]
        sample["net_cpu_us_per_request"] = (sample["cpu_seconds"] - idle) / sample["requests"] * 1e6
    for key in ("cpu_us_per_request", "net_cpu_us_per_request"):
        per_role = {}
        for role in ("target", "reference"):
            values = [s[key] for s in cell["samples"] if s["role"] == role]
            if values:
                per_role[role] = _spread(values)
        cell[key] = per_role
    medians = cell["cpu_us_per_request"]
    if "target" in medians and "reference" in medians:
        cell["cpu_ratio"] = medians["target"]["median"] / medians["reference"]["median"]
        net = cell["net_cpu_us_per_request"]
        if net["reference"]["median"] > 0:
            cell["net_cpu_ratio"] = net["target"]["median"] / net["reference"]["median"]
    by_round: dict[int, dict[str, dict]] = {}
    for sample in cell["samples"]:
        by_round.setdefault(sample["round"], {})[sample["role"]] = sample
    pairs = [p for _, p in sorted(by_round.items()) if "target" in p and "reference" in p]
    cell["cpu_pair_ratios"] = [
        p["target"]["cpu_us_per_request"] / p["reference"]["cpu_us_per_request"] for p in pairs
    ]
    cell["round_ratios"] = {}
    if pairs:
        cell["round_ratios"] = {"rps": _spread(cell["pair_ratios"]),
                                "cpu_us_per_request": _spread(cell["cpu_pair_ratios"])}


def print_cpu_table(record: dict) -> None:
    """Throughput and CPU per request of both sides, with the ratios."""
    def us(spread: dict) -> str:
        return f"{spread['median']:.1f} ({spread['min']:.1f}-{spread['max']:.1f})"

    def ratio(value: float, spread: dict) -> str:
        return f"{value:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"

    rows = []
    for cell in record["results"]:
        if "cpu_ratio" not in cell:
            continue
        cpu, rps = cell["cpu_us_per_request"], cell["median_rps"]
        rows.append([
            cell["test"], cell["pipeline"],
            f"{rps['target']:.0f}", us(cpu["target"]), f"{rps['reference']:.0f}", us(cpu["reference"]),
            ratio(cell["ratio"], cell["round_ratios"]["rps"]),
            ratio(cell["cpu_ratio"], cell["round_ratios"]["cpu_us_per_request"]),
            f"{cell['net_cpu_ratio']:.2f}" if "net_cpu_ratio" in cell else "-",
        ])
    if not rows:
        return
    target, reference = record["sides"]["target"]["name"], record["sides"]["reference"]["name"]
    print()
    print(f"CPU per request (µs, user+sys of all node processes ÷ requests answered):\n"
          f"  T = {target}, R = {reference}; medians over the repeats, (lowest-highest)")
    print(benchlib.format_table(
        ["test", "pipeline", "T rps", "T CPU µs/req", "R rps", "R CPU µs/req",
         "rps T/R (rounds)", "CPU/req T/R (rounds)", "CPU T/R net of idle"],
        rows,
    ))
    idle = record.get("idle_cores", {})
    if idle:
        print(f"  idle CPU use, counted in µs/req above: T {idle.get('target', 0):.3f} cores, "
              f"R {idle.get('reference', 0):.3f} cores ('net of idle' subtracts it)")


def run(cfg: Config, record: dict) -> None:
    """Start both clusters, measure alternately, and fill ``record`` in place (so
    whatever was measured before a failure still reaches the results file)."""
    target, reference = start_sides(cfg)
    sides = (target, reference)
    record["sides"] = {s.role: s.describe() for s in sides}
    servers = [server for side in sides for server in side.servers]
    warnings: set[str] = set()
    try:
        if cfg.warmup:
            bench.log("warm-up: every test once on each cluster")
            for test in cfg.tests:
                for side in sides:
                    result = benchlib.run_redis_benchmark(
                        side.entry, side.benchmark_args(benchmark_args(cfg, test, 1, bench.WARMUP_REQUESTS)),
                        watch=servers, timeout=cfg.run_timeout,
                    )
                    result.row(test.label)
                    warnings.update(f"{side.name}: {w}" for w in result.warnings)

        record["cpu_per_request_is"] = (
            "user+sys CPU seconds of all of a side's node processes from just before "
            "redis-benchmark starts until the nodes are quiet after it exits, divided by "
            "the requests it was told to complete (-n), in microseconds")
        record["idle_cores"] = {}
        for side in sides:
            side.settle()
        for side in sides:
            record["idle_cores"][side.role] = round(side.idle_cores(), 4)
        bench.log("idle CPU use: " + ", ".join(
            f"{side.name} {record['idle_cores'][side.role]:.3f} cores" for side in sides))

        cells = {}
        for test in cfg.tests:
            for pipeline in cfg.pipelines:
                cell = {"test": test.name, "label": test.label, "pipeline": pipeline,
                        "clients": cfg.clients, "requests": cfg.requests_for(pipeline),
                        "samples": []}
                record["results"].append(cell)
                cells[test.name, pipeline] = cell

        total = cfg.repeat * len(cells) * 2
        done = 0
        for round_no in range(1, cfg.repeat + 1):
            for (name, pipeline), cell in cells.items():
                test = TESTS[name]
                args = benchmark_args(cfg, test, pipeline, cell["requests"])
                for side in sides:
                    result, cpu = measure(side, args, cell["requests"], servers, cfg.run_timeout)
                    row = result.row(test.label)
                    warnings.update(f"{side.name}: {w}" for w in result.warnings)
                    cell["samples"].append({"round": round_no, "role": side.role,
                                            "seconds": round(result.seconds, 3), **row, **cpu})
                    done += 1
                    bench.log(f"[{done}/{total}] round {round_no} {name} -P {pipeline} "
                              f"{side.name}: {row['rps']:.0f} rps, "
                              f"{cpu['cpu_us_per_request']:.1f} µs CPU/request "
                              f"(settled after {cpu['settle_seconds']:.1f}s)")
                bench.summarize(cell)
                summarize_cpu(cell, record["idle_cores"])
        benchlib.check_alive(servers)
    finally:
        record["warnings"] = sorted(warnings)
        for side in sides:
            side.stop()


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    records: list[dict] = []

    def run_keeping_record(cfg: Config, record: dict) -> None:
        records.append(record)
        run(cfg, record)

    status = bench.drive("clusterbench", argv, cfg, run_keeping_record, nodes=cfg.nodes,
                         rf=cfg.rf, reference_rf=cfg.reference_rf, routing=cfg.routing)
    if records and "sides" in records[0]:
        print_cpu_table(records[0])
    return status


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
