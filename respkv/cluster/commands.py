"""Cluster commands (CLUSTER ..., ASKING, READONLY, READWRITE) and request routing.

Theory of operation
-------------------
Stock Redis Cluster clients learn the cluster from ``CLUSTER SLOTS`` (redis-py),
``CLUSTER NODES`` (redis-benchmark, redis-cli) or ``CLUSTER SHARDS``, and follow
``MOVED`` replies when a key lives elsewhere.  The replies are rendered by the
node's current :class:`~respkv.cluster.topology.Topology` (``node.cluster``, a
:class:`~respkv.cluster.state.ClusterState`); this module only validates arguments
the way Redis 7.0 does and picks the renderer.  In standalone mode (``node.cluster``
is None) every command here answers ``ERR This instance has cluster support
disabled``, as Redis does, after the usual unknown-subcommand and arity checks.

:func:`route_request` is the cluster check of the session's general path (the fast
path tests ``served`` itself, see :mod:`respkv.cluster.routing`): it finds the slot
of a request's keys and answers ``CROSSSLOT``, ``CLUSTERDOWN`` or ``MOVED``, or,
with proxy routing, returns the coroutine that forwards the request to the slot's
coordinator (:mod:`respkv.cluster.proxy`).  As in Redis, requests queued by
``MULTI`` are checked when queued (a refused one dooms the transaction) and
``EXEC`` checks all queued keys together, discarding the transaction on
``CROSSSLOT`` or a redirection.  With proxy routing, commands of a transaction are
queued whatever node coordinates their slot, and ``EXEC`` sends ``MULTI``, the
queue and ``EXEC`` to that node when it is not this one.  ``WATCH`` cannot be
proxied (a watch lives on a connection, and proxy connections are shared), so it
answers ``MOVED`` for keys coordinated elsewhere.

Connection flags: ``ASKING`` holds for the next command only (through a whole
transaction when the next command is ``MULTI``); ``READONLY`` lets the connection
read keys of slots this node holds a replica of.  Both end with ``RESET``.

``CLUSTER MYSHARDID`` (Redis 7.2) names the shard of the slots this node
coordinates.  A respkv node is the primary of its own slots, so its shard id is
derived from its node id (SHA-1 of ``shard:<node id>``): 40 hex digits, stable
across restarts without being stored, and different from the node id.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from ..commands.args import int_arg
from ..commands.table import CommandError, command, container
from ..commands.transactions import end_transaction, registry
from ..keyspace.numbers import parse_int
from ..keyspace.slots import SLOT_COUNT, key_slot
from ..protocol import reply
from .identity import set_leaving
from .proxy import forward
from .routing import CROSS_SLOT, CROSSSLOT_ERROR, NO_KEYS, place, request_slot, requests_slot
from .state import PROXY

log = logging.getLogger(__name__)

DISABLED = "ERR This instance has cluster support disabled"

#: Shard-channel subscriptions belong to the client's own connection: with proxy
#: routing they are never forwarded (a pooled connection would be subscribed), the
#: client is sent to the slot's node with MOVED instead.
_OWN_CONNECTION = frozenset({"ssubscribe", "sunsubscribe"})
#: Commands ending a transaction, and with it an ASKING flag held through it.
_ENDS_TRANSACTION = frozenset(["exec", "discard"])


def _state(s):
    state = s.node.cluster
    if state is None:
        raise CommandError(DISABLED)
    return state


# -- routing -----------------------------------------------------------------------


def route_request(s, spec, args, state):
    """The cluster check of one request on the general path.

    Returns None when the request runs here (or is queued), an error reply
    (``MOVED``, ``CROSSSLOT``, ``CLUSTERDOWN``), or a coroutine giving the reply of
    the request forwarded to its slot's coordinator (proxy routing).  Also spends
    the connection's ``ASKING`` flag, as Redis does after each command.
    """
    name = spec.name
    was_asking = s.asking
    if was_asking and name != "asking" and (name in _ENDS_TRANSACTION or (s.multi is None and name != "multi")):
        s.asking = False
        s.refresh_fast()
    if name == "exec":
        return None if s.multi is None else _route_exec(s, state, was_asking)
    slot = request_slot(spec, args)
    if slot < 0:
        return None if slot == NO_KEYS else _refuse(s, CROSSSLOT_ERROR)
    topology = state.topology
    where = place(topology, slot, relaxed=was_asking or (s.readonly and not spec.is_write))
    if where is None:
        return None
    if where.__class__ is bytes:
        return _refuse(s, where)
    if state.routing == PROXY and not was_asking and name != "watch" and name not in _OWN_CONNECTION:
        if s.multi is not None:
            return None  # queued: EXEC decides where the transaction runs
        return _forward(s, state, slot, where, [args], exclusive="blocking" in spec.flags)
    return _refuse(s, topology.moved(slot))


def _route_exec(s, state, asking: bool):
    """EXEC's check: every queued key in one slot, and where that slot runs.

    ``asking``: the connection sent ASKING before MULTI (served as any ASKING
    request: here if this node holds the slot, never forwarded).
    """
    queued = s.multi
    slot = requests_slot(queued)
    if slot == NO_KEYS:
        return None
    if slot == CROSS_SLOT:
        return _discard(s, CROSSSLOT_ERROR)
    writes = any(spec.is_write for spec, _ in queued)
    topology = state.topology
    where = place(topology, slot, relaxed=asking or (s.readonly and not writes))
    if where is None:
        return None
    if where.__class__ is bytes:
        return _discard(s, where)
    if state.routing == PROXY and not asking and not any(spec.name in _OWN_CONNECTION for spec, _ in queued):
        for key in s.watched:
            s.ks.get(key)  # an expired watched key counts as changed, as in EXEC
        if s.multi_dirty or s.watch_dirty:
            return None  # EXEC itself answers EXECABORT or the null array
        requests = [[b"MULTI"], *[request for _, request in queued], [b"EXEC"]]
        _discard(s, None)
        return _forward(s, state, slot, where, requests)
    return _discard(s, topology.moved(slot))


def _refuse(s, error: bytes) -> bytes:
    """An error before the command ran; inside MULTI it dooms the transaction."""
    if s.multi is not None:
        s.multi_dirty = True
    return error


def _discard(s, error):
    """End the transaction (and its watches) without running it, as Redis's EXEC does."""
    end_transaction(s)
    registry(s).unwatch_all(s)
    return error


def _forward(s, state, slot: int, node_id: str, requests: list[list[bytes]], exclusive: bool = False):
    return forward(s.node, slot, state.address_of(node_id), s.proto.version, requests, exclusive=exclusive)


# -- connection flags --------------------------------------------------------------


@command("asking", "Signals that a cluster client is following an -ASK redirect.",
         group="cluster", since="3.0.0")
def asking(s, args):
    _state(s)
    s.asking = True
    s.refresh_fast()  # off: the next request must pass route_request, which spends the flag
    return reply.OK


@command("readonly", "Enables read-only queries for a connection to a Redis Cluster replica node.",
         group="cluster", since="3.0.0")
def readonly(s, args):
    _state(s)
    s.readonly = True
    return reply.OK


@command("readwrite", "Enables read-write queries for a connection to a Redis Cluster replica node.",
         group="cluster", since="3.0.0")
def readwrite(s, args):
    _state(s)
    s.readonly = False
    return reply.OK


# -- CLUSTER -------------------------------------------------------------------------

container("cluster", "A container for Redis Cluster commands.", group="cluster", since="3.0.0")


@command("cluster|slots", "Returns the mapping of cluster slots to nodes.", group="cluster", since="3.0.0")
def cluster_slots(s, args):
    return _state(s).topology.encode_cluster_slots(s.proto)


@command("cluster|shards", "Returns the mapping of cluster slots to shards.", group="cluster", since="7.0.0")
def cluster_shards(s, args):
    return _state(s).topology.encode_cluster_shards(s.proto)


@command("cluster|nodes", "Returns the cluster configuration for a node.", group="cluster", since="3.0.0")
def cluster_nodes(s, args):
    state = _state(s)
    return state.topology.encode_cluster_nodes(s.proto, state.ping_sent, state.pong_received)


@command("cluster|info", "Returns information about the state of a node.", group="cluster", since="3.0.0")
def cluster_info(s, args):
    state = _state(s)
    bus = s.node.cluster_bus
    extra = () if bus is None else (("cluster_bus_handshakes_refused", bus.handshakes_refused),)
    return state.topology.encode_cluster_info(s.proto, state.messages_sent, state.messages_received, 0, extra)


@command("cluster|keyslot", "Returns the hash slot for a key.", group="cluster", since="3.0.0")
def cluster_keyslot(s, args):
    _state(s)
    return reply.integer(key_slot(args[2]))


@command("cluster|myid", "Returns the ID of a node.", group="cluster", since="3.0.0")
def cluster_myid(s, args):
    return reply.bulk(_state(s).myself.encode())


def shard_id(node_id: str) -> str:
    """The shard id of the node ``node_id`` (see the module doc)."""
    return hashlib.sha1(b"shard:" + node_id.encode()).hexdigest()


@command("cluster|myshardid", "Returns the shard ID of a node.", group="cluster", since="7.2.0",
         arity=2, flags=("stale",), acl_categories=("@slow",), keys=(0, 0, 0))
def cluster_myshardid(s, args):
    return reply.bulk(shard_id(_state(s).myself).encode())


@command("cluster|countkeysinslot", "Returns the number of keys in a hash slot.", group="cluster", since="3.0.0")
def cluster_countkeysinslot(s, args):
    _state(s)
    slot = int_arg(args[2])
    if not 0 <= slot < SLOT_COUNT:
        raise CommandError("ERR Invalid slot")
    return reply.integer(s.ks.count_in_slot(slot, s.visible_slots()))


@command("cluster|getkeysinslot", "Returns the key names in a hash slot.", group="cluster", since="3.0.0")
def cluster_getkeysinslot(s, args):
    _state(s)
    slot = int_arg(args[2])
    count = int_arg(args[3])
    if not 0 <= slot < SLOT_COUNT or count < 0:
        raise CommandError("ERR Invalid slot or number of keys")
    return reply.bulk_array(s.ks.keys_in_slot(slot, count, s.visible_slots()))




@command("cluster|repair", "Starts anti-entropy exchanges with every live replica peer now.", group="cluster",
         since="respkv 0.5", arity=-2, flags=("admin", "stale"), acl_categories=("@admin", "@slow", "@dangerous"),
         keys=(0, 0, 0))
def cluster_repair(s, args):
    """``CLUSTER REPAIR [slot]``: compare hash trees with every live peer sharing
    a slot (only ``slot`` when given) and merge what differs, in the background;
    answers how many peers the exchanges run with.  INFO replication (``ae_*``)
    and the log follow them."""
    _state(s)
    if len(args) > 3:
        raise CommandError("ERR unknown subcommand or wrong number of arguments for 'repair'. Try CLUSTER HELP.")
    slots = None
    if len(args) == 3:
        slot = int_arg(args[2])
        if not 0 <= slot < SLOT_COUNT:
            raise CommandError("ERR Invalid slot")
        slots = (slot,)
    return reply.integer(_anti_entropy(s).request_repair(slots))


@command("cluster|repairinfo", "Returns what anti-entropy knows of one slot on this node.", group="cluster",
         since="respkv 0.5", arity=3, flags=("stale",), acl_categories=("@slow",), keys=(0, 0, 0))
def cluster_repairinfo(s, args):
    """``CLUSTER REPAIRINFO slot``: a map of the slot's tree on this node (keys with
    a leaf, the slot's hash in hex) and its last exchange (milliseconds ago, -1 for
    never; the peers it was with)."""
    _state(s)
    slot = int_arg(args[2])
    if not 0 <= slot < SLOT_COUNT:
        raise CommandError("ERR Invalid slot")
    anti_entropy = _anti_entropy(s)
    status = anti_entropy.slot_status(slot)
    return s.proto.map([
        (reply.bulk(b"slot"), reply.integer(slot)),
        (reply.bulk(b"tree-keys"), reply.integer(status["tree-keys"])),
        (reply.bulk(b"tree-hash"), reply.bulk(status["tree-hash"])),
        (reply.bulk(b"last-exchange-ms-ago"), reply.integer(status["last-exchange-ms-ago"])),
        (reply.bulk(b"last-exchange-peer"), reply.bulk(status["last-exchange-peer"])),
        (reply.bulk(b"replicas"), reply.bulk_array(status["replicas"])),
    ])


def _anti_entropy(s):
    replication = getattr(s.node, "replication", None)
    anti_entropy = getattr(replication, "anti_entropy", None)
    if anti_entropy is None:
        raise CommandError("ERR anti-entropy needs replication-factor above 1")
    return anti_entropy


@command("cluster|count-failure-reports", "Returns the number of active failure reports active for a node.",
         group="cluster", since="3.0.0")
def cluster_count_failure_reports(s, args):
    state = _state(s)
    node_id = args[2].decode("latin-1")
    if not state.membership.is_active(node_id):
        raise CommandError(f"ERR Unknown node {node_id}")
    gossip = s.node.cluster_gossip
    if gossip is None:
        return reply.ZERO
    reports = gossip.detector.reports
    return reply.integer(sum(1 for suspects in reports.values() if node_id in suspects))


@command("cluster|forget", "Removes a node from the nodes table.", group="cluster", since="3.0.0")
def cluster_forget(s, args):
    """Remove a failed node from the cluster for good (a membership tombstone).

    Unlike Redis, where every node must be told within its 60-second ban, the
    tombstone is gossiped: one node told is enough, and it never expires.  The
    ring is rebuilt without the node, so its slots get complete preference lists
    again; the hints held for it are redirected to the nodes that now replicate
    its keys, and anti-entropy fills those nodes' copies.  A live node is refused:
    it would announce itself again, and its slots would lose a copy without being
    handed off first.  A live node that left with ``CLUSTER LEAVE`` may be
    forgotten once it announced holding no keys any more.  Forgetting a node
    that left already answers OK, so telling every node in turn (as
    ``redis-cli --cluster del-node`` does) works."""
    state = _state(s)
    node_id = args[2].decode("latin-1")
    if node_id == state.myself:
        raise CommandError("ERR I tried hard but I can't forget myself...")
    record = state.membership.get(node_id)
    if record is None:
        raise CommandError(f"ERR Unknown node {node_id}")
    if record.left:
        return reply.OK  # forgotten already (here, or by gossip from another node told first)
    if state.topology.is_live(node_id) and not _drained(s, record):
        if record.weight == 0:
            raise CommandError("ERR Can't forget a node that is still handing its keys over: wait until its "
                               "INFO replication shows handoff_keys_held:0")
        raise CommandError("ERR Can't forget a live node: stop it first and wait until CLUSTER NODES flags it "
                           "fail, or make it leave first with CLUSTER LEAVE on it")
    gossip = s.node.cluster_gossip
    if gossip is None:
        raise CommandError("ERR The cluster bus is not running")
    gossip.forget(node_id)
    log.warning("CLUSTER FORGET %s: removed from the cluster", node_id)
    return reply.OK


def _drained(s, record) -> bool:
    """Whether ``record``'s node left the ring and announced that it handed everything over."""
    holders = getattr(getattr(s.node, "replication", None), "holders", None)
    return record.weight == 0 and holders is not None and holders.drained(record.node_id, record.epoch)


@command("cluster|leave", "Makes this node leave the cluster: its keys go to the other nodes first.",
         group="cluster", since="respkv 0.6", arity=2, flags=("admin", "stale"),
         acl_categories=("@admin", "@slow", "@dangerous"), keys=(0, 0, 0))
async def cluster_leave(s, args):
    """``CLUSTER LEAVE``: decommission this node.  Its ring weight becomes 0, so
    every slot's preference list moves to the other members at once, and the
    ownership hand-off gives them its keys; it stays a member (serving reads of
    what it still holds) until it holds nothing, then ``CLUSTER FORGET`` on any
    other member (or ``redis-cli --cluster del-node``) removes it.  Answers OK
    (also when it was leaving already); lasting: a restart goes on leaving."""
    state = _state(s)
    if getattr(s.node, "replication", None) is None:
        raise CommandError("ERR CLUSTER LEAVE needs replication-factor above 1: with one copy per key "
                           "nothing would hand this node's keys over")
    gossip = s.node.cluster_gossip
    if gossip is None:
        raise CommandError("ERR The cluster bus is not running")
    others = [m for m in state.membership.active() if m.node_id != state.myself and m.weight]
    if not others and not gossip.leaving:
        raise CommandError("ERR This is the last node holding slots: add another node before it leaves")
    if s.in_exec:  # EXEC runs its commands without waiting, and leaving waits for the members' answers
        raise CommandError("ERR CLUSTER LEAVE cannot run inside a transaction")
    set_leaving(s.node.config["dir"], True)  # before the ring changes: a restart goes on leaving
    if await gossip.leave():
        log.warning("CLUSTER LEAVE: this node gives its slots away and hands its keys over")
    return reply.OK


@command("cluster|reset", "Resets a node.", group="cluster", since="3.0.0", arity=-2,
         flags=("admin", "stale", "noscript"), acl_categories=("@admin", "@slow", "@dangerous"), keys=(0, 0, 0))
def cluster_reset(s, args):
    """``CLUSTER RESET [HARD|SOFT]``: this node forgets every other member and
    becomes a one-node cluster again (keeping its node id, also for HARD).  As in
    Redis, refused while the node holds keys, so only a node that left and
    handed everything over (``redis-cli --cluster del-node`` sends this last)
    or an empty one can be reset."""
    _state(s)
    if len(args) > 3 or (len(args) == 3 and args[2].lower() not in (b"hard", b"soft")):
        raise CommandError("ERR syntax error")
    if s.node.keyspace.dbsize():
        raise CommandError("ERR CLUSTER RESET can't be called with master nodes containing keys")
    gossip = s.node.cluster_gossip
    if gossip is None:
        raise CommandError("ERR The cluster bus is not running")
    set_leaving(s.node.config["dir"], False)
    gossip.reset(s.node.config["cluster-weight"])
    log.warning("CLUSTER RESET: this node forgot every other member")
    return reply.OK


@command("cluster|links", "Returns a list of all TCP links to and from peer nodes.", group="cluster", since="7.0.0")
def cluster_links(s, args):
    """One entry per connected bus link, with Redis 7.0's fields.

    respkv keeps one link per pair of nodes, used both ways: ``direction`` says
    who opened it (``to``: this node dialed).  Frames leave as soon as they are
    queued, so the send buffer is reported empty, and the link's creation time is
    not recorded (0).
    """
    state = _state(s)
    bus = s.node.cluster_bus
    proto = s.proto
    entries = []
    if bus is not None:
        for peer_id, link in sorted(bus.links.items()):
            if not link.connected:
                continue
            direction = b"to" if link.dialed_by == state.myself else b"from"
            entries.append(proto.map([
                (reply.bulk(b"direction"), reply.bulk(direction)),
                (reply.bulk(b"node"), reply.bulk(peer_id.encode())),
                (reply.bulk(b"create-time"), reply.integer(0)),
                (reply.bulk(b"events"), reply.bulk(b"r")),
                (reply.bulk(b"send-buffer-allocated"), reply.integer(0)),
                (reply.bulk(b"send-buffer-used"), reply.integer(0)),
            ]))
    return reply.array(entries)


@command("cluster|meet", "Forces a node to handshake with another node.", group="cluster", since="3.0.0")
async def cluster_meet(s, args):
    """Meet the member at ``ip port [bus-port]``; argument errors use Redis's texts.

    Unlike Redis, which answers ``OK`` and handshakes in the background, the reply
    waits for the meeting: ``OK`` once the member answered, else an error.  So it
    cannot run inside ``MULTI``/``EXEC``, where nothing may wait.
    """
    _state(s)
    if len(args) > 5:
        raise CommandError("ERR unknown subcommand or wrong number of arguments for 'meet'. Try CLUSTER HELP.")
    ip_text = args[2].decode("latin-1")
    port = parse_int(args[3])
    if port is None:
        raise CommandError(f"ERR Invalid TCP base port specified: {args[3].decode('latin-1')}")
    bus_port = None
    if len(args) == 5:
        bus_port = parse_int(args[4])
        if bus_port is None:
            raise CommandError(f"ERR Invalid TCP bus port specified: {args[4].decode('latin-1')}")
    try:
        host = str(ipaddress.ip_address(ip_text))
    except ValueError:
        host = None
    if host is None or not 0 < port < 65536 or (bus_port is not None and not 0 < bus_port < 65536):
        raise CommandError(f"ERR Invalid node address specified: {ip_text}:{args[3].decode('latin-1')}")
    gossip = s.node.cluster_gossip
    if gossip is None:
        raise CommandError("ERR The cluster bus is not running")
    if s.in_exec:  # EXEC runs its commands without waiting, and meeting waits
        raise CommandError("ERR CLUSTER MEET cannot run inside a transaction")
    try:
        await gossip.meet(host, port, bus_port)
    except Exception as exc:  # MeetError and whatever the bus raised; never Cancelled
        log.info("CLUSTER MEET %s:%d failed: %s", host, port, exc)
        raise CommandError(f"ERR {exc}") from None
    return reply.OK


_CLUSTER_HELP = [
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "FORGET <node-id>",
    "    Remove a failed node from the cluster (gossiped to every member).",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "LEAVE",
    "    Make this node leave: its slots move to the other nodes and its keys are handed over;",
    "    then CLUSTER FORGET it on another node.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPAIR [<slot>]",
    "    Start anti-entropy exchanges with every live replica peer (of <slot> only if given);",
    "    returns the number of peers. INFO replication (ae_*) shows their progress.",
    "REPAIRINFO <slot>",
    "    Return the slot's anti-entropy tree on this node and its last exchange.",
    "RESET [HARD|SOFT]",
    "    Forget every other node (refused while this node holds keys).",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of a link",
    "HELP",
    "    Prints this help.",
]


@command("cluster|help", "Returns helpful text about the different subcommands.", group="cluster", since="5.0.0")
def cluster_help(s, args):
    _state(s)
    return reply.help_lines(_CLUSTER_HELP)
