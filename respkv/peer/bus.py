"""The cluster bus: one persistent, multiplexed connection per pair of nodes.

Theory of operation
-------------------
Nodes talk on the bus port (client port + 10000 unless configured) in RESP frames
(see :mod:`respkv.peer.wire`).  Between two nodes there is exactly one connection,
used in both directions:

* **Who dials.** The node with the smaller node id dials and redials after a
  failure (with backoff); the other only accepts.  ``CLUSTER MEET`` and ``--join``
  dial an address before its id is known; that connection is kept whoever opened
  it, and if both sides happen to connect at once, the one dialed by the smaller id
  wins and the other is closed.
* **Handshake.** Before a connection serves anything, both ends prove that they
  know the cluster secret (:mod:`respkv.peer.auth`): the dialer sends ``HELLO
  <its id> <nonce>``, the acceptor answers ``HELLO <its id> <nonce> <proof>``,
  the dialer checks that proof and sends ``PROOF <proof>``, and the acceptor,
  having checked it, says ``READY``.  Only then does the connection belong to the
  :class:`PeerLink` of that peer id; a connection that fails the handshake, sends
  anything else first, or takes longer than ``CONNECT_TIMEOUT`` is closed without
  having reached the node's handler, and at most ``MAX_HANDSHAKES`` connections
  may be in their handshake at once.
* **Multiplexing and batching.** Requests carry a number; answers come back with it,
  in any order, so many requests can be in flight at once.  Frames wait in the
  link's outbox and one writer task sends everything queued with a single
  ``send_all``: under load, many requests share one system call (the replication
  path relies on this); the answers to the requests of one read leave together.
* **Serving.** Incoming requests go to the node's handler, ``handler(peer_id, op,
  args)``, which returns the answer's arguments — or an awaitable of them, run in
  the link's nursery so a slow request never blocks the frames behind it.

A link that loses its connection fails the requests waiting on it with
:class:`PeerUnavailable`; callers decide what that means (a missing ack, a hint).
"""

from __future__ import annotations

import errno
import inspect
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from . import auth, wire

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, list[bytes]], "list[bytes] | Awaitable[list[bytes]]"]

HELLO = b"HELLO"
PROOF = b"PROOF"
READY = b"READY"
DENIED = b"DENIED"
CONNECT_TIMEOUT = 2.0
#: Bus connections that may be in their handshake at once; more are closed at once.
MAX_HANDSHAKES = 64
#: Longest node id a peer may claim (ours are 40 hex digits).
MAX_NODE_ID = 64
REDIAL_MIN, REDIAL_MAX = 0.05, 1.0


class PeerUnavailable(Exception):
    """No connection to the peer, or it broke before the answer came."""


class PeerError(Exception):
    """The peer answered a request with an error."""


class _Waiter:
    """A request's answer slot: an event for ``request``, or a callback for ``request_nowait``."""

    __slots__ = ("event", "answer", "error", "callback")

    def __init__(self, callback: Callable | None = None) -> None:
        self.event = trio.Event() if callback is None else None
        self.answer: list[bytes] | None = None
        self.error: Exception | None = None
        self.callback = callback

    def settle(self, answer: list[bytes] | None, error: Exception | None) -> None:
        self.answer = answer
        self.error = error
        if self.callback is None:
            self.event.set()
            return
        try:
            self.callback(answer, error)
        except Exception:  # a bug in one caller must not end the link for all of them
            log.exception("a cluster bus answer callback failed")


class PeerLink:
    """Everything this node sends to and receives from one peer."""

    def __init__(self, bus: "ClusterBus", peer_id: str) -> None:
        self.bus = bus
        self.peer_id = peer_id
        self.stream: trio.SocketStream | None = None
        self.dialed_by: str | None = None  # node id of the side that opened the connection
        self._outbox: list[bytes] = []
        self._outbox_frames = 0  # whole frames in _outbox (a part may hold several)
        #: Bytes in ``_outbox`` and in the send under way: what the peer has not
        #: taken yet (senders of bulk traffic check it to stay bounded).
        self.backlog = 0
        self._outbox_ready = trio.Event()
        self._pending: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._closed = trio.Event()
        #: A plain socket sharing the connection, for sends made without waiting
        #: (see _enqueue); None while not connected.
        self._raw: socket.socket | None = None
        self._writing = False
        #: Frames held back while corked (see cork), None when not corked.
        self._held: list[bytes] | None = None
        self.sent_frames = 0
        #: System calls that sent frames (direct sends and the writer's sends).
        self.sends = 0
        self.received_frames = 0

    @property
    def connected(self) -> bool:
        return self.stream is not None

    # -- sending -------------------------------------------------------------------

    def _enqueue(self, frame: bytes) -> None:
        """Send ``frame`` now if the socket takes it, else queue it for the writer.

        Sending from the caller saves two trio task switches per message (waking
        the writer, then the reader on the other side sees it a switch earlier);
        on this path that bookkeeping costs more than the system call.  Frames go
        out in order: a direct send happens only while nothing is queued or being
        written by the writer task.  While the link is corked, frames wait for
        :meth:`uncork`, which sends them all at once.
        """
        held = self._held
        if held is not None:
            held.append(frame)
            return
        self._send(frame, 1)

    def _send(self, data: bytes, frames: int) -> None:
        """Send ``data`` (``frames`` whole frames) now, or queue what the socket did not take."""
        raw = self._raw
        if raw is not None and not self._outbox and not self._writing:
            try:
                sent = raw.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the writer meets the same error and ends the link
            if sent:
                self.sends += 1
            if sent == len(data):
                self.sent_frames += frames
                return
            data = data[sent:]
        self._outbox.append(data)
        self._outbox_frames += frames
        self.backlog += len(data)
        self._outbox_ready.set()

    def cork(self) -> None:
        """Hold the frames sent from now on until :meth:`uncork` (which must follow
        without an await in between): the answers to frames that arrived together
        leave in one system call, not one each."""
        if self._held is None:
            self._held = []

    def uncork(self) -> None:
        """Send the frames held since :meth:`cork`, joined."""
        held, self._held = self._held, None
        if held:
            self._send(held[0] if len(held) == 1 else b"".join(held), len(held))

    def notify(self, op: bytes, args: list[bytes] | tuple[bytes, ...] = ()) -> bool:
        """Send a one-way message if connected; False if there is no connection."""
        if self.stream is None:
            return False
        self._enqueue(wire.encode(wire.NOTIFY, 0, op, args))
        return True

    async def request(self, op: bytes, args: list[bytes] | tuple[bytes, ...] = (), timeout: float = 5.0) -> list[bytes]:
        """Send a request and wait for its answer (raises PeerUnavailable/PeerError)."""
        if self.stream is None:
            raise PeerUnavailable(self.peer_id)
        request_id = next(self._ids)
        waiter = self._pending[request_id] = _Waiter()
        self._enqueue(wire.encode(wire.REQUEST, request_id, op, args))
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            self._pending.pop(request_id, None)
        if waiter.error is not None:
            raise waiter.error
        if waiter.answer is None:
            raise PeerUnavailable(f"{self.peer_id}: no answer within {timeout}s")
        return waiter.answer

    def request_nowait(self, op: bytes, args, callback: Callable) -> bool:
        """Send a request; ``callback(answer, error)`` runs when it is settled.

        The callback runs synchronously in the link's reader (or when the
        connection is lost, with :class:`PeerUnavailable`), so it must not block.
        Returns False, without calling back, if there is no connection.  Callers
        that need a deadline keep their own: an unanswered request settles only
        when its connection closes.
        """
        if self.stream is None:
            return False
        request_id = next(self._ids)
        self._pending[request_id] = _Waiter(callback)
        self._enqueue(wire.encode(wire.REQUEST, request_id, op, args))
        return True

    # -- a connection's life ------------------------------------------------------------

    async def run(
        self,
        stream: trio.SocketStream,
        reader,
        dialed_by: str,
        early: list[list[bytes]] = (),
        *,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``stream`` for this peer until it breaks or is replaced.

        ``early`` holds frames that arrived with the end of the handshake; they are
        served first.  ``task_status.started()`` fires once the link uses the
        stream (or refused it).
        """
        if self.stream is not None:
            if dialed_by == self.dialed_by or min(dialed_by, self.dialed_by or dialed_by) != dialed_by:
                task_status.started()
                await stream.aclose()  # keep the connection opened by the smaller id
                return
            await self.stream.aclose()  # the new one wins; the old run() ends
        self.stream = stream
        self.dialed_by = dialed_by
        self._closed = trio.Event()
        if self._raw is not None:
            self._raw.close()
        self._raw = socket.socket(fileno=os.dup(stream.socket.fileno()))
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, stream)
                for frame in early:
                    self._dispatch(wire.split(frame), nursery)
                await self._read_loop(stream, reader, nursery)
                nursery.cancel_scope.cancel()
        # Errors arrive grouped from the nursery; a broken connection just ends it.
        except* (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, wire.BusProtocolError) as group:
            log.debug("link to %s closed: %r", self.peer_id, group.exceptions)
        except* OSError as group:
            rest = group.subgroup(
                lambda exc: isinstance(exc, OSError) and exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF)
            )
            if rest is not None:
                raise rest
        finally:
            if self.stream is stream:
                self.stream = None
                self.dialed_by = None
                if self._raw is not None:
                    self._raw.close()
                    self._raw = None
                self._outbox.clear()
                self._outbox_frames = 0
                self.backlog = 0
                pending, self._pending = self._pending, {}
                for waiter in pending.values():
                    waiter.settle(None, PeerUnavailable(f"{self.peer_id}: connection lost"))
                self._closed.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _write_loop(self, stream: trio.SocketStream) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = trio.Event()
            parts, self._outbox = self._outbox, []
            self.sent_frames += self._outbox_frames
            self._outbox_frames = 0
            data = b"".join(parts)
            self._writing = True
            try:
                self.sends += 1
                await stream.send_all(data)
            finally:
                self._writing = False
                self.backlog = max(0, self.backlog - len(data))

    async def _read_loop(self, stream: trio.SocketStream, reader, nursery: trio.Nursery) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            frames = reader.parse(data)
            if len(frames) == 1:
                self._dispatch(wire.split(frames[0]), nursery)
                continue
            # Answers to frames that arrived together leave together.
            self.cork()
            try:
                for frame in frames:
                    self._dispatch(wire.split(frame), nursery)
            finally:
                self.uncork()

    def _dispatch(self, parts, nursery: trio.Nursery) -> None:
        kind, request_id, op, args = parts
        if self.peer_id in self.bus.cut_peers:
            return  # cut while frames were in flight: they are lost, as on a real partition
        self.received_frames += 1
        if kind == wire.ANSWER or kind == wire.ERROR:
            waiter = self._pending.pop(request_id, None)
            if waiter is not None:
                if kind == wire.ANSWER:
                    waiter.settle(args, None)
                else:
                    waiter.settle(None, PeerError(b" ".join(args).decode("utf-8", "replace")))
            return
        try:
            result = self.bus.handler(self.peer_id, op, args)
        except Exception as exc:  # a bad request must not kill the link
            log.warning("bus request %r from %s failed: %r", op, self.peer_id, exc)
            if kind == wire.REQUEST:
                self._enqueue(wire.encode(wire.ERROR, request_id, b"", [repr(exc).encode()]))
            return
        if inspect.isawaitable(result):
            nursery.start_soon(self._answer_later, kind, request_id, result)
        elif kind == wire.REQUEST:
            self._enqueue(wire.encode(wire.ANSWER, request_id, b"", result or ()))

    async def _answer_later(self, kind: bytes, request_id: int, pending: Awaitable) -> None:
        try:
            result = await pending
        except Exception as exc:
            log.warning("bus request from %s failed: %r", self.peer_id, exc)
            if kind == wire.REQUEST:
                self._enqueue(wire.encode(wire.ERROR, request_id, b"", [repr(exc).encode()]))
            return
        if kind == wire.REQUEST:
            self._enqueue(wire.encode(wire.ANSWER, request_id, b"", result or ()))


class ClusterBus:
    """All links of one node, the bus listener, and the dialers."""

    def __init__(self, node_id: str, handler: Handler, secret: bytes) -> None:
        self.node_id = node_id
        self.handler = handler
        #: The cluster secret both ends of a connection prove they know.
        self.secret = secret
        self._handshakes = 0
        #: Connections closed because the peer failed the handshake, or because
        #: too many handshakes were under way (``CLUSTER INFO``).
        self.handshakes_refused = 0
        self.links: dict[str, PeerLink] = {}
        self._nursery: trio.Nursery | None = None
        self._dialing: set[str] = set()
        #: peer id → (host, bus port) to dial; kept current by membership.
        self.addresses: dict[str, tuple[str, int]] = {}
        #: Peers whose links are cut on purpose (fault injection, ``BUSFAULT``):
        #: no connection to them is dialed, accepted or kept.
        self.cut_peers: set[str] = set()

    # -- fault injection -------------------------------------------------------------

    def cut(self, peer_ids) -> None:
        """Cut this node's links to ``peer_ids`` until :meth:`heal` (a partition)."""
        for peer_id in peer_ids:
            self.cut_peers.add(peer_id)
            link = self.links.get(peer_id)
            if link is not None and link.stream is not None and self._nursery is not None:
                self._nursery.start_soon(link.stream.aclose)

    def heal(self, peer_ids=None) -> None:
        """Allow links to ``peer_ids`` (all cut ones if None) again; dialers reconnect."""
        healed = set(self.cut_peers) if peer_ids is None else set(peer_ids) & self.cut_peers
        self.cut_peers -= healed
        for peer_id in healed:
            if peer_id in self.addresses:
                self.keep_connected(peer_id)

    def link(self, peer_id: str) -> PeerLink:
        link = self.links.get(peer_id)
        if link is None:
            link = self.links[peer_id] = PeerLink(self, peer_id)
        return link

    async def serve(self, listener: trio.SocketListener, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept bus connections and run the dialers until cancelled (then close)."""
        async with listener, trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.serve_listeners(self._accepted, [listener], handler_nursery=nursery)

    async def _accepted(self, stream: trio.SocketStream) -> None:
        """Serve a connection some peer opened, once it passed the handshake."""
        if self._handshakes >= MAX_HANDSHAKES:
            self.handshakes_refused += 1
            await stream.aclose()
            return
        self._handshakes += 1
        handshake = _Handshake(stream)
        peer_id = None
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                args = await handshake.expect(HELLO, 2)
                peer_id = _peer_id(args[0])
                dialer_nonce = args[1]
                if not auth.valid_nonce(dialer_nonce):
                    raise wire.BusProtocolError("HELLO needs a nonce of %d bytes" % auth.NONCE_SIZE)
                if peer_id in self.cut_peers:
                    raise wire.BusProtocolError(f"link to {peer_id} is cut")
                nonce = auth.new_nonce()
                mine = auth.proof(self.secret, auth.ACCEPTOR, peer_id, self.node_id, dialer_nonce, nonce)
                await handshake.send(HELLO, [self.node_id.encode(), nonce, mine])
                (offered,) = await handshake.expect(PROOF, 1)
                expected = auth.proof(self.secret, auth.DIALER, peer_id, self.node_id, dialer_nonce, nonce)
                try:
                    auth.check(expected, offered)
                except auth.AuthenticationFailed as exc:
                    await handshake.send(DENIED, [str(exc).encode()])
                    raise
                await handshake.send(READY)
        except auth.AuthenticationFailed as exc:
            self.handshakes_refused += 1
            log.warning("refused a bus connection from %s claiming to be node %s: %s",
                        _remote(stream), peer_id, exc)
            await stream.aclose()
            return
        except (trio.TooSlowError, trio.BrokenResourceError, wire.BusProtocolError, OSError) as exc:
            self.handshakes_refused += 1
            log.debug("refused a bus connection from %s: %r", _remote(stream), exc)
            await stream.aclose()
            return
        finally:
            self._handshakes -= 1
        await self.link(peer_id).run(stream, handshake.reader, dialed_by=peer_id)

    async def dial(self, host: str, port: int) -> str:
        """Open a connection to ``host:port``, handshake, and run it in the background.

        Returns the peer's node id.  Used by MEET/--join and by the redialers.
        Raises :class:`~respkv.peer.auth.AuthenticationFailed` when the two nodes
        do not share the cluster secret.
        """
        assert self._nursery is not None, "bus not serving"
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(host, port)
            handshake = _Handshake(stream)
            try:
                nonce = auth.new_nonce()
                await handshake.send(HELLO, [self.node_id.encode(), nonce])
                frame = await handshake.receive()
                if frame[2] == DENIED:
                    raise auth.AuthenticationFailed(auth.MISMATCH_HINT)
                args = handshake.check(frame, HELLO, 3)
                peer_id = _peer_id(args[0])
                acceptor_nonce, offered = args[1], args[2]
                if not auth.valid_nonce(acceptor_nonce):
                    raise wire.BusProtocolError("HELLO needs a nonce of %d bytes" % auth.NONCE_SIZE)
                expected = auth.proof(self.secret, auth.ACCEPTOR, self.node_id, peer_id, nonce, acceptor_nonce)
                auth.check(expected, offered)
                if peer_id in self.cut_peers:
                    raise wire.BusProtocolError(f"link to {peer_id} is cut")
                mine = auth.proof(self.secret, auth.DIALER, self.node_id, peer_id, nonce, acceptor_nonce)
                await handshake.send(PROOF, [mine])
                frame = await handshake.receive(final=True)
                if frame[2] == DENIED:
                    raise auth.AuthenticationFailed(auth.MISMATCH_HINT)
                handshake.check(frame, READY, 0)
            except auth.AuthenticationFailed as exc:
                self.handshakes_refused += 1
                log.warning("bus handshake with %s:%d failed: %s", host, port, exc)
                await stream.aclose()
                raise
            except BaseException:
                await stream.aclose()
                raise
        if peer_id == self.node_id:
            await stream.aclose()
            return peer_id
        await self._nursery.start(self.link(peer_id).run, stream, handshake.reader, self.node_id, handshake.early)
        return peer_id

    def keep_connected(self, peer_id: str) -> None:
        """Make sure a dialer runs for ``peer_id`` if this node is the one to dial."""
        if peer_id == self.node_id or self.node_id > peer_id or peer_id in self._dialing:
            return
        if self._nursery is not None:
            self._dialing.add(peer_id)
            self._nursery.start_soon(self._redial_loop, peer_id)

    def forget(self, peer_id: str) -> None:
        """Stop dialing a peer that left the cluster."""
        self.addresses.pop(peer_id, None)

    async def _redial_loop(self, peer_id: str) -> None:
        delay = REDIAL_MIN
        try:
            while peer_id in self.addresses:
                link = self.link(peer_id)
                if link.connected:
                    delay = REDIAL_MIN
                    await link.wait_closed()
                    continue
                host, port = self.addresses[peer_id]
                try:
                    answered = await self.dial(host, port)
                except (OSError, trio.TooSlowError, wire.BusProtocolError, trio.BrokenResourceError,
                        auth.AuthenticationFailed) as exc:
                    log.debug("dialing %s at %s:%d failed: %r", peer_id, host, port, exc)
                    answered = None
                if answered != peer_id:  # down, or another node answers there now
                    await trio.sleep(delay)
                    delay = min(REDIAL_MAX, delay * 2)
        finally:
            self._dialing.discard(peer_id)


class _Handshake:
    """The frames of one connection's handshake, before it belongs to a link.

    Until the handshake is over the peer may send exactly one frame per step;
    anything sent ahead is a protocol error, except after the last step
    (``final``), where frames that came along are the link's first (``early``).
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = wire.new_reader()
        self.early: list[list[bytes]] = []

    async def send(self, op: bytes, args: list[bytes] | tuple[bytes, ...] = ()) -> None:
        await self.stream.send_all(wire.encode(wire.NOTIFY, 0, op, args))

    async def receive(self, *, final: bool = False) -> list[bytes]:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError("closed during the handshake")
            batch = self.reader.parse(data)
            if batch:
                if not final and (len(batch) > 1 or not self.reader.idle):
                    raise wire.BusProtocolError("frames before the handshake completed")
                self.early = batch[1:]
                wire.split(batch[0])  # a well-formed frame, or BusProtocolError
                return batch[0]

    @staticmethod
    def check(frame: list[bytes], op: bytes, count: int) -> list[bytes]:
        """The arguments of ``frame`` if it is the notification ``op`` with ``count`` of them."""
        kind, _, got, args = wire.split(frame)
        if kind != wire.NOTIFY or got != op or len(args) != count:
            raise wire.BusProtocolError(f"expected {op.decode()} in the handshake")
        return args

    async def expect(self, op: bytes, count: int, *, final: bool = False) -> list[bytes]:
        return self.check(await self.receive(final=final), op, count)


def _peer_id(raw: bytes) -> str:
    """A node id as a peer states it: printable ASCII, not empty, not too long."""
    if not 0 < len(raw) <= MAX_NODE_ID or not raw.isascii() or not raw.isalnum():
        raise wire.BusProtocolError("a node id must be 1 to %d letters and digits" % MAX_NODE_ID)
    return raw.decode("ascii")


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "an unknown address"
    return f"{host}:{port}"
