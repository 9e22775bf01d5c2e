"""Proxy routing: run a request on its slot's coordinator and relay the reply.

Theory of operation
-------------------
With ``cluster-routing proxy`` a node does not answer ``MOVED`` for a slot another
node coordinates: it sends the request to that node's client port, as an ordinary
client would, and hands the reply back to its own client byte for byte.  So clients
that know nothing about Redis Cluster (a plain ``redis.Redis``, ``redis-cli``
without ``-c``) can use any node.

**Connections.**  Replies are relayed unchanged, so a connection must speak the
protocol of the client it serves: a :class:`ProxyPool` keeps one connection per
coordinator and protocol version (``HELLO 3`` is sent on connections for RESP3
clients; ``AUTH`` with the node's own ``requirepass``, which cluster members share,
when one is set), shared by every client of this node.  Requests are pipelined on
it: a writer task sends everything queued in one write and a reader task hands the
replies out in order, so many clients cost the coordinator few system calls.  A
client that stops waiting (it left, the node stops) leaves its place in the queue
and its reply is dropped when it comes.  Blocking commands (``BLPOP`` & co.) would
hold up every request behind them, so each gets a connection of its own for as
long as it runs, taken from a few idle ones kept per coordinator; such a
connection whose request was interrupted is closed, never reused, since it may
still owe a reply, and idle ones are checked for a peer that hung up.

**No loops.**  Every forwarded request is preceded by ``ASKING``.  A node serves an
``ASKING`` request if it holds the slot at all (it is in the slot's live preference
list) and otherwise answers ``MOVED``; it never forwards it again.  So two nodes
whose views of the ring briefly differ cannot bounce a request between them.

**Framing.**  Replies are not decoded: :class:`ReplyFramer` only finds where each
RESP2/RESP3 reply ends, resuming where it stopped when more bytes arrive.

**Ownership.**  The shared connections' tasks and the idle connections belong to
:meth:`ProxyPool.run`, a task meant for the node's cluster nursery, which closes
them all when it is cancelled.  A pool used before anyone started that task
starts it as a trio system task, so everything is still closed when the node's
``trio.run`` ends.
"""

from __future__ import annotations

import logging
import socket
from collections import deque

import trio

from ..protocol import reply
from ..protocol.limits import RECV_SIZE

log = logging.getLogger(__name__)

#: Seconds to connect to a coordinator and finish the handshake.
CONNECT_TIMEOUT = 2.0
#: Idle connections for blocking commands kept per (coordinator, protocol version).
MAX_IDLE = 8

ASKING_REQUEST = b"*1\r\n$6\r\nASKING\r\n"

_BULK = frozenset(b"$!=")
_AGGREGATE = frozenset(b"*~>")
_PAIRS = frozenset(b"%|")
_LINE = frozenset(b"+-:_#,(")
_ATTRIBUTE = ord("|")


class ProxyError(Exception):
    """The coordinator could not be used: refused the handshake or broke the protocol."""


def encode_request(args: list[bytes]) -> bytes:
    """A request as a RESP array of bulk strings (how clients send commands)."""
    return reply.bulk_array(args)


class ReplyFramer:
    """Splits a byte stream of RESP2/RESP3 replies into whole replies, undecoded.

    ``feed`` bytes as they come; ``next_reply`` returns the next complete reply's
    exact bytes, or None until it is complete.  Scanning resumes after the last
    complete element, so a long reply arriving in many pieces is scanned once.
    """

    __slots__ = ("_buffer", "_pos", "_pending")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0  # end of the scanned part of the current reply
        self._pending = 1  # elements of the current reply not yet scanned

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_reply(self) -> bytes | None:
        buffer = self._buffer
        pos = self._pos
        pending = self._pending
        size = len(buffer)
        try:
            while pending:
                line_end = buffer.find(b"\r\n", pos)
                if line_end < 0:
                    break
                kind = buffer[pos]
                if kind in _BULK:
                    length = int(buffer[pos + 1 : line_end])
                    end = line_end + 2 if length < 0 else line_end + 4 + length
                    if end > size:
                        break
                elif kind in _LINE:
                    end = line_end + 2
                elif kind in _AGGREGATE or kind in _PAIRS:
                    count = int(buffer[pos + 1 : line_end])
                    end = line_end + 2
                    if count > 0:
                        pending += 2 * count if kind in _PAIRS else count
                    if kind == _ATTRIBUTE:
                        pending += 1  # attributes precede the reply they annotate
                else:
                    raise ProxyError(f"not a RESP reply: {bytes(buffer[pos : pos + 16])!r}")
                pos = end
                pending -= 1
        except ValueError:
            raise ProxyError(f"bad length in {bytes(buffer[pos : pos + 24])!r}") from None
        if pending:
            self._pos, self._pending = pos, pending
            return None
        reply = bytes(buffer[:pos])
        del buffer[:pos]
        self._pos, self._pending = 0, 1
        return reply

    @property
    def idle(self) -> bool:
        """True when no byte of an unfinished reply is buffered."""
        return not self._buffer


class _Upstream:
    """One connection to a coordinator's client port (a plain non-blocking socket)."""

    __slots__ = ("sock", "framer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = ReplyFramer()

    async def send(self, data: bytes) -> None:
        sock = self.sock
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)

    async def receive(self) -> bool:
        """Wait for bytes from the coordinator and frame them; False once it hung up."""
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            if not data:
                return False
            self.framer.feed(data)
            return True

    async def read_reply(self) -> bytes:
        while True:
            reply = self.framer.next_reply()
            if reply is not None:
                return reply
            if not await self.receive():
                raise ConnectionError("the coordinator closed the connection")

    def reusable(self) -> bool:
        """Whether the idle connection is still open with nothing unexpected to read."""
        if not self.framer.idle:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # the peer hung up, or sent bytes nobody asked for

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


async def _open(host: str, port: int, handshake: list[list[bytes]]) -> _Upstream:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    trio_sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await trio_sock.connect((host, port))
        sock = socket.socket(family, socket.SOCK_STREAM, fileno=trio_sock.detach())
    finally:
        trio_sock.close()
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - not TCP
        pass
    upstream = _Upstream(sock)
    try:
        if handshake:
            await upstream.send(b"".join(encode_request(args) for args in handshake))
            for args in handshake:
                answer = await upstream.read_reply()
                if answer[:1] == b"-":
                    raise ProxyError(
                        f"{host}:{port} refused {args[0].decode()}: {answer[1:].strip().decode('latin-1')}"
                    )
    except BaseException:
        upstream.close()
        raise
    return upstream


class _Waiter:
    """A forwarded request waiting on a shared connection for its replies."""

    __slots__ = ("event", "remaining", "reply", "error")

    def __init__(self, replies: int) -> None:
        self.event = trio.Event()
        self.remaining = replies
        self.reply = b""
        self.error: Exception | None = None


class _Channel:
    """One connection to a coordinator shared by many clients' requests.

    Requests are written in the order they are submitted, one writer task sending
    everything queued in one write, and a reader task hands replies out in the
    same order; a request only keeps its last reply.  A client that stops
    waiting (it left) leaves its place in the queue, and its replies are dropped
    when they come, so the connection stays usable.  When the connection breaks,
    every request still waiting fails.
    """

    def __init__(self, pool: "ProxyPool", key: tuple[str, int, int]) -> None:
        self.pool = pool
        self.key = key
        self.waiters: deque[_Waiter] = deque()
        self._outbox: list[bytes] = []
        self._outbox_ready = trio.Event()

    def submit(self, payload: bytes, replies: int) -> _Waiter:
        waiter = _Waiter(replies)
        self.waiters.append(waiter)
        self._outbox.append(payload)
        self._outbox_ready.set()
        return waiter

    async def run(self, handshake: list[list[bytes]]) -> None:
        host, port, _ = self.key
        error: Exception = ConnectionError(f"the connection to {host}:{port} closed")
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                upstream = await _open(host, port, handshake)
            self.pool.opened += 1
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, upstream)
                    await self._read(upstream)
                    nursery.cancel_scope.cancel()
            finally:
                upstream.close()
        except (OSError, trio.TooSlowError, ProxyError) as exc:
            error = exc
        finally:
            self.pool.channel_closed(self)
            while self.waiters:
                waiter = self.waiters.popleft()
                waiter.error = error
                waiter.event.set()

    async def _write(self, upstream: _Upstream) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = trio.Event()
            data = b"".join(self._outbox)
            self._outbox.clear()
            await upstream.send(data)

    async def _read(self, upstream: _Upstream) -> None:
        framer = upstream.framer
        waiters = self.waiters
        while True:
            reply = framer.next_reply()
            while reply is not None:
                if not waiters:
                    raise ProxyError(f"unexpected reply {reply[:32]!r}")
                waiter = waiters[0]
                waiter.remaining -= 1
                if not waiter.remaining:
                    waiters.popleft()
                    waiter.reply = reply
                    waiter.event.set()
                reply = framer.next_reply()
            if not await upstream.receive():
                return


class ProxyPool:
    """This node's connections to coordinators' client ports (module doc)."""

    def __init__(self, password: str = "", max_idle: int = MAX_IDLE) -> None:
        #: ``requirepass`` of the cluster, sent with AUTH/HELLO on new connections.
        self.password = password
        self.max_idle = max_idle
        self._channels: dict[tuple[str, int, int], _Channel] = {}
        self._idle: dict[tuple[str, int, int], list[_Upstream]] = {}
        self._nursery: trio.Nursery | None = None
        self._started: trio.Event | None = None
        #: Connections opened (tests check that clients share them).
        self.opened = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the connections until cancelled, then close them all."""
        if self._nursery is not None:  # already running (started lazily)
            task_status.started()
            return
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._started is not None:
                self._started.set()
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._started = None
                self.close_idle()

    async def _running(self) -> trio.Nursery:
        if self._nursery is None:
            if self._started is None:
                self._started = trio.Event()
                trio.lowlevel.spawn_system_task(self.run)
            await self._started.wait()
        return self._nursery

    def close_idle(self) -> None:
        """Close the idle exclusive connections (shared ones end with their task)."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for upstream in connections:
                upstream.close()

    def idle_count(self) -> int:
        return sum(map(len, self._idle.values()))

    def channel_closed(self, channel: _Channel) -> None:
        """Forget ``channel``, whose connection ended, unless it was replaced already."""
        if self._channels.get(channel.key) is channel:
            del self._channels[channel.key]

    async def request(
        self, address: tuple[str, int], protocol: int, payload: bytes, replies: int, *, exclusive: bool = False
    ) -> bytes:
        """Send ``payload`` (``replies`` commands) to ``address``; the last reply's bytes.

        Requests share one connection per coordinator and protocol version;
        ``exclusive`` ones (blocking commands, which would hold up everything
        behind them) get a connection of their own while they run.  Raises
        ``OSError``, ``trio.TooSlowError`` (connecting) or :class:`ProxyError`
        when the coordinator cannot be used.
        """
        nursery = await self._running()
        key = (address[0], address[1], protocol)
        if exclusive:
            reply = await self._request_alone(key, payload, replies)
        else:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _Channel(self, key)
                nursery.start_soon(channel.run, self._handshake(protocol))
            waiter = channel.submit(payload, replies)
            await waiter.event.wait()
            if waiter.error is not None:
                raise waiter.error
            reply = waiter.reply
        return reply

    async def _request_alone(self, key: tuple[str, int, int], payload: bytes, replies: int) -> bytes:
        upstream = self._checkout(key)
        if upstream is None:
            with trio.fail_after(CONNECT_TIMEOUT):
                upstream = await _open(key[0], key[1], self._handshake(key[2]))
            self.opened += 1
        done = False
        try:
            await upstream.send(payload)
            for _ in range(replies):
                last = await upstream.read_reply()
            done = True
        finally:
            # An interrupted request may still owe replies: never reuse its connection.
            if done and self._nursery is not None:
                self._checkin(key, upstream)
            else:
                upstream.close()
        return last

    def _handshake(self, protocol: int) -> list[list[bytes]]:
        password = self.password.encode()
        if protocol == 3:
            hello = [b"HELLO", b"3"]
            if password:
                hello += [b"AUTH", b"default", password]
            return [hello]
        return [[b"AUTH", password]] if password else []

    def _checkout(self, key: tuple[str, int, int]) -> _Upstream | None:
        idle = self._idle.get(key)
        while idle:
            upstream = idle.pop()
            if upstream.reusable():
                return upstream
            upstream.close()
        return None

    def _checkin(self, key: tuple[str, int, int], upstream: _Upstream) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle and upstream.framer.idle:
            idle.append(upstream)
        else:
            upstream.close()


def proxy_pool(node) -> ProxyPool:
    """The node's pool, created on first use (``node.cluster_proxy``)."""
    pool = getattr(node, "cluster_proxy", None)
    if pool is None:
        pool = node.cluster_proxy = ProxyPool()
    pool.password = node.config["requirepass"] or ""  # CONFIG SET may change it
    return pool


def unreachable_error(slot: int, host: str, port: int) -> bytes:
    """The reply when the coordinator of ``slot`` cannot be reached: try again later."""
    return b"-TRYAGAIN Cannot reach the coordinator of slot %d at %s:%d\r\n" % (slot, host.encode(), port)


async def forward(
    node,
    slot: int,
    address: tuple[str, int],
    protocol: int,
    requests: list[list[bytes]],
    *,
    exclusive: bool = False,
) -> bytes:
    """Run ``requests`` on the coordinator at ``address``; the last one's reply.

    Every batch starts with ``ASKING`` (see the module doc), whose ``+OK`` is
    skipped.  ``exclusive`` is for blocking commands (see :meth:`ProxyPool.request`).
    A coordinator that cannot be used gives ``-TRYAGAIN``.
    """
    payload = ASKING_REQUEST + b"".join([encode_request(args) for args in requests])
    try:
        return await proxy_pool(node).request(address, protocol, payload, 1 + len(requests), exclusive=exclusive)
    except (OSError, trio.TooSlowError, ProxyError) as exc:
        log.info("proxying slot %d to %s:%d failed: %r", slot, address[0], address[1], exc)
        return unreachable_error(slot, address[0], address[1])
