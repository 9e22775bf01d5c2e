"""Hash commands: fields and values, counters, random fields, HSCAN.

A hash is a :class:`~respkv.keyspace.values.Hash`: a ``dict`` of field → value (both
``bytes``) that also remembers which encoding Redis would use for it (listpack or
hashtable), because clients observe that encoding directly (``OBJECT ENCODING``) and
through ordering; see :mod:`respkv.keyspace.values` for the rules.

HSCAN on a listpack hash returns everything at once with cursor 0, as Redis does;
on a hashtable it walks a bucket index (``keyspace.buckets``) whose cursors survive
changes to the hash.  Every change of membership therefore goes through
:meth:`Hash.put` and :meth:`Hash.remove`, which keep the encoding flag and that
index up to date; code elsewhere must not assign fields with plain ``dict`` methods.

Error precedence follows Redis 7.0 command by command: HINCRBY and HINCRBYFLOAT
check their increment before the key's type, HRANDFIELD its count before the key,
HSCAN its cursor before the key and its options only after the key was found.
"""

from __future__ import annotations

from ..errors import OVERFLOW, SYNTAX
from ..keyspace import numbers
from ..keyspace.buckets import index_of, pick_distinct, pick_one, pick_repeated
from ..keyspace.values import Hash
from ..protocol import reply
from .args import int_arg
from .keys import parse_cursor, parse_scan_options
from .lookups import read_typed, write_typed
from .table import CommandError, command

_LLONG_MAX = 2**63 - 1
_LLONG_MIN = -(2**63)
_NOT_INTEGER_FIELD = "ERR hash value is not an integer"
_COUNT_RANGE = f"ERR value is out of range, value must between {-_LLONG_MAX} and {_LLONG_MAX}"
_EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"


# -- lookups ----------------------------------------------------------------------------


def read_hash(s, key: bytes) -> Hash | None:
    """The hash at ``key`` or None, as a read (counted in keyspace hits/misses)."""
    return read_typed(s, key, Hash)


def _write_lookup(s, key: bytes) -> Hash | None:
    return write_typed(s, key, Hash)


def _changed(s, key: bytes, h: Hash, created: bool) -> None:
    """Store a hash created by a write, or report the in-place change of one."""
    if created:
        s.ks.set(key, h)
    else:
        s.ks.signal_modified(key)


def _write_or_new(s, key: bytes) -> tuple[Hash, bool]:
    """The hash at ``key`` for writing, or a new one not stored yet (and True)."""
    h = _write_lookup(s, key)
    if h is None:
        return Hash(), True
    return h, False


# -- setting and getting fields ---------------------------------------------------------


def _set_pairs(s, args: list[bytes], name: str) -> int:
    """HSET/HMSET body: store every field/value pair; returns the number of new fields."""
    n = len(args)
    if n % 2:
        raise CommandError(f"ERR wrong number of arguments for '{name}' command")
    key = args[1]
    h, created = _write_or_new(s, key)
    put = h.put
    added = 0
    for i in range(2, n, 2):
        if put(args[i], args[i + 1]):
            added += 1
    _changed(s, key, h, created)
    return added


@command("hset", "Sets fields of a hash, creating it if needed; replies with the number of new fields.",
         group="hash", since="2.0.0", runs=True)
def hset(s, args):
    return reply.integer(_set_pairs(s, args, "hset"))


@command("hmset", "Sets fields of a hash, creating it if needed; replies OK.", group="hash", since="2.0.0")
def hmset(s, args):
    _set_pairs(s, args, "hmset")
    return reply.OK


@command("hsetnx", "Sets a field of a hash only if the field does not exist yet.", group="hash", since="2.0.0")
def hsetnx(s, args):
    key, field = args[1], args[2]
    h, created = _write_or_new(s, key)
    if field in h:
        return reply.ZERO
    h.put(field, args[3])
    _changed(s, key, h, created)
    return reply.ONE


@command("hget", "Reads the value of one field of a hash.", group="hash", since="2.0.0")
def hget(s, args):
    h = read_hash(s, args[1])
    value = h.get(args[2]) if h is not None else None
    return s.proto.null if value is None else reply.bulk(value)


@command("hmget", "Reads the values of several fields of a hash, null for missing ones.",
         group="hash", since="2.0.0")
def hmget(s, args):
    h = read_hash(s, args[1])
    null = s.proto.null
    if h is None:
        return reply.array([null] * (len(args) - 2))
    get = h.get
    parts = []
    for field in args[2:]:
        value = get(field)
        parts.append(null if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
    return reply.array(parts)


@command("hdel", "Deletes fields of a hash; the key goes when its last field does.",
         group="hash", since="2.0.0")
def hdel(s, args):
    key = args[1]
    h = _write_lookup(s, key)
    if h is None:
        return reply.ZERO
    removed = 0
    for field in args[2:]:
        if h.remove(field):
            removed += 1
            if not h:
                break  # Redis stops at the last field: the key is gone
    if removed:
        if h:
            s.ks.signal_modified(key)
        else:
            s.ks.delete(key)
    return reply.integer(removed)


@command("hexists", "Tells whether a field exists in a hash.", group="hash", since="2.0.0")
def hexists(s, args):
    h = read_hash(s, args[1])
    return reply.ONE if h is not None and args[2] in h else reply.ZERO


@command("hlen", "Counts the fields of a hash.", group="hash", since="2.0.0")
def hlen(s, args):
    h = read_hash(s, args[1])
    return reply.integer(len(h) if h is not None else 0)


@command("hstrlen", "Gives the length of the value of a hash field (0 if missing).",
         group="hash", since="3.2.0")
def hstrlen(s, args):
    h = read_hash(s, args[1])
    value = h.get(args[2]) if h is not None else None
    return reply.integer(len(value) if value is not None else 0)


@command("hkeys", "Lists the fields of a hash.", group="hash", since="2.0.0")
def hkeys(s, args):
    h = read_hash(s, args[1])
    return reply.bulk_array(h) if h is not None else reply.EMPTY_ARRAY


@command("hvals", "Lists the values of a hash.", group="hash", since="2.0.0")
def hvals(s, args):
    h = read_hash(s, args[1])
    return reply.bulk_array(h.values()) if h is not None else reply.EMPTY_ARRAY


@command("hgetall", "Reads every field and value of a hash (a map in RESP3).", group="hash", since="2.0.0")
def hgetall(s, args):
    h = read_hash(s, args[1])
    if h is None:
        return s.proto.map([])
    return s.proto.map([
        (b"$%d\r\n%b\r\n" % (len(f), f), b"$%d\r\n%b\r\n" % (len(v), v)) for f, v in h.items()
    ])


# -- counters ---------------------------------------------------------------------------


@command("hincrby", "Adds an integer to the integer value of a hash field.", group="hash", since="2.0.0")
def hincrby(s, args):
    increment = int_arg(args[3])
    key, field = args[1], args[2]
    h, created = _write_or_new(s, key)
    current = h.get(field)
    if current is None:
        value = 0
    else:
        value = numbers.parse_int(current)
        if value is None:
            raise CommandError(_NOT_INTEGER_FIELD)
    value += increment
    if not _LLONG_MIN <= value <= _LLONG_MAX:
        raise CommandError(OVERFLOW)
    h.put(field, b"%d" % value)
    _changed(s, key, h, created)
    return reply.integer(value)


@command("hincrbyfloat", "Adds a floating point number to the value of a hash field.",
         group="hash", since="2.6.0")
def hincrbyfloat(s, args):
    increment = numbers.parse_long_double(args[3])
    if increment is None:
        raise CommandError(numbers.ERR_NOT_FLOAT)
    if isinstance(increment, float):
        raise CommandError(numbers.ERR_NAN_OR_INFINITY)
    key, field = args[1], args[2]
    h, created = _write_or_new(s, key)
    try:
        value = numbers.hincr_by_float(h.get(field), args[3])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    h.put(field, value)
    _changed(s, key, h, created)
    return reply.bulk(value)


# -- random fields ----------------------------------------------------------------------


def _fields_reply(s, h: Hash, fields, with_values: bool) -> bytes:
    """Fields, or field/value pairs: flat in RESP2, one 2-array per pair in RESP3."""
    if not with_values:
        return reply.bulk_array(fields)
    if s.proto.version == 2:
        flat = []
        for field in fields:
            flat.append(field)
            flat.append(h[field])
        return reply.bulk_array(flat)
    return reply.array([reply.bulk_array((field, h[field])) for field in fields])


@command("hrandfield", "Returns random fields of a hash, optionally with their values.",
         group="hash", since="6.2.0")
def hrandfield(s, args):
    """Without a count, one field or null.  With a count N: N distinct fields (the
    whole hash, in its order, if N covers it); with -N: N independent draws."""
    n = len(args)
    if n == 2:
        h = read_hash(s, args[1])
        return s.proto.null if not h else reply.bulk(pick_one(h))
    count = int_arg(args[2])
    if count < -_LLONG_MAX:
        raise CommandError(_COUNT_RANGE)
    if n > 4 or (n == 4 and args[3].lower() != b"withvalues"):
        raise CommandError(SYNTAX)
    with_values = n == 4
    if with_values and not -(_LLONG_MAX // 2) <= count <= _LLONG_MAX // 2:
        raise CommandError("ERR value is out of range")
    h = read_hash(s, args[1])
    if h is None or count == 0:
        return reply.EMPTY_ARRAY
    if count < 0 or count == 1:
        fields = pick_repeated(h, -count) if count < 0 else [pick_one(h)]
    elif count >= len(h):
        fields = list(h)
    else:
        fields = pick_distinct(h, count)
    return _fields_reply(s, h, fields, with_values)


# -- HSCAN ------------------------------------------------------------------------------


@command("hscan", "Iterates over the fields and values of a hash.", group="hash", since="2.8.0")
def hscan(s, args):
    """A listpack hash is returned whole with cursor 0 (the cursor is not even looked
    at), as Redis does; a hashtable is walked with bucket cursors."""
    cursor = parse_cursor(args[2])
    h = read_hash(s, args[1])
    if h is None:
        return _EMPTY_SCAN
    count, match, _ = parse_scan_options(args, 3, False)
    if h.hashtable:
        cursor, fields = index_of(h).scan(cursor, count)
    else:
        cursor, fields = 0, h
    flat = []
    for field in fields:
        if match is None or match(field):
            flat.append(field)
            flat.append(h[field])
    return b"*2\r\n%b%b" % (reply.bulk(b"%d" % cursor), reply.bulk_array(flat))
