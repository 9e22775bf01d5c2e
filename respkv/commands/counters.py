"""Counter commands on strings: INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT.

A counter is a string holding a decimal number; it stays text between commands and
is parsed on each change.  Integers are 64-bit signed with Redis's overflow errors;
INCRBYFLOAT computes in Redis's x87 ``long double`` (emulated exactly in
:mod:`respkv.keyspace.numbers`).  Each change stores a new ``bytes`` object and
keeps the key's TTL.  As in Redis 7.0, INCRBY and DECRBY parse their increment
before they look at the key, INCRBYFLOAT looks at the key first.
"""

from __future__ import annotations

from ..errors import NOT_INTEGER, OVERFLOW, WRONGTYPE
from ..keyspace import numbers
from ..keyspace.numbers import LLONG_MAX, LLONG_MIN
from ..keyspace.values import EMBSTR_LIMIT
from ..protocol import reply
from .args import int_arg
from .strings import get_string
from .table import CommandError, command


def _incr_by(s, key: bytes, delta: int) -> bytes:
    """Add ``delta`` to the integer at ``key`` (0 when missing); keeps the TTL."""
    ks = s.ks
    value = ks.get(key)
    if value is None:
        n = delta
    else:
        if value.__class__ is not bytes:
            raise CommandError(WRONGTYPE)
        current = numbers.parse_int(value)
        if current is None:
            raise CommandError(NOT_INTEGER)
        n = current + delta
        if n > LLONG_MAX or n < LLONG_MIN:
            raise CommandError(OVERFLOW)
    text = b"%d" % n
    ks.set(key, text, keep_ttl=True)
    return b":%b\r\n" % text


@command(
    "incr",
    "Adds one to the integer stored at a key (a missing key counts as 0).",
    group="string", since="1.0.0",
)
def incr(s, args):
    return _incr_by(s, args[1], 1)


@command(
    "decr",
    "Subtracts one from the integer stored at a key (a missing key counts as 0).",
    group="string", since="1.0.0",
)
def decr(s, args):
    return _incr_by(s, args[1], -1)


@command(
    "incrby",
    "Adds an integer to the integer stored at a key (a missing key counts as 0).",
    group="string", since="1.0.0",
)
def incrby(s, args):
    return _incr_by(s, args[1], int_arg(args[2]))


@command(
    "decrby",
    "Subtracts an integer from the integer stored at a key (a missing key counts as 0).",
    group="string", since="1.0.0",
)
def decrby(s, args):
    delta = int_arg(args[2])
    if delta == LLONG_MIN:  # its negation does not fit; Redis checks before the key
        raise CommandError("ERR decrement would overflow")
    return _incr_by(s, args[1], -delta)


@command(
    "incrbyfloat",
    "Adds a decimal number to the number stored at a key (a missing key counts as 0).",
    group="string", since="2.6.0",
)
def incrbyfloat(s, args):
    key = args[1]
    value = get_string(s, key)
    try:
        result = numbers.incr_by_float(value, args[2])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    s.ks.set(key, result, keep_ttl=True)
    if len(result) <= EMBSTR_LIMIT:
        s.ks.hint_encoding(key, result, b"embstr")  # never "int", even for "5001"
    return reply.bulk(result)
