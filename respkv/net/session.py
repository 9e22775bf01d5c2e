"""One client connection: read requests, run commands, write replies.

Theory of operation
-------------------
A session owns a plain non-blocking socket.  The node's poller (see
:mod:`respkv.net.poller`) calls :meth:`ClientSession.on_readable` when the socket has
data: the session receives what is there, feeds it to its
:class:`~respkv.protocol.reader.RequestReader`, runs every complete request in order
and hands all their replies to the poller, which sends them with one ``send`` at the
end of its round.  Pipelined clients therefore cost one receive and one send per
batch, not per command, and no trio task switch at all.

Each request goes through the same gate as in Redis: look the command up (unknown
command/subcommand errors), check arity, refuse fault-injection commands that
``enable-debug-command`` does not allow, check authentication, then call the
handler.  Most handlers are synchronous and return their encoded reply at once.  An
``async`` handler (one that must wait) makes the session hand the rest of the batch
to the poller as a coroutine, which runs as a task; replies still leave in request
order, and the socket returns to the poller when the batch is done.

With replication, keyed requests go through the node's coordinator, and a reply
that waits for replicas is a placeholder in the batch's reply list: the batch keeps
running, then the session *parks* (leaves the poller without a task) until its
replicas answered (see :mod:`respkv.replication.coordinator`).

A malformed request gets its ``-ERR Protocol error: ...`` after the replies of the
requests before it, then the connection closes.  Nothing here swallows
``trio.Cancelled``: node shutdown cancels the poller and every task it started.
"""

from __future__ import annotations

import logging
import socket

import trio

from ..cluster.commands import route_request
from ..commands.keyspecs import request_keys
from ..commands.table import CloseConnection, CommandError, CommandSpec
from ..commands.transactions import IMMEDIATE_IN_MULTI
from ..errors import wrong_arity
from ..keyspace.slots import key_slot
from ..protocol import reply
from ..protocol.limits import RECV_SIZE
from ..protocol.reader import ProtocolError, QueryBufferFull, RequestReader, well_formed
from ..protocol.reply import RESP2
from ..replication.commands import PROTECTED_COMMANDS, debug_command_refusal
from .access import host_of, is_loopback
from .poller import CLOSE, PARK
from .pubsub import SUBSCRIBED_CONTEXT, subscribed_refusal
from .replies import ReplyQueue, ReplySlot, joined

log = logging.getLogger(__name__)

#: What awaiting :data:`_RUN_AGAIN` gives: run the request it stood for, now.
RUN_AGAIN = object()


class _RunAgainWait:
    """The "wait" of a request that runs once the replies before it are final:
    :meth:`ClientSession._resume` settles and sends those first, then awaits this,
    which is done at once (and, unlike a coroutine, costs nothing if never awaited)."""

    def __await__(self):
        return RUN_AGAIN
        yield  # a generator: awaitable, finished on the first step


_RUN_AGAIN = _RunAgainWait()
wait_writable = trio.lowlevel.wait_writable


def unknown_command_error(args: list[bytes]) -> str:
    """Redis's text for an unknown command, quoting the first arguments."""
    shown = ""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'" + arg[: 128 - len(shown)].decode("latin-1") + "' "
    return f"ERR unknown command '{args[0][:128].decode('latin-1')}', with args beginning with: {shown}"


class ClientSession:
    """State of one connected client and the loop serving it."""

    def __init__(self, node, sock: socket.socket, client_id: int, addr: str, laddr: str) -> None:
        self.node = node
        self.ks = node.keyspace
        self.stats = node.stats
        self.sock = sock
        self.id = client_id
        self.addr = addr
        self.laddr = laddr
        #: Connected from a loopback address (``enable-debug-command local``).
        self.local = is_loopback(host_of(addr))
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.proto = RESP2
        self.authenticated = not node.config["requirepass"]
        #: CLIENT TRACKING's options while it is on (see net.tracking).
        self.tracking = None
        #: Channels, patterns and shard channels while it has any (see net.pubsub).
        self.subscriptions = None
        #: True while requests may take the fast path (authenticated, no transaction,
        #: node below maxmemory, no key tracking); see refresh_fast().
        self.fast = self.authenticated and not node.over_maxmemory and node.write_refusal is None
        self.no_evict = False
        self.created = trio.current_time()
        #: Updated by the node's cron from ``commands_processed`` (cheaper than a
        #: clock read per request); used for idle time and the ``timeout`` directive.
        self.last_interaction = self.created
        self.commands_processed = 0
        self.commands_seen_by_cron = 0
        self.last_spec: CommandSpec | None = None  # for CLIENT LIST's cmd=
        self.reader = RequestReader(
            max_bulk=node.config["proto-max-bulk-len"],
            max_query_buffer=node.config["client-query-buffer-limit"],
            unauthenticated=not self.authenticated,
        )
        # Transaction state (see commands.transactions).
        self.multi: list | None = None
        self.multi_dirty = False
        self.watched: set[bytes] = set()
        self.watch_dirty = False
        self.in_exec = False
        # Cluster connection flags (see cluster.commands): ASKING holds for the next
        # command only; READONLY lets the connection read from a replica's slots.
        self.asking = False
        self.readonly = False
        self.closing = False
        #: The poller serving this session, and the cancel scope of the task that
        #: serves it while a command waits (see net.poller).
        self.poller = None
        self.cancel_scope: trio.CancelScope | None = None
        #: Replication: this connection's (R, W[, sloppy]) override (CONSISTENCY),
        #: and the replies of the current batch still waiting for replicas.
        self.consistency: tuple | None = None
        self.waiting = None
        #: (replies, close after them) of a batch parked until its replicas answer.
        self.parked: tuple[list, bool] | None = None

    # -- public helpers for handlers -------------------------------------------------

    def set_authenticated(self, value: bool) -> None:
        self.authenticated = value
        self.reader.unauthenticated = not value
        self.refresh_fast()

    def refresh_fast(self) -> None:
        """Recompute whether requests may skip the general checks."""
        node = self.node
        self.fast = (
            self.authenticated and self.multi is None and not self.asking and not node.over_maxmemory
            and node.write_refusal is None and (self.tracking is None or self.tracking.bcast)
            and self.subscriptions is None
        )

    def visible_slots(self) -> bytearray | None:
        """The slots whose keys DBSIZE, KEYS, SCAN, RANDOMKEY, INFO keyspace and
        CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT show this connection: on a cluster
        node the slots it coordinates (as a Redis Cluster master counts its own,
        so the counts of all nodes add up to the cluster's keys), unless the
        connection is READONLY (then the replica copies too); None (every key)
        on a standalone node."""
        cluster = self.node.cluster
        return None if cluster is None or self.readonly else cluster.served

    def reset(self) -> None:
        """RESET: back to the state of a new connection (RESP2, unnamed, re-auth)."""
        self.proto = RESP2
        self.name = b""
        self.no_evict = False
        self.asking = self.readonly = False
        self.set_authenticated(not self.node.config["requirepass"])
        for hook in self.node.client_reset_hooks:
            hook(self)

    def kill(self) -> None:
        """Close this connection from outside (CLIENT KILL, timeouts, shutdown)."""
        self.closing = True
        if self.poller is not None:
            self.poller.close(self)

    # -- serving requests ----------------------------------------------------------

    def on_readable(self):
        """Handle what the socket has for us; called by the poller when it is readable.

        The replies go to the poller's ``replies``, sent at the end of its round
        (a reply that ends the connection is sent here).  Returns None to stay with
        the poller, ``CLOSE`` to close the connection, or
        a coroutine holding the rest of the work when a command must wait (the poller
        runs it as a task; it returns True if the connection is then to be closed).
        """
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return CLOSE
        if not data:
            return CLOSE
        self.stats.net_input_bytes += len(data)
        out = []
        close = False
        node = self.node
        node.executing = self  # whose commands change keys now (CLIENT TRACKING's NOLOOP)
        try:
            pending = self._run_all(self.reader.parse(data), 0, out)
            if pending is not None:
                return self._resume(pending, out)
        except (ProtocolError, QueryBufferFull, CloseConnection) as exc:
            close = self._final_reply(exc, out)
        finally:
            node.executing = None
        blocking = self.node.blocking
        if blocking.ready:  # a batch cut short by an exception still serves them
            blocking.serve_ready()
        waiting = self.waiting
        if waiting is not None:  # replies waiting for replicas
            self.waiting = None
            if waiting.pending:  # the poller flushes the requests after this round
                return self._park(waiting, out, close)
            out = [joined(out)]
        if out:
            payload = b"".join(out)
            if not close:
                # Sent with the other replies of this round (see ClientPoller.run).
                self.poller.replies.append((self, payload))
                return None
            sent = self.send_now(payload)
            if sent < 0:
                return CLOSE
            if sent < len(payload):
                return self.send_then(payload, sent, close)
        return CLOSE if close or self.closing else None

    def send_now(self, payload: bytes) -> int:
        """Send what the socket takes of ``payload`` without waiting; -1 if it broke."""
        self.stats.net_output_bytes += len(payload)
        try:
            return self.sock.send(payload)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    def _run_all(self, batch, start: int, out: list[bytes]):
        """Run ``batch[start:]`` and every further complete request, appending replies.

        Returns None when all are done, or ``(batch, index, awaitable)`` when the
        request at ``index`` must wait: the caller awaits it and resumes after it.
        """
        node = self.node
        path = node.dispatcher.fast_path()  # see net.dispatch
        plain_specs = path.specs
        served = path.served
        runs = path.runs
        blocking = node.blocking
        ready_keys = blocking.ready
        append = out.append
        ks = node.keyspace
        spec = None
        while batch:
            count = len(batch)
            self.stats.commands_processed += count - start
            self.commands_processed += count - start
            i = start
            while i < count:
                if ks.stored_bytes > ks.evict_at:
                    node.make_room()  # maxmemory: evict before the next command runs
                args = batch[i]
                # The reader's fast path leaves it to us to check that a request is
                # well formed; a run checks the further requests of its run itself
                # (see net.dispatch.run_extent).
                if not well_formed(args):
                    break
                waiting = self.waiting
                if waiting is not None and waiting.writes_held and not self._reads_only(args):
                    # A read before this request in the pipeline still waits for its
                    # replicas, and its reply may be computed again when they answer:
                    # this request runs once that reply is final (see _resume).
                    self.stats.commands_processed -= count - i
                    self.commands_processed -= count - i
                    return batch, i, _RUN_AGAIN
                if self.fast:
                    run = runs.get(args[0])
                    if run is not None:  # a run of pipelined GETs/SETs in one call
                        end = run(self, batch, i, out)
                        if end > i:
                            i = end
                            spec = plain_specs.get(args[0])
                            if ready_keys:
                                blocking.serve_ready()
                            continue
                # Fast path: a known, synchronous, non-container command with the
                # right arity on an authenticated connection outside MULTI; in
                # cluster mode, with no key or a key of a slot this node serves.
                spec = plain_specs.get(args[0])
                if spec is not None and self.fast and (
                    served is None
                    or (position := spec.first_key) <= 0
                    or (len(args) > position and served[key_slot(args[position])])
                ):
                    if spec.min_args <= len(args) <= spec.max_args:
                        try:
                            append(spec.handler(self, args))
                        except CommandError as exc:
                            append(reply.error(str(exc)))
                        if ready_keys:
                            blocking.serve_ready()
                        i += 1
                        continue
                result = self.execute(args)
                if result.__class__ is not bytes:
                    if result.__class__ is ReplySlot:  # filled before the batch's replies leave
                        append(result)
                        i += 1
                        continue
                    self.stats.commands_processed -= count - i - 1  # counted again on resuming
                    self.commands_processed -= count - i - 1
                    return batch, i, result
                append(result)
                if ready_keys:
                    blocking.serve_ready()
                i += 1
            else:
                if spec is not None:
                    self.last_spec = spec
                start = 0
                batch = self.reader.read_batch() if not self.reader.idle else None
                continue
            # batch[i] is malformed: the exact path parses the rest of its chunk and
            # says what Redis would (mostly: raises the protocol error).
            self.stats.commands_processed -= count - i
            self.commands_processed -= count - i
            batch = self.reader.reparse(i)
            start = 0
        return None

    async def _resume(self, pending, out: list[bytes]) -> bool:
        """Finish a batch whose request at ``pending[1]`` must wait; True to close."""
        close = False
        try:
            while pending is not None:
                batch, index, awaitable = pending
                if out:
                    await self._send(b"".join(await self._settled(out)))
                    out = []
                    if self.closing:
                        return True
                result = await awaitable
                if result is RUN_AGAIN:  # the replies before it are final now
                    pending = self._run_all(batch, index, out)
                    continue
                out.append(result)
                if self.node.blocking.ready:
                    self.node.blocking.serve_ready()
                pending = self._run_all(batch, index + 1, out)
        except (ProtocolError, QueryBufferFull, CloseConnection) as exc:
            close = self._final_reply(exc, out)
        if self.node.blocking.ready:
            self.node.blocking.serve_ready()
        if out:
            await self._send(b"".join(await self._settled(out)))
        return close or self.closing

    # -- waiting for replicas without a task ----------------------------------------

    def _park(self, waiting, out: list, close: bool):
        """Hold this batch's replies until its replicas answered (see replication).

        The session's later requests wait, in order: its socket stays in the
        poller's set, but the poller takes it out if it becomes readable meanwhile.
        The batch's last answer, or its timeout, only *posts* the session to the
        poller (:meth:`ClientPoller.post`); the poller finishes it in its next round
        (:meth:`finish_parked`), so the cluster bus never writes to client sockets
        or touches the poller's set.  No task is started for the wait.
        """
        self.parked = (out, close)
        waiting.on_settled = self._post_settled
        return PARK

    def _post_settled(self) -> None:
        if self.poller is not None and self.parked is not None:
            self.poller.post(self)

    def finish_parked(self) -> None:
        """In the poller's round: queue a parked batch's replies (sent at the end of
        the round, with the others) and give the socket back to the poller (if it
        took it out)."""
        parked = self.parked
        if parked is None:
            return
        self.parked = None
        poller = self.poller
        if self.closing or poller is None:
            return
        out, close = parked
        payload = joined(out)
        poller.unpark(self)
        if close or self.closing:
            sent = self.send_now(payload) if payload else 0
            if 0 <= sent < len(payload):
                poller.detach(self, self.send_then(payload, sent, True))
            else:
                poller.close(self)
        elif payload:
            poller.replies.append((self, payload))

    async def _settled(self, out: list) -> list:
        """``out`` once its reply slots are filled, as bytes.

        Runs the poller's end-of-round hooks first: what this batch queued for
        other nodes leaves now, not at the poller's next round.
        """
        try:
            for hook in self.node.round_hooks:  # the poller's, run now
                hook()
        except Exception as exc:  # as the poller's round (ClientPoller._abandon_round)
            log.error("closing client %s: its replies cannot be vouched for: %s", self.addr, exc)
            self.closing = True
            self.waiting = None
            return []
        waiting = self.waiting
        if waiting is None:
            return out
        self.waiting = None
        await waiting.wait()
        return [joined(out)]

    def reserve_reply(self, holds_writes: bool = False) -> ReplySlot:
        """A slot in this batch's replies for an answer known later (see
        :mod:`respkv.net.replies`); ``holds_writes``: the client's later writes
        wait until it is filled."""
        queue = self.waiting
        if queue is None:
            queue = self.waiting = ReplyQueue()
        return queue.reserve(holds_writes)

    async def send_then(self, payload: bytes, sent: int, close: bool) -> bool:
        """Finish sending a reply that did not fit in the socket buffer."""
        await self._send_rest(payload, sent)
        return close or self.closing

    def _final_reply(self, exc: Exception, out: list[bytes]) -> bool:
        """Add the reply that ends the connection (protocol error, QUIT, ...)."""
        if isinstance(exc, ProtocolError):
            out.append(reply.error(f"ERR Protocol error: {exc}"))
        elif isinstance(exc, CloseConnection):
            out.append(exc.reply)
        else:
            log.warning("closing client %s that reached max query buffer length", self.addr)
        return True

    async def _send(self, data: bytes) -> None:
        """Send all of ``data`` (replies that must leave before an awaited command)."""
        self.node.stats.net_output_bytes += len(data)
        await self._send_rest(data, 0)

    async def _send_rest(self, data: bytes, sent: int) -> None:
        """Send ``data[sent:]``, parking the task only while the socket is full."""
        sock = self.sock
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                await wait_writable(sock)

    # -- the general path ------------------------------------------------------------

    def execute(self, args: list[bytes]):
        """Run one request with every check; returns reply bytes or an awaitable."""
        spec = self.node.table.lookup(args[0])
        if spec is None:
            return self._reject(unknown_command_error(args))
        if spec.subcommands and len(args) >= 2:
            # A container alone falls through to its own arity check: CONFIG needs
            # a subcommand (arity -2), COMMAND runs its own handler (arity -1).
            sub = spec.subcommands.get(args[1].lower())
            if sub is None:
                return self._reject(
                    f"ERR unknown subcommand '{args[1][:128].decode('latin-1')}'. "
                    f"Try {spec.name.upper()} HELP."
                )
            spec = sub
        n = len(args)
        if (spec.arity > 0 and n != spec.arity) or n < -spec.arity or spec.handler is None:
            return self._reject(wrong_arity(spec.name))
        if spec.name in PROTECTED_COMMANDS and (refusal := debug_command_refusal(self)) is not None:
            return self._reject(refusal)  # before NOAUTH and MULTI, as Redis
        if not self.authenticated and not spec.no_auth:
            return self._reject("NOAUTH Authentication required.")
        if self.multi is not None and "no_multi" in spec.flags:  # SAVE, SHUTDOWN, ...
            return self._reject("ERR Command not allowed inside a transaction")
        cluster = self.node.cluster
        if cluster is not None:
            routed = route_request(self, spec, args, cluster)
            if routed is not None:  # MOVED & co., or the reply of a forwarded request
                return routed
        refusal = self.node.write_refusal
        if refusal is not None and (spec.is_write or spec.name == "ping"):
            return self._reject(refusal)  # -MISCONF: the change could not be persisted
        if spec.deny_oom and self.node.over_maxmemory:
            self.node.make_room()  # deletions since the last check may have made room
            if self.node.over_maxmemory:
                return self._reject("OOM command not allowed when used memory > 'maxmemory'.")
        if self.subscriptions is not None and self.proto.version == 2 and spec.name not in SUBSCRIBED_CONTEXT:
            return self._reject(subscribed_refusal(spec.name))
        self.last_spec = spec
        if self.multi is not None and spec.name not in IMMEDIATE_IN_MULTI:
            self.multi.append((spec, args))
            return reply.QUEUED
        tracking = self.tracking
        if tracking is not None and spec.name != "client|caching":
            if spec.is_readonly and not tracking.bcast:
                self.node.tracking.remember(self, request_keys(spec, args))
            if spec.name != "multi" and (spec.name != "exec" or self.multi is None):
                tracking.caching = False  # CLIENT CACHING applies to one command or transaction (EXEC resets it)
        replication = self.node.replication
        if replication is not None and (spec.first_key > 0 or spec.movable_keys or spec.name == "exec"):
            return replication.execute(self, spec, args)
        if spec.is_async:
            return self.run_async(spec, args)
        try:
            return spec.handler(self, args)
        except CommandError as exc:
            return reply.error(str(exc))

    def _reads_only(self, args: list[bytes]) -> bool:
        """Whether request ``args`` only reads (so it may run before earlier reads settle)."""
        spec = self.node.table.lookup(args[0])
        return spec is not None and spec.is_readonly

    def _reject(self, message: str) -> bytes:
        """An error before the command ran; inside MULTI it dooms the transaction."""
        if self.multi is not None:
            self.multi_dirty = True
        elif self.asking:  # a refused request spends ASKING too, as in Redis
            self.asking = False
            self.refresh_fast()
        return reply.error(message)

    async def run_async(self, spec: CommandSpec, args: list[bytes]) -> bytes:
        try:
            return await spec.handler(self, args)
        except CommandError as exc:
            return reply.error(str(exc))
