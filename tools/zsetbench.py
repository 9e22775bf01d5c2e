"""Server-side latency of sorted-set range and rank queries on a large sorted set.

Usage (from the repository root)::

    python -m tools.zsetbench                     # 1,000,000 members, 20,000 calls each
    python -m tools.zsetbench --members 100000 --calls 5000

Everything runs in this process, without a network: a keyspace is filled through
the real ZADD handler (in batches, as a pipelining client would), then the real
handlers of ZRANGEBYSCORE (a window of 10 members), ZRANGEBYSCORE ... WITHSCORES,
ZRANK, ZSCORE and ZADD (moving an existing member) are called many times with
random arguments.  Each call is timed alone, so the figures are what the server
spends per command, parsing its arguments and encoding its reply included, but
without sockets and protocol framing.  The point is to show that range and rank
queries stay logarithmic: well under a millisecond on a million members.

Prints median and 99th-percentile microseconds per command and writes them, with
the machine facts, as JSON under ``bench-results/``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from types import SimpleNamespace

from respkv.keyspace.store import Keyspace
from respkv.node import build_command_table
from respkv.protocol.reply import RESP2
from tools import benchlib

KEY = b"zsetbench"
BATCH = 1000


class BenchSession:
    """The few session attributes command handlers use: keyspace, protocol, stats."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.ks = keyspace
        self.proto = RESP2
        self.stats = SimpleNamespace(keyspace_hits=0, keyspace_misses=0)
        self.node = SimpleNamespace(stats=self.stats)


def member(i: int) -> bytes:
    return b"member:%07d" % i


def build(session: BenchSession, table, members: int) -> float:
    """Fill the set with ``members`` members scored 0..n-1; returns seconds taken."""
    zadd = table.lookup(b"zadd").handler
    order = list(range(members))
    random.shuffle(order)  # insertion order unrelated to score order
    start = time.perf_counter()
    for lo in range(0, members, BATCH):
        args = [b"ZADD", KEY]
        for i in order[lo:lo + BATCH]:
            args.append(b"%d" % i)
            args.append(member(i))
        zadd(session, args)
    return time.perf_counter() - start


def measure(session: BenchSession, handler, make_args, calls: int, check) -> list[float]:
    """Time ``calls`` handler calls, each with fresh random arguments (µs each)."""
    timings = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        args = make_args()
        t0 = clock()
        out = handler(session, args)
        t1 = clock()
        timings.append((t1 - t0) / 1000)
        check(out)
    return timings


def summarize(timings: list[float]) -> dict:
    ordered = sorted(timings)
    return {
        "calls": len(ordered),
        "median_us": round(statistics.median(ordered), 2),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_us": round(ordered[-1], 2),
    }


def run(members: int, calls: int, seed: int) -> dict:
    random.seed(seed)
    table = build_command_table()
    session = BenchSession(Keyspace())
    build_seconds = build(session, table, members)
    zs = session.ks.get(KEY)
    assert len(zs) == members, "the set was not built"

    def window(withscores: bool):
        def make():
            lo = random.randrange(members - 9)
            args = [b"ZRANGEBYSCORE", KEY, b"%d" % lo, b"%d" % (lo + 9)]
            return args + [b"WITHSCORES"] if withscores else args
        return make

    def some_member(command: bytes):
        return lambda: [command, KEY, member(random.randrange(members))]

    def move():
        i = random.randrange(members)
        return [b"ZADD", KEY, b"%d" % i, member(i)]  # same score: a lookup, no change

    def expect_prefix(prefix: bytes):
        def check(out: bytes) -> None:
            if not out.startswith(prefix):
                raise AssertionError(f"unexpected reply {out[:60]!r}")
        return check

    cases = [
        ("ZRANGEBYSCORE (10 members)", b"zrangebyscore", window(False), expect_prefix(b"*10\r\n")),
        ("ZRANGEBYSCORE WITHSCORES (10)", b"zrangebyscore", window(True), expect_prefix(b"*20\r\n")),
        ("ZRANK", b"zrank", some_member(b"ZRANK"), expect_prefix(b":")),
        ("ZSCORE", b"zscore", some_member(b"ZSCORE"), expect_prefix(b"$")),
        ("ZADD (existing member)", b"zadd", move, expect_prefix(b":0")),
    ]
    results = {}
    for label, name, make_args, check in cases:
        handler = table.lookup(name).handler
        measure(session, handler, make_args, min(calls, 1000), check)  # warm-up
        results[label] = summarize(measure(session, handler, make_args, calls, check))
    return {"members": members, "build_seconds": round(build_seconds, 2), "commands": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.zsetbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="size of the sorted set (default 1000000)")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per command (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--json", metavar="PATH", help="where to write results (default: bench-results/zsetbench-<timestamp>.json)")
    opts = parser.parse_args(argv)
    if opts.members < 10:
        parser.error("--members must be at least 10")
    result = run(opts.members, opts.calls, opts.seed)
    print(f"sorted set of {result['members']:,} members built in {result['build_seconds']} s")
    rows = [
        (label, r["calls"], r["median_us"], r["p99_us"], r["max_us"])
        for label, r in result["commands"].items()
    ]
    print(benchlib.format_table(("command", "calls", "median µs", "p99 µs", "max µs"), rows))
    path = opts.json or benchlib.default_json_path("zsetbench")
    benchlib.write_json(path, {"kind": "zsetbench", "machine": benchlib.machine_info(), **result})
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
