"""Where a request must run in cluster mode: its keys' slot and that slot's placement.

Theory of operation
-------------------
Redis Cluster decides per request, before running it, from the keys the request
names: every key must hash to one slot (else ``CROSSSLOT``), that slot must have a
live node (else ``CLUSTERDOWN Hash slot not served``), the cluster must be up (else
``CLUSTERDOWN The cluster is down``, for reads and writes alike, as Redis answers
with its default ``cluster-allow-reads-when-down no``), and the slot's master must
be this node (else ``MOVED``).  A command naming no key runs wherever it is sent.
This module holds those rules as functions of the command table's specs and a
:class:`~respkv.cluster.topology.Topology`, without I/O; the session and the
cluster command module act on the answers (see :mod:`respkv.cluster.commands`).

Keys are found the way ``COMMAND GETKEYS`` finds them, by the key-spec interpreter
beside the command table (:mod:`respkv.commands.keyspecs`): a command whose key
positions are fixed (``movablekeys`` unset) names its keys at ``first_key``,
``last_key``, ``step``; a command with movable keys (``ZUNIONSTORE``, ``LMPOP``,
``ZINTERCARD``, ...) goes through its key specs and key finders.  A request whose
arguments do not parse yields no keys and runs locally, where its handler answers
the syntax error, as in Redis.

Two relaxations let a node serve a slot it does not coordinate but holds a replica
of (it is in the slot's live preference list): a connection in ``READONLY`` mode
asking a command that does not write, as Redis lets a replica serve its master's
slots, and a request preceded by ``ASKING``, which in Redis lets the importing node
of a slot serve it.  respkv never sends ``ASK`` (Dynamo has no slot migration); its
proxy marks forwarded requests with ``ASKING`` so that the coordinator serves them
even if its view of the ring differs slightly, and never forwards them again.

The fast path
-------------
Sessions answer most requests without the general checks.  In cluster mode that
path may run a command only if it names no key or exactly one key at a fixed
position (:func:`fast_spec`), and the key's slot is served here
(:func:`served_slots`); the dispatcher (:mod:`respkv.net.dispatch`) composes
these rules with the command table and replication once per topology.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..commands.keyspecs import request_keys
from ..commands.table import CommandSpec
from ..keyspace.slots import SLOT_COUNT, key_slot
from .topology import Topology

#: :func:`request_slot` results that are not slots.
NO_KEYS = -1
CROSS_SLOT = -2

CROSSSLOT_ERROR = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
CLUSTER_DOWN_ERROR = b"-CLUSTERDOWN The cluster is down\r\n"
SLOT_NOT_SERVED_ERROR = b"-CLUSTERDOWN Hash slot not served\r\n"

#: The per-slot view of a cluster that is down: nothing is served on the fast path.
NOTHING_SERVED = bytes(SLOT_COUNT)

# -- keys and slots ---------------------------------------------------------------


def request_slot(spec: CommandSpec, args: list[bytes]) -> int:
    """The one slot of the request's keys, :data:`NO_KEYS` or :data:`CROSS_SLOT`."""
    first = spec.first_key
    if spec.movable_keys:
        return _common_slot(request_keys(spec, args), NO_KEYS)
    if first <= 0:
        return NO_KEYS
    if spec.last_key == first:  # one key at a fixed position: the common case
        return key_slot(args[first]) if len(args) > first else NO_KEYS
    return _common_slot(request_keys(spec, args), NO_KEYS)


def requests_slot(requests: Iterable[tuple[CommandSpec, list[bytes]]]) -> int:
    """The one slot of every key of several requests (a transaction's queue).

    As Redis checks ``EXEC``: all keys of all queued commands must share a slot.
    """
    slot = NO_KEYS
    for spec, args in requests:
        found = request_slot(spec, args)
        if found == CROSS_SLOT:
            return CROSS_SLOT
        if found != NO_KEYS:
            if slot != NO_KEYS and found != slot:
                return CROSS_SLOT
            slot = found
    return slot


def _common_slot(keys: list[bytes], slot: int) -> int:
    for key in keys:
        found = key_slot(key)
        if slot != found:
            if slot != NO_KEYS:
                return CROSS_SLOT
            slot = found
    return slot


# -- placement --------------------------------------------------------------------

def cluster_ok(topology: Topology) -> bool:
    """Whether ``CLUSTER INFO`` says ``cluster_state:ok`` for this snapshot."""
    return topology.ok


def place(topology: Topology, slot: int, *, relaxed: bool = False) -> None | bytes | str:
    """Where a request for ``slot`` runs: None for here, an error reply, or a node id.

    The node id is the slot's coordinator, to redirect (``MOVED``) or forward to.
    ``relaxed`` (``ASKING``, or a ``READONLY`` connection reading) also accepts a
    node that holds a replica of the slot.  The checks come in Redis's order: a
    slot without a live node first, then the cluster's state, then ownership.
    """
    nodes = topology.nodes_for(slot)
    if not nodes:
        return SLOT_NOT_SERVED_ERROR
    if not cluster_ok(topology):
        return CLUSTER_DOWN_ERROR
    myself = topology.myself
    if nodes[0] == myself or (relaxed and myself in nodes):
        return None
    return nodes[0]


# -- the session's fast path ------------------------------------------------------


def fast_spec(spec: CommandSpec) -> CommandSpec | None:
    """``spec`` if the cluster fast path may run it, else None.

    Commands without keys run as they are; commands with one key at a fixed
    position run once the session found the key's slot served here; any other
    keyed command is left to the general path.
    """
    if spec.movable_keys:
        return None
    if spec.first_key <= 0:
        if any("not_key" not in ks.get("flags", ()) for ks in spec.key_specs):
            return None  # keys the legacy positions do not show
        return spec
    if spec.last_key != spec.first_key:
        return None
    return spec


def served_slots(state) -> bytes | bytearray:
    """Per slot, whether a one-key request may run here at once: ``state.served``,
    or all zeros while the cluster is down (every keyed request then takes the
    general path and gets its ``CLUSTERDOWN``)."""
    return state.served if cluster_ok(state.topology) else NOTHING_SERVED
