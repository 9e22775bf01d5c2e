"""Cluster topology as stock Redis Cluster clients expect to read it.

Theory of operation
-------------------
A :class:`Topology` is an immutable snapshot of what this node knows (its own id,
the :class:`~respkv.cluster.membership.Membership`, the ring built from it, the
replication factor, and the failure detector's verdict on every member) and renders
the replies of ``CLUSTER SLOTS``, ``CLUSTER NODES``, ``CLUSTER SHARDS`` and
``CLUSTER INFO`` and the ``MOVED``/``ASK`` redirections from it.  The holder builds a
new snapshot whenever membership, ring or failure states change; renderings are
computed on first use and cached per snapshot (encoded bytes per protocol version),
so ``CLUSTER SLOTS`` over thousands of ranges costs a dictionary lookup after the
first call.

Mapping Dynamo onto Redis Cluster's vocabulary:

* A node is **live** unless the failure detector says ``fail``.  A ``fail?``
  (pfail) node is one node's suspicion only, so, as in Redis where only FAIL
  triggers failover, it keeps its slots; this keeps every node publishing the same
  slot map, which ``redis-cli --cluster check`` insists on.
* The **master** of a slot is the first live node of its preference list (its
  coordinator); the other live nodes of the list are its **replicas**.  A slot
  whose whole preference list has failed has no master: it is left out of
  ``CLUSTER SLOTS`` and counts as failed in ``CLUSTER INFO``.
* ``CLUSTER SLOTS`` lists one entry per run of consecutive slots with the same live
  preference list, in slot order, so clients can read from replicas.
* ``CLUSTER NODES`` shows every node as a ``master`` with master id ``-`` and the
  slots it coordinates.  Each node is primary for some slots and replica for others,
  which Redis's one-role-per-node format cannot say.  ``redis-benchmark --cluster``
  ignores lines flagged ``slave`` or carrying a master id and takes each master's
  slots from its line; ``redis-cli --cluster`` would count such a node as a replica
  of one single master.  So replica relations are shown only in ``CLUSTER SLOTS``
  and ``CLUSTER SHARDS``.  Every node renders the same slot ranges for the same
  membership and failure states, as ``redis-cli --cluster check`` requires of the
  lines it compares across nodes.
* ``CLUSTER SHARDS`` groups the ranges by their live preference list: a shard is
  the set of slots with one master and one set of replicas, which is what a Redis
  shard is.  Members in no such group (failed nodes, or nodes that serve no slot)
  appear as a master of an empty shard, as Redis lists slotless masters.

Formats were checked against Redis 7.0: ``CLUSTER NODES`` lines end in ``\\n``
(including the last), ``CLUSTER INFO`` lines in ``\\r\\n``; both are verbatim
strings in RESP3 and bulk strings in RESP2.  The fourth element of a ``CLUSTER
SLOTS`` node entry is an empty map (``*0`` in RESP2, ``%0`` in RESP3).

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from ..keyspace.slots import SLOT_COUNT
from ..protocol import reply
from ..protocol.reply import RESP2, RESP3, Resp2
from .failure import NodeState
from .membership import Member, Membership
from .ring import Ring, ranges

#: Redis 7.0's cluster bus message types, in the order ``CLUSTER INFO`` prints them.
MESSAGE_TYPES = (
    "ping",
    "pong",
    "meet",
    "fail",
    "publish",
    "auth-req",
    "auth-ack",
    "update",
    "mfstart",
    "module",
    "publishshard",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def moved(slot: int, host: str, port: int) -> bytes:
    """The ``-MOVED <slot> <ip>:<port>`` error reply (exactly two tokens after the code)."""
    return b"-MOVED %d %s:%d\r\n" % (slot, host.encode(), port)


def ask(slot: int, host: str, port: int) -> bytes:
    """The ``-ASK <slot> <ip>:<port>`` error reply."""
    return b"-ASK %d %s:%d\r\n" % (slot, host.encode(), port)


def slot_range_text(start: int, end: int) -> str:
    """A slot range as ``CLUSTER NODES`` writes it: ``5`` or ``0-5460``."""
    return str(start) if start == end else f"{start}-{end}"


class Topology:
    """An immutable snapshot of the cluster as this node sees it, and its renderings.

    ``states`` maps member ids to the failure detector's verdict; members missing
    from it are OK, and ``myself`` is always OK.  ``ring`` must only hold active
    members of ``membership``; normally it is ``membership.ring(vnodes)``, but only
    its ``members``, ``preference_lists(rf)`` and ``fallbacks`` are used, so a hand-made table of
    preference lists can stand in for it to lay slots out exactly.
    ``current_epoch`` (``cluster_current_epoch``) defaults to the membership's
    version; each member's own epoch is its config epoch in ``CLUSTER NODES``.
    """

    __slots__ = (
        "myself",
        "membership",
        "ring",
        "rf",
        "current_epoch",
        "_states",
        "_members",
        "_live",
        "_per_slot",
        "_slot_ranges",
        "_coordinated",
        "_counts",
        "ok",
        "_cache",
    )

    def __init__(
        self,
        myself: str,
        membership: Membership,
        ring: Ring,
        rf: int,
        states: Mapping[str, NodeState] | None = None,
        current_epoch: int | None = None,
    ):
        if not membership.is_active(myself):
            raise ValueError(f"{myself} is not an active member")
        if not isinstance(rf, int) or rf < 1:
            raise ValueError(f"replication factor must be a positive integer, not {rf!r}")
        for node_id in ring.members:
            if not membership.is_active(node_id):
                raise ValueError(f"ring member {node_id} is not an active member")
        self.myself = myself
        self.membership = membership
        self.ring = ring
        self.rf = rf
        self.current_epoch = membership.config_epoch if current_epoch is None else current_epoch
        members = {member.node_id: member for member in membership.active()}
        self._members: dict[str, Member] = members
        given = states or {}
        self._states: dict[str, NodeState] = {
            node_id: NodeState.OK if node_id == myself else given.get(node_id, NodeState.OK)
            for node_id in members
        }
        self._live = frozenset(
            node_id for node_id, state in self._states.items() if state is not NodeState.FAIL
        )

        # The live part of every slot's preference list.  Equal preference lists
        # are one tuple object in the ring's table, so filter each distinct one once.
        filtered: dict[int, tuple[str, ...]] = {}
        per_slot: list[tuple[str, ...]] = []
        live = self._live
        unassigned = 0
        unserved_primaries: set[str] = set()
        for preference in ring.preference_lists(rf):
            nodes = filtered.get(id(preference))
            if nodes is None:
                nodes = tuple([node_id for node_id in preference if node_id in live])
                filtered[id(preference)] = nodes
            if not nodes:
                if preference:
                    unserved_primaries.add(preference[0])
                else:
                    unassigned += 1
            per_slot.append(nodes)
        self._per_slot: tuple[tuple[str, ...], ...] = tuple(per_slot)
        runs = ranges(self._per_slot)
        self._slot_ranges: list[tuple[int, int, tuple[str, ...]]] = [run for run in runs if run[2]]

        # Ranges each node coordinates, merged across changes of replicas.
        coordinated: dict[str, list[tuple[int, int]]] = {node_id: [] for node_id in members}
        for start, end, master in ranges([nodes[0] if nodes else None for nodes in per_slot]):
            if master is not None:
                coordinated[master].append((start, end))
        self._coordinated = coordinated

        # A slot is assigned when its preference list is not empty (every slot,
        # unless the ring is), failed when none of that list is live (Redis counts
        # a slot whose master is FAIL), pfail when its master is only suspected.
        # Unassigned slots have no live nodes either; they are not failed.
        assigned = SLOT_COUNT - unassigned
        failed = -unassigned
        pfail = 0
        for start, end, nodes in runs:
            if not nodes:
                failed += end - start + 1
            elif self._states[nodes[0]] is NodeState.PFAIL:
                pfail += end - start + 1
        # Redis's cluster_size counts masters holding slots, failed ones included;
        # here a slot whose whole list failed still belongs to its (failed) primary.
        size = len({node_id for node_id, runs in coordinated.items() if runs} | unserved_primaries)
        self._counts = (assigned, pfail, failed, size)
        #: ``cluster_state:ok``: every slot assigned and none without a live node.
        self.ok = assigned == SLOT_COUNT and failed == 0
        self._cache: dict[Any, Any] = {}

    # -- lookups -----------------------------------------------------------------

    def state(self, node_id: str) -> NodeState:
        """The failure detector's verdict on an active member."""
        return self._states[node_id]

    def is_live(self, node_id: str) -> bool:
        """Whether ``node_id`` is an active member not held failed."""
        return node_id in self._live

    def member(self, node_id: str) -> Member:
        """The record of an active member."""
        return self._members[node_id]

    def address(self, node_id: str) -> tuple[str, int]:
        """The client address ``(ip, port)`` of an active member."""
        member = self._members[node_id]
        return member.host, member.port

    def nodes_for(self, slot: int) -> tuple[str, ...]:
        """The live nodes of ``slot``'s preference list, master first."""
        return self._per_slot[slot]

    def coordinator(self, slot: int) -> str | None:
        """The master of ``slot``: its first live preferred node, or None."""
        nodes = self._per_slot[slot]
        return nodes[0] if nodes else None

    def fallbacks(self, slot: int) -> Mapping[str, str | None]:
        """For each failed node of ``slot``'s preference list, the live node beyond
        the list that stands in for it (sloppy quorum; None when there is none):
        :meth:`Ring.fallbacks <respkv.cluster.ring.Ring.fallbacks>`, cached per snapshot."""
        key = ("fallbacks", slot)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.ring.fallbacks(slot, self.rf, self._live)
        return found

    def slot_ranges(self) -> list[tuple[int, int, tuple[str, ...]]]:
        """Served ranges as ``(start, end, live nodes)``, in slot order."""
        return list(self._slot_ranges)

    def coordinated_ranges(self, node_id: str) -> list[tuple[int, int]]:
        """The ``(start, end)`` ranges ``node_id`` is master of, in order."""
        return list(self._coordinated[node_id])

    def moved(self, slot: int) -> bytes | None:
        """The ``MOVED`` reply sending ``slot`` to its master; None if unserved."""
        master = self.coordinator(slot)
        if master is None:
            return None
        member = self._members[master]
        return moved(slot, member.host, member.port)

    # -- CLUSTER SLOTS -----------------------------------------------------------

    def cluster_slots(self) -> list[list[Any]]:
        """``CLUSTER SLOTS`` as Python values.

        ``[start, end, [ip, port, node_id, {}], ...]`` per range, master first.
        """
        entries: list[list[Any]] = []
        for start, end, nodes in self._slot_ranges:
            entry: list[Any] = [start, end]
            for node_id in nodes:
                member = self._members[node_id]
                entry.append([member.host, member.port, node_id, {}])
            entries.append(entry)
        return entries

    def encode_cluster_slots(self, proto: Resp2) -> bytes:
        """The encoded ``CLUSTER SLOTS`` reply for ``proto``; cached per version."""
        key = ("slots", proto.version)
        cached = self._cache.get(key)
        if cached is None:
            empty_map = proto.map([])
            node_entry = {
                node_id: b"*4\r\n"
                + reply.bulk(member.host.encode())
                + reply.integer(member.port)
                + reply.bulk(node_id.encode())
                + empty_map
                for node_id, member in self._members.items()
            }
            # Far fewer distinct node lists than ranges: encode each list once.
            encoded_nodes: dict[tuple[str, ...], bytes] = {}
            parts = [b"*%d\r\n" % len(self._slot_ranges)]
            for start, end, nodes in self._slot_ranges:
                tail = encoded_nodes.get(nodes)
                if tail is None:
                    tail = encoded_nodes[nodes] = b"".join([node_entry[n] for n in nodes])
                parts.append(b"*%d\r\n:%d\r\n:%d\r\n%b" % (2 + len(nodes), start, end, tail))
            cached = self._cache[key] = b"".join(parts)
        return cached

    def prepare(self) -> None:
        """Render and cache ``CLUSTER SLOTS`` for RESP2 and RESP3 now.

        For the holder to call when it installs a snapshot, so the first client
        asking for the topology does not pay for the rendering.
        """
        for proto in (RESP2, RESP3):
            self.encode_cluster_slots(proto)

    # -- CLUSTER NODES -----------------------------------------------------------

    def _slots_suffix(self, node_id: str) -> str:
        suffixes = self._cache.get("nodes-slots")
        if suffixes is None:
            suffixes = {
                node: "".join(" " + slot_range_text(start, end) for start, end in runs)
                for node, runs in self._coordinated.items()
            }
            self._cache["nodes-slots"] = suffixes
        return suffixes[node_id]

    def cluster_nodes(
        self,
        ping_sent: Mapping[str, int] = _EMPTY,
        pong_received: Mapping[str, int] = _EMPTY,
    ) -> str:
        """``CLUSTER NODES`` text: one ``\\n``-terminated line per active member.

        Each line is ``<id> <ip>:<port>@<bus-port> <flags> - <ping-sent>
        <pong-recv> <epoch> <link-state>`` followed by the slot ranges the node is
        master of.  ``ping_sent`` and ``pong_received`` are Unix milliseconds from
        the cluster bus (0 when absent, as Redis shows for no ping in flight).  The
        link shows ``disconnected`` for members held pfail or failed.
        """
        lines = []
        for node_id, member in self._members.items():
            state = self._states[node_id]
            if node_id == self.myself:
                flags = "myself,master"
            elif state is NodeState.OK:
                flags = "master"
            else:
                flags = "master," + state.flag
            link = "connected" if state is NodeState.OK else "disconnected"
            lines.append(
                f"{node_id} {member.host}:{member.port}@{member.bus_port} {flags} - "
                f"{ping_sent.get(node_id, 0)} {pong_received.get(node_id, 0)} "
                f"{member.epoch} {link}{self._slots_suffix(node_id)}\n"
            )
        return "".join(lines)

    def encode_cluster_nodes(
        self,
        proto: Resp2,
        ping_sent: Mapping[str, int] = _EMPTY,
        pong_received: Mapping[str, int] = _EMPTY,
    ) -> bytes:
        """The encoded ``CLUSTER NODES`` reply: bulk string, or verbatim in RESP3."""
        return proto.verbatim(self.cluster_nodes(ping_sent, pong_received).encode())

    # -- CLUSTER SHARDS ----------------------------------------------------------

    def _shard_groups(self) -> list[tuple[list[int], tuple[str, ...]]]:
        groups = self._cache.get("shard-groups")
        if groups is None:
            by_nodes: dict[tuple[str, ...], list[int]] = {}
            for start, end, nodes in self._slot_ranges:
                by_nodes.setdefault(nodes, []).extend((start, end))
            groups = [(slots, nodes) for nodes, slots in by_nodes.items()]
            seen = {node_id for nodes in by_nodes for node_id in nodes}
            groups.extend(([], (node_id,)) for node_id in self._members if node_id not in seen)
            self._cache["shard-groups"] = groups
        return groups

    def _shard_node(self, node_id: str, role: str) -> dict[str, Any]:
        member = self._members[node_id]
        return {
            "id": node_id,
            "port": member.port,
            "ip": member.host,
            "endpoint": member.host,
            "role": role,
            "replication-offset": 0,
            # Redis says "loading" for a replica at offset 0; respkv replicas have
            # no offset and serve at once, so only failure makes a node unhealthy.
            "health": "fail" if self._states[node_id] is NodeState.FAIL else "online",
        }

    def cluster_shards(self) -> list[dict[str, Any]]:
        """``CLUSTER SHARDS`` as Python values.

        A list of ``{"slots": [start, end, ...], "nodes": [node, ...]}``, master
        first in each; shards with slots come in order of their first slot, then
        the slotless ones by node id.  Each node is a dict with Redis 7.0's keys in
        its order: id, port, ip, endpoint, role, replication-offset, health.
        """
        return [
            {
                "slots": list(slots),
                "nodes": [
                    self._shard_node(node_id, "master" if i == 0 else "replica")
                    for i, node_id in enumerate(nodes)
                ],
            }
            for slots, nodes in self._shard_groups()
        ]

    def encode_cluster_shards(self, proto: Resp2) -> bytes:
        """The encoded ``CLUSTER SHARDS`` reply for ``proto``; cached per version."""
        key = ("shards", proto.version)
        cached = self._cache.get(key)
        if cached is None:
            # A node's description depends only on its role, so encode each once.
            described: dict[tuple[str, str], bytes] = {}

            def describe(node_id: str, role: str) -> bytes:
                found = described.get((node_id, role))
                if found is None:
                    found = encode(self._shard_node(node_id, role), proto)
                    described[node_id, role] = found
                return found

            slots_key = reply.bulk(b"slots")
            nodes_key = reply.bulk(b"nodes")
            shards = []
            for slots, nodes in self._shard_groups():
                described_nodes = [describe(nodes[0], "master")]
                described_nodes.extend(describe(node_id, "replica") for node_id in nodes[1:])
                shards.append(
                    proto.map(
                        [
                            (slots_key, reply.array([reply.integer(n) for n in slots])),
                            (nodes_key, reply.array(described_nodes)),
                        ]
                    )
                )
            cached = self._cache[key] = reply.array(shards)
        return cached

    # -- CLUSTER INFO ------------------------------------------------------------

    def cluster_info(
        self,
        messages_sent: Mapping[str, int] = _EMPTY,
        messages_received: Mapping[str, int] = _EMPTY,
        links_buffer_limit_exceeded: int = 0,
        extra: Sequence[tuple[str, int]] = (),
    ) -> str:
        """``CLUSTER INFO`` text in Redis 7.0's field order, ``\\r\\n`` after each line.

        ``messages_sent``/``messages_received`` count cluster bus messages by type
        (see :data:`MESSAGE_TYPES`; other names follow in sorted order); as in Redis
        a per-type line appears only for a non-zero count, the totals always;
        ``extra`` fields (respkv's own) follow Redis's.  ``cluster_state`` is ``ok`` only when every slot has a live master.
        """
        assigned, pfail, failed, size = self._counts
        state = "ok" if self.ok else "fail"
        fields = [
            ("cluster_state", state),
            ("cluster_slots_assigned", assigned),
            ("cluster_slots_ok", assigned - pfail - failed),
            ("cluster_slots_pfail", pfail),
            ("cluster_slots_fail", failed),
            ("cluster_known_nodes", len(self._members)),
            ("cluster_size", size),
            ("cluster_current_epoch", self.current_epoch),
            ("cluster_my_epoch", self._members[self.myself].epoch),
        ]
        for direction, counts in (("sent", messages_sent), ("received", messages_received)):
            names = [name for name in MESSAGE_TYPES if name in counts]
            names.extend(sorted(name for name in counts if name not in MESSAGE_TYPES))
            for name in names:
                if counts[name]:
                    fields.append((f"cluster_stats_messages_{name}_{direction}", counts[name]))
            fields.append((f"cluster_stats_messages_{direction}", sum(counts.values())))
        fields.append(("total_cluster_links_buffer_limit_exceeded", links_buffer_limit_exceeded))
        fields.extend(extra)
        return "".join(f"{name}:{value}\r\n" for name, value in fields)

    def encode_cluster_info(
        self,
        proto: Resp2,
        messages_sent: Mapping[str, int] = _EMPTY,
        messages_received: Mapping[str, int] = _EMPTY,
        links_buffer_limit_exceeded: int = 0,
        extra: Sequence[tuple[str, int]] = (),
    ) -> bytes:
        """The encoded ``CLUSTER INFO`` reply: bulk string, or verbatim in RESP3."""
        text = self.cluster_info(messages_sent, messages_received, links_buffer_limit_exceeded, extra)
        return proto.verbatim(text.encode())


def encode(value: Any, proto: Resp2) -> bytes:
    """Encode a structure returned by a renderer (``cluster_slots()`` etc.) for ``proto``.

    Strings become bulk strings, ints integers, lists arrays and dicts maps; the
    cached ``encode_*`` methods give the same bytes without re-encoding.
    """
    if isinstance(value, str):
        return reply.bulk(value.encode())
    if isinstance(value, bool):
        raise TypeError("booleans are not part of topology replies")
    if isinstance(value, int):
        return reply.integer(value)
    if isinstance(value, list):
        return reply.array([encode(item, proto) for item in value])
    if isinstance(value, dict):
        return proto.map(
            [(encode(key, proto), encode(item, proto)) for key, item in value.items()]
        )
    raise TypeError(f"cannot encode {value!r}")

