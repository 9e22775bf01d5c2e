"""What durability costs a respkv node: the commit log, restarts and background snapshots.

Usage (from the repository root)::

    python -m tools.durabench                # the whole issue-12 benchmark (~10 min)
    python -m tools.durabench --quick        # the same, small (about a minute)
    python -m tools.durabench --only restart,bgsave --keys 200000

One run measures four things, each against a baseline taken in the same run
(absolute numbers on a shared machine drift; ratios from one run do not, see
docs/benchmarks.md):

1. **single**: SET and GET throughput (``redis-benchmark -r 1000000 -d 100``) of
   three standalone nodes started at once with ``appendonly no``, ``appendonly yes
   appendfsync everysec`` and ``appendonly yes appendfsync always``, measured in
   turn (each round starting with the next mode) and repeated; the ratio of each mode's
   median to the log-off node's is what the log costs.  Target: everysec >= 0.85.
2. **cluster**: the same three modes on three 3-node clusters with
   ``replication-factor 3`` (``redis-benchmark --cluster``), and each mode's
   ``aof_enabled`` as a node reports it, since replicated nodes may not keep a log.
3. **restart**: a node (default settings: log on, everysec) is filled with
   ``--keys`` keys of 100 bytes, then restarted after SIGTERM, after ``kill -9``
   and after ``BGREWRITEAOF`` (snapshot plus an empty log); each restart is timed
   from the process start until it answers ``PING`` with ``INFO persistence``
   ``loading:0``, and ``DBSIZE`` must equal ``--keys``.  Target: <= 10 s for 1M keys.
4. **bgsave**: with the same node holding the keys, a steady unpipelined SET+GET
   load runs in short ``redis-benchmark`` runs, first alone, then while a
   ``BGSAVE`` runs; the p99 latencies of both are compared, and the node's RSS is
   sampled (``/proc/PID/status``) to give the snapshot's peak memory overhead.

The benchmark runs, server starts and result files are :mod:`tools.benchlib`'s.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import hiredis

from respkv import launcher
from tools import benchlib, clusterbench
from tools.bench import log
from tools.benchlib import BenchmarkFailed
from tools.procs import ServerProcess, start_respkv, sigterm_interrupts

#: The log settings compared; "off" is the baseline of the ratios.
MODES: dict[str, list[str]] = {
    "off": ["--appendonly", "no"],
    "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "always": ["--appendonly", "yes", "--appendfsync", "always"],
}
BASELINE = "off"
SECTIONS = ("single", "cluster", "restart", "bgsave")
TESTS = {"set": "SET", "get": "GET"}  # redis-benchmark -t name -> CSV row
#: Every throughput run: random keys over a million-key space, 100-byte values.
THROUGHPUT_ARGS = ["-r", "1000000", "-d", "100", "-c", "50"]
VALUE_SIZE = 100
#: Keys are redis-benchmark's own names, so its -r GETs hit the filled keys.
KEY_FORMAT = b"key:%012d"
RESTART_TARGET_SECONDS = 10.0
#: The load during the BGSAVE measurement: unpipelined, redis-benchmark's default clients.
BGSAVE_LOAD_ARGS = ["-t", "set,get", "-d", str(VALUE_SIZE), "-c", "50", "-P", "1"]
BASELINE_LOAD_RUNS = 3
RSS_SAMPLE_SECONDS = 0.02

#: Requests per run are sized for a second or more of work per run on two cores
#: (a standalone node does a few hundred thousand pipelined SETs a second).  Cluster
#: runs are longer still: ``redis-benchmark --cluster`` runs one thread per master,
#: and in thread mode it only notices that the last reply arrived at its next
#: 250 ms timer tick, so a cluster run's duration (and rps) is quantized to 250 ms.
FULL = dict(keys=1_000_000, repeat=3, pipelines=[1, 16], requests={1: 200_000, 16: 1_000_000},
            cluster_requests={1: 100_000, 16: 500_000}, load_requests=10_000)
QUICK = dict(keys=100_000, repeat=1, pipelines=[16], requests={1: 50_000, 16: 200_000},
             cluster_requests={1: 20_000, 16: 100_000}, load_requests=3_000)


# --------------------------------------------------------------------------- #
# Pure helpers (tested in tests/test_durabench.py)
# --------------------------------------------------------------------------- #


def mode_ratios(samples: list[dict], baseline: str = BASELINE) -> dict:
    """Medians and ratios of interleaved throughput samples.

    ``samples`` are dicts with ``round``, ``mode`` and ``rps``.  Returns, per mode,
    the median rps, min and max, the ratio of its median to the baseline mode's,
    and the per-round ratios (each sample over the baseline sample of its round),
    whose range shows how much the machine's load moved during the run.
    """
    out: dict = {}
    by_round: dict[int, dict[str, float]] = {}
    for s in samples:
        by_round.setdefault(s["round"], {})[s["mode"]] = s["rps"]
    modes = list(dict.fromkeys(s["mode"] for s in samples))
    for mode in modes:
        rps = [s["rps"] for s in samples if s["mode"] == mode]
        out[mode] = {"median_rps": statistics.median(rps), "min_rps": min(rps), "max_rps": max(rps)}
    if baseline in out:
        base = out[baseline]["median_rps"]
        for mode in modes:
            out[mode]["ratio"] = out[mode]["median_rps"] / base
            out[mode]["round_ratios"] = [
                r[mode] / r[baseline] for _, r in sorted(by_round.items()) if mode in r and baseline in r
            ]
    return out


def format_ratio(entry: dict) -> str:
    """``0.912 (0.88-0.95)``: the ratio of medians and the range of per-round ratios."""
    rounds = entry.get("round_ratios") or []
    if len(rounds) > 1:
        return f"{entry['ratio']:.3f} ({min(rounds):.2f}-{max(rounds):.2f})"
    return f"{entry['ratio']:.3f}"


def proc_status(text: str) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` in bytes from the text of ``/proc/PID/status``."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def latency_summary(rows: list[dict], label: str) -> dict:
    """Median and worst p99 (and median p50, rps) over the ``label`` rows of several runs."""
    mine = [r for r in rows if r["test"] == label]
    if not mine:
        return {}
    p99 = [r["p99_latency_ms"] for r in mine]
    return {"runs": len(mine), "p99_median_ms": statistics.median(p99), "p99_max_ms": max(p99),
            "p50_median_ms": statistics.median(r["p50_latency_ms"] for r in mine),
            "rps_median": statistics.median(r["rps"] for r in mine)}


def mset_command(start: int, count: int, value: bytes) -> bytes:
    """The RESP of one ``MSET`` of keys ``start``..``start+count-1`` (see :data:`KEY_FORMAT`)."""
    key_len = len(KEY_FORMAT % 0)
    head = b"$%d\r\n" % key_len
    val = b"\r\n$%d\r\n%s\r\n" % (len(value), value)
    parts = [b"*%d\r\n$4\r\nMSET\r\n" % (1 + 2 * count)]
    parts.extend(head + KEY_FORMAT % i + val for i in range(start, start + count))
    return b"".join(parts)


# --------------------------------------------------------------------------- #
# Talking to a node
# --------------------------------------------------------------------------- #


def info(port: int, section: str = "persistence", password: str | None = None) -> dict[str, str]:
    return launcher.parse_info(benchlib.command(port, "INFO", section, timeout=30, password=password))


def memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return proc_status(f.read())


def fill(port: int, keys: int, batch: int = 1000, window: int = 8) -> float:
    """Write ``keys`` keys with 100-byte values as pipelined MSETs; return seconds taken."""
    value = b"v" * VALUE_SIZE
    started = time.monotonic()
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sent = answered = 0
        for start in range(0, keys, batch):
            sock.sendall(mset_command(start, min(batch, keys - start), value))
            sent += 1
            while sent - answered >= window or (start + batch >= keys and answered < sent):
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(1 << 16)
                    if not data:
                        raise BenchmarkFailed("the node closed the connection while being filled")
                    reader.feed(data)
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    raise BenchmarkFailed(f"MSET failed while filling: {reply}")
                answered += 1
    return time.monotonic() - started


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def wait_ready(server: ServerProcess, started: float, timeout: float) -> dict:
    """Poll a starting node until it answers PING and ``INFO persistence`` says
    ``loading:0``; return the seconds (since ``started``) of both."""
    first_ping = None
    while time.monotonic() - started < timeout:
        benchlib.check_alive([server])
        try:
            if first_ping is None:
                benchlib.command(server.port, "PING", timeout=5)
                first_ping = time.monotonic() - started
            if info(server.port).get("loading") == "0":
                return {"ping_seconds": round(first_ping, 3),
                        "ready_seconds": round(time.monotonic() - started, 3)}
        except (OSError, BenchmarkFailed):
            pass
        time.sleep(0.01)
    raise BenchmarkFailed(f"node on port {server.port} not ready after {timeout:.0f}s:\n"
                          f"{benchlib.server_log_tail(server)}")


def restart(server: ServerProcess, how: str, timeout: float) -> tuple[ServerProcess, dict]:
    """Stop ``server`` (``term``: SIGTERM and wait; ``kill``: SIGKILL) and start the
    same command in the same directory; return the new process and its timings."""
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
    try:
        code = server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BenchmarkFailed(f"node did not stop within {timeout:.0f}s of SIGTERM") from None
    stop_seconds = time.monotonic() - stopped
    with open(os.path.join(server.workdir, f"{server.name}.log"), "ab") as logf:
        started = time.monotonic()
        proc = subprocess.Popen(server.proc.args, stdout=logf, stderr=subprocess.STDOUT, cwd=server.workdir)
    new = ServerProcess(server.name, server.port, proc, server.workdir, _owns_workdir=False)
    try:
        timing = wait_ready(new, started, timeout)
        persistence = info(new.port)
        timing.update(
            stop_seconds=round(stop_seconds, 3), exit_status=code,
            dbsize=benchlib.command(new.port, "DBSIZE"),
            journal_load_seconds=float(persistence.get("journal_load_seconds", "nan")),
            journal_entries_loaded=int(persistence.get("journal_entries_loaded", -1)),
            rss_after_load=memory(new.pid)["VmRSS"],
        )
    except BaseException:
        new.stop()
        raise
    return new, timing


def wait_rewrite(port: int, timeout: float) -> float:
    """Wait until no snapshot/rewrite runs; return the seconds waited."""
    started = time.monotonic()
    while info(port).get("rdb_bgsave_in_progress") != "0":
        if time.monotonic() - started > timeout:
            raise BenchmarkFailed(f"the snapshot did not finish within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - started


# --------------------------------------------------------------------------- #
# The sections
# --------------------------------------------------------------------------- #


def rewrites_touching(before: tuple[int, int], after: tuple[int, int]) -> int:
    """Rewrites that ran at least partly between two ``(completed, running)`` readings
    of ``aof_rewrites`` and ``aof_rewrite_in_progress`` (summed over a side's nodes)."""
    return after[0] - before[0] + after[1]


def rotated(items: list, k: int) -> list:
    """``items`` starting at index ``k`` (mod its length): each round starts with
    another mode, so that no mode always runs right after the log-heavy ones (the
    kernel writing back their log pages slows whichever run comes next)."""
    k %= len(items)
    return items[k:] + items[:k]


def rewrite_state(ports: list[int], password: str | None = None) -> tuple[int, int]:
    """``(aof_rewrites, aof_rewrite_in_progress)`` summed over the nodes on ``ports``."""
    fields = [info(p, password=password) for p in ports]
    return (sum(int(f.get("aof_rewrites", 0)) for f in fields),
            sum(int(f.get("aof_rewrite_in_progress", 0)) for f in fields))


def throughput(cfg, record: dict, targets: dict, run_one, requests: dict, state) -> None:
    """Measure SET then GET at each depth on every mode in turn, ``cfg.repeat`` rounds;
    ``run_one(target, args)`` runs one redis-benchmark.  Fills ``record['cells']``.

    Each sample also counts the rewrites (snapshots) that ran during it, from
    ``state(target)`` (see :func:`rewrite_state`): an automatic rewrite
    (``auto-aof-rewrite-percentage``) that a SET run's log growth sets off costs
    the node CPU, and belongs to the log's cost, but the reader should see it."""
    cells = record.setdefault("cells", [])
    for pipeline in cfg.pipelines:
        for test in TESTS:
            cells.append({"test": test, "pipeline": pipeline, "requests": requests[pipeline], "samples": []})
    total, done = cfg.repeat * len(cells) * len(targets), 0
    for round_no in range(1, cfg.repeat + 1):
        for cell in cells:
            args = ["-t", cell["test"], "-n", str(cell["requests"]), "-P", str(cell["pipeline"]),
                    *THROUGHPUT_ARGS, *cfg.benchmark_args]
            for mode, target in rotated(list(targets.items()), round_no - 1):
                before = state(target)
                result = run_one(target, args)
                row = result.row(TESTS[cell["test"]])
                cell["samples"].append({"round": round_no, "mode": mode, "seconds": round(result.seconds, 3),
                                        "rewrites": rewrites_touching(before, state(target)), **row})
                done += 1
                log(f"[{done}/{total}] {cell['test']} -P {cell['pipeline']} {mode}: {row['rps']:.0f} rps")
            cell["modes"] = mode_ratios(cell["samples"])


def run_single(cfg, record: dict) -> None:
    section = record["single"] = {}
    nodes: dict[str, ServerProcess] = {}
    try:
        for mode, args in MODES.items():
            nodes[mode] = benchlib.start_server(f"respkv ({mode})", start_respkv, [*args, *cfg.respkv_args])
        section["argv"] = {m: list(n.proc.args) for m, n in nodes.items()}
        servers = list(nodes.values())
        throughput(cfg, section, nodes, lambda node, args: benchlib.run_redis_benchmark(
            node, args, watch=servers, timeout=cfg.run_timeout), cfg.requests,
            lambda node: rewrite_state([node.port]))
        section["persistence"] = {m: _persistence_summary(info(n.port)) for m, n in nodes.items()}
    finally:
        for node in nodes.values():
            node.stop()


def _persistence_summary(fields: dict) -> dict:
    keep = ("aof_enabled", "journal_fsync", "aof_rewrites", "aof_current_size", "rdb_saves")
    return {k: fields[k] for k in keep if k in fields}


def run_cluster(cfg, record: dict) -> None:
    section = record["cluster"] = {"nodes": 3, "rf": cfg.rf}
    clusters: dict[str, clusterbench.ClusterSide] = {}
    try:
        for mode, args in MODES.items():
            log(f"starting a 3-node RF={cfg.rf} cluster ({mode})")
            spec = SimpleNamespace(nodes=3, routing=None, respkv_args=[*args, *cfg.respkv_args])
            clusters[mode] = clusterbench.start_respkv_cluster(mode, f"cluster({mode})", spec, cfg.rf)
        servers = [s for c in clusters.values() for s in c.servers]
        section["persistence"] = {
            m: _persistence_summary(info(c.entry.port, password=c.password)) for m, c in clusters.items()}
        for mode, fields in section["persistence"].items():
            log(f"cluster({mode}): INFO persistence of its first node: aof_enabled={fields.get('aof_enabled')}")

        def run_one(side: clusterbench.ClusterSide, args: list[str]) -> benchlib.BenchmarkRun:
            result = benchlib.run_redis_benchmark(side.entry, side.benchmark_args(["--cluster", *args]),
                                                  watch=servers, timeout=cfg.run_timeout)
            side.settle()  # replica writes still in flight belong to this run, not the next
            return result

        throughput(cfg, section, clusters, run_one, cfg.cluster_requests,
                   lambda side: rewrite_state([s.port for s in side.servers], side.password))
        # Whether the log was really written: its size summed over the nodes, after the runs.
        section["log_bytes_after"] = {
            m: sum(int(info(s.port, password=c.password).get("aof_current_size", 0)) for s in c.servers)
            for m, c in clusters.items()}
    finally:
        for side in clusters.values():
            side.stop()


def run_restart(cfg, record: dict, keep_node: bool) -> ServerProcess | None:
    """Fill a node, restart it three ways; return it (holding the keys) if ``keep_node``."""
    section = record["restart"] = {"keys": cfg.keys, "value_bytes": VALUE_SIZE, "cases": {}}
    node = benchlib.start_server("respkv", start_respkv, list(cfg.respkv_args))
    node._owns_workdir = False  # restarts reuse the directory; removed below
    try:
        section["rss_empty"] = memory(node.pid)["VmRSS"]
        log(f"filling {cfg.keys} keys")
        section["fill_seconds"] = round(fill(node.port, cfg.keys), 2)
        dbsize = benchlib.command(node.port, "DBSIZE")
        if dbsize != cfg.keys:
            raise BenchmarkFailed(f"DBSIZE is {dbsize} after filling {cfg.keys} keys")
        section["rss_filled"] = memory(node.pid)["VmRSS"]
        section["argv"] = list(node.proc.args)
        data = os.path.join(node.workdir, "data")
        for case, how in (("log replay after SIGTERM", "term"), ("log replay after kill -9", "kill"),
                          ("snapshot after BGREWRITEAOF", "term")):
            if case.startswith("snapshot"):
                benchlib.command(node.port, "BGREWRITEAOF")
                section["rewrite_seconds"] = round(wait_rewrite(node.port, cfg.run_timeout), 2)
            size, files = dir_bytes(data), sorted(os.listdir(data))
            state = {k: v for k, v in info(node.port).items() if k in ("rdb_bgsave_in_progress", "aof_rewrites")}
            node, timing = restart(node, how, cfg.run_timeout)
            timing.update(data_dir_bytes=size, data_files=files, before_stop=state)
            section["cases"][case] = timing
            log(f"restart, {case}: ready after {timing['ready_seconds']:.2f}s, DBSIZE {timing['dbsize']}")
            if timing["dbsize"] != cfg.keys:
                raise BenchmarkFailed(f"{case}: DBSIZE {timing['dbsize']} after restart, expected {cfg.keys}")
        if keep_node:
            kept, node = node, None
            return kept
        return None
    finally:
        if node is not None:
            node.stop()
            shutil.rmtree(node.workdir, ignore_errors=True)


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every :data:`RSS_SAMPLE_SECONDS` until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, memory(self.pid)["VmRSS"])
                self.samples += 1
            except OSError:
                return
            time.sleep(RSS_SAMPLE_SECONDS)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def run_bgsave(cfg, record: dict, node: ServerProcess) -> None:
    """p99 of a steady load with and without a BGSAVE running, and the RSS it adds."""
    section = record["bgsave"] = {"keys": cfg.keys, "load_args": BGSAVE_LOAD_ARGS,
                                  "load_requests_per_run": cfg.load_requests}
    args = [*BGSAVE_LOAD_ARGS, "-r", str(cfg.keys), "-n", str(cfg.load_requests)]

    def load_run() -> list[dict]:
        return benchlib.run_redis_benchmark(node, args, watch=[node], timeout=cfg.run_timeout).rows

    before = memory(node.pid)
    section["rss_before"], section["hwm_before"] = before["VmRSS"], before["VmHWM"]
    sampler = RssSampler(node.pid)
    sampler.start()
    baseline = [row for _ in range(BASELINE_LOAD_RUNS) for row in load_run()]
    section["rss_peak_without"] = sampler.stop()
    sampler = RssSampler(node.pid)
    sampler.start()
    started = time.monotonic()
    benchlib.command(node.port, "BGSAVE")
    during: list[dict] = []  # runs that ended before the BGSAVE did: wholly inside it
    partial: list[dict] = []  # the run during which it ended
    while not partial:
        rows = load_run()
        if info(node.port).get("rdb_bgsave_in_progress") == "0":
            partial = rows
        else:
            during.extend(rows)
        if time.monotonic() - started > cfg.run_timeout:
            raise BenchmarkFailed("BGSAVE did not finish in time")
    section["during_is"] = "runs wholly inside the BGSAVE" if during else \
        "the one run the BGSAVE ended in (it was shorter than a run)"
    during = during or partial
    section["bgsave_seconds_upper_bound"] = round(time.monotonic() - started, 2)
    section["rss_peak_during"] = sampler.stop()
    section["rss_samples_during"] = sampler.samples
    fields = info(node.port)
    section["rdb_last_bgsave_status"] = fields.get("rdb_last_bgsave_status")
    section["rdb_last_bgsave_time_sec"] = fields.get("rdb_last_bgsave_time_sec")
    section["hwm_after"] = memory(node.pid)["VmHWM"]
    section["without"] = {t: latency_summary(baseline, label) for t, label in TESTS.items()}
    section["during"] = {t: latency_summary(during, label) for t, label in TESTS.items()}
    section["rows_without"], section["rows_during"], section["rows_partial"] = baseline, during, partial
    log(f"BGSAVE: {len(during) // 2} load runs ({section['during_is']}); peak RSS "
        f"{section['rss_peak_during'] / 2**20:.0f} MiB vs {section['rss_peak_without'] / 2**20:.0f} MiB")


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def print_report(record: dict) -> None:
    for name, title in (("single", "Single node"), ("cluster", "3-node cluster, RF=3")):
        section = record.get(name)
        if not section or not section.get("cells"):
            continue
        print(f"\n{title}: rps (median of {record['config']['repeat']}), ratio to appendonly no "
              "(per-round range); target everysec/off >= 0.85")
        rows = []
        for cell in section["cells"]:
            m = cell.get("modes", {})
            if not all(k in m for k in MODES):
                continue
            rows.append([cell["test"], cell["pipeline"], *(f"{m[k]['median_rps']:.0f}" for k in MODES),
                         format_ratio(m["everysec"]), format_ratio(m["always"])])
        print(benchlib.format_table(["test", "-P", "off rps", "everysec rps", "always rps",
                                     "everysec/off", "always/off"], rows))
        aof = ", ".join(f"{m}: aof_enabled={p.get('aof_enabled')}"
                        for m, p in section.get("persistence", {}).items())
        print(f"  INFO persistence: {aof}")
        if "log_bytes_after" in section:
            print("  commit log MiB summed over the nodes after the runs: "
                  + ", ".join(f"{m} {_mib(n)}" for m, n in section["log_bytes_after"].items()))
        runs = {m: sum(1 for c in section["cells"] for s in c["samples"] if s["mode"] == m and s.get("rewrites"))
                for m in MODES}
        print("  runs during which a rewrite (automatic snapshot) ran: "
              + ", ".join(f"{m} {n}" for m, n in runs.items()))
    restart = record.get("restart")
    if restart and restart.get("cases"):
        print(f"\nRestart with {restart['keys']} keys of {restart['value_bytes']} bytes "
              f"(target <= {RESTART_TARGET_SECONDS:.0f} s; filled in {restart.get('fill_seconds')} s)")
        rows = [[case, f"{t['stop_seconds']:.2f}", f"{t['ping_seconds']:.2f}", f"{t['ready_seconds']:.2f}",
                 f"{t['journal_load_seconds']:.2f}", t["dbsize"], _mib(t["data_dir_bytes"]),
                 _mib(t["rss_after_load"]),
                 "ok" if t["ready_seconds"] <= RESTART_TARGET_SECONDS else "over"]
                for case, t in restart["cases"].items()]
        print(benchlib.format_table(["case", "stop s", "PING s", "ready s", "replay s", "DBSIZE",
                                     "data MiB", "RSS MiB", "<=10s"], rows))
    bg = record.get("bgsave")
    if bg and "during" in bg:
        print(f"\nBGSAVE of {bg['keys']} keys under load ({' '.join(bg['load_args'])}): "
              f"about {bg['bgsave_seconds_upper_bound']} s, status {bg.get('rdb_last_bgsave_status')}")
        rows = []
        for test in TESTS:
            w, d = bg["without"].get(test), bg["during"].get(test)
            if w and d:
                rows.append([test, f"{w['p99_median_ms']:.2f}", f"{d['p99_median_ms']:.2f}",
                             f"{d['p99_max_ms']:.2f}", f"{d['p99_median_ms'] / w['p99_median_ms']:.2f}",
                             f"{w['rps_median']:.0f}", f"{d['rps_median']:.0f}", f"{w['runs']}/{d['runs']}"])
        print(benchlib.format_table(["test", "p99 ms without", "p99 ms during", "worst p99 during",
                                     "p99 during/without", "rps without", "rps during", "runs"], rows))
        overhead = bg["rss_peak_during"] - bg["rss_peak_without"]
        print(f"  RSS MiB: {_mib(bg['rss_before'])} before, peak {_mib(bg['rss_peak_without'])} under load "
              f"without BGSAVE, peak {_mib(bg['rss_peak_during'])} during it: overhead {_mib(overhead)} MiB "
              f"({overhead / bg['rss_peak_without']:+.1%}); VmHWM {_mib(bg['hwm_before'])} -> "
              f"{_mib(bg['hwm_after'])}")
        print(f"  'during' = {bg['during_is']}")
    sys.stdout.flush()


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.durabench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: {QUICK['keys']} keys, -P 16 only, one round, fewer requests")
    parser.add_argument("--repeat", type=int, help="rounds of the throughput measurements (3; --quick 1)")
    parser.add_argument("--keys", type=int, help="keys for restart and bgsave (1000000; --quick 100000)")
    parser.add_argument("--pipeline", help="comma-separated depths for throughput (1,16; --quick 16)")
    parser.add_argument("--rf", type=int, default=3, help="the clusters' replication factor (3)")
    parser.add_argument("--only", help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--benchmark-args", default="", help="extra redis-benchmark arguments for throughput runs")
    parser.add_argument("--respkv-arg", dest="respkv_args", action="append", default=[], metavar="ARG",
                        help="extra argument for every respkv node (repeatable; --respkv-arg=--x for dashes)")
    parser.add_argument("--json", metavar="PATH", help="results file (bench-results/durabench-<time>.json)")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="limit per step, seconds (900)")
    ns = parser.parse_args(argv)
    preset = QUICK if ns.quick else FULL
    ns.sections = [s.strip() for s in (ns.only or ",".join(SECTIONS)).split(",") if s.strip()]
    if unknown := set(ns.sections) - set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    ns.repeat = ns.repeat or preset["repeat"]
    ns.keys = ns.keys or preset["keys"]
    ns.pipelines = [int(p) for p in ns.pipeline.split(",")] if ns.pipeline else preset["pipelines"]
    if ns.repeat < 1 or ns.keys < 1 or any(p < 1 for p in ns.pipelines):
        parser.error("--repeat, --keys and --pipeline must be positive")
    ns.requests = {p: preset["requests"].get(p, preset["requests"][16]) for p in ns.pipelines}
    ns.cluster_requests = {p: preset["cluster_requests"].get(p, preset["cluster_requests"][16])
                           for p in ns.pipelines}
    ns.load_requests = preset["load_requests"]
    ns.benchmark_args = shlex.split(ns.benchmark_args)
    ns.json = ns.json or benchlib.default_json_path("durabench")
    return ns


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    record: dict = {
        "kind": "durabench", "started_at": benchlib.timestamp(),
        "command": ["python", "-m", "tools.durabench", *(sys.argv[1:] if argv is None else argv)],
        "config": {k: getattr(cfg, k) for k in ("quick", "repeat", "keys", "pipelines", "rf", "sections",
                                                 "benchmark_args", "respkv_args", "load_requests")}
        | {"requests": cfg.requests, "cluster_requests": cfg.cluster_requests,
           "throughput_args": THROUGHPUT_ARGS, "modes": MODES},
        "machine": benchlib.machine_info(),
        "ratio_is": "median rps of a mode / median rps of the appendonly-no node or cluster, same run",
    }
    started, status, node = time.monotonic(), 0, None
    try:
        if "single" in cfg.sections:
            run_single(cfg, record)
        if "cluster" in cfg.sections:
            run_cluster(cfg, record)
        if "restart" in cfg.sections or "bgsave" in cfg.sections:
            node = run_restart(cfg, record, keep_node="bgsave" in cfg.sections)
        if node is not None:
            run_bgsave(cfg, record, node)
    except BenchmarkFailed as exc:
        record["error"] = str(exc)
        log(f"FAILED: {exc}")
        status = 1
    except KeyboardInterrupt:
        record["error"], status = "interrupted", 130
    finally:
        if node is not None:
            node.stop()
            shutil.rmtree(node.workdir, ignore_errors=True)
        record["finished_at"] = benchlib.timestamp()
        record["wall_seconds"] = round(time.monotonic() - started, 1)
        record["machine"]["loadavg_at_end"] = list(os.getloadavg())
        benchlib.write_json(cfg.json, record)
    print_report(record)
    log(f"results written to {cfg.json}")
    return status


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
