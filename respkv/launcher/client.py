"""Talking to a node: one command on a fresh connection, and reading the answers.

The launcher depends on nothing but the commands it asks for: a minimal RESP
client (hiredis parses the replies), parsers for ``INFO``-style text,
``CLUSTER NODES`` and ``CLUSTER SLOTS``, and :func:`probe`, which asks a node all
the launcher needs to know about it at once.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import hiredis

from ..keyspace.slots import SLOT_COUNT


class ReplyError(Exception):
    """A node answered a command with an error reply."""


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
            password: str | None = None, readonly: bool = False):
    """Send one command over RESP2 on a fresh connection and return the decoded reply.

    With ``password``, ``AUTH password`` goes first (in the same write); with
    ``readonly``, ``READONLY`` (a cluster node's ``DBSIZE`` then counts the replica
    copies it holds too, not only the keys of the slots it coordinates).  Strings
    come back as ``bytes``; an error reply (to AUTH or the command) raises
    :class:`ReplyError`; network trouble raises :class:`OSError`
    (``socket.timeout`` included).
    """
    requests = ([("AUTH", password)] if password else []) + ([("READONLY",)] if readonly else []) + [args]
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
    def host(self) -> str:
        """The client address's IP, from ``ip:port@bus-port[,hostname]``."""
        return self.address.split("@", 1)[0].rsplit(":", 1)[0]

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


def as_text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def slot_map(reply: list) -> tuple[tuple[int, int, str], ...]:
    """``CLUSTER SLOTS`` reduced to sorted ``(start, end, master)`` triples, where
    master is the node id when the reply has one, else ``ip:port``."""
    out = []
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        who = as_text(master[2]) if len(master) > 2 and master[2] else (
            f"{as_text(master[0])}:{int(master[1])}")
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
        node_id = as_text(command(host, port, "CLUSTER", "MYID", timeout=timeout, password=password))
        info = parse_info(command(host, port, "CLUSTER", "INFO", timeout=timeout, password=password))
        slots = slot_map(command(host, port, "CLUSTER", "SLOTS", timeout=timeout, password=password))
    except ConnectionRefusedError:
        return NodeReport(error="not listening")
    except (OSError, ReplyError) as exc:
        return NodeReport(error=f"{type(exc).__name__}: {exc}")
    except (ValueError, TypeError, IndexError) as exc:
        return NodeReport(error=f"unexpected reply: {exc}")
    return NodeReport(node_id=node_id, info=info, slots=slots)
