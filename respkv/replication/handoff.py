"""Hinted hand-off: keys another node may lack, kept durably and shipped to it once it is back.

Theory of operation
-------------------
A **hint** says "node P may lack the current record of key k".  A node stores one
when a preferred replica did not acknowledge a write it coordinated (P was down,
cut off, failed, or its link too far behind), and when it is a **fallback** that
took a write for a preferred node that is down (sloppy quorum: the write came
with ``REPLFOR P``, see :mod:`~.replica`).

*Durable.*  Hints live in the node's commit log beside the records: storing one
appends a ``HINT`` entry (key, P), removing one a ``DELIVERED`` entry (see
:mod:`respkv.persistence.journal`).  At start the log's entries are replayed into
:meth:`HintedHandoff.replay` before anything else runs, so a holder that crashed
(``kill -9`` too) still holds every hint its log has — a hint a fallback stored is
in its log before it acknowledges the write; a hint stored when an answer failed
is logged by the next round's commit or the next hand-off pass, at most
:data:`~.coordinator.HANDOFF_INTERVAL` later, within the ``appendfsync`` policy.
Snapshots hold the pending hints too (:meth:`snapshot_entries`), so a rewrite
never loses them.

*Delivery.*  Every hand-off pass ships, per hinted node that is live and reachable
again, the *current* record of its hinted keys (a tombstone for a deleted key) in
``REPL`` batches, merged there by clock like any record.  A hint is removed — and
the removal logged — only when P answered that ``REPL``, which it does only once
its own log has the records.  A key hinted again while its record is on the way
stays hinted and goes again with the next pass.  A failed request leaves the keys
hinted.  A key whose slot P no longer serves, or of which this node holds no
record any more, is given up (logged as delivered; nothing is left to ship).

*A fallback's copy.*  Once the last hint of a key is delivered, a node that is not
in the key's preference list (a fallback) drops its own copy (logged as absent):
the preferred nodes have it.

*Bounded.*  At most ``max-hints-per-node`` hints per node; beyond it a new hint is
dropped and counted (``hints_dropped``): anti-entropy repairs what it would have.

Counters for ``INFO replication``: pending (in total and per node), stored,
delivered and dropped since the start.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping

from ..keyspace.slots import key_slot
from ..persistence.exceptions import LogWriteError
from ..persistence.entries import DELIVERED, HINT, entry
from .replica import REPL, REPLFOR
from .store import RECONCILE, VersionStore

log = logging.getLogger(__name__)

#: Hinted keys shipped to a peer per hand-off request.
HANDOFF_BATCH = 512
#: Requests a hand-off pass may send one peer while its link keeps up (a replica
#: back after a few seconds away catches up within a pass or two).
HANDOFF_BATCHES_PER_PASS = 8
#: Bytes a peer link may hold unsent before writes for that peer become hints.
MAX_BACKLOG = 64 * 1024 * 1024

#: Sends ``op args`` to a peer; the callback gets ``(answer, error)``.
Request = Callable[[str, bytes, list, Callable], None]


class HintedHandoff:
    """The hints one node holds, by node, and their delivery (see the module doc).

    ``request(peer, op, args, callback)`` sends a bus request; ``config`` gives
    ``max-hints-per-node``; ``commit()`` writes what was logged outside a round
    (the node's end-of-round commit; a LogWriteError it raises was logged there).
    """

    def __init__(self, state, bus, store: VersionStore, request: Request, config: Mapping,
                 commit: Callable[[], None] = lambda: None) -> None:
        self.state = state
        self.bus = bus
        self.store = store
        self._request = request
        self.config = config
        self._commit = commit
        #: Where hints and their deliveries are logged (None: not logged).
        self.journal = None
        #: peer id → keys with a durable hint for it (logged, not yet delivered).
        self.hints: dict[str, set[bytes]] = {}
        #: peer id → the hinted keys to ship at the next pass.
        self._queued: dict[str, set[bytes]] = {}
        #: peer id → the hinted keys shipped, whose acknowledgement is awaited.
        self._in_flight: dict[str, set[bytes]] = {}
        self._logged_since_commit = False
        self.stored = 0
        self.delivered = 0
        self.dropped = 0

    # -- storing ------------------------------------------------------------------------

    def hint(self, peer: str, keys) -> None:
        """``peer`` may lack the current records of ``keys``."""
        if peer == self.state.myself:
            return
        hinted = self.hints.get(peer)
        if hinted is None:
            hinted = self.hints[peer] = set()
        queued = self._queued.get(peer)
        if queued is None:
            queued = self._queued[peer] = set()
        limit = self.config["max-hints-per-node"]
        journal = self.journal
        peer_id = peer.encode()
        for key in keys:
            if key in hinted:
                queued.add(key)  # on its way maybe, but shipped again after this change
                continue
            if len(hinted) >= limit:
                self.dropped += 1
                continue
            hinted.add(key)
            queued.add(key)
            self.stored += 1
            if journal is not None:
                journal.append_entry(entry(HINT, key, peer_id))
                self._logged_since_commit = True

    def _remove(self, peer: str, key: bytes) -> None:
        """The hint of ``key`` for ``peer`` is done with: forget it and log that."""
        hinted = self.hints.get(peer)
        if hinted is None or key not in hinted:
            return
        hinted.discard(key)
        if self.journal is not None:
            self.journal.append_entry(entry(DELIVERED, key, peer.encode()))
            self._logged_since_commit = True
        self._release_copy(key)

    def attach(self, journal) -> None:
        """Log hints in ``journal`` from now on; its snapshots hold the pending ones."""
        self.journal = journal
        journal.snapshot_extras = self.snapshot_entries

    # -- replaying the log --------------------------------------------------------------

    def replay(self, kind: bytes, key: bytes, body: bytes) -> None:
        """A ``HINT`` or ``DELIVERED`` entry of the commit log, at start."""
        peer = body.decode()
        if kind == HINT:
            self.hints.setdefault(peer, set()).add(key)
            self._queued.setdefault(peer, set()).add(key)
        else:
            self.hints.get(peer, set()).discard(key)
            self._queued.get(peer, set()).discard(key)

    def snapshot_entries(self) -> list[bytes]:
        """The entries that restore every pending hint (for a snapshot)."""
        return [entry(HINT, key, peer.encode()) for peer, keys in self.hints.items() for key in keys]

    # -- counters -------------------------------------------------------------------------

    def pending(self) -> int:
        """Hints not delivered yet, over every node."""
        return sum(len(keys) for keys in self.hints.values())

    def pending_by_node(self) -> dict[str, int]:
        """Pending hints per node that has any, by node id."""
        return {peer: len(keys) for peer, keys in sorted(self.hints.items()) if keys}

    def info_fields(self) -> list[tuple[str, object]]:
        """``INFO replication`` lines: totals, then pending hints per node."""
        fields: list[tuple[str, object]] = [
            ("hints_pending", self.pending()),
            ("hints_stored", self.stored),
            ("hints_delivered", self.delivered),
            ("hints_dropped", self.dropped),
        ]
        fields.extend((f"hints_pending_{peer}", count) for peer, count in self.pending_by_node().items())
        return fields

    def stand_in(self, fallback: str, node: str, keys: list[bytes], callback) -> None:
        """Ship the whole records of ``keys`` (the fallback may hold no parent) to
        ``fallback``, to keep for ``node`` with a durable hint (``REPLFOR``)."""
        args: list[bytes] = [node.encode()]
        wire_record = self.store.wire_record
        for key in keys:
            record = wire_record(key)
            if record is not None:
                args += (key, RECONCILE, record)
        self._request(fallback, REPLFOR, args, callback)

    # -- delivering ---------------------------------------------------------------------

    def hand_off(self) -> None:
        """Ship hinted keys to every hinted node that is reachable and live again;
        then write what was logged since the last commit."""
        topology = self.state.topology
        membership = self.state.membership
        for peer in list(self.hints):
            record = membership.get(peer)
            if record is not None and record.left:
                self._redirect(peer)
        for peer, queued in list(self._queued.items()):
            if not queued:
                if not self.hints.get(peer):
                    self.hints.pop(peer, None)
                    self._queued.pop(peer, None)
                continue
            link = self.bus.links.get(peer)
            if link is None or not link.connected or not topology.is_live(peer) or link.backlog > MAX_BACKLOG:
                continue
            in_flight = self._in_flight.setdefault(peer, set())
            for _ in range(HANDOFF_BATCHES_PER_PASS):
                if not queued or link.backlog > MAX_BACKLOG:
                    break
                self._ship_batch(peer, queued, in_flight, topology)
        if self._logged_since_commit:
            self._logged_since_commit = False
            try:
                self._commit()
            except LogWriteError:
                pass  # logged; writes are refused until the log works again

    def _redirect(self, gone: str) -> None:
        """``gone`` left the cluster (CLUSTER FORGET): its hints become hints for
        the other nodes now preferred for each key (merged there by clock, so a
        copy they already have costs one comparison), and this node keeps its
        own copy until those are delivered."""
        topology = self.state.topology
        myself = self.state.myself
        keys = list(self.hints.get(gone, ()))
        for key in keys:
            for node in topology.ring.preference_list(key_slot(key), topology.rf):
                if node != myself and node != gone:
                    self.hint(node, [key])
            self._remove(gone, key)
        self.hints.pop(gone, None)
        self._queued.pop(gone, None)
        self._in_flight.pop(gone, None)
        log.warning("%s left the cluster: %d hints for it redirected to the nodes that now replicate the keys",
                    gone, len(keys))

    def _ship_batch(self, peer: str, queued: set[bytes], in_flight: set[bytes], topology) -> None:
        args: list[bytes] = []
        batch: list[bytes] = []
        busy: list[bytes] = []
        wire_record = self.store.wire_record
        while queued and len(batch) < HANDOFF_BATCH:
            key = queued.pop()
            if key in in_flight:
                busy.append(key)  # its earlier record is on the way: ship after its answer
                continue
            record = wire_record(key) if peer in topology.nodes_for(key_slot(key)) else None
            if record is None:
                self._remove(peer, key)  # not that node's key any more, or nothing to ship
                continue
            batch.append(key)
            args.append(key)
            args.append(RECONCILE)
            args.append(record)
        queued.update(busy)
        if batch:
            in_flight.update(batch)
            self._request(peer, REPL, args, HandoffAnswer(self, peer, batch))

    def acknowledged(self, peer: str, keys: list[bytes]) -> None:
        """``peer`` has the records of ``keys`` in its log: their hints are done,
        unless hinted again since they were shipped."""
        in_flight = self._in_flight.get(peer, set())
        queued = self._queued.get(peer, set())
        hinted = self.hints.get(peer, set())
        for key in keys:
            in_flight.discard(key)
            if key not in queued and key in hinted:
                self.delivered += 1
                self._remove(peer, key)

    def not_acknowledged(self, peer: str, keys: list[bytes]) -> None:
        """The hand-off request to ``peer`` failed: ``keys`` stay hinted."""
        in_flight = self._in_flight.get(peer, set())
        queued = self._queued.setdefault(peer, set())
        hinted = self.hints.get(peer, set())
        for key in keys:
            in_flight.discard(key)
            if key in hinted:
                queued.add(key)

    def hinted_per_slot(self) -> Counter:
        """How many keys of each slot have a hint waiting here (each key once)."""
        return Counter(key_slot(key) for key in set().union(*self.hints.values()))

    def holds_hint_for(self, key: bytes) -> bool:
        """Whether a hint for ``key`` waits here for some node (its copy is then
        the hint's, dropped once delivered)."""
        return any(key in keys for keys in self.hints.values())

    def _release_copy(self, key: bytes) -> None:
        """A fallback's copy of ``key`` goes once no node it holds hints for lacks it."""
        topology = self.state.topology
        if self.state.myself in topology.ring.preference_list(key_slot(key), topology.rf):
            return
        if self.holds_hint_for(key):
            return
        self.store.relinquish(key)


class HandoffAnswer:
    """Callback of one hand-off ``REPL``: the keys' hints are done, or stay."""

    __slots__ = ("handoff", "peer", "keys")

    def __init__(self, handoff: HintedHandoff, peer: str, keys: list[bytes]) -> None:
        self.handoff = handoff
        self.peer = peer
        self.keys = keys

    def __call__(self, answer, error) -> None:
        if error is None:
            self.handoff.acknowledged(self.peer, self.keys)
        else:
            log.debug("hand-off to %s failed: %r", self.peer, error)
            self.handoff.not_acknowledged(self.peer, self.keys)
