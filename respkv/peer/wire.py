"""Frames of the cluster bus: RESP arrays of bulk strings, sans-IO.

Every message between nodes is one RESP array ``[kind, id, op, arg...]``:

* ``kind`` is ``Q`` (a request that wants an answer), ``N`` (a notification that
  does not), ``R`` (the answer to request ``id``) or ``E`` (an error answer, whose
  single argument is the message);
* ``id`` is the request number chosen by the sender of the request (``0`` for
  notifications), decimal;
* ``op`` names the operation (``HELLO``, ``PING``, ``PUT``, ...), empty in answers.

Using RESP keeps the bus debuggable with ordinary tools and lets the node parse it
with the same bounded :class:`~respkv.protocol.reader.RequestReader` that guards the
client port, so a stranger talking to the bus port cannot make a node allocate
more than the reader's limits.
"""

from __future__ import annotations

from ..protocol.reader import RequestReader

REQUEST = b"Q"
NOTIFY = b"N"
ANSWER = b"R"
ERROR = b"E"

#: Bus frames may carry whole values; the same limits as client requests apply.
MAX_FRAME_ARG = 512 * 1024 * 1024
MAX_BUFFERED = 1024 * 1024 * 1024


class BusProtocolError(Exception):
    """A frame that is not ``[kind, id, op, args...]``."""


def encode(kind: bytes, request_id: int, op: bytes, args: list[bytes] | tuple[bytes, ...] = ()) -> bytes:
    rid = b"%d" % request_id
    parts = [b"*%d\r\n$1\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (3 + len(args), kind, len(rid), rid, len(op), op)]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def new_reader() -> RequestReader:
    return RequestReader(max_bulk=MAX_FRAME_ARG, max_query_buffer=MAX_BUFFERED)


def split(frame: list[bytes]) -> tuple[bytes, int, bytes, list[bytes]]:
    """``(kind, id, op, args)`` of a parsed frame."""
    if len(frame) < 3 or frame[0] not in (REQUEST, NOTIFY, ANSWER, ERROR) or not frame[1].isdigit():
        raise BusProtocolError(f"malformed bus frame {frame[:3]!r}")
    return frame[0], int(frame[1]), frame[2], frame[3:]
