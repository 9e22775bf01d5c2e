"""Fault suite for durability: acknowledged writes must survive nodes killed with
``kill -9`` and restarted on their data directories.

Usage (from the repository root)::

    python -m tools.faultsuite                         # 20 cycles, 3 s of writes each
    python -m tools.faultsuite --cycles 3 --seconds-per-cycle 1.5 --seed 7
    python -m tools.faultsuite --whole-cluster sigterm --whole-cluster kill
    python -m tools.faultsuite --keep /tmp/fs --json   # keep the nodes' directories
    python -m tools.faultsuite --anti-entropy-interval 0   # hand-off and read repair only
    python -m tools.faultsuite --partitions --write-quorum 1  # every other cycle a partition

What it does
------------
It starts a 3-node cluster (replication factor 3, W = 2, R = 2 by default) of real
``respkv server --cluster`` processes on free ports, each with its data directory,
the way ``respkv cluster up`` does (:mod:`respkv.launcher`).  Once the cluster has
formed, the ``--join`` arguments are dropped from the recorded command lines, so
every restart is the plain command an operator would run: the node rejoins from the
membership file in its directory.

``--clients`` writer threads then write without pause, each a sequential client:
``SET`` of a key no other write uses, or ``SADD`` of an element no other write adds
to one of ``--sets`` shared sets.  Every command goes to the coordinator of its key's
slot (``CLUSTER SLOTS``, following ``-MOVED``) over a connection that never retries,
and its outcome is recorded in a :class:`~tools.faultcheck.Ledger`: acknowledged
(``+OK``, an integer) or unknown (an error reply, a timeout, a dropped connection).

Cycle mode (the default): after ``--seconds-per-cycle`` of writes with every node
up, each of ``--cycles`` cycles ``kill -9``\\ s a random node, lets the writers go on
for ``--seconds-per-cycle`` while it is down, restarts it with the same command line
on the same directory and waits until the cluster is ready again (every node answers
``cluster_state:ok``, knows the 3 members, and all publish the same slot map).  The
writers run through all of it.

With ``--partitions`` every second cycle isolates the chosen node instead
(``BUSFAULT`` on every node, as :mod:`tools.faults` does; the nodes then run with
``--enable-debug-command yes``) for ``--seconds-per-cycle``, then heals the
partition.  Writers then reload the slot map from a random node every
``REMAP_EVERY`` seconds, so during a partition they reach both sides for the same
slots (each side publishes its own map); with
``--write-quorum 1`` both sides acknowledge writes, so the shared sets get
concurrent versions (siblings) that must merge on heal without losing an element.

Whole-cluster mode (``--whole-cluster sigterm|kill``, repeatable, rounds run in
order on one cluster): the writers make ``--writes`` attempts, then all three nodes
are stopped at once (SIGTERM, or SIGKILL), restarted on their directories, and
everything acknowledged so far is checked.

Every node runs anti-entropy exchanges every ``--anti-entropy-interval`` ms (1 s by
default, ten times the node default), so that exchanges merge records while nodes
die and come back; the end summary shows each node's exchanges and keys repaired.

The check: the writers are stopped, the cluster must be ready, then every key
written is read with ``GET`` and every set with ``SMEMBERS`` through the key's
coordinator, a quorum read (R replicas; a key no replica answered with yet waits for
all of them).  :func:`tools.faultcheck.judge` compares that with the ledger: any
acknowledged write or element missing or wrong fails the run (exit status 1).
Exit status 2: the run could not be made (a node did not start, the cluster did not
become ready).  Progress goes to standard error, the summary to standard output
(``--json``: one JSON object).  Beside the verdict the summary shows how many
keys a killed node held right before the kill and as soon as it listened again
(what it recovered from its directory, before hand-off refills it), how many lost
set elements still sit in a sibling ``SMEMBERS`` does not show (``SIBLINGS``), and
the errors that made writes unacknowledged.

The checker is :mod:`tools.faultcheck` (pure), the clients
:mod:`tools.faultclients`; this module handles the processes and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from respkv import launcher
from tools.faultcheck import Ledger, Verdict, judge
from tools import faults
from tools.faultclients import Workload, WorkloadError, read_back
from tools.procs import sigterm_interrupts

HOST = launcher.DEFAULT_HOST
NODES = 3
WHOLE_CLUSTER_MODES = ("sigterm", "kill")

Progress = Callable[[str], None]
#: With partitions, seconds between a writer's slot-map reloads from a random node.
REMAP_EVERY = 0.3


class SetupError(RuntimeError):
    """The run could not be made (a node did not start, no ready cluster)."""


@dataclass
class Settings:
    cycles: int = 20
    seconds_per_cycle: float = 3.0
    clients: int = 4
    sets: int = 8
    seed: int | None = None
    #: The cluster's directory, kept afterwards; None: a temporary one, removed.
    keep: str | None = None
    #: Rounds of the whole-cluster mode ("sigterm", "kill"); empty: cycle mode.
    whole_cluster: list[str] = field(default_factory=list)
    #: Write attempts per whole-cluster round.
    writes: int = 2000
    #: Share of the writes that are SADDs.
    set_ratio: float = 0.5
    rf: int = 3
    write_quorum: int = 2
    read_quorum: int = 2
    #: Milliseconds of silence before a node is suspected (failover of coordination).
    node_timeout: int = 1000
    #: Socket timeout of every client connection, in seconds.
    timeout: float = 5.0
    #: Seconds the cluster may take to form or to be ready again after a restart.
    ready_timeout: float = 60.0
    #: Seconds the final reads may retry keys that answer errors.
    read_timeout: float = 60.0
    #: Milliseconds between anti-entropy exchanges of each node: often, so that
    #: exchanges run during the kill cycles.
    anti_entropy_interval: int = 1000
    #: Every second cycle isolates its node (a partition) instead of killing it.
    partitions: bool = False
    #: Each cycle starts a rewrite (BGREWRITEAOF) on every node before its kill:
    #: right before it in odd cycles, half a cycle before in even ones, so that
    #: kills land during rewrites and after them.
    rewrites: bool = False


# --------------------------------------------------------------------------- #
# The cluster
# --------------------------------------------------------------------------- #


def start_cluster(directory: str, settings: Settings) -> launcher.LocalCluster:
    """A ready cluster on free ports whose recorded command lines have no ``--join``."""
    server_args = ["--read-quorum", str(settings.read_quorum), "--write-quorum", str(settings.write_quorum),
                   "--anti-entropy-interval", str(settings.anti_entropy_interval)]
    if settings.partitions:
        server_args += ["--enable-debug-command", "yes"]
    for attempt in range(3):
        try:
            cluster = launcher.up(directory, NODES, 0, rf=settings.rf, node_timeout=settings.node_timeout,
                                  timeout=settings.ready_timeout, server_args=server_args)
            break
        except launcher.PortInUse:
            if attempt == 2:
                raise
    for node in cluster.nodes:
        node.argv = without_join(node.argv)
    cluster.save()
    return cluster


def without_join(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--join HOST:PORT`` pairs."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--join":
            skip = True
        else:
            out.append(word)
    return out


def quorums(cluster: launcher.LocalCluster) -> dict[str, dict[str, str]]:
    """Each node's replication-factor, read-quorum and write-quorum (``CONFIG GET``)."""
    out = {}
    for node in cluster.nodes:
        values = {}
        for name in ("replication-factor", "read-quorum", "write-quorum"):
            reply = launcher.command(HOST, node.port, "CONFIG", "GET", name)
            values[name] = _text(reply[1]) if len(reply) >= 2 else "?"
        out[node.name] = values
    return out


def node_keys(cluster: launcher.LocalCluster, index: int) -> int | None:
    """How many keys node ``index`` holds, replica copies included (``DBSIZE`` on
    a ``READONLY`` connection), None if it does not answer."""
    try:
        return int(launcher.command(HOST, cluster.nodes[index].port, "DBSIZE", timeout=5.0, readonly=True))
    except (OSError, launcher.ReplyError, ValueError):
        return None


def keys_loaded(cluster: launcher.LocalCluster, index: int, timeout: float = 5.0) -> int | None:
    """How many keys node ``index`` loaded from its directory at start
    (``rdb_last_load_keys_loaded`` of ``INFO persistence``; None when it does not
    say within ``timeout`` seconds).  A replicated node listens before it loads
    its directory and answers once it has, so a large load needs a long ``timeout``
    (5 s printed ``loaded None`` after a kill -9 during a rewrite)."""
    try:
        info = launcher.parse_info(launcher.command(HOST, cluster.nodes[index].port, "INFO", "persistence",
                                                    timeout=timeout))
        return int(info["rdb_last_load_keys_loaded"])
    except (OSError, launcher.ReplyError, KeyError, ValueError):
        return None


def node_stats(cluster: launcher.LocalCluster) -> dict[str, dict[str, str]]:
    """Per node: ``DBSIZE`` and the ``INFO replication`` counters that show hand-off."""
    out = {}
    for node in cluster.nodes:
        try:
            info = launcher.parse_info(launcher.command(HOST, node.port, "INFO", "replication", timeout=5.0))
        except (OSError, launcher.ReplyError) as exc:
            out[node.name] = {"error": str(exc)}
            continue
        stats = {"keys": str(node_keys(cluster, node.index))}
        for name in ("versioned_keys", "hints_pending", "hints_delivered", "read_repairs", "ae_exchanges",
                     "ae_keys_pulled", "ae_keys_pushed"):
            stats[name] = info.get(name, "?")
        out[node.name] = stats
    return out


def start_rewrites(cluster: launcher.LocalCluster, wait: float) -> list[bool | None]:
    """Start a rewrite (``BGREWRITEAOF``) on every node, let the writers go on for
    ``wait`` seconds, and say per node whether its rewrite still runs (None: the
    node did not answer)."""
    for node in cluster.nodes:
        try:
            launcher.command(HOST, node.port, "BGREWRITEAOF", timeout=5.0)
        except (OSError, launcher.ReplyError):
            pass  # one runs already, or the node is restarting: the cycle goes on
    time.sleep(wait)
    running: list[bool | None] = []
    for node in cluster.nodes:
        try:
            info = launcher.parse_info(launcher.command(HOST, node.port, "INFO", "persistence", timeout=5.0))
            running.append(info.get("aof_rewrite_in_progress") == "1")
        except (OSError, launcher.ReplyError):
            running.append(None)
    return running


def restart(cluster: launcher.LocalCluster, indexes: Sequence[int],
            settings: Settings) -> tuple[float, list[int | None], list[int | None]]:
    """Start nodes on their directories with their recorded command lines.

    Returns the seconds until the whole cluster was ready again, and per node the
    keys it loaded from its directory and the keys it held as soon as it listened
    (what it recovered, plus whatever hand-off delivered in that instant).
    """
    started = time.monotonic()
    for index in indexes:
        cluster.start_node(index, join_running=False)
    cluster.wait_listening(indexes, settings.ready_timeout)
    loaded = [keys_loaded(cluster, index, settings.ready_timeout) for index in indexes]
    recovered = [node_keys(cluster, index) for index in indexes]
    cluster.wait_ready(settings.ready_timeout)
    return time.monotonic() - started, loaded, recovered


def stop_all(cluster: launcher.LocalCluster, how: str, timeout: float = 30.0) -> dict[str, int | None]:
    """Signal every node at once (SIGTERM or SIGKILL) and wait until all are gone;
    returns each node's exit status.  A node outliving SIGTERM is killed and fails
    the run."""
    signum = signal.SIGTERM if how == "sigterm" else signal.SIGKILL
    running = [n.index for n in cluster.running()]
    for index in running:
        try:
            os.kill(cluster.nodes[index].pid, signum)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(cluster.is_running(i) for i in running) and time.monotonic() < deadline:
        time.sleep(0.02)
    stuck = [cluster.nodes[i].name for i in running if cluster.is_running(i)]
    if stuck:
        for index in running:
            cluster.signal_node(index, signal.SIGKILL)
        raise SetupError(f"{', '.join(stuck)} still ran {timeout:.0f}s after {signum.name}")
    return {cluster.nodes[i].name: cluster.exit_status(i) for i in running}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- #
# The runs
# --------------------------------------------------------------------------- #


@dataclass
class Report:
    """A finished run: what was done and what :func:`tools.faultcheck.judge` found."""

    mode: str
    seed: int
    settings: Settings
    verdict: Verdict
    errors: Counter
    quorums: dict = field(default_factory=dict)
    #: One dict per kill cycle or whole-cluster round.
    steps: list[dict] = field(default_factory=list)
    nodes: dict = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict.ok and all(step.get("ok", True) for step in self.steps)

    def to_json(self, shown: int = 20) -> dict:
        settings = asdict(self.settings)
        return {"mode": self.mode, "seed": self.seed, "ok": self.ok, "elapsed": round(self.elapsed, 2),
                "settings": settings, "quorums": self.quorums, **self.verdict.counts(),
                "errors": dict(self.errors.most_common()), "steps": self.steps, "nodes": self.nodes,
                "samples": self.verdict.samples(shown)}

    def summary(self, shown: int = 5) -> str:
        v, c = self.verdict, self.verdict.counts()
        steps = len(self.steps)
        lines = [f"faultsuite {self.mode}: {steps} {'cycles' if self.mode == 'cycles' else 'rounds'}, "
                 f"{self.settings.clients} clients, {self.settings.sets} sets, seed {self.seed}, "
                 f"{self.elapsed:.1f} s"]
        q = {tuple(sorted(x.items())) for x in self.quorums.values()}
        if len(q) == 1:
            lines.append("replication: " + ", ".join(f"{k} {val}" for k, val in next(iter(q))))
        lines.append(f"acknowledged writes {c['acknowledged_writes']}, acknowledged set elements "
                     f"{c['acknowledged_elements']}, unacknowledged {c['unacknowledged']} "
                     f"(present {c['unacknowledged_present']}, absent {c['unacknowledged_absent']}: fine)")
        lines.append(f"lost writes {c['lost_writes']}, lost elements {c['lost_elements']}, "
                     f"wrong values {c['wrong_values']}, phantom elements {c['phantom_elements']}, "
                     f"unread keys {c['unread_keys']}, unread sets {c['unread_sets']}")
        if c["lost_elements"] or c["sets_with_siblings"]:
            lines.append(f"of the lost elements, {c['lost_elements_in_siblings']} are in a sibling that SMEMBERS "
                         f"does not show; sets with siblings {c['sets_with_siblings']}")
        if self.mode == "cycles" and self.steps:
            lines.append("keys a killed node held before the kill -> loaded at restart: " + ", ".join(
                f"{st['node']} {st['keys_before_kill']}->{st['keys_loaded']}" for st in self.steps
                if "partition" not in st))
            partitions = [st["node"] for st in self.steps if "partition" in st]
            if partitions:
                lines.append(f"partitions (node cut off): {len(partitions)}: " + ", ".join(partitions))
        for st in self.steps:
            if "round" in st:
                lines.append(f"round {st['round']} ({st['stop']}, exit {st['exit_status']}): lost writes "
                             f"{st['lost_writes']} of {st['acknowledged_writes']}, lost elements "
                             f"{st['lost_elements']} of {st['acknowledged_elements']}, keys per node "
                             f"{st['keys_before_stop']} before the stop, {st['keys_loaded']} loaded at restart")
        if self.errors:
            lines.append("unacknowledged because: " + ", ".join(
                f"{kind} {n}" for kind, n in self.errors.most_common(6)))
        for name, stats in self.nodes.items():
            lines.append(f"{name} at the end: " + ", ".join(f"{k} {val}" for k, val in stats.items()))
        lines += ["  " + s for s in v.samples(shown)]
        if self.ok:
            lines.append("OK: nothing acknowledged was lost")
        elif v.ok:
            lines.append("FAILED: a node did not exit with status 0 after SIGTERM")
        else:
            lines.append("FAILED: acknowledged writes were lost or could not be read")
        return "\n".join(lines)


def _quiet(_: str) -> None:
    pass


def run(settings: Settings, progress: Progress = _quiet) -> Report:
    """Run the mode ``settings`` asks for on a cluster started for it."""
    seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(1 << 31)
    if settings.keep is not None:
        directory = os.path.abspath(settings.keep)
        if os.path.isdir(directory) and os.listdir(directory):
            raise SetupError(f"--keep {settings.keep}: the directory is not empty")
    else:
        directory = tempfile.mkdtemp(prefix="faultsuite-")
    started = time.monotonic()
    cluster = None
    try:
        try:
            cluster = start_cluster(directory, settings)
            progress(f"cluster up in {time.monotonic() - started:.1f} s: ports "
                     f"{', '.join(str(p) for p in cluster.ports)}, directory {directory}, seed {seed}")
            if settings.whole_cluster:
                report = _whole_cluster(cluster, settings, seed, progress)
            else:
                report = _cycles(cluster, settings, seed, progress)
        except (launcher.LauncherError, WorkloadError) as exc:
            raise SetupError(str(exc)) from exc
        report.elapsed = time.monotonic() - started
        return report
    finally:
        if cluster is not None:
            try:
                cluster.stop()
            except launcher.LauncherError as exc:
                progress(f"stopping the cluster: {exc}")
        if settings.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


def _workload(cluster: launcher.LocalCluster, s: Settings, rng: random.Random, tag: str,
              attempts: int | None = None) -> Workload:
    return Workload(cluster.ports, rng, tag=tag, clients=s.clients, sets=s.sets, timeout=s.timeout,
                    set_ratio=s.set_ratio, attempts=attempts, remap_every=REMAP_EVERY if s.partitions else None)


def _check(cluster: launcher.LocalCluster, ledger: Ledger, settings: Settings) -> tuple[Verdict, dict]:
    """Once the cluster is ready: each node's counters, then the verdict of the final reads."""
    cluster.wait_ready(settings.ready_timeout)
    stats = node_stats(cluster)
    return judge(ledger, read_back(cluster.ports, ledger, settings.timeout, settings.read_timeout)), stats


def _cycles(cluster: launcher.LocalCluster, s: Settings, seed: int, progress: Progress) -> Report:
    """Kill -9 a random node per cycle under writes, restart it, then check."""
    rng = random.Random(seed)
    q = quorums(cluster)
    workload = _workload(cluster, s, rng, tag="").start()
    steps = []
    try:
        time.sleep(s.seconds_per_cycle)  # writes with every node up before the first kill
        for cycle in range(1, s.cycles + 1):
            victim = rng.randrange(NODES)
            node = cluster.nodes[victim]
            keys_before = node_keys(cluster, victim)
            acked0, unknown0 = workload.counts()
            if s.partitions and cycle % 2 == 0:
                steps.append(_partition(cluster, s, cycle, victim, acked0, unknown0, workload, progress))
                continue
            rewriting = None
            if s.rewrites:
                rewriting = start_rewrites(cluster, 0.0 if cycle % 2 else s.seconds_per_cycle / 2)
            cluster.kill_node(victim)
            time.sleep(s.seconds_per_cycle)  # the writers go on while it is down
            ready, (loaded,), (keys_after,) = restart(cluster, [victim], s)
            acked, unknown = workload.counts()
            step = {"cycle": cycle, "node": node.name, "keys_before_kill": keys_before,
                    "keys_loaded": loaded, "keys_at_restart": keys_after, "acknowledged": acked - acked0,
                    "unacknowledged": unknown - unknown0, "ready_seconds": round(ready, 2)}
            if rewriting is not None:
                step["rewriting_at_kill"] = rewriting[victim]
            steps.append(step)
            during = "" if rewriting is None else (
                f" (its rewrite {'still ran' if rewriting[victim] else 'had ended'} at the kill)")
            progress(f"cycle {cycle}/{s.cycles}: kill -9 {node.name}{during}, {s.seconds_per_cycle:g} s of writes, "
                     f"restarted, ready in {ready:.1f} s; {node.name} held {keys_before} keys before, "
                     f"loaded {loaded}, held {keys_after} when it listened again; "
                     f"writes {acked - acked0} acknowledged, {unknown - unknown0} not (total {acked})")
    finally:
        ledger = workload.finish()
    progress(f"writers stopped: {ledger.acknowledged_writes} writes and {ledger.acknowledged_elements} "
             f"set elements acknowledged; reading everything back")
    verdict, stats = _check(cluster, ledger, s)
    return Report(mode="cycles", seed=seed, settings=s, verdict=verdict, errors=ledger.errors, quorums=q,
                  steps=steps, nodes=stats)


def _partition(cluster: launcher.LocalCluster, s: Settings, cycle: int, victim: int, acked0: int, unknown0: int,
               workload: Workload, progress: Progress) -> dict:
    """One partition cycle: cut node ``victim`` off the others' bus under writes, heal."""
    addresses = [f"{HOST}:{port}" for port in cluster.ports]
    name = cluster.nodes[victim].name
    faults.isolate(addresses[victim], addresses)
    time.sleep(s.seconds_per_cycle)  # both sides go on writing
    faults.heal(addresses)
    started = time.monotonic()
    cluster.wait_ready(s.ready_timeout)
    ready = time.monotonic() - started
    acked, unknown = workload.counts()
    progress(f"cycle {cycle}/{s.cycles}: {name} cut off for {s.seconds_per_cycle:g} s of writes, healed, "
             f"ready in {ready:.1f} s; writes {acked - acked0} acknowledged, {unknown - unknown0} not "
             f"(total {acked})")
    return {"cycle": cycle, "node": name, "partition": True, "acknowledged": acked - acked0,
            "unacknowledged": unknown - unknown0, "ready_seconds": round(ready, 2)}


def _whole_cluster(cluster: launcher.LocalCluster, s: Settings, seed: int, progress: Progress) -> Report:
    """Per round: write, stop every node at once, restart them all, check everything so far."""
    rng = random.Random(seed)
    q = quorums(cluster)
    ledger = Ledger()
    steps = []
    verdict = Verdict()
    stats: dict = {}
    for number, how in enumerate(s.whole_cluster, 1):
        workload = _workload(cluster, s, rng, tag=f"r{number}", attempts=s.writes)
        round_ledger = workload.start().finish(wait_for_budget=True)
        ledger.merge(round_ledger)
        keys_before = [node_keys(cluster, i) for i in range(NODES)]
        statuses = stop_all(cluster, how)
        ready, loaded, keys_after = restart(cluster, list(range(NODES)), s)
        verdict, stats = _check(cluster, ledger, s)
        c = verdict.counts()
        # SIGTERM must end a node cleanly (status 0); SIGKILL shows as -9.
        clean = how != "sigterm" or all(status == 0 for status in statuses.values())
        steps.append({"round": number, "stop": how, "exit_status": statuses, "keys_before_stop": keys_before,
                      "keys_loaded": loaded, "keys_at_restart": keys_after, "ready_seconds": round(ready, 2),
                      "ok": verdict.ok and clean, **c})
        progress(f"round {number}/{len(s.whole_cluster)}: {round_ledger.acknowledged_writes} writes and "
                 f"{round_ledger.acknowledged_elements} elements acknowledged; all nodes stopped with "
                 f"{'SIGTERM' if how == 'sigterm' else 'SIGKILL'} (exit {statuses}), restarted, ready in "
                 f"{ready:.1f} s; keys per node {keys_before} before, {loaded} loaded at restart; "
                 f"lost writes {c['lost_writes']} of {c['acknowledged_writes']}, "
                 f"lost elements {c['lost_elements']} of {c['acknowledged_elements']}")
    return Report(mode="whole-cluster " + ",".join(s.whole_cluster), seed=seed, settings=s, verdict=verdict,
                  errors=ledger.errors, quorums=q, steps=steps, nodes=stats)


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(
        prog="python -m tools.faultsuite",
        description="Kill -9 and restart nodes of a 3-node RF=3 cluster under concurrent writes, "
                    "then check that no acknowledged write or set element was lost.")
    p.add_argument("--cycles", type=int, default=d.cycles, help="kill/restart cycles (default %(default)s)")
    p.add_argument("--seconds-per-cycle", type=float, default=d.seconds_per_cycle,
                   help="seconds of writes while the killed node is down (default %(default)s)")
    p.add_argument("--clients", type=int, default=d.clients, help="writer threads (default %(default)s)")
    p.add_argument("--sets", type=int, default=d.sets, help="shared sets (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="seed of the victims and the writes (default: random)")
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="run the cluster in DIR (new or empty) and keep it afterwards (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--whole-cluster", action="append", choices=WHOLE_CLUSTER_MODES, default=[],
                   help="instead of cycles: write, stop all nodes (SIGTERM or kill -9), restart, check; "
                        "repeat the option for several rounds on one cluster")
    p.add_argument("--writes", type=int, default=d.writes,
                   help="write attempts per whole-cluster round (default %(default)s)")
    p.add_argument("--rf", type=int, default=d.rf, help="replication factor (default %(default)s)")
    p.add_argument("--write-quorum", type=int, default=d.write_quorum, help="W (default %(default)s)")
    p.add_argument("--read-quorum", type=int, default=d.read_quorum, help="R (default %(default)s)")
    p.add_argument("--node-timeout", type=int, default=d.node_timeout,
                   help="cluster node timeout in ms (default %(default)s)")
    p.add_argument("--anti-entropy-interval", type=int, default=d.anti_entropy_interval,
                   help="ms between anti-entropy exchanges of each node, 0 for none (default %(default)s)")
    p.add_argument("--partitions", action="store_true",
                   help="every second cycle isolates its node for --seconds-per-cycle instead of killing it "
                        "(with --write-quorum 1 both sides acknowledge writes)")
    p.add_argument("--rewrites", action="store_true",
                   help="start a rewrite (BGREWRITEAOF) on every node before each kill: right before it "
                        "in odd cycles, half a cycle before in even ones")
    p.add_argument("--show", type=int, default=5, help="failures listed per kind (default %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.cycles < 1 or args.seconds_per_cycle <= 0 or args.clients < 1 or args.sets < 1
            or args.writes < 1 or args.rf < 1):
        print("faultsuite: --cycles, --seconds-per-cycle, --clients, --sets, --writes and --rf "
              "must be positive", file=sys.stderr)
        return 2
    settings = Settings(cycles=args.cycles, seconds_per_cycle=args.seconds_per_cycle, clients=args.clients,
                        sets=args.sets, seed=args.seed, keep=args.keep, whole_cluster=args.whole_cluster,
                        writes=args.writes, rf=args.rf, write_quorum=args.write_quorum,
                        read_quorum=args.read_quorum, node_timeout=args.node_timeout,
                        anti_entropy_interval=args.anti_entropy_interval, partitions=args.partitions,
                        rewrites=args.rewrites)

    def progress(line: str) -> None:
        print(f"faultsuite: {line}", file=sys.stderr, flush=True)

    try:
        report = run(settings, progress)
    except SetupError as exc:
        print(f"faultsuite: the run could not be made: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(args.show), indent=2))
    else:
        print(report.summary(args.show))
    return 0 if report.ok else 1


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
