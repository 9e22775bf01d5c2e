"""The holder of one node's view of the cluster.

Theory of operation
-------------------
Everything a node knows about the cluster is held here, and only here, as
immutable values that are replaced, never edited: the
:class:`~respkv.cluster.membership.Membership` gossip converges on, the
:class:`~respkv.cluster.ring.Ring` built from it, and the
:class:`~respkv.cluster.topology.Topology` snapshot that adds the failure
detector's verdicts and renders what clients see.  Gossip (``cluster.gossip``)
feeds it membership and liveness; the request path only reads ``topology`` and
``served``.

``served`` is the request path's cheap question: a bytearray with one entry per
slot, 1 where this node is the slot's coordinator (the first live node of its
preference list).  Sessions check it before running a keyed command and answer
``MOVED`` (or forward, with proxy routing) when it is 0.

A node restarted on its data directory passes the membership it saved there as
``known``, so its first ring is the cluster's rather than one where it owns
every slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..keyspace.slots import SLOT_COUNT
from .failure import NodeState
from .membership import Member, Membership
from .ring import DEFAULT_VNODES
from .topology import Topology

REDIRECT = "redirect"
PROXY = "proxy"


class ClusterState:
    """This node's current membership, ring and topology (see module doc)."""

    def __init__(
        self,
        myself: Member,
        *,
        rf: int = 1,
        vnodes: int = DEFAULT_VNODES,
        routing: str = REDIRECT,
        known: Membership | None = None,
    ) -> None:
        self.myself = myself.node_id
        self.rf = rf
        self.vnodes = vnodes
        self.routing = routing
        if known is None:
            self.membership = Membership([myself])
        else:
            # A restart: start from the members known before (see cluster.persisted),
            # with this node's own record re-asserted at its current address.
            self.membership = known.with_member(
                myself.node_id, myself.host, myself.port, myself.bus_port, myself.weight
            )
        self.states: Mapping[str, NodeState] = {}
        #: Gossip counters by message type, for CLUSTER INFO.
        self.messages_sent: dict[str, int] = {}
        self.messages_received: dict[str, int] = {}
        #: Unix ms per member, for CLUSTER NODES: when the ping now awaiting its
        #: pong was sent (absent once answered), and when the last pong came.
        self.ping_sent: dict[str, int] = {}
        self.pong_received: dict[str, int] = {}
        #: Called with the new topology after every change (bus addresses, logs).
        self.on_change: list[Callable[[Topology], None]] = []
        self.topology: Topology
        self.served = bytearray(SLOT_COUNT)
        #: True once keyed requests go through the replication coordinator.
        self.replicated = False
        self._rebuild()

    # -- changes ----------------------------------------------------------------

    def merge(self, other: Membership) -> bool:
        """Merge gossiped membership; True if the view changed."""
        merged = self.membership.merge(other)
        if merged is self.membership:
            return False
        self.membership = merged
        self._rebuild()
        return True

    def set_myself(self, host: str, port: int, bus_port: int, weight: int) -> bool:
        """(Re)assert this node's own record, e.g. after a restart; True if changed."""
        updated = self.membership.with_member(self.myself, host, port, bus_port, weight)
        if updated is self.membership:
            return False
        self.membership = updated
        self._rebuild()
        return True

    def reset_membership(self, host: str, port: int, bus_port: int, weight: int) -> None:
        """Know only this node (``CLUSTER RESET``), its record newer than any seen."""
        own = self.membership.get(self.myself)
        epoch = own.epoch + 1 if own is not None else 1
        self.membership = Membership([Member(self.myself, host, port, bus_port, weight, epoch)])
        self.states = {}
        self._rebuild()

    def set_states(self, states: Mapping[str, NodeState]) -> bool:
        """Install the failure detector's verdicts; True if any changed."""
        if dict(states) == dict(self.states):
            return False
        self.states = dict(states)
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        membership = self.membership
        rf = max(1, min(self.rf, len(membership.ring(self.vnodes))))
        topology = Topology(self.myself, membership, membership.ring(self.vnodes), rf, self.states)
        topology.prepare()
        served = bytearray(SLOT_COUNT)
        for start, end in topology.coordinated_ranges(self.myself):
            served[start : end + 1] = b"\x01" * (end - start + 1)
        self.topology = topology
        self.served = served
        for callback in self.on_change:
            callback(topology)

    # -- questions ----------------------------------------------------------------

    def address_of(self, node_id: str) -> tuple[str, int]:
        """Client address (host, port) of a member."""
        return self.topology.address(node_id)

    def count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1
