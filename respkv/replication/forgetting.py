"""What a coordinator forgets, and when: acknowledged tombstones and expired keys.

A deletion is a tombstone version, so that a replica that missed it cannot bring
the old value back by read repair or hand-off.  Once *every* preferred replica has
acknowledged a tombstone, it is kept ``tombstone-grace`` milliseconds more, then
purged here and (``PURGE``) on the replicas — only if it is still exactly that
tombstone, so a write after the delete is never dropped.  A key that expires
keeps its version record for the same grace, so a replica that has not expired it
yet cannot hand the old value back meanwhile; then the record is forgotten.
"""

from __future__ import annotations

from collections import deque

from ..keyspace.slots import key_slot
from .replica import PURGE


class Forgetting:
    """The due dates of one node's tombstone purges and expired records."""

    def __init__(self, node, state, bus, store) -> None:
        self.node = node
        self.state = state
        self.bus = bus
        self.store = store
        #: (due Unix ms, key, tombstone clock) for tombstones every replica holds.
        self._purges: list[tuple[int, bytes, bytes]] = []
        #: (due Unix ms, key, clock) for records of keys that expired, oldest first.
        self._expired: deque[tuple[int, bytes, bytes]] = deque()

    def schedule_purges(self, due_ms: int, tombstones) -> None:
        """Purge ``(key, clock)`` tombstones, which every replica has, at ``due_ms``."""
        self._purges.extend((due_ms, key, clock) for key, clock in tombstones)

    def purge_due(self, now_ms: int) -> None:
        """Drop tombstones whose grace period is over, here and on their replicas."""
        if not self._purges:
            return
        due = [entry for entry in self._purges if entry[0] <= now_ms]
        if not due:
            return
        self._purges = [entry for entry in self._purges if entry[0] > now_ms]
        topology = self.state.topology
        myself = self.state.myself
        for _, key, clock in due:
            if not self.store.purge(key, clock):
                continue
            for peer in topology.nodes_for(key_slot(key)):
                link = self.bus.links.get(peer)
                if peer != myself and link is not None:
                    link.notify(PURGE, [key, clock])

    def expired(self, key: bytes) -> None:
        """The keyspace expired ``key``: forget its record after ``tombstone-grace``."""
        now = self.node.keyspace.clock_ms()
        clock = self.store.expired_clock(key, now)
        if clock is not None:
            self._expired.append((now + self.node.config["tombstone-grace"], key, clock))

    def forget_expired_due(self, now_ms: int) -> None:
        """Drop the records of keys that expired more than the grace period ago."""
        expired = self._expired
        while expired and expired[0][0] <= now_ms:
            _, key, clock = expired.popleft()
            self.store.forget_expired(key, clock, now_ms)
