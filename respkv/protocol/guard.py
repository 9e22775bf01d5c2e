"""The guard in front of hiredis: may the reader's fast path parse a chunk?

hiredis parses RESP replies, not requests, and preallocates a list for every
aggregate header it meets, from the announced count, before any element has
arrived.  :func:`fast_path_safe` bounds what it can allocate for a chunk to a
small multiple of the chunk's length and keeps the types hiredis would return as
``bytes`` at line starts away from it (see :mod:`respkv.protocol.reader`, whose
fast path calls it for every chunk, client or cluster bus).  No I/O here.
"""

from __future__ import annotations

import functools
import re

#: Array headers of two or more digits (one-digit ones are bounded by their count).
_LONG_ARRAY_HEADERS = re.compile(rb"\*(-?[0-9]{2,})").findall
#: The other aggregate type bytes (map, set, push, attribute): hiredis preallocates
#: for them as for arrays, twice the count for a map or an attribute.
_FOREIGN_AGGREGATES = (b"%", b"~", b">", b"|")
_AS_ARRAY_HEADERS = bytes.maketrans(b"%~>|", b"****")
#: Type bytes hiredis returns as ``bytes``, as if they were bulk strings (simple
#: string, verbatim string, big number), and one of them at a line start (the
#: client guard) or after a CRLF (the bus's).
_BYTES_TYPES = (b"+", b"=", b"(")
_BYTES_HEADER = re.compile(rb"\n[+=(]").search
_BYTES_AFTER_CRLF = re.compile(rb"\r\n[+=(]").search
#: What hiredis allocates at most for a one-digit array header (list object and
#: nine slots), and the multiple of the chunk's length the fast path may allocate
#: for headers; a chunk over that budget takes the exact path.
_SMALL_ARRAY_COST = 128
_ALLOCATION_BUDGET = 16
#: A kept tail's bytes the guard looks at again with the next chunk: enough to
#: see whole any header cut by the chunk's end that the guard's first look could
#: not refuse (its type byte is at most five bytes before the cut).
GUARD_OVERLAP = 32


def fast_path_safe(data: bytes, continued: bool = False) -> bool:
    """The guard: may hiredis parse ``data`` (a chunk starting at a request boundary,
    or with ``continued`` the bytes that follow ones already guarded, from a few
    bytes before them: see :data:`GUARD_OVERLAP`)?

    True only if the aggregate type bytes in the chunk (``*%~>|``) are followed by
    counts of at most four digits, without leading zeros, and all of them together
    announce no more than :data:`_ALLOCATION_BUDGET` times the chunk's length in
    list memory; and no simple string, verbatim string or big number header stands
    at a line start.

    Aggregate headers are looked for everywhere, not only at line starts: hiredis,
    like Redis, skips the two bytes after a bulk's payload without looking at them,
    so a bulk whose announced length is off by a few bytes puts the next header
    anywhere (``*2\\r\\n$6\\r\\nSTRLEN\\r5>536870913\\r\\n`` would otherwise cost 4 GB).
    Bytes inside bulk payloads can only make the guard refuse (the exact path then
    parses the chunk, correctly and more slowly); they can never make it accept a
    chunk that costs more.  Costs a handful of ``memchr`` scans and one
    literal-prefixed regular expression, over a translated copy of the chunk when a
    foreign aggregate byte occurs (then every long count counts twice).
    """
    return _passes(data, continued, _BYTES_HEADER, _CLIENT_COUNT_DIGITS, strict=True)


def bus_chunk_safe(data: bytes, continued: bool = False) -> bool:
    """The cluster bus's guard (:class:`~respkv.peer.wire.FrameReader`): what
    hiredis can allocate for ``data`` is bounded by the same budget as
    :func:`fast_path_safe`, but counts may have nine characters (sign included)
    and leading zeros, and only a simple string, verbatim string or big number
    header right after a CRLF is refused (not after any line feed).

    Those refusals of the client guard keep the fast path's answers identical
    to Redis's (its error texts for leading zeros, long counts and a type byte
    after a bare line feed come from the exact path).  Bus frames come from
    :func:`~respkv.peer.wire.encode`, and their binary payloads (version records
    with millisecond timestamps and actor ids, hash tree leaves) hold a line
    feed followed by ``=`` or a ``*0`` now and then: each of those sent a whole
    64 KB chunk through the exact path, several times slower, at random.  (A
    frame of more than 9,999 elements, such as a long hash tree listing, starts
    on the fast path too; its later chunks still go to the exact path, as every
    unfinished frame much longer than the chunk that follows it does.)
    """
    return _passes(data, continued, _BYTES_AFTER_CRLF, _BUS_COUNT_DIGITS, strict=False)


#: The most digits of an array count each guard lets through (longer: refused).
_CLIENT_COUNT_DIGITS = 4
_BUS_COUNT_DIGITS = 9


def _passes(data: bytes, continued: bool, bytes_header, max_digits: int, strict: bool) -> bool:
    """Both guards: ``data`` starts with an array header (unless ``continued``),
    ``bytes_header`` finds no simple string, verbatim string or big number
    header, and its aggregate headers are :func:`_within_budget`."""
    if data[:1] != b"*" and not continued:  # an inline request, or a foreign type byte
        return False
    for type_byte in _BYTES_TYPES:
        if type_byte in data:  # one search finds a header with any of them
            if bytes_header(data):
                return False
            break
    return _within_budget(data, max_digits, strict)


def _within_budget(data: bytes, max_digits: int, strict: bool) -> bool:
    """Whether every aggregate header in ``data`` (wherever it stands) announces,
    all together, list memory within :data:`_ALLOCATION_BUDGET` times the chunk's
    length; counts of more than ``max_digits`` digits are refused, and with
    ``strict`` leading zeros and ``-0`` too."""
    scale = 1
    headers = data.count(b"*")
    for type_byte in _FOREIGN_AGGREGATES:
        if type_byte in data:
            # A map holds twice its count: the foreign headers count twice, and
            # every long count is counted as a map's, in one pass over a copy
            # where all their type bytes read "*" (binary payloads, such as the
            # cluster bus's records, hold them all).
            data = data.translate(_AS_ARRAY_HEADERS)
            headers = 2 * data.count(b"*") - headers
            scale = 2
            break
    counts = _LONG_ARRAY_HEADERS(data)
    announced = 0
    for digits in counts:
        if len(digits) > max_digits:  # huge
            return False
        if strict and (digits[0] == 48 or digits[:2] == b"-0"):  # leading zeros
            return False
        if digits[0] != 45:  # a negative count allocates nothing
            announced += int(digits)
    cost = 8 * announced * scale + _SMALL_ARRAY_COST * headers
    return cost <= _ALLOCATION_BUDGET * len(data)


@functools.cache
def big_bulk_search(max_bulk: int):
    """A search for bulk headers with as many digits as the bulk limit."""
    return re.compile(rb"\$[0-9]{%d}" % len(str(max_bulk))).search
