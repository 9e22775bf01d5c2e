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
  waiting for it.  A key nobody has answered with a version yet keeps the read
  waiting for every replica asked ("not found" never outweighs a version, see
  :func:`~respkv.replication.quorum.read_outcome`).  The session runs no later
  write of the same client until such a read's reply is final, so it answers as
  of its place in the pipeline.  ``EXEC`` first merges what R replicas hold of the
  keys its queued reads read (:meth:`Coordinator.read_barrier`), then runs.

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
from collections import deque
from collections.abc import Callable, Sequence

import trio

from ..cluster.routing import cluster_ok
from ..commands.keyspecs import request_keys
from ..commands.table import CommandError
from ..keyspace.slots import key_slot
from ..peer import wire
from ..peer.bus import PeerUnavailable
from ..protocol import reply
from . import quorum
from .answers import ReadAnswer, ReplAnswer
from .barrier import exec_after_reads, transaction_reads
from .pending import Deferred, Outgoing, ReplyBatch
from .forgetting import Forgetting
from .quorum import REACHED, Quorums, Tally
from .replica import NO_RECORD, REPL, RREAD, SAME, SHIPPED_AS_COMMAND, ReplicaSide
from .store import RECONCILE, VersionStore
from .versions import decode_record, digest, encode_record

log = logging.getLogger(__name__)

#: Hinted keys shipped to a peer per hand-off request, and the loop's period.
HANDOFF_BATCH = 512
HANDOFF_INTERVAL = 0.5
#: Bytes a peer link may hold unsent before writes for that peer become hints.
MAX_BACKLOG = 64 * 1024 * 1024
#: Seconds between checks for parked batches past their deadline.
EXPIRY_TICK = 0.01


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
        self._outgoing: dict[str, Outgoing] = {}
        #: Per topology snapshot: Quorums by (R, W) wanted, placement by slot.
        self._cached_for = None
        self._quorums: dict[tuple[int, int], Quorums] = {}
        self._placements: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        #: Serves what other coordinators send this node as a replica.
        self.replica = ReplicaSide(node, store)
        #: Replicated run handlers by command name (see _make_runs); sessions use them.
        self.runs = self._make_runs(node.table)
        #: Batches of parked sessions, oldest first, for their timeouts.
        self._parked: deque[ReplyBatch] = deque()
        #: peer id → keys whose latest record it may lack (hinted hand-off).
        self.hints: dict[str, set[bytes]] = {}
        #: Tombstones and records of expired keys to drop once their grace is over.
        self.forgetting = Forgetting(node, state, bus, store)
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

    def placement(self, slot: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
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

    def execute(self, session, spec, args, *, reads_merged: bool = False):
        """Run a routed request here as coordinator; bytes, a Deferred or an awaitable.

        ``EXEC`` first merges what R replicas hold of the keys its queued commands
        read (:func:`~.barrier.read_barrier`), then runs the transaction on that state, so
        reads inside a transaction honour R as plain reads do; ``reads_merged``
        says that was done.
        """
        if spec.name == "exec" and not reads_merged:
            keys = transaction_reads(session)
            if keys:
                return exec_after_reads(self, session, spec, args, keys)
        handler = spec.handler
        core = getattr(handler, "core", None)  # blocking commands: run their core now
        if spec.is_async and core is None:
            return session.run_async(spec, args)  # no keyed command of this kind writes
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
            placement = self.placement
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
        """A run of pipelined writes: the general write path, once for all of them."""
        keys = list(dict.fromkeys([args[position] for args in requests]))
        return self._replicate(session, keys, local, None, requests, placement)

    def _ship(self, peers, shipped: list[bytes], deferred: Deferred, keys: list[bytes]) -> None:
        """Queue ``shipped`` (key, parent, record triples) for every peer."""
        if not peers or not shipped:
            return
        encoded = wire.encode_args(shipped)
        count = len(shipped)
        for peer in peers:
            self._out(peer).add_records(encoded, count, deferred, keys)

    def _out(self, peer: str) -> Outgoing:
        """What this round sends ``peer`` (flushed by the poller at the round's end)."""
        out = self._outgoing.get(peer)
        if out is None:
            out = self._outgoing[peer] = Outgoing()
        return out

    def _read_run(self, session, spec, requests, position: int, local: bytes, peers):
        q = self.quorums(session)
        if q.r <= 1 or not peers:
            return local
        keys = list(dict.fromkeys([args[position] for args in requests]))
        deferred = self.read_deferred(local, q.r, peers, keys, spec, requests)
        return self._ask(session, peers, deferred, keys)

    def _ask(self, session, peers, deferred: Deferred, keys: list[bytes]):
        """Queue the digest check of ``keys`` for every peer; ``deferred`` waits for R."""
        self.queue_reads(peers, deferred, keys)
        return self._attach(session, deferred)

    def queue_reads(self, peers, deferred: Deferred, keys: list[bytes]) -> None:
        """Ask every peer (with this round's RREAD) for what it holds of ``keys``."""
        store = self.store
        digests = [store.digest(key) for key in keys]
        for peer in peers:
            self._out(peer).reads.append((deferred, keys, digests))

    def _attach(self, session, deferred: Deferred) -> Deferred | bytes:
        """``deferred`` joined to the session's waiting batch, or its reply if settled."""
        if deferred.settled:
            return self.resolve(session, [deferred])[0]
        batch = session.waiting
        if batch is None:
            batch = session.waiting = ReplyBatch()
        batch.pending += 1
        if deferred.kind == "read":
            batch.reads_pending += 1
        deferred.batch = batch
        return deferred

    def _write(self, session, keys: list[bytes], result: bytes | None, spec=None, args=None):
        """A command changed ``keys``: version and replicate them (see _replicate)."""
        # One key changed by a command replicas can run themselves: offer it to them.
        operation = (
            args if spec is not None and spec.name in SHIPPED_AS_COMMAND and len(set(keys)) == 1 else None
        )
        return self._replicate(session, keys, result, operation, [None])

    def _replicate(self, session, keys, result: bytes | None, operation, requests, placement=None):
        """The write path: version each changed key, ship the new records (or the
        ``operation``) to the live replicas, hint the failed ones, schedule the purge
        of tombstones, and return the placeholder that waits for W.

        ``requests`` are the requests the reply answers (a run of pipelined writes
        shares one placeholder); ``placement`` is their slot's, when known.
        """
        store = self.store
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
        self.stats["replicated_writes"] += len(requests)
        peers, down = placement or self.placement(key_slot(shipped_keys[0]))
        for node_id in down:
            self.hint(node_id, shipped_keys)
        q = self.quorums(session)
        deferred = Deferred(result, Tally(q.w, 1 + len(peers), 1), "write", None, requests)
        if tombstones and not down:
            # Purged only once every preferred replica has it: a failed one that
            # missed the deletion could otherwise bring the old value back.
            grace = self.node.config["tombstone-grace"]
            deferred.on_full = lambda: self.forgetting.schedule_purges(now + grace, tombstones)
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
        peers = self.placement(slot)[0]
        deferred = self.read_deferred(result, q.r, peers, keys, spec, [args])
        return self._ask(session, peers, deferred, keys)

    def read_deferred(self, local: bytes, r: int, peers, keys: list[bytes], spec, requests) -> Deferred:
        """The placeholder of a read of ``keys`` answered here, waiting for R of
        ``peers`` and this node (keys held by none yet wait for every peer)."""
        records = self.store.records
        unfound = {key for key in keys if key not in records}
        deferred = Deferred(local, Tally(r, 1 + len(peers), 1, len(unfound)), "read", spec, requests)
        deferred.unfound = unfound
        return deferred

    @property
    def queued(self) -> bool:
        return bool(self._outgoing)

    def flush(self) -> None:
        """Send every peer what the batch queued for it: one REPL, one RREAD."""
        outgoing, self._outgoing = self._outgoing, {}
        for peer, out in outgoing.items():
            link = self.bus.links.get(peer)
            if out.repl_count:
                callback = ReplAnswer(self, peer, out.repl_waiting, out.repl_keys)
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
                self._request(peer, RREAD, args, ReadAnswer(self, peer, out.reads))

    def resolve(self, session, out: list) -> list:
        """``out`` with every placeholder replaced by its reply (settled or not)."""
        replies = []
        for item in out:
            if item.__class__ is Deferred:
                if item.tally.outcome(final=True) != REACHED:
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

    def hint(self, peer: str, keys: list[bytes]) -> None:
        hinted = self.hints.get(peer)
        if hinted is None:
            hinted = self.hints[peer] = set()
        hinted.update(keys)

    def merge_answer(self, keys: list[bytes], answers: list[bytes]) -> tuple[bool, list[bytes]]:
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
            self._request(peer, REPL, args, ReplAnswer(self, peer, list(waiting), keys))
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
        """Serve one replication bus request as a replica (see replica)."""
        return self.replica.handle(peer_id, op, args)

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
                self.forgetting.purge_due(now)
                self.forgetting.forget_expired_due(now)

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

    def hint_count(self) -> int:
        return sum(len(keys) for keys in self.hints.values())
