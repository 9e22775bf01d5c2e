"""One trio task that waits on every idle client connection at once.

Theory of operation
-------------------
A task per client would make every request cost a trio task switch: park in
``wait_readable``, get woken by the I/O manager, be rescheduled.  On the request path
that bookkeeping costs more than parsing and running the command.  Instead, the node
keeps its client sockets in one ``epoll`` set (registered once, level-triggered) and
one task, the poller, waits — through trio — for that set's own descriptor to become
readable.  It then asks the set which clients have data and lets each session handle
its bytes synchronously: receive and run the complete requests.  One trio wake-up
serves every client that became ready, as in Redis's event loop.

Replies leave at the end of the round, one ``send`` per session, as Redis writes
its clients' replies just before it sleeps.  Sending them back to back, rather than
one between each session's work, matters on a loopback: each send to a peer that
sleeps in its own event loop wakes it, and a woken peer takes the rest of the round's
replies in one go instead of being woken once per reply.  A reply the socket cannot
take whole is finished by a task, like any other wait.

With replication, a write's reply waits for replicas: the session *parks* and the bus reader that receives the last acknowledgement
only *posts* it (:meth:`ClientPoller.post`, which wakes the poller through an
eventfd in the set); in its next round the poller finishes posted sessions — their
replies leave with the round's others.  A parked session's socket stays in the set
(taking it out and back costs two ``epoll_ctl`` calls per wait, the bulk of
replicated traffic's system calls); only if it becomes readable while parked —
the client sent more, or hung up — does it leave the set, until the session is
finished.  So the cluster bus never writes to a client socket or touches the set,
and no task is started.  What the sessions
of one round queued for other nodes is flushed at the end of the round, so every
peer gets one request for all of them.

Most commands never wait, so sessions almost always finish synchronously.  When one
must wait — a blocking pop, a reply that does not fit in the socket buffer, later a
request to another node — the session returns the rest of its work as a coroutine;
the poller takes the socket out of the set and runs that coroutine as a task of its
own.  When the task is done the socket rejoins the set.  Either way a session runs
its requests in order, one batch at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import select

import trio

log = logging.getLogger(__name__)

#: ``on_readable``'s answer when the connection is to be closed.
CLOSE = object()
#: ``on_readable``'s answer when the session waits for other nodes without a task:
#: its socket leaves the set until the session calls :meth:`ClientPoller.unpark`.
PARK = object()
_EVENTS = select.EPOLLIN | select.EPOLLRDHUP
_MAX_EVENTS = 1024
#: Rounds of ready clients served back to back before yielding to other tasks.
BURST = 8


def _one_payload_each(replies: list[tuple[object, bytes]]) -> list[tuple[object, bytes]]:
    """A round's replies with each session's payloads joined, in order, at its first
    place: a session whose first payload does not fit in its socket buffer goes on
    in a task, and a second ``send`` of its own must not overtake that task (a
    reply and an invalidation, or several pub/sub messages, in one round; only
    :meth:`ClientPoller.push` gives a session a second payload)."""
    joined: dict[object, bytes] = {}
    for session, payload in replies:
        earlier = joined.get(session)
        joined[session] = payload if earlier is None else earlier + payload
    return list(joined.items()) if len(joined) < len(replies) else replies


class ClientPoller:
    """The client sessions of one node and the task that serves them."""

    def __init__(self, node, round_hooks: list | None = None) -> None:
        self.node = node
        #: Called at the end of every round (and by sessions that wait in a task):
        #: e.g. replication sends each peer what the round's sessions queued for it.
        self.round_hooks: list = round_hooks if round_hooks is not None else []
        self._epoll = select.epoll()
        self._by_fd: dict[int, object] = {}
        self._nursery: trio.Nursery | None = None
        #: (session, reply bytes) produced this round, sent at its end.
        self.replies: list[tuple[object, bytes]] = []
        #: Parked sessions whose replicas answered (:meth:`post`), finished next round.
        self._posted: list = []
        #: A round was asked for without a session to finish (:meth:`wake`).
        self._woken = False
        #: The poller is in a round (its replies leave at its end without a wake-up).
        self._in_round = False
        #: Payloads nobody asked for were queued (:meth:`push`): a session may have
        #: more than one this round.
        self._pushed = False
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)

    def post(self, session) -> None:
        """Have the poller finish a parked ``session`` in its next round.

        For code outside the poller's round (cluster-bus callbacks, timeouts): it
        queues and wakes, and never touches the session's socket itself.
        """
        if not self._posted and not self._woken:
            os.eventfd_write(self._wake_fd, 1)
        self._posted.append(session)

    def wake(self) -> None:
        """Have the poller run a round soon (its end-of-round hooks and replies),
        for code outside its round that queued something for a session (client
        tracking's invalidations)."""
        if not self._posted and not self._woken:
            os.eventfd_write(self._wake_fd, 1)
        self._woken = True

    def push(self, session, payload: bytes, ahead_of_others: bool = False) -> None:
        """Queue for ``session`` a payload it did not ask for (a pub/sub message, an
        invalidation), sent with the round's replies.  ``ahead_of_others``: after
        that session's own replies (one read before a change must reach its client
        before the invalidation), but before every other session's (a writer's
        reply never reaches its client before the invalidation it caused has been
        sent; Redis writes that order too).  From outside a round it wakes the
        poller, so that a round sends it."""
        replies = self.replies
        if ahead_of_others:
            at = 0
            for index, (queued, _) in enumerate(replies):
                if queued is session:
                    at = index + 1
            replies.insert(at, (session, payload))
        else:
            replies.append((session, payload))
        self._pushed = True
        if not self._in_round:
            self.wake()

    def _finish_posted(self) -> None:
        self._woken = False
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass
        posted, self._posted = self._posted, []
        for session in posted:
            session.finish_parked()

    def add(self, session) -> None:
        """Start serving a new session."""
        session.poller = self
        self.node.clients[session.id] = session
        self.unpark(session)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve sessions until cancelled; then close every connection."""
        epoll = self._epoll
        by_fd = self._by_fd
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.lowlevel.wait_readable(epoll)
                    # Keep serving while clients keep being ready, up to BURST rounds,
                    # before going back through trio (which lets other tasks run).
                    for _ in range(BURST):
                        events = epoll.poll(0, _MAX_EVENTS)
                        if not events:
                            break
                        self._in_round = True
                        for fd, _ in events:
                            session = by_fd.get(fd)
                            if session is None:  # the wake-up, or closed earlier this round
                                continue
                            if session.parked is not None:
                                # It waits for replicas: its socket leaves the set
                                # only now that it has something to say.
                                self._unregister(session)
                                continue
                            try:
                                outcome = session.on_readable()
                            except Exception:
                                log.exception("closing client %s after an internal error", session.addr)
                                outcome = CLOSE
                            if outcome is None:
                                continue
                            if outcome is CLOSE:
                                self.close(session)
                            elif outcome is not PARK:  # a parked one stays in the set
                                self.detach(session, outcome)
                        if self._posted or self._woken:
                            self._finish_posted()
                        # First the hooks: the commit log (nothing is acknowledged
                        # before it is written), then replication (one request per
                        # peer for every session of the round).
                        try:
                            self.run_round_hooks()
                        except Exception as exc:
                            self._abandon_round(exc)
                        if self.replies:
                            self._send_replies()
                        self._in_round = False
        finally:
            for session in list(self.node.clients.values()):
                self.close(session)
            epoll.close()
            os.close(self._wake_fd)

    def run_round_hooks(self) -> None:
        """Run the end-of-round hooks now (for a session finishing in a task)."""
        for hook in self.round_hooks:
            hook()

    def _abandon_round(self, exc: Exception) -> None:
        """An end-of-round hook failed (the commit log could not be written): the
        round's replies may acknowledge what is not where they say, so none is
        sent; their connections are closed (a client sees an error, never a false
        acknowledgement)."""
        log.error("closing %d client(s) whose replies this round cannot be vouched for: %s", len(self.replies), exc)
        replies, self.replies = self.replies, []
        for session, _ in replies:
            self.close(session)

    def _send_replies(self) -> None:
        """Send the replies of this round's sessions, one ``send`` each."""
        replies = self.replies
        self.replies = []
        if self._pushed:
            self._pushed = False
            replies = _one_payload_each(replies)
        for session, payload in replies:
            if session.closing:
                continue
            sent = session.send_now(payload)
            if sent < 0:
                self.close(session)
            elif sent < len(payload):  # the socket buffer is full: a task sends the rest
                self.detach(session, session.send_then(payload, sent, False))

    def _unregister(self, session) -> None:
        fd = session.sock.fileno()
        del self._by_fd[fd]
        self._epoll.unregister(fd)

    def detach(self, session, work) -> None:
        """Serve ``session`` in a task of its own until ``work`` is done."""
        self._unregister(session)
        self.run_parked(session, work)

    def run_parked(self, session, work) -> None:
        """Finish a parked session's ``work`` in a task (its socket is out of the set)."""
        session.cancel_scope = trio.CancelScope()
        self._nursery.start_soon(self._run_detached, session, work)

    def unpark(self, session) -> None:
        """Put a session's socket (back) into the set, unless it is still there."""
        fd = session.sock.fileno()
        if self._by_fd.get(fd) is session:
            return
        self._by_fd[fd] = session
        self._epoll.register(fd, _EVENTS)

    async def _run_detached(self, session, work) -> None:
        close = True
        try:
            with session.cancel_scope:
                close = await work
        except (ConnectionError, trio.ClosedResourceError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF):
                raise
        finally:
            session.cancel_scope = None
            if close or session.closing:
                self.close(session)
            else:
                self.unpark(session)

    def close(self, session) -> None:
        """Forget ``session`` and close its connection (idempotent)."""
        if self.node.clients.pop(session.id, None) is None:
            return
        session.closing = True
        sock = session.sock
        fd = sock.fileno()
        if fd >= 0 and self._by_fd.pop(fd, None) is session:
            self._epoll.unregister(fd)
        if session.cancel_scope is not None:  # a detached task closes it when it ends
            session.cancel_scope.cancel()
        self.node.on_client_closed(session)
        trio.lowlevel.notify_closing(sock)
        sock.close()
