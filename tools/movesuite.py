"""Elastic membership under load: grow a cluster, shrink it by decommission, kill a
node for good and remove it, while clients write and read; then check that no
acknowledged write was lost and every key is readable.

Usage (from the repository root)::

    python -m tools.movesuite                      # 200,000 keys moved around
    python -m tools.movesuite --prefill 20000 --steady-seconds 2 --json
    python -m tools.movesuite --keep /tmp/ms       # keep the nodes' directories

What it does
------------
It starts a 3-node cluster (RF 3, W 2, R 2) of real ``respkv server --cluster``
processes on free ports (``respkv cluster up``), writes ``--prefill`` keys, then
starts ``--clients`` writer threads (:class:`tools.faultclients.Workload`: unique
``SET`` keys and ``SADD`` elements, every outcome recorded) and ``--readers``
reader threads that keep reading random prefilled keys and count every wrong or
missing value and every error.  The writers and every other reader follow
``-MOVED`` and nothing else; the other readers use redis-py's ``RedisCluster``, as
an application would.  Then, in
phases, with the load running all along:

1. ``steady``: ``--steady-seconds`` of load alone, the reference throughput;
2. ``add node-3`` and ``add node-4``: ``respkv cluster add`` (the launcher's
   :func:`respkv.launcher.add`), which returns once the keys of the slots the new
   node took over have moved to it;
3. ``remove node-4`` and ``remove node-1``: decommission (``CLUSTER LEAVE``, the
   keys handed over, ``CLUSTER FORGET``, the process stopped);
4. ``kill node-2``, then ``remove node-2`` once the others flag it failed
   (``CLUSTER FORGET`` of a dead node), leaving two nodes.

Each phase reports its duration, the writes and reads acknowledged per second
and their ratio to ``steady``, the writes that got an error (their outcome is
unknown) and the reads that saw a wrong value.  Each join also reports the data
moved: the records the other nodes pushed to it (``handoff_keys_pushed``), the
copies it holds when the move is done, and both against the ideal share
(every key's RF copies spread over N nodes: ``keys * RF / N``).

The check: the load stops, the moves finish, and every key written (prefilled
or by the writers) and every set is read through its coordinator
(:func:`tools.faultclients.read_back`, :func:`tools.faultcheck.judge`).  A lost or
wrong acknowledged value, a wrong read during the run, or an error during a
join or a decommission fails the run (exit status 1); the kill phase's errors
(connections refused until the node is flagged failed) are reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools.faultcheck import Ledger, Verdict, judge
from tools.faultclients import Router, Unacknowledged, Workload, read_back
from tools.faultsuite import node_keys
from tools.procs import sigterm_interrupts

HOST = launcher.DEFAULT_HOST
Progress = Callable[[str], None]
#: Phases whose client errors fail the run (a move must be invisible to clients).
MOVES = ("add", "remove")


@dataclass
class Settings:
    prefill: int = 200_000
    clients: int = 4
    readers: int = 2
    sets: int = 64
    set_ratio: float = 0.3
    steady_seconds: float = 5.0
    seed: int | None = None
    keep: str | None = None
    rf: int = 3
    node_timeout: int = 1000
    timeout: float = 5.0
    ready_timeout: float = 60.0
    move_timeout: float = 900.0
    #: Server arguments added to every node (e.g. ``--handoff-keys-per-second=2000``).
    server_args: list[str] = field(default_factory=list)


class Reader(threading.Thread):
    """Reads random prefilled keys through their coordinators until stopped;
    counts reads, wrong values (nil included) and errors.  With ``redis_py`` it
    reads through redis-py's ``RedisCluster``, which follows redirections and
    refreshes its slot map on its own, as applications do."""

    def __init__(self, ports: Sequence[int], prefilled: int, timeout: float, rng: random.Random,
                 stop: threading.Event, redis_py: bool = False) -> None:
        super().__init__(name="movesuite-reader", daemon=True)
        self.ports, self.prefilled, self.timeout, self.rng, self.stop = list(ports), prefilled, timeout, rng, stop
        self.redis_py = redis_py
        self.reads = 0
        self.wrong: list[tuple[str, str | None]] = []
        self.errors: Counter = Counter()
        self.failure: BaseException | None = None

    def run(self) -> None:
        if self.redis_py:
            client = RedisCluster(host=HOST, port=self.ports[0], socket_timeout=self.timeout, decode_responses=True)
            get, failures = client.get, (redis.RedisError,)
        else:
            client = Router(self.ports, self.timeout, random.Random(self.rng.random()))
            get, failures = (lambda key: client.execute(key, "GET", key)), (Unacknowledged,)
        try:
            while not self.stop.is_set():
                i = self.rng.randrange(self.prefilled)
                try:
                    value = get(key_of(i))
                except failures as exc:
                    kind = type(exc).__name__ if self.redis_py else str(exc).split(None, 1)[0].rstrip(":")
                    self.errors[("redis-py " if self.redis_py else "") + kind] += 1
                    self.stop.wait(0.02)
                    continue
                self.reads += 1
                if value != value_of(i):
                    self.wrong.append((key_of(i), value))
        except BaseException as exc:  # reported by the driver
            self.failure = exc
        finally:
            client.close()


def key_of(i: int) -> str:
    return f"mv:pre:{i}"


def value_of(i: int) -> str:
    return f"p{i}"


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    writes: int = 0
    reads: int = 0
    write_errors: int = 0
    read_errors: int = 0
    wrong_reads: int = 0
    writes_per_second: float = 0.0
    reads_per_second: float = 0.0
    write_ratio: float | None = None
    read_ratio: float | None = None
    #: Against the settled phase with the same members that follows a move.
    write_ratio_settled: float | None = None
    read_ratio_settled: float | None = None
    moved: dict = field(default_factory=dict)
    #: Why writes and reads failed: the error's first word -> count.
    errors: dict = field(default_factory=dict)

    @property
    def is_move(self) -> bool:
        return self.name.split()[0] in MOVES and "(failed)" not in self.name


@dataclass
class Report:
    seed: int
    settings: Settings
    phases: list[Phase]
    verdict: Verdict
    prefill_lost: int
    elapsed: float

    @property
    def ok(self) -> bool:
        return (self.verdict.ok and not self.prefill_lost
                and all(p.wrong_reads == 0 for p in self.phases)
                and all(p.write_errors == 0 and p.read_errors == 0 for p in self.phases if p.is_move))

    def to_json(self) -> dict:
        return {"ok": self.ok, "seed": self.seed, "elapsed": round(self.elapsed, 1),
                "settings": asdict(self.settings), "prefill_lost": self.prefill_lost,
                **self.verdict.counts(), "samples": self.verdict.samples(10),
                "phases": [asdict(p) for p in self.phases]}

    def summary(self) -> str:
        c = self.verdict.counts()
        lines = [f"movesuite: 3 -> 5 -> 3 nodes -> kill and remove one; {self.settings.prefill} keys prefilled, "
                 f"{self.settings.clients} writers, {self.settings.readers} readers, seed {self.seed}, "
                 f"{self.elapsed:.1f} s",
                 "  (ratios: writes/reads per second against the first steady phase, and against the "
                 "settled phase with the same members right after the move)"]
        for p in self.phases:
            ratio = "" if p.write_ratio is None else f"  {p.write_ratio:.2f}x/{p.read_ratio:.2f}x steady"
            if p.write_ratio_settled is not None:
                ratio += f", {p.write_ratio_settled:.2f}x/{p.read_ratio_settled:.2f}x settled after"
            errors = ", ".join(f"{kind} {n}" for kind, n in sorted(p.errors.items())) or "none"
            lines.append(f"  {p.name:<18} {p.seconds:6.1f} s  {p.writes_per_second:6.0f} writes/s  "
                         f"{p.reads_per_second:6.0f} reads/s{ratio}; errors: {errors}; wrong reads {p.wrong_reads}")
            if p.moved:
                m = p.moved
                lines.append(f"  {'':<16} moved {m['pushed']} records to it, it holds {m['holds']}; ideal share "
                             f"{m['ideal']} ({m['pushed_vs_ideal']:.2f}x moved, {m['holds_vs_ideal']:.2f}x held)")
        lines.append(f"acknowledged writes {c['acknowledged_writes']}, elements {c['acknowledged_elements']}, "
                     f"prefilled {self.settings.prefill}: lost writes {c['lost_writes']}, lost elements "
                     f"{c['lost_elements']}, wrong values {c['wrong_values']}, unread keys {c['unread_keys']}, "
                     f"prefilled keys lost {self.prefill_lost}")
        lines += ["  " + s for s in self.verdict.samples(5)]
        lines.append("OK: nothing acknowledged was lost, moves were invisible to clients" if self.ok
                     else "FAILED")
        return "\n".join(lines)


def info(node: launcher.NodeRecord) -> dict[str, str]:
    try:
        return launcher.parse_info(launcher.command(HOST, node.port, "INFO", "replication", timeout=5.0))
    except (OSError, launcher.ReplyError):
        return {}


def total_keys(cluster: launcher.LocalCluster) -> int:
    """Keys in the cluster: the coordinators' ``DBSIZE`` added up."""
    return sum(int(launcher.command(HOST, n.port, "DBSIZE", timeout=5.0)) for n in cluster.running())


def pushed(cluster: launcher.LocalCluster) -> int:
    return sum(int(info(n).get("handoff_keys_pushed", "0")) for n in cluster.running())


def prefill(port: int, count: int) -> None:
    rc = RedisCluster(host=HOST, port=port, socket_timeout=30)
    try:
        pipe = rc.pipeline()
        for i in range(count):
            pipe.set(key_of(i), value_of(i))
            if i % 2000 == 1999:
                pipe.execute()
        pipe.execute()
    finally:
        rc.close()


def run(settings: Settings, progress: Progress) -> Report:
    seed = settings.seed if settings.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    directory = settings.keep or tempfile.mkdtemp(prefix="respkv-movesuite-")
    started = time.monotonic()
    server_args = ["--read-quorum", "2", "--write-quorum", "2", *settings.server_args]
    cluster = launcher.up(directory, 3, 0, rf=settings.rf, node_timeout=settings.node_timeout,
                          timeout=settings.ready_timeout, server_args=server_args)
    try:
        progress(f"cluster up in {directory}; writing {settings.prefill} keys")
        prefill(cluster.nodes[0].port, settings.prefill)
        ports = cluster.ports
        workload = Workload(ports, rng, tag="mv", clients=settings.clients, sets=settings.sets,
                            timeout=settings.timeout, set_ratio=settings.set_ratio).start()
        stop_reading = threading.Event()
        readers = [Reader(ports, settings.prefill, settings.timeout, random.Random(rng.random()), stop_reading,
                          redis_py=i % 2 == 1) for i in range(settings.readers)]
        for r in readers:
            r.start()
        phases: list[Phase] = []

        def error_kinds() -> Counter:
            kinds: Counter = Counter()
            for w in workload.writers:
                kinds.update(dict(w.ledger.errors))
            for r in readers:
                kinds.update(dict(r.errors))
            return kinds

        def phase(name: str, action: Callable[[], dict | None]) -> Phase:
            progress(name)
            errors0 = error_kinds()
            acked0, unknown0 = workload.counts()
            reads0 = sum(r.reads for r in readers)
            read_errors0 = sum(sum(r.errors.values()) for r in readers)
            wrong0 = sum(len(r.wrong) for r in readers)
            t0 = time.monotonic()
            moved = action() or {}
            seconds = time.monotonic() - t0
            acked, unknown = workload.counts()
            p = Phase(name, seconds, acked - acked0, sum(r.reads for r in readers) - reads0, unknown - unknown0,
                      sum(sum(r.errors.values()) for r in readers) - read_errors0,
                      sum(len(r.wrong) for r in readers) - wrong0, moved=moved,
                      errors=dict(error_kinds() - errors0))
            p.writes_per_second, p.reads_per_second = p.writes / seconds, p.reads / seconds
            if phases:
                steady = phases[0]
                p.write_ratio = p.writes_per_second / max(1e-9, steady.writes_per_second)
                p.read_ratio = p.reads_per_second / max(1e-9, steady.reads_per_second)
            if name.startswith("settled") and phases[-1].is_move:
                move = phases[-1]
                move.write_ratio_settled = move.writes_per_second / max(1e-9, p.writes_per_second)
                move.read_ratio_settled = move.reads_per_second / max(1e-9, p.reads_per_second)
            phases.append(p)
            progress(f"{name}: {seconds:.1f} s, {p.writes_per_second:.0f} writes/s, "
                     f"{p.reads_per_second:.0f} reads/s, errors {p.write_errors}+{p.read_errors}")
            return p

        def join() -> dict:
            before = pushed(cluster)
            record = launcher.add(directory, 1, timeout=settings.move_timeout, report=progress, cluster=cluster)[0]
            moved, holds = pushed(cluster) - before, node_keys(cluster, record.index) or 0
            ideal = total_keys(cluster) * min(settings.rf, len(cluster.members)) // len(cluster.members)
            return {"node": record.name, "pushed": moved, "holds": holds, "ideal": ideal,
                    "pushed_vs_ideal": moved / max(1, ideal), "holds_vs_ideal": holds / max(1, ideal)}

        def remove(name: str) -> Callable[[], None]:
            def action() -> None:
                launcher.remove(directory, name, timeout=settings.move_timeout, report=progress)
                cluster.nodes[:] = launcher.LocalCluster.load(directory).nodes
            return action

        def kill_and_remove(index: int) -> None:
            cluster.kill_node(index)
            victim = cluster.nodes[index]
            deadline = time.monotonic() + settings.ready_timeout
            while True:
                try:
                    launcher.remove(directory, victim.name, timeout=settings.move_timeout)
                    break
                except launcher.LauncherError as exc:  # refused until the others flag it failed
                    if "live node" not in str(exc) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)
            cluster.nodes[:] = launcher.LocalCluster.load(directory).nodes

        def settle() -> None:
            time.sleep(settings.steady_seconds)

        phase("steady", settle)
        for name, action in (("add node-3", join), ("add node-4", join), ("remove node-4", remove("node-4")),
                             ("remove node-1", remove("node-1"))):
            phase(name, action)
            phase(f"settled, {len(cluster.members)} nodes", settle)
        phase("kill+forget node-2", lambda: kill_and_remove(2))
        phase("settled, 2 nodes", settle)
        ledger: Ledger = workload.finish()
        stop_reading.set()
        for r in readers:
            r.join(settings.timeout * 3)
        failed = [r.failure for r in readers if r.failure is not None]
        if failed:
            raise RuntimeError(f"a reader failed: {failed[0]!r}") from failed[0]
        launcher.wait_for_moves(cluster, settings.move_timeout)
        live = [n.port for n in cluster.running()]
        progress(f"reading back {len(ledger.keys())} keys, {len(ledger.sets())} sets and the prefilled keys")
        verdict = judge(ledger, read_back(live, ledger, settings.timeout, settings.ready_timeout))
        prefill_lost = count_prefill_lost(live[0], settings.prefill)
        return Report(seed, settings, phases, verdict, prefill_lost, time.monotonic() - started)
    finally:
        cluster.stop(timeout=10.0)
        if settings.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


def count_prefill_lost(port: int, count: int) -> int:
    rc = RedisCluster(host=HOST, port=port, socket_timeout=30)
    try:
        lost = 0
        for start in range(0, count, 2000):
            indexes = range(start, min(count, start + 2000))
            values = rc.mget_nonatomic([key_of(i) for i in indexes])
            lost += sum(1 for i, v in zip(indexes, values) if v != value_of(i).encode())
        return lost
    finally:
        rc.close()


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m tools.movesuite", description=__doc__.split("\n\n")[0])
    p.add_argument("--prefill", type=int, default=d.prefill, help="keys written before (default %(default)s)")
    p.add_argument("--clients", type=int, default=d.clients, help="writer threads (default %(default)s)")
    p.add_argument("--readers", type=int, default=d.readers, help="reader threads (default %(default)s)")
    p.add_argument("--steady-seconds", type=float, default=d.steady_seconds,
                   help="seconds of load alone, before and after the moves (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="seed of the writes and reads (default: random)")
    p.add_argument("--keep", metavar="DIR", default=None, help="run the cluster in DIR and keep it")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for every node (repeatable, = form for values starting with -)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.prefill < 1 or args.clients < 1 or args.readers < 1:
        print("movesuite: --prefill, --clients and --readers must be positive", file=sys.stderr)
        return 2
    settings = Settings(prefill=args.prefill, clients=args.clients, readers=args.readers,
                        steady_seconds=args.steady_seconds, seed=args.seed, keep=args.keep,
                        server_args=list(args.server_arg))
    try:
        report = run(settings, lambda line: print(f"movesuite: {line}", file=sys.stderr, flush=True))
    except launcher.LauncherError as exc:
        print(f"movesuite: the run could not be made: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
