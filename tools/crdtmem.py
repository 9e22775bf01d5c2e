"""Memory per key of convergent types' metadata: a 100-member set, before and after.

Usage (from the repository root)::

    python -m tools.crdtmem                 # 2000 sets of 100 members
    python -m tools.crdtmem --keys 500 --members 1000

A replica's version store is built in this process, as a coordinator builds it:
each set gets its members by ``--members`` single-member ``SADD`` writes (every
write a new version, as through a cluster), and the store is measured with
``tracemalloc`` (everything the keyspace and the store allocated, divided by the
number of keys) in three states:

* ``convergent-types no``: no metadata (the reference);
* ``convergent-types yes``, just written: one dot per member;
* the same after one more write ``SETTLE_MS`` later, which settles the dots into
  the version's base clock (what every key left alone for a minute becomes on its
  next write).

It prints bytes per key for each state and the ratios to the reference.  Pure
in-process measurement: no servers, no sockets.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc

from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Set
from respkv.replication.convergent import SETTLE_MS
from respkv.replication.store import VersionStore

ACTOR = bytes(range(1, 21))
START_MS = 1_700_000_000_000


def build(keys: int, members: int, convergent: bool, settle: bool) -> tuple[int, int]:
    """Bytes allocated for ``keys`` sets of ``members`` members written one SADD at
    a time (then, with ``settle``, one more SADD after SETTLE_MS), and the metadata
    entries left (members with listed dots)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    now = [START_MS]
    keyspace = Keyspace(clock_ms=lambda: now[0])
    store = VersionStore(keyspace, ACTOR)
    store.convergent = convergent
    for k in range(keys):
        key = b"set:%d" % k
        for m in range(members):
            member = b"member:%d" % m
            value = keyspace.get(key)
            if value is None:
                value = Set()
                keyspace.set(key, value)
            value.add_member(member)
            now[0] += 1
            command = [b"SADD", key, member]
            store.written(key, now[0], operation=command, commands=[command])
    if settle:
        now[0] += SETTLE_MS
        for k in range(keys):
            key = b"set:%d" % k
            keyspace.get(key).add_member(b"late")
            command = [b"SADD", key, b"late"]
            store.written(key, now[0], operation=command, commands=[command])
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    listed = sum(len(meta.dots) for meta in store.meta.values())
    tracemalloc.stop()
    del store, keyspace
    return used, listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.crdtmem", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=2000, help="sets (default %(default)s)")
    parser.add_argument("--members", type=int, default=100, help="members per set (default %(default)s)")
    args = parser.parse_args(argv)
    if args.keys < 1 or args.members < 1:
        parser.error("--keys and --members must be positive")
    states = [("convergent-types no", False, False), ("convergent-types yes, just written", True, False),
              ("convergent-types yes, settled", True, True)]
    results = []
    for name, convergent, settle in states:
        used, listed = build(args.keys, args.members, convergent, settle)
        results.append((name, used / args.keys, listed / args.keys))
    reference = results[0][1]
    print(f"crdtmem: {args.keys} sets of {args.members} members, one SADD per member")
    for name, per_key, listed in results:
        print(f"  {name:38s} {per_key:10.0f} bytes/key  x{per_key / reference:.2f}  "
              f"listed dots/key {listed:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
