"""Raw RESP2/RESP3 reply framing and decoding for the conformance harness.

Theory of operation
-------------------
The harness compares what two servers send back *byte for byte*, so it must never
re-encode a reply: it has to cut the byte stream into whole replies and keep each one
exactly as it arrived. :func:`frame_length` does that cutting. It is sans-IO: given a
buffer it either returns the length of the first complete reply or ``None`` when more
bytes are needed, and it raises :class:`ProtocolError` on bytes that can never become a
valid reply. It walks nested aggregates with an explicit stack of "elements still
owed" counters instead of recursion, so a deeply nested reply cannot exhaust Python's
stack and an incomplete reply costs one linear pass.

A few comparisons (``!unordered``, ``!scan``, ``!ttl``, ``!hello``) need to look inside a
reply. :func:`split_aggregate` hands back the raw bytes of each element of an aggregate,
which keeps element comparisons byte-exact, and :func:`decode` turns a reply into plain
Python values for the checks that need numbers or map keys.

Types handled (first byte of a reply):

=====  ==========================  =====  ==========================
``+``  simple string               ``,``  double
``-``  simple error                ``#``  boolean
``:``  integer                     ``!``  blob error
``$``  bulk string (``$-1`` null)  ``=``  verbatim string
``*``  array (``*-1`` null)        ``(``  big number
``_``  null                        ``%``  map
``~``  set                         ``>``  push
``|``  attribute (framed together with the reply it annotates)
=====  ==========================  =====  ==========================

RESP3 streamed strings and aggregates (``$?``/``*?``) are not produced by Redis and are
rejected as protocol errors.
"""

from __future__ import annotations

import re

__all__ = [
    "ProtocolError",
    "Status",
    "ErrorReply",
    "Verbatim",
    "BigNumber",
    "Push",
    "frame_length",
    "split_aggregate",
    "decode",
    "AGGREGATE_TYPES",
]

_CRLF = b"\r\n"
_INT_RE = re.compile(rb"-?[0-9]+\Z")
_LINE_TYPES = frozenset(b"+-:_,#(")
_BLOB_TYPES = frozenset(b"$!=")
AGGREGATE_TYPES = frozenset(b"*~>%|")


class ProtocolError(ValueError):
    """The bytes cannot be the start of a valid RESP reply."""


class Status(bytes):
    """A RESP simple string (``+OK``), kept distinct from bulk strings."""


class ErrorReply(bytes):
    """A simple (``-``) or blob (``!``) error reply; the bytes are the message."""


class Verbatim(bytes):
    """A RESP3 verbatim string; ``.format`` holds the three-letter format (``txt``)."""

    format: bytes

    def __new__(cls, data: bytes, fmt: bytes) -> "Verbatim":
        obj = super().__new__(cls, data)
        obj.format = fmt
        return obj


class BigNumber(int):
    """A RESP3 big number, kept distinct from an ordinary integer."""


class Push(list):
    """A RESP3 out-of-band push message."""


def _parse_length(line: bytes, type_byte: int) -> int:
    """Parse the length field of a blob or aggregate header, rejecting junk."""
    if not _INT_RE.match(line):
        raise ProtocolError(f"bad length {line!r} after {chr(type_byte)!r}")
    n = int(line)
    if n < -1:
        raise ProtocolError(f"negative length {n} after {chr(type_byte)!r}")
    return n


def _check_line(type_byte: int, line: bytes) -> None:
    """Validate the payload of a one-line reply type."""
    if type_byte in b":(":
        if not _INT_RE.match(line):
            raise ProtocolError(f"bad number {line!r}")
    elif type_byte == ord("_"):
        if line:
            raise ProtocolError(f"null with payload {line!r}")
    elif type_byte == ord("#"):
        if line not in (b"t", b"f"):
            raise ProtocolError(f"bad boolean {line!r}")
    elif type_byte == ord(","):
        try:
            float(line)
        except ValueError:
            raise ProtocolError(f"bad double {line!r}") from None


def frame_length(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Return the byte length of the complete reply beginning at ``buf[start]``.

    Returns ``None`` if the buffer ends before the reply does. Raises
    :class:`ProtocolError` if the bytes are not valid RESP. An attribute (``|``) is
    framed together with the reply that follows it, because the two are one answer.
    """
    end = len(buf)
    pos = start
    owed = 1          # elements still needed at the current nesting level
    stack: list[int] = []
    while True:
        if pos >= end:
            return None
        eol = buf.find(_CRLF, pos)
        if eol < 0:
            return None
        type_byte = buf[pos]
        line = bytes(buf[pos + 1:eol])
        pos = eol + 2
        children = 0
        if type_byte in _LINE_TYPES:
            _check_line(type_byte, line)
        elif type_byte in _BLOB_TYPES:
            n = _parse_length(line, type_byte)
            if n == -1:
                if type_byte != ord("$"):
                    raise ProtocolError(f"null length after {chr(type_byte)!r}")
            else:
                if pos + n + 2 > end:
                    return None
                if buf[pos + n:pos + n + 2] != _CRLF:
                    raise ProtocolError("blob not terminated by CRLF")
                if type_byte == ord("=") and (n < 4 or buf[pos + 3] != ord(":")):
                    raise ProtocolError("verbatim string without a format prefix")
                pos += n + 2
        elif type_byte in AGGREGATE_TYPES:
            n = _parse_length(line, type_byte)
            if n == -1:
                if type_byte != ord("*"):
                    raise ProtocolError(f"null length after {chr(type_byte)!r}")
            elif type_byte == ord("%"):
                children = 2 * n
            elif type_byte == ord("|"):
                children = 2 * n + 1   # the pairs, then the reply they annotate
            else:
                children = n
        else:
            raise ProtocolError(f"unknown reply type byte {bytes([type_byte])!r}")
        owed -= 1
        if children:
            stack.append(owed)
            owed = children
        while owed == 0:
            if not stack:
                return pos - start
            owed = stack.pop()


def _header(buf: bytes, start: int) -> tuple[int, bytes, int]:
    """Return (type byte, header line, position after the header) of a framed reply."""
    eol = buf.index(_CRLF, start)
    return buf[start], buf[start + 1:eol], eol + 2


def split_aggregate(reply: bytes) -> tuple[str, int, list[bytes]] | None:
    """Split one complete aggregate reply into the raw bytes of its elements.

    Returns ``(type_char, count, elements)`` where ``count`` is the announced count
    (pairs for a map) and ``elements`` the element frames in order (a map yields key,
    value, key, value...). Returns ``None`` for a non-aggregate or a null array. A
    leading attribute is skipped.
    """
    type_byte, line, pos = _header(reply, 0)
    if type_byte == ord("|"):
        pairs = int(line)
        for _ in range(2 * pairs):
            pos += frame_length(reply, pos)
        return split_aggregate(reply[pos:])
    if type_byte not in AGGREGATE_TYPES:
        return None
    count = int(line)
    if count < 0:
        return None
    n = 2 * count if type_byte == ord("%") else count
    elements = []
    for _ in range(n):
        length = frame_length(reply, pos)
        if length is None:
            raise ProtocolError("aggregate shorter than announced")
        elements.append(reply[pos:pos + length])
        pos += length
    return chr(type_byte), count, elements


def _hashable(value):
    """Make a decoded value usable as a dict key or set member."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, set):
        return frozenset(value)
    return value


def _decode_at(buf: bytes, pos: int):
    """Decode the reply at ``pos`` (which must be complete); return (value, next pos)."""
    type_byte, line, pos = _header(buf, pos)
    t = chr(type_byte)
    if t == "+":
        return Status(line), pos
    if t == "-":
        return ErrorReply(line), pos
    if t == ":":
        return int(line), pos
    if t == "(":
        return BigNumber(line), pos
    if t == "_":
        return None, pos
    if t == ",":
        return float(line), pos
    if t == "#":
        return line == b"t", pos
    if t in "$!=":
        n = int(line)
        if n == -1:
            return None, pos
        data = buf[pos:pos + n]
        pos += n + 2
        if t == "!":
            return ErrorReply(data), pos
        if t == "=":
            return Verbatim(data[4:], data[:3]), pos
        return data, pos
    n = int(line)
    if t == "*" and n == -1:
        return None, pos
    if t == "%":
        result = {}
        for _ in range(n):
            key, pos = _decode_at(buf, pos)
            value, pos = _decode_at(buf, pos)
            result[_hashable(key)] = value
        return result, pos
    if t == "|":
        for _ in range(2 * n):
            _, pos = _decode_at(buf, pos)
        return _decode_at(buf, pos)
    items = []
    for _ in range(n):
        item, pos = _decode_at(buf, pos)
        items.append(item)
    if t == "~":
        return {_hashable(i) for i in items}, pos
    if t == ">":
        return Push(items), pos
    return items, pos


def decode(buf: bytes | bytearray):
    """Decode the first reply in ``buf`` to Python values.

    Returns ``(value, length)`` or ``None`` if the reply is incomplete. Mapping:
    simple string → :class:`Status`, errors → :class:`ErrorReply`, integer → ``int``,
    big number → :class:`BigNumber`, bulk string → ``bytes``, verbatim string →
    :class:`Verbatim`, null (``_``, ``$-1``, ``*-1``) → ``None``, double → ``float``,
    boolean → ``bool``, array → ``list``, set → ``set``, map → ``dict``, push →
    :class:`Push`. Attributes are dropped. Unhashable keys and set members become
    tuples.
    """
    length = frame_length(buf)
    if length is None:
        return None
    value, _ = _decode_at(bytes(buf[:length]), 0)
    return value, length
