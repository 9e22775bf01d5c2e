"""A local respkv cluster: N node processes on one machine, started and stopped as one.

Theory of operation
-------------------
``respkv cluster up`` exists so that trying the cluster, the end-to-end tests and
the cluster benchmark all start nodes the same way, the way an operator would:
one ``respkv server --cluster`` process per node, node *i* on client port
``port + i`` (its cluster bus on ``port + i + 10000``, the server's default), with
its own data directory ``DIR/node-i`` (where the node keeps its id, so a node
restarted on the same directory is the same node) and its log in
``DIR/node-i/node.log``.  Node 0 is the seed; every other node is started with
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
so a pid reused by an unrelated process is never signalled.

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

Nodes that require a password (``up(requirepass=...)``, or ``--requirepass`` among
the server arguments) get it from their command line; the launcher learns it the
same way, keeps it in the record (written readable by its owner only) and sends
``AUTH`` first on every connection it opens, so ``up``, ``status`` and
:meth:`LocalCluster.wait_ready` work alike with and without one.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import hiredis

from .gossip import BUS_PORT_OFFSET
from .identity import SECRET_FILE, write_secret_file
from .slots import SLOT_COUNT

#: Where ``respkv cluster`` keeps its nodes unless told otherwise (relative to the
#: current directory).
DEFAULT_DIR = "respkv-cluster"
DEFAULT_NODES = 3
DEFAULT_PORT = 7000
#: The address the nodes listen on and advertise.
DEFAULT_HOST = "127.0.0.1"
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


class LauncherError(RuntimeError):
    """A cluster could not be started, inspected or stopped as asked."""


class ClusterRunning(LauncherError):
    """``up`` was asked for a directory whose cluster still runs."""


class PortInUse(LauncherError):
    """A port a node needs is taken by another listener."""


class ReplyError(Exception):
    """A node answered a command with an error reply."""


# --------------------------------------------------------------------------- #
# Talking to a node
# --------------------------------------------------------------------------- #


def _encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            arg = str(arg)
        if isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def command(host: str, port: int, *args: str | bytes | int, timeout: float = 2.0,
            password: str | None = None):
    """Send one command over RESP2 on a fresh connection and return the decoded reply.

    With ``password``, ``AUTH password`` goes first (in the same write).  Strings
    come back as ``bytes``; an error reply (to AUTH or the command) raises
    :class:`ReplyError`; network trouble raises :class:`OSError`
    (``socket.timeout`` included).
    """
    requests = [("AUTH", password), args] if password else [args]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(_encode(r) for r in requests))
        reader = hiredis.Reader()
        for _ in requests:
            reply = _read_reply(sock, reader, host, port)
            if isinstance(reply, hiredis.ReplyError):
                raise ReplyError(str(reply))
        return reply


def _read_reply(sock: socket.socket, reader: hiredis.Reader, host: str, port: int):
    while (reply := reader.gets()) is False:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError(f"{host}:{port} closed the connection mid-reply")
        reader.feed(data)
    return reply


def requirepass_of(server_args: Sequence[str]) -> str | None:
    """The password ``--requirepass X`` / ``--requirepass=X`` in ``server_args`` sets
    (the last one, as the server takes it); None when there is none or it is empty."""
    password = None
    for i, arg in enumerate(server_args):
        if arg == "--requirepass" and i + 1 < len(server_args):
            password = server_args[i + 1]
        elif arg.startswith("--requirepass="):
            password = arg.partition("=")[2]
    return password or None


def parse_info(text: bytes | str) -> dict[str, str]:
    """``field:value`` lines (``INFO``, ``CLUSTER INFO``) as a dict; ``#`` lines skipped."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, value = line.split(":", 1)
            fields[name] = value
    return fields


@dataclass(frozen=True)
class NodeLine:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    address: str
    flags: tuple[str, ...]
    master: str
    link: str
    slot_ranges: tuple[tuple[int, int], ...]

    @property
    def port(self) -> int:
        """The client port, from ``ip:port@bus-port[,hostname]``."""
        return int(self.address.split("@", 1)[0].rsplit(":", 1)[1])

    @property
    def slots(self) -> int:
        return sum(end - start + 1 for start, end in self.slot_ranges)

    @property
    def failed(self) -> bool:
        """Flagged ``fail`` (a cluster-wide verdict), not merely ``fail?``."""
        return "fail" in self.flags


def parse_cluster_nodes(text: bytes | str) -> list[NodeLine]:
    """Parse ``CLUSTER NODES`` text.  Slot tokens are ``N`` or ``A-B``; the
    ``[slot->-id]``/``[slot-<-id]`` tokens of slots being moved are skipped."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise ValueError(f"malformed CLUSTER NODES line: {raw!r}")
        ranges = []
        for token in fields[8:]:
            if token.startswith("["):
                continue
            start, _, end = token.partition("-")
            ranges.append((int(start), int(end or start)))
        lines.append(NodeLine(
            node_id=fields[0], address=fields[1], flags=tuple(fields[2].split(",")),
            master=fields[3], link=fields[7], slot_ranges=tuple(ranges),
        ))
    return lines


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def slot_map(reply: list) -> tuple[tuple[int, int, str], ...]:
    """``CLUSTER SLOTS`` reduced to sorted ``(start, end, master)`` triples, where
    master is the node id when the reply has one, else ``ip:port``."""
    out = []
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        who = _text(master[2]) if len(master) > 2 and master[2] else (
            f"{_text(master[0])}:{int(master[1])}")
        out.append((start, end, who))
    return tuple(sorted(out))


def slots_covered(reply: list) -> int:
    """How many distinct slots a ``CLUSTER SLOTS`` reply assigns to some node."""
    covered = bytearray(SLOT_COUNT)
    for entry in reply:
        covered[int(entry[0]) : int(entry[1]) + 1] = b"\x01" * (int(entry[1]) - int(entry[0]) + 1)
    return sum(covered)


@dataclass
class NodeReport:
    """What one probe of a node found (``error`` set when it could not be asked)."""

    error: str | None = None
    node_id: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    slots: tuple[tuple[int, int, str], ...] = ()

    @property
    def state(self) -> str | None:
        return self.info.get("cluster_state")

    @property
    def known_nodes(self) -> int | None:
        value = self.info.get("cluster_known_nodes")
        return int(value) if value is not None and value.isdigit() else None


def probe(host: str, port: int, timeout: float = 2.0, password: str | None = None) -> NodeReport:
    """Ask a node ``CLUSTER MYID``, ``CLUSTER INFO`` and ``CLUSTER SLOTS``."""
    try:
        node_id = _text(command(host, port, "CLUSTER", "MYID", timeout=timeout, password=password))
        info = parse_info(command(host, port, "CLUSTER", "INFO", timeout=timeout, password=password))
        slots = slot_map(command(host, port, "CLUSTER", "SLOTS", timeout=timeout, password=password))
    except ConnectionRefusedError:
        return NodeReport(error="not listening")
    except (OSError, ReplyError) as exc:
        return NodeReport(error=f"{type(exc).__name__}: {exc}")
    except (ValueError, TypeError, IndexError) as exc:
        return NodeReport(error=f"unexpected reply: {exc}")
    return NodeReport(node_id=node_id, info=info, slots=slots)


# --------------------------------------------------------------------------- #
# Processes and ports
# --------------------------------------------------------------------------- #


def _proc_available() -> bool:
    return os.path.isdir("/proc/self")


def process_matches(pid: int, argv: Sequence[str]) -> bool:
    """Whether ``pid`` is alive and still runs exactly ``argv``.

    Zombies (empty command line) and pids reused by another program do not
    match.  Without ``/proc`` only liveness can be checked.
    """
    if _proc_available():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return False
        return bool(raw) and raw.rstrip(b"\0").split(b"\0") == [os.fsencode(a) for a in argv]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (SO_REUSEADDR, as servers
    bind, so connections lingering in TIME_WAIT do not count as "in use")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _check_ports_free(node: NodeRecord, host: str) -> None:
    """Raise :class:`PortInUse` unless both of ``node``'s ports are free on ``host``."""
    for port, what in ((node.port, "client"), (node.bus_port, "cluster bus")):
        if not port_is_free(host, port):
            raise PortInUse(
                f"port {port} ({what} port of {node.name}) is in use on {host}; "
                "choose another --port or stop whatever listens there"
            )


def find_free_base_port(count: int, host: str = DEFAULT_HOST, attempts: int = 200) -> int:
    """A port P such that P..P+count-1 and their bus ports (+10000) are all free."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + count - 1 + BUS_PORT_OFFSET > 65535:
            continue
        wanted = [base + i for i in range(count)]
        wanted += [p + BUS_PORT_OFFSET for p in wanted]
        if all(port_is_free(host, p) for p in wanted):
            return base
    raise LauncherError(f"found no {count} consecutive free ports on {host}")


def _tail(path: str, lines: int = 20, limit: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- #
# The cluster
# --------------------------------------------------------------------------- #


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
        }

    @classmethod
    def from_json(cls, data: dict) -> "NodeRecord":
        return cls(
            index=int(data["index"]), port=int(data["port"]), bus_port=int(data["bus_port"]),
            dir=str(data["dir"]), argv=[str(a) for a in data["argv"]],
            pid=data.get("pid"), node_id=data.get("node_id"),
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

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

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
        its owner only: it holds the nodes' command lines and password."""
        os.makedirs(self.directory, exist_ok=True)
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
        return _tail(self.nodes[index].log, lines)

    def start_node(self, index: int) -> NodeRecord:
        """Start (or restart) node ``index`` on its recorded ports and directory.

        The node runs detached: its own session, stdin from ``/dev/null``,
        stdout and stderr appended to its log.  Restarting the seed while other
        nodes run points its ``--join`` at a running node, since the seed's
        original command line has nobody to join.
        """
        node = self.nodes[index]
        if self.is_running(index):
            raise ClusterRunning(f"{node.name} is already running (pid {node.pid})")
        _check_ports_free(node, self.host)
        if "--join" not in node.argv:
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
        self._procs.clear()
        if os.path.exists(self.state_path):
            self.save()
        return stopped

    # -- readiness -------------------------------------------------------------

    def probe_all(self, timeout: float = 2.0) -> list[NodeReport]:
        return [probe(self.host, n.port, timeout, self.password) for n in self.nodes]

    def readiness(self, reports: Sequence[NodeReport]) -> list[str]:
        """Why the cluster is not ready yet, one line per unready node (empty = ready).

        Ready means: every node answers ``cluster_state:ok`` and
        ``cluster_known_nodes`` = N, and all of them publish the same slot map.
        """
        expected = len(self.nodes)
        reference = next((r.slots for r in reports if r.error is None), None)
        problems = []
        for node, report in zip(self.nodes, reports):
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
            if reasons:
                problems.append(f"{where}: " + ", ".join(reasons))
        return problems

    def _exited(self) -> list[str]:
        out = []
        for node in self.nodes:
            if node.pid is not None and not self.is_running(node.index):
                status = self.exit_status(node.index)
                how = "" if status is None else f" with status {status}"
                out.append(f"{node.name} (pid {node.pid}) exited{how}")
        return out

    def _failure(self, headline: str, problems: Sequence[str]) -> LauncherError:
        parts = [headline, *(f"  {p}" for p in problems)]
        for node in self.nodes:
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
                for node, report in zip(self.nodes, reports):
                    node.node_id = report.node_id
                self.save()
                return reports
            if time.monotonic() >= deadline:
                raise self._failure(
                    f"the cluster did not become ready within {timeout:.0f}s:", problems)
            time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------- #
# up / down / status
# --------------------------------------------------------------------------- #


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
    records = []
    for i in range(nodes):
        node_dir = os.path.join(directory, f"node-{i}")
        argv = node_argv(
            python=python, host=host, port=port + i, node_dir=node_dir,
            join=[] if i == 0 else [f"{host}:{port}"], rf=rf, routing=routing,
            node_timeout=node_timeout, server_args=server_args,
            secret_file=os.path.join(directory, SECRET_FILE),
        )
        records.append(NodeRecord(i, port + i, port + i + BUS_PORT_OFFSET, node_dir, argv))
    options = {"rf": rf, "routing": routing, "node_timeout": node_timeout,
               "server_args": list(server_args)}
    return LocalCluster(directory=directory, host=host, nodes=records, options=options)


def ensure_secret_file(directory: str) -> str:
    """The cluster's bus secret file in ``directory``, generated on first use.

    Every node of the cluster reads it (``--cluster-secret-file``), so they prove
    membership to each other with one secret; an existing file is kept, so a
    cluster brought up again on the same directory keeps its secret.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SECRET_FILE)
    if not os.path.exists(path):
        write_secret_file(path, secrets.token_hex(32))
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
    cluster = plan(directory, nodes, port, host=host, rf=rf, routing=routing,
                   node_timeout=node_timeout, server_args=server_args, python=python)
    cluster.options["password"] = requirepass_of(server_args)
    for node in cluster.nodes:
        _check_ports_free(node, host)
    ensure_secret_file(cluster.directory)
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
    running = [cluster.is_running(n.index) for n in cluster.nodes]
    password = cluster.password
    reports: list[NodeReport | None] = [
        probe(cluster.host, n.port, timeout, password) if alive else None
        for n, alive in zip(cluster.nodes, running)
    ]
    result = ClusterStatus(cluster=cluster, running=running, reports=reports)
    for node, report in zip(cluster.nodes, reports):
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
                    key = _text(holder[2])
                    replica[key] = replica.get(key, 0) + size
        result.seen_by = node
        result.members = [MemberStatus(line, replica.get(line.node_id, 0)) for line in lines]
        result.covered = slots_covered(slots)
        break
    return result


def format_status(st: ClusterStatus) -> str:
    """The text ``respkv cluster status`` prints."""
    cluster = st.cluster
    rows = [["node", "address", "pid", "process", "state", "known nodes", "node id"]]
    for node, alive, report in zip(cluster.nodes, st.running, st.reports):
        if not alive:
            state, known, node_id = "-", "-", node.node_id or "-"
        elif report is None or report.error is not None:
            state, known, node_id = (report.error if report else "-"), "-", node.node_id or "-"
        else:
            state, known, node_id = report.state or "?", str(report.known_nodes), report.node_id
        rows.append([node.name, f"{cluster.host}:{node.port}",
                     str(node.pid) if alive else "-", "running" if alive else "stopped",
                     state, known, node_id or "-"])
    out = [f"cluster in {cluster.directory}: {sum(st.running)} of {len(cluster.nodes)} "
           f"nodes running, {'ok' if st.ok else 'NOT ok'}",
           "", _table(rows)]
    if st.seen_by is not None:
        out += ["", f"members as {st.seen_by.name} sees them (CLUSTER NODES, CLUSTER SLOTS):", ""]
        member_rows = [["node id", "address", "flags", "link", "slots", "replica slots"]]
        for m in st.members:
            member_rows.append([m.line.node_id, m.line.address, ",".join(m.line.flags),
                                m.line.link, str(m.line.slots), str(m.replica_slots)])
        out.append(_table(member_rows))
        out += ["", f"slots covered: {st.covered} of {SLOT_COUNT}"]
    elif any(st.running):
        out += ["", "no running node answered CLUSTER NODES / CLUSTER SLOTS"]
    return "\n".join(out)


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
