"""Access tracking and key eviction under ``maxmemory``, as Redis approximates it.

Theory of operation
-------------------
Redis keeps 24 bits of access data in every value's header: the LRU clock of the
last access (seconds, modulo 2**24) or, under an LFU policy, the minute of the
last decrement (16 bits) beside a logarithmic access counter (8 bits).  A Python
``bytes`` object has no room for them, and a dictionary from key to stamp would
cost some 40 bytes a key, so :class:`AccessClock` keeps them in one array of
32-bit cells indexed by ``hash(key)``: a power-of-two table doubled as the
keyspace grows, with at least two cells a key (8 to 16 bytes) under the policies
whose eviction reads them (LRU, LFU), and one (4 to 8 bytes) under the others,
where only ``OBJECT IDLETIME`` and ``OBJECT FREQ`` do.  A cell holds 24
bits of stamp and, in its top byte, the **tag** of the key that stamped it last
(eight bits of its hash the index does not use).

Under LRU a key has one cell, and keys whose hashes meet in it share it: the last
to be accessed or created stamps it.  A key whose cell another key stamped since
(its tag differs) knows only that its own last access came earlier, so LRU rates
it one second idler than the cell says.  With a table of two cells a key or
more, a key shares with another one time in three at most (with one, about two in five).

Under LFU a lost cell costs more: the counter is the history of many accesses,
and a hot key whose cell a cold key took would count again from a new key's
counter and be evicted as a cold one (a simulation of the cache benchmark's
workload lost 1.5 points of hit ratio that way).  So a key has two candidate
cells and keeps its counter in the one that carries its tag.  A new key takes
no cell: without one a key reads as a new key's counter (5), as Redis starts
one, so creating keys never displaces a counter.  A key's first access after
creation, or after both its cells were taken, claims the weaker of its two cells
(the lower decayed counter) and counts on from a new key's counter; a hot key
loses its counter only when a key whose other cell is still hotter claims it.
A cold key never inherits a hot counter: a counter is read only through its tag.
Stamps cost one store on every access (LFU: one or two reads before it).

Eviction samples keys at random, as Redis does, because an exact LRU order costs
memory per key.  Python's ``dict`` offers no random access, so :class:`Candidates`
keeps the keys (and the keys with a deadline) in plain lists, built on the first
eviction and appended to as keys are created; a sampled entry whose key is gone
is dropped there and then, a key the random policies evict leaves the list as it
is chosen, and a list is rebuilt when dead entries pass a sixteenth of the live
ones (each keeps a deleted key's object alive).
The :class:`EvictionPool` keeps the best candidates seen across
samplings (16, as Redis), so each eviction sees more than ``maxmemory-samples``
keys.  The pure functions (:func:`lfu_increment`, :func:`lfu_decayed`,
:func:`idle_seconds`, :func:`time_limit_us`) follow the formulas Redis
documents and are table-tested.
"""

from __future__ import annotations

import random
from array import array
from time import perf_counter

#: Policies, as ``maxmemory-policy`` spells them.
POLICIES = (
    "noeviction",
    "allkeys-lru", "allkeys-lfu", "allkeys-random",
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
)
#: The LRU clock counts seconds modulo this (24 bits, as Redis's).
LRU_CLOCK_MAX = (1 << 24) - 1
#: The counter a new key starts with under LFU, so that it is not evicted at once.
LFU_INIT_VAL = 5
#: Candidates the pool keeps between evictions.
POOL_SIZE = 16
#: Keys sampled to estimate which share of the held keys a cluster node coordinates.
SHARE_SAMPLES = 32
#: Fewest cells of the access table (1 KiB).
_MIN_CELLS = 256
#: The table is halved only when the keys would still leave this share of it free
#: (so that it does not grow again at once), and only up to this size: a halving
#: merges the cells pairwise in Python, about 0.1 us a cell (60 ms at the limit).
_SHRINK_HEADROOM = 0.05
_SHRINK_MAX_CELLS = 1 << 20
#: A cell's top byte: the tag of the key that stamped it, bits 56-63 of its hash
#: (``(hash >> 32) & TAG_MASK``; see the module doc); the rest is the stamp (LRU
#: clock, or LFU minute and counter).
TAG_MASK = 0xFF000000
STAMP_MASK = 0x00FFFFFF
#: An LFU key's second cell is ``(hash >> SECOND_CELL_SHIFT) & mask``: bits that
#: neither the first cell (the low bits) nor the tag (bits 56-63) use, for tables
#: of up to 2**27 cells.
SECOND_CELL_SHIFT = 29


def lru_clock(now_ms: int) -> int:
    """The LRU clock at ``now_ms``: seconds modulo 2**24."""
    return (now_ms // 1000) & LRU_CLOCK_MAX


def idle_seconds(clock: int, stamp: int) -> int:
    """Seconds since ``stamp`` at LRU clock ``clock``, across the clock's wrap."""
    if clock >= stamp:
        return clock - stamp
    return clock + (LRU_CLOCK_MAX - stamp)


def lfu_minutes(now_ms: int) -> int:
    """The LFU decrement clock at ``now_ms``: minutes modulo 2**16."""
    return (now_ms // 60000) & 0xFFFF


def lfu_decayed(cell: int, minutes: int, decay_time: int) -> int:
    """The counter of LFU ``cell`` (minute << 8 | counter) after decaying it by
    one for every ``decay_time`` minutes since its minute (none when 0)."""
    counter = cell & 0xFF
    if not decay_time:
        return counter
    then = (cell >> 8) & 0xFFFF
    elapsed = minutes - then if minutes >= then else 0xFFFF - then + minutes
    periods = elapsed // decay_time
    return 0 if periods > counter else counter - periods


def lfu_increment(counter: int, log_factor: int, draw: float) -> int:
    """The counter after one access, given a uniform ``draw`` in [0, 1): the more
    accesses a key had, the less likely the next one counts (a logarithmic
    counter saturating at 255)."""
    if counter >= 255:
        return 255
    base = counter - LFU_INIT_VAL
    if base < 0:
        base = 0
    return counter + 1 if draw < 1.0 / (base * log_factor + 1) else counter


def time_limit_us(tenacity: int) -> float:
    """How long one command may spend evicting (``maxmemory-eviction-tenacity``):
    50 µs per step up to 10, then 15% more per step, unlimited at 100."""
    if tenacity <= 10:
        return 50.0 * tenacity
    if tenacity < 100:
        return 500.0 * 1.15 ** (tenacity - 10)
    return float("inf")


class AccessClock:
    """Per-key access stamps in a hashed array (see the module doc).

    ``lfu`` says how cells are read: LRU clock values, or LFU minute/counter pairs.
    The owner calls :meth:`tick` with the time (the node's cron, and before
    evicting), :meth:`grow` as the keyspace grows, and :meth:`touch` on every access.
    """

    __slots__ = ("cells", "mask", "lfu", "log_factor", "decay_time", "clock", "minutes", "_random", "cells_per_key")

    def __init__(self, now_ms: int, lfu: bool = False) -> None:
        self.cells = array("I", bytes(4 * _MIN_CELLS))
        self.mask = _MIN_CELLS - 1
        self.lfu = lfu
        self.log_factor = 10
        self.decay_time = 1
        self.clock = lru_clock(now_ms)
        self.minutes = lfu_minutes(now_ms)
        self._random = random.random
        #: The fewest cells a key: 2 where eviction reads the stamps (LRU, LFU
        #: policies), 1 where only ``OBJECT IDLETIME``/``FREQ`` do (4 bytes a key less).
        self.cells_per_key = 1
        self.reset()

    def tick(self, now_ms: int) -> None:
        self.clock = lru_clock(now_ms)
        self.minutes = lfu_minutes(now_ms)

    def reset(self, lfu: bool | None = None) -> None:
        """Every cell fresh: accessed now (LRU), or a new key's counter (LFU),
        with no key's tag (each key's next access tags its cell).  Redis keeps old
        data when the policy changes; a fresh start is as useful."""
        if lfu is not None:
            self.lfu = lfu
        fresh = (self.minutes << 8) | LFU_INIT_VAL if self.lfu else self.clock
        self.cells = array("I", [fresh]) * len(self.cells)

    def grow(self, keys: int) -> None:
        """Keep at least :attr:`cells_per_key` cells per key: double the table
        (each new cell starts as the cell its hash used to land in)."""
        cells = self.cells
        while keys * self.cells_per_key > len(cells):
            cells = cells * 2
        if cells is not self.cells:
            self.cells = cells
            self.mask = len(cells) - 1

    def fit(self, keys: int) -> bool:
        """Halve the table if ``keys`` need at most half of it, less the headroom;
        True if it did.  A keyspace that filled to ``maxmemory`` before its
        eviction candidates and a grown table were counted held more keys for a
        moment than it keeps, and a table grown then would stay twice the size
        its keys need.  Cells ``j`` and ``j + half`` become one, keeping the
        more recent stamp (LRU) or the higher counter as decayed now (LFU: a
        counter last touched long ago is worth less than its byte says), with
        its tag."""
        cells = self.cells
        half = len(cells) >> 1
        if (half < _MIN_CELLS or len(cells) > _SHRINK_MAX_CELLS
                or keys * self.cells_per_key > half * (1 - _SHRINK_HEADROOM)):
            return False
        if self.lfu:
            minutes, decay_time = self.minutes, self.decay_time
            # What a counter of each minute stamp has decayed by (a few distinct stamps).
            decay = {stamp: 255 - lfu_decayed(stamp << 8 | 255, minutes, decay_time)
                     for stamp in {cell >> 8 & 0xFFFF for cell in cells}}
            for low in range(half):
                high, kept = cells[low + half], cells[low]
                if (high ^ kept) & 0xFFFF00 == 0:  # the same minute: the bytes compare
                    if high & 0xFF > kept & 0xFF:
                        cells[low] = high
                elif (high & 0xFF) - decay[high >> 8 & 0xFFFF] > max(0, (kept & 0xFF) - decay[kept >> 8 & 0xFFFF]):
                    cells[low] = high
        else:
            for low in range(half):
                high = cells[low + half]
                if high & STAMP_MASK > cells[low] & STAMP_MASK:
                    cells[low] = high
        del cells[half:]
        self.mask = half - 1
        return True

    def grow_at(self) -> int:
        """How many keys the table holds before :meth:`grow` doubles it."""
        return len(self.cells) // self.cells_per_key

    def touch(self, key: bytes) -> None:
        """``key`` was accessed now (see the module doc for LFU's two cells)."""
        key_hash = hash(key)
        tag = (key_hash >> 32) & TAG_MASK
        if not self.lfu:
            self.cells[key_hash & self.mask] = tag | self.clock
            return
        cells, mask, minutes, decay_time = self.cells, self.mask, self.minutes, self.decay_time
        first = key_hash & mask
        cell = cells[first]
        if cell & TAG_MASK == tag:
            at, counter = first, lfu_decayed(cell, minutes, decay_time)
        else:
            second = (key_hash >> SECOND_CELL_SHIFT) & mask
            other = cells[second]
            if other & TAG_MASK == tag:
                at, counter = second, lfu_decayed(other, minutes, decay_time)
            else:  # no cell holds its counter: it counts on from a new key's, in the weaker cell
                at = (first if lfu_decayed(cell, minutes, decay_time) <= lfu_decayed(other, minutes, decay_time)
                      else second)
                counter = LFU_INIT_VAL
        cells[at] = tag | (minutes << 8) | lfu_increment(counter, self.log_factor, self._random())

    def created(self, key: bytes) -> None:
        """``key`` was just created: LRU stamps its cell as accessed now, whoever
        stamped it before; LFU takes no cell (a key without one reads as a new
        key) but clears a counter left by an earlier key of that name."""
        key_hash = hash(key)
        tag = (key_hash >> 32) & TAG_MASK
        if not self.lfu:
            self.cells[key_hash & self.mask] = tag | self.clock
            return
        at = self._lfu_cell(key_hash, tag)
        if at is not None:
            self.cells[at] = tag | (self.minutes << 8) | LFU_INIT_VAL

    def _lfu_cell(self, key_hash: int, tag: int) -> int | None:
        """The index of the cell that holds the LFU counter of the key with this
        hash and tag, or None if neither of its two cells does."""
        cells, mask = self.cells, self.mask
        first = key_hash & mask
        if cells[first] & TAG_MASK == tag:
            return first
        second = (key_hash >> SECOND_CELL_SHIFT) & mask
        return second if cells[second] & TAG_MASK == tag else None

    def idle(self, key: bytes) -> int:
        """Seconds since ``key``'s last access (LRU; ``OBJECT IDLETIME``).  If
        another key stamped its cell since, the seconds since that key's access:
        ``key``'s own came earlier."""
        return idle_seconds(self.clock, self.cells[hash(key) & self.mask] & STAMP_MASK)

    def frequency(self, key: bytes) -> int:
        """``key``'s access counter now (LFU; ``OBJECT FREQ``), decayed but not
        incremented; a new key's counter if neither of its cells holds its own."""
        key_hash = hash(key)
        at = self._lfu_cell(key_hash, (key_hash >> 32) & TAG_MASK)
        if at is None:
            return LFU_INIT_VAL
        return lfu_decayed(self.cells[at], self.minutes, self.decay_time)

    def owns_stamp(self, key: bytes) -> bool:
        """Whether ``key`` stamped its LRU cell last (else another key sharing the
        cell did, after ``key``'s last access)."""
        key_hash = hash(key)
        return self.cells[key_hash & self.mask] & TAG_MASK == (key_hash >> 32) & TAG_MASK

    def size_bytes(self) -> int:
        return 4 * len(self.cells)


class Candidates:
    """Keys to sample from: every key, or only those with a deadline (see the
    module doc).  ``source`` is the dict whose keys are live (the keyspace's data
    or its expiry map)."""

    __slots__ = ("source", "keys")

    def __init__(self, source: dict) -> None:
        self.source = source
        self.keys: list[bytes] = list(source)

    def add(self, key: bytes) -> None:
        self.keys.append(key)

    def release(self) -> None:
        """Free the list for a moment (see :meth:`relist`)."""
        self.keys = []

    def relist(self) -> None:
        """List the source's keys again."""
        self.keys = list(self.source)

    def _live_enough(self) -> list[bytes]:
        """The list, rebuilt first if dead entries passed a sixteenth of the live
        keys: each keeps a deleted key's object alive (64 bytes for a short key,
        which ``used_memory`` does not see), and listing the keys again costs
        some 13 ns a key, once every sixteenth of them evicted.  Also rebuilt if
        it is shorter than the live keys, which it never is but after a
        :meth:`release` whose :meth:`relist` did not come (a rebuild of the
        dictionary that failed to start)."""
        source = self.source
        listed = len(self.keys)
        if listed > len(source) + (len(source) >> 4) + 1024 or listed < len(source):
            self.keys = list(source)
        return self.keys

    def sample(self, count: int, pick=random.randrange) -> list[bytes]:
        """Up to ``count`` live keys at random (fewer when few are left).  A list
        no longer than ``count`` gives all its live keys: drawing with
        replacement could miss one (Redis's sampling walks buckets and returns
        distinct keys)."""
        keys = self._live_enough()
        source = self.source
        if len(keys) <= count:
            live = [key for key in keys if key in source]
            if len(live) < len(keys):
                keys[:] = live
            return live
        found: list[bytes] = []
        tries = 4 * count + 8
        while len(found) < count and keys and tries:
            tries -= 1
            at = pick(len(keys))
            key = keys[at]
            if key in source:
                found.append(key)
            else:  # gone: drop the entry (swap with the last one)
                last = keys.pop()
                if at < len(keys):
                    keys[at] = last
        return found

    def take(self, pick=random.randrange) -> bytes | None:
        """A live key at random, removed from the list (the random policies evict
        it, so it leaves no dead entry behind); None when none is left."""
        keys = self._live_enough()
        source = self.source
        tries = 12
        while keys and tries:
            tries -= 1
            at = pick(len(keys))
            key = keys[at]
            last = keys.pop()
            if at < len(keys):
                keys[at] = last
            if key in source:
                return key
        return None

    def size_bytes(self) -> int:
        return 8 * len(self.keys) + 56


class EvictionPool:
    """The best eviction candidates seen so far, highest score last (kept across
    samplings, at most :data:`POOL_SIZE`).

    Among equal scores the candidate pooled first is evicted first, as in Redis's
    pool: scores tie often (the LRU clock counts whole seconds, and a run of a few
    seconds gives most keys the same idle time; LFU counters are small integers),
    and a candidate that stayed in the pool while others were sampled has gone
    unaccessed longer than their number suggests.  (Breaking ties by the key's
    bytes instead, as sorting pairs did, is a random choice: a simulation of the
    cache workload at whole-second ties lost 4 to 5 points of LRU hit ratio.)"""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[float, bytes]] = []

    def offer(self, score: float, key: bytes) -> None:
        entries = self.entries
        for at, (_, held) in enumerate(entries):
            if held == key:  # offered again: its new score, as a newcomer
                del entries[at]
                break
        at = 0
        count = len(entries)
        while at < count and entries[at][0] < score:
            at += 1
        if count >= POOL_SIZE:
            if not at:
                return  # no better than the worst pooled candidate
            del entries[0]
            at -= 1
        entries.insert(at, (score, key))

    def best(self) -> bytes | None:
        """Take the best candidate out of the pool."""
        return self.entries.pop()[1] if self.entries else None

    def clear(self) -> None:
        self.entries.clear()


def choose_victim(policy: str, candidates: Candidates, pool: EvictionPool, samples: int, score,
                  eligible=None) -> bytes | None:
    """The key ``policy`` evicts next, or None when there is none to evict.

    ``score(key)`` rates a sampled key (higher = evict sooner) for the LRU, LFU
    and TTL policies; the random policies take any sampled key.  ``eligible(key)``,
    if given, says which keys this node may evict (in a cluster: those it
    coordinates); others are passed over.  The pool may hand back a key removed
    since it was offered: the caller checks and asks again.
    """
    random_policy = policy.endswith("random")
    if random_policy and eligible is None:
        return candidates.take()
    sampled = candidates.sample(samples)
    if eligible is not None:
        sampled = [key for key in sampled if eligible(key)]
    if random_policy:
        return sampled[0] if sampled else None
    for key in sampled:
        pool.offer(score(key), key)
    return pool.best()


#: What :meth:`Evictor.make_room` found: under the limit (or back under it), still
#: over it when the time allowed ran out (the next command evicts more), over it
#: with nothing the policy may evict (writes that add data are refused), or over
#: it with only keys other nodes coordinate left to evict (a replicated cluster:
#: their coordinators evict them, and writes go on meanwhile).
ROOM_OK, ROOM_RUNNING, ROOM_FAIL, ROOM_ELSEWHERE = "ok", "running", "fail", "elsewhere"


class Evictor:
    """Evicts keys of a keyspace as ``maxmemory-policy`` says (see the module doc).

    The keyspace is duck-typed: ``data``, ``expires``, ``access``, ``candidates``,
    ``volatile_candidates`` and ``evict(key)``.  In a replicated cluster the node
    sets :attr:`eligible` (only keys it coordinates) and :attr:`on_evicted`
    (replicate the deletion).  :meth:`configure` applies the
    ``maxmemory-*`` and ``lfu-*`` directives; :meth:`make_room` runs before commands.
    """

    def __init__(self, keyspace) -> None:
        self.keyspace = keyspace
        self.policy = "noeviction"
        self.samples = 5
        self.tenacity = 10
        self.pool = EvictionPool()
        #: ``eligible(key)``: whether this node may evict ``key`` (None: any key).
        self.eligible = None
        #: ``evicted(key)``: called after each eviction (a cluster replicates it).
        self.on_evicted = None
        #: Milliseconds spent over the limit in total, and since the current stretch began
        #: (INFO's total_eviction_exceeded_time / current_eviction_exceeded_time).
        self.exceeded_ms_total = 0.0
        self._exceeded_since: float | None = None

    def configure(self, policy: str, samples: int, tenacity: int, log_factor: int, decay_time: int) -> None:
        access = self.keyspace.access
        access.log_factor = log_factor
        access.decay_time = decay_time
        self.samples = samples
        self.tenacity = tenacity
        access.cells_per_key = 2 if policy.endswith(("lru", "lfu")) else 1
        access.grow(len(self.keyspace.data))
        if policy != self.policy:
            self.policy = policy
            self.pool.clear()
            lfu = policy.endswith("lfu")
            if lfu != access.lfu:
                access.reset(lfu)

    def _score(self, key: bytes) -> float:
        """Higher = evicted sooner: idle seconds, 255 - frequency, or the earliness of the deadline."""
        policy = self.policy
        access = self.keyspace.access
        if policy.endswith("lru"):
            # A key whose cell another key stamped since was used before that key.
            idle = access.idle(key)
            return idle if access.owns_stamp(key) else idle + 1
        if policy.endswith("lfu"):
            return 255 - access.frequency(key)
        return -self.keyspace.expires.get(key, 0)  # volatile-ttl

    def _candidates(self, volatile: bool) -> Candidates:
        ks = self.keyspace
        if volatile:
            if ks.volatile_candidates is None:
                ks.volatile_candidates = Candidates(ks.expires)
            return ks.volatile_candidates
        if ks.candidates is None:
            ks.candidates = Candidates(ks.data)
        return ks.candidates

    def victim(self) -> bytes | None:
        """The next key the policy evicts, or None when it may evict none."""
        policy = self.policy
        if policy == "noeviction":
            return None
        ks = self.keyspace
        volatile = policy.startswith("volatile")
        source = ks.expires if volatile else ks.data
        candidates = self._candidates(volatile)
        for _ in range(POOL_SIZE + 1):  # the pool may hold keys removed since
            key = choose_victim(policy, candidates, self.pool, self.samples, self._score, self.eligible)
            if key is not None and key in source:
                return key
        return None

    def make_room(self, used, limit: int, now_ms: int, clock=perf_counter) -> str:
        """Evict until ``used()`` is at most ``limit`` bytes, for at most the time
        ``maxmemory-eviction-tenacity`` allows (checked every 16 keys).

        Where only some keys are :attr:`eligible` (a replicated cluster), this node
        frees only its share of the excess, the share of eligible keys among those
        it holds (estimated by sampling): the other coordinators free theirs, and
        each deletion frees memory on every replica of the key.  Freeing the whole
        excess here would evict several times too much."""
        over = used() - limit
        if over <= 0:
            if self._exceeded_since is not None:
                self.exceeded_ms_total += (now_ms - self._exceeded_since)
                self._exceeded_since = None
            return ROOM_OK
        if self._exceeded_since is None:
            self._exceeded_since = now_ms
        if self.policy == "noeviction":
            return ROOM_FAIL
        self.keyspace.access.tick(now_ms)
        target = limit
        if self.eligible is not None:
            share = self._eligible_share()
            if not share:
                return ROOM_ELSEWHERE if self._holds_keys() else ROOM_FAIL
            target = limit + over - int(over * share)
        budget = time_limit_us(self.tenacity) / 1e6
        started = clock()
        evicted = 0
        while used() > target:
            key = self.victim()
            if key is None:
                return ROOM_ELSEWHERE if self.eligible is not None and self._holds_keys() else ROOM_FAIL
            self.keyspace.evict(key)
            if self.on_evicted is not None:
                self.on_evicted(key)
            evicted += 1
            if not evicted & 15 and clock() - started > budget:
                return ROOM_RUNNING
        return ROOM_OK if target == limit else ROOM_ELSEWHERE

    def _eligible_share(self) -> float:
        """The fraction of the keys held here that this node may evict (sampled)."""
        sample = self._candidates(self.policy.startswith("volatile")).sample(SHARE_SAMPLES)
        if not sample:
            return 0.0
        return sum(1 for key in sample if self.eligible(key)) / len(sample)

    def _holds_keys(self) -> bool:
        """Whether keys the policy could evict are held here (coordinated elsewhere)."""
        ks = self.keyspace
        return bool(ks.expires if self.policy.startswith("volatile") else ks.data)

    def exceeded_ms(self, now_ms: int) -> tuple[float, float]:
        """(total, current) milliseconds spent above the limit."""
        current = now_ms - self._exceeded_since if self._exceeded_since is not None else 0
        return self.exceeded_ms_total + current, current
