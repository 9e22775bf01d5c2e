"""Resident memory per key of respkv relative to redis-server.

Usage (from the repository root)::

    python -m tools.membench                   # respkv vs redis-server
    python -m tools.membench --reference-only  # redis-server vs redis-server

For each server in turn: start it, read its resident set size (VmRSS), fill it
with ``redis-benchmark -t set -r 1000000 -n 1000000 -d 100 -P 32`` (about 632k
distinct keys with 100-byte values), then read ``DBSIZE`` and VmRSS again. The
growth divided by the number of keys is the memory one key costs, including
the store's per-key overhead and allocator waste but not the fixed cost of an
empty process. The result that matters is respkv's figure divided by
redis-server's from the same run; the project's target is at most 1.3.

The servers run one after the other, never together, so neither disturbs the
other's numbers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Callable

from tools import benchlib
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_redis_server, start_respkv, sigterm_interrupts

DEFAULT_BENCHMARK_ARGS = "-t set -r 1000000 -n 1000000 -d 100 -P 32 -q"
TARGET_RATIO = 1.3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.membench",
        description="Compare respkv's resident memory per key with redis-server's.",
        epilog="Options whose value starts with '-' need the '=' form, "
        "e.g. --respkv-arg=--some-flag.",
    )
    parser.add_argument(
        "--benchmark-args", default=DEFAULT_BENCHMARK_ARGS, metavar="STRING",
        help="redis-benchmark arguments that fill the server "
        f"(default: \"{DEFAULT_BENCHMARK_ARGS}\")",
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, metavar="SECONDS",
        help="wait this long before each memory reading (default: 1.0)",
    )
    parser.add_argument(
        "--fail-above", type=float, metavar="RATIO",
        help="exit with status 2 when the ratio is above RATIO (e.g. 1.3)",
    )
    benchlib.add_common_options(parser, "membench")
    return parser


def _used_memory(server: ServerProcess) -> int:
    """The server's ``used_memory`` (INFO memory)."""
    text = benchlib.command(server.port, "INFO", "memory")
    text = text.decode() if isinstance(text, bytes) else str(text)
    for line in text.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    raise BenchmarkFailed(f"{server.name}: INFO memory has no used_memory")


def measure(
    role: str,
    name: str,
    start: Callable[[list[str]], ServerProcess],
    server_args: list[str],
    ns: argparse.Namespace,
) -> dict:
    """Start one server, fill it, and return its memory figures."""
    server = benchlib.start_server(name, start, server_args)
    try:
        time.sleep(ns.settle)
        rss_before = server.rss_bytes()
        used_before = _used_memory(server)
        result = benchlib.run_redis_benchmark(
            server, shlex.split(ns.benchmark_args), timeout=ns.run_timeout,
        )
        time.sleep(ns.settle)
        benchlib.check_alive([server])
        dbsize = benchlib.command(server.port, "DBSIZE")
        rss_after = server.rss_bytes()
        used_after = _used_memory(server)
        benchlib.check_alive([server])
    finally:
        server.stop()
    if not isinstance(dbsize, int) or dbsize <= 0:
        raise BenchmarkFailed(f"{name}: DBSIZE returned {dbsize!r} after the fill")
    per_key = (rss_after - rss_before) / dbsize
    # How well the server's own used_memory follows the real growth of the process.
    accounting = (used_after - used_before) / (rss_after - rss_before) if rss_after > rss_before else None
    print(
        f"{name}: {dbsize} keys, RSS {rss_before / 2**20:.1f} MiB -> {rss_after / 2**20:.1f} MiB, "
        f"{per_key:.1f} bytes/key; used_memory grew {(used_after - used_before) / 2**20:.1f} MiB"
        + (f" = {accounting:.3f} of the RSS growth" if accounting is not None else ""),
        file=sys.stderr, flush=True,
    )
    return {
        "role": role,
        "name": name,
        "argv": list(server.proc.args),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "dbsize": dbsize,
        "bytes_per_key": per_key,
        "used_memory_before": used_before,
        "used_memory_after": used_after,
        "used_memory_growth_over_rss_growth": accounting,
        "fill_seconds": round(result.seconds, 3),
        "fill_rows": result.rows,
        "warnings": result.warnings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.reference_only and ns.respkv_arg:
        parser.error("--respkv-arg makes no sense with --reference-only")
    json_path = ns.json or benchlib.default_json_path("membench")
    record: dict = {
        "kind": "membench",
        "started_at": benchlib.timestamp(),
        "command": ["python", "-m", "tools.membench", *(sys.argv[1:] if argv is None else argv)],
        "config": {
            "benchmark_args": shlex.split(ns.benchmark_args),
            "respkv_args": ns.respkv_arg,
            "redis_args": ns.redis_arg,
            "reference_only": ns.reference_only,
            "settle_seconds": ns.settle,
        },
        "machine": benchlib.machine_info(),
        "ratio_is": "target bytes/key / reference bytes/key (lower is better for the target)",
        "target_ratio": TARGET_RATIO,
        "sides": {},
    }
    if ns.reference_only:
        target = ("redis(as target)", start_redis_server, ns.redis_arg)
    else:
        target = ("respkv", start_respkv, ns.respkv_arg)
    status = 0
    try:
        record["sides"]["target"] = measure("target", *target, ns)
        record["sides"]["reference"] = measure(
            "reference", "redis", start_redis_server, ns.redis_arg, ns,
        )
        ratio = (record["sides"]["target"]["bytes_per_key"]
                 / record["sides"]["reference"]["bytes_per_key"])
        record["ratio"] = ratio
        record["target_met"] = ratio <= TARGET_RATIO
    except BenchmarkFailed as exc:
        record["error"] = str(exc)
        print(f"FAILED: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        record["error"] = "interrupted"
        status = 130
    finally:
        record["finished_at"] = benchlib.timestamp()
        benchlib.write_json(json_path, record)

    if "ratio" in record:
        sides = record["sides"]
        print(benchlib.format_table(
            ["server", "keys", "RSS before MiB", "RSS after MiB", "bytes/key"],
            [
                [s["name"], s["dbsize"], f"{s['rss_before_bytes'] / 2**20:.1f}",
                 f"{s['rss_after_bytes'] / 2**20:.1f}", f"{s['bytes_per_key']:.1f}"]
                for s in (sides["target"], sides["reference"])
            ],
        ))
        verdict = "met" if record["target_met"] else "NOT met"
        print(f"ratio {sides['target']['name']}/{sides['reference']['name']}: "
              f"{record['ratio']:.3f} (target <= {TARGET_RATIO}: {verdict})")
        if ns.fail_above is not None and record["ratio"] > ns.fail_above:
            print(f"ratio above --fail-above {ns.fail_above}", file=sys.stderr)
            status = 2
    print(f"results written to {json_path}", file=sys.stderr)
    return status


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
