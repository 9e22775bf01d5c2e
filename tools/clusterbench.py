"""Throughput of a respkv cluster relative to a Redis Cluster, measured with
``redis-benchmark --cluster``.

Usage (from the repository root)::

    python -m tools.clusterbench                   # 3-node respkv vs 3-master Redis Cluster
    python -m tools.clusterbench --reference-only  # Redis Cluster vs Redis Cluster
    python -m tools.clusterbench --rf 3 --reference-rf 1   # replication's cost: RF=3 vs RF=1

Both clusters run on this machine at the same time, on free ports: the respkv one
started by :mod:`respkv.launcher` exactly as ``respkv cluster up`` starts
it, the reference one as ``redis-server --cluster-enabled yes`` processes joined
by ``redis-cli --cluster create ... --cluster-replicas 0``.  ``redis-benchmark
--cluster`` is pointed at the first node of each; it reads ``CLUSTER NODES``,
spreads its clients over the masters and tags its keys so that every master gets
a share.

With ``--reference-rf N`` the reference is a second respkv cluster of the same
size started with replication factor N instead of a Redis Cluster, so the ratio is
what replication costs (e.g. RF=3 with W=2/R=2 against RF=1).  A respkv cluster
given a password (``--respkv-arg=--requirepass=PW``) is benchmarked with
``redis-benchmark -a PW``; the launcher learns the password from the same argument.

As with :mod:`tools.bench`, what counts is the ratio of the two throughputs
measured in one run: the clusters are measured alternately and every measurement
is repeated, the median is reported, and ``--reference-only`` (a second Redis
Cluster in respkv's place) shows the noise level.  The tests are the same data as
:data:`tools.bench.TESTS`; the summaries and the table are :mod:`tools.bench`'s,
the benchmark runs and result files :mod:`tools.benchlib`'s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from respkv import launcher
from tools import bench, benchlib
from tools.bench import TESTS, BenchTest
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_redis_server

DEFAULT_NODES = 3
DEFAULT_TESTS = ("set", "get")
DEFAULT_PIPELINES = (16,)
#: Seconds either cluster may take to form.
FORM_TIMEOUT = 90.0


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
    return Config(
        nodes=ns.nodes, rf=ns.rf, reference_rf=ns.reference_rf, routing=ns.routing,
        **bench.run_settings(parser, ns, "clusterbench"),
    )


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

    @property
    def entry(self) -> ServerProcess:
        return self.servers[0]

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


def start_respkv_cluster(role: str, name: str, cfg: Config, rf: int | None) -> ClusterSide:
    """A local respkv cluster from :func:`respkv.launcher.up` in a temporary
    directory (removed again by ``stop``)."""
    workdir = tempfile.mkdtemp(prefix="respkv-cluster-")
    try:
        cluster = launcher.up(workdir, cfg.nodes, 0, rf=rf, routing=cfg.routing,
                              server_args=cfg.respkv_args, timeout=FORM_TIMEOUT)
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

    return ClusterSide(role, name, servers, stop, password=cluster.password)


def start_sides(cfg: Config) -> tuple[ClusterSide, ClusterSide]:
    if cfg.reference_only:
        target = start_redis_cluster("target", "redis-cluster(as target)", cfg.nodes, cfg.redis_args)
    else:
        target = start_respkv_cluster("target", "respkv-cluster", cfg, cfg.rf)
    try:
        if cfg.reference_rf is not None:
            reference = start_respkv_cluster(
                "reference", f"respkv-cluster(rf={cfg.reference_rf})", cfg, cfg.reference_rf)
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
        *test.benchmark_args(), *cfg.benchmark_args,
    ]


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
                    result = benchlib.run_redis_benchmark(
                        side.entry, side.benchmark_args(args), watch=servers, timeout=cfg.run_timeout)
                    row = result.row(test.label)
                    warnings.update(f"{side.name}: {w}" for w in result.warnings)
                    cell["samples"].append({"round": round_no, "role": side.role,
                                            "seconds": round(result.seconds, 3), **row})
                    done += 1
                    bench.log(f"[{done}/{total}] round {round_no} {name} -P {pipeline} "
                              f"{side.name}: {row['rps']:.0f} rps")
                bench.summarize(cell)
        benchlib.check_alive(servers)
    finally:
        record["warnings"] = sorted(warnings)
        for side in sides:
            side.stop()


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return bench.drive("clusterbench", argv, cfg, run, nodes=cfg.nodes, rf=cfg.rf,
                       reference_rf=cfg.reference_rf, routing=cfg.routing)


if __name__ == "__main__":
    sys.exit(main())
