"""Encoding of replies, RESP2 and RESP3.

Command handlers return replies already encoded as ``bytes``: most reply types
(simple strings, errors, integers, bulk strings, arrays) are spelled the same in both
protocol versions, so they are plain module functions and constants here.  The types
whose spelling depends on the version a connection negotiated with ``HELLO`` (nulls,
maps, sets, doubles, booleans, verbatim strings) are methods of :data:`RESP2` and
:data:`RESP3`; a session hands the right one to handlers as ``session.proto``.
"""

from __future__ import annotations

from collections.abc import Iterable

OK = b"+OK\r\n"
QUEUED = b"+QUEUED\r\n"
PONG = b"+PONG\r\n"
EMPTY_ARRAY = b"*0\r\n"
EMPTY_BULK = b"$0\r\n\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"


def simple(text: str | bytes) -> bytes:
    """A simple string reply (``+text``); text must not contain CR or LF."""
    if isinstance(text, str):
        text = text.encode()
    return b"+" + text + b"\r\n"


def error(message: str) -> bytes:
    """An error reply; ``message`` starts with its code (``ERR``, ``WRONGTYPE``, ...).

    Like Redis, line breaks inside the message become spaces so the reply stays one
    line.  Text is latin-1 encoded, so bytes that came from the client round-trip.
    """
    if "\r" in message or "\n" in message:
        message = message.replace("\r", " ").replace("\n", " ")
    return b"-" + message.encode("latin-1", "replace") + b"\r\n"


#: Encoded headers and integers for small numbers: concatenating a cached header is
#: about twice as fast as formatting one, and these replies are on every hot path.
BULK_HEADERS = tuple(b"$%d\r\n" % n for n in range(1024))
_SMALL_INTEGERS = tuple(b":%d\r\n" % n for n in range(1024))


def integer(n: int) -> bytes:
    if 0 <= n < 1024:
        return _SMALL_INTEGERS[n]
    return b":%d\r\n" % n


def bulk(value: bytes) -> bytes:
    n = len(value)
    if n < 1024:
        return BULK_HEADERS[n] + value + b"\r\n"
    return b"$%d\r\n%b\r\n" % (n, value)


def array(items: list[bytes]) -> bytes:
    """An array of already-encoded replies."""
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def help_lines(lines: Iterable[str]) -> bytes:
    """A ``<COMMAND> HELP`` reply: one simple string per line of text."""
    return array([simple(line) for line in lines])


def bulk_array(values: Iterable[bytes]) -> bytes:
    """An array of bulk strings."""
    parts = [b"$%d\r\n%b\r\n" % (len(v), v) for v in values]
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


def format_double_text(x: float) -> bytes:
    """Redis 7.0 spelling of a double in replies: ``%.17g``, ``inf``/``-inf``."""
    if x != x:
        return b"nan"
    if x in (float("inf"), float("-inf")):
        return b"inf" if x > 0 else b"-inf"
    return b"%.17g" % x


class Resp2:
    """Spellings for connections speaking RESP2 (the default)."""

    version = 2
    null = b"$-1\r\n"
    null_array = b"*-1\r\n"

    @staticmethod
    def map(pairs: list[tuple[bytes, bytes]]) -> bytes:
        """A map of already-encoded keys and values: a flat array in RESP2."""
        return b"*%d\r\n%b" % (2 * len(pairs), b"".join(k + v for k, v in pairs))

    @staticmethod
    def set(items: list[bytes]) -> bytes:
        return array(items)

    @staticmethod
    def double(x: float) -> bytes:
        return bulk(format_double_text(x))

    @staticmethod
    def boolean(flag: bool) -> bytes:
        return ONE if flag else ZERO

    @staticmethod
    def verbatim(text: bytes, kind: bytes = b"txt") -> bytes:
        return bulk(text)


class Resp3(Resp2):
    """Spellings for connections that switched with ``HELLO 3``."""

    version = 3
    null = b"_\r\n"
    null_array = b"_\r\n"

    @staticmethod
    def map(pairs: list[tuple[bytes, bytes]]) -> bytes:
        return b"%%%d\r\n%b" % (len(pairs), b"".join(k + v for k, v in pairs))

    @staticmethod
    def set(items: list[bytes]) -> bytes:
        return b"~%d\r\n%b" % (len(items), b"".join(items))

    @staticmethod
    def double(x: float) -> bytes:
        return b"," + format_double_text(x) + b"\r\n"

    @staticmethod
    def boolean(flag: bool) -> bytes:
        return b"#t\r\n" if flag else b"#f\r\n"

    @staticmethod
    def verbatim(text: bytes, kind: bytes = b"txt") -> bytes:
        return b"=%d\r\n%b:%b\r\n" % (len(text) + 4, kind, text)


RESP2 = Resp2()
RESP3 = Resp3()
