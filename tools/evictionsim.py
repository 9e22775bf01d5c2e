"""How much hit ratio the access table's approximation costs, without a server.

Usage (from the repository root)::

    python -m tools.evictionsim                       # allkeys-lfu, 157,000 and 120,500 keys
    python -m tools.evictionsim --capacity 100000 --policy allkeys-lru

The cache benchmark (``tools.cachebench``) compares respkv with redis-server, and
its hit ratios mix two causes: how many keys fit in ``maxmemory`` (a Python key
costs more bytes) and how well the eviction policy chooses.  This tool separates
the second: it replays the benchmark's workload (the same Zipf key sequence, GET
then SET on a miss) against a keyspace that may hold a fixed number of keys, in
two models side by side:

* ``respkv``: the real :class:`~respkv.keyspace.store.Keyspace` and
  :class:`~respkv.keyspace.eviction.Evictor` (access table, candidates, pool),
  evicting whenever the keys exceed the capacity;
* ``exact``: one exact access record per key (the LFU counter or the LRU clock in
  the value, as Redis keeps it), sampled into a 16-entry pool as Redis's
  ``evictionPoolPopulate`` does.

The clock advances ``--us-per-request`` (10 µs, about respkv's pace in the
benchmark) per request, so LRU idle times differ by whole seconds and LFU
counters decay once a minute of that time passed.  The difference of the
two hit ratios is what the approximation costs at that capacity.  Both models use
the same random generator seeds; the figures move by a few hundredths of a point
between seeds.
"""

from __future__ import annotations

import argparse
import random
import sys

from respkv.keyspace.eviction import (LFU_INIT_VAL, POOL_SIZE, Evictor, idle_seconds, lfu_decayed,
                                      lfu_increment, lfu_minutes, lru_clock)
from respkv.keyspace.store import Keyspace
from tools.cachebench import KEY_FORMAT, ZipfKeys, universe_size

DEFAULT_CAPACITIES = "157000,120500"  # keys redis-server and respkv hold in the benchmark's 32 MiB


class ExactModel:
    """A key's access record kept exactly, beside its value, as Redis does."""

    def __init__(self, policy: str, capacity: int, samples: int, seed: int) -> None:
        self.lfu = policy.endswith("lfu")
        self.capacity = capacity
        self.samples = samples
        self.records: dict[bytes, int] = {}
        self.keys: list[bytes] = []  # for sampling; every key is live (removed at eviction)
        self.where: dict[bytes, int] = {}
        self.pool: list[tuple[int, bytes]] = []  # worst first, as Redis's array
        self.rng = random.Random(seed)
        self.now_ms = 0

    def _stamp(self, counter: int) -> int:
        return (lfu_minutes(self.now_ms) << 8) | counter if self.lfu else lru_clock(self.now_ms)

    def _score(self, record: int) -> int:
        if self.lfu:
            return 255 - lfu_decayed(record, lfu_minutes(self.now_ms), 1)
        return idle_seconds(lru_clock(self.now_ms), record)

    def get(self, key: bytes) -> bool:
        record = self.records.get(key)
        if record is None:
            return False
        if self.lfu:
            counter = lfu_decayed(record, lfu_minutes(self.now_ms), 1)
            record = self._stamp(lfu_increment(counter, 10, self.rng.random()))
        else:
            record = self._stamp(0)
        self.records[key] = record
        return True

    def set(self, key: bytes) -> None:
        self.records[key] = self._stamp(LFU_INIT_VAL)
        self.where[key] = len(self.keys)
        self.keys.append(key)
        while len(self.records) > self.capacity:
            self._evict(self._victim())

    def _victim(self) -> bytes:
        pool, keys = self.pool, self.keys
        while True:
            for _ in range(self.samples):
                key = keys[self.rng.randrange(len(keys))]
                score = self._score(self.records[key])
                at = 0
                while at < len(pool) and pool[at][0] < score:
                    at += 1
                if at == 0 and len(pool) >= POOL_SIZE:
                    continue  # worse than every pooled candidate
                if len(pool) >= POOL_SIZE:
                    pool.pop(0)
                    at -= 1
                pool.insert(at, (score, key))
            while pool:
                _, key = pool.pop()
                if key in self.records:
                    return key

    def _evict(self, key: bytes) -> None:
        del self.records[key]
        at = self.where.pop(key)
        last = self.keys.pop()
        if at < len(self.keys):
            self.keys[at] = last
            self.where[last] = at


class RespkvModel:
    """The node's own keyspace and evictor, limited to a number of keys."""

    def __init__(self, policy: str, capacity: int, samples: int) -> None:
        self.now_ms = 0
        self.keyspace = Keyspace(clock_ms=lambda: self.now_ms)
        self.evictor = Evictor(self.keyspace)
        self.evictor.configure(policy, samples, 100, 10, 1)
        self.capacity = capacity

    def get(self, key: bytes) -> bool:
        self.keyspace.access.tick(self.now_ms)
        return self.keyspace.get(key) is not None

    def set(self, key: bytes, value: bytes = b"v") -> None:
        keyspace = self.keyspace
        keyspace.set(key, value)
        if len(keyspace.data) > self.capacity:
            self.evictor.make_room(lambda: len(keyspace.data), self.capacity, self.now_ms)


def replay(model, ids, measured_from: int, us_per_request: int) -> float:
    """Hit ratio, in per cent, of the requests from ``measured_from`` on."""
    hits = 0
    for position, key_id in enumerate(ids):
        model.now_ms = position * us_per_request // 1000
        key = KEY_FORMAT % key_id
        if model.get(key):
            hits += position >= measured_from
        else:
            model.set(key)
    return 100.0 * hits / max(1, len(ids) - measured_from)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.evictionsim", description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default="allkeys-lfu", choices=("allkeys-lfu", "allkeys-lru"))
    p.add_argument("--capacity", default=DEFAULT_CAPACITIES, help="comma-separated numbers of keys held")
    p.add_argument("--maxmemory", type=int, default=32 << 20, help="sizes the key universe as cachebench does")
    p.add_argument("--requests", type=int, default=1_000_000, help="measured GETs (default 1,000,000)")
    p.add_argument("--warmup", type=int, default=2_000_000, help="uncounted GETs before them")
    p.add_argument("--samples", type=int, default=5, help="maxmemory-samples (default 5)")
    p.add_argument("--us-per-request", type=int, default=10, help="simulated time per request (default 10 us)")
    p.add_argument("--seed", type=int, default=1, help="seeds the key sequence (default 1), as cachebench's")
    ns = p.parse_args(argv)
    universe = universe_size(ns.maxmemory, 100, 10.0)
    print(f"{universe:,} keys, Zipf s=1.0, {ns.warmup:,} warm-up + {ns.requests:,} measured GETs, "
          f"{ns.policy}, maxmemory-samples {ns.samples}", flush=True)
    ids = ZipfKeys(universe, 1.0, ns.seed).keys(random.Random(f"sim:{ns.seed}"), ns.warmup + ns.requests)
    print(f"{'capacity':>9}  {'exact hit%':>10}  {'respkv hit%':>11}  {'diff pp':>7}")
    for capacity in (int(c) for c in ns.capacity.split(",")):
        random.seed(ns.seed)  # the evictor's sampling
        mine = replay(RespkvModel(ns.policy, capacity, ns.samples), ids, ns.warmup, ns.us_per_request)
        exact = replay(ExactModel(ns.policy, capacity, ns.samples, ns.seed), ids, ns.warmup,
                       ns.us_per_request)
        print(f"{capacity:>9,}  {exact:>10.2f}  {mine:>11.2f}  {mine - exact:>+7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
