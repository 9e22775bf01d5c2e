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
  The reply waits for W acknowledgements.  This node's own copy counts once it is
  in its commit log: the end-of-round commit (:meth:`Node.persist_now
  <respkv.node.Node.persist_now>`) reports to :meth:`Coordinator.local_commit`;
  a replica answers a ``REPL`` only after its log has the records too.
* **Reads** (a ``readonly`` command, R above 1): the reply is computed locally at
  once; the other live replicas are asked whether they hold the same versions of
  the keys (a digest per key, not the values).  Those holding something else send
  their record back; it is reconciled into the local store, and if the local record
  changed since the read began (that merge, a hand-off or an anti-entropy pull) the command runs again.
  Replicas found stale get the merged record (read repair), without the client
  waiting for it.  A key nobody has answered with a version yet keeps the read
  waiting for every replica asked ("not found" never outweighs a version, see
  :mod:`~respkv.replication.get_core`).  No later write of the session runs
  until such a read's reply is final, so it answers as of its place in the pipeline.  ``EXEC`` first merges what R replicas hold of the
  keys its queued reads read (:meth:`Coordinator.read_barrier`), then runs.

Each replicated request is a pure state machine (:mod:`~.put_core`,
:mod:`~.get_core`) that turns events — the local write, each replica's answer or
failure, the timeout — into actions (send, hint, repair, reply, fail); the
coordinator only performs them.  A reply not decided at once goes to a slot the
request reserved in the session's reply queue (:mod:`respkv.net.replies`); the
session keeps running the rest of its pipeline, then parks.  At the end of its
round the poller runs its end-of-round hooks, among them :meth:`flush`, which
sends each peer *one* ``REPL``/``RREAD`` request for everything the round's
sessions queued for it.  So a pipeline of 16 writes costs one round trip, shared
with every other client served in that round.

Answers come back through callbacks (:mod:`~.answers`), which only merge records
and report events; a decided machine fills its slot, sent in the session's next
round.  A request undecided at ``request-timeout`` decides on what it has
(``-NOQUORUM`` unless its quorum is met); a missed quorum does not undo the write
(as in Dynamo).  Tracked commands hand their requests to the store, which keeps
the convergent metadata (:mod:`~.convergent`) by them.  Keys evicted under
``maxmemory`` are deleted as by ``DEL`` (:meth:`Coordinator.evicted`).

A replica that did not acknowledge (down, cut off, failed) gets a durable **hint**
(:mod:`~.handoff`); with a sloppy quorum a preferred node that is down has a
fallback beyond the preference list take the write and keep its hint instead
(``REPLFOR``).  Tombstones every replica acknowledged are purged after ``tombstone-grace``.

The bus operations (``REPL``, ``REPLFOR``, ``RREAD``, ``PURGE``) are described
with the replica side that serves them, :mod:`~.replica`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import trio

from ..commands.keyspecs import request_keys
from ..commands.table import CommandError
from ..keyspace.slots import key_slot
from ..peer import wire
from ..peer.bus import PeerUnavailable
from ..protocol import reply
from . import convergent, get_core, put_core, quorum
from .answers import ReadAnswer, ReplAnswer
from .barrier import exec_after_reads, transaction_reads
from .equivalents import ChangeEquivalents, tracked_equivalents
from .forgetting import Forgetting
from .get_core import GetCore
from .handoff import MAX_BACKLOG, HintedHandoff
from .ownership import SlotHolders
from .pending import Outgoing, ReadRequest, WriteRequest
from .put_core import PutCore
from .placement import Placements
from .replica import MERGEABLE, REPL, RREAD, SHIPPED_AS_COMMAND, ReplicaSide, merged_operation, reconcile_args
from .store import VersionStore

log = logging.getLogger(__name__)

HANDOFF_INTERVAL = 0.5  # seconds between hand-off passes (and purges of forgotten records)
EXPIRY_TICK = 0.01  # seconds between checks for waiting requests past their deadline


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
        #: The keyspace's command_log: what a command's changes amount to, key by key.
        self.equivalents = ChangeEquivalents()
        #: Causal contexts passed by RESOLVE for the command now running.
        self.contexts: dict = {}
        self._outgoing: dict[str, Outgoing] = {}
        #: Former holders of slots the ring moved, read too (see :mod:`.ownership`).
        self.holders = SlotHolders()
        placements = Placements(node.config, state, self.holders, self.myself)
        #: ``quorums(session)``: N/R/W of a session's requests; ``placement(slot)``:
        #: (live peers, failed preferred nodes, live former holders), both cached.
        self.quorums, self.placement = placements.quorums, placements.placement
        #: Keys other nodes may lack, kept durably, shipped when they are back.
        self.handoff = HintedHandoff(state, bus, store, self._request, node.config, node.persist_now)
        self.hint = self.handoff.hint
        #: Serves what other coordinators send this node as a replica (or fallback).
        self.replica = ReplicaSide(node, store, self.hint)
        #: Writes whose local copy waits for the end-of-round commit of the log.
        self._awaiting_commit: list[WriteRequest] = []
        #: Requests whose client waits for them, oldest first, for their timeouts.
        self._waiting: deque[WriteRequest | ReadRequest] = deque()
        #: Set when a request starts waiting while the timeout task sleeps on an
        #: empty queue (an idle node then has no timer waking it 100 times a second).
        self._waiting_added: trio.Event | None = None
        #: The deadline of requests that start waiting in this round (see _watch).
        self._round_deadline: float | None = None
        #: Tombstones and records of expired keys to drop once their grace is over.
        self.forgetting = Forgetting(node, state, bus, store)
        self.stats = {
            "replicated_writes": 0,
            "write_quorum_missed": 0,
            "read_quorum_missed": 0,
            "read_repairs": 0,
        }

    def observe(self, key: bytes) -> None:
        """The keyspace's change signal (installed as a key observer)."""
        if self.recording is not None:
            self.recording.append(key)

    # -- running requests ----------------------------------------------------------------

    def execute(self, session, spec, args, *, reads_merged: bool = False):
        """Run a routed request here as coordinator: the reply, a reply slot that
        gets it once replicas answered, or an awaitable.

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
        self.equivalents.begin(changed)
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
            equivalents = self.equivalents.end()
        if not changed and self.store.convergent and result is not None and result[:1] != b"-":
            changed = convergent.readded(spec.name, [args], self.node.keyspace.get)
        if changed:
            # A pop served to a blocked client is part of the change: the command
            # alone would not reproduce it, so its result is shipped.
            answer = self._write(session, changed, result, None if served_blocked else spec, args,
                                 None if served_blocked else equivalents)
        elif spec.is_readonly and result is not None and result[:1] != b"-":
            answer = self._read(session, spec, args, result)
        else:
            answer = None
        if waits is not None:
            return session.node.blocking.wait(session, waits)
        if answer is None:
            return result
        return answer

    # -- runs of pipelined requests -------------------------------------------------------

    def run_for(self, spec) -> Callable:
        """The replicated run handler of ``spec`` (a command with a plain run
        handler and one key): ``run(session, batch, i, end, out, placement)``
        serves requests of ``batch[i:end]``, whose keys the dispatcher found in
        slots this node coordinates with one ``placement``, and returns where it
        stopped; one reply answers for all of them."""
        base = spec.run_handler
        position = spec.first_key
        write = spec.is_write

        def run(session, batch, i, end, out, placement):
            """Replicated run of a pipelined command"""
            mark = len(out)
            if write:  # the keys the run changed, as execute records them
                self.recording = changed = []
                try:
                    done = i + base(session, batch[i:end], 0, out)
                finally:
                    self.recording = None
            else:
                done = i + base(session, batch[i:end], 0, out)
            if done == i:
                return i
            requests = batch[i:done]
            local = b"".join(out[mark:])
            del out[mark:]
            if write:
                out.append(self._write_run(session, spec, requests, changed, local, placement))
            else:
                out.append(self._read_run(session, spec, requests, position, local, placement))
            return done

        return run

    def _write_run(self, session, spec, requests, changed: list[bytes], local: bytes, placement):
        """A run of pipelined writes that changed ``changed``: the general write
        path, once for all of them.  A key changed by a command replicas can run is
        offered to them as that command if one request of the run changed it, or
        as their merged command (:data:`~.replica.MERGEABLE`)."""
        if self.store.convergent:
            changed = changed + convergent.readded(spec.name, requests, self.node.keyspace.get)
        if not changed:
            return local  # nothing changed (SADD of members already there)
        operations = by_key = None
        if spec.name in SHIPPED_AS_COMMAND or spec.name in convergent.TRACKED:
            by_key = {}
            for args in requests:
                by_key.setdefault(args[spec.first_key], []).append(args)
        if spec.name in SHIPPED_AS_COMMAND:
            mergeable = spec.name in MERGEABLE and spec.first_key == 1
            operations = {key: merged_operation(group) if len(group) == 1 or mergeable else None
                          for key, group in by_key.items()}
        commands = by_key if spec.name in convergent.TRACKED else None
        return self._replicate(session, list(dict.fromkeys(changed)), local, operations, requests, placement, commands)

    def _out(self, peer: str) -> Outgoing:
        """What this round sends ``peer`` (flushed by the poller at the round's end)."""
        out = self._outgoing.get(peer)
        if out is None:
            out = self._outgoing[peer] = Outgoing()
        return out

    def _read_run(self, session, spec, requests, position: int, local: bytes, placement):
        q = self.quorums(session)
        peers, _, extra = placement
        if q.r <= 1 or not (peers or extra):
            return local
        keys = list(dict.fromkeys([args[position] for args in requests]))
        return self._reply_of_read(session, self.read_request(session, local, q.r, peers, keys, spec, requests, extra))

    def _write(self, session, keys: list[bytes], result: bytes | None, spec=None, args=None, equivalents=None):
        """A command changed ``keys``: version and replicate them (see _replicate).
        One key changed by a command replicas can run themselves is offered to
        them, as are the replayable commands other changes amount to
        (:mod:`.equivalents`), which also decide convergent metadata as they do
        on the replicas running them."""
        shipped = spec is not None and spec.name in SHIPPED_AS_COMMAND and len(set(keys)) == 1
        operations = {keys[0]: args} if shipped else equivalents
        if spec is not None and spec.name in convergent.TRACKED:
            commands = {args[1]: [args]}
        else:
            commands = tracked_equivalents(equivalents) if equivalents and self.store.convergent else None
        return self._replicate(session, keys, result, operations, [None], None, commands)

    def _replicate(self, session, keys, result: bytes | None, operations, requests, placement=None, commands=None):
        """The write path: version each changed key, then let a put state machine
        (:class:`~.put_core.PutCore`) decide — ship the new records (or a
        command of ``operations``) to the live replicas, hint the failed ones,
        reply once W have them — and schedule the purge of tombstones every
        replica has.

        ``operations`` maps a key to the command replicas may run for it instead
        of receiving its record (None: none may).  ``requests`` are the requests
        the reply answers (a run of pipelined writes shares one reply); ``placement``
        is their slot's, when known; ``commands`` maps a key to the tracked
        requests that changed it (:mod:`~.convergent`).  Returns the reply, a slot
        of the session's reply queue, or None (a blocking command that waits).
        """
        store = self.store
        data = self.node.keyspace.data
        now = self.node.keyspace.clock_ms()
        contexts = self.contexts
        shipped: list[bytes] = []
        shipped_keys: list[bytes] = []
        tombstones: list[tuple[bytes, bytes]] = []
        for key in (keys if len(keys) == 1 else dict.fromkeys(keys)):
            written = store.written(
                key, now, contexts.pop(key, None) if contexts else None, operations.get(key) if operations else None,
                commands.get(key) if commands else None,
            )
            if written is None:
                continue
            shipped.append(key)
            shipped.append(written[0])
            shipped.append(written[1])
            shipped_keys.append(key)
            if key not in data:  # only a deleted key can be a lone tombstone
                tombstone = store.tombstone_clock(key)
                if tombstone is not None:
                    tombstones.append((key, tombstone))
        if contexts:
            contexts.clear()
        if not shipped_keys:
            return result
        self.stats["replicated_writes"] += len(requests)
        slot = key_slot(shipped_keys[0])
        peers, down, _ = placement or self.placement(slot)
        stand_ins = quorum.stand_ins(self.node.config, session, self.state.topology.fallbacks(slot)) if down else ()
        core = PutCore(self.quorums(session).w, self.myself, peers, down, stand_ins)
        request = WriteRequest(core, result, len(requests), shipped_keys)
        if tombstones and not down:
            # Purged only once every preferred replica has it: a failed one that
            # missed the deletion could otherwise bring the old value back.
            grace = self.node.config["tombstone-grace"]
            request.on_full = lambda: self.forgetting.schedule_purges(now + grace, tombstones)
        encoded = wire.encode_args(shipped)
        count = len(shipped)
        for action in core.start():
            if action[0] is put_core.SEND:
                self._out(action[1]).add_records(encoded, count, request, shipped_keys)
            elif action[0] is put_core.SEND_HINTED:
                self.handoff.stand_in(action[1], action[2], shipped_keys, ReplAnswer(self, action[1], [request], shipped_keys))
            else:
                self.hint(action[1], shipped_keys)
        journal = self.node.journal
        if journal is not None and journal.log is not None:
            self._awaiting_commit.append(request)  # acknowledged by local_commit
            payload = None
        else:
            payload = self._perform_write(request, core.acked(self.myself))
        if payload is not None or result is None:
            return payload
        return self._watch(request, session.reserve_reply(False))

    def evicted(self, keys: list[bytes]) -> None:
        """This coordinator evicted ``keys`` (maxmemory): replicated as by ``DEL``."""
        self._replicate(None, keys, None, None, [None])

    def _perform_write(self, request: WriteRequest, actions) -> bytes | None:
        """Carry out a put machine's ``actions``; the reply if it was decided."""
        payload = None
        for action in actions:
            kind = action[0]
            if kind is put_core.REPLY:
                payload = request.reply
            elif kind is put_core.FAIL:
                self.stats["write_quorum_missed"] += 1
                payload = request.failure(action[1], action[2])
            elif kind is put_core.HINT:
                self.hint(action[1], request.keys)
            elif kind is put_core.FULL and request.on_full is not None:
                request.on_full()
        if payload is not None and request.slot is not None:
            request.slot.fill(payload)
        return payload

    def local_commit(self, written: bool) -> None:
        """The commit log was written (``written``) or could not be: this node's
        copies of the writes made since the last commit count towards W, or as a
        failed replica (a commit listener of the node)."""
        waiting, self._awaiting_commit = self._awaiting_commit, []
        for request in waiting:
            core = request.core
            self._perform_write(request, core.acked(self.myself) if written else core.failed(self.myself))

    def write_acked(self, request: WriteRequest, peer: str) -> None:
        """``peer`` has the write (a REPL answer)."""
        self._perform_write(request, request.core.acked(peer))

    def write_failed(self, request: WriteRequest, peer: str) -> None:
        """``peer`` did not take the write."""
        self._perform_write(request, request.core.failed(peer))

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
        peers, _, extra = self.placement(slot)
        return self._reply_of_read(session, self.read_request(session, result, q.r, peers, keys, spec, [args], extra))

    def read_request(self, session, local: bytes, r: int, peers, keys: list[bytes], spec, requests,
                     extra=()) -> ReadRequest:
        """A read of ``keys`` answered here as ``local``, to check with R of ``peers``
        and this node, and with the former holders ``extra`` (see :class:`~.get_core.GetCore`)."""
        digest_of = self.store.digest
        digests = [digest_of(key) for key in keys]  # empty: no record here
        core = GetCore(r, peers, {key for key, held in zip(keys, digests) if not held}, extra)
        request = ReadRequest(core, local, spec, requests, session, keys)
        request.digests = digests
        return request

    def begin_read(self, request: ReadRequest) -> bytes | None:
        """Ask the read's peers (with this round's RREAD); its reply if decided at once."""
        digests = request.digests
        payload = None
        for action in request.core.start():
            if action[0] is get_core.ASK:
                self._out(action[1]).reads.append((request, request.keys, digests))
            else:
                payload = self._perform_read(request, (action,))
        return payload

    def _reply_of_read(self, session, request: ReadRequest):
        payload = self.begin_read(request)
        if payload is not None:
            return payload
        # Until its reply is final the session runs no later write of its client.
        return self._watch(request, session.reserve_reply(True))

    def _perform_read(self, request: ReadRequest, actions, repairs: list | None = None) -> bytes | None:
        """Carry out a get machine's ``actions``; the reply if it was decided.
        Read repairs go to ``repairs`` when given (one REPL for an answer's keys)."""
        payload = None
        for action in actions:
            kind = action[0]
            if kind is get_core.REPLY:
                payload = request.final_reply(action[1] or request.changed_here(self.store.digest))
            elif kind is get_core.FAIL:
                self.stats["read_quorum_missed"] += 1
                payload = request.failure(action[1], action[2])
            elif kind is get_core.REPAIR:
                if repairs is not None:
                    repairs.extend(action[2])
                else:
                    self.repair(action[1], list(action[2]))
        if payload is not None and request.slot is not None:
            request.slot.fill(payload)
        return payload

    def read_answered(self, request: ReadRequest, peer: str, found, merged_newer: bool, stale, repairs) -> None:
        """``peer`` answered the read (its records are merged already)."""
        self._perform_read(request, request.core.answer(peer, found, merged_newer, stale), repairs)

    def read_failed(self, request: ReadRequest, peer: str) -> None:
        self._perform_read(request, request.core.failed(peer))

    def _watch(self, request, slot):
        """Give ``request``'s reply to ``slot`` when decided, at the latest at its
        timeout; returns ``slot``."""
        request.slot = slot
        deadline = self._round_deadline
        if deadline is None:
            deadline = self._round_deadline = trio.current_time() + self.node.config["request-timeout"] / 1000
        request.deadline = deadline
        self._waiting.append(request)
        if self._waiting_added is not None:
            self._waiting_added.set()
        return slot

    def watch(self, request, sink) -> None:
        """:meth:`_watch` for callers outside (read barriers): ``sink.fill(reply)``."""
        self._watch(request, sink)

    def flush(self) -> None:
        """Send every peer what the batch queued for it: one REPL, one RREAD."""
        self._round_deadline = None
        if not self._outgoing:
            return
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

    async def _expire_waiting(self) -> None:
        """Time out requests whose client still waits at their deadline: their
        machines decide with what they have (``-NOQUORUM`` unless a quorum is met)."""
        waiting = self._waiting
        while True:
            if not waiting:  # nothing to time out: sleep until a request waits, not every tick
                self._waiting_added = trio.Event()
                await self._waiting_added.wait()
                self._waiting_added = None
            await trio.sleep(EXPIRY_TICK)
            now = trio.current_time()
            # Deadlines are in arrival order: stop at the first one not due.
            while waiting and (waiting[0].slot.payload is not None or waiting[0].deadline <= now):
                request = waiting.popleft()
                if request.slot.payload is not None:
                    continue
                if request.__class__ is WriteRequest:
                    self._perform_write(request, request.core.timed_out())
                else:
                    self._perform_read(request, request.core.timed_out())

    # -- answers ---------------------------------------------------------------------------

    def repair(self, peer: str, keys: list[bytes]) -> None:
        """Ship the current records of ``keys`` to a stale ``peer`` (read repair)."""
        self.stats["read_repairs"] += self.send_records(peer, keys)

    def send_records(self, peer: str, keys: list[bytes], waiting: Sequence[WriteRequest] = ()) -> int:
        """Ship the whole current records of ``keys`` to ``peer``; its
        acknowledgement counts for the ``waiting`` writes.  Returns how many records went."""
        args = reconcile_args(self.store, keys)
        if args or waiting:
            self.ship(peer, args, keys, waiting)
        return len(args) // 3

    def ship(self, peer: str, args: list[bytes], keys: list[bytes], waiting: Sequence[WriteRequest] = ()) -> None:
        """Send ``peer`` the records of :func:`~.replica.reconcile_args` (``keys``'), to merge
        there; if it does not acknowledge them they stay hinted to it."""
        self._request(peer, REPL, args, ReplAnswer(self, peer, list(waiting), keys))

    def _request(self, peer: str, op: bytes, args, callback) -> None:
        """Send ``op`` to ``peer``; ``callback`` gets the answer, or PeerUnavailable
        at once when there is no connection."""
        link = self.bus.links.get(peer)
        if link is None or not link.request_nowait(op, args, callback):
            callback(None, PeerUnavailable(peer))

    # -- the replica side ------------------------------------------------------------------

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """Serve one replication bus request as a replica (see replica)."""
        return self.replica.handle(peer_id, op, args)

    # -- background work ---------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Time out requests clients wait for; hand hinted keys off to returning replicas;
        purge acknowledged tombstones and the records of expired keys."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_waiting)
            task_status.started()
            while True:
                await trio.sleep(HANDOFF_INTERVAL)
                self.handoff.hand_off()
                now = self.node.keyspace.clock_ms()
                self.forgetting.purge_due(now)
                self.forgetting.forget_expired_due(now)
