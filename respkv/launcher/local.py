"""A local cluster as a value: the record of its nodes, and the processes behind it.

:class:`LocalCluster` is what ``DIR/cluster.json`` records (ports, directories, the
exact command line and the pid of every node) plus, for the nodes this process
started, their :class:`subprocess.Popen` objects.  It starts, signals and stops
single nodes and waits until the cluster is ready; :mod:`respkv.launcher.control`
builds ``up``, ``down`` and ``status`` on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..cluster.gossip import BUS_PORT_OFFSET
from ..cluster.identity import SECRET_FILE
from .client import NodeReport, probe, requirepass_of
from .processes import ClusterRunning, LauncherError, check_ports_free, process_matches, tail_file

#: Where ``respkv cluster`` keeps its nodes unless told otherwise (relative to the
#: current directory).
DEFAULT_DIR = "respkv-cluster"
DEFAULT_NODES = 3
DEFAULT_PORT = 7000
#: Seconds ``up`` waits for the cluster to converge.
DEFAULT_UP_TIMEOUT = 60.0
#: Seconds ``down`` waits after SIGTERM before it sends SIGKILL.
DEFAULT_STOP_TIMEOUT = 10.0

#: The record of what ``up`` started, inside the cluster directory.
STATE_FILE = "cluster.json"
#: Each node's combined stdout and stderr, inside its data directory.
LOG_FILE = "node.log"
ROUTINGS = ("redirect", "proxy")

_STATE_VERSION = 1
_POLL_INTERVAL = 0.1


@dataclass
class NodeRecord:
    """One node as the launcher started it."""

    index: int
    port: int
    bus_port: int
    dir: str
    argv: list[str]
    pid: int | None = None
    node_id: str | None = None
    #: Removed from the cluster for good (``respkv cluster remove``): kept in the
    #: record (its name, ports and directory stay taken) but never started again.
    removed: bool = False

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def log(self) -> str:
        return os.path.join(self.dir, LOG_FILE)

    def to_json(self) -> dict:
        return {
            "index": self.index, "port": self.port, "bus_port": self.bus_port,
            "dir": self.dir, "argv": self.argv, "pid": self.pid, "node_id": self.node_id,
            "removed": self.removed,
        }

    @classmethod
    def from_json(cls, data: dict) -> "NodeRecord":
        return cls(
            index=int(data["index"]), port=int(data["port"]), bus_port=int(data["bus_port"]),
            dir=str(data["dir"]), argv=[str(a) for a in data["argv"]],
            pid=data.get("pid"), node_id=data.get("node_id"), removed=bool(data.get("removed", False)),
        )


def node_argv(
    *,
    python: str,
    host: str,
    port: int,
    node_dir: str,
    join: Sequence[str] = (),
    rf: int | None = None,
    routing: str | None = None,
    node_timeout: int | None = None,
    server_args: Sequence[str] = (),
    secret_file: str | None = None,
) -> list[str]:
    """The command line of one node: ``respkv server --cluster ...`` run by
    ``python`` (the interpreter that runs the launcher, so both use one install).
    Options left as ``None`` are not passed, leaving the server's defaults."""
    argv = [python, "-m", "respkv", "server", "--cluster", "--bind", host,
            "--port", str(port), "--dir", node_dir]
    if secret_file is not None:
        argv += ["--cluster-secret-file", secret_file]
    for seed in join:
        argv += ["--join", seed]
    if rf is not None:
        argv += ["--rf", str(rf)]
    if routing is not None:
        argv += ["--routing", routing]
    if node_timeout is not None:
        argv += ["--node-timeout", str(node_timeout)]
    argv += list(server_args)
    return argv


@dataclass
class LocalCluster:
    """A set of local node processes recorded in ``directory/cluster.json``.

    Instances made by :func:`up` (or :meth:`start_node`) in this process also hold
    the :class:`subprocess.Popen` objects, so exited nodes are reaped; instances
    loaded from the record work through pids alone.
    """

    directory: str
    host: str
    nodes: list[NodeRecord]
    options: dict = field(default_factory=dict)
    _procs: dict[int, subprocess.Popen] = field(default_factory=dict, repr=False)

    # -- the record ------------------------------------------------------------

    def new_record(self, index: int, port: int, join: Sequence[str], python: str) -> NodeRecord:
        """The record of node ``index`` on client ``port``, started with the
        cluster's options (``rf``, ``routing``, ``node_timeout``, ``server_args``)
        and its bus secret, joining ``join``."""
        options = self.options
        node_dir = os.path.join(self.directory, f"node-{index}")
        argv = node_argv(python=python, host=self.host, port=port, node_dir=node_dir, join=join,
                         rf=options.get("rf"), routing=options.get("routing"),
                         node_timeout=options.get("node_timeout"), server_args=options.get("server_args", ()),
                         secret_file=os.path.join(self.directory, SECRET_FILE))
        return NodeRecord(index, port, port + BUS_PORT_OFFSET, node_dir, argv)

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

    @property
    def members(self) -> list[NodeRecord]:
        """The nodes that belong to the cluster: every record not removed."""
        return [n for n in self.nodes if not n.removed]

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def seed(self) -> NodeRecord:
        return self.nodes[0]

    @property
    def password(self) -> str | None:
        """The password the nodes require: as recorded by :func:`up`, else what the
        recorded server arguments set (None: no password)."""
        if "password" in self.options:
            return self.options["password"] or None
        return requirepass_of(self.options.get("server_args") or ())

    def save(self) -> None:
        """Write the record atomically (temporary file, then rename), readable by
        its owner only: it holds the nodes' command lines and password.

        Several launchers may hold copies of one record at once (two ``respkv
        cluster remove`` or ``add`` runs, a tool's cluster while an operator
        removes a node), each loaded before the others saved.  Removal is for
        good and nodes are only appended, so under an exclusive lock the saved
        record's removals and added nodes are merged into this copy before it is
        written: no save undoes another launcher's removal or addition.
        """
        with self._locked():
            self._write()

    def add_record(self, join: Sequence[str], python: str) -> NodeRecord:
        """Record a new node (:meth:`new_record`) with the next index and the port
        after the highest recorded one, and save it, under the record's lock: the
        nodes another launcher added meanwhile are adopted first, so two
        ``respkv cluster add`` runs at once never take one index or port."""
        with self._locked():
            index = len(self.nodes)
            port = max(n.port for n in self.nodes) + 1
            if port + BUS_PORT_OFFSET > 65535:
                raise LauncherError(f"port {port} leaves no room for its bus port")
            record = self.new_record(index, port, join, python)
            self.nodes.append(record)
            self._write()
        return record

    @contextlib.contextmanager
    def _locked(self):
        """Hold the record's exclusive lock, with what other launchers saved adopted."""
        os.makedirs(self.directory, exist_ok=True)
        with open(self.state_path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            self._adopt_saved()
            yield

    def _write(self) -> None:
        data = {
            "version": _STATE_VERSION, "host": self.host, "options": self.options,
            "nodes": [n.to_json() for n in self.nodes],
        }
        tmp = self.state_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when an old temporary file was left behind
        with open(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.state_path)

    def _adopt_saved(self) -> None:
        """Mark removed here every node the saved record marks removed, and add
        the nodes it has beyond this copy's (an unreadable record is replaced by
        this copy)."""
        try:
            saved = LocalCluster.load(self.directory)
        except LauncherError:
            return
        on_disk_nodes = saved.nodes if saved is not None else []
        for node, on_disk in zip(self.nodes, on_disk_nodes):
            if on_disk.removed and not node.removed and on_disk.name == node.name:
                node.removed, node.pid = True, None
        self.nodes.extend(on_disk_nodes[len(self.nodes):])

    def mark_removed(self, index: int) -> None:
        """Mark node ``index`` removed, for good (see :meth:`save`)."""
        node = self.nodes[index]
        node.removed, node.pid = True, None
        self.save()

    @classmethod
    def load(cls, directory: str) -> "LocalCluster | None":
        """The cluster recorded in ``directory``, or None when there is no record."""
        directory = os.path.abspath(directory)
        path = os.path.join(directory, STATE_FILE)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LauncherError(f"cannot read {path}: {exc}") from None
        try:
            if data.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return cls(
                directory=directory, host=str(data["host"]),
                nodes=[NodeRecord.from_json(n) for n in data["nodes"]],
                options=dict(data.get("options") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LauncherError(f"{path} is not a cluster record: {exc}") from None

    # -- processes -------------------------------------------------------------

    def is_running(self, index: int) -> bool:
        """Whether node ``index`` runs (and, for our own children, reap it if not)."""
        node = self.nodes[index]
        proc = self._procs.get(index)
        if proc is not None and proc.pid == node.pid:
            return proc.poll() is None
        return node.pid is not None and process_matches(node.pid, node.argv)

    def running(self) -> list[NodeRecord]:
        return [n for n in self.nodes if self.is_running(n.index)]

    def process(self, index: int) -> subprocess.Popen | None:
        """The process object of node ``index`` if this process started it."""
        proc = self._procs.get(index)
        return proc if proc is not None and proc.pid == self.nodes[index].pid else None

    def exit_status(self, index: int) -> int | None:
        """The exit status of a node this process started, once it has exited."""
        proc = self._procs.get(index)
        return None if proc is None else proc.poll()

    def log_tail(self, index: int, lines: int = 20) -> str:
        return tail_file(self.nodes[index].log, lines)

    def start_node(self, index: int, *, join_running: bool = True) -> NodeRecord:
        """Start (or restart) node ``index`` on its recorded ports and directory.

        The node runs detached: its own session, stdin from ``/dev/null``,
        stdout and stderr appended to its log.  Restarting the seed while other
        nodes run points its ``--join`` at a running node (unless
        ``join_running`` is False): the node would find its cluster from the
        membership file in its directory anyway, but a ``--join`` also finds
        members whose addresses changed while it was down.
        """
        node = self.nodes[index]
        if node.removed:
            raise LauncherError(f"{node.name} was removed from the cluster; it is not started again")
        if self.is_running(index):
            raise ClusterRunning(f"{node.name} is already running (pid {node.pid})")
        check_ports_free(node, self.host)
        if join_running and "--join" not in node.argv:
            others = [n for n in self.running() if n.index != index]
            if others:
                node.argv = node.argv + ["--join", f"{self.host}:{others[0].port}"]
        os.makedirs(node.dir, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # The node imports the same respkv as the launcher, installed or not.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p
        )
        with open(node.log, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} respkv cluster: starting {node.name}: "
                      f"{shlex.join(node.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                node.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=node.dir, env=env, start_new_session=True, close_fds=True,
            )
        node.pid = proc.pid
        self._procs[index] = proc
        self.save()
        return node

    def signal_node(self, index: int, signum: int = signal.SIGKILL, timeout: float = 10.0) -> bool:
        """Send ``signum`` to node ``index`` and wait until it is gone.

        Returns False if it was not running; raises :class:`LauncherError` if it
        outlives ``timeout``.
        """
        node = self.nodes[index]
        if not self.is_running(index):
            return False
        try:
            os.kill(node.pid, signum)
        except ProcessLookupError:
            pass
        if not self._wait_gone([index], time.monotonic() + timeout):
            raise LauncherError(f"{node.name} (pid {node.pid}) still runs {timeout}s after "
                                f"{signal.Signals(signum).name}")
        return True

    def kill_node(self, index: int, timeout: float = 10.0) -> bool:
        """``kill -9`` node ``index`` and wait until it is gone."""
        return self.signal_node(index, signal.SIGKILL, timeout)

    def _wait_gone(self, indexes: Iterable[int], deadline: float) -> bool:
        pending = list(indexes)
        while True:
            pending = [i for i in pending if self.is_running(i)]
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> list[NodeRecord]:
        """Stop every running node: SIGTERM, wait up to ``timeout``, then SIGKILL.

        Returns copies of the records of the nodes that were running (with
        their pids).  Idempotent.
        """
        running = self.running()
        stopped = [dataclasses.replace(n, argv=list(n.argv)) for n in running]
        for node in running:
            try:
                os.kill(node.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        indexes = [n.index for n in running]
        if not self._wait_gone(indexes, time.monotonic() + timeout):
            for index in indexes:
                if self.is_running(index):
                    try:
                        os.kill(self.nodes[index].pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if not self._wait_gone(indexes, time.monotonic() + 10.0):
                left = ", ".join(f"{self.nodes[i].name} (pid {self.nodes[i].pid})"
                                 for i in indexes if self.is_running(i))
                raise LauncherError(f"could not stop {left}")
        for node in self.nodes:
            node.pid = None
        for proc in self._procs.values():
            proc.poll()  # reaps children stopped meanwhile by others (a node removed from the record)
        self._procs.clear()
        if os.path.exists(self.state_path):
            self.save()
        return stopped

    # -- readiness -------------------------------------------------------------

    def probe_all(self, timeout: float = 2.0) -> list[NodeReport]:
        return [probe(self.host, n.port, timeout, self.password) for n in self.members]

    def readiness(self, reports: Sequence[NodeReport]) -> list[str]:
        """Why the cluster is not ready yet, one line per unready node (empty = ready).

        Ready means: every node answers ``cluster_state:ok`` and
        ``cluster_known_nodes`` = N, all of them publish the same slot map, and
        every node coordinates slots in it (a node joins at ring weight 0 until
        it is connected to every member).
        """
        members = self.members
        expected = len(members)
        reference = next((r.slots for r in reports if r.error is None), None)
        masters = {who for _, _, who in reference or ()}
        problems = []
        for node, report in zip(members, reports):
            where = f"{node.name} ({self.host}:{node.port})"
            if report.error is not None:
                problems.append(f"{where}: {report.error}")
                continue
            reasons = []
            if report.state != "ok":
                reasons.append(f"cluster_state:{report.state}")
            if report.known_nodes != expected:
                reasons.append(f"cluster_known_nodes:{report.known_nodes} (want {expected})")
            if report.slots != reference:
                reasons.append("its CLUSTER SLOTS differs from the other nodes'")
            elif report.node_id not in masters and f"{self.host}:{node.port}" not in masters:
                reasons.append("it coordinates no slot yet (still joining)")
            if reasons:
                problems.append(f"{where}: " + ", ".join(reasons))
        return problems

    def _exited(self) -> list[str]:
        out = []
        for node in self.members:
            if node.pid is not None and not self.is_running(node.index):
                status = self.exit_status(node.index)
                how = "" if status is None else f" with status {status}"
                out.append(f"{node.name} (pid {node.pid}) exited{how}")
        return out

    def _failure(self, headline: str, problems: Sequence[str]) -> LauncherError:
        parts = [headline, *(f"  {p}" for p in problems)]
        for node in self.members:
            parts.append(f"--- last lines of {node.log}")
            parts.append(self.log_tail(node.index))
        return LauncherError("\n".join(parts))

    def wait_listening(self, indexes: Iterable[int], timeout: float) -> None:
        """Wait until the given nodes accept connections (raise if one exits)."""
        deadline = time.monotonic() + timeout
        pending = list(indexes)
        while pending:
            exited = self._exited()
            if exited:
                raise self._failure("a node exited while starting:", exited)
            still = []
            for index in pending:
                try:
                    with socket.create_connection((self.host, self.nodes[index].port), timeout=0.5):
                        pass
                except OSError:
                    still.append(index)
            pending = still
            if pending and time.monotonic() >= deadline:
                raise self._failure(
                    f"nodes did not listen within {timeout:.0f}s:",
                    [f"{self.nodes[i].name} ({self.host}:{self.nodes[i].port})" for i in pending],
                )
            if pending:
                time.sleep(_POLL_INTERVAL)

    def wait_ready(self, timeout: float = DEFAULT_UP_TIMEOUT) -> list[NodeReport]:
        """Poll until :meth:`readiness` finds nothing wrong; return the last reports.

        Raises :class:`LauncherError` (with every node's state and log tail) when a
        node exits or the deadline passes.  Records the node ids on success.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = self._exited()
            if exited:
                raise self._failure("a node exited before the cluster was ready:", exited)
            reports = self.probe_all(timeout=min(2.0, max(0.2, deadline - time.monotonic())))
            problems = self.readiness(reports)
            if not problems:
                for node, report in zip(self.members, reports):
                    node.node_id = report.node_id
                self.save()
                return reports
            if time.monotonic() >= deadline:
                raise self._failure(
                    f"the cluster did not become ready within {timeout:.0f}s:", problems)
            time.sleep(_POLL_INTERVAL)
