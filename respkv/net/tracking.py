"""Server-assisted client-side caching: ``CLIENT TRACKING``, as Redis 7.0 does it.

Theory of operation
-------------------
A client that turns tracking on caches what it reads; the node tells it when a
key it may have cached changes, with an ``invalidate`` message: a RESP3 push frame
(``>2 invalidate [keys]``) on its own connection, or on the connection it named
with ``REDIRECT``: a RESP3 one gets the push frame, a RESP2 one with subscriptions
(to ``__redis__:invalidate``, as Redis documents it) a pub/sub ``message`` on that
channel whose payload is the array of keys (:func:`respkv.net.pubsub.invalidate_message`);
a RESP2 one without subscriptions gets nothing, as from Redis.

* **Default mode**: the node remembers, per key, the ids of the clients that read
  it (:attr:`Tracking.table`, filled by :meth:`Tracking.remember` after each
  read-only command of a tracking client).  When the key changes, each of them is
  told once and forgotten until it reads the key again.  ``OPTIN`` remembers only
  the reads right after ``CLIENT CACHING yes``; ``OPTOUT`` all but those right after
  ``CLIENT CACHING no``.
* **Broadcast mode** (``BCAST``): no per-key memory; every change of a key that
  starts with one of the client's prefixes (any key without ``PREFIX``) is sent.
* ``NOLOOP``: changes the client made itself are not sent to it.
* **The table is bounded** by ``tracking-table-max-keys``: past it, the keys
  remembered longest are forgotten and their readers invalidated as if the keys
  had changed (:meth:`Tracking.trim`; Redis picks random keys), at most
  :data:`TRIM_STEP` keys per read and per cron tick, so that lowering the limit
  costs no request a long pause.

Changes reach the registry through the keyspace's change observers
(:meth:`Tracking.key_changed`; writes, expiries, evictions, keys written by
replication and repairs alike).  Messages are gathered per target and sent at the
end of the poller's round (:meth:`Tracking.flush`, a round hook), never inside a
reply: after the target's own replies of the round, before the other sessions'
(so the writer hears "OK" only once the invalidation is on its way).  A target busy in
a task of its own (sending a long reply, a blocking command) gets them at the
first round after it finished.
"""

from __future__ import annotations

from ..commands.tracking import TrackingState
from ..protocol import reply
from .pubsub import invalidate_message

#: Most table keys dropped in one go (a read, a cron tick) when over the limit.
TRIM_STEP = 1000
#: The name of the push message, and of the one a client with a vanished
#: redirect target gets.
INVALIDATE = b"invalidate"
REDIRECT_BROKEN = b"tracking-redir-broken"


def invalidate_frame(keys: list[bytes] | None, version: int = 3) -> bytes:
    """The message invalidating ``keys`` (every key when None): a RESP3 push frame,
    or for a RESP2 redirect target a pub/sub message."""
    if version == 2:
        return invalidate_message(b"$-1\r\n" if keys is None else reply.bulk_array(keys))
    body = b"_\r\n" if keys is None else reply.bulk_array(keys)
    return b">2\r\n$10\r\ninvalidate\r\n" + body


def invalidate_frames(keys: list[bytes | None], version: int = 3) -> list[bytes]:
    """The messages for ``keys`` queued in a round, None meaning every key (a
    flush): the keys before the last None are covered by it."""
    flushes = [index for index, key in enumerate(keys) if key is None]
    if not flushes:
        return [invalidate_frame(list(dict.fromkeys(keys)), version)]
    after = keys[flushes[-1] + 1:]
    return [invalidate_frame(None, version)] + (
        [invalidate_frame(list(dict.fromkeys(after)), version)] if after else [])


class Tracking:
    """The node's tracking registry (see the module doc)."""

    def __init__(self, node) -> None:
        self.node = node
        #: key → ids of the default-mode clients that read it since it last changed.
        self.table: dict[bytes, set[int]] = {}
        #: prefix → ids of the broadcast clients registered for it (b"" = every key).
        self.prefixes: dict[bytes, set[int]] = {}
        #: target client id → keys to tell it about at the end of the round (None: all).
        self.pending: dict[int, list[bytes | None]] = {}
        #: Sessions with tracking on (INFO's tracking_clients).
        self.clients = 0
        node.round_hooks.append(self.flush)
        node.cron_hooks.append(self.nudge)
        node.client_closed_hooks.append(self.disable)
        node.client_reset_hooks.append(self.disable)

    # -- turning it on and off ---------------------------------------------------

    def enable(self, session, state: TrackingState) -> None:
        """Turn tracking on for ``session`` (or change its prefixes and flags)."""
        if session.tracking is None:
            self.clients += 1
            if self.clients == 1:
                self.node.add_key_observer(self.key_changed)
        else:
            state.prefixes = session.tracking.prefixes + state.prefixes
        session.tracking = state
        for prefix in state.prefixes if state.bcast else ():
            self.prefixes.setdefault(prefix, set()).add(session.id)
        if state.bcast and not state.prefixes:
            self.prefixes.setdefault(b"", set()).add(session.id)
        session.refresh_fast()

    def disable(self, session) -> None:
        """Turn tracking off for ``session`` (OFF, RESET, disconnection).  Its ids
        in the key table are dropped lazily, when those keys change."""
        state = session.tracking
        if state is None:
            return
        session.tracking = None
        for prefix in (state.prefixes or [b""]) if state.bcast else ():
            members = self.prefixes.get(prefix)
            if members is not None:
                members.discard(session.id)
                if not members:
                    del self.prefixes[prefix]
        self.pending.pop(session.id, None)
        self.clients -= 1
        if not self.clients:
            self.node.remove_key_observer(self.key_changed)
            self.table.clear()
        session.refresh_fast()

    # -- reads and changes ------------------------------------------------------------

    def remember(self, session, keys: list[bytes]) -> None:
        """``session`` (tracking in default mode) read ``keys``."""
        state = session.tracking
        if (state.optin and not state.caching) or (state.optout and state.caching):
            return
        table = self.table
        client = session.id
        for key in keys:
            readers = table.get(key)
            if readers is None:
                table[key] = {client}
            else:
                readers.add(client)
        limit = self.node.config["tracking-table-max-keys"]
        if limit and len(table) > limit:
            self.trim(limit)

    def trim(self, limit: int) -> None:
        """Forget the oldest keys over ``limit`` (at most :data:`TRIM_STEP`), telling
        their readers (NOLOOP or not) to drop them."""
        table = self.table
        for _ in range(min(len(table) - limit, TRIM_STEP)):
            key = next(iter(table))
            for client in table.pop(key):
                self._queue(client, key, 0)

    def key_changed(self, key: bytes) -> None:
        """A key changed (a keyspace observer): queue its invalidations."""
        changer = self.node.executing
        changer_id = changer.id if changer is not None else 0
        readers = self.table.pop(key, None)
        if readers:
            for client in readers:
                self._queue(client, key, changer_id)
        if self.prefixes:
            for prefix, members in self.prefixes.items():
                if key.startswith(prefix):
                    for client in members:
                        self._queue(client, key, changer_id)

    def flushed(self) -> None:
        """FLUSHALL/FLUSHDB: as in Redis every tracking client (NOLOOP or not) is
        told to drop everything, in one message with a null key list that
        supersedes the keys queued for it before, and the table is forgotten."""
        self.table.clear()
        for client, session in self.node.clients.items():
            if session.tracking is not None:
                self._queue(client, None, 0)

    def _queue(self, client: int, key: bytes | None, changer_id: int) -> None:
        """Queue ``key`` (None: every key) for ``client``."""
        session = self.node.clients.get(client)
        if session is None or session.tracking is None:
            return
        if session.tracking.noloop and client == changer_id:
            return
        keys = self.pending.get(client)
        if keys is None:
            self.pending[client] = [key]
            if session.poller is not None:
                session.poller.wake()  # a round delivers it, even if this change came from outside one
        else:
            keys.append(key)

    # -- delivery ---------------------------------------------------------------------

    def flush(self) -> None:
        """Send what is pending to each target that can take it now (a round hook)."""
        if not self.pending:
            return
        clients = self.node.clients
        for client, keys in list(self.pending.items()):
            session = clients.get(client)
            if session is None or session.tracking is None:
                del self.pending[client]
                continue
            target = self._target(session)
            if target is None:
                del self.pending[client]
                continue
            if target.cancel_scope is not None or target.parked is not None or target.poller is None:
                continue  # busy in a task, or waiting for replicas: a later round
            del self.pending[client]
            for frame in invalidate_frames(keys, target.proto.version):
                target.poller.push(target, frame, ahead_of_others=True)

    def nudge(self) -> None:
        """Wake the pollers of targets still waiting for their messages (the cron
        calls this: a target that was busy gets them within a tick), and go on
        trimming a table over its limit."""
        limit = self.node.config["tracking-table-max-keys"]
        if limit and len(self.table) > limit:
            self.trim(limit)
        for client in self.pending:
            session = self.node.clients.get(client)
            if session is not None and session.poller is not None:
                session.poller.wake()

    def _target(self, session):
        """Where ``session``'s messages go: itself (RESP3), its redirect target (RESP3,
        or RESP2 with subscriptions), or None (nobody can receive them; a vanished
        target is reported once)."""
        state = session.tracking
        if not state.redirect:
            return session if session.proto.version == 3 else None
        target = self.node.clients.get(state.redirect)
        if target is None:
            if not state.broken_redirect and session.proto.version == 3 and session.poller is not None:
                state.broken_redirect = True
                frame = b">2\r\n$21\r\n" + REDIRECT_BROKEN + b"\r\n" + reply.integer(state.redirect)
                session.poller.push(session, frame)
            return None
        return target if target.proto.version == 3 or target.subscriptions is not None else None

    # -- introspection ------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """INFO stats' tracking figures."""
        return {
            "tracking_total_keys": len(self.table),
            "tracking_total_items": sum(map(len, self.table.values())),
            "tracking_total_prefixes": len(self.prefixes),
        }
