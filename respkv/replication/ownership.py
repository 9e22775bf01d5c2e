"""Ownership hand-off: a node gives the keys of slots the ring no longer gives it
to the nodes that now replicate them, and drops its copy once they have it.

Theory of operation
-------------------
A ring change (a node joins, leaves with ``CLUSTER LEAVE``, or is forgotten)
changes some slots' preference lists (Dynamo §4.9).  Nothing moves at the
instant of the change: every node routes by the new ring at once, and a node
that held keys of a slot whose preference list no longer names it is now a
**former holder** of that slot.  Each node finds its own such slots
(:func:`held_slots`: it holds keys there, the ring does not prefer it) and:

1. **Announces** them (``HOLDS bitmap epoch``) to every member, again whenever
   they or its own record's epoch change and every :data:`ANNOUNCE_INTERVAL`
   seconds while there are any (also during a long hand-off pass) or while it
   leaves (an empty set then, which members need at its current epoch to
   forget it).
   Coordinators keep the announcements in :class:`SlotHolders` and ask a slot's
   live former holders too when they read a key of it they lack (as ``extra``
   peers of :class:`~.get_core.GetCore`): a key only a former holder has is
   found, and R still counts only the slot's own replicas.  So no acknowledged
   key reads as nil during a move, without ``ASK`` redirections: the new ring
   answers for the slot from the first moment and the old copies back it up.
2. **Hands the slots over**, a chunk of :data:`CHUNK_SLOTS` slots at a time,
   ``handoff-concurrency`` chunks at once, to each live node of each slot's new
   preference list: a push-only anti-entropy exchange (:class:`Handover`)
   compares the hash trees and ships, as records merged by clock there and
   acknowledged only once in that node's commit log, just the keys the node
   lacks or holds in another version.  A new replica thus receives each key
   once (adding the Nth node moves about 1/N of the copies), while a replica
   that already held the slot costs a tree comparison.
3. **Drops its copy** of each key that every live new replica confirmed in the
   version held here (:meth:`Handover.confirms`); a key written here since,
   one with a hint still pending (the hinted hand-off owns that copy), or one
   whose slot came back to this node, is kept for the next pass.  Each chunk's
   emptied slots leave the announced set at once, so reads stop asking this
   node about them; once it holds nothing outside its preference lists it
   announces an empty set.

Nothing is handed over while some live member last told this node another
membership (a ring change still spreading): two nodes each taking the other
for the slot's new replica must not both drop their copies.  A hand-off that
fails (a peer unreachable, this node's log refusing writes)
keeps the copies and retries on the next pass (every :data:`CHECK_INTERVAL`
seconds, at once on a ring change); a target that is down gets the keys later
from its fellow replicas by anti-entropy.  Pacing is anti-entropy's
(:mod:`.pacing`): ``handoff-keys-per-second`` for the whole node, slower while
clients keep it busy.  ``INFO replication`` (``handoff_*``) and the log show
the progress of a move: slots and keys left, keys per second, an estimate of
the time left.

The pure parts are :func:`held_slots`, :class:`SlotHolders` and
:meth:`Handover.confirms`; the rest moves bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import trio

from ..keyspace.slots import SLOT_COUNT
from ..peer.bus import PeerError, PeerUnavailable
from ..persistence.exceptions import LogWriteError
from .antientropy import AE_KEYS, LISTED_PER_REPAIRED, KEYS_PER_REQUEST, Exchange, ExchangeNotReady, split_listing
from .merkle import SEGMENT_COUNT, SEGMENTED_SLOT_KEYS, bitmap_slots, leaf_hash, slots_bitmap
from .replica import REPL, reconcile_args

log = logging.getLogger(__name__)

HOLDS = b"HOLDS"
OPERATIONS = (HOLDS,)

#: Slots handed over per exchange with each target (also the unit of progress).
CHUNK_SLOTS = 64
#: Seconds between checks for slots to give away (a ring change checks at once).
CHECK_INTERVAL = 1.0
#: Seconds between repeated announcements of a non-empty set of held slots.
ANNOUNCE_INTERVAL = 2.0
#: A running hand-off logs its progress at most this often.
PROGRESS_SECONDS = 5.0


def held_slots(key_count: Callable[[int], int], preference_lists: Sequence[Sequence[str]], myself: str) -> list[int]:
    """The slots this node holds keys of while the ring does not prefer it for them."""
    return [slot for slot in range(SLOT_COUNT) if myself not in preference_lists[slot] and key_count(slot)]


class SlotHolders:
    """The former holders each member announced: ``{node: slots}``, and per slot
    the nodes holding it.  ``version`` changes with every change, so placements
    cached from it can tell they are stale."""

    def __init__(self) -> None:
        self._by_node: dict[str, frozenset[int]] = {}
        self._by_slot: dict[int, tuple[str, ...]] = {}
        #: node → the epoch of its own membership record when it last announced
        #: holding nothing (absent while it holds something).
        self._empty_at: dict[str, int] = {}
        self.version = 0

    def drained(self, node: str, epoch: int) -> bool:
        """Whether ``node`` announced holding nothing since its record reached ``epoch``."""
        return self._empty_at.get(node, -1) >= epoch

    def announce(self, node: str, slots: Iterable[int], epoch: int = 0) -> bool:
        """``node``, its own record at ``epoch``, now holds ``slots`` outside their
        preference lists (only those); True if that changed the holders."""
        slots = frozenset(slots)
        if slots:
            self._empty_at.pop(node, None)
        else:
            self._empty_at[node] = epoch
        if self._by_node.get(node, frozenset()) == slots:
            return False
        if slots:
            self._by_node[node] = slots
        else:
            self._by_node.pop(node, None)
        by_slot: dict[int, list[str]] = {}
        for holder, held in sorted(self._by_node.items()):
            for slot in held:
                by_slot.setdefault(slot, []).append(holder)
        self._by_slot = {slot: tuple(nodes) for slot, nodes in by_slot.items()}
        self.version += 1
        return True

    def of(self, slot: int) -> tuple[str, ...]:
        """The nodes that announced holding keys of ``slot`` (node id order)."""
        return self._by_slot.get(slot, ())

    def holds_any(self, node: str) -> bool:
        return node in self._by_node

    def nodes(self) -> list[str]:
        return sorted(self._by_node)


class Handover(Exchange):
    """A push-only exchange of held slots with one of their new replicas.

    Lists the keys as anti-entropy does, pushes (``REPL``, awaiting the answer,
    which comes once the records are in the peer's commit log) every key the
    peer lacks or holds in another version, and records what the peer is known
    to hold in the version held here: whole slots or segments found equal, and
    keys listed equal or pushed.  Nothing is pulled: the peer's newer writes are
    its own business."""

    def __init__(self, owner, peer: str, slots: list[int], stats: dict, rate: Callable[[], float]) -> None:
        super().__init__(owner, peer, slots, stats)
        self._rate_now = rate
        #: slot → its sum here when it was found equal there.
        self.equal_slots: dict[int, int] = {}
        #: key → its leaf here when the peer was found (or made) to hold it.
        self.confirmed: dict[bytes, int] = {}

    def confirms(self, slot: int, slot_sum: int, key: bytes, leaf: int) -> bool:
        """Whether the peer is known to hold ``key`` (of ``slot``) as it is here,
        ``leaf`` and ``slot_sum`` being its leaf and its slot's sum now."""
        return self.equal_slots.get(slot) == slot_sum or self.confirmed.get(key) == leaf

    def _equal(self, slots: list[int], segments: list[int] | None = None) -> None:
        trees = self.trees
        for slot in slots:
            if segments is None:
                self.equal_slots[slot] = trees.slot_sum(slot)
            else:
                for segment in segments:
                    self.confirmed.update(trees.leaves(slot, segment))

    async def _repair_parts(self, parts: list[tuple[int, int | None]]) -> None:
        args: list[bytes] = []
        for slot, segment in parts:
            args.append(b"%d" % slot)
            args.append(b"" if segment is None else b"%d" % segment)
        listed = split_listing(await self._ask(AE_KEYS, args), len(parts))
        await self._pace(sum(len(leaves) for leaves in listed) / LISTED_PER_REPAIRED)
        self.owner.settle()
        to_push: list[bytes] = []
        for (slot, segment), theirs in zip(parts, listed):
            for key, leaf in self.trees.leaves(slot, segment).items():
                if theirs.get(key) == leaf:
                    self.confirmed[key] = leaf
                else:
                    to_push.append(key)
        self.differing_keys += len(to_push)
        await self._push_awaited(to_push)

    async def _push_awaited(self, keys: list[bytes]) -> None:
        store = self.store
        digest = store.digest
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            batch = keys[start : start + KEYS_PER_REQUEST]
            now = store.keyspace.clock_ms()
            leaves = {key: leaf_hash(key, digest(key)) for key in batch}
            live = [key for key in batch if store.expired_clock(key, now) is None]
            args = reconcile_args(store, live)
            if args:
                self.stats["bytes_sent"] += sum(len(arg) for arg in args)
                await self._ask(REPL, args)
            self.confirmed.update(leaves)  # expired ones need not travel: forgotten everywhere
            self.stats["keys_pushed"] += len(args) // 3
            self.repaired += len(args) // 3
            await self._pace(len(batch))

    def _rate(self) -> float:
        return self._rate_now()

    def _progress(self, now: float) -> None:
        log.info("ownership hand-off to %s: %d keys pushed so far, %.0f s", self.peer, self.repaired, now - self.started)


class OwnershipHandoff:
    """This node's side of moves: announcing held slots, handing them over,
    dropping what was handed over, and taking other nodes' announcements."""

    def __init__(self, node, state, bus, store, anti_entropy, holders: SlotHolders, hints) -> None:
        self.node = node
        self.state = state
        self.bus = bus
        self.store = store
        self.anti_entropy = anti_entropy
        self.holders = holders
        #: The hinted hand-off: a key with a hint waiting is its copy, not a move's.
        self.hints = hints
        self.myself = state.myself
        #: The slots this node held outside their preference lists at the last check
        #: (announced), and those of them with keys to hand over (not only hinted ones).
        self.held: list[int] = []
        #: What the checks last announced, with the epoch: None until the held
        #: slots were first computed (a node restarted while leaving must not
        #: announce "nothing" before it knows what it holds).
        self._announced: tuple[list[int], int] | None = None
        self.to_move: list[int] = []
        self.keys_to_move = 0
        self._kick = trio.Event()
        self.stats = {"moves": 0, "keys_pushed": 0, "keys_released": 0, "slots_released": 0,
                      "exchanges_failed": 0, "bytes_sent": 0, "bytes_received": 0,
                      "slots_differing": 0, "keys_differing": 0}
        #: The move under way: when it began, what it had to give away then, what is done.
        self.move_started: float | None = None
        self.move_slots = self.move_keys = 0
        self.move_slots_done = self.move_keys_done = 0
        self._reported = 0.0
        self.last_move_seconds = -1.0
        state.on_change.append(self._ring_changed)

    def _ring_changed(self, _topology) -> None:
        self._kick.set()

    # -- announcements -------------------------------------------------------------------

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """``HOLDS bitmap epoch``: ``peer_id`` holds exactly these slots outside
        their preference lists (an empty bitmap: none) as of the ring its own
        membership record at ``epoch`` is part of."""
        if op != HOLDS or len(args) != 2 or not args[1].isdigit():
            raise ValueError("HOLDS needs a slot bitmap and an epoch")
        self.holders.announce(peer_id, bitmap_slots(args[0]) if args[0] else (), int(args[1]))
        return []

    def _announce(self, held: list[int]) -> None:
        payload = [slots_bitmap(held) if held else b"", b"%d" % self.state.membership[self.myself].epoch]
        for member in self.state.membership.active_ids():
            if member == self.myself:
                continue
            link = self.bus.links.get(member)
            if link is not None and link.connected:
                link.request_nowait(HOLDS, payload, _ignore_answer)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._repeat_announcements)
            task_status.started()
            await self._checks()

    async def _repeat_announcements(self) -> None:
        """Announce the held slots again every :data:`ANNOUNCE_INTERVAL` seconds,
        also while a long hand-off pass runs, for members that missed the first;
        a leaving node also repeats that it holds nothing (members forget it
        only once they heard so at its current epoch, and announcements can be
        missed)."""
        while True:
            await trio.sleep(ANNOUNCE_INTERVAL)
            leaving = not self.state.membership[self.myself].weight
            if self.held or (leaving and self._announced is not None):
                self._announce(self.held)

    async def _checks(self) -> None:
        while True:
            with trio.move_on_after(CHECK_INTERVAL):
                await self._kick.wait()
            self._kick = trio.Event()
            for node in self.holders.nodes():  # forgotten nodes hold nothing any more
                if not self.state.membership.is_active(node):
                    self.holders.announce(node, ())
            if not self.anti_entropy.ready:
                continue
            self.anti_entropy.settle()
            topology = self.state.topology
            count = self.anti_entropy.trees.key_count
            held = held_slots(count, topology.ring.preference_lists(topology.rf), self.myself)
            hinted = self.hints.hinted_per_slot() if held else {}
            to_move = [slot for slot in held if count(slot) > hinted.get(slot, 0)]
            self.held, self.to_move = held, to_move
            self.keys_to_move = sum(count(slot) - hinted.get(slot, 0) for slot in to_move)
            announcement = (held, self.state.membership[self.myself].epoch)
            if announcement != self._announced:  # also "nothing" again once leaving raised the epoch
                self._announce(held)
                self._announced = announcement
            if not to_move:
                self._finish_move()
                continue
            if self.node.write_refusal is not None or not self._views_agree():
                continue  # re-checked every CHECK_INTERVAL
            self._begin_move(to_move)
            released = self.stats["keys_released"]
            await self._hand_over(to_move)
            if self.stats["keys_released"] != released:
                self._kick.set()  # check again at once: what is left, or an empty set to announce

    def _views_agree(self) -> bool:
        """Hand nothing over while some live member has told another membership:
        two nodes each seeing the other as the new replica must not both drop."""
        gossip = self.node.cluster_gossip
        return gossip is None or gossip.views_agree()

    def _begin_move(self, held: list[int]) -> None:
        if self.move_started is not None:
            return
        self.move_started = self._reported = time.monotonic()
        self.move_slots, self.move_keys = len(held), self.keys_to_move
        self.move_slots_done = self.move_keys_done = 0
        self.stats["moves"] += 1
        log.info("ownership hand-off: %d slots (%d keys) to give to the nodes that now replicate them",
                 self.move_slots, self.move_keys)

    def _finish_move(self) -> None:
        if self.move_started is None:
            return
        self.last_move_seconds = time.monotonic() - self.move_started
        log.info("ownership hand-off done: %d slots, %d keys given away in %.1f s",
                 self.move_slots_done, self.move_keys_done, self.last_move_seconds)
        self.move_started = None

    def rate(self) -> float:
        """Keys per second each running chunk may push (the node's pace shared)."""
        config = self.node.config
        return max(1.0, self.anti_entropy.paced(config["handoff-keys-per-second"]) / config["handoff-concurrency"])

    async def _hand_over(self, held: list[int]) -> None:
        limiter = trio.CapacityLimiter(self.node.config["handoff-concurrency"])
        async with trio.open_nursery() as nursery:
            for start in range(0, len(held), CHUNK_SLOTS):
                nursery.start_soon(self._hand_over_chunk, held[start : start + CHUNK_SLOTS], limiter)

    async def _hand_over_chunk(self, slots: list[int], limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            topology = self.state.topology
            by_target: dict[str, list[int]] = {}
            for slot in slots:
                for peer in topology.nodes_for(slot):
                    if peer != self.myself:
                        by_target.setdefault(peer, []).append(slot)
            done: dict[str, Handover] = {}
            for peer, its_slots in sorted(by_target.items()):
                handover = Handover(self.anti_entropy, peer, its_slots, self.stats, self.rate)
                try:
                    await handover.run()
                except (PeerUnavailable, PeerError, ExchangeNotReady, ValueError, LogWriteError) as exc:
                    self.stats["exchanges_failed"] += 1
                    log.info("ownership hand-off to %s stopped (retried on the next pass): %s", peer, exc)
                    continue
                except Exception:  # an answer this code did not foresee: never the node's end
                    self.stats["exchanges_failed"] += 1
                    log.warning("ownership hand-off to %s failed (retried on the next pass)", peer, exc_info=True)
                    continue
                done[peer] = handover
            await self._release(slots, done)

    def release_part(self, slot: int, segment: int | None, handovers: list[Handover],
                     dropped: int) -> tuple[int, int, int]:
        """Drop the copies of the keys of ``slot`` (of one of its segments) that
        every one of ``handovers`` confirms; returns how many were dropped and
        kept, and ``dropped`` with their leaves folded in.

        ``dropped`` is the XOR of the leaves this pass dropped from the slot
        already: the slot's sum without them is what its match was made with, so
        only a change by anything else (a write since) voids the match."""
        trees = self.anti_entropy.trees
        slot_sum = trees.slot_sum(slot) ^ dropped
        released = kept = 0
        for key, leaf in trees.leaves(slot, segment).items():
            if self.hints.holds_hint_for(key) or not all(h.confirms(slot, slot_sum, key, leaf) for h in handovers):
                kept += 1
                continue
            self.store.relinquish(key)  # the slot's sum loses the leaf at once
            dropped ^= leaf
            released += 1
        return released, kept, dropped

    async def _release(self, slots: list[int], done: dict[str, Handover]) -> None:
        """Drop the copies of ``slots``' keys that every live replica confirmed,
        a slot (or a segment of a big one) at a time, letting clients in between."""
        topology = self.state.topology
        preference_lists = topology.ring.preference_lists(topology.rf)
        trees = self.anti_entropy.trees
        self.anti_entropy.settle()
        released = 0
        emptied: set[int] = set()
        for slot in slots:
            targets = [peer for peer in topology.nodes_for(slot) if peer != self.myself]
            if self.myself in preference_lists[slot] or not targets or any(peer not in done for peer in targets):
                continue  # the slot came back here, has no live replica, or one hand-off failed
            handovers = [done[peer] for peer in targets]
            big = trees.key_count(slot) > SEGMENTED_SLOT_KEYS
            kept = dropped = 0
            for segment in range(SEGMENT_COUNT) if big else (None,):
                if self.state.topology is not topology:
                    return  # the ring changed meanwhile: the next pass decides again
                part_released, part_kept, dropped = self.release_part(slot, segment, handovers, dropped)
                released += part_released
                kept += part_kept
                if big:
                    await trio.lowlevel.checkpoint()
            if not kept:
                self.move_slots_done += 1
                self.stats["slots_released"] += 1
                emptied.add(slot)
        self.stats["keys_released"] += released
        self.move_keys_done += released
        if emptied:  # coordinators stop asking this node about them
            self.held = [slot for slot in self.held if slot not in emptied]
            self._announce(self.held)
        try:
            self.node.persist_now()
        except LogWriteError:
            pass  # logged; the copies dropped here come back from the log at a restart and go again
        now = time.monotonic()
        if self.move_started is not None and now - self._reported >= PROGRESS_SECONDS:
            self._reported = now
            log.info("ownership hand-off: %d of %d slots, %d of %d keys given away, %.0f keys/s",
                     self.move_slots_done, self.move_slots, self.move_keys_done, self.move_keys, self._speed())

    def _speed(self) -> float:
        if self.move_started is None:
            return 0.0
        return self.move_keys_done / max(1e-3, time.monotonic() - self.move_started)

    def info(self) -> dict[str, object]:
        """The ``handoff_*`` fields of INFO replication."""
        keys_held = self.keys_to_move
        speed = self._speed()
        moving = self.move_started is not None
        fields: dict[str, object] = {
            "handoff_running": int(moving),
            "handoff_slots_held": len(self.to_move),
            "handoff_keys_held": keys_held,
            "handoff_slots_announced": len(self.held),
            "handoff_move_slots_done": self.move_slots_done if moving else 0,
            "handoff_move_slots_total": self.move_slots if moving else 0,
            "handoff_move_keys_done": self.move_keys_done if moving else 0,
            "handoff_move_keys_total": self.move_keys if moving else 0,
            "handoff_keys_per_sec": round(speed),
            "handoff_eta_seconds": round(keys_held / speed) if moving and speed > 0 else -1,
            "handoff_last_move_seconds": round(self.last_move_seconds, 1),
        }
        fields.update({f"handoff_{name}": value for name, value in self.stats.items()})
        fields["handoff_former_holders"] = ",".join(self.holders.nodes())
        return fields


def _ignore_answer(answer, error) -> None:
    """Announcements are repeated; a lost one needs no answer."""
