"""Throughput of respkv relative to redis-server, measured with redis-benchmark.

Usage (from the repository root)::

    python -m tools.bench                      # respkv vs redis-server
    python -m tools.bench --reference-only     # redis-server vs redis-server

Absolute requests-per-second figures depend on the machine and on whatever else
runs on it, and they drift from one minute to the next. What this driver reports
instead is the ratio of respkv's throughput to that of a reference
``redis-server`` measured in the same run, on the same machine, with the same
``redis-benchmark`` settings. To keep slow drift from favouring one side, the two
servers are measured alternately (target, reference, target, reference, ...) and
each measurement is repeated; the median of the repeats is reported.

``--reference-only`` puts a second redis-server in respkv's place. The ratios
should then come out near 1.0, which shows how much noise the setup has and lets
the driver itself be checked before respkv can run.

The benchmarks are plain data (:data:`TESTS`): adding one is a matter of adding
an entry naming its ``redis-benchmark -t`` test (or the command it sends) and the
row it prints.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from tools import benchlib
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_redis_server, start_respkv, sigterm_interrupts


@dataclass(frozen=True)
class BenchTest:
    """One redis-benchmark test, as this driver knows it."""

    #: Name used on this driver's command line and in the results.
    name: str
    #: The ``test`` column of the CSV row that holds this test's numbers.
    label: str
    #: Value for ``redis-benchmark -t``; the name when not given.
    t_arg: str | None = None
    #: Further redis-benchmark arguments this test always needs.
    extra_args: tuple[str, ...] = ()
    #: A command redis-benchmark sends instead of a ``-t`` test (its arguments
    #: come last on redis-benchmark's command line).
    command: tuple[str, ...] = ()

    def benchmark_args(self) -> list[str]:
        if self.command:
            return [*self.extra_args, *self.command]
        return ["-t", self.t_arg or self.name, *self.extra_args]


#: Every test the driver can run. ``redis-benchmark`` prints helper rows for
#: some tests (LRANGE first fills the list with LPUSH); ``label`` picks the row
#: that measures the test itself.
TESTS: dict[str, BenchTest] = {
    t.name: t
    for t in (
        BenchTest("ping_inline", "PING_INLINE"),
        BenchTest("ping_mbulk", "PING_MBULK"),
        BenchTest("get", "GET"),
        BenchTest("set", "SET"),
        BenchTest("incr", "INCR"),
        BenchTest("mset", "MSET (10 keys)"),
        BenchTest("lpush", "LPUSH"),
        BenchTest("rpush", "RPUSH"),
        BenchTest("lpop", "LPOP"),
        BenchTest("rpop", "RPOP"),
        BenchTest("sadd", "SADD"),
        BenchTest("hset", "HSET"),
        BenchTest("spop", "SPOP"),
        BenchTest("zadd", "ZADD"),
        BenchTest("lrange_100", "LRANGE_100 (first 100 elements)"),
        BenchTest("lrange_600", "LRANGE_600 (first 600 elements)"),
        # Rotates the list the lpush test grew (Redis's circular-list pattern):
        # run it after lpush, with as many requests.
        BenchTest("rpoplpush", "RPOPLPUSH mylist mylist", command=("RPOPLPUSH", "mylist", "mylist")),
    )
}

#: What a plain ``python -m tools.bench`` measures.
DEFAULT_TESTS = ("get", "set", "incr", "mset", "ping_inline")
DEFAULT_PIPELINES = (1, 16)
DEFAULT_CLIENTS = 50
DEFAULT_REPEAT = 3


def default_requests(pipeline: int) -> int:
    """Requests per run when the user does not say: about a second of work for
    redis-server on two cores, a few seconds for respkv."""
    return 100_000 if pipeline == 1 else 300_000


#: Requests used by the warm-up pass that runs every selected test once on
#: each server before anything is timed. It also fails fast when a server
#: cannot run one of the tests, instead of minutes into the run.
WARMUP_REQUESTS = 2_000


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def _split_list(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def parse_requests(values: list[str] | None) -> Callable[[int], int]:
    """Turn ``--requests`` values into a pipeline -> request count function.

    Each value is ``N`` (for every pipeline depth) or ``P=N`` (for depth P);
    several can be given, comma-separated or by repeating the option.
    """
    per_pipeline: dict[int, int] = {}
    everywhere: int | None = None
    for item in _split_list(values):
        try:
            if "=" in item:
                p, n = item.split("=", 1)
                per_pipeline[int(p)] = int(n)
            else:
                everywhere = int(item)
        except ValueError:
            raise SystemExit(f"--requests: expected N or P=N, got {item!r}") from None
    for n in [everywhere, *per_pipeline.values()]:
        if n is not None and n <= 0:
            raise SystemExit("--requests: counts must be positive")

    def requests_for(pipeline: int) -> int:
        if pipeline in per_pipeline:
            return per_pipeline[pipeline]
        if everywhere is not None:
            return everywhere
        return default_requests(pipeline)

    return requests_for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Compare respkv's throughput with redis-server's using redis-benchmark.",
        epilog="Options whose value starts with '-' need the '=' form, "
        "e.g. --respkv-arg=--some-flag.",
    )
    add_run_options(parser)
    benchlib.add_common_options(parser, "bench")
    return parser


def add_run_options(
    parser: argparse.ArgumentParser,
    tests: tuple[str, ...] = DEFAULT_TESTS,
    pipelines: tuple[int, ...] = DEFAULT_PIPELINES,
) -> None:
    """What to run: tests, depths, clients, requests, repeats (shared with clusterbench).

    ``tests`` and ``pipelines`` are the driver's defaults, used when the options
    are not given.
    """
    parser.add_argument(
        "--tests", action="append", metavar="LIST",
        help=f"comma-separated tests (default: {','.join(tests)}; "
        f"known: {','.join(TESTS)})",
    )
    parser.add_argument(
        "--pipeline", action="append", metavar="LIST",
        help="comma-separated pipeline depths, redis-benchmark -P "
        f"(default: {','.join(map(str, pipelines))})",
    )
    parser.set_defaults(default_tests=tests, default_pipelines=pipelines)
    parser.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS,
        help=f"parallel connections, redis-benchmark -c (default: {DEFAULT_CLIENTS})",
    )
    parser.add_argument(
        "--requests", action="append", metavar="N|P=N",
        help="requests per run, redis-benchmark -n; N for all depths or P=N for "
        f"depth P (default: {default_requests(1)} at -P 1, {default_requests(16)} otherwise)",
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT,
        help=f"runs per server and test; the median is reported (default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--benchmark-args", default="", metavar="STRING",
        help="extra redis-benchmark arguments for every run, e.g. \"-r 100000 -d 100\"",
    )
    parser.add_argument(
        "--no-warmup", action="store_true",
        help="skip the short untimed pass over all tests before measuring",
    )


@dataclass
class Config:
    tests: list[BenchTest]
    pipelines: list[int]
    clients: int
    requests_for: Callable[[int], int]
    repeat: int
    json_path: str
    respkv_args: list[str]
    redis_args: list[str]
    benchmark_args: list[str]
    reference_only: bool
    warmup: bool
    run_timeout: float


def parse_args(argv: list[str] | None = None) -> Config:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.reference_only and ns.respkv_arg:
        parser.error("--respkv-arg makes no sense with --reference-only")
    return Config(**run_settings(parser, ns, "bench"))


def run_settings(parser: argparse.ArgumentParser, ns: argparse.Namespace, kind: str) -> dict:
    """Validate the options of :func:`add_run_options` and ``add_common_options``;
    return them as the keyword arguments of a driver's ``Config``."""
    names = _split_list(ns.tests) or list(ns.default_tests)
    unknown = [n for n in names if n.lower() not in TESTS]
    if unknown:
        parser.error(f"unknown test(s) {', '.join(unknown)}; known: {', '.join(TESTS)}")
    try:
        pipelines = [int(p) for p in _split_list(ns.pipeline)] or list(ns.default_pipelines)
    except ValueError:
        parser.error("--pipeline takes integers")
    if any(p < 1 for p in pipelines):
        parser.error("--pipeline depths must be at least 1")
    if ns.clients < 1 or ns.repeat < 1:
        parser.error("--clients and --repeat must be at least 1")
    return dict(
        tests=[TESTS[n.lower()] for n in dict.fromkeys(names)],
        pipelines=list(dict.fromkeys(pipelines)),
        clients=ns.clients,
        requests_for=parse_requests(ns.requests),
        repeat=ns.repeat,
        json_path=ns.json or benchlib.default_json_path(kind),
        respkv_args=ns.respkv_arg,
        redis_args=ns.redis_arg,
        benchmark_args=shlex.split(ns.benchmark_args),
        reference_only=ns.reference_only,
        warmup=not ns.no_warmup,
        run_timeout=ns.run_timeout,
    )


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #


@dataclass
class Side:
    """One of the two servers being compared."""

    #: ``target`` (respkv, normally) or ``reference`` (redis-server).
    role: str
    #: Human-readable name used in the table.
    name: str
    server: ServerProcess


def start_sides(cfg: Config) -> tuple[Side, Side]:
    """Start the server under test and the reference redis-server."""
    if cfg.reference_only:
        target = Side("target", "redis(as target)",
                      benchlib.start_server("redis-server", start_redis_server, cfg.redis_args))
    else:
        target = Side("target", "respkv",
                      benchlib.start_server("respkv", start_respkv, cfg.respkv_args))
    try:
        reference = Side("reference", "redis",
                         benchlib.start_server("redis-server", start_redis_server, cfg.redis_args))
    except BaseException:
        target.server.stop()
        raise
    return target, reference


def benchmark_args(cfg: Config, test: BenchTest, pipeline: int, requests: int) -> list[str]:
    return [
        "-c", str(cfg.clients), "-n", str(requests), "-P", str(pipeline),
        *cfg.benchmark_args, *test.benchmark_args(),  # a test's own command comes last
    ]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(cfg: Config, record: dict) -> None:
    """Start both servers, measure, and fill in ``record`` as results arrive.

    ``record`` is filled in place so that whatever was measured before a
    failure still ends up in the results file.
    """
    target, reference = start_sides(cfg)
    sides = (target, reference)
    record["sides"] = {
        s.role: {"name": s.name, "port": s.server.port, "argv": list(s.server.proc.args)}
        for s in sides
    }
    servers = [s.server for s in sides]
    warnings: set[str] = set()
    try:
        if cfg.warmup:
            log("warm-up: every test once on each server")
            for test in cfg.tests:
                for side in sides:
                    result = benchlib.run_redis_benchmark(
                        side.server, benchmark_args(cfg, test, 1, WARMUP_REQUESTS),
                        watch=servers, timeout=cfg.run_timeout,
                    )
                    result.row(test.label)
                    warnings.update(f"{side.name}: {w}" for w in result.warnings)

        results = record["results"]
        cells = {}
        for test in cfg.tests:
            for pipeline in cfg.pipelines:
                cell = {
                    "test": test.name,
                    "label": test.label,
                    "pipeline": pipeline,
                    "clients": cfg.clients,
                    "requests": cfg.requests_for(pipeline),
                    "samples": [],
                }
                results.append(cell)
                cells[test.name, pipeline] = cell

        total = cfg.repeat * len(cells) * 2
        done = 0
        for round_no in range(1, cfg.repeat + 1):
            for test in cfg.tests:
                for pipeline in cfg.pipelines:
                    cell = cells[test.name, pipeline]
                    args = benchmark_args(cfg, test, pipeline, cell["requests"])
                    for side in sides:
                        result = benchlib.run_redis_benchmark(
                            side.server, args, watch=servers, timeout=cfg.run_timeout,
                        )
                        row = result.row(test.label)
                        warnings.update(f"{side.name}: {w}" for w in result.warnings)
                        cell["samples"].append({
                            "round": round_no,
                            "role": side.role,
                            "seconds": round(result.seconds, 3),
                            **row,
                        })
                        done += 1
                        log(f"[{done}/{total}] round {round_no} {test.name} -P {pipeline} "
                            f"{side.name}: {row['rps']:.0f} rps")
                    summarize(cell)
        benchlib.check_alive(servers)
    finally:
        record["warnings"] = sorted(warnings)
        for side in sides:
            side.server.stop()


def summarize(cell: dict) -> None:
    """Add medians, the target/reference ratio and the paired ratios to a cell.

    ``ratio`` is the ratio of the two medians. ``pair_ratios`` divides each
    target sample by the reference sample taken right after it in the same
    round; their range shows how much the machine's load moved during the run,
    which is the first thing to look at when a ratio seems surprising.
    """
    medians = {}
    for role in ("target", "reference"):
        rps = [s["rps"] for s in cell["samples"] if s["role"] == role]
        if rps:
            medians[role] = statistics.median(rps)
    cell["median_rps"] = medians
    if "target" in medians and "reference" in medians:
        cell["ratio"] = medians["target"] / medians["reference"]
    by_round: dict[int, dict[str, float]] = {}
    for sample in cell["samples"]:
        by_round.setdefault(sample["round"], {})[sample["role"]] = sample["rps"]
    cell["pair_ratios"] = [
        pair["target"] / pair["reference"]
        for _, pair in sorted(by_round.items())
        if "target" in pair and "reference" in pair
    ]


def print_table(record: dict) -> None:
    target_name = record["sides"]["target"]["name"]
    reference_name = record["sides"]["reference"]["name"]
    rows = []
    for cell in record["results"]:
        if "ratio" not in cell:
            continue
        medians = cell["median_rps"]
        pairs = cell["pair_ratios"]
        rows.append([
            cell["test"], cell["pipeline"],
            f"{medians['target']:.0f}", f"{medians['reference']:.0f}", f"{cell['ratio']:.3f}",
            f"{min(pairs):.2f}-{max(pairs):.2f}",
        ])
    if rows:
        print(benchlib.format_table(
            ["test", "pipeline", f"{target_name} rps", f"{reference_name} rps", "ratio",
             "per-round ratios"],
            rows,
        ))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return drive("bench", argv, cfg, run)


def drive(kind: str, argv: list[str] | None, cfg, run_all, **extra_config) -> int:
    """Run ``run_all(cfg, record)``, then write the JSON record and print the table.

    Shared by the throughput drivers; ``extra_config`` adds driver-specific settings
    to the record.  Returns the exit status (1 when a run failed).
    """
    record: dict = {
        "kind": kind,
        "started_at": benchlib.timestamp(),
        "command": ["python", "-m", f"tools.{kind}", *(sys.argv[1:] if argv is None else argv)],
        "config": {
            **extra_config,
            "tests": [t.name for t in cfg.tests],
            "pipelines": cfg.pipelines,
            "clients": cfg.clients,
            "requests": {str(p): cfg.requests_for(p) for p in cfg.pipelines},
            "repeat": cfg.repeat,
            "respkv_args": cfg.respkv_args,
            "redis_args": cfg.redis_args,
            "benchmark_args": cfg.benchmark_args,
            "reference_only": cfg.reference_only,
            "warmup": cfg.warmup,
        },
        "machine": benchlib.machine_info(),
        "ratio_is": "target median rps / reference median rps (higher is better for the target)",
        "results": [],
    }
    started = time.monotonic()
    status = 0
    try:
        run_all(cfg, record)
    except BenchmarkFailed as exc:
        record["error"] = str(exc)
        log(f"FAILED: {exc}")
        status = 1
    except KeyboardInterrupt:
        record["error"] = "interrupted"
        log("interrupted")
        status = 130
    finally:
        record["finished_at"] = benchlib.timestamp()
        record["wall_seconds"] = round(time.monotonic() - started, 1)
        benchlib.write_json(cfg.json_path, record)
    if "sides" in record:
        print_table(record)
    for warning in record.get("warnings", []):
        log(f"warning: {warning}")
    log(f"results written to {cfg.json_path}")
    return status


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
