"""A local respkv cluster: N node processes on one machine, started and stopped as one.

Theory of operation
-------------------
``respkv cluster up`` exists so that trying the cluster, the end-to-end tests and
the cluster benchmark all start nodes the same way, the way an operator would:
one ``respkv server --cluster`` process per node, node *i* on client port
``port + i`` (its cluster bus on ``port + i + 10000``, the server's default), with
its own data directory ``DIR/node-i`` (where the node keeps its id and the members
it knows, so a node restarted on the same directory is the same node, back in
the same cluster) and its log in ``DIR/node-i/node.log``.  Node 0 is the seed; every other node is started with
``--join`` pointing at it, and gossip spreads the rest of the membership.  The
nodes share one cluster-bus secret, generated on first use into
``DIR/cluster-secret`` (readable by its owner only) and passed to every node as
``--cluster-secret-file``; nodes started by hand join such a cluster with the
same option.

The processes are detached (a new session, stdin from ``/dev/null``, output to the
log file) so they outlive the command that started them and a Ctrl-C in its
terminal does not reach them.  What was started is recorded in
``DIR/cluster.json``: ports, directories, the exact command line and the pid of
every node.  ``down`` and ``status`` work from that record, and a pid counts as a
live node only while ``/proc/<pid>/cmdline`` still is the recorded command line,
so a pid reused by an unrelated process is never signalled.  ``remove`` has a
failed node forgotten by the cluster and marks its record removed; the other
commands then leave it out.

``up`` returns only once the cluster is usable by a stock client: every node
answers ``CLUSTER INFO`` with ``cluster_state:ok`` and ``cluster_known_nodes`` =
N, and every node's ``CLUSTER SLOTS`` shows the same slot map (what
``redis-cli --cluster check`` demands).  Anything else within the deadline (a node
that exits, a port in use, no convergence) is a :class:`LauncherError` whose
message carries each node's state and the tail of its log, and the nodes started
so far are stopped again.

The same API serves the tests and the benchmark driver: :func:`up` returns a
:class:`LocalCluster` that can also kill, restart and stop single nodes.  Talking
to the nodes uses a minimal RESP client (hiredis parses the replies) so the
launcher depends on nothing but the commands it asks for.

The launcher is a tool beside the node, not part of it: no module of the node
runtime imports it (an import-linter contract checks this), and ``respkv cluster``
(:mod:`respkv.cli`) is its only caller inside the package.  Its modules:
:mod:`~respkv.launcher.client` (one command to a node, reply parsers, probes),
:mod:`~respkv.launcher.processes` (pids, ports, logs, errors),
:mod:`~respkv.launcher.local` (:class:`LocalCluster` and its record) and
:mod:`~respkv.launcher.control` (``up``, ``down``, ``status``).  This package
exports their public names.

Nodes that require a password (``up(requirepass=...)``, or ``--requirepass`` among
the server arguments) get it from their command line; the launcher learns it the
same way, keeps it in the record (written readable by its owner only) and sends
``AUTH`` first on every connection it opens, so ``up``, ``status`` and
:meth:`LocalCluster.wait_ready` work alike with and without one.
"""

from ..cluster.gossip import BUS_PORT_OFFSET
from .client import (
    NodeLine,
    NodeReport,
    ReplyError,
    command,
    parse_cluster_nodes,
    parse_info,
    probe,
    requirepass_of,
    slot_map,
    slots_covered,
)
from .control import (
    ClusterStatus,
    MemberStatus,
    connect_hint,
    down,
    ensure_secret_file,
    format_status,
    plan,
    remove,
    status,
    up,
)
from .local import (
    DEFAULT_DIR,
    DEFAULT_NODES,
    DEFAULT_PORT,
    DEFAULT_STOP_TIMEOUT,
    DEFAULT_UP_TIMEOUT,
    LOG_FILE,
    ROUTINGS,
    STATE_FILE,
    LocalCluster,
    NodeRecord,
    node_argv,
)
from .moves import MoveProgress, add, cluster_moves, move_progress, progress_line, restart, wait_for_moves
from .processes import (
    DEFAULT_HOST,
    ClusterRunning,
    LauncherError,
    PortInUse,
    find_free_base_port,
    port_is_free,
    process_matches,
)

__all__ = [
    "BUS_PORT_OFFSET",
    "DEFAULT_DIR",
    "DEFAULT_HOST",
    "DEFAULT_NODES",
    "DEFAULT_PORT",
    "DEFAULT_STOP_TIMEOUT",
    "DEFAULT_UP_TIMEOUT",
    "LOG_FILE",
    "ROUTINGS",
    "STATE_FILE",
    "ClusterRunning",
    "ClusterStatus",
    "LauncherError",
    "LocalCluster",
    "MemberStatus",
    "MoveProgress",
    "NodeLine",
    "NodeRecord",
    "NodeReport",
    "PortInUse",
    "ReplyError",
    "add",
    "cluster_moves",
    "command",
    "connect_hint",
    "down",
    "ensure_secret_file",
    "find_free_base_port",
    "format_status",
    "move_progress",
    "node_argv",
    "parse_cluster_nodes",
    "parse_info",
    "plan",
    "port_is_free",
    "probe",
    "process_matches",
    "progress_line",
    "remove",
    "requirepass_of",
    "restart",
    "slot_map",
    "slots_covered",
    "status",
    "up",
    "wait_for_moves",
]
