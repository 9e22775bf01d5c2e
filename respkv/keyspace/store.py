"""The local keyspace: typed values by key, their expiry, and change signals.

Theory of operation
-------------------
Values live in one dictionary, ``data``, so a lookup is a single hash probe (no
slot computation on the request path).  The value's Python type is its Redis type
(``bytes`` is a string; see :mod:`respkv.keyspace.values`), so a string key costs one
dictionary entry and two ``bytes`` objects, nothing more.

What works slot by slot — ``SCAN``'s cursor, which must survive concurrent writes,
``RANDOMKEY``, ``CLUSTER COUNTKEYSINSLOT``/``GETKEYSINSLOT``, and on a cluster node
``DBSIZE`` and ``KEYS`` (which count only the slots the node coordinates) — uses a :class:`SlotIndex`:
the keys of each Redis Cluster hash slot.  It is built on first use (one pass over
the keys, about 0.7 s per million on a slow core, during which the node waits) and
from then on kept exact by every insert and removal, so nodes that never walk their
keys pay neither its memory (some 40 bytes a key) nor its upkeep.  ``SCAN`` returns whole
slots, so a key present for a whole walk is returned at least once.

Expiry is kept beside the data: ``expires`` maps each volatile key to its deadline
(absolute Unix milliseconds).  Lookups expire lazily: a key found past its deadline is
deleted and reported missing.  Active expiry pops a min-heap of ``(deadline, key)``
entries that are due, so the memory of expired keys comes back without anybody
touching them; heap entries whose key got a new deadline since are stale and skipped,
and the heap is rebuilt when stale entries outnumber live ones.

Writers report changes through :meth:`Keyspace.signal_modified`, which ``WATCH`` and
blocked clients hook into by registering a callback in ``on_modified``.  Replication
also hooks ``on_expire`` (a key expired) and ``on_flush`` (FLUSHALL/FLUSHDB) to keep
its version records in step.
"""

from __future__ import annotations

import heapq
import random
import time
from sys import getsizeof
from collections.abc import Callable

from .eviction import TAG_MASK, AccessClock, Candidates
from .memory import (EXPIRY_ENTRY, EXPIRY_OBJECTS, KEY_ENTRY, SLOT_INDEX_ENTRY, DictTable, bytes_cost, resized,
                     value_cost)
from .slots import SLOT_COUNT, key_slot

#: Which hash slots a count or listing covers: ``mask[slot]`` is true for the
#: slots to include; None for every slot.  A cluster node counts only the slots
#: it coordinates, so that the counts of all its nodes add up to the cluster's keys.
Slots = bytes | bytearray | None

#: ``evict_at`` while no maxmemory applies.
NO_LIMIT = 1 << 62
#: Housekeeping ticks between two looks at whether the access table can shrink
#: (6.4 s at hz 10: a halving costs up to 60 ms, so it must not follow every swing).
FIT_ACCESS_EVERY = 64


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Keyspace:
    """All keys of the node's single database (db 0)."""

    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        #: Current time in Unix milliseconds; tests inject a fake one.
        self.clock_ms = clock_ms
        #: Every key's value (expired keys linger until found or actively expired).
        self.data: dict[bytes, object] = {}
        self._slot_index: SlotIndex | None = None
        self.expires: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        #: Called with the key after every change of a key's value or existence.
        self.on_modified: Callable[[bytes], None] | None = None
        #: Called after FLUSHALL/FLUSHDB emptied the keyspace (replication's records).
        self.on_flush: Callable[[], None] | None = None
        #: Called with a key that expired (lazily or actively), after it is removed.
        self.on_expire: Callable[[bytes], None] | None = None
        #: A commit log that holds some changes as commands, or None (see
        #: ``commands.replay.logged_as``).
        self.command_log = None
        self.expired_keys = 0  # statistics: keys removed because they expired
        #: key → (value object, OBJECT ENCODING name) for strings whose Redis encoding
        #: depends on how they were made, not only on their bytes (APPEND/SETRANGE
        #: results are "raw", INCRBYFLOAT results never "int").  A hint counts only
        #: while the key still holds that very object, so writers need not clear it.
        self._encoding_hints: dict[bytes, tuple[bytes, bytes]] = {}
        self._hints_sweep_at = 4096
        #: Bytes of the keys (dictionary entry and object) and their values (see
        #: :mod:`.memory`); :meth:`memory_used` adds deadlines and bookkeeping.
        self.stored_bytes = 0
        #: Once ``stored_bytes`` passes this, the next command first checks maxmemory
        #: (the node sets it from the room left; see Node.make_room).
        self.evict_at = NO_LIMIT
        #: The estimated cost of each collection value (strings are costed by length).
        self._collection_costs: dict[bytes, int] = {}
        #: Access stamps for OBJECT IDLETIME/FREQ and eviction (see :mod:`.eviction`).
        self.access = AccessClock(clock_ms())
        self._grow_access_at = self.access.grow_at()
        self._fit_access_countdown = FIT_ACCESS_EVERY
        #: Keys eviction samples from, once an eviction needed them: every key, and
        #: those with a deadline (see :class:`~.eviction.Candidates`).
        self.candidates: Candidates | None = None
        self.volatile_candidates: Candidates | None = None
        self.evicted_keys = 0  # statistics: keys removed by eviction
        #: The two dictionaries keys come and go from, kept at the size their keys
        #: need (see :class:`.memory.DictTable`).
        self._data_table = DictTable(self.data, *self._candidate_hooks("candidates"))
        self._expires_table = DictTable(self.expires, *self._candidate_hooks("volatile_candidates"))

    def tick_access(self) -> None:
        """Once per housekeeping tick: the LRU/LFU clocks move, as Redis's, and
        every :data:`FIT_ACCESS_EVERY` ticks the access table is halved if the
        keys settled well below what it grew for (see ``AccessClock.fit``)."""
        self.access.tick(self.clock_ms())
        self._fit_access_countdown -= 1
        if self._fit_access_countdown <= 0:
            self._fit_access_countdown = FIT_ACCESS_EVERY
            if self.access.fit(len(self.data)):
                self._grow_access_at = self.access.grow_at()

    def _candidate_hooks(self, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        """Hooks around a rebuild of the dictionary whose keys the eviction
        candidates ``name`` list: the list is freed before it (the rebuild is the
        peak of a node evicting all the time: 1 MB less there for 126,000 keys)
        and listed again after (without its dead entries)."""
        def release() -> None:
            candidates = getattr(self, name)
            if candidates is not None:
                candidates.release()

        def relist() -> None:
            candidates = getattr(self, name)
            if candidates is not None:
                candidates.relist()
        return release, relist

    # -- reading -------------------------------------------------------------------

    def get(self, key: bytes):
        """The live value of ``key``, or ``None``; an access (its LRU stamp or LFU
        counter moves, see :mod:`.eviction`)."""
        value = self.data.get(key)
        if value is not None:
            if self.expires and key in self.expires and self.expires[key] <= self.clock_ms():
                self._expire(key)
                return None
            access = self.access
            if access.lfu:
                access.touch(key)
            else:  # AccessClock.touch, inline
                key_hash = hash(key)
                access.cells[key_hash & access.mask] = ((key_hash >> 32) & TAG_MASK) | access.clock
        return value

    def peek(self, key: bytes):
        """The live value of ``key``, or ``None``, without counting an access
        (``OBJECT``, ``TYPE``, ``MEMORY USAGE``, as Redis's no-touch lookups)."""
        value = self.data.get(key)
        if value is not None and self.expires and key in self.expires and self.expires[key] <= self.clock_ms():
            self._expire(key)
            return None
        return value

    def contains(self, key: bytes) -> bool:
        return self.get(key) is not None

    def deadline(self, key: bytes) -> int | None:
        """Absolute expiry in Unix ms of a live key, or ``None`` if it is persistent."""
        return self.expires.get(key)

    def dbsize(self, only: Slots = None) -> int:
        """The stored keys; with ``only``, those of the slots it flags (see
        :data:`Slots`), counted from the slot index."""
        if only is None:
            return len(self.data)
        slots = self.slot_index().slots
        return sum(len(slots[slot]) for slot in _flagged(only) if slots[slot])

    def volatile_count(self, only: Slots = None) -> int:
        """The keys with a deadline; with ``only``, those of the flagged slots
        (a pass over the deadlines)."""
        if only is None:
            return len(self.expires)
        return sum(1 for key in self.expires if only[key_slot(key)])

    # -- writing -------------------------------------------------------------------

    def set(self, key: bytes, value, keep_ttl: bool = False) -> None:
        """Store ``value``; like Redis ``SET``, this clears any TTL unless ``keep_ttl``."""
        data = self.data
        old = data.get(key)
        data[key] = value
        if old.__class__ is bytes and value.__class__ is bytes:  # the common case, kept short
            if len(old) != len(value):
                self.stored_bytes += resized(len(old), len(value))
            access = self.access
            if not access.lfu:  # LFU keeps the counter of an overwritten key
                key_hash = hash(key)
                access.cells[key_hash & access.mask] = ((key_hash >> 32) & TAG_MASK) | access.clock
        else:
            self._stored_other(key, old, value)
        if not keep_ttl and self.expires:
            self.expires.pop(key, None)
        if self.on_modified is not None:
            self.on_modified(key)

    def _stored_other(self, key: bytes, old, value) -> None:
        """:meth:`set`'s bookkeeping for a new key, or a collection before or after."""
        if old is None:
            self._created(key)
        else:
            self.stored_bytes -= self._value_bytes(key, old)
            if not self.access.lfu:  # LFU keeps the counter of an overwritten key
                self.access.touch(key)
        if value.__class__ is bytes:
            self.stored_bytes += bytes_cost(len(value))
        else:
            self.stored_bytes += self._cost_collection(key, value)

    def _created(self, key: bytes) -> None:
        """Bookkeeping of a key about to be stored for the first time."""
        self.stored_bytes += KEY_ENTRY + bytes_cost(len(key))
        if self._slot_index is not None:
            self._slot_index.add(key)
        if self.candidates is not None:
            self.candidates.add(key)
        if len(self.data) >= self._grow_access_at:
            self.access.grow(len(self.data) + 1)
            self._grow_access_at = self.access.grow_at()
        self.access.created(key)
        self._data_table.created()

    def _value_bytes(self, key: bytes, value) -> int:
        """What ``stored_bytes`` holds for ``key``'s stored ``value``."""
        if value.__class__ is bytes:
            return bytes_cost(len(value))
        return self._collection_costs.pop(key, 0)

    def _cost_collection(self, key: bytes, value) -> int:
        cost = self._collection_costs[key] = value_cost(value)
        return cost

    def stores_are_plain(self) -> bool:
        """Whether storing a string over a string is just ``data[key] = value``
        plus the change of ``stored_bytes`` for now.

        True while no key has a deadline (that a store would clear), nobody observes
        changes and no slot index is kept.  Hot loops that store many values use
        this to skip :meth:`set`'s checks; a store creating a key goes through
        :meth:`set`.
        """
        return not self.expires and self.on_modified is None and self._slot_index is None

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if a live key was removed."""
        if self.get(key) is None:
            return False
        self._drop(key)
        return True

    def _drop(self, key: bytes) -> None:
        """Remove a stored key with its deadline, and tell the observers."""
        self._remove(key)
        if self.expires:
            self.expires.pop(key, None)
        if self.on_modified is not None:
            self.on_modified(key)

    def signal_modified(self, key: bytes) -> None:
        """Report an in-place change of ``key``'s value (e.g. a hash field set):
        its cost is estimated again, and observers are told."""
        value = self.data.get(key)
        if value is not None and value.__class__ is not bytes:
            old = self._collection_costs.get(key, 0)
            self.stored_bytes += self._cost_collection(key, value) - old
        if self.on_modified is not None:
            self.on_modified(key)

    def set_deadline(self, key: bytes, when_ms: int) -> None:
        """Make an existing key expire at ``when_ms`` (absolute Unix ms)."""
        new = key not in self.expires
        if new and self.volatile_candidates is not None:
            self.volatile_candidates.add(key)
        self.expires[key] = when_ms
        if new:
            self._expires_table.created()
        heapq.heappush(self._heap, (when_ms, key))
        if len(self._heap) > 2 * len(self.expires) + 1024:
            self._heap = [(when, k) for k, when in self.expires.items()]
            heapq.heapify(self._heap)

    def persist(self, key: bytes) -> bool:
        """Drop the TTL of ``key``; True if it had one."""
        return self.expires.pop(key, None) is not None

    def flush(self) -> int:
        """Remove every key; returns how many there were."""
        count = self.dbsize()
        keys = list(self.data) if self.on_modified is not None else ()
        self.data.clear()
        self._slot_index = None
        self.expires.clear()
        self._data_table.reset()
        self._expires_table.reset()
        self._heap.clear()
        self._encoding_hints.clear()
        self.stored_bytes = 0
        self._collection_costs.clear()
        self.candidates = self.volatile_candidates = None
        if self.on_flush is not None:
            self.on_flush()
        for key in keys:
            self.on_modified(key)
        return count

    # -- expiry ----------------------------------------------------------------------

    def _remove(self, key: bytes) -> None:
        """Forget a stored key's value (its deadline is the caller's business)."""
        self.stored_bytes -= KEY_ENTRY + bytes_cost(len(key)) + self._value_bytes(key, self.data.pop(key))
        if self._slot_index is not None:
            self._slot_index.discard(key)

    def _expire(self, key: bytes) -> None:
        if key in self.data:
            self._remove(key)
        del self.expires[key]
        self.expired_keys += 1
        if self.on_modified is not None:
            self.on_modified(key)
        if self.on_expire is not None:
            self.on_expire(key)

    def expire_due(self, limit: int) -> int:
        """Active expiry: remove up to ``limit`` keys whose deadline has passed.

        Returns how many keys were removed.
        """
        heap = self._heap
        expires = self.expires
        now = self.clock_ms()
        removed = 0
        while heap and heap[0][0] <= now and removed < limit:
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                self._expire(key)
                removed += 1
        return removed

    def next_deadline(self) -> int | None:
        """The earliest deadline in the expiry heap (may be stale), if any."""
        return self._heap[0][0] if self._heap else None

    # -- iteration -------------------------------------------------------------------

    def iter_keys(self) -> list[bytes]:
        """Every stored key (expired ones included; callers filter with ``get``)."""
        return list(self.data)

    def live_keys(self, only: Slots = None) -> list[bytes]:
        """Every live key (of the slots ``only`` flags), expiring the dead ones
        found on the way."""
        if only is None:
            keys = self.iter_keys()
        else:
            slots = self.slot_index().slots
            keys = [key for slot in _flagged(only) if slots[slot] for key in list(slots[slot])]
        return [k for k in keys if self.get(k) is not None]

    def slot_index(self) -> SlotIndex:
        """The keys by hash slot, built now if this is its first use."""
        if self._slot_index is None:
            self._slot_index = SlotIndex(self.data)
        return self._slot_index

    def scan(self, cursor: int, count: int, only: Slots = None) -> tuple[int, list[bytes]]:
        """Visit whole slots from ``cursor`` until ``count`` keys were seen
        (only the slots ``only`` flags, when given).

        Returns the next cursor (0 when the walk is complete) and the keys visited,
        expired ones included.  A key present for the whole walk is returned at
        least once because a slot is always returned whole.
        """
        slots = self.slot_index().slots
        keys: list[bytes] = []
        slot = cursor
        while slot < SLOT_COUNT and len(keys) < count:
            members = slots[slot]
            if members and (only is None or only[slot]):
                keys.extend(members)
            slot += 1
        return (0 if slot >= SLOT_COUNT else slot), keys

    def random_key(self, only: Slots = None) -> bytes | None:
        """A live key (of the slots ``only`` flags) chosen at random, or ``None``
        when there is none."""
        for _ in range(100):
            if not self.data:
                return None
            slots = self.slot_index().slots
            start = random.randrange(SLOT_COUNT)
            for i in range(SLOT_COUNT):
                slot = (start + i) & (SLOT_COUNT - 1)
                members = slots[slot]
                if members and (only is None or only[slot]):
                    key = random.choice(list(members))
                    if self.get(key) is not None:
                        return key
                    break
            else:
                return None  # no flagged slot holds a key
        return None

    # -- memory and eviction ------------------------------------------------------------

    def memory_used(self) -> int:
        """The dataset's estimated bytes (see :mod:`.memory`): keys, values,
        deadlines, the slot index, access stamps and eviction candidates.

        ``stored_bytes`` charges each key an average dictionary entry, which is
        what triggers the next maxmemory check as keys are added; the total uses
        the dictionaries' real sizes instead (``sys.getsizeof`` of a dict is its
        table, O(1)), which grow in steps and stay large after churn."""
        return self.stored_bytes - KEY_ENTRY * len(self.data) + self.memory_overhead()

    def memory_overhead(self) -> int:
        """The part of :meth:`memory_used` that is not key and value objects: the
        dictionaries and the bookkeeping (INFO's ``used_memory_overhead``)."""
        expires = self.expires
        used = getsizeof(self.data) + getsizeof(expires) + EXPIRY_OBJECTS * len(expires)
        used += self.access.size_bytes()
        if self._slot_index is not None:
            used += SLOT_INDEX_ENTRY * len(self.data)
        for candidates in (self.candidates, self.volatile_candidates):
            if candidates is not None:
                used += candidates.size_bytes()
        return used

    def key_memory(self, key: bytes, samples: int) -> int | None:
        """``MEMORY USAGE``: the estimated bytes of ``key`` (``samples`` members of a
        collection averaged, all when 0), None if there is no such key."""
        value = self.peek(key)
        if value is None:
            return None
        cost = KEY_ENTRY + bytes_cost(len(key)) + value_cost(value, samples)
        return cost + EXPIRY_ENTRY if key in self.expires else cost

    def evict(self, key: bytes) -> None:
        """Remove ``key`` to free memory (``maxmemory``): a deletion, counted as an
        eviction."""
        if key in self.data:
            self.evicted_keys += 1
            self._drop(key)

    # -- encoding hints ----------------------------------------------------------------

    def hint_encoding(self, key: bytes, value: bytes, encoding: bytes) -> None:
        """Remember that ``value``, just stored at ``key``, has Redis encoding ``encoding``."""
        hints = self._encoding_hints
        hints[key] = (value, encoding)
        if len(hints) > self._hints_sweep_at:
            for k, (v, _) in list(hints.items()):
                if self.data.get(k) is not v:
                    del hints[k]
            self._hints_sweep_at = max(4096, 2 * len(hints))

    def encoding_hint(self, key: bytes, value) -> bytes | None:
        """The remembered encoding of ``value`` at ``key``, if it is still that object."""
        hint = self._encoding_hints.get(key)
        if hint is None:
            return None
        if hint[0] is value:
            return hint[1]
        del self._encoding_hints[key]
        return None

    # -- slots -------------------------------------------------------------------------

    def count_in_slot(self, slot: int, only: Slots = None) -> int:
        members = self.slot_index().slots[slot]
        return len(members) if members and (only is None or only[slot]) else 0

    def keys_in_slot(self, slot: int, count: int, only: Slots = None) -> list[bytes]:
        members = self.slot_index().slots[slot] or ()
        if only is not None and not only[slot]:
            return []
        return [k for _, k in zip(range(count), members)]


def _flagged(only: bytes | bytearray) -> list[int]:
    """The slots a :data:`Slots` mask flags."""
    return [slot for slot, flag in enumerate(only) if flag]


class SlotIndex:
    """The stored keys of each hash slot (a set per non-empty slot, else None)."""

    __slots__ = ("slots",)

    def __init__(self, keys) -> None:
        self.slots: list[set[bytes] | None] = [None] * SLOT_COUNT
        for key in keys:
            self.add(key)

    def add(self, key: bytes) -> None:
        """Record a key that was just stored."""
        slot = key_slot(key)
        members = self.slots[slot]
        if members is None:
            self.slots[slot] = {key}
        else:
            members.add(key)

    def discard(self, key: bytes) -> None:
        """Forget a key that was just removed."""
        slot = key_slot(key)
        members = self.slots[slot]
        members.discard(key)
        if not members:
            self.slots[slot] = None
