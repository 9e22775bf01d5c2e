"""Frames of the cluster bus: RESP arrays of bulk strings, sans-IO.

Every message between nodes is one RESP array ``[kind, id, op, arg...]``:

* ``kind`` is ``Q`` (a request that wants an answer), ``N`` (a notification that
  does not), ``R`` (the answer to request ``id``) or ``E`` (an error answer, whose
  single argument is the message);
* ``id`` is the request number chosen by the sender of the request (``0`` for
  notifications), decimal;
* ``op`` names the operation (``HELLO``, ``PING``, ``PUT``, ...), empty in answers.

Using RESP keeps the bus debuggable with ordinary tools; :class:`FrameReader`
parses it with the client request reader behind the bus's guard, bounded by the
bytes it may buffer, so a stranger talking to the bus port cannot make a node
allocate more than a small multiple of what it sent.
"""

from __future__ import annotations

from ..protocol.guard import bus_chunk_safe
from ..protocol.reader import ProtocolError, QueryBufferFull, RequestReader

REQUEST = b"Q"
NOTIFY = b"N"
ANSWER = b"R"
ERROR = b"E"

#: Most bytes buffered for one unfinished frame (frames carry whole values).
MAX_BUFFERED = 1024 * 1024 * 1024


class BusProtocolError(Exception):
    """A frame that is not ``[kind, id, op, args...]``."""


class Prepared:
    """Arguments encoded ahead of time (``encode_args``), to send to several peers."""

    __slots__ = ("count", "body")

    def __init__(self, count: int, body: bytes) -> None:
        self.count = count
        self.body = body


def encode_args(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The RESP bulk strings of ``args``, back to back (a frame's tail)."""
    if not args:
        return b""
    # Joined by the bulks' trailing CRLFs: one formatting per argument, not two.
    return b"\r\n".join([b"$%d\r\n%b" % (len(arg), arg) for arg in args]) + b"\r\n"


def encode(kind: bytes, request_id: int, op: bytes, args: list[bytes] | tuple[bytes, ...] | Prepared = ()) -> bytes:
    rid = b"%d" % request_id
    if args.__class__ is Prepared:
        count, body = args.count, args.body
    else:
        count, body = len(args), encode_args(args)
    head = b"*%d\r\n$1\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (3 + count, kind, len(rid), rid, len(op), op)
    return head + body


class FrameReader:
    """Sans-IO parser of bus frames: the client request reader, arrays only.

    Frames are parsed by :class:`~respkv.protocol.reader.RequestReader` with inline
    commands off, behind the bus's guard
    (:func:`~respkv.protocol.guard.bus_chunk_safe`, the client guard's
    allocation bound): no announced length or count costs memory before its
    bytes arrive (hiredis takes only chunks the guard passed; everything else is
    parsed by the exact path, which slices bulks out of what arrived).  A frame
    only has to be well formed (a non-empty array of bulk strings); anything
    else, or more than :data:`MAX_BUFFERED` bytes held for an unfinished frame,
    is a :class:`BusProtocolError` that ends the connection.
    """

    def __init__(self, max_buffered: int = MAX_BUFFERED) -> None:
        # Frames are canonical (peers encode them with ``encode``), and large ones
        # often end past a receive: their tails wait for the fast path.
        self._reader = RequestReader(
            max_bulk=max_buffered, max_query_buffer=max_buffered, inline=False, keep_tails=True,
            guard=bus_chunk_safe,
        )
        self.max_buffered = max_buffered
        #: True when no partial frame is buffered.
        self.idle = True

    def parse(self, data: bytes) -> list[list[bytes]]:
        """Take received bytes; return every frame they complete."""
        reader = self._reader
        try:
            frames = reader.parse_all(data)
        except ProtocolError as exc:
            raise BusProtocolError(f"malformed bus frame: {exc}") from None
        except QueryBufferFull:
            raise BusProtocolError(f"a bus frame exceeds {self.max_buffered} bytes") from None
        self.idle = reader.idle
        return frames


def new_reader() -> FrameReader:
    return FrameReader()


def split(frame: list[bytes]) -> tuple[bytes, int, bytes, list[bytes]]:
    """``(kind, id, op, args)`` of a parsed frame."""
    if len(frame) < 3 or frame[0] not in (REQUEST, NOTIFY, ANSWER, ERROR) or not frame[1].isdigit():
        raise BusProtocolError(f"malformed bus frame {frame[:3]!r}")
    return frame[0], int(frame[1]), frame[2], frame[3:]
