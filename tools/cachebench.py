"""A cache workload against respkv and redis-server: hit ratio, memory and throughput under eviction.

Usage (from the repository root)::

    python -m tools.cachebench                     # 32mb, allkeys-lru/lfu/random, 3 rounds
    python -m tools.cachebench --quick             # small sizes, one round: checks the tool
    python -m tools.cachebench --policies noeviction --servers respkv

An application using a store as a cache GETs a key and SETs it on a miss. Keys
follow a Zipf law (rank k drawn with probability proportional to 1/k^s) over a
universe of ``--data-factor`` (10) times more value bytes than ``maxmemory``, so
what the server chooses to keep decides the hit ratio. Both servers get the same
key sequence, ``maxmemory``, ``maxmemory-policy`` and ``maxmemory-samples 5`` (by
CONFIG SET, so a refusal is a reported result, not a failed start), and no
persistence (``--appendonly no``).

Each run starts a fresh server, reads its idle RSS, plays an uncounted warm-up,
then the measured requests: hit ratio = hits / GETs, counted by the client (INFO's
keyspace counters and ``evicted_keys`` are recorded beside it). A thread samples
VmRSS every 100 ms; that peak and ``VmHWM`` must stay within (maxmemory + idle
RSS) x 1.10. Servers run one at a time, their order alternating by policy and round.

The clients are non-blocking connections in one thread. Each sends up to
``--pipeline`` GETs, then a SET per miss, then the next batch; a batch ends before
a key it already holds, so every GET sees the SETs before it, as with a client
doing one GET-then-SET at a time, and both servers get the same batches.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import re
import selectors
import socket
import statistics
import sys
import threading
import time
from array import array
from bisect import bisect_right
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import hiredis

from respkv import launcher
from tools import benchlib
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_redis_server, start_respkv, sigterm_interrupts

POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
SERVERS = ("respkv", "redis")
STARTERS = {"respkv": start_respkv, "redis": start_redis_server}
#: A cache keeps nothing on disk; both servers log by default, so both are told not to.
BASE_ARGS = {"respkv": ["--appendonly", "no"], "redis": ["--appendonly", "no"]}
MAXMEMORY_SAMPLES = 5
KEY_FORMAT = b"key:%012d"
HIT_TARGET_PP = 2.0  # respkv's hit ratio within this many percentage points of redis-server's
RSS_SLACK = 0.10  # peak RSS <= (maxmemory + idle RSS) * (1 + RSS_SLACK)
RSS_INTERVAL = 0.1
FULL = dict(maxmemory="32mb", requests=1_000_000, repeat=3, clients=8)
QUICK = dict(maxmemory="4mb", requests=20_000, repeat=1, clients=2)
#: Warm-up GETs per measured GET unless --warmup says otherwise: LRU settles within
#: one pass, LFU still learns after two (its counters need repeated hits).
WARMUP_FACTOR = 2

# --------------------------------------------------------------------------- #
# Pure parts (tested in tests/test_cachebench.py)
# --------------------------------------------------------------------------- #

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from a Redis memory size (``32mb`` = 32 MiB, ``32m`` = 32,000,000, ``1000``)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (e.g. 32mb, 500kb, 1gb)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def universe_size(maxmemory: int, value_size: int, data_factor: float) -> int:
    """How many distinct keys the workload draws from: enough that their values
    alone add up to ``data_factor`` times ``maxmemory`` (keys and per-key overhead
    make the real data larger still)."""
    if maxmemory <= 0 or value_size <= 0 or data_factor <= 0:
        raise ValueError("maxmemory, value size and data factor must be positive")
    return max(1, math.ceil(data_factor * maxmemory / value_size))


@lru_cache(maxsize=4)
def zipf_cdf(n: int, exponent: float) -> array:
    """Cumulative (unnormalized) weights 1/k^s of ranks 1..n, as doubles (8 bytes per rank)."""
    return array("d", itertools.accumulate(k ** -exponent for k in range(1, n + 1)))


def affine_permutation(n: int, rng: random.Random) -> tuple[int, int]:
    """``(a, b)`` such that ``rank -> (a * rank + b) % n`` is a bijection of 0..n-1.

    It scatters popular ranks over the key names without a table of n entries."""
    if n <= 1:
        return 1, 0
    while True:
        a = rng.randrange(1, n)
        if math.gcd(a, n) == 1:
            return a, rng.randrange(n)


class ZipfKeys:
    """Key ids 0..n-1 drawn with P(rank k) proportional to 1/k^exponent.

    Ranks are drawn by inverting the cumulative weights (a bisection per draw)
    and mapped to ids by an affine permutation chosen by ``seed``, so the hottest
    keys are not neighbours. Everything is determined by (n, exponent, seed) and
    the generator passed to :meth:`ranks` / :meth:`keys`.
    """

    def __init__(self, n: int, exponent: float, seed: int | str) -> None:
        if n < 1 or exponent < 0:
            raise ValueError("need n >= 1 and exponent >= 0")
        self.n, self.exponent = n, exponent
        self._cdf = zipf_cdf(n, exponent)
        self.a, self.b = affine_permutation(n, random.Random(f"permutation:{seed}"))

    def rank_of(self, u: float) -> int:
        """The 0-based rank at quantile ``u`` in [0, 1)."""
        return min(bisect_right(self._cdf, u * self._cdf[-1]), self.n - 1)

    def key_of(self, rank: int) -> int:
        return (self.a * rank + self.b) % self.n

    def ranks(self, rng: random.Random, count: int) -> list[int]:
        cdf, total, last, draw = self._cdf, self._cdf[-1], self.n - 1, rng.random
        return [min(bisect_right(cdf, draw() * total), last) for _ in range(count)]

    def keys(self, rng: random.Random, count: int) -> array:
        a, b, n = self.a, self.b, self.n
        return array("q", [(a * r + b) % n for r in self.ranks(rng, count)])


def batch_end(keys, start: int, depth: int) -> int:
    """End of the batch of ``keys`` from ``start``: at most ``depth`` keys, stopping
    before a key already in the batch (its GET must see the SET of the first)."""
    seen, end = set(), start
    while end < len(keys) and end - start < depth and keys[end] not in seen:
        seen.add(keys[end])
        end += 1
    return end


def rss_bound(maxmemory: int, idle_rss: int, slack: float = RSS_SLACK) -> int:
    """The most RSS a run may reach: (maxmemory + the server's idle RSS) x (1 + slack)."""
    return int((maxmemory + idle_rss) * (1 + slack))


def hit_ratio(hits: int, gets: int) -> float | None:
    """Hits per GET (None before any GET): the client's own count, errors included in GETs."""
    return hits / gets if gets else None


def spread(values: list[float]) -> dict | None:
    """Median, lowest and highest of ``values`` (None when there are none)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def summarize(runs: list[dict], policy: str) -> dict:
    """Medians over the rounds of one policy: per server the hit ratio, ops/s and
    worst RSS; between servers the hit-ratio difference in percentage points
    (respkv - redis, per round) and the ops/s ratio (respkv / redis)."""
    out: dict = {"policy": policy, "servers": {}}
    ok: dict[str, dict[int, dict]] = {}
    for name in SERVERS:
        mine = [r for r in runs if r["policy"] == policy and r["server"] == name]
        if not mine:
            continue
        good = [r for r in mine if "error" not in r]
        ok[name] = {r["round"]: r for r in good}
        worst = max(good, key=lambda r: r["peak_rss"] / r["rss_bound"], default=None)
        out["servers"][name] = {
            "runs": len(mine), "failed": [r["error"] for r in mine if "error" in r],
            "hit_ratio": spread([r["hit_ratio"] for r in good if r["hit_ratio"] is not None]),
            "ops_per_second": spread([r["ops_per_second"] for r in good]),
            "command_errors": sum(r["client"]["get_errors"] + r["client"]["set_errors"] for r in good),
            "peak_rss": worst and worst["peak_rss"], "rss_bound": worst and worst["rss_bound"],
            "rss_held": bool(good) and len(good) == len(mine) and all(r["rss_held"] for r in good),
        }
    rounds = sorted(set(ok.get("respkv", {})) & set(ok.get("redis", {})))
    pairs = [(ok["respkv"][n], ok["redis"][n]) for n in rounds]
    out["hit_diff_pp"] = spread([100 * (t["hit_ratio"] - r["hit_ratio"]) for t, r in pairs
                                 if t["hit_ratio"] is not None and r["hit_ratio"] is not None])
    out["ops_ratio"] = spread([t["ops_per_second"] / r["ops_per_second"] for t, r in pairs
                               if r["ops_per_second"]])
    return out


def verdicts(summary: dict) -> dict:
    """Per acceptance point of one policy: "met", "missed" or "not measured" (any
    failed respkv run makes the RSS point unmeasured: "never above" needs every run)."""
    diff, respkv = summary["hit_diff_pp"], summary["servers"].get("respkv")
    hit = "not measured" if diff is None else "met" if abs(diff["median"]) <= HIT_TARGET_PP + 1e-9 else "missed"
    rss = ("not measured" if respkv is None or respkv["failed"] or respkv["peak_rss"] is None
           else "met" if respkv["rss_held"] else "missed")
    return {"hit_ratio": hit, "rss": rss, "throughput": "reported" if summary["ops_ratio"] else "not measured"}


# --------------------------------------------------------------------------- #
# The clients
# --------------------------------------------------------------------------- #


@dataclass
class Counters:
    """What the clients saw in one phase."""

    gets: int = 0
    hits: int = 0
    misses: int = 0
    sets: int = 0
    get_errors: int = 0
    set_errors: int = 0
    bad_values: int = 0  # hits whose value has the wrong length
    errors: Counter = field(default_factory=Counter)  # first 80 characters of each error reply

    def record(self) -> dict:
        return asdict(self) | {"errors": dict(self.errors.most_common(5))}


class Client:
    """One connection doing GET-then-SET-on-miss in batches (see the module doc)."""

    def __init__(self, port: int, depth: int, value: bytes, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.depth, self.value = depth, value
        self.set_tail = b"\r\n$%d\r\n%s\r\n" % (len(value), value)

    def begin(self, keys: array, counters: Counters) -> None:
        self.keys, self.pos, self.counters, self.done = keys, 0, counters, False
        self._next_batch()

    def _next_batch(self) -> None:
        if self.pos >= len(self.keys):
            self.done = True
            return
        end = batch_end(self.keys, self.pos, self.depth)
        self.batch = [KEY_FORMAT % k for k in self.keys[self.pos:end]]
        self.pos, self.setting, self.replies = end, False, []
        self.sock.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k) for k in self.batch))

    def on_readable(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise BenchmarkFailed("the server closed a client connection")
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.replies.append(reply)
        if len(self.replies) < len(self.batch):
            return
        c = self.counters
        if self.setting:
            errors = [str(r)[:80] for r in self.replies if isinstance(r, hiredis.ReplyError)]
            c.sets, c.set_errors = c.sets + len(self.batch), c.set_errors + len(errors)
            c.errors.update(errors)
            self._next_batch()
            return
        missed = []
        for key, reply in zip(self.batch, self.replies):
            c.gets += 1
            if reply is None:
                c.misses += 1
                missed.append(key)
            elif isinstance(reply, hiredis.ReplyError):
                c.get_errors += 1
                c.errors[str(reply)[:80]] += 1
            else:
                c.hits += 1
                c.bad_values += len(reply) != len(self.value)
        if not missed:
            self._next_batch()
            return
        self.batch, self.setting, self.replies = missed, True, []
        self.sock.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s%s" % (len(k), k, self.set_tail) for k in missed))


def run_phase(server: ServerProcess, clients: list[Client], slices: list[array],
              counters: Counters, timeout: float) -> float:
    """Play each client's keys to the end; return the seconds taken."""
    started = last_check = time.monotonic()
    with selectors.DefaultSelector() as sel:
        for client, keys in zip(clients, slices):
            client.begin(keys, counters)
            if not client.done:
                sel.register(client.sock, selectors.EVENT_READ, client)
        pending = len(sel.get_map())
        while pending:
            for key, _ in sel.select(0.2):
                client = key.data
                client.on_readable()
                if client.done:
                    sel.unregister(client.sock)
                    pending -= 1
            now = time.monotonic()
            if now - last_check >= 0.2:
                last_check = now
                benchlib.check_alive([server])
                if now - started > timeout:
                    raise BenchmarkFailed(f"a phase took over --run-timeout {timeout:.0f}s")
    return time.monotonic() - started


# --------------------------------------------------------------------------- #
# One run: a fresh server, configured, warmed up, measured
# --------------------------------------------------------------------------- #


class RssSampler(threading.Thread):
    """Reads a server's VmRSS every ``interval`` seconds until the ``with`` block ends; keeps the peak."""

    def __init__(self, server: ServerProcess, interval: float = RSS_INTERVAL) -> None:
        super().__init__(daemon=True)
        self.server, self.interval, self.peak, self.samples = server, interval, 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_bytes())
            except (OSError, RuntimeError):
                return  # the process is gone; the run notices it
            self.samples += 1
            self.stopping.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.join()


def vm_hwm(pid: int) -> int | None:
    """The kernel's peak RSS of the process (``VmHWM``), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def configure(port: int, maxmemory: int, policy: str) -> tuple[list[str], list[str]]:
    """CONFIG SET the eviction settings; return (refusals, warnings). A refused
    ``maxmemory-samples`` is a warning (sampling differs), anything else a refusal."""
    refusals, warnings = [], []
    for name, value in (("maxmemory", str(maxmemory)), ("maxmemory-policy", policy),
                        ("maxmemory-samples", str(MAXMEMORY_SAMPLES))):
        try:
            launcher.command("127.0.0.1", port, "CONFIG", "SET", name, value, timeout=30)
        except launcher.ReplyError as exc:
            (warnings if name == "maxmemory-samples" else refusals).append(
                f"CONFIG SET {name} {value} refused: {exc}")
    return refusals, warnings


def server_stats(port: int) -> dict:
    """keyspace_hits, keyspace_misses, evicted_keys, used_memory (None where INFO lacks them) and DBSIZE."""
    fields = launcher.parse_info(benchlib.command(port, "INFO", "stats"))
    fields.update(launcher.parse_info(benchlib.command(port, "INFO", "memory")))
    out = {name: int(fields[name]) if fields.get(name, "").isdigit() else None
           for name in ("keyspace_hits", "keyspace_misses", "evicted_keys", "used_memory")}
    return out | {"dbsize": benchlib.command(port, "DBSIZE")}


def measure(name: str, policy: str, round_no: int, warm: list[array], measured: list[array],
            cfg: argparse.Namespace) -> dict:
    """One run of the workload on a fresh ``name`` server; errors end up in ``error``."""
    run: dict = {"server": name, "policy": policy, "round": round_no}
    args = BASE_ARGS[name] + (cfg.respkv_arg if name == "respkv" else cfg.reference_arg)
    server, clients = None, []
    try:
        server = benchlib.start_server(name, STARTERS[name], args)
        run["argv"] = list(server.proc.args)
        time.sleep(cfg.settle)
        refusals, run["warnings"] = configure(server.port, cfg.maxmemory_bytes, policy)
        if refusals:
            run["error"] = "; ".join(refusals)
            return run
        run["idle_rss"] = server.rss_bytes()
        run["rss_bound"] = rss_bound(cfg.maxmemory_bytes, run["idle_rss"])
        with RssSampler(server) as sampler:
            try:
                value = b"v" * cfg.value_size
                clients = [Client(server.port, cfg.pipeline, value, cfg.run_timeout) for _ in warm]
                warm_counters, counters = Counters(), Counters()
                run["warmup_seconds"] = run_phase(server, clients, warm, warm_counters, cfg.run_timeout)
                before = server_stats(server.port)
                seconds = run_phase(server, clients, measured, counters, cfg.run_timeout)
                after = server_stats(server.port)
                hwm = vm_hwm(server.pid)
            finally:
                run["rss_samples"] = sampler.samples
                run["peak_rss"] = sampler.peak
        benchlib.check_alive([server])
        peak = max(run["peak_rss"], hwm or 0)
        delta = {k: after[k] - before[k] for k in ("keyspace_hits", "keyspace_misses", "evicted_keys")
                 if after[k] is not None and before[k] is not None}
        lookups = delta.get("keyspace_hits", 0) + delta.get("keyspace_misses", 0)
        run.update(
            vm_hwm=hwm, peak_rss=peak, rss_held=peak <= run["rss_bound"], seconds=seconds,
            hit_ratio=hit_ratio(counters.hits, counters.gets), lookups_per_second=counters.gets / seconds,
            ops_per_second=(counters.gets + counters.sets) / seconds,
            client=counters.record(), warmup_client=warm_counters.record(), server_after=after,
            server_delta=delta, server_hit_ratio=delta["keyspace_hits"] / lookups if lookups else None)
    except (BenchmarkFailed, OSError) as exc:
        run["error"] = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
    finally:
        for client in clients:
            client.sock.close()
        if server is not None:
            server.stop()
    return run


def describe(run: dict) -> str:
    """One progress line for stderr."""
    head = f"round {run['round']} {run['policy']} {run['server']}:"
    if "error" in run:
        return f"{head} FAILED: {run['error']}"
    c = run["client"]
    errors = c["get_errors"] + c["set_errors"]
    return (f"{head} hit {100 * run['hit_ratio']:.2f}%, {run['ops_per_second']:,.0f} ops/s, "
            f"peak RSS {run['peak_rss'] / 2**20:.1f} MiB (bound {run['rss_bound'] / 2**20:.1f}), "
            f"{run['server_delta'].get('evicted_keys', '?')} evicted"
            + (f", {errors} error replies ({next(iter(c['errors']))})" if errors else "")
            + (f", {c['bad_values']} WRONG VALUES" if c["bad_values"] else ""))


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def _fmt(s: dict | None, scale: float = 1.0, digits: int = 2, sign: bool = False, ranged: bool = True) -> str:
    """``median (lowest..highest)`` of a :func:`spread`; ``-`` for none."""
    if s is None:
        return "-"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    text = f.format(s["median"] * scale)
    if ranged and s["min"] != s["max"]:
        text += f" ({s['min'] * scale:.{digits}f}..{s['max'] * scale:.{digits}f})"
    return text


def report(summaries: list[dict], maxmemory: int) -> str:
    """The two tables, the messages of failed runs and one verdict line per policy and target."""
    rows, mem_rows, notes, lines = [], [], [], []
    mib = lambda v: "-" if v is None else f"{v / 2**20:.1f}"  # noqa: E731
    for s in summaries:
        sv, policy, diff, ratio = s["servers"], s["policy"], s["hit_diff_pp"], s["ops_ratio"]
        side = lambda n, k: sv[n][k] if n in sv else None  # noqa: E731
        rows.append([policy, _fmt(side("respkv", "hit_ratio"), 100), _fmt(side("redis", "hit_ratio"), 100),
                     _fmt(diff, sign=True), _fmt(side("respkv", "ops_per_second"), digits=0, ranged=False),
                     _fmt(side("redis", "ops_per_second"), digits=0, ranged=False), _fmt(ratio, digits=3)])
        for name, m in sv.items():
            held = "-" if m["peak_rss"] is None else "yes" if m["rss_held"] else "NO"
            mem_rows.append([policy, name, mib(m["peak_rss"]), mib(m["rss_bound"]), held,
                             m["command_errors"], len(m["failed"])])
            notes.extend(f"  {policy} {name}: {msg}" for msg in dict.fromkeys(m["failed"]))
        v, respkv = verdicts(s), sv.get("respkv") or {}
        lines += [
            f"{policy}: hit ratio within {HIT_TARGET_PP:g} pp of redis-server: {v['hit_ratio']}"
            + (f" ({diff['median']:+.2f} pp)" if diff else ""),
            f"{policy}: respkv RSS <= (maxmemory + idle RSS) x {1 + RSS_SLACK:.2f}: {v['rss']}"
            + (f" (peak {mib(respkv['peak_rss'])} MiB, bound {mib(respkv['rss_bound'])})"
               if v["rss"] != "not measured" else ""),
            f"{policy}: throughput respkv/redis: " + (f"{ratio['median']:.3f}" if ratio else "not measured")]
    out = [f"median (lowest..highest) over rounds; ops/s = GETs + SETs per second; maxmemory {maxmemory:,} bytes",
           benchlib.format_table(["policy", "respkv hit%", "redis hit%", "diff pp", "respkv ops/s",
                                  "redis ops/s", "ratio"], rows),
           "", f"peak RSS (sampled and VmHWM, worst run) against (maxmemory + idle RSS) x {1 + RSS_SLACK:.2f}",
           benchlib.format_table(["policy", "server", "peak MiB", "bound MiB", "held", "error replies",
                                  "failed runs"], mem_rows)]
    if notes:
        out += ["", "failed runs:", *notes]
    return "\n".join(out + ["", *lines])


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.cachebench",
        description="Zipf GET-then-SET-on-miss cache workload against respkv and redis-server "
                    "under maxmemory eviction.",
        epilog="Options whose value starts with '-' need the '=' form, e.g. --respkv-arg=--some-flag.")
    p.add_argument("--quick", action="store_true", help="small sizes and one round, to check the tool")
    p.add_argument("--maxmemory", help=f"maxmemory of both servers (default {FULL['maxmemory']}, "
                                       f"--quick {QUICK['maxmemory']})")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated maxmemory-policy values")
    p.add_argument("--servers", default=",".join(SERVERS), help="which servers to run: respkv, redis or both")
    p.add_argument("--value-size", type=int, default=100, help="value bytes (default 100)")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s (default 1.0)")
    p.add_argument("--data-factor", type=float, default=10.0,
                   help="key universe x value size = this x maxmemory (default 10)")
    p.add_argument("--requests", type=int, help=f"measured GETs per run (default {FULL['requests']:,})")
    p.add_argument("--warmup", type=int, help=f"uncounted GETs before them (default {WARMUP_FACTOR} x --requests)")
    p.add_argument("--clients", type=int, help=f"connections (default {FULL['clients']})")
    p.add_argument("--pipeline", type=int, default=16, help="most GETs per batch (default 16)")
    p.add_argument("--repeat", type=int, help=f"rounds (default {FULL['repeat']})")
    p.add_argument("--seed", type=int, default=1, help="seeds the key sequence (default 1)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds before reading the idle RSS")
    p.add_argument("--respkv-arg", action="append", default=[], metavar="ARG", help="respkv argument (repeatable)")
    p.add_argument("--reference-arg", "--redis-arg", action="append", default=[], metavar="ARG",
                   help="redis-server argument (repeatable)")
    p.add_argument("--run-timeout", type=float, default=600.0, help="longest phase in seconds (default 600)")
    p.add_argument("--json", metavar="PATH", help="results file (default bench-results/cachebench-<timestamp>.json)")
    p.add_argument("--fail-on-target", action="store_true",
                   help="exit with status 2 when a target is missed or not measured")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    ns = parser.parse_args(argv)
    preset = QUICK if ns.quick else FULL
    for name, value in preset.items():
        if getattr(ns, name) is None:
            setattr(ns, name, value)
    ns.warmup = WARMUP_FACTOR * ns.requests if ns.warmup is None else ns.warmup
    ns.policy_list = [p.strip() for p in ns.policies.split(",") if p.strip()]
    ns.server_list = [s.strip() for s in ns.servers.split(",") if s.strip()]
    if not ns.policy_list or not ns.server_list or set(ns.server_list) - set(SERVERS):
        parser.error(f"--policies needs a value and --servers a subset of {','.join(SERVERS)}")
    try:
        ns.maxmemory_bytes = parse_size(ns.maxmemory)
        ns.keys = universe_size(ns.maxmemory_bytes, ns.value_size, ns.data_factor)
    except ValueError as exc:
        parser.error(str(exc))
    if min(ns.requests, ns.clients, ns.pipeline, ns.repeat) < 1 or ns.warmup < 0:
        parser.error("--requests, --clients, --pipeline and --repeat must be positive")
    return ns


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    json_path = cfg.json or benchlib.default_json_path("cachebench")
    config = {k: v for k, v in vars(cfg).items() if k not in ("json", "quick", "policies", "servers")}
    record: dict = {
        "kind": "cachebench", "started_at": benchlib.timestamp(),
        "command": ["python", "-m", "tools.cachebench", *(sys.argv[1:] if argv is None else argv)],
        "config": config, "machine": benchlib.machine_info(),
        "targets": {"hit_diff_pp": HIT_TARGET_PP, "rss_bound": f"(maxmemory + idle RSS) x {1 + RSS_SLACK:.2f}"},
        "runs": [],
    }
    print(f"{cfg.keys:,} keys x {cfg.value_size} bytes, Zipf s={cfg.zipf}, maxmemory {cfg.maxmemory_bytes:,}; "
          f"{cfg.warmup:,} warm-up + {cfg.requests:,} measured GETs per run", file=sys.stderr, flush=True)
    status = 0
    try:
        zipf = ZipfKeys(cfg.keys, cfg.zipf, cfg.seed)
        n = cfg.clients
        for round_no in range(1, cfg.repeat + 1):
            rng = random.Random(f"sequence:{cfg.seed}:{round_no}")
            warm, measured = zipf.keys(rng, cfg.warmup), zipf.keys(rng, cfg.requests)
            warm, measured = [warm[i::n] for i in range(n)], [measured[i::n] for i in range(n)]
            for index, policy in enumerate(cfg.policy_list):
                order = cfg.server_list if (round_no + index) % 2 else cfg.server_list[::-1]
                for name in order:
                    run = measure(name, policy, round_no, warm, measured, cfg)
                    record["runs"].append(run)
                    print(describe(run), file=sys.stderr, flush=True)
                    if "error" in run and name == "redis":
                        status = 1  # the reference must work; respkv failures are results
    except BenchmarkFailed as exc:
        record["error"] = str(exc)
        print(f"FAILED: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        record["error"] = "interrupted"
        status = 130
    finally:
        summaries = [summarize(record["runs"], p) for p in cfg.policy_list]
        record["summary"] = summaries
        record["verdicts"] = {s["policy"]: verdicts(s) for s in summaries}
        record["finished_at"] = benchlib.timestamp()
        benchlib.write_json(json_path, record)
    print(report(summaries, cfg.maxmemory_bytes))
    print(f"results written to {json_path}", file=sys.stderr)
    missed = any(v in ("missed", "not measured") for vs in record["verdicts"].values() for v in vs.values())
    if status == 0 and cfg.fail_on_target and missed:
        status = 2
    return status


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
