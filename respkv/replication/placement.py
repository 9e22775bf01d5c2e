"""Where a coordinator sends a slot's requests, and which quorums apply.

Both follow the topology snapshot (and the former holders' announcements of
:class:`~.ownership.SlotHolders`) and are cached until either changes: every
replicated request asks, and the answers change only with membership.
"""

from __future__ import annotations

from . import quorum
from .ownership import SlotHolders
from .quorum import Quorums


class Placements:
    """The placements and quorums of one coordinating node (see the module doc)."""

    def __init__(self, config, state, holders: SlotHolders, myself: str) -> None:
        self._config = config
        self._state = state
        self._holders = holders
        self._myself = myself
        self._cached_for = None
        self._holders_version = 0
        #: Per topology snapshot: Quorums by (R, W) wanted, placement by slot.
        self._quorums: dict[tuple[int, int], Quorums] = {}
        self._placements: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}

    def quorums(self, session) -> Quorums:
        """N/R/W for ``session``'s requests (its CONSISTENCY override, else the config)."""
        wanted = quorum.requested(self._config, session.consistency if session is not None else None)
        self._check_topology()
        q = self._quorums.get(wanted)
        if q is None:
            topology = self._state.topology
            q = self._quorums[wanted] = quorum.effective(topology.rf, len(topology.ring), wanted[0], wanted[1])
        return q

    def _check_topology(self) -> None:
        """Drop what was cached for an older topology snapshot (or holders' announcements)."""
        if self._state.topology is not self._cached_for or self._holders.version != self._holders_version:
            self._cached_for = self._state.topology
            self._holders_version = self._holders.version
            self._quorums = {}
            self._placements = {}

    def placement(self, slot: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """``(live peers, failed preferred nodes, live former holders)`` of ``slot``."""
        self._check_topology()
        entry = self._placements.get(slot)
        if entry is None:
            topology = self._state.topology
            myself = self._myself
            live = topology.nodes_for(slot)
            # Sorted: slots replicated to the same nodes share one placement.
            peers = tuple(sorted(node_id for node_id in live if node_id != myself))
            down = tuple(node_id for node_id in topology.ring.preference_lists(topology.rf)[slot]
                         if node_id not in live and node_id != myself)
            extra = tuple(node_id for node_id in self._holders.of(slot)
                          if node_id != myself and node_id not in peers and topology.is_live(node_id))
            entry = self._placements[slot] = (peers, down, extra)
        return entry
