"""Replies that wait for replicas, and what a round sends each peer.

A replicated request's reply is a :class:`Deferred` placeholder in the session's
reply list until its quorum is decided; the placeholders of one session batch share
a :class:`ReplyBatch`, which wakes the session (parked, or in a task) when the last
one settles or the batch times out.  :class:`Outgoing` collects what one poller
round queued for one peer, sent as one ``REPL`` and one ``RREAD`` request.  No I/O
here: the coordinator fills these and the bus callbacks settle them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from ..commands.table import CommandError
from ..protocol import reply
from . import quorum
from .quorum import PENDING, REACHED, Tally


class ReplyBatch:
    """The placeholders of one session batch still waiting for their replicas.

    When the last one settles (or the batch times out) ``finish`` wakes whoever
    waits: ``on_settled`` for a parked session, ``event`` for one in a task.
    """

    __slots__ = ("pending", "reads_pending", "event", "on_settled", "deadline", "done")

    def __init__(self) -> None:
        self.pending = 0
        #: Reads among ``pending``: the session runs no write until they settle
        #: (a read's reply may be computed again once replicas answered, and must
        #: not see a write the same client sent after it).
        self.reads_pending = 0
        self.event: trio.Event | None = None
        self.on_settled: Callable[[], None] | None = None
        self.deadline = math.inf
        self.done = False

    def settled_one(self, read: bool = False) -> None:
        self.pending -= 1
        if read:
            self.reads_pending -= 1
        if self.pending == 0:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.event is not None:
            self.event.set()
        if self.on_settled is not None:
            self.on_settled()


class Deferred:
    """The reply (or replies, for a run of requests) that waits for replicas.

    ``requests`` are the requests it answers, for running them again when a read
    merged newer versions from a replica; ``reply`` is their local replies.
    """

    __slots__ = ("reply", "tally", "kind", "batch", "settled", "changed", "spec", "requests", "on_full", "unfound")

    def __init__(self, reply_bytes: bytes, tally: Tally, kind: str, spec=None, requests=()) -> None:
        self.reply = reply_bytes
        self.tally = tally
        self.kind = kind
        self.batch: ReplyBatch | None = None
        self.settled = tally.outcome() != PENDING
        self.changed = False  # a read merged newer versions: run the command again
        self.spec = spec
        self.requests = requests
        #: Called once every replica asked has acknowledged (tombstone purging).
        self.on_full: Callable[[], None] | None = None
        #: Reads: the keys no answer has held a version of yet (see quorum.read_outcome).
        self.unfound: set[bytes] | None = None

    def ack(self) -> None:
        self.tally.ack()
        self._update()
        if self.on_full is not None and self.tally.answered == self.tally.asked:
            self.on_full()

    def fail(self) -> None:
        self.tally.fail()
        self._update()

    def found(self, keys) -> None:
        """Some replica's answer held versions of ``keys`` (reads)."""
        unfound = self.unfound
        if unfound:
            unfound.difference_update(keys)
            self.tally.unfound = len(unfound)

    def _update(self) -> None:
        if not self.settled and self.tally.outcome() != PENDING:
            self.settled = True
            if self.batch is not None:
                self.batch.settled_one(self.kind == "read")

    def result(self, session) -> bytes:
        """The reply once settled or timed out."""
        tally = self.tally
        if tally.outcome(final=True) != REACHED:
            error = reply.error(quorum.noquorum_error(self.kind, tally.needed, tally.answered))
            return error * max(1, len(self.requests))
        if self.changed:
            replies = []
            for args in self.requests:
                try:
                    replies.append(self.spec.handler(session, args))
                except CommandError as exc:
                    replies.append(reply.error(str(exc)))
            return b"".join(replies)
        return self.reply


class Outgoing:
    """What one round queued for one peer: one REPL and one RREAD request.

    REPL arguments are kept encoded (``wire.encode_args``): a write's records are
    encoded once and the same bytes go to every replica.
    """

    __slots__ = ("repl_parts", "repl_count", "repl_waiting", "repl_keys", "reads")

    def __init__(self) -> None:
        self.repl_parts: list[bytes] = []
        self.repl_count = 0
        self.repl_waiting: list[Deferred] = []
        self.repl_keys: list[bytes] = []
        self.reads: list[tuple[Deferred, list[bytes], list[bytes]]] = []

    def add_records(self, encoded: bytes, count: int, deferred: Deferred, keys: list[bytes]) -> None:
        self.repl_parts.append(encoded)
        self.repl_count += count
        self.repl_waiting.append(deferred)
        self.repl_keys.extend(keys)
