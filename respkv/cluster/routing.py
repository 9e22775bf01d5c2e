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
position, and the key's slot is served here: :func:`fast_path` gives the session
the table of such commands and the per-slot bytes to test (``ClusterState.served``,
or all zeros while the cluster is down, so every keyed request then takes the
general path and gets its ``CLUSTERDOWN``).  Commands that serve runs of pipelined
requests in one call get a wrapper that stops the run at the first request whose
key is not served here.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..commands.keyspecs import request_keys
from ..commands.table import CommandSpec, CommandTable
from ..keyspace.slots import SLOT_COUNT, SLOT_MASK, hash_tag, key_slot
from .topology import Topology

#: :func:`request_slot` results that are not slots.
NO_KEYS = -1
CROSS_SLOT = -2

CROSSSLOT_ERROR = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
CLUSTER_DOWN_ERROR = b"-CLUSTERDOWN The cluster is down\r\n"
SLOT_NOT_SERVED_ERROR = b"-CLUSTERDOWN Hash slot not served\r\n"

#: The per-slot view of a cluster that is down: nothing is served on the fast path.
_NOTHING_SERVED = bytes(SLOT_COUNT)

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
    """The version of a plain spec the cluster fast path may run, or None.

    Commands without keys run as they are; commands with one key at a fixed
    position run once the session found the key's slot served; any other keyed
    command is left to the general path.  A run handler is wrapped so that a run
    stops before the first request whose key is not served here.
    """
    if spec.movable_keys:
        return None
    if spec.first_key <= 0:
        if any("not_key" not in ks.get("flags", ()) for ks in spec.key_specs):
            return None  # keys the legacy positions do not show
        return spec
    if spec.last_key != spec.first_key:
        return None
    if spec.run_handler is None:
        return spec
    return replace(spec, run_handler=_bounded_run(spec.run_handler, spec.first_key))


def _bounded_run(run_handler: Callable, position: int) -> Callable:
    """``run_handler`` limited to the requests whose key is served here.

    The session calls a run handler only after finding the key of ``batch[i]``
    served, and the cluster cannot change during one batch (nothing awaits), so
    the scan starts after ``batch[i]`` and reads ``served`` straight from the state.
    """

    def run(s, batch, i, out, _crc=crc_hqx, _tag=hash_tag):
        name = batch[i][0]
        end = i + 1
        count = len(batch)
        served = s.node.cluster.served
        while end < count:
            args = batch[end]
            # Requests after batch[i] may be malformed (see protocol.reader.well_formed).
            if args.__class__ is not list or len(args) <= position or args[0] != name:
                break
            key = args[position]
            if key.__class__ is not bytes or not served[_crc(_tag(key) if 123 in key else key, 0) & SLOT_MASK]:
                break
            end += 1
        if end == i + 1:
            return i  # a run of one: the session's per-request path is cheaper
        if end == count:
            return run_handler(s, batch, i, out)
        # Hand the handler only its run (copying the run, not the batch before it).
        return i + run_handler(s, batch[i:end], 0, out)

    run.__doc__ = f"{run_handler.__name__}, stopped at the first key not served here."
    return run


#: id(table) -> (table, plain specs of the cluster fast path).
_PLAIN: dict[int, tuple[CommandTable, dict[bytes, CommandSpec]]] = {}
#: id(state) -> (state, topology, per-slot bytes the fast path tests).
_SERVED: dict[int, tuple[object, Topology, bytes | bytearray]] = {}


def fast_path(table: CommandTable, state) -> tuple[dict[bytes, CommandSpec], bytes | bytearray]:
    """``(plain specs, served)`` for a session's fast path in cluster mode.

    ``plain specs`` is ``table.plain_specs`` restricted by :func:`fast_spec`;
    ``served[slot]`` is true when a one-key command on ``slot`` may run here at
    once: ``state.served``, or all zeros while the cluster is down.  Both are
    cached (per table, per topology snapshot), so a batch pays two lookups.
    """
    entry = _PLAIN.get(id(table))
    if entry is None or entry[0] is not table:
        if len(_PLAIN) >= 64:
            _PLAIN.clear()
        plain = {}
        converted: dict[int, CommandSpec | None] = {}  # each spec is listed under two names
        for name, spec in table.plain_specs.items():
            if id(spec) not in converted:
                converted[id(spec)] = fast_spec(spec)
            fast = converted[id(spec)]
            if fast is not None:
                plain[name] = fast
        entry = _PLAIN[id(table)] = (table, plain)
    topology = state.topology
    view = _SERVED.get(id(state))
    if view is None or view[0] is not state or view[1] is not topology:
        if len(_SERVED) >= 64:
            _SERVED.clear()
        # With replication every keyed request needs the coordinator's general path.
        served = state.served if cluster_ok(topology) and not state.replicated else _NOTHING_SERVED
        view = _SERVED[id(state)] = (state, topology, served)
    return entry[1], view[2]
