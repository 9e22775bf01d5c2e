"""Hinted hand-off: keys a replica may lack, shipped to it once it is back.

A write that a preferred replica did not acknowledge (it was down, cut off, or
its link was too far behind) leaves a **hint**: the key is remembered for that
replica.  Every hand-off pass ships the *current* record of each hinted key to
each hinted replica that is reachable and live again — in batches, merged there by
clock like any record — so the replica catches up without a read of the key.  A
key whose slot the replica no longer serves is dropped from its hints.  Hints
live in memory (a coordinator that restarts loses them; anti-entropy repairs
what they would have).
"""

from __future__ import annotations

from collections.abc import Callable

from ..keyspace.slots import key_slot

#: Hinted keys shipped to a peer per hand-off request.
HANDOFF_BATCH = 512
#: Requests a hand-off pass may send one peer while its link keeps up (a replica
#: back after a few seconds away catches up within a pass or two).
HANDOFF_BATCHES_PER_PASS = 8
#: Bytes a peer link may hold unsent before writes for that peer become hints.
MAX_BACKLOG = 64 * 1024 * 1024


class HintedHandoff:
    """The hints one coordinator holds, by replica, and their delivery."""

    def __init__(self, state, bus, send_records: Callable[[str, list[bytes]], int]) -> None:
        self.state = state
        self.bus = bus
        self._send_records = send_records
        #: peer id → keys whose latest record it may lack.
        self.hints: dict[str, set[bytes]] = {}
        self.delivered = 0

    def hint(self, peer: str, keys: list[bytes]) -> None:
        hinted = self.hints.get(peer)
        if hinted is None:
            hinted = self.hints[peer] = set()
        hinted.update(keys)

    def pending(self) -> int:
        """Hinted keys not delivered yet, over every replica."""
        return sum(len(keys) for keys in self.hints.values())

    def hand_off(self) -> None:
        """Ship hinted keys to every hinted peer that is reachable and live again."""
        topology = self.state.topology
        for peer, keys in list(self.hints.items()):
            link = self.bus.links.get(peer)
            if not keys:
                del self.hints[peer]
                continue
            if link is None or not link.connected or not topology.is_live(peer) or link.backlog > MAX_BACKLOG:
                continue
            for _ in range(HANDOFF_BATCHES_PER_PASS):
                if not keys or link.backlog > MAX_BACKLOG:
                    break
                batch = []
                while keys and len(batch) < HANDOFF_BATCH:
                    key = keys.pop()
                    if peer in topology.nodes_for(key_slot(key)):
                        batch.append(key)
                self.delivered += self._send_records(peer, batch)
