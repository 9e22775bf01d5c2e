"""The clients of the fault suite (:mod:`tools.faultsuite`): writers that record
every acknowledgement, and the final quorum reads.

A :class:`Router` sends each command to the coordinator of its key's slot, as a
cluster client does: it learns the slot map from ``CLUSTER SLOTS``, follows
``-MOVED`` (answered without running the command, so following it is safe), and
never retries otherwise: a command answered with an error, a timeout or a dropped
connection has an unknown outcome, and a retry would hide that.  (A connection
refused before the command was sent is no such outcome: the client reloads the
slot map and sends it to the coordinator named there, as cluster clients do.)  After a connection
fails it reloads the slot map from another node, which is how it finds the new
coordinator once the cluster has declared a killed node failed.

A :class:`Writer` is one sequential client writing keys and set elements no other
write uses, and recording each outcome in its own :class:`~tools.faultcheck.Ledger`;
a :class:`Workload` runs several.  :func:`read_back` reads every key and set through
its coordinator (a quorum read) and, for every set, its ``SIBLINGS``, so a lost
element can be told apart from one that only sits in a concurrent version that
``SMEMBERS`` does not show.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from respkv import launcher
from tools.faultcheck import Ledger, Observation

HOST = launcher.DEFAULT_HOST
SLOTS = 16384
#: Seconds a writer pauses after an unacknowledged write, so clients facing a dead
#: node do not spin on refused connections (the nodes share the machine's cores).
ERROR_PAUSE = 0.02
#: Seconds between a client's slot-map refreshes after errors.
REFRESH_INTERVAL = 0.1
#: Redirections followed for one command before it counts as unacknowledged.
MAX_REDIRECTS = 5
#: Commands per pipeline of the final reads.
READ_BATCH = 500


class WorkloadError(RuntimeError):
    """A writer crashed or did not stop."""


class Unacknowledged(Exception):
    """A write got no acknowledgement: its outcome is unknown."""


class Router:
    """Sends each command to the coordinator of its key's slot over plain
    connections that never retry; follows ``-MOVED``, which the node answers
    without running the command.  One per thread."""

    def __init__(self, ports: Sequence[int], timeout: float, rng: random.Random | None = None,
                 remap_every: float | None = None) -> None:
        self.ports = list(ports)
        self.timeout = timeout
        #: Seconds between slot-map reloads from a random node even without errors
        #: (None: only after errors): in a partition, each side publishes its own map,
        #: so writers then reach both sides for the same slots.
        self.remap_every = remap_every
        self.rng = rng or random.Random(0)
        self.owner: list[int] = [self.ports[0]] * SLOTS
        self.conns: dict[int, redis.Redis] = {}
        self._refreshed = -1.0
        #: Redirections followed and slot-map reloads, for reports.
        self.moved = self.refreshes = 0
        self.refresh()

    def refresh(self, avoid: int | None = None, prefer: int | None = None) -> bool:
        """Reload the slot map from a node that answers (``prefer`` asked first,
        ``avoid`` last)."""
        self._refreshed = time.monotonic()
        self.refreshes += 1
        for port in sorted(self.ports, key=lambda p: (p == avoid, p != prefer)):
            try:
                reply = launcher.command(HOST, port, "CLUSTER", "SLOTS", timeout=self.timeout)
            except (OSError, launcher.ReplyError):
                continue
            for entry in reply:
                coordinator = int(entry[2][1])
                for slot in range(int(entry[0]), int(entry[1]) + 1):
                    self.owner[slot] = coordinator
            return True
        return False

    def connection(self, port: int) -> redis.Redis:
        conn = self.conns.get(port)
        if conn is None:
            conn = self.conns[port] = redis.Redis(
                host=HOST, port=port, decode_responses=True, socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout, retry=Retry(NoBackoff(), 0))
        return conn

    def drop(self, port: int) -> None:
        conn = self.conns.pop(port, None)
        if conn is not None:
            conn.close()

    def execute(self, key: str, *args: str):
        """The reply of the coordinator of ``key``; :class:`Unacknowledged` for an
        error reply, a timeout or a connection that failed."""
        slot = key_slot(key.encode())
        if self.remap_every is not None and time.monotonic() - self._refreshed >= self.remap_every:
            self.refresh(prefer=self.rng.choice(self.ports))
        for _ in range(MAX_REDIRECTS):
            port = self.owner[slot]
            try:
                return self.connection(port).execute_command(*args)
            except redis.exceptions.MovedError as exc:
                self.moved += 1
                self.owner[slot] = int(exc.port)
                if time.monotonic() - self._refreshed >= REFRESH_INTERVAL:
                    # Slots moved: reload the whole map, as redis-py does after MOVEDs.
                    self.refresh(prefer=int(exc.port))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.drop(port)
                if time.monotonic() - self._refreshed >= REFRESH_INTERVAL:
                    self.refresh(avoid=port)
                if isinstance(exc, redis.ConnectionError) and " connecting to " in str(exc):
                    continue  # refused before anything was sent: safe to send elsewhere, as cluster clients do
                raise Unacknowledged(f"{type(exc).__name__}: {exc}") from None
            except redis.ResponseError as exc:
                raise Unacknowledged(str(exc)) from None
        raise Unacknowledged("REDIRECTS exhausted: MOVED or refused connections, %d times" % MAX_REDIRECTS)

    def close(self) -> None:
        for port in list(self.conns):
            self.drop(port)


class Budget:
    """Write attempts left, shared by the writers (None: until told to stop)."""

    def __init__(self, attempts: int | None) -> None:
        self.left = attempts
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class Writer(threading.Thread):
    """One sequential client writing unique keys and unique set elements, each
    recorded in its own ledger with the outcome it saw."""

    def __init__(self, cid: int, tag: str, ports: Sequence[int], set_keys: Sequence[str], *,
                 timeout: float, set_ratio: float, rng: random.Random, stop: threading.Event,
                 budget: Budget, remap_every: float | None = None) -> None:
        super().__init__(name=f"faultsuite-writer-{tag}{cid}", daemon=True)
        self.cid, self.tag = cid, tag
        self.ports, self.set_keys = list(ports), list(set_keys)
        self.timeout, self.set_ratio = timeout, set_ratio
        self.rng, self.stop, self.budget = rng, stop, budget
        self.remap_every = remap_every
        self.ledger = Ledger()
        self.failure: BaseException | None = None

    def run(self) -> None:
        router = None
        try:
            router = Router(self.ports, self.timeout, random.Random(self.rng.random()), self.remap_every)
            seq = 0
            while not self.stop.is_set() and self.budget.take():
                seq += 1
                name = f"{self.tag}c{self.cid}-{seq}"
                if self.rng.random() < self.set_ratio:
                    set_key = self.rng.choice(self.set_keys)
                    acked, error = self._attempt(router, set_key, ("SADD", set_key, name), _sadd_acked)
                    self.ledger.add(set_key, name, acked, error)
                else:
                    key, value = f"fs:{name}", f"v:{name}"
                    acked, error = self._attempt(router, key, ("SET", key, value), _set_acked)
                    self.ledger.write(key, value, acked, error)
                if not acked:
                    self.stop.wait(ERROR_PAUSE)
        except BaseException as exc:  # reported by the driver
            self.failure = exc
        finally:
            if router is not None:
                router.close()

    @staticmethod
    def _attempt(router: Router, key: str, args: tuple, acknowledges) -> tuple[bool, str | None]:
        try:
            reply = router.execute(key, *args)
        except Unacknowledged as exc:
            return False, str(exc)
        if acknowledges(reply):
            return True, None
        return False, f"unexpected reply {reply!r}"


def _set_acked(reply) -> bool:
    return reply is True or reply == "OK"


def _sadd_acked(reply) -> bool:
    return isinstance(reply, int) and not isinstance(reply, bool)


class Workload:
    """The writer threads of one stretch of writing, and their ledgers."""

    def __init__(self, ports: Sequence[int], rng: random.Random, *, tag: str, clients: int, sets: int,
                 timeout: float, set_ratio: float, attempts: int | None = None,
                 remap_every: float | None = None) -> None:
        self.timeout = timeout
        self.stop = threading.Event()
        budget = Budget(attempts)
        set_keys = set_names(sets)
        self.writers = [Writer(i, tag, ports, set_keys, timeout=timeout, set_ratio=set_ratio,
                               rng=random.Random(rng.random()), stop=self.stop, budget=budget,
                               remap_every=remap_every)
                        for i in range(clients)]

    def start(self) -> "Workload":
        for w in self.writers:
            w.start()
        return self

    def counts(self) -> tuple[int, int]:
        """(acknowledged, unacknowledged) writes so far, read while the writers run."""
        acked = unknown = 0
        for w in self.writers:
            acked += len(w.ledger.writes) + sum(len(m) for m in list(w.ledger.elements.values()))
            unknown += len(w.ledger.unknown_writes) + sum(len(m) for m in list(w.ledger.unknown_elements.values()))
        return acked, unknown

    def finish(self, wait_for_budget: bool = False) -> Ledger:
        """Stop the writers (or, with ``wait_for_budget``, let them use up their
        attempts) and return their merged ledger."""
        if not wait_for_budget:
            self.stop.set()
        for w in self.writers:
            # A writer waits for its last reply at most one socket timeout per redirect.
            w.join(None if wait_for_budget else self.timeout * MAX_REDIRECTS + 5.0)
        self.stop.set()
        stuck = [w.name for w in self.writers if w.is_alive()]
        if stuck:
            raise WorkloadError(f"writers did not stop: {', '.join(stuck)}")
        failed = [w for w in self.writers if w.failure is not None]
        if failed:
            raise WorkloadError(f"{failed[0].name} failed: {failed[0].failure!r}") from failed[0].failure
        ledger = Ledger()
        for w in self.writers:
            ledger.merge(w.ledger)
        return ledger


def set_names(count: int) -> list[str]:
    """The keys of the shared sets."""
    return [f"fs:set:{i}" for i in range(count)]


# --------------------------------------------------------------------------- #
# The final reads
# --------------------------------------------------------------------------- #


def read_back(ports: Sequence[int], ledger: Ledger, timeout: float, read_timeout: float) -> Observation:
    """Quorum-read every key and set of ``ledger`` through its coordinator, then
    each set's ``SIBLINGS``.

    Keys answered with an error are asked again (after a fresh slot map) until
    ``read_timeout`` seconds have passed; what never answers ends in ``unread_*``.
    """
    seen = Observation()
    router = Router(ports, timeout)
    deadline = time.monotonic() + read_timeout
    try:
        for command, names, store in (("GET", ledger.keys(), seen.values),
                                      ("SMEMBERS", ledger.sets(), seen.members)):
            pending = list(names)
            while pending:
                pending = _read_round(router, command, pending, store)
                if not pending or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
                router.refresh()
            unread = seen.unread_keys if command == "GET" else seen.unread_sets
            unread.update(pending)
        for set_key in ledger.sets():
            try:
                reply = router.execute(set_key, "SIBLINGS", set_key)
            except Unacknowledged:
                continue
            versions = sibling_values(reply)
            seen.siblings[set_key] = len(versions)
            seen.sibling_members[set_key] = set().union(*versions)
    finally:
        router.close()
    return seen


def sibling_values(reply) -> list[set[str]]:
    """The members of each live (not tombstone) sibling in a ``SIBLINGS`` reply
    (RESP2: ``[context, [[field, value, ...], ...]]``)."""
    out = []
    for sibling in reply[1]:
        fields = sibling if isinstance(sibling, dict) else dict(zip(sibling[::2], sibling[1::2]))
        if str(fields.get("tombstone", 0)) == "1" or fields.get("value") is None:
            continue
        value = fields["value"]
        out.append(set(value) if isinstance(value, (list, set, tuple)) else {value})
    return out


def _read_round(router: Router, command: str, names: list[str], store: dict) -> list[str]:
    """One pass of pipelined reads, grouped by coordinator; returns the names that failed."""
    by_port: dict[int, list[str]] = {}
    for name in names:
        by_port.setdefault(router.owner[key_slot(name.encode())], []).append(name)
    failed = []
    for port, group in by_port.items():
        for start in range(0, len(group), READ_BATCH):
            chunk = group[start:start + READ_BATCH]
            pipe = router.connection(port).pipeline(transaction=False)
            for name in chunk:
                pipe.execute_command(command, name)
            try:
                replies = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                router.drop(port)
                failed += chunk
                continue
            for name, reply in zip(chunk, replies):
                if isinstance(reply, Exception):
                    failed.append(name)
                elif command == "SMEMBERS":
                    store[name] = set(reply)
                else:
                    store[name] = reply
    return failed


