"""Processes, ports and logs of local nodes, and the launcher's errors.

A recorded pid counts as a live node only while ``/proc/<pid>/cmdline`` still is
the recorded command line (:func:`process_matches`), so a pid reused by an
unrelated process is never signalled.  Ports are tested the way a server binds
them, so connections lingering in TIME_WAIT do not count as "in use".
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Sequence

from ..cluster.gossip import BUS_PORT_OFFSET

#: The address the nodes listen on and advertise.
DEFAULT_HOST = "127.0.0.1"


class LauncherError(RuntimeError):
    """A cluster could not be started, inspected or stopped as asked."""


class ClusterRunning(LauncherError):
    """``up`` was asked for a directory whose cluster still runs."""


class PortInUse(LauncherError):
    """A port a node needs is taken by another listener."""


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


def check_ports_free(node, host: str) -> None:
    """Raise :class:`PortInUse` unless both ports of ``node`` (a
    :class:`~respkv.launcher.local.NodeRecord`) are free on ``host``."""
    for port, what in ((node.port, "client"), (node.bus_port, "cluster bus")):
        if not port_is_free(host, port):
            raise PortInUse(
                f"port {port} ({what} port of {node.name}) is in use on {host}; "
                "choose another --port or stop whatever listens there"
            )


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux's default if unknown)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(word) for word in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def find_free_base_port(count: int, host: str = DEFAULT_HOST, attempts: int = 200) -> int:
    """A port P such that P..P+count-1 and their bus ports (+10000) are all free.

    Candidates lie below the ephemeral range, bus ports included: the kernel never
    gives those to outgoing connections, so neither a client's connection nor its
    TIME_WAIT remains (which block a bind) can take a node's port, however many
    connections the machine has opened lately.
    """
    low, _ = ephemeral_port_range()
    first, last = 1024, low - 1 - BUS_PORT_OFFSET - (count - 1)
    if last < first:  # an unusual range: fall back to ports the kernel picks
        first, last = low, 65535 - BUS_PORT_OFFSET - (count - 1)
    chooser = random.Random()
    for _ in range(attempts):
        base = chooser.randint(first, last)
        wanted = [base + i for i in range(count)]
        wanted += [p + BUS_PORT_OFFSET for p in wanted]
        if all(port_is_free(host, p) for p in wanted):
            return base
    raise LauncherError(f"found no {count} consecutive free ports on {host}")


def tail_file(path: str, lines: int = 20, limit: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(empty log)"
