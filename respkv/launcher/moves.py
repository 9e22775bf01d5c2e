"""Changing a running local cluster: ``add``, ``leave`` (decommission), ``restart``,
and the progress of the moves they cause.

Adding a node gives it its share of the ring at once; the nodes that held those
slots then hand their keys over in the background (the ownership hand-off, see
``docs/cluster.md``).  Decommissioning a node sends it ``CLUSTER LEAVE``: it
gives up its slots, hands every key over, and once it holds nothing a
``CLUSTER FORGET`` on another member removes it; the launcher then stops it.
While keys move, every member reports its part in ``INFO replication``
(``handoff_*``), which :func:`move_progress` reads and :func:`progress_line`
draws as a bar with keys and slots done, keys per second and time left.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from .client import ReplyError, command, parse_cluster_nodes, parse_info
from .local import LocalCluster, NodeRecord
from .processes import LauncherError, check_ports_free

#: Called with a line of progress to show.
Report = Callable[[str], None]


@dataclass
class MoveProgress:
    """One member's part of the moves under way (its ``handoff_*`` fields)."""

    name: str
    running: bool
    slots_held: int
    keys_held: int
    slots_done: int
    slots_total: int
    keys_done: int
    keys_total: int
    keys_per_sec: int
    eta_seconds: int

    @property
    def idle(self) -> bool:
        return not self.running and not self.keys_held and not self.slots_held


def move_progress(name: str, host: str, port: int, password: str | None, timeout: float = 2.0) -> MoveProgress | None:
    """``name``'s hand-off as its INFO tells it; None if it did not answer or
    does not replicate (``replication-factor`` 1: nothing moves)."""
    try:
        info = parse_info(command(host, port, "INFO", "replication", timeout=timeout, password=password))
    except (OSError, ReplyError, ValueError):
        return None
    if "handoff_running" not in info:
        return None
    number = lambda field: int(info.get(field, "0"))  # noqa: E731
    return MoveProgress(name, bool(number("handoff_running")), number("handoff_slots_held"),
                        number("handoff_keys_held"), number("handoff_move_slots_done"),
                        number("handoff_move_slots_total"), number("handoff_move_keys_done"),
                        number("handoff_move_keys_total"), number("handoff_keys_per_sec"),
                        number("handoff_eta_seconds"))


def progress_line(p: MoveProgress, width: int = 24) -> str:
    """``node-1 [#########---------------]  37%  1200/3300 keys  24/64 slots  950 keys/s  ETA 2 s``."""
    total = max(p.keys_total, p.keys_done + p.keys_held)
    fraction = p.keys_done / total if total else 1.0
    filled = int(round(fraction * width))
    eta = f"ETA {p.eta_seconds} s" if p.eta_seconds >= 0 else "ETA -"
    return (f"{p.name} [{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%  "
            f"{p.keys_done}/{total} keys  {p.slots_done}/{max(p.slots_total, p.slots_done)} slots  "
            f"{p.keys_per_sec} keys/s  {eta}")


def cluster_moves(cluster: LocalCluster) -> list[MoveProgress]:
    """The hand-off of every running recorded member, in record order."""
    found = []
    for node in cluster.members:
        if cluster.is_running(node.index):
            p = move_progress(node.name, cluster.host, node.port, cluster.password)
            if p is not None:
                found.append(p)
    return found


def wait_for_moves(cluster: LocalCluster, timeout: float, report: Report | None = None,
                   interval: float = 1.0) -> None:
    """Return once no running member holds keys of slots the ring gave to others
    (every move done), reporting each member's progress every ``interval`` s."""
    deadline = time.monotonic() + timeout
    while True:
        moves = cluster_moves(cluster)
        busy = [p for p in moves if not p.idle]
        if not busy:
            return
        if report is not None:
            for p in busy:
                report(progress_line(p))
        if time.monotonic() >= deadline:
            raise LauncherError(f"keys still moving after {timeout:.0f}s: "
                                + "; ".join(progress_line(p) for p in busy))
        time.sleep(interval)


def add(directory: str, count: int = 1, *, timeout: float = 60.0, wait: bool = True,
        report: Report | None = None, cluster: LocalCluster | None = None) -> list[NodeRecord]:
    """Start ``count`` new nodes in the cluster recorded in ``directory``, with the
    options it was brought up with, joined to a running member; return once the
    cluster is ready with them (and, with ``wait``, once the keys they take over
    have moved to them).  ``cluster``: the caller's instance of that record, which
    then holds the new processes (so that it reaps them)."""
    cluster = cluster if cluster is not None else _load(directory)
    running = cluster.running()
    if not running:
        raise LauncherError("no node of the cluster is running: start it first (respkv cluster up)")
    if count < 1:
        raise LauncherError("add at least one node")
    deadline = time.monotonic() + timeout
    added = []
    for _ in range(count):
        record = cluster.add_record([f"{cluster.host}:{running[0].port}"], cluster.nodes[0].argv[0])
        try:
            check_ports_free(record, cluster.host)
            cluster.start_node(record.index)
        except LauncherError:
            cluster.mark_removed(record.index)  # its index is taken for good; the node never ran
            raise
        added.append(record)
    cluster.wait_listening([n.index for n in added], max(0.0, deadline - time.monotonic()))
    cluster.wait_ready(max(0.0, deadline - time.monotonic()))
    if wait:
        wait_for_moves(cluster, max(0.0, deadline - time.monotonic()), report)
    return added


def decommission(cluster: LocalCluster, record: NodeRecord, timeout: float, report: Report | None = None) -> None:
    """Have the running ``record`` leave: ``CLUSTER LEAVE`` on it, its keys handed
    over, ``CLUSTER FORGET`` on another member once it holds nothing, every
    member rid of it; then stop it and mark it removed."""
    password = cluster.password
    others = [n for n in cluster.running() if n.index != record.index]
    if not others:
        raise LauncherError(f"{record.name} is the only running node: nothing could take its keys")
    try:
        command(cluster.host, record.port, "CLUSTER", "LEAVE", timeout=10.0, password=password)
    except ReplyError as exc:
        raise LauncherError(f"{record.name} refused CLUSTER LEAVE: {exc}") from None
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        try:
            command(cluster.host, others[0].port, "CLUSTER", "FORGET", record.node_id, timeout=10.0,
                    password=password)
            break
        except ReplyError as exc:  # refused as live until its leaving record reached that member
            handing, expired = "still handing" in str(exc), time.monotonic() >= deadline
            if handing and expired:
                raise LauncherError(_still_leaving(cluster, record, timeout)) from None
            if expired or (not handing and "live node" not in str(exc)):
                raise LauncherError(f"{others[0].name} refused CLUSTER FORGET {record.node_id}: {exc}") from None
        now = time.monotonic()
        if report is not None and now - last_report >= 1.0:
            last_report = now
            p = move_progress(record.name, cluster.host, record.port, password)
            if p is not None:
                report(progress_line(p))
        time.sleep(0.2)
    wait_forgotten(cluster, record.node_id, others, max(1.0, deadline - time.monotonic()))
    cluster.signal_node(record.index, signal.SIGTERM, timeout=max(1.0, deadline - time.monotonic()))


def _still_leaving(cluster: LocalCluster, record: NodeRecord, timeout: float) -> str:
    """What a removal that ran out of time while ``record`` hands its keys over
    tells the operator: the node goes on leaving, and how to wait for it."""
    progress = move_progress(record.name, cluster.host, record.port, cluster.password)
    held = f" ({progress.keys_held} keys still held)" if progress is not None else ""
    return (f"{record.name} is still handing its keys over after {timeout:g} s{held}; it goes on leaving: "
            f"run 'respkv cluster remove {record.name}' again to wait for the rest, or give a longer --timeout")


def wait_forgotten(cluster: LocalCluster, node_id: str, members: list[NodeRecord], timeout: float) -> None:
    """Return once no member of ``members`` lists ``node_id`` in ``CLUSTER NODES``.

    Two members are not waited for: one that stopped meanwhile (removed at the
    same time, or failed, and then the operator's to remove) and one that is
    leaving itself (its own line holds no slot).  When two nodes leave at once,
    the one forgotten first no longer hears the cluster's gossip, so it may
    never learn that the other was forgotten too.
    """
    deadline = time.monotonic() + timeout
    pending = list(members)
    while pending:
        still = []
        for node in pending:
            try:
                lines = parse_cluster_nodes(command(cluster.host, node.port, "CLUSTER", "NODES",
                                                    timeout=2.0, password=cluster.password))
            except (OSError, ReplyError, ValueError):
                if cluster.is_running(node.index):
                    still.append(node)
                continue
            leaving = any("myself" in line.flags and not line.slots for line in lines)
            if not leaving and any(line.node_id == node_id for line in lines):
                still.append(node)
        pending = still
        if pending and time.monotonic() >= deadline:
            raise LauncherError(f"{', '.join(n.name for n in pending)} still list {node_id} after {timeout:.0f}s")
        if pending:
            time.sleep(0.1)


def restart(directory: str, which: str, *, timeout: float = 60.0) -> NodeRecord:
    """Stop (SIGTERM) and start again the recorded node ``which`` (name, port or
    id) on its directory, and wait until the cluster is ready."""
    cluster = _load(directory)
    record = find(cluster, which)
    if record is None or record.removed:
        raise LauncherError(f"no node {which} in {cluster.directory}" if record is None
                            else f"{record.name} was removed from the cluster")
    if cluster.is_running(record.index):
        cluster.signal_node(record.index, signal.SIGTERM, timeout=timeout)
    cluster.start_node(record.index)
    cluster.wait_listening([record.index], timeout)
    cluster.wait_ready(timeout)
    return record


def find(cluster: LocalCluster, which: str) -> NodeRecord | None:
    """The recorded node named ``which`` (``node-3``), on that client port, or with that id."""
    return next((n for n in cluster.nodes if which in (n.name, str(n.port), n.node_id)), None)


def _load(directory: str) -> LocalCluster:
    cluster = LocalCluster.load(directory)
    if cluster is None:
        raise LauncherError(f"no cluster recorded in {directory}")
    return cluster
