"""Register checker: concurrent pipelined GET/SET clients against a replicated cluster,
and a check of every read against the recorded history.

Usage (from the repository root)::

    python -m tools.regcheck                          # own 3-node cluster, rf 3, 5 s
    python -m tools.regcheck --clients 8 --keys 6 --pipeline 8 --seconds 10
    python -m tools.regcheck --port 7000              # a running cluster on 127.0.0.1
    python -m tools.regcheck --save history.jsonl     # keep the history ...
    python -m tools.regcheck --check history.jsonl    # ... and check it again later

The history
-----------
Every operation a client issues is recorded as an :class:`Op`: the client, its
place in the client's own order (``index``, counting across pipelines) and the
pipeline it went in (``batch``), the key, whether it wrote or read, the value
written or read (``None`` for a nil read), when it was invoked and when it
completed, and whether it succeeded.  Times come from one monotonic clock in one
process.  A pipeline's operations all carry the pipeline's send time as
invocation and its reply time as completion; their order inside the pipeline is
their ``index``.  An operation that failed (an error reply or a timeout) has an
unknown outcome: a failed write may have taken effect, at any time after it was
invoked, or not at all.  Every write writes a value no other write uses
(``c<client>-<seq>``), so a read value names the write it came from.

The rule
--------
``a`` *precedes* ``b`` when ``a`` succeeded and completed before ``b`` was
invoked (real time), or when both belong to one client, ``a`` comes first in that
client's order and either succeeded or went in the same pipeline as ``b`` (a
connection runs its commands in order, so even a write answered with an error
was applied, if at all, before the commands after it in its pipeline).  A failed
write never precedes anything else in real time: it may land arbitrarily late.

For every successful read ``r`` of key ``k``:

* ``r`` returned ``v``: some write ``w`` of ``k`` wrote ``v`` (else
  **unknown-value**); ``r`` does not precede ``w`` (else
  **own-later-write** when ``w`` is the reader's own, later in its order, e.g.
  ``GET k`` answered with the value of a ``SET k`` queued after it in the same
  pipeline; **future-value** otherwise: ``w`` was invoked after ``r`` completed);
  and no other successful write ``w2`` of ``k`` has ``w`` precedes ``w2``
  precedes ``r``: ``w`` was not overwritten before ``r`` began (else
  **missed-own-write** when ``w2`` is the reader's own write, **stale-value**
  otherwise).
* ``r`` returned nil: no successful write of ``k`` precedes ``r`` (else
  **nil-after-write**; the workload never deletes).

This is a regular register per key, plus each client's own order (read your
writes, and never a write from your future).  It is what a Dynamo store with
R + W > N, one coordinator per key and no faults should give: a write acknowledged
by W replicas is seen by any later read of R replicas.

The driver
----------
``--clients`` threads share ``--keys`` hot keys spread evenly over the nodes by
the node that coordinates their slot (``CLUSTER SLOTS`` and ``CLUSTER KEYSLOT``).
Each client holds a plain connection to every node and sends pipelines of
``--pipeline`` mixed GET and SET commands, all on keys the receiving node
coordinates, so one pipeline often reads, writes and reads again one key; that is
how a cluster client's pipeline reaches a node as well (redis-py's ``RedisCluster``
splits a pipeline per node).  Connections never retry on their own: a retried
pipeline would replay its writes.  Without ``--port`` the driver starts a 3-node
cluster with replication factor 3 (read and write quorum 2 are the defaults,
checked with ``CONFIG GET``) in a temporary directory and stops it afterwards.
Only 127.0.0.1 is contacted.  Exit status: 0 without violations, 1 with, 2 when
the run could not be made.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from respkv import launcher
from tools.procs import sigterm_interrupts

HOST = "127.0.0.1"
WRITE = "write"
READ = "read"

# Violation kinds.
UNKNOWN_VALUE = "unknown-value"
OWN_LATER_WRITE = "own-later-write"
FUTURE_VALUE = "future-value"
STALE_VALUE = "stale-value"
MISSED_OWN_WRITE = "missed-own-write"
NIL_AFTER_WRITE = "nil-after-write"
KINDS = (UNKNOWN_VALUE, OWN_LATER_WRITE, FUTURE_VALUE, STALE_VALUE, MISSED_OWN_WRITE, NIL_AFTER_WRITE)

_NEVER = float("inf")


# --------------------------------------------------------------------------- #
# The checker (pure)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Op:
    """One recorded operation.  ``value``: what a write wrote, or what a read
    returned (``None``: nil).  ``ok`` False: an error or timeout, outcome unknown."""

    client: int
    index: int
    batch: int
    key: str
    kind: str
    value: str | None
    invoked: float
    completed: float
    ok: bool = True
    error: str | None = None

    @property
    def effective_end(self) -> float:
        """When the operation's effect is known to have happened (never, if it failed)."""
        return self.completed if self.ok else _NEVER


@dataclass(frozen=True)
class Violation:
    kind: str
    read: Op
    write: Op | None = None  # the write the read value came from
    witness: Op | None = None  # the acknowledged write that rules the read out


class HistoryError(ValueError):
    """A history the checker cannot judge (duplicate values, clients out of order)."""


def session_before(a: Op, b: Op) -> bool:
    """``a`` comes before ``b`` in one client's order and its effect, if any, too."""
    return a.client == b.client and a.index < b.index and (a.ok or a.batch == b.batch)


def precedes(a: Op, b: Op) -> bool:
    """``a`` took effect before ``b`` began: in real time or in its client's order."""
    return a.effective_end < b.invoked or session_before(a, b)


def _validate(history: Sequence[Op]) -> None:
    seen_values: set[tuple[str, str]] = set()
    by_client: dict[int, list[Op]] = defaultdict(list)
    for op in history:
        if op.kind not in (READ, WRITE):
            raise HistoryError(f"op kind must be {READ!r} or {WRITE!r}: {op}")
        if op.completed < op.invoked:
            raise HistoryError(f"op completed before it was invoked: {op}")
        if op.kind == WRITE:
            if op.value is None:
                raise HistoryError(f"a write without a value: {op}")
            if (op.key, op.value) in seen_values:
                raise HistoryError(f"value {op.value!r} written twice to {op.key!r}: values must be unique")
            seen_values.add((op.key, op.value))
        by_client[op.client].append(op)
    for client, ops in by_client.items():
        ops.sort(key=lambda o: o.index)
        for a, b in zip(ops, ops[1:]):
            if a.index == b.index:
                raise HistoryError(f"client {client} has two ops at index {a.index}")
            # A client issues its pipelines one after another.
            if b.batch < a.batch or b.invoked < a.invoked or (b.batch != a.batch and b.invoked < a.completed):
                raise HistoryError(f"client {client} ops out of order: {a} then {b}")


class _KeyWrites:
    """The successful writes of one key, indexed for "is there one between ...?"."""

    def __init__(self, writes: Iterable[Op]) -> None:
        acked = sorted((w for w in writes if w.ok), key=lambda w: (w.invoked, w.client, w.index))
        self.invoked = [w.invoked for w in acked]
        # suffix[i]: the write among acked[i:] that completed first.
        self.suffix: list[Op] = [None] * len(acked)  # type: ignore[list-item]
        best = None
        for i in range(len(acked) - 1, -1, -1):
            if best is None or acked[i].completed < best.completed:
                best = acked[i]
            self.suffix[i] = best
        # Per client, its successful writes of this key in its own order.
        self.own: dict[int, list[Op]] = defaultdict(list)
        for w in sorted(acked, key=lambda w: (w.client, w.index)):
            self.own[w.client].append(w)
        self.own_index = {c: [w.index for w in ops] for c, ops in self.own.items()}

    def first_completed_after(self, t: float) -> Op | None:
        """Of the writes invoked after ``t``, the one that completed first."""
        i = bisect.bisect_right(self.invoked, t)
        return self.suffix[i] if i < len(self.suffix) else None

    def own_last_before(self, client: int, index: int) -> Op | None:
        """``client``'s last successful write before its op ``index``."""
        indexes = self.own_index.get(client)
        if not indexes:
            return None
        j = bisect.bisect_left(indexes, index) - 1
        return self.own[client][j] if j >= 0 else None

    def own_first_after(self, client: int, index: int) -> Op | None:
        """``client``'s first successful write after its op ``index``."""
        indexes = self.own_index.get(client)
        if not indexes:
            return None
        j = bisect.bisect_right(indexes, index)
        return self.own[client][j] if j < len(indexes) else None

    def acknowledged_before(self, r: Op) -> Op | None:
        """A successful write that precedes ``r``, if any."""
        first = self.suffix[0] if self.suffix else None
        if first is not None and first.completed < r.invoked:
            return first
        own = self.own_index.get(r.client)
        if own and own[0] < r.index:
            return self.own[r.client][0]
        return None

    def overwriter(self, w: Op, r: Op) -> Op | None:
        """A successful write w2 with ``w`` precedes w2 precedes ``r``, if any."""
        # Real time, then real time.
        w2 = self.first_completed_after(w.effective_end)
        if w2 is not None and w2.completed < r.invoked:
            return w2
        # Real time, then the reader's order: the reader's latest write before r
        # was invoked last of its writes before r.
        w2 = self.own_last_before(r.client, r.index)
        if w2 is not None and (w.effective_end < w2.invoked or session_before(w, w2)):
            return w2
        # The writer's order, then real time: the writer's first write after w
        # completed first.  (The writer's order, then the reader's, is the case
        # above: one client, and w2 in w's pipeline or w acknowledged.)
        w2 = self.own_first_after(w.client, w.index)
        if w2 is not None and session_before(w, w2) and w2.completed < r.invoked:
            return w2
        return None


def check(history: Sequence[Op]) -> list[Violation]:
    """Every violation of the register rule (module doc) in ``history``, one per
    offending read, in the order the reads were invoked."""
    _validate(history)
    writes_of: dict[str, list[Op]] = defaultdict(list)
    by_value: dict[tuple[str, str], Op] = {}
    for op in history:
        if op.kind == WRITE:
            writes_of[op.key].append(op)
            by_value[(op.key, op.value)] = op
    index = {key: _KeyWrites(ws) for key, ws in writes_of.items()}
    empty = _KeyWrites(())
    violations = []
    reads = sorted((op for op in history if op.kind == READ and op.ok),
                   key=lambda o: (o.invoked, o.client, o.index))
    for r in reads:
        writes = index.get(r.key, empty)
        if r.value is None:
            w2 = writes.acknowledged_before(r)
            if w2 is not None:
                violations.append(Violation(NIL_AFTER_WRITE, r, None, w2))
            continue
        w = by_value.get((r.key, r.value))
        if w is None:
            violations.append(Violation(UNKNOWN_VALUE, r))
        elif session_before(r, w):
            violations.append(Violation(OWN_LATER_WRITE, r, w))
        elif r.completed < w.invoked:
            violations.append(Violation(FUTURE_VALUE, r, w))
        else:
            w2 = writes.overwriter(w, r)
            if w2 is not None:
                kind = MISSED_OWN_WRITE if w2.client == r.client else STALE_VALUE
                violations.append(Violation(kind, r, w, w2))
    return violations


def _describe(op: Op, origin: float, client: bool = True) -> str:
    start = (op.invoked - origin) * 1000
    end = (op.completed - origin) * 1000
    verb = "SET" if op.kind == WRITE else "GET"
    value = "nil" if op.value is None else repr(op.value)
    outcome = "ok" if op.ok else f"failed: {op.error}" if op.error else "failed"
    who = f"client {op.client} " if client else ""
    return (f"{who}{verb} {op.key} {value} "
            f"[op {op.index}, pipeline {op.batch}, {start:.3f}..{end:.3f} ms, {outcome}]")


def explain(v: Violation, origin: float = 0.0) -> str:
    """One violation in words; times in ms after ``origin``."""
    r = _describe(v.read, origin)
    if v.kind == UNKNOWN_VALUE:
        return f"{v.kind}: {r} returned a value no write of {v.read.key} wrote"
    w = _describe(v.write, origin) if v.write is not None else ""
    if v.kind == OWN_LATER_WRITE:
        return (f"{v.kind}: {r} returned the value of a write its client sent after it: "
                f"{_describe(v.write, origin, client=False)}")
    if v.kind == FUTURE_VALUE:
        return f"{v.kind}: {r} returned the value of {w}, invoked after the read completed"
    if v.kind in (STALE_VALUE, MISSED_OWN_WRITE):
        return (f"{v.kind}: {r} returned the value of {w}, overwritten before the read began "
                f"by {_describe(v.witness, origin)}")
    return f"{v.kind}: {r} although {_describe(v.witness, origin)} was acknowledged before it"


# --------------------------------------------------------------------------- #
# History files (JSON lines, one op each)
# --------------------------------------------------------------------------- #


def save_history(history: Sequence[Op], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for op in history:
            f.write(json.dumps(asdict(op)) + "\n")


def load_history(path: str) -> list[Op]:
    with open(path, encoding="utf-8") as f:
        return [Op(**json.loads(line)) for line in f if line.strip()]


# --------------------------------------------------------------------------- #
# The driver
# --------------------------------------------------------------------------- #


class SetupError(RuntimeError):
    """The run could not be made (cluster, topology or settings)."""


@dataclass
class Settings:
    clients: int = 8
    keys: int = 6
    seconds: float = 5.0
    ops: int | None = None  # stop after this many ops (at most ``seconds`` anyway)
    pipeline: int = 8
    read_ratio: float = 0.5
    seed: int = 1
    port: int | None = None  # an existing cluster; None: start one
    password: str | None = None
    timeout: float = 5.0  # socket timeout of every client connection
    key_prefix: str = "regcheck"


@dataclass
class Report:
    history: list[Op]
    violations: list[Violation]
    settings: Settings
    nodes: list[int] = field(default_factory=list)
    quorums: dict[int, dict[str, str]] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)  # key -> coordinator port
    pipelines: int = 0
    read_then_write: int = 0  # pipelines that read a key and then wrote it
    elapsed: float = 0.0

    @property
    def reads(self) -> int:
        return sum(1 for op in self.history if op.kind == READ)

    @property
    def writes(self) -> int:
        return sum(1 for op in self.history if op.kind == WRITE)

    @property
    def errors(self) -> int:
        return sum(1 for op in self.history if not op.ok)

    def summary(self, shown: int = 5) -> str:
        s = self.settings
        lines = []
        for port in self.nodes:
            q = self.quorums.get(port, {})
            lines.append(f"node {HOST}:{port}: replication-factor {q.get('replication-factor', '?')}, "
                         f"read-quorum {q.get('read-quorum', '?')}, write-quorum {q.get('write-quorum', '?')}, "
                         f"coordinates {sum(1 for p in self.keys.values() if p == port)} of the keys")
        rate = len(self.history) / self.elapsed if self.elapsed > 0 else 0.0
        lines.append(f"{s.clients} clients, {len(self.keys)} keys, pipeline {s.pipeline}, "
                     f"{self.elapsed:.1f} s")
        lines.append(f"ops {len(self.history)} ({rate:.0f}/s), reads {self.reads}, writes {self.writes}, "
                     f"errors {self.errors}, pipelines {self.pipelines} "
                     f"({self.read_then_write} read a key, then wrote it)")
        errors = sorted({op.error for op in self.history if op.error})
        if errors:
            lines.append("error replies: " + "; ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))
        lines.append(f"violations {len(self.violations)}")
        if self.violations:
            counts = defaultdict(int)
            for v in self.violations:
                counts[v.kind] += 1
            lines.append("  by kind: " + ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k]))
            origin = min(op.invoked for op in self.history)
            for v in self.violations[:shown]:
                lines.append("  " + explain(v, origin))
                lines.append("    its pipeline: " + pipeline_text(self.history, v.read))
            if len(self.violations) > shown:
                lines.append(f"  ... and {len(self.violations) - shown} more")
        return "\n".join(lines)


def pipeline_text(history: Sequence[Op], op: Op) -> str:
    """The commands of ``op``'s pipeline with their replies, ``op`` marked."""
    ops = sorted((o for o in history if o.client == op.client and o.batch == op.batch), key=lambda o: o.index)
    parts = []
    for o in ops:
        if o.kind == WRITE:
            text = f"SET {o.key} {o.value} -> {'OK' if o.ok else 'error'}"
        else:
            text = f"GET {o.key} -> {'nil' if o.value is None else o.value}" if o.ok else f"GET {o.key} -> error"
        parts.append(f">>{text}<<" if o is op else text)
    return "; ".join(parts)


def _connect(port: int, settings: Settings) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, password=settings.password, decode_responses=True,
                       socket_timeout=settings.timeout, socket_connect_timeout=settings.timeout,
                       retry=Retry(NoBackoff(), 0))


def _command(port: int, settings: Settings, *args):
    try:
        return launcher.command(HOST, port, *args, timeout=settings.timeout, password=settings.password)
    except (OSError, launcher.ReplyError) as exc:
        raise SetupError(f"{HOST}:{port} {' '.join(map(str, args))}: {exc}") from exc


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover(settings: Settings, seed_port: int) -> tuple[list[int], dict[int, int]]:
    """The nodes' client ports and slot -> coordinator port, from ``CLUSTER SLOTS``."""
    owner: dict[int, int] = {}
    for entry in _command(seed_port, settings, "CLUSTER", "SLOTS"):
        ip, port = _text(entry[2][0]), int(entry[2][1])
        if ip != HOST:
            raise SetupError(f"slots {entry[0]}-{entry[1]} are served by {ip}:{port}; only {HOST} is contacted")
        for slot in range(int(entry[0]), int(entry[1]) + 1):
            owner[slot] = port
    if len(owner) != 16384:
        raise SetupError(f"CLUSTER SLOTS covers {len(owner)} of 16384 slots")
    return sorted(set(owner.values())), owner


def quorum_settings(settings: Settings, ports: Iterable[int]) -> dict[int, dict[str, str]]:
    out = {}
    for port in ports:
        values = {}
        for name in ("replication-factor", "read-quorum", "write-quorum"):
            reply = _command(port, settings, "CONFIG", "GET", name)
            values[name] = _text(reply[1]) if len(reply) >= 2 else "?"
        out[port] = values
    return out


def choose_keys(settings: Settings, ports: list[int], owner: dict[int, int]) -> dict[str, int]:
    """``settings.keys`` keys spread evenly over the coordinators: key -> port."""
    wanted = {port: settings.keys // len(ports) + (1 if i < settings.keys % len(ports) else 0)
              for i, port in enumerate(ports)}
    keys: dict[str, int] = {}
    n = 0
    while len(keys) < settings.keys:
        key = f"{settings.key_prefix}:{n}"
        n += 1
        slot = int(_command(ports[0], settings, "CLUSTER", "KEYSLOT", key))
        port = owner[slot]
        if sum(1 for p in keys.values() if p == port) < wanted[port]:
            keys[key] = port
        if n > 100 * settings.keys + 1000:
            raise SetupError("could not spread the keys over the nodes")
    return keys


class _Budget:
    """Ops left to issue, shared by the clients (None: unlimited)."""

    def __init__(self, ops: int | None) -> None:
        self.left = ops
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        if self.left is None:
            return wanted
        with self.lock:
            n = min(wanted, self.left)
            self.left -= n
            return n


class _Client(threading.Thread):
    """One sequential client: pipelines to the coordinator of their keys, recorded."""

    def __init__(self, cid: int, settings: Settings, keys_by_port: dict[int, list[str]],
                 deadline: float, budget: _Budget) -> None:
        super().__init__(name=f"regcheck-client-{cid}", daemon=True)
        self.cid = cid
        self.settings = settings
        self.keys_by_port = keys_by_port
        self.deadline = deadline
        self.budget = budget
        self.random = random.Random(settings.seed * 1_000_003 + cid)
        self.history: list[Op] = []
        self.pipelines = 0
        self.read_then_write = 0
        self.failure: BaseException | None = None
        self._conns: dict[int, redis.Redis] = {}
        self._seq = 0

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the driver
            self.failure = exc
        finally:
            for conn in self._conns.values():
                conn.close()

    def _loop(self) -> None:
        ports = sorted(self.keys_by_port)
        rnd = self.random
        index = 0
        batch = 0
        while time.monotonic() < self.deadline:
            size = self.budget.take(self.settings.pipeline)
            if size == 0:
                return
            port = rnd.choice(ports)
            keys = self.keys_by_port[port]
            plan = []
            for _ in range(size):
                key = rnd.choice(keys)
                if rnd.random() < self.settings.read_ratio:
                    plan.append((READ, key, None))
                else:
                    plan.append((WRITE, key, f"c{self.cid}-{self._seq}"))
                    self._seq += 1
            read_keys = set()
            for kind, key, _ in plan:
                if kind == READ:
                    read_keys.add(key)
                elif key in read_keys:
                    self.read_then_write += 1
                    break
            self._send(port, plan, index, batch)
            index += len(plan)
            batch += 1
            self.pipelines += 1

    def _send(self, port: int, plan, index: int, batch: int) -> None:
        conn = self._conns.get(port)
        if conn is None:
            conn = self._conns[port] = _connect(port, self.settings)
        pipe = conn.pipeline(transaction=False)
        for kind, key, value in plan:
            if kind == READ:
                pipe.get(key)
            else:
                pipe.set(key, value)
        invoked = time.monotonic()
        try:
            results = pipe.execute(raise_on_error=False)
            failure = None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            results, failure = None, f"{type(exc).__name__}: {exc}"
            self._conns.pop(port).close()  # a fresh connection next time
        completed = time.monotonic()
        for i, (kind, key, value) in enumerate(plan):
            if results is None:
                ok, error, got = False, failure, None
            else:
                result = results[i]
                if isinstance(result, Exception):
                    ok, error, got = False, str(result), None
                elif kind == WRITE:
                    ok = result is True or result == "OK"
                    error, got = (None if ok else f"unexpected reply {result!r}"), None
                else:
                    ok, error, got = True, None, result
            self.history.append(Op(
                client=self.cid, index=index + i, batch=batch, key=key, kind=kind,
                value=value if kind == WRITE else got, invoked=invoked, completed=completed,
                ok=ok, error=error,
            ))


def run_on(settings: Settings, seed_port: int, expect: dict[str, str] | None = None) -> Report:
    """Run the workload against the cluster that ``seed_port`` belongs to; with
    ``expect``, only if every node runs with those settings."""
    ports, owner = discover(settings, seed_port)
    quorums = quorum_settings(settings, ports)
    for port, values in quorums.items():
        if expect is not None and values != expect:
            raise SetupError(f"node {HOST}:{port} runs with {values}, expected {expect}")
    keys = choose_keys(settings, ports, owner)
    keys_by_port: dict[int, list[str]] = defaultdict(list)
    for key, port in keys.items():
        keys_by_port[port].append(key)
    # Start from nothing: a value left by an earlier run would be unknown here.
    for key, port in keys.items():
        _command(port, settings, "DEL", key)
    budget = _Budget(settings.ops)
    start = time.monotonic()
    deadline = start + settings.seconds
    clients = [_Client(i, settings, dict(keys_by_port), deadline, budget) for i in range(settings.clients)]
    for c in clients:
        c.start()
    # A client's last pipeline may wait up to its socket timeout past the deadline.
    join_by = deadline + settings.timeout + 5.0
    for c in clients:
        c.join(max(0.0, join_by - time.monotonic()))
    stuck = [c.name for c in clients if c.is_alive()]
    if stuck:
        raise SetupError(f"clients did not finish: {', '.join(stuck)}")
    failed = [c for c in clients if c.failure is not None]
    if failed:
        raise SetupError(f"{failed[0].name} failed: {failed[0].failure!r}") from failed[0].failure
    elapsed = time.monotonic() - start
    history = [op for c in clients for op in c.history]
    return Report(
        history=history, violations=check(history), settings=settings, nodes=ports, quorums=quorums,
        keys=keys, pipelines=sum(c.pipelines for c in clients),
        read_then_write=sum(c.read_then_write for c in clients), elapsed=elapsed,
    )


def start_cluster(directory: str, up_timeout: float = 90.0) -> launcher.LocalCluster:
    """A 3-node cluster with replication factor 3 on free ports (retried when
    another process takes a port between choosing and binding it)."""
    for attempt in range(3):
        try:
            return launcher.up(directory, 3, 0, rf=3, timeout=up_timeout)
        except launcher.PortInUse:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


EXPECTED = {"replication-factor": "3", "read-quorum": "2", "write-quorum": "2"}


def run(settings: Settings, directory: str | None = None) -> Report:
    """Run against ``settings.port``, or against a cluster started for the run (in
    ``directory``, else a temporary one) whose settings must be rf 3, R 2, W 2."""
    if settings.port is not None:
        return run_on(settings, settings.port)
    with tempfile.TemporaryDirectory(prefix="regcheck-") as scratch:
        try:
            cluster = start_cluster(directory or scratch)
        except launcher.LauncherError as exc:
            raise SetupError(f"the cluster did not start: {exc}") from exc
        try:
            return run_on(settings, cluster.seed.port, EXPECTED)
        finally:
            cluster.stop()


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(
        prog="python -m tools.regcheck",
        description="Concurrent pipelined GET/SET clients on shared keys, then a register check "
                    "of every read against the recorded history.")
    p.add_argument("--clients", type=int, default=d.clients, help="client threads (default %(default)s)")
    p.add_argument("--keys", type=int, default=d.keys, help="shared keys, spread over the nodes (default %(default)s)")
    p.add_argument("--seconds", type=float, default=d.seconds, help="run time (default %(default)s)")
    p.add_argument("--ops", type=int, default=None, help="stop after this many ops (within --seconds)")
    p.add_argument("--pipeline", type=int, default=d.pipeline, help="commands per pipeline (default %(default)s)")
    p.add_argument("--read-ratio", type=float, default=d.read_ratio, help="share of GETs (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="workload seed (default %(default)s)")
    p.add_argument("--port", type=int, default=None,
                   help="a running cluster node on 127.0.0.1 (default: start a 3-node rf 3 cluster)")
    p.add_argument("--dir", default=None, help="directory for the started cluster (default: a temporary one)")
    p.add_argument("--password", default=os.environ.get("REDISCLI_AUTH") or None,
                   help="password of the nodes (default: $REDISCLI_AUTH)")
    p.add_argument("--timeout", type=float, default=d.timeout, help="socket timeout in seconds (default %(default)s)")
    p.add_argument("--show", type=int, default=5, help="violations explained (default %(default)s)")
    p.add_argument("--save", metavar="FILE", help="write the history as JSON lines")
    p.add_argument("--check", metavar="FILE", help="only check a saved history")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.check:
        history = load_history(args.check)
        try:
            violations = check(history)
        except HistoryError as exc:
            print(f"regcheck: {exc}", file=sys.stderr)
            return 2
        origin = min((op.invoked for op in history), default=0.0)
        print(f"ops {len(history)}, violations {len(violations)}")
        for v in violations[: args.show]:
            print("  " + explain(v, origin))
        return 1 if violations else 0
    if args.clients < 1 or args.keys < 1 or args.pipeline < 1 or args.seconds <= 0 or (
            args.ops is not None and args.ops < 1) or not 0.0 <= args.read_ratio <= 1.0:
        print("regcheck: --clients, --keys, --pipeline, --seconds and --ops must be positive, "
              "--read-ratio between 0 and 1", file=sys.stderr)
        return 2
    settings = Settings(clients=args.clients, keys=args.keys, seconds=args.seconds, ops=args.ops,
                        pipeline=args.pipeline, read_ratio=args.read_ratio, seed=args.seed, port=args.port,
                        password=args.password, timeout=args.timeout)
    try:
        report = run(settings, args.dir)
    except SetupError as exc:
        print(f"regcheck: {exc}", file=sys.stderr)
        return 2
    if args.save:
        save_history(report.history, args.save)
    print(report.summary(args.show))
    return 1 if report.violations else 0


if __name__ == "__main__":
    with sigterm_interrupts():  # a kill stops the servers this started, as Ctrl-C does
        sys.exit(main())
