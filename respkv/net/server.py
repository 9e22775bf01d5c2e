"""The client listener: accept connections and run one session task per client.

Accepts with trio's socket layer, then hands each client to the node's poller as a
plain non-blocking socket (see ``poller``): on the request path every microsecond
counts.
Accepted sockets get ``TCP_NODELAY`` like Redis's, and a client beyond ``maxclients``
is told ``-ERR max number of clients reached`` and closed.
"""

from __future__ import annotations

import logging
import socket as stdlib_socket

import trio

from .poller import ClientPoller
from .session import ClientSession

log = logging.getLogger(__name__)

MAX_CLIENTS_ERROR = b"-ERR max number of clients reached\r\n"


async def open_listener(bind: str, port: int, backlog: int = 511) -> trio.socket.SocketType:
    """A listening TCP socket on ``bind:port`` (port 0 picks a free one)."""
    family = trio.socket.AF_INET6 if ":" in bind else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await sock.bind((bind, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _format_addr(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_clients(node, listener: trio.socket.SocketType, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept clients on ``listener`` forever and hand them to the poller."""
    laddr = _format_addr(listener.getsockname())
    poller = ClientPoller(node)
    async with trio.open_nursery() as nursery:
        await nursery.start(poller.run)
        task_status.started()
        while True:
            sock, addr = await listener.accept()
            node.stats.connections_received += 1
            if len(node.clients) >= node.config["maxclients"]:
                node.stats.rejected_connections += 1
                nursery.start_soon(_refuse, sock)
                continue
            try:
                sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - e.g. unix sockets
                pass
            raw = stdlib_socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            raw.setblocking(False)
            poller.add(ClientSession(node, raw, node.next_client_id(), _format_addr(addr), laddr))


async def _refuse(sock: trio.socket.SocketType) -> None:
    with sock:
        with trio.move_on_after(1):
            try:
                await sock.send(MAX_CLIENTS_ERROR)
            except OSError:
                pass
