"""``up``, ``down``, ``status`` and ``remove``: what ``respkv cluster`` does, as functions
(``add`` and ``restart`` are in :mod:`.moves`).

:func:`up` plans the nodes (:func:`plan`), makes sure the cluster's bus secret
exists, starts node 0 (the seed), then the others with ``--join`` pointing at it,
and returns once the cluster is ready or fails with every node's state and log
tail, stopping what it started.  :func:`down` stops what a record lists,
:func:`status` asks the running nodes how they see the cluster (members, slots,
keys, moves under way), and :func:`remove` decommissions a running node or has a
failed one forgotten by the cluster (``CLUSTER FORGET``), and marks it removed in
the record.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..cluster.gossip import BUS_PORT_OFFSET
from ..cluster.identity import SECRET_FILE, write_line_atomically
from ..keyspace.slots import SLOT_COUNT
from .client import (
    NodeLine,
    NodeReport,
    ReplyError,
    as_text,
    command,
    parse_cluster_nodes,
    probe,
    requirepass_of,
    slots_covered,
)
from .local import (
    DEFAULT_DIR,
    DEFAULT_NODES,
    DEFAULT_PORT,
    DEFAULT_STOP_TIMEOUT,
    DEFAULT_UP_TIMEOUT,
    LOG_FILE,
    ROUTINGS,
    LocalCluster,
    NodeRecord,
)
from .moves import MoveProgress, Report, cluster_moves, decommission, find, progress_line, wait_forgotten
from .processes import DEFAULT_HOST, ClusterRunning, LauncherError, check_ports_free, find_free_base_port


def plan(
    directory: str,
    nodes: int,
    port: int,
    *,
    host: str = DEFAULT_HOST,
    rf: int | None = None,
    routing: str | None = None,
    node_timeout: int | None = None,
    server_args: Sequence[str] = (),
    python: str | None = None,
) -> LocalCluster:
    """The cluster :func:`up` would start, without starting anything."""
    if nodes < 1:
        raise LauncherError("a cluster needs at least one node")
    if not 0 < port or port + nodes - 1 + BUS_PORT_OFFSET > 65535:
        raise LauncherError(
            f"ports {port}..{port + nodes - 1} do not fit: their cluster bus ports "
            f"(+{BUS_PORT_OFFSET}) must stay below 65536")
    if routing is not None and routing not in ROUTINGS:
        raise LauncherError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
    if rf is not None and rf < 1:
        raise LauncherError("--rf must be at least 1")
    directory = os.path.abspath(directory)
    python = python or sys.executable
    options = {"rf": rf, "routing": routing, "node_timeout": node_timeout,
               "server_args": list(server_args)}
    cluster = LocalCluster(directory=directory, host=host, nodes=[], options=options)
    cluster.nodes = [cluster.new_record(i, port + i, [] if i == 0 else [f"{host}:{port}"], python)
                     for i in range(nodes)]
    return cluster


#: The file in a cluster's directory its nodes read their password from
#: (``requirepass-file``), readable by its owner only.
PASSWORD_FILE = "requirepass"


def without_requirepass(server_args: Sequence[str]) -> list[str]:
    """``server_args`` without ``--requirepass X`` / ``--requirepass=X``."""
    kept: list[str] = []
    skip = False
    for arg in server_args:
        if skip:
            skip = False
        elif arg == "--requirepass":
            skip = True
        elif not arg.startswith("--requirepass="):
            kept.append(arg)
    return kept


def ensure_secret_file(directory: str) -> str:
    """The cluster's bus secret file in ``directory``, generated on first use.

    Every node of the cluster reads it (``--cluster-secret-file``), so they prove
    membership to each other with one secret; an existing file is kept, so a
    cluster brought up again on the same directory keeps its secret.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SECRET_FILE)
    if not os.path.exists(path):
        write_line_atomically(path, secrets.token_hex(32))
    return path


def up(
    directory: str = DEFAULT_DIR,
    nodes: int = DEFAULT_NODES,
    port: int = DEFAULT_PORT,
    *,
    host: str = DEFAULT_HOST,
    rf: int | None = None,
    routing: str | None = None,
    node_timeout: int | None = None,
    timeout: float = DEFAULT_UP_TIMEOUT,
    server_args: Sequence[str] = (),
    python: str | None = None,
    requirepass: str | None = None,
) -> LocalCluster:
    """Start ``nodes`` local nodes on ports ``port``.. and wait until they form a
    ready cluster (see the module doc).  ``port=0`` picks free consecutive ports.
    ``requirepass`` is passed to every node (after ``server_args``); the password
    the nodes end up with, from either, is recorded and used to talk to them.

    Refuses (:class:`ClusterRunning`) while a cluster recorded in ``directory``
    still runs, and (:class:`PortInUse`) when a port is taken.  On any failure
    the nodes it started are stopped again and the error carries their log tails.
    """
    previous = LocalCluster.load(directory)
    if previous is not None:
        alive = previous.running()
        if alive:
            who = ", ".join(f"{n.name} (pid {n.pid}, port {n.port})" for n in alive)
            raise ClusterRunning(
                f"a cluster from {previous.directory} is still running: {who}; "
                f"stop it first with: respkv cluster down --dir {shlex.quote(directory)}")
    if port == 0:
        port = find_free_base_port(nodes, host)
    if requirepass is not None:
        server_args = [*server_args, f"--requirepass={requirepass}"]
    password = requirepass_of(server_args)
    if password:  # the nodes read it from a file: not on their command lines
        password_file = os.path.join(os.path.abspath(directory), PASSWORD_FILE)
        server_args = [*without_requirepass(server_args), "--requirepass-file", password_file]
    cluster = plan(directory, nodes, port, host=host, rf=rf, routing=routing,
                   node_timeout=node_timeout, server_args=server_args, python=python)
    cluster.options["password"] = password
    for node in cluster.nodes:
        check_ports_free(node, host)
    ensure_secret_file(cluster.directory)
    if password:
        write_line_atomically(password_file, password)
    deadline = time.monotonic() + timeout
    try:
        cluster.start_node(0)
        cluster.wait_listening([0], timeout)
        for index in range(1, nodes):
            cluster.start_node(index)
        cluster.wait_listening(range(nodes), max(0.0, deadline - time.monotonic()))
        cluster.wait_ready(max(0.0, deadline - time.monotonic()))
    except BaseException:
        try:
            cluster.stop(timeout=5.0)
        except LauncherError:
            pass
        raise
    return cluster


def down(directory: str = DEFAULT_DIR, timeout: float = DEFAULT_STOP_TIMEOUT) -> list[NodeRecord]:
    """Stop the cluster recorded in ``directory``; returns the nodes that ran.

    Does nothing (and returns ``[]``) when nothing is recorded or nothing runs.
    """
    cluster = LocalCluster.load(directory)
    if cluster is None:
        return []
    return cluster.stop(timeout)


@dataclass
class MemberStatus:
    """One member as ``CLUSTER NODES`` and ``CLUSTER SLOTS`` show it."""

    line: NodeLine
    #: Slots whose (live) preference list includes the node without it being
    #: the coordinator: the replica entries of ``CLUSTER SLOTS``.
    replica_slots: int
    #: Keys of the slots it coordinates (its ``DBSIZE``); None if it did not answer.
    keys: int | None = None


@dataclass
class ClusterStatus:
    """What ``respkv cluster status`` reports."""

    cluster: LocalCluster
    running: list[bool]
    reports: list[NodeReport | None]
    #: The node whose ``CLUSTER NODES``/``SLOTS`` the member table comes from.
    seen_by: NodeRecord | None = None
    members: list[MemberStatus] = field(default_factory=list)
    covered: int = 0
    #: The hand-off of each running recorded member that replicates (moves of keys).
    moves: list[MoveProgress] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            bool(self.running) and all(self.running)
            and all(r is not None and r.error is None and r.state == "ok" for r in self.reports)
        )


def status(directory: str = DEFAULT_DIR, timeout: float = 2.0) -> ClusterStatus | None:
    """Inspect the cluster recorded in ``directory`` (None when nothing is recorded)."""
    cluster = LocalCluster.load(directory)
    if cluster is None:
        return None
    members = cluster.members
    running = [cluster.is_running(n.index) for n in members]
    password = cluster.password
    reports: list[NodeReport | None] = [
        probe(cluster.host, n.port, timeout, password) if alive else None
        for n, alive in zip(members, running)
    ]
    result = ClusterStatus(cluster=cluster, running=running, reports=reports, moves=cluster_moves(cluster))
    for node, report in zip(members, reports):
        if report is None or report.error is not None:
            continue
        try:
            lines = parse_cluster_nodes(command(cluster.host, node.port, "CLUSTER", "NODES",
                                                timeout=timeout, password=password))
            slots = command(cluster.host, node.port, "CLUSTER", "SLOTS", timeout=timeout,
                            password=password)
        except (OSError, ReplyError, ValueError):
            continue
        replica: dict[str, int] = {}
        for entry in slots:
            size = int(entry[1]) - int(entry[0]) + 1
            for holder in entry[3:]:
                if len(holder) > 2:
                    key = as_text(holder[2])
                    replica[key] = replica.get(key, 0) + size
        result.seen_by = node
        result.members = [MemberStatus(line, replica.get(line.node_id, 0),
                                       _dbsize(line, timeout, password)) for line in lines]
        result.covered = slots_covered(slots)
        break
    return result


def format_status(st: ClusterStatus) -> str:
    """The text ``respkv cluster status`` prints."""
    cluster = st.cluster
    rows = [["node", "address", "pid", "process", "state", "known nodes", "node id"]]
    for node, alive, report in zip(cluster.members, st.running, st.reports):
        if not alive:
            state, known, node_id = "-", "-", node.node_id or "-"
        elif report is None or report.error is not None:
            state, known, node_id = (report.error if report else "-"), "-", node.node_id or "-"
        else:
            state, known, node_id = report.state or "?", str(report.known_nodes), report.node_id
        rows.append([node.name, f"{cluster.host}:{node.port}",
                     str(node.pid) if alive else "-", "running" if alive else "stopped",
                     state, known, node_id or "-"])
    out = [f"cluster in {cluster.directory}: {sum(st.running)} of {len(cluster.members)} "
           f"nodes running, {'ok' if st.ok else 'NOT ok'}",
           "", _table(rows)]
    removed = [n for n in cluster.nodes if n.removed]
    if removed:
        out += ["", "removed: " + ", ".join(f"{n.name} ({n.node_id or '-'})" for n in removed)]
    if st.seen_by is not None:
        out += ["", f"members as {st.seen_by.name} sees them (CLUSTER NODES, CLUSTER SLOTS):", ""]
        member_rows = [["node id", "address", "flags", "link", "slots", "replica slots", "keys"]]
        for m in st.members:
            member_rows.append([m.line.node_id, m.line.address, ",".join(m.line.flags),
                                m.line.link, str(m.line.slots), str(m.replica_slots),
                                "-" if m.keys is None else str(m.keys)])
        out.append(_table(member_rows))
        total = sum(m.keys or 0 for m in st.members)
        out += ["", f"slots covered: {st.covered} of {SLOT_COUNT}; keys: {total} "
                    "(each counted once, by the node that coordinates its slot)"]
    elif any(st.running):
        out += ["", "no running node answered CLUSTER NODES / CLUSTER SLOTS"]
    busy = [p for p in st.moves if not p.idle]
    if busy:
        out += ["", "keys moving (ownership hand-off, from each node giving keys away):", ""]
        out += ["  " + progress_line(p) for p in busy]
    elif st.moves:
        out += ["", "no keys moving"]
    return "\n".join(out)


def _dbsize(line: NodeLine, timeout: float, password: str | None) -> int | None:
    """A member's ``DBSIZE`` (the keys of the slots it coordinates), by the address
    ``CLUSTER NODES`` gives, so members started by hand count too."""
    if line.failed:
        return None
    try:
        return int(command(line.host, line.port, "DBSIZE", timeout=timeout, password=password))
    except (OSError, ReplyError, ValueError):
        return None


def remove(directory: str, which: str, timeout: float = 60.0, report: Report | None = None) -> NodeRecord | str:
    """Remove a node from the cluster recorded in ``directory`` for good.

    ``which`` is a recorded node's name (``node-3``), client port or node id, or
    the id of a member started by hand.  A running recorded node is
    decommissioned (:func:`~.moves.decommission`: it leaves, hands its keys over,
    is forgotten, then stopped).  A failed one is forgotten at once: ``CLUSTER
    FORGET`` goes to a running member, which gossips the removal.  Returns once
    every running member's ``CLUSTER NODES`` lacks the node (the record, marked
    removed, or the id of a member the launcher did not start).
    """
    cluster = LocalCluster.load(directory)
    if cluster is None:
        raise LauncherError(f"no cluster recorded in {directory}")
    record = find(cluster, which)
    if record is not None and record.removed:
        raise LauncherError(f"{record.name} was removed already")
    node_id = record.node_id if record is not None else which
    if not node_id:
        raise LauncherError(f"the node id of {record.name} was never recorded: pass the id CLUSTER NODES shows")
    if record is not None and cluster.is_running(record.index):
        decommission(cluster, record, timeout, report)
    else:
        running = [n for n in cluster.members if cluster.is_running(n.index)]
        if not running:
            raise LauncherError("no node of the cluster is running: start it first (respkv cluster up)")
        try:
            command(cluster.host, running[0].port, "CLUSTER", "FORGET", node_id, timeout=10.0,
                    password=cluster.password)
        except ReplyError as exc:
            raise LauncherError(f"{running[0].name} refused CLUSTER FORGET {node_id}: {exc}") from None
        wait_forgotten(cluster, node_id, running, timeout)
    if record is None:
        return node_id
    cluster.mark_removed(record.index)
    return record


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def connect_hint(cluster: LocalCluster) -> str:
    """How to reach a freshly started cluster, for ``up`` to print."""
    seed = cluster.seed
    rel = os.path.relpath(cluster.directory)
    where = shlex.quote(rel if not rel.startswith("..") else cluster.directory)
    # With a password, the commands ask for it rather than show it.
    askpass = " --askpass" if cluster.password else ""
    password = ', password=input("password: ")' if cluster.password else ""
    lines = [
        "Connect with a cluster-aware client"
        + (" (the nodes require the password given to cluster up):" if cluster.password else ":"),
        f"  redis-cli -c -p {seed.port}{askpass}",
        "  python -c 'from redis.cluster import RedisCluster; "
        f"rc = RedisCluster(host=\"{cluster.host}\", port={seed.port}{password}); "
        "rc.set(\"hello\", \"world\"); print(rc.get(\"hello\"))'",
    ]
    if cluster.options.get("routing") == "proxy":
        lines.append(f"  (proxy routing: plain clients work on any node too, "
                     f"e.g. redis-cli -p {seed.port}{askpass})")
    lines += [
        "",
        f"Status: respkv cluster status --dir {where}",
        f"Stop:   respkv cluster down --dir {where}",
        f"Logs:   {os.path.join(where, 'node-<i>', LOG_FILE)}",
    ]
    return "\n".join(lines)
