"""Anti-entropy: replicas compare hash trees and repair what differs, without reads.

Theory of operation
-------------------
Read repair fixes only keys that are read, and hinted hand-off only writes a
coordinator saw fail.  A replica that lost its disk, or missed writes whose hints
were lost, is brought back by **exchanges** (Dynamo §4.7): this node and one peer
compare the :class:`~respkv.replication.merkle.SlotTrees` of the slots both are
live preferred replicas of, and ship only the records that differ.

An exchange, run by the initiating node (:meth:`AntiEntropy.exchange`):

1. ``AEROOT bitmap``: the peer answers the sum of each group of 64 slots,
   restricted to the slots of the bitmap (the shared ones).  Equal sums end it.
2. ``AESLOTS slot ...``: for the slots of the differing groups, each slot's sum
   and key count.
3. ``AEKEYS slot segment ...`` lists the ``(key, leaf)`` pairs of up to 16
   differing slots or segments at a time, and about ``KEYS_PER_LISTING`` keys at
   most; a slot with more than ``SEGMENTED_SLOT_KEYS`` keys on either side is
   first split with ``AESEGS slot`` (64 segment sums) and only its differing
   segments are listed.
4. Keys the peer holds in other versions, or that only the peer holds, are
   pulled with ``RREAD`` (the peer answers its record when its versions differ)
   and merged here by clock (:meth:`VersionStore.apply
   <respkv.replication.store.VersionStore.apply>`, never a blind overwrite).
   Pulled records go into the commit log at once.  Then every key whose leaf
   here still differs from the peer's — held only here, or the merge holds
   versions the peer lacks — is pushed with ``REPL`` as a record to reconcile
   (read repair's message), merged the same way there, and logged there before
   the peer answers.  A node refusing writes (its log failed) starts no exchange.

Records are merged, so an exchange never loses a version: the result on both
sides is the reconciliation of both.  A tombstone is a record like any other,
so a deleted key stays deleted (the tombstone travels to the replica that
missed it); tombstones are purged only as :mod:`.forgetting` says, once every
preferred replica acknowledged them.  A record holding only a version that has
expired is neither pulled nor pushed: every replica forgets it on its own.

*Pacing.*  Repairs are rate-limited to ``anti-entropy-keys-per-second`` (the
exchange sleeps after each batch for the batch's share of a second; a key
listed counts as a tenth of one repaired), and slower still while clients keep
the node busy (:mod:`.pacing`: halved at ``anti-entropy-load-ops`` client
commands per second); each step handles about a thousand keys, and tree
comparisons cost a few kilobytes per exchange, so clients keep their throughput
and latency while a large repair runs.  Exchanges start every ``anti-entropy-interval``
milliseconds with the next live peer in turn (0 turns the schedule off), and at
once on ``CLUSTER REPAIR [slot]``, with every live peer.

*Visibility.*  :meth:`AntiEntropy.info` feeds ``INFO replication`` (``ae_*``);
an exchange repairing many keys logs its progress every few seconds.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable

import trio

from ..keyspace.slots import SLOT_COUNT
from ..peer.bus import PeerError, PeerUnavailable
from ..persistence.exceptions import LogWriteError
from .merkle import (
    GROUP_COUNT,
    SEGMENT_COUNT,
    SEGMENTED_SLOT_KEYS,
    SLOTS_PER_GROUP,
    SlotTrees,
    bitmap_slots,
    diff_leaves,
    differing,
    leaf_hash,
    slots_bitmap,
)
from .pacing import repair_rate
from .replica import NO_RECORD, RREAD, SAME, reconcile_args
from .versions import decode_record

log = logging.getLogger(__name__)

AE_ROOT = b"AEROOT"
AE_SLOTS = b"AESLOTS"
AE_SEGMENTS = b"AESEGS"
AE_KEYS = b"AEKEYS"
OPERATIONS = (AE_ROOT, AE_SLOTS, AE_SEGMENTS, AE_KEYS)

#: Seconds between looks at the exchange schedule.
SCHEDULE_TICK = 0.2
#: Keys hashed per turn of the event loop while the trees are built at start.
BUILD_CHUNK = 20_000
#: Slots asked per AESLOTS request; slots or segments listed per AEKEYS request
#: (about a thousand keys at a million keys per node: a millisecond or two of
#: work on each side); keys pulled or pushed per request.
SLOTS_PER_REQUEST = 1024
PARTS_PER_REQUEST = 16
#: Keys one AEKEYS request should list at most, about (a part is never split): the
#: segments of a slot with a million keys go one or two at a time, so neither
#: side stops serving clients for long to list or compare them.
KEYS_PER_LISTING = 4096
KEYS_PER_REQUEST = 256
#: Keys listed (AEKEYS) that count as one key repaired for the pace.
LISTED_PER_REPAIRED = 10
#: Seconds a peer has to answer one exchange request.
REQUEST_TIMEOUT = 10.0
#: An exchange repairing keys logs its progress at most this often.
PROGRESS_SECONDS = 5.0

_SUM = struct.Struct("<Q")


def pack_sums(sums: Iterable[int]) -> bytes:
    """64-bit sums as one little-endian blob."""
    sums = list(sums)
    return struct.pack(f"<{len(sums)}Q", *sums)


def unpack_sums(blob: bytes, count: int) -> list[int]:
    """The ``count`` sums of a :func:`pack_sums` blob; ValueError otherwise."""
    if len(blob) != count * _SUM.size:
        raise ValueError(f"expected {count} sums, got {len(blob)} bytes")
    return list(struct.unpack(f"<{count}Q", blob))


class ExchangeNotReady(Exception):
    """This node's trees are still being built (at start): no exchange yet."""


class AntiEntropy:
    """One node's hash trees, the exchanges it starts and the ones it answers."""

    def __init__(self, node, state, bus, store, coordinator) -> None:
        self.node = node
        self.state = state
        self.bus = bus
        self.store = store
        self.coordinator = coordinator
        self.trees = SlotTrees(store.digest)
        #: False until the trees hold every key loaded at start.
        self.ready = False
        self._kick = trio.Event()
        self._requested: tuple[int, ...] | None = None  # slots of a CLUSTER REPAIR
        self._turn = 0
        #: Unix seconds of the last completed exchange covering each slot (0: never),
        #: and the peer it was with.
        self.slot_exchanged = [0.0] * SLOT_COUNT
        self.slot_peer: list[str | None] = [None] * SLOT_COUNT
        self.running: str | None = None  # the peer of the exchange under way
        self.stats = {
            "exchanges": 0,
            "exchanges_failed": 0,
            "slots_differing": 0,
            "keys_differing": 0,
            "keys_pulled": 0,
            "keys_pushed": 0,
            "bytes_sent": 0,
            "bytes_received": 0,
        }
        self.last_exchange_time = 0.0

    # -- keeping the trees ---------------------------------------------------------------

    def loaded(self, keys: Iterable[bytes]) -> None:
        """The keys restored at start: hashed by :meth:`run` before any exchange;
        every later change of a record reaches the trees as the store makes it
        (the node makes ``trees.moved`` the store's ``on_moved``)."""
        self.trees.unhashed(keys)

    def flushed(self) -> None:
        self.trees.clear()

    def settle(self) -> None:
        """Hash what is left of the keys restored at start (the trees are exact
        after it)."""
        self.trees.settle()

    # -- the responder side ----------------------------------------------------------------

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """Answer one exchange request of a peer (see the module doc)."""
        if not self.ready:
            raise ExchangeNotReady("LOADING anti-entropy trees are being built")
        self.settle()
        trees = self.trees
        if op == AE_ROOT:
            if len(args) != 1:
                raise ValueError("AEROOT needs one slot bitmap")
            return [pack_sums(trees.group_sums(bitmap_slots(args[0])))]
        if op == AE_SLOTS:
            slots = [_slot(arg) for arg in args]
            return [pack_sums(trees.slot_sum(s) for s in slots), pack_sums(trees.key_count(s) for s in slots)]
        if op == AE_SEGMENTS:
            if len(args) != 1:
                raise ValueError("AESEGS needs one slot")
            return [pack_sums(trees.segment_sums(_slot(args[0])))]
        if op == AE_KEYS:
            if not args or len(args) % 2:
                raise ValueError("AEKEYS needs slot and segment pairs (an empty segment for all)")
            answer: list[bytes] = []
            for i in range(0, len(args), 2):
                segment = _segment(args[i + 1]) if args[i + 1] else None
                leaves = trees.leaves(_slot(args[i]), segment)
                answer.append(b"%d" % len(leaves))
                for key, leaf in leaves.items():
                    answer.append(key)
                    answer.append(_SUM.pack(leaf))
            return answer
        raise ValueError(f"unknown anti-entropy operation {op!r}")

    # -- the initiator side ---------------------------------------------------------------

    def request_repair(self, slots: tuple[int, ...] | None = None) -> int:
        """``CLUSTER REPAIR``: exchange with every live peer now (only ``slots``
        when given).  Returns how many peers share slots with this node."""
        self._requested = slots if slots is not None else tuple(range(SLOT_COUNT))
        self._kick.set()
        return len(self._peers(self._requested))

    def _peers(self, slots: Iterable[int]) -> list[str]:
        """Live peers sharing one of ``slots`` with this node, in id order."""
        topology = self.state.topology
        myself = self.state.myself
        peers: set[str] = set()
        for slot in slots:
            nodes = topology.nodes_for(slot)
            if myself in nodes:
                peers.update(nodes)
        peers.discard(myself)
        return sorted(peers)

    def shared_slots(self, peer: str, slots: Iterable[int] | None = None) -> list[int]:
        """The slots both this node and ``peer`` are live preferred replicas of."""
        topology = self.state.topology
        myself = self.state.myself
        candidates = range(SLOT_COUNT) if slots is None else slots
        return [s for s in candidates if myself in (nodes := topology.nodes_for(s)) and peer in nodes]

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Build the trees of the keys loaded at start, then start exchanges on
        schedule or when asked."""
        task_status.started()
        trees = self.trees
        while trees.pending:
            trees.settle(BUILD_CHUNK)
            await trio.lowlevel.checkpoint()
        self.ready = True
        next_exchange = trio.current_time() + self._interval()
        while True:
            with trio.move_on_after(SCHEDULE_TICK):
                await self._kick.wait()
            requested, self._requested = self._requested, None
            if requested is not None:
                self._kick = trio.Event()
                for peer in self._peers(requested):
                    await self.exchange(peer, requested)
                continue
            interval = self._interval()
            if interval and trio.current_time() >= next_exchange:
                peers = self._peers(range(SLOT_COUNT))
                if peers:
                    self._turn = (self._turn + 1) % len(peers)
                    await self.exchange(peers[self._turn])
                next_exchange = trio.current_time() + interval

    def _interval(self) -> float:
        return self.node.config["anti-entropy-interval"] / 1000

    async def exchange(self, peer: str, slots: Iterable[int] | None = None) -> bool:
        """Compare the trees of the slots shared with ``peer`` (of ``slots`` when
        given) and repair what differs; False if the peer could not be asked."""
        shared = self.shared_slots(peer, slots)
        if not shared:
            return True
        refusal = self.node.write_refusal
        if refusal is not None:
            self.stats["exchanges_failed"] += 1
            log.info("no anti-entropy exchange with %s while writes are refused: %s", peer, refusal)
            return False
        self.running = peer
        try:
            await Exchange(self, peer, shared).run()
        except (PeerUnavailable, PeerError, ValueError, LogWriteError) as exc:
            self.stats["exchanges_failed"] += 1
            log.info("anti-entropy exchange with %s stopped: %s", peer, exc)
            return False
        except Exception:  # a peer's answer this code did not foresee: never the node's end
            self.stats["exchanges_failed"] += 1
            log.warning("anti-entropy exchange with %s failed", peer, exc_info=True)
            return False
        finally:
            self.running = None
        self.stats["exchanges"] += 1
        self.last_exchange_time = now = time.time()
        for slot in shared:
            self.slot_exchanged[slot] = now
            self.slot_peer[slot] = peer
        return True

    # -- INFO --------------------------------------------------------------------------------

    def slot_status(self, slot: int) -> dict:
        """``CLUSTER REPAIRINFO``: the slot's tree here and its last exchange."""
        self.settle()
        exchanged = self.slot_exchanged[slot]
        return {
            "tree-keys": self.trees.key_count(slot),
            "tree-hash": b"%016x" % self.trees.slot_sum(slot),
            "last-exchange-ms-ago": int((time.time() - exchanged) * 1000) if exchanged else -1,
            "last-exchange-peer": (self.slot_peer[slot] or "").encode(),
            "replicas": [node.encode() for node in self.state.topology.nodes_for(slot)],
        }

    def repair_rate(self) -> float:
        """Records per second an exchange may repair now: the configured cap,
        lowered while clients keep the node busy (:func:`.pacing.repair_rate`)."""
        return self.paced(self.node.config["anti-entropy-keys-per-second"])

    def paced(self, cap: float) -> float:
        """``cap`` records per second, lowered as clients' load asks (:func:`.pacing.repair_rate`)."""
        config = self.node.config
        instantaneous = self.node.instantaneous
        return repair_rate(cap, instantaneous.ops.recent_peak(), config["anti-entropy-load-ops"],
                           instantaneous.cpu_pressure.recent_peak(), config["anti-entropy-cpu-pressure"])

    def info(self) -> dict[str, object]:
        """The ``ae_*`` fields of INFO replication."""
        now = time.time()
        ages = [now - t for t in self.slot_exchanged if t]
        served = sum(1 for s in range(SLOT_COUNT) if self.state.myself in self.state.topology.nodes_for(s))
        fields: dict[str, object] = {
            "ae_interval_ms": self.node.config["anti-entropy-interval"],
            "ae_trees_ready": int(self.ready),
            "ae_tree_keys": self.trees.keys,
            "ae_tree_pending": len(self.trees.pending),
            "ae_running": self.running or "",
            "ae_repair_rate": round(self.repair_rate()),
            "ae_cpu_pressure": round(self.node.instantaneous.cpu_pressure.recent_peak(), 1),
        }
        fields.update({f"ae_{name}": value for name, value in self.stats.items()})
        fields["ae_last_exchange_seconds_ago"] = round(now - self.last_exchange_time, 1) if self.last_exchange_time else -1
        fields["ae_slots_never_exchanged"] = max(0, served - len(ages))
        fields["ae_oldest_slot_exchange_seconds"] = round(max(ages), 1) if ages else -1
        return fields


class Exchange:
    """One exchange with one peer (see the module doc); :meth:`run` walks the trees.

    Subclasses change what happens to differing keys (:meth:`_repair_parts`) and
    learn which slots and segments were found equal (:meth:`_equal`); the ownership
    hand-off (:mod:`.ownership`) is one."""

    def __init__(self, owner: AntiEntropy, peer: str, shared: list[int], stats: dict | None = None) -> None:
        self.owner = owner
        self.peer = peer
        self.shared = shared
        self.stats = owner.stats if stats is None else stats
        self.store = owner.store
        self.trees = owner.trees
        self.repaired = 0
        self.differing_keys = 0
        self.started = self.reported = time.monotonic()

    async def _ask(self, op: bytes, args: list[bytes]) -> list[bytes]:
        link = self.owner.bus.links.get(self.peer)
        if link is None or not link.connected:
            raise PeerUnavailable(self.peer)
        self.stats["bytes_sent"] += sum(len(arg) for arg in args)
        answer = await link.request(op, args, timeout=REQUEST_TIMEOUT)
        self.stats["bytes_received"] += sum(len(part) for part in answer)
        return answer

    async def run(self) -> None:
        self.owner.settle()
        shared = self.shared
        answer = await self._ask(AE_ROOT, [slots_bitmap(shared)])
        theirs = unpack_sums(answer[0], GROUP_COUNT)
        groups = set(differing(range(GROUP_COUNT), self.trees.group_sums(shared), theirs))
        candidates = [slot for slot in shared if slot // SLOTS_PER_GROUP in groups]
        self._equal([slot for slot in shared if slot // SLOTS_PER_GROUP not in groups])
        parts: list[tuple[int, int | None]] = []  # (slot, segment or whole) to list
        listed = 0  # the keys ``parts`` will list, about
        for start in range(0, len(candidates), SLOTS_PER_REQUEST):
            chunk = candidates[start : start + SLOTS_PER_REQUEST]
            answer = await self._ask(AE_SLOTS, [b"%d" % slot for slot in chunk])
            if len(answer) != 2:
                raise ValueError("AESLOTS answer is not sums and counts")
            sums = unpack_sums(answer[0], len(chunk))
            counts = unpack_sums(answer[1], len(chunk))
            self.owner.settle()
            trees = self.trees
            for slot, sum_there, count_there in zip(chunk, sums, counts):
                if trees.slot_sum(slot) == sum_there:
                    self._equal([slot])
                    continue
                self.stats["slots_differing"] += 1
                keys = max(count_there, trees.key_count(slot))
                if keys <= SEGMENTED_SLOT_KEYS:
                    new_parts = [(slot, None)]
                else:
                    answer = await self._ask(AE_SEGMENTS, [b"%d" % slot])
                    segments_there = unpack_sums(answer[0], SEGMENT_COUNT)
                    segments = differing(range(SEGMENT_COUNT), trees.segment_sums(slot), segments_there)
                    new_parts = [(slot, segment) for segment in segments]
                    self._equal([slot], [s for s in range(SEGMENT_COUNT) if s not in segments])
                    keys //= SEGMENT_COUNT
                for part in new_parts:
                    parts.append(part)
                    listed += keys
                    if len(parts) >= PARTS_PER_REQUEST or listed >= KEYS_PER_LISTING:
                        await self._repair_parts(parts)
                        parts, listed = [], 0
        if parts:
            await self._repair_parts(parts)
        if self.differing_keys:
            log.info("anti-entropy exchange with %s: %d keys differed, %d records repaired in %.1f s",
                     self.peer, self.differing_keys, self.repaired, time.monotonic() - self.started)

    def _equal(self, slots: list[int], segments: list[int] | None = None) -> None:
        """``slots`` (only their ``segments`` when given) hold the same here and
        there as the trees stand now; nothing to repair."""

    async def _repair_parts(self, parts: list[tuple[int, int | None]]) -> None:
        """List the keys of ``parts`` (slots or segments of slots) on both sides,
        pull what the peer may hold newer, push what it lacks."""
        args: list[bytes] = []
        for slot, segment in parts:
            args.append(b"%d" % slot)
            args.append(b"" if segment is None else b"%d" % segment)
        answer = await self._ask(AE_KEYS, args)
        listed = split_listing(answer, len(parts))
        # Listing a key costs both sides about a tenth of repairing one.
        await self._pace(sum(len(leaves) for leaves in listed) / LISTED_PER_REPAIRED)
        self.owner.settle()
        to_pull: list[bytes] = []
        theirs_of: dict[bytes, int | None] = {}  # key held here: the peer's leaf (None: none)
        for (slot, segment), theirs in zip(parts, listed):
            diff = diff_leaves(self.trees.leaves(slot, segment), theirs)
            self.differing_keys += len(diff)
            self.stats["keys_differing"] += len(diff)
            to_pull += diff.to_pull()
            for key in diff.only_mine:
                theirs_of[key] = None
            for key in diff.both:
                theirs_of[key] = theirs[key]
        await self._pull(to_pull)
        digest = self.store.digest
        await self._push([key for key, leaf in theirs_of.items() if leaf_hash(key, digest(key)) != leaf])

    async def _pull(self, keys: list[bytes]) -> None:
        """Merge the peer's records of ``keys`` into the local store."""
        store = self.store
        now = store.keyspace.clock_ms()
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            batch = keys[start : start + KEYS_PER_REQUEST]
            args: list[bytes] = []
            for key in batch:
                args.append(key)
                args.append(store.digest(key))
            answer = await self._ask(RREAD, args)
            if len(answer) != len(batch):
                raise ValueError("RREAD answer does not have one entry per key")
            for key, found in zip(batch, answer):
                if found == SAME or found == NO_RECORD:
                    continue
                record = decode_record(found)
                if all(not v.tombstone and v.expire_at and v.expire_at <= now for v in record):
                    continue  # expired everywhere in time: forgotten, not spread
                if store.apply(key, record):
                    self.stats["keys_pulled"] += 1
                    self.repaired += 1
            self.owner.node.persist_now()  # into the commit log now, as a replica's REPL
            await self._pace(len(batch))

    async def _push(self, keys: list[bytes]) -> None:
        """Ship the local records of ``keys`` to the peer, to merge there."""
        store = self.store
        now = store.keyspace.clock_ms()
        coordinator = self.owner.coordinator
        keys = [key for key in keys if store.expired_clock(key, now) is None]
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            batch = keys[start : start + KEYS_PER_REQUEST]
            args = reconcile_args(store, batch)
            self.stats["bytes_sent"] += sum(len(arg) for arg in args)
            coordinator.ship(self.peer, args, batch)
            pushed = len(args) // 3
            self.stats["keys_pushed"] += pushed
            self.repaired += pushed
            await self._pace(len(batch))

    async def _pace(self, keys: float) -> None:
        """Sleep for ``keys``' share of a second at the repair rate the clients'
        load leaves (:func:`.pacing.repair_rate`), and log progress now and then."""
        rate = self._rate()
        now = time.monotonic()
        if now - self.reported >= PROGRESS_SECONDS:
            self.reported = now
            self._progress(now)
        await trio.sleep(keys / rate)

    def _rate(self) -> float:
        return self.owner.repair_rate()

    def _progress(self, now: float) -> None:
        log.info("anti-entropy exchange with %s: %d keys differ so far, %d records repaired, %.0f s",
                 self.peer, self.differing_keys, self.repaired, now - self.started)


def split_listing(answer: list[bytes], parts: int) -> list[dict[bytes, int]]:
    """The ``{key: leaf}`` of each part of an AEKEYS answer (a count, then that
    many key/leaf pairs, per part); ValueError if it is not one."""
    listed = []
    i = 0
    for _ in range(parts):
        if i >= len(answer):
            raise ValueError("AEKEYS answer lists fewer parts than asked")
        count = int(answer[i])
        end = i + 1 + 2 * count
        if count < 0 or end > len(answer):
            raise ValueError("AEKEYS answer is cut short")
        leaves = {}
        for j in range(i + 1, end, 2):
            if len(answer[j + 1]) != _SUM.size:
                raise ValueError("AEKEYS answer has a leaf that is not 8 bytes")
            leaves[answer[j]] = _SUM.unpack(answer[j + 1])[0]
        listed.append(leaves)
        i = end
    if i != len(answer):
        raise ValueError("AEKEYS answer lists more than asked")
    return listed


def _segment(arg: bytes) -> int:
    segment = int(arg)
    if not 0 <= segment < SEGMENT_COUNT:
        raise ValueError(f"segment {segment} out of range")
    return segment


def _slot(arg: bytes) -> int:
    slot = int(arg)
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot {slot} out of range")
    return slot
