"""Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.

Theory of operation
-------------------
``MULTI`` gives the session a queue; from then on the session's general path (the
fast path is switched off) checks each request as usual and, instead of running it,
appends it to the queue and replies ``+QUEUED``.  A request rejected while queuing
(unknown command, wrong arity, ...) marks the transaction dirty, and ``EXEC`` then
answers ``-EXECABORT``.  ``EXEC`` runs the queue back to back — nothing else runs on
the node meanwhile, since handlers are synchronous — and replies with the array of
replies; an error inside one command does not stop the others.

``WATCH`` is optimistic locking: the node keeps ``key → sessions watching it`` and
observes key changes (see ``Node.add_key_observer``); a change flags every watching
session, and its next ``EXEC`` replies with a null array and runs nothing.
"""

from __future__ import annotations

from ..protocol import reply
from .keyspecs import request_keys
from .table import CloseConnection, CommandError, command

EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"

#: Commands a session runs immediately even inside MULTI, as Redis does.
IMMEDIATE_IN_MULTI = frozenset(["exec", "discard", "quit", "reset", "multi", "watch"])


class WatchRegistry:
    """Which sessions watch which keys, for one node."""

    def __init__(self, node) -> None:
        self.node = node
        self.by_key: dict[bytes, set] = {}

    def watch(self, session, key: bytes) -> None:
        if key in session.watched:
            return
        session.watched.add(key)
        sessions = self.by_key.get(key)
        if sessions is None:
            if not self.by_key:
                self.node.add_key_observer(self.key_modified)
            sessions = self.by_key[key] = set()
        sessions.add(session)

    def unwatch_all(self, session) -> None:
        for key in session.watched:
            sessions = self.by_key.get(key)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self.by_key[key]
        session.watched.clear()
        session.watch_dirty = False
        if not self.by_key:
            self.node.remove_key_observer(self.key_modified)

    def key_modified(self, key: bytes) -> None:
        sessions = self.by_key.get(key)
        if sessions:
            for session in sessions:
                session.watch_dirty = True


def registry(s) -> WatchRegistry:
    node = s.node
    reg = getattr(node, "watches", None)
    if reg is None:
        reg = node.watches = WatchRegistry(node)
        node.client_closed_hooks.append(_forget_session)
        node.client_reset_hooks.append(_forget_session)
    return reg


def _forget_session(session) -> None:
    end_transaction(session)
    if session.watched:
        session.node.watches.unwatch_all(session)


def end_transaction(s) -> None:
    """Leave MULTI state (EXEC, DISCARD, RESET, disconnect)."""
    s.multi = None
    s.multi_dirty = False
    s.refresh_fast()


def run_to_completion(coroutine):
    """Run an async handler that must not block (inside EXEC) and return its reply.

    Blocking commands check ``session.in_exec`` and answer at once instead of
    waiting, so the coroutine finishes on its first step.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a command tried to wait inside EXEC")


@command("multi", "Starts a transaction.")
def multi(s, args):
    if s.multi is not None:
        raise CommandError("ERR MULTI calls can not be nested")
    registry(s)
    s.multi = []
    s.multi_dirty = False
    s.fast = False
    return reply.OK


@command("discard", "Discards a transaction.")
def discard(s, args):
    if s.multi is None:
        raise CommandError("ERR DISCARD without MULTI")
    end_transaction(s)
    registry(s).unwatch_all(s)
    return reply.OK


@command("exec", "Executes all commands in a transaction.")
def exec_(s, args):
    if s.multi is None:
        raise CommandError("ERR EXEC without MULTI")
    for key in s.watched:
        s.ks.get(key)  # a watched key that expired since counts as changed
    queued, dirty, cas_failed = s.multi, s.multi_dirty, s.watch_dirty
    end_transaction(s)
    registry(s).unwatch_all(s)
    tracking = s.tracking
    try:
        if dirty:
            return EXECABORT
        if cas_failed:
            return s.proto.null_array
        return _run_queued(s, queued)
    finally:
        if tracking is not None:
            tracking.caching = False  # CLIENT CACHING before MULTI covered the transaction


def _run_queued(s, queued) -> bytes:
    """Run a transaction's commands; a tracking client's reads are remembered
    as each runs (after the transaction's earlier writes, as in Redis)."""
    replies = []
    close = False
    s.in_exec = True
    try:
        for spec, request in queued:
            try:
                result = spec.handler(s, request)
                if spec.is_async:
                    result = run_to_completion(result)
            except CommandError as exc:
                result = reply.error(str(exc))
            except CloseConnection as exc:  # e.g. CLIENT KILL of this very client
                result, close = exc.reply, True
            replies.append(result)
            if s.tracking is not None and spec.is_readonly and not s.tracking.bcast:
                s.node.tracking.remember(s, request_keys(spec, request))
    finally:
        s.in_exec = False
    if close:
        raise CloseConnection(reply.array(replies))
    return reply.array(replies)


@command("watch", "Monitors changes to keys to make a later EXEC conditional.")
def watch(s, args):
    if s.multi is not None:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    reg = registry(s)
    for key in args[1:]:
        s.ks.get(key)  # expire it now if due, so that does not count as a change
        reg.watch(s, key)
    return reply.OK


@command("unwatch", "Forgets about all watched keys of the connection.")
def unwatch(s, args):
    registry(s).unwatch_all(s)
    return reply.OK
