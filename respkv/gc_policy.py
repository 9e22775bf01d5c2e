"""How often a serving node runs CPython's cyclic garbage collector.

CPython collects its youngest generation after every 700 container objects
allocated (net of those freed), the next generation every 10 of those, and the
oldest every 10 of those (and only once the objects waiting for it are a quarter of
those already there).  A node under load keeps thousands of such objects alive at
any moment for a short while (parsed requests, replies, pending replicated writes
waiting for a replica's acknowledgement), so at the default it ran a young
collection every few hundred requests, promoted the survivors, and every so often
walked the whole old generation: every big collection value (a set of a million
members is traversed member by member) and every other long-lived container.
Measured with ``tools/clusterbench`` (3 nodes, replication factor 3, SADD, pipeline
16), that was about a tenth of the nodes' CPU.

Reference counting frees everything that is not part of a cycle at once; the
collector only finds cycles, which a node makes few of.  So a serving node collects
its youngest generation every :data:`YOUNG_THRESHOLD` allocations instead: the
objects of a round have been freed by then, few survive to be promoted, and the
older generations are collected as rarely as their survivors warrant.  Cyclic
garbage lives a little longer; nothing else changes.

(The version records of replication are kept in a form the collector never tracks
at all, see :mod:`respkv.replication.versions`; that is where most of the cost
was.)
"""

from __future__ import annotations

import gc

#: Net container allocations between two young collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Collect the youngest generation every :data:`YOUNG_THRESHOLD` allocations,
    keeping the older generations' own thresholds (see the module doc)."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
