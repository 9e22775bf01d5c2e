"""The client listener: accept connections and hand them to the node's poller.

Each client becomes a plain non-blocking socket served by the poller (see
``poller``): on the request path every microsecond counts.
Accepted sockets get ``TCP_NODELAY`` like Redis's, and a client beyond ``maxclients``
is told ``-ERR max number of clients reached`` and closed.  Under protected mode (see
``access``) a client that does not come from a loopback address is told ``-DENIED ...``
and closed, before anything it sent is read.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdlib_socket

import trio

from .access import DENIED, protected_mode_denies
from .poller import ClientPoller
from .session import ClientSession

log = logging.getLogger(__name__)

MAX_CLIENTS_ERROR = b"-ERR max number of clients reached\r\n"
#: Connections taken per wake-up before the poller gets its turn again.
ACCEPT_BURST = 256
#: How long to stop accepting when the process is out of descriptors or memory.
RESOURCE_PAUSE = 0.1
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


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
    """Accept clients on ``listener`` forever and hand them to the poller.

    Every pending connection is taken at each wake-up.  Accepting one per trio
    scheduling round (as ``await listener.accept()`` does) would make clients that
    connect together — a benchmark's or a pool's fifty — wait behind whole bursts
    of the poller, hundreds of milliseconds for the last of them.
    """
    laddr = _format_addr(listener.getsockname())
    poller = ClientPoller(node, node.round_hooks)
    raw_listener = stdlib_socket.socket(
        listener.family, listener.type, listener.proto, fileno=os.dup(listener.fileno())
    )
    raw_listener.setblocking(False)
    with raw_listener:
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(raw_listener)
                for _ in range(ACCEPT_BURST):
                    try:
                        sock, addr = raw_listener.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in _OUT_OF_RESOURCES:
                            # Out of descriptors or buffers: let clients leave first.
                            log.error("cannot accept a client: %s", exc)
                            await trio.sleep(RESOURCE_PAUSE)
                        break  # otherwise the client went away before its accept
                    _admit(node, poller, sock, addr, laddr)


def _admit(node, poller: ClientPoller, sock: stdlib_socket.socket, addr, laddr: str) -> None:
    """Serve an accepted connection, or refuse it beyond ``maxclients`` or by
    protected mode (in that order, as Redis)."""
    sock.setblocking(False)
    node.stats.connections_received += 1
    config = node.config
    if len(node.clients) >= config["maxclients"]:
        _refuse(node, sock, MAX_CLIENTS_ERROR)
        return
    if protected_mode_denies(config["protected-mode"], config["requirepass"], addr[0]):
        _refuse(node, sock, DENIED)
        return
    try:
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - e.g. unix sockets
        pass
    poller.add(ClientSession(node, sock, node.next_client_id(), _format_addr(addr), laddr))


def _refuse(node, sock: stdlib_socket.socket, error: bytes) -> None:
    """Send ``error`` to a connection that will not be served, then close it."""
    node.stats.rejected_connections += 1
    try:
        sock.send(error)  # a new socket's buffer always takes it
        # Drop what the client already sent: closing with unread data would reset
        # the connection, which can cost the client the error it was just sent.
        sock.recv(64 * 1024)
    except OSError:  # BlockingIOError included: nothing was sent yet
        pass
    sock.close()
