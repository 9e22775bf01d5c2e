"""Replicated requests in flight, and what a round sends each peer.

A :class:`WriteRequest` or :class:`ReadRequest` joins one request (or one run of
pipelined requests sharing a placement) to its pure state machine
(:class:`~.put_core.PutCore`, :class:`~.get_core.GetCore`) and to where its reply
goes: a slot reserved in the client session's reply queue (anything with
``fill(bytes)``), or nothing when no client waits.  The coordinator feeds the
machine events and performs the actions it returns; these classes only hold what
performing them needs: the local reply, the keys, the requests to run again.

:class:`Outgoing` collects what one poller round queued for one peer, sent as one
``REPL`` and one ``RREAD`` request.  No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..commands.table import CommandError
from ..protocol import reply
from . import quorum
from .get_core import GetCore
from .put_core import PutCore


class WriteRequest:
    """A replicated write waiting for W: its core, local reply and keys.

    ``count`` is how many client requests the reply answers (a run of pipelined
    writes shares one); ``on_full`` runs once every preferred node has the write.
    """

    __slots__ = ("core", "reply", "count", "keys", "slot", "deadline", "on_full")

    def __init__(self, core: PutCore, reply_bytes: bytes | None, count: int, keys: list[bytes]) -> None:
        self.core = core
        self.reply = reply_bytes
        self.count = count
        self.keys = keys
        self.slot = None
        self.deadline = 0.0
        self.on_full: Callable[[], None] | None = None

    def failure(self, acked: int, needed: int) -> bytes:
        """The ``-NOQUORUM`` reply, once per request answered."""
        return reply.error(quorum.noquorum_error("write", needed, acked)) * max(1, self.count)


class ReadRequest:
    """A replicated read waiting for R: its core, local reply and how to run it again.

    ``requests`` are the client requests it answers; when replicas held newer
    versions they run again (``spec``'s handler, on the merged state) before the
    slot is filled.
    """

    __slots__ = ("core", "reply", "spec", "requests", "session", "keys", "digests", "slot", "deadline")

    def __init__(self, core: GetCore, reply_bytes: bytes, spec, requests, session, keys: list[bytes]) -> None:
        self.core = core
        self.reply = reply_bytes
        self.spec = spec
        self.requests = requests
        self.session = session
        self.keys = keys
        #: What this node held of ``keys`` when the read began (their digests,
        #: empty for none), which the replicas compare with theirs.
        self.digests: list[bytes] = []
        self.slot = None
        self.deadline = 0.0

    def changed_here(self, digest_of: Callable[[bytes], bytes]) -> bool:
        """Whether this node's copy of the keys differs from when the read began:
        merged from an answer, or arrived meanwhile (a hint handed off here, an
        anti-entropy pull).  Then the local reply is out of date even when no
        answer merged anything new, and the requests must run again."""
        return any(digest_of(key) != held for key, held in zip(self.keys, self.digests))

    def final_reply(self, rerun: bool) -> bytes:
        """The reply: the local one, or the requests run again on merged state."""
        if not rerun or self.spec is None:
            return self.reply
        replies = []
        for args in self.requests:
            try:
                replies.append(self.spec.handler(self.session, args))
            except CommandError as exc:
                replies.append(reply.error(str(exc)))
        return b"".join(replies)

    def failure(self, answered: int, needed: int) -> bytes:
        return reply.error(quorum.noquorum_error("read", needed, answered)) * max(1, len(self.requests))


class Outgoing:
    """What one round queued for one peer: one REPL and one RREAD request.

    REPL arguments are kept encoded (``wire.encode_args``): a write's records are
    encoded once and the same bytes go to every replica.
    """

    __slots__ = ("repl_parts", "repl_count", "repl_waiting", "repl_keys", "reads")

    def __init__(self) -> None:
        self.repl_parts: list[bytes] = []
        self.repl_count = 0
        self.repl_waiting: list[WriteRequest] = []
        self.repl_keys: list[bytes] = []
        self.reads: list[tuple[ReadRequest, list[bytes], list[bytes]]] = []

    def add_records(self, encoded: bytes, count: int, request: WriteRequest, keys: list[bytes]) -> None:
        self.repl_parts.append(encoded)
        self.repl_count += count
        self.repl_waiting.append(request)
        self.repl_keys.extend(keys)
