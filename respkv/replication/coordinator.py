"""The coordinator: runs client requests against RF replicas, over the cluster bus.

Theory of operation
-------------------
With ``replication-factor`` above 1, every keyed request a node serves as its
slot's coordinator goes through :meth:`Coordinator.execute`.  The command's own
handler runs against the local keyspace exactly as on a single node, while the
coordinator records which keys it changed (the keyspace's change signal).  Then:

* **Writes** (a key changed): for each changed key the
  :class:`~respkv.replication.store.VersionStore` makes a new version (the local
  causal context with this node's clock entry incremented) and the key's new record,
  whole value included, is queued for every other live replica of the slot.  For a
  collection changed by a deterministic one-key command (``SHIPPED_AS_COMMAND``:
  pushes, pops, HSET, SADD, ZADD, ...) the command itself is shipped instead, with
  the new version: a replica holding the version it was applied to runs it too,
  and a replica that does not answers the key, which then gets its whole record.
  The reply waits for W acknowledgements (this node's write is the first).
* **Reads** (a ``readonly`` command, R above 1): the reply is computed locally at
  once; the other live replicas are asked whether they hold the same versions of
  the keys (a digest per key, not the values).  Those holding something else send
  their record back; it is reconciled into the local store, and if that changed
  the local record the command runs again on the merged state before it replies.
  Replicas found stale get the merged record (read repair), without the client
  waiting for it.

Replies that wait are :class:`Deferred` placeholders in the session's reply list;
the session keeps running the rest of its pipeline, then parks; at the end of its
round the poller calls :meth:`flush`, which sends each peer *one* ``REPL``/``RREAD``
request for everything the round's sessions queued for it.  So a pipeline of 16
writes costs one round trip, shared with every other client served in that round.

Answers come back through callbacks of :meth:`PeerLink.request_nowait`, which
update each placeholder's :class:`~respkv.replication.quorum.Tally`; a placeholder
still pending at ``request-timeout`` has missed its quorum and answers
``-NOQUORUM``.  A missed quorum does not undo the write: the versions written stay
where they landed, as in Dynamo, but the client is not told the write was done.

A replica that did not acknowledge (down, cut off, failed) gets a **hint**: the key
is remembered for it, and the hand-off loop ships the key's current record once
the replica is reachable again.  Tombstones that every replica acknowledged are
purged everywhere after ``tombstone-grace``.

Bus operations: ``REPL key parent record ...`` (apply records or run shipped
commands, answer the keys whose command could not run; ``parent`` names the
versions the coordinator superseded, so a replica holding exactly those replaces
them without comparing clocks),
``RREAD key digest ...`` (per key: empty if the digest matches, ``-`` for no
record, else the record) and ``PURGE key clock`` (a notification).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence

import trio

from ..cluster.routing import cluster_ok, request_keys
from ..cluster.slots import key_slot
from ..commands.table import CommandError
from ..peer import wire
from ..peer.bus import PeerUnavailable
from ..protocol import reply
from ..protocol.reply import RESP2
from . import quorum
from .quorum import PENDING, REACHED, Quorums, Tally
from .store import RECONCILE, VersionStore
from .versions import decode_operation, decode_record, digest, encode_record, is_operation

log = logging.getLogger(__name__)

REPL = b"REPL"
RREAD = b"RREAD"
PURGE = b"PURGE"
OPERATIONS = (REPL, RREAD, PURGE)

NO_RECORD = b"-"
SAME = b""

#: Hinted keys shipped to a peer per hand-off request, and the loop's period.
HANDOFF_BATCH = 512
HANDOFF_INTERVAL = 0.5
#: Single-key commands whose result depends only on the key's prior value and the
#: arguments (no clock, no randomness): for a collection, replicas holding the same
#: prior version run the command instead of receiving the whole new value.
SHIPPED_AS_COMMAND = frozenset(
    """lpush rpush lpushx rpushx lpop rpop lset linsert lrem ltrim
    hset hsetnx hmset hdel hincrby hincrbyfloat
    sadd srem
    zadd zrem zincrby zremrangebyscore zremrangebyrank zremrangebylex zpopmin zpopmax""".split()
)

#: Bytes a peer link may hold unsent before writes for that peer become hints.
MAX_BACKLOG = 64 * 1024 * 1024
#: Seconds between checks for parked batches past their deadline.
EXPIRY_TICK = 0.01


class ReplyBatch:
    """The placeholders of one session batch still waiting for their replicas.

    When the last one settles (or the batch times out) ``finish`` wakes whoever
    waits: ``on_settled`` for a parked session, ``event`` for one in a task.
    """

    __slots__ = ("pending", "event", "on_settled", "deadline", "done")

    def __init__(self) -> None:
        self.pending = 0
        self.event: trio.Event | None = None
        self.on_settled: Callable[[], None] | None = None
        self.deadline = math.inf
        self.done = False

    def settled_one(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.event is not None:
            self.event.set()
        if self.on_settled is not None:
            self.on_settled()


class Deferred:
    """The reply (or replies, for a run of requests) that waits for replicas.

    ``requests`` are the requests it answers, for running them again when a read
    merged newer versions from a replica; ``reply`` is their local replies.
    """

    __slots__ = ("reply", "tally", "kind", "batch", "settled", "changed", "spec", "requests", "on_full")

    def __init__(self, reply_bytes: bytes, tally: Tally, kind: str, spec=None, requests=()) -> None:
        self.reply = reply_bytes
        self.tally = tally
        self.kind = kind
        self.batch: ReplyBatch | None = None
        self.settled = tally.outcome() != PENDING
        self.changed = False  # a read merged newer versions: run the command again
        self.spec = spec
        self.requests = requests
        #: Called once every replica asked has acknowledged (tombstone purging).
        self.on_full: Callable[[], None] | None = None

    def ack(self) -> None:
        self.tally.ack()
        self._update()
        if self.on_full is not None and self.tally.answered == self.tally.asked:
            self.on_full()

    def fail(self) -> None:
        self.tally.fail()
        self._update()

    def _update(self) -> None:
        if not self.settled and self.tally.outcome() != PENDING:
            self.settled = True
            if self.batch is not None:
                self.batch.settled_one()

    def result(self, session) -> bytes:
        """The reply once settled or timed out."""
        tally = self.tally
        if tally.outcome() != REACHED:
            error = reply.error(quorum.noquorum_error(self.kind, tally.needed, tally.answered))
            return error * max(1, len(self.requests))
        if self.changed:
            replies = []
            for args in self.requests:
                try:
                    replies.append(self.spec.handler(session, args))
                except CommandError as exc:
                    replies.append(reply.error(str(exc)))
            return b"".join(replies)
        return self.reply


class _Outgoing:
    """What one round queued for one peer: one REPL and one RREAD request.

    REPL arguments are kept encoded (``wire.encode_args``): a write's records are
    encoded once and the same bytes go to every replica.
    """

    __slots__ = ("repl_parts", "repl_count", "repl_waiting", "repl_keys", "reads")

    def __init__(self) -> None:
        self.repl_parts: list[bytes] = []
        self.repl_count = 0
        self.repl_waiting: list[Deferred] = []
        self.repl_keys: list[bytes] = []
        self.reads: list[tuple[Deferred, list[bytes], list[bytes]]] = []

    def add_records(self, encoded: bytes, count: int, deferred: Deferred, keys: list[bytes]) -> None:
        self.repl_parts.append(encoded)
        self.repl_count += count
        self.repl_waiting.append(deferred)
        self.repl_keys.extend(keys)


class Coordinator:
    """Replicated request execution and the replica side of it, for one node."""

    def __init__(self, node, state, bus, store: VersionStore) -> None:
        self.node = node
        self.state = state
        self.bus = bus
        self.store = store
        self.myself = state.myself
        #: Keys changed by the command now running (None outside commands).
        self.recording: list[bytes] | None = None
        #: Causal contexts passed by RESOLVE for the command now running.
        self.contexts: dict = {}
        self._outgoing: dict[str, _Outgoing] = {}
        #: Per topology snapshot: Quorums by (R, W) wanted, placement by slot.
        self._cached_for = None
        self._quorums: dict[tuple[int, int], Quorums] = {}
        self._placements: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        #: What shipped commands run as: a session-like view of this node.
        self._replica_context = ReplicaContext(node)
        #: Replicated run handlers by command name (see _make_runs); sessions use them.
        self.runs = self._make_runs(node.table)
        #: Batches of parked sessions, oldest first, for their timeouts.
        self._parked: deque[ReplyBatch] = deque()
        #: peer id → keys whose latest record it may lack (hinted hand-off).
        self.hints: dict[str, set[bytes]] = {}
        #: (due Unix ms, key, tombstone clock) for tombstones every replica holds.
        self._purges: list[tuple[int, bytes, bytes]] = []
        #: (due Unix ms, key, clock) for records of keys that expired, oldest first.
        self._expired: deque[tuple[int, bytes, bytes]] = deque()
        self.stats = {
            "replicated_writes": 0,
            "write_quorum_missed": 0,
            "read_quorum_missed": 0,
            "read_repairs": 0,
            "hints_delivered": 0,
        }

    # -- settings ----------------------------------------------------------------------

    def quorums(self, session) -> Quorums:
        """N/R/W for ``session``'s requests (its CONSISTENCY override, else the config)."""
        wanted = quorum.requested(self.node.config, session.consistency if session is not None else None)
        self._check_topology()
        q = self._quorums.get(wanted)
        if q is None:
            topology = self.state.topology
            q = self._quorums[wanted] = quorum.effective(
                topology.rf, len(topology.membership.active()), wanted[0], wanted[1]
            )
        return q

    def _check_topology(self) -> None:
        """Drop what was cached for an older topology snapshot."""
        if self.state.topology is not self._cached_for:
            self._cached_for = self.state.topology
            self._quorums = {}
            self._placements = {}

    def _placement(self, slot: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(live peers, failed preferred nodes)`` of ``slot``, cached per topology."""
        self._check_topology()
        entry = self._placements.get(slot)
        if entry is None:
            topology = self.state.topology
            live = topology.nodes_for(slot)
            # Sorted: slots replicated to the same nodes share one placement.
            peers = tuple(sorted(node_id for node_id in live if node_id != self.myself))
            down = tuple(
                node_id
                for node_id in topology.ring.preference_lists(topology.rf)[slot]
                if node_id not in live and node_id != self.myself
            )
            entry = self._placements[slot] = (peers, down)
        return entry

    def observe(self, key: bytes) -> None:
        """The keyspace's change signal (installed as a key observer)."""
        if self.recording is not None:
            self.recording.append(key)

    # -- running requests ----------------------------------------------------------------

    def execute(self, session, spec, args):
        """Run a routed request here as coordinator; bytes, a Deferred or an awaitable."""
        handler = spec.handler
        core = getattr(handler, "core", None)  # blocking commands: run their core now
        if spec.is_async and core is None:
            return session._run_async(spec, args)  # no keyed command of this kind writes
        self.recording = changed = []
        waits = None
        try:
            try:
                if core is not None:
                    outcome = core(session, args)
                    if outcome.__class__ is bytes:
                        result = outcome
                    elif session.in_exec:
                        result = handler.deny_reply(session)
                    else:
                        result, waits = None, outcome
                else:
                    result = handler(session, args)
            except CommandError as exc:
                result = reply.error(str(exc))
            blocking = self.node.blocking
            served_blocked = bool(blocking.ready)
            if served_blocked:  # clients served by this write belong to its versions
                blocking.serve_ready()
        finally:
            self.recording = None
        if changed:
            # A pop served to a blocked client is part of the change: the command
            # alone would not reproduce it, so its result is shipped.
            deferred = self._write(session, changed, result, None if served_blocked else spec, args)
        elif spec.is_readonly and result is not None and result[:1] != b"-":
            deferred = self._read(session, spec, args, result)
        else:
            deferred = None
        if waits is not None:
            return session.node.blocking.wait(session, waits)
        if deferred is None:
            return result
        return deferred

    # -- runs of pipelined requests -------------------------------------------------------

    def _make_runs(self, table) -> dict[bytes, Callable]:
        """Replicated versions of the commands that serve pipelined runs (GET, SET)."""
        runs = {}
        for name, spec in table.plain_specs.items():
            if spec.run_handler is not None and spec.first_key > 0 and spec.first_key == spec.last_key:
                runs[name] = self._run_for(spec)
        return runs

    def _run_for(self, spec) -> Callable:
        base = spec.run_handler
        position = spec.first_key
        write = spec.is_write

        def run(session, batch, i, out):
            """Serve the run of ``spec`` requests from ``batch[i]`` whose keys this node
            coordinates with one placement; one placeholder answers for all of them."""
            state = self.state
            if not cluster_ok(state.topology):
                return i
            served = state.served
            placement = self._placement
            name = batch[i][0]
            count = len(batch)
            end = i
            first = None
            last_key = None
            while end < count:
                args = batch[end]
                # Requests after batch[i] may be malformed (see protocol.reader.well_formed).
                if args.__class__ is not list or len(args) <= position or args[0] != name:
                    break
                key = args[position]
                if key.__class__ is not bytes:
                    break
                if key != last_key:  # pipelines often repeat one key: check it once
                    slot = key_slot(key)
                    if not served[slot]:
                        break
                    where = placement(slot)
                    if first is None:
                        first = where
                    elif where != first:
                        break
                    last_key = key
                end += 1
            if end == i:
                return i
            mark = len(out)
            done = i + base(session, batch[i:end], 0, out)
            if done == i:
                return i
            requests = batch[i:done]
            local = b"".join(out[mark:])
            del out[mark:]
            if write:
                out.append(self._write_run(session, requests, position, local, first))
            else:
                out.append(self._read_run(session, spec, requests, position, local, first[0]))
            return done

        return run

    def _write_run(self, session, requests, position: int, local: bytes, placement):
        store = self.store
        now = self.node.keyspace.clock_ms()
        shipped: list[bytes] = []
        keys = list(dict.fromkeys([args[position] for args in requests]))
        written_by = store.written
        for key in keys:
            written = written_by(key, now)
            if written is not None:
                shipped.append(key)
                shipped.append(written[0])
                shipped.append(written[1])
        if not shipped:
            return local
        self.stats["replicated_writes"] += len(requests)
        peers, down = placement
        for node_id in down:
            self._hint(node_id, keys)
        q = self.quorums(session)
        deferred = Deferred(local, Tally(q.w, 1 + len(peers), 1), "write", None, requests)
        self._ship(peers, shipped, deferred, keys)
        return self._attach(session, deferred)

    def _ship(self, peers, shipped: list[bytes], deferred: Deferred, keys: list[bytes]) -> None:
        """Queue ``shipped`` (key, parent, record triples) for every peer."""
        if not peers or not shipped:
            return
        encoded = wire.encode_args(shipped)
        count = len(shipped)
        for peer in peers:
            self._out(peer).add_records(encoded, count, deferred, keys)

    def _out(self, peer: str) -> _Outgoing:
        """What this round sends ``peer`` (flushed by the poller at the round's end)."""
        out = self._outgoing.get(peer)
        if out is None:
            out = self._outgoing[peer] = _Outgoing()
        return out

    def _read_run(self, session, spec, requests, position: int, local: bytes, peers):
        q = self.quorums(session)
        if q.r <= 1 or not peers:
            return local
        store = self.store
        keys = list(dict.fromkeys([args[position] for args in requests]))
        digests = [store.digest(key) for key in keys]
        deferred = Deferred(local, Tally(q.r, 1 + len(peers), 1), "read", spec, requests)
        return self._ask(session, peers, deferred, keys, digests)

    def _ask(self, session, peers, deferred: Deferred, keys: list[bytes], digests: list[bytes]):
        """Queue the digest check of ``keys`` for every peer; ``deferred`` waits for R."""
        for peer in peers:
            self._out(peer).reads.append((deferred, keys, digests))
        return self._attach(session, deferred)

    def _attach(self, session, deferred: Deferred) -> Deferred | bytes:
        """``deferred`` joined to the session's waiting batch, or its reply if settled."""
        if deferred.settled:
            return self.resolve(session, [deferred])[0]
        batch = session.waiting
        if batch is None:
            batch = session.waiting = ReplyBatch()
        batch.pending += 1
        deferred.batch = batch
        return deferred

    def _write(self, session, keys: list[bytes], result: bytes | None, spec=None, args=None):
        store = self.store
        # One key changed by a command replicas can run themselves: offer it to them.
        operation = (
            args if spec is not None and spec.name in SHIPPED_AS_COMMAND and len(set(keys)) == 1 else None
        )
        now = self.node.keyspace.clock_ms()
        contexts = self.contexts
        shipped: list[bytes] = []
        shipped_keys: list[bytes] = []
        tombstones: list[tuple[bytes, bytes]] = []
        records = store.records
        for key in (keys if len(keys) == 1 else dict.fromkeys(keys)):
            written = store.written(key, now, contexts.pop(key, None) if contexts else None, operation)
            if written is None:
                continue
            shipped.append(key)
            shipped.append(written[0])
            shipped.append(written[1])
            shipped_keys.append(key)
            record = records[key]
            if record[0].tombstone and len(record) == 1:
                tombstones.append((key, record[0].clock))
        if contexts:
            contexts.clear()
        if not shipped_keys:
            return result
        self.stats["replicated_writes"] += 1
        peers, down = self._placement(key_slot(shipped_keys[0]))
        for node_id in down:
            self._hint(node_id, shipped_keys)
        q = self.quorums(session)
        deferred = Deferred(result, Tally(q.w, 1 + len(peers), 1), "write", None, [None])
        if tombstones and not down:
            # Purged only once every preferred replica has it: a failed one that
            # missed the deletion could otherwise bring the old value back.
            grace = self.node.config["tombstone-grace"]
            deferred.on_full = lambda: self._purges.extend((now + grace, k, c) for k, c in tombstones)
            if not peers:
                deferred.on_full()
        self._ship(peers, shipped, deferred, shipped_keys)
        if result is None:
            return None  # a blocking command that waits: nothing to reply yet
        return self._attach(session, deferred)

    def _read(self, session, spec, args, result: bytes):
        q = self.quorums(session)
        if q.r <= 1:
            return None
        keys = request_keys(spec, args) if spec.first_key > 0 or spec.movable_keys else []
        if not keys:
            return None
        slot = key_slot(keys[0])
        if self.state.topology.coordinator(slot) != self.myself:
            return None  # a READONLY connection reading a replica's own copy
        peers = self._placement(slot)[0]
        store = self.store
        digests = [store.digest(key) for key in keys]
        deferred = Deferred(result, Tally(q.r, 1 + len(peers), 1), "read", spec, [args])
        return self._ask(session, peers, deferred, keys, digests)

    @property
    def queued(self) -> bool:
        return bool(self._outgoing)

    def flush(self) -> None:
        """Send every peer what the batch queued for it: one REPL, one RREAD."""
        outgoing, self._outgoing = self._outgoing, {}
        for peer, out in outgoing.items():
            link = self.bus.links.get(peer)
            if out.repl_count:
                callback = _ReplAnswer(self, peer, out.repl_waiting, out.repl_keys)
                if link is not None and link.backlog > MAX_BACKLOG:
                    # The peer does not keep up: hint instead of queueing without bound.
                    callback(None, PeerUnavailable(f"{peer}: {link.backlog} bytes not yet sent"))
                else:
                    self._request(peer, REPL, wire.Prepared(out.repl_count, b"".join(out.repl_parts)), callback)
            if out.reads:
                args: list[bytes] = []
                for _, keys, digests in out.reads:
                    for key, key_digest in zip(keys, digests):
                        args.append(key)
                        args.append(key_digest)
                self._request(peer, RREAD, args, _ReadAnswer(self, peer, out.reads))

    def resolve(self, session, out: list) -> list:
        """``out`` with every placeholder replaced by its reply (settled or not)."""
        replies = []
        for item in out:
            if item.__class__ is Deferred:
                if item.tally.outcome() != REACHED:
                    self.stats[f"{item.kind}_quorum_missed"] += 1
                item = item.result(session)
            replies.append(item)
        return replies

    async def settle(self, session, out: list) -> list:
        """Wait for the session batch's placeholders; ``out`` with their replies."""
        if self._outgoing:
            self.flush()
        batch = session.waiting
        session.waiting = None
        if batch is not None and batch.pending:
            batch.event = trio.Event()
            with trio.move_on_after(self.node.config["request-timeout"] / 1000):
                await batch.event.wait()
            batch.done = True
        return self.resolve(session, out)

    def park(self, batch: ReplyBatch) -> None:
        """Time out ``batch`` after ``request-timeout`` unless it settles first."""
        batch.deadline = trio.current_time() + self.node.config["request-timeout"] / 1000
        self._parked.append(batch)

    async def _expire_parked(self) -> None:
        """Finish parked batches whose deadline passed (their replies say NOQUORUM)."""
        parked = self._parked
        while True:
            await trio.sleep(EXPIRY_TICK)
            now = trio.current_time()
            # Deadlines are (nearly) in arrival order: stop at the first one not due.
            while parked and (parked[0].done or parked[0].deadline <= now):
                parked.popleft().finish()

    # -- answers ---------------------------------------------------------------------------

    def _hint(self, peer: str, keys: list[bytes]) -> None:
        hinted = self.hints.get(peer)
        if hinted is None:
            hinted = self.hints[peer] = set()
        hinted.update(keys)

    def _merge_answer(self, keys: list[bytes], answers: list[bytes]) -> tuple[bool, list[bytes]]:
        """Reconcile a replica's RREAD answers; (local changed, keys the peer lacks)."""
        store = self.store
        changed = False
        stale: list[bytes] = []
        for key, answer in zip(keys, answers):
            if answer == SAME:
                continue
            if answer == NO_RECORD:
                if store.record(key) is not None:
                    stale.append(key)
                continue
            remote = decode_record(answer)
            if store.apply(key, remote):
                changed = True
            if store.digest(key) != digest(remote):
                stale.append(key)
        return changed, stale

    def repair(self, peer: str, keys: list[bytes]) -> None:
        """Ship the current records of ``keys`` to a stale ``peer`` (read repair)."""
        self.stats["read_repairs"] += self.send_records(peer, keys)

    def send_records(self, peer: str, keys: list[bytes], waiting: Sequence[Deferred] = ()) -> int:
        """Ship the whole current records of ``keys`` to ``peer``; ``waiting``
        placeholders count its acknowledgement.  Returns how many records went."""
        args = self._records_args(keys)
        if args or waiting:
            self._request(peer, REPL, args, _ReplAnswer(self, peer, list(waiting), keys))
        return len(args) // 3

    def _request(self, peer: str, op: bytes, args, callback) -> None:
        """Send ``op`` to ``peer``; ``callback`` gets the answer, or PeerUnavailable
        at once when there is no connection."""
        link = self.bus.links.get(peer)
        if link is None or not link.request_nowait(op, args, callback):
            callback(None, PeerUnavailable(peer))

    def _records_args(self, keys) -> list[bytes]:
        args: list[bytes] = []
        for key in keys:
            record = self.store.full_record(key)
            if record is not None:
                args.append(key)
                args.append(RECONCILE)
                args.append(encode_record(record))
        return args

    # -- the replica side ------------------------------------------------------------------

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """Serve one bus request (see the module doc)."""
        store = self.store
        if op == REPL:
            # Answers the keys whose shipped command could not run here (this
            # replica does not hold the version it applies to): the coordinator
            # sends their whole records instead.
            if len(args) % 3:
                raise ValueError("REPL needs key, parent, record triples")
            apply_shipped = store.apply_shipped
            missing = []
            for i in range(0, len(args), 3):
                blob = args[i + 2]
                if is_operation(blob):
                    if not self._run_shipped(args[i], args[i + 1], blob):
                        missing.append(args[i])
                else:
                    apply_shipped(args[i], args[i + 1], blob)
            return missing
        if len(args) % 2:
            raise ValueError(f"{op.decode()} needs key/value pairs")
        if op == RREAD:
            answers = []
            for i in range(0, len(args), 2):
                key = args[i]
                record = store.record(key)
                if digest(record) == args[i + 1]:
                    answers.append(SAME)
                elif record is None:
                    answers.append(NO_RECORD)
                else:
                    answers.append(encode_record(store.full_record(key)))
            return answers
        if op == PURGE:
            store.purge(args[0], args[1])
            return []
        raise ValueError(f"unknown replication operation {op!r}")

    def _run_shipped(self, key: bytes, parent: bytes, blob: bytes) -> bool:
        """Run a command a coordinator shipped for ``key``; False if it cannot run here."""
        if self.store.digest(key) != parent:
            return False
        version, command = decode_operation(blob)
        spec = self.node.table.lookup(command[0])
        if spec is None or spec.name not in SHIPPED_AS_COMMAND or spec.first_key != 1 or command[1:2] != [key]:
            raise ValueError(f"{command[0]!r} cannot be shipped as a command")
        try:
            spec.handler(self._replica_context, command)
        except CommandError:
            return False  # cannot happen on the same prior value; recover with the record
        self.store.operation_applied(key, version)
        return True

    # -- background work ---------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Time out parked batches; hand hinted keys off to returning replicas;
        purge acknowledged tombstones and the records of expired keys."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_parked)
            task_status.started()
            while True:
                await trio.sleep(HANDOFF_INTERVAL)
                self.hand_off()
                now = self.node.keyspace.clock_ms()
                self.purge_due(now)
                self.forget_expired_due(now)

    def hand_off(self) -> None:
        """Ship hinted keys to every hinted peer that is reachable and live again."""
        topology = self.state.topology
        for peer, keys in list(self.hints.items()):
            link = self.bus.links.get(peer)
            if not keys:
                del self.hints[peer]
                continue
            if link is None or not link.connected or not topology.is_live(peer) or link.backlog > MAX_BACKLOG:
                continue
            batch = []
            while keys and len(batch) < HANDOFF_BATCH:
                key = keys.pop()
                if peer in topology.nodes_for(key_slot(key)):
                    batch.append(key)
            self.stats["hints_delivered"] += self.send_records(peer, batch)

    def purge_due(self, now_ms: int) -> None:
        """Drop tombstones whose grace period is over, here and on their replicas."""
        if not self._purges:
            return
        due = [entry for entry in self._purges if entry[0] <= now_ms]
        if not due:
            return
        self._purges = [entry for entry in self._purges if entry[0] > now_ms]
        topology = self.state.topology
        for _, key, clock in due:
            if not self.store.purge(key, clock):
                continue
            for peer in topology.nodes_for(key_slot(key)):
                link = self.bus.links.get(peer)
                if peer != self.myself and link is not None:
                    link.notify(PURGE, [key, clock])

    def expired(self, key: bytes) -> None:
        """The keyspace expired ``key``: forget its record after ``tombstone-grace``.

        The record is kept that long so a replica that has not expired the key yet
        cannot hand the old value back by read repair in the meantime.
        """
        now = self.node.keyspace.clock_ms()
        clock = self.store.expired_clock(key, now)
        if clock is not None:
            self._expired.append((now + self.node.config["tombstone-grace"], key, clock))

    def forget_expired_due(self, now_ms: int) -> None:
        """Drop the records of keys that expired more than the grace period ago."""
        expired = self._expired
        while expired and expired[0][0] <= now_ms:
            _, key, clock = expired.popleft()
            self.store.forget_expired(key, clock, now_ms)

    def hint_count(self) -> int:
        return sum(len(keys) for keys in self.hints.values())


class ReplicaContext:
    """What a command handler needs of a session, for commands shipped by coordinators.

    Handlers read the keyspace, the node and counters through their session; a
    replica running a shipped command has no client, so it hands them this.
    """

    proto = RESP2
    in_exec = False
    multi = None

    def __init__(self, node) -> None:
        self.node = node
        self.ks = node.keyspace
        self.stats = type(node.stats)()  # counters of its own: not client traffic


class _ReplAnswer:
    """Callback of one REPL request: count acks, hint the keys of a failed one."""

    __slots__ = ("coordinator", "peer", "waiting", "keys")

    def __init__(self, coordinator: Coordinator, peer: str, waiting: list[Deferred], keys: list[bytes]) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.waiting = waiting
        self.keys = keys

    def __call__(self, answer, error) -> None:
        if error is None:
            if answer:
                # Shipped commands the replica could not run: send those records whole,
                # and count this replica's acknowledgement when they are in.
                self.coordinator.send_records(self.peer, list(answer), self.waiting)
                return
            for deferred in self.waiting:
                deferred.ack()
            return
        log.debug("replication to %s failed: %r", self.peer, error)
        self.coordinator._hint(self.peer, self.keys)
        for deferred in self.waiting:
            deferred.fail()


class _ReadAnswer:
    """Callback of one RREAD request: merge what differs, count answers, repair."""

    __slots__ = ("coordinator", "peer", "reads")

    def __init__(self, coordinator: Coordinator, peer: str, reads) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.reads = reads

    def __call__(self, answer, error) -> None:
        if error is None:
            total = sum(len(keys) for _, keys, _ in self.reads)
            if len(answer) != total:
                error = ValueError(f"RREAD answered {len(answer)} entries for {total} keys")
        if error is not None:
            log.debug("replica read from %s failed: %r", self.peer, error)
            for deferred, _, _ in self.reads:
                deferred.fail()
            return
        coordinator = self.coordinator
        offset = 0
        stale: list[bytes] = []
        for deferred, keys, _ in self.reads:
            answers = answer[offset : offset + len(keys)]
            offset += len(keys)
            try:
                changed, lacking = coordinator._merge_answer(keys, answers)
            except ValueError as exc:
                log.warning("bad record from %s: %s", self.peer, exc)
                deferred.fail()
                continue
            if changed:
                deferred.changed = True
            stale.extend(lacking)
            deferred.ack()
        if stale:
            coordinator.repair(self.peer, stale)

