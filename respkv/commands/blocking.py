"""Blocked clients: who waits for which keys, and serving them in Redis's order.

Theory of operation
-------------------
A blocking command (BLPOP, BLMOVE, BZPOPMIN, ...) is written as a synchronous *core*
``core(session, args)`` that either answers at once (``bytes``: elements were there,
or an error) or returns a :class:`Block`: the keys to wait on, the timeout, and an
``attempt(key)`` function that tries to serve the client from ``key`` later.
:func:`blocking_command` turns the core into the command's ``async`` handler, which
hands a :class:`Block` to :meth:`BlockingRegistry.wait` -- except inside EXEC, where
nothing may wait and the command answers as if its timeout had passed at once
(Redis's rule for blocking commands in MULTI/EXEC and scripts).

The node's :class:`BlockingRegistry` keeps, per key, the clients waiting for it in
the order they blocked.  While at least one client waits it listens to the
keyspace's change signal; a change that leaves a value of a type somebody can wait
for (:data:`WAKE_TYPES`) at a key with waiters marks the key *ready*.  (Redis marks
a key when it is created; a key somebody waits for held nothing of the awaited type
when the wait began, so both rules mark the same keys in the same order.)  Nothing is
served from inside the change signal: the command that made the change must finish
first (an ``RPUSH`` of three elements pushes all three before anybody pops).  Right
after every command the session checks :attr:`BlockingRegistry.ready` and, if a key
is there, calls :meth:`BlockingRegistry.serve_ready`, which, like Redis 7.0:

* takes the ready keys in the order they became ready, and per key offers it to its
  waiters first-blocked first-served, each waiter's ``attempt`` taking what it needs
  (so a push of several elements can serve several clients);
* repeats with keys made ready *while serving* (a BLMOVE served from one key pushes
  onto another, which can serve the next client);
* does all of it synchronously, before any other client's command runs; a served
  client's reply is stored and its task woken, so the pushing client's own reply
  still leaves first.

With nobody blocked the keyspace's ``on_modified`` stays ``None``, and the session's
per-command cost is one truth test of an empty list.  Code that changes keys outside
a client's command (a replication or migration stream) must call
:meth:`BlockingRegistry.serve_ready` after each change it applies.

While a client waits, its connection is still read (as Redis does): what it pipelines
behind the blocking command is kept for afterwards, and a connection closed by the
peer ends the session at once, so a gone client cannot swallow a later push.
A waiter leaves the registry however its wait ends: served, timed out, unblocked
by ``CLIENT UNBLOCK``, or cancelled (connection killed, node shutdown).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..keyspace.numbers import parse_long_double
from ..keyspace.values import ListValue
from ..keyspace.zset import SortedSet
from ..protocol.limits import RECV_SIZE
from .table import CommandError, command

#: Value classes whose appearance at a key can serve a blocked client.
WAKE_TYPES: frozenset[type] = frozenset({ListValue, SortedSet})

UNBLOCKED_ERROR = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"

_TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
_TIMEOUT_NEGATIVE = "ERR timeout is negative"
_LLONG_MAX = (1 << 63) - 1


def parse_timeout(raw: bytes) -> int:
    """Milliseconds to wait (0: forever) for a timeout argument given in seconds.

    Redis 7.0 reads the seconds as a ``long double``, multiplies by 1000 in that
    precision, rounds *up* and converts to a 64-bit integer.  So ``0.0001`` waits
    1 ms, ``-0.0005`` means 0 (forever), ``-0.002`` is negative, and values the
    conversion cannot hold (``inf``, ``1e300``) become LLONG_MIN: negative too.
    """
    value = parse_long_double(raw)
    if value is None:
        raise CommandError(_TIMEOUT_NOT_FLOAT)
    if isinstance(value, float):  # an infinity
        raise CommandError(_TIMEOUT_NEGATIVE)
    mantissa, exponent = value
    ms = _ceil_long_double(mantissa * 1000, exponent)
    if ms < 0 or ms > _LLONG_MAX:
        raise CommandError(_TIMEOUT_NEGATIVE)
    return ms


def _ceil_long_double(mantissa: int, exponent: int) -> int:
    """``ceil`` of ``mantissa * 2**exponent`` first rounded to a 64-bit significand."""
    negative = mantissa < 0
    magnitude = -mantissa if negative else mantissa
    drop = magnitude.bit_length() - 64
    if drop > 0:  # round to nearest, ties to even, as the x87 multiply does
        kept = magnitude >> drop
        rest = magnitude - (kept << drop)
        half = 1 << (drop - 1)
        if rest > half or (rest == half and kept & 1):
            kept += 1
        magnitude, exponent = kept, exponent + drop
    if exponent >= 0:
        whole = magnitude << exponent
        return -whole if negative else whole
    shift = -exponent
    if negative:  # ceil(-x) = -floor(x)
        return -(magnitude >> shift)
    return (magnitude + (1 << shift) - 1) >> shift


@dataclass(slots=True, eq=False)
class Block:
    """What a blocking command waits for.

    ``attempt(key)`` runs when ``key`` may serve the client: it returns the client's
    reply once it has taken what it needs (or an error reply, which also ends the
    wait), or ``None`` to keep waiting.  ``timeout_ms`` is 0 for no timeout.
    """

    keys: tuple[bytes, ...]
    attempt: Callable[[bytes], bytes | None]
    timeout_ms: int


@dataclass(slots=True, eq=False)
class Waiter:
    """One blocked client: its session, what it waits for, and its reply once served."""

    session: object
    block: Block
    reply: bytes | None = None
    event: trio.Event = field(default_factory=trio.Event)


class BlockingRegistry:
    """The node's blocked clients by key, and the serving of keys made ready."""

    def __init__(self, keyspace, listen: Callable, unlisten: Callable) -> None:
        """``listen(fn)``/``unlisten(fn)`` add and remove a keyspace change observer."""
        self.ks = keyspace
        self._listen = listen
        self._unlisten = unlisten
        #: Key → its waiters in blocking order (dict: FIFO with O(1) removal).
        self.by_key: dict[bytes, dict[Waiter, None]] = {}
        #: Session → its waiter; a session waits for at most one command.
        self.by_session: dict[object, Waiter] = {}
        #: Keys made ready and not yet served, in the order they became ready.  The
        #: same list object for the registry's lifetime: sessions hold it and test it
        #: after every command.
        self.ready: list[bytes] = []
        self._ready_set: set[bytes] = set()
        self._with_timeout = 0

    # -- figures -----------------------------------------------------------------

    @property
    def blocked_count(self) -> int:
        """Blocked clients (``INFO``'s ``blocked_clients``)."""
        return len(self.by_session)

    @property
    def timeout_count(self) -> int:
        """Blocked clients with a timeout (``INFO``'s ``clients_in_timeout_table``)."""
        return self._with_timeout

    def is_blocked(self, session) -> bool:
        """Whether ``session`` waits in a blocking command (``CLIENT LIST`` flag ``b``)."""
        return session in self.by_session

    # -- waiting -----------------------------------------------------------------

    async def wait(self, session, block: Block) -> bytes:
        """Block ``session`` until served, timed out or unblocked; return its reply."""
        waiter = Waiter(session, block)
        self._add(waiter)
        pending = bytearray()
        try:
            deadline = trio.current_time() + block.timeout_ms / 1000 if block.timeout_ms else math.inf
            with trio.move_on_at(deadline):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_read_while_blocked, session, pending)
                    await waiter.event.wait()
                    nursery.cancel_scope.cancel()
        finally:
            if waiter.reply is None:
                self._remove(waiter)
        if pending:
            session.reader.feed(bytes(pending))
        return waiter.reply if waiter.reply is not None else session.proto.null_array

    def unblock(self, session, error: bool = False) -> bool:
        """``CLIENT UNBLOCK``: end ``session``'s wait as a timeout, or with an error.

        Returns False if the session is not blocked.
        """
        waiter = self.by_session.get(session)
        if waiter is None:
            return False
        self._finish(waiter, UNBLOCKED_ERROR if error else session.proto.null_array)
        return True

    def forget(self, session) -> None:
        """Drop any waiter of a closed session (normally already gone by cancellation)."""
        waiter = self.by_session.get(session)
        if waiter is not None:
            self._remove(waiter)

    # -- serving -----------------------------------------------------------------

    def serve_ready(self) -> None:
        """Serve the waiters of every ready key, in Redis's order (see module doc)."""
        ready = self.ready
        ready_set = self._ready_set
        by_key = self.by_key
        while ready:
            keys = ready.copy()
            ready.clear()
            for key in keys:
                ready_set.discard(key)
                queue = by_key.get(key)
                if not queue:
                    continue
                for waiter in list(queue):
                    if waiter.reply is not None:
                        continue
                    reply = waiter.block.attempt(key)
                    if reply is not None:
                        self._finish(waiter, reply)

    def _key_modified(self, key: bytes) -> None:
        """Keyspace change listener: mark ``key`` ready if it may serve a waiter now."""
        if key in self.by_key and key not in self._ready_set:
            value = self.ks.get(key)
            if value is not None and value.__class__ in WAKE_TYPES:
                self._ready_set.add(key)
                self.ready.append(key)

    # -- bookkeeping ---------------------------------------------------------------

    def _add(self, waiter: Waiter) -> None:
        if not self.by_session:
            self._listen(self._key_modified)
        self.by_session[waiter.session] = waiter
        if waiter.block.timeout_ms:
            self._with_timeout += 1
        by_key = self.by_key
        for key in dict.fromkeys(waiter.block.keys):  # BLPOP k k waits once on k
            queue = by_key.get(key)
            if queue is None:
                by_key[key] = {waiter: None}
            else:
                queue[waiter] = None

    def _remove(self, waiter: Waiter) -> None:
        if self.by_session.get(waiter.session) is not waiter:
            return
        del self.by_session[waiter.session]
        # Leaving the wait counts as interaction: the idle-client check must not
        # close a client that was blocked for long just before its reply leaves.
        waiter.session.last_interaction = trio.current_time()
        if waiter.block.timeout_ms:
            self._with_timeout -= 1
        by_key = self.by_key
        for key in waiter.block.keys:
            queue = by_key.get(key)
            if queue is not None:
                queue.pop(waiter, None)
                if not queue:
                    del by_key[key]
        if not self.by_session:
            self._unlisten(self._key_modified)
            self.ready.clear()
            self._ready_set.clear()

    def _finish(self, waiter: Waiter, reply: bytes) -> None:
        waiter.reply = reply
        self._remove(waiter)
        waiter.event.set()


async def _read_while_blocked(session, pending: bytearray) -> None:
    """Read a blocked client's connection: keep what it sends, notice when it closes.

    Redis keeps reading a blocked client's socket: requests sent behind the blocking
    command are queued, and a closed connection frees the client (and its place in
    the queues) at once.  Queued bytes beyond the query buffer limit close it too.
    """
    sock = session.sock
    limit = session.reader.max_query_buffer
    stats = session.node.stats
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:  # pragma: no cover - spurious wakeup
            continue
        except OSError:
            data = b""
        if not data or len(pending) + len(data) > limit:
            session.kill()  # cancels the session, this wait included
            await trio.sleep_forever()
        stats.net_input_bytes += len(data)
        pending += data


def blocking_command(name: str, summary: str, deny_reply: Callable[[object], bytes], **meta):
    """Register a blocking command from its synchronous core (see the module doc).

    ``meta`` (``group``, ``since``) goes to :func:`~respkv.commands.table.command`.

    ``deny_reply(session)`` is what the command answers instead of blocking inside
    EXEC (``session.in_exec``), where nothing may wait: Redis gives a null array for
    the pops and a null bulk string for BLMOVE and BRPOPLPUSH.
    """

    def register(core: Callable):
        async def handler(s, args):
            outcome = core(s, args)
            if outcome.__class__ is bytes:
                return outcome
            if s.in_exec:
                return deny_reply(s)
            return await s.node.blocking.wait(s, outcome)

        handler.__name__ = handler.__qualname__ = core.__name__
        handler.__doc__ = core.__doc__
        handler.__module__ = core.__module__  # the command's family is the core's module
        # The replication coordinator runs the core itself, to version what it pops.
        handler.core = core
        handler.deny_reply = deny_reply
        command(name, summary, **meta)(handler)
        return core

    return register
