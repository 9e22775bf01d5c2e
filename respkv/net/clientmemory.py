"""What client connections hold in memory, and client eviction (``maxmemory-clients``).

Theory of operation
-------------------
A connection holds memory in three places respkv counts: a command still
arriving (its reader's unparsed input and the arguments it already parsed), the
arguments of the commands it queued since MULTI, and the pub/sub messages waiting
for it to read them (:mod:`.pubsub`).  Replies are written before the next
request is read, so there is no other output buffer.  :meth:`ClientMemory.usage`
adds these up for one connection (``CLIENT LIST``'s ``tot-mem``).  At every
housekeeping tick (``hz`` a second) the figures of all connections are added up
into :attr:`ClientMemory.held`, which ``used_memory`` counts, as Redis counts its
clients' buffers: a client sending a large command makes room by key eviction too
(INFO's ``mem_clients_normal``).  While the clients hold much (:data:`RECOUNT_ABOVE`),
``used_memory`` adds them up again when it is read, at most once a millisecond: a
large command counted while it arrived is in the keyspace once run, and must not
count twice until the next tick.

``maxmemory-clients`` bounds the sum over all connections, as in Redis 7.0: a
size, or a percentage of ``maxmemory`` (0, or a percentage while ``maxmemory`` is
0, sets no bound; a bound below 128 KiB is raised to it, as Redis does, so that a
bad setting cannot cut every connection off).  At every tick, while the sum is
above the bound, the connection holding the most is closed, then the next one,
until the sum is within it.  Never closed: connections that turned ``CLIENT
NO-EVICT`` on, and connections holding nothing (closing one would free nothing;
Redis, where every connection has buffers of its own, closes those too).
Each closing is logged and counted in INFO's ``evicted_clients``.  Where Redis
also checks before every command, a connection here can pass the bound for up to
one tick; ``client-query-buffer-limit`` still bounds each connection's input.
"""

from __future__ import annotations

import logging
import time

from ..commands.client import memory_parts

log = logging.getLogger(__name__)

#: Redis's floor for a non-zero ``maxmemory-clients``.
SMALLEST_LIMIT = 128 * 1024
#: While the clients held at least this at the last count, ``used_memory`` counts
#: them again when read (at most every :data:`RECOUNT_EVERY` seconds).
RECOUNT_ABOVE = 64 * 1024
RECOUNT_EVERY = 0.001


class ClientMemory:
    """Per-connection memory figures and the ``maxmemory-clients`` bound of a node."""

    def __init__(self, node) -> None:
        self.node = node
        #: What all connections held at the last tick: ``used_memory``'s part for
        #: the clients (refreshed once a tick, not summed for every command).
        self.held = 0
        self._counted_at = 0.0
        node.cron_hooks.append(self.tick)
        node.client_closed_hooks.append(self.closed)

    @staticmethod
    def usage(session) -> int:
        """Bytes ``session`` holds: a command still arriving, queued MULTI
        arguments and pub/sub messages waiting for it."""
        return sum(memory_parts(session))

    def current(self) -> int:
        """:attr:`held` for ``used_memory``: counted again first while it is large
        and was counted more than :data:`RECOUNT_EVERY` ago (see the module doc)."""
        if self.held >= RECOUNT_ABOVE:
            now = time.monotonic()
            if now - self._counted_at >= RECOUNT_EVERY:
                self.held = sum(map(self.usage, self.node.clients.values()))
                self._counted_at = now
        return self.held

    def closed(self, session) -> None:
        """A connection ended: what it held leaves :attr:`held` now."""
        self.held = max(0, self.held - self.usage(session))

    def limit(self) -> int:
        """The bound in bytes now, 0 for none (a percentage is of ``maxmemory``)."""
        setting = self.node.config["maxmemory-clients"]
        limit = setting if setting >= 0 else self.node.config["maxmemory"] * -setting // 100
        return max(limit, SMALLEST_LIMIT) if limit else 0

    def tick(self) -> int:
        """Once per housekeeping tick: add up what the connections hold (into
        :attr:`held`), and while that is above the bound close the connections
        holding the most (see the module doc).  Returns how many were closed."""
        held = [(self.usage(session), session) for session in self.node.clients.values()]
        total = sum(usage for usage, _ in held)
        limit = self.limit()
        closed = 0
        if limit and total > limit:
            held.sort(key=lambda pair: pair[0], reverse=True)
            for usage, session in held:
                if total <= limit or not usage:
                    break
                if session.no_evict or session.closing:
                    continue
                log.warning("closing client %s: it holds %d bytes and all clients %d, over "
                            "maxmemory-clients (%d bytes)", session.addr, usage, total, limit)
                session.kill()  # its share leaves the total here, not again in closed()
                total -= usage
                closed += 1
            self.node.stats.evicted_clients += closed
        self.held = total
        self._counted_at = time.monotonic()
        return closed
