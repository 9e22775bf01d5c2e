"""One ordered reply queue per client session, with slots for answers still to come.

Theory of operation
-------------------
A session answers its client's requests in the order they came.  Most replies are
known as the request runs and go straight into the batch's list of replies.  A
request whose answer waits for something else (replicas acknowledging a write,
answering a read) *reserves* a :class:`ReplySlot` in that list when it is
dispatched; whoever learns the answer later only *fills* the slot.  The
:class:`ReplyQueue` of the batch counts the slots still empty; when the last one
is filled it calls ``on_settled`` (a parked session posts itself to the poller)
or sets its event (a session waiting in a task).  Filling never writes to a
socket: the session sends the batch, in order, in its poller's next round.

A slot may be marked ``holds_writes``: its request is a read whose reply may be
computed again when it is filled (replicas held newer versions), so the session
runs no later write of the client until it is (see
:meth:`ReplyQueue.holding_writes`); a reply always reflects the state at its
place in the client's command order.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class ReplySlot:
    """A place in a session's replies, filled once its answer is known."""

    __slots__ = ("payload", "queue", "holds_writes")

    def __init__(self, queue: "ReplyQueue", holds_writes: bool) -> None:
        self.payload: bytes | None = None
        self.queue = queue
        self.holds_writes = holds_writes

    def fill(self, payload: bytes) -> None:
        """Give the slot its reply; later fills of a filled slot change nothing."""
        if self.payload is None:
            self.payload = payload
            self.queue.filled(self)


class ReplyQueue:
    """The slots of one session batch still waiting for their replies."""

    __slots__ = ("pending", "writes_held", "event", "on_settled")

    def __init__(self) -> None:
        self.pending = 0
        #: Empty slots of reads that hold back the client's later writes.
        self.writes_held = 0
        self.event: trio.Event | None = None
        self.on_settled: Callable[[], None] | None = None

    def reserve(self, holds_writes: bool = False) -> ReplySlot:
        """A new empty slot, for a reply that will be known later."""
        self.pending += 1
        if holds_writes:
            self.writes_held += 1
        return ReplySlot(self, holds_writes)

    def holding_writes(self) -> bool:
        return self.writes_held > 0

    def filled(self, slot: ReplySlot) -> None:
        self.pending -= 1
        if slot.holds_writes:
            self.writes_held -= 1
        if self.pending == 0:
            if self.event is not None:
                self.event.set()
            if self.on_settled is not None:
                self.on_settled()

    async def wait(self) -> None:
        """Until every slot is filled (whoever reserved them fills them, at the
        latest at their request timeout)."""
        if self.pending:
            self.event = trio.Event()
            await self.event.wait()


def joined(replies: list) -> bytes:
    """The replies of a batch as bytes, in order; every slot must be filled."""
    return b"".join([r if r.__class__ is bytes else r.payload for r in replies])
