"""String commands: GET, SET and its variants, MGET/MSET, lengths and ranges.

A string value is stored as the ``bytes`` object itself; integers stay in their
decimal text and are parsed on each INCR, which keeps a string key as small as
possible (see ``keyspace.store``).  Since ``bytes`` is immutable, in-place edits
(APPEND, SETRANGE, counters) store a new object with ``keep_ttl=True``, which is how
Redis keeps a key's TTL across those commands.  The counters (INCR and friends) are
in :mod:`respkv.commands.counters`, LCS in :mod:`respkv.commands.lcs`.

Error precedence follows Redis 7.0 command by command (for instance INCRBY parses its
increment before looking at the key, INCRBYFLOAT looks at the key first), because
clients and the conformance scripts observe which error wins.
"""

from __future__ import annotations

from ..errors import SYNTAX, WRONGTYPE, invalid_expire, wrong_arity
from ..keyspace.eviction import TAG_MASK
from ..keyspace.memory import resized
from ..protocol import reply
from ..protocol.reply import BULK_HEADERS
from .args import int_arg
from .lookups import read_typed, write_typed
from .table import CommandError, command

_LLONG_MAX = 2**63 - 1

# Flags of the extended SET/GETEX option parser.
_NX, _XX, _GET, _KEEPTTL, _PERSIST = 1, 2, 4, 8, 16
_EX, _PX, _EXAT, _PXAT = 32, 64, 128, 256
_ANY_EXPIRE = _EX | _PX | _EXAT | _PXAT

#: Option word → (its flag, the flags it cannot be combined with).  A repeated
#: option is accepted (the last expire value wins), as in Redis.
_OPTIONS = {
    b"NX": (_NX, _XX),
    b"XX": (_XX, _NX),
    b"GET": (_GET, 0),
    b"KEEPTTL": (_KEEPTTL, _PERSIST | _ANY_EXPIRE),
    b"PERSIST": (_PERSIST, _KEEPTTL | _ANY_EXPIRE),
    b"EX": (_EX, _KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_EX)),
    b"PX": (_PX, _KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_PX)),
    b"EXAT": (_EXAT, _KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_EXAT)),
    b"PXAT": (_PXAT, _KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_PXAT)),
}
#: Expire option word → (milliseconds per unit, absolute deadline?).
_EXPIRE_UNITS = {b"EX": (1000, False), b"PX": (1, False), b"EXAT": (1000, True), b"PXAT": (1, True)}


def parse_set_options(args: list[bytes], start: int, allow: frozenset[bytes]):
    """Parse SET/GETEX options from ``args[start:]``.

    Returns ``(flags, expire)`` where ``expire`` is ``None`` or
    ``(raw_value, unit_ms, absolute)``.  An option outside ``allow``, a conflicting
    pair (NX with XX, KEEPTTL or PERSIST with an expiry, two different expiry units)
    or an expiry word without its value is a syntax error, as in Redis 7.0.
    """
    flags = 0
    expire = None
    i = start
    n = len(args)
    while i < n:
        opt = args[i].upper()
        if opt not in allow:
            raise CommandError(SYNTAX)
        flag, conflicts = _OPTIONS[opt]
        if flags & conflicts:
            raise CommandError(SYNTAX)
        if flag & _ANY_EXPIRE:
            if i + 1 >= n:
                raise CommandError(SYNTAX)
            unit, absolute = _EXPIRE_UNITS[opt]
            i += 1
            expire = (args[i], unit, absolute)
        flags |= flag
        i += 1
    return flags, expire


def expire_deadline(session, expire, command_name: str) -> int:
    """Absolute deadline (Unix ms) from a parsed ``(raw, unit, absolute)`` option.

    Non-positive values and values whose deadline would not fit a signed 64-bit
    millisecond count are ``invalid expire time`` errors, as in Redis.
    """
    raw, unit, absolute = expire
    value = int_arg(raw)
    if value <= 0 or (unit == 1000 and value > _LLONG_MAX // 1000):
        raise CommandError(invalid_expire(command_name))
    value *= unit
    if not absolute:
        now = session.ks.clock_ms()
        if value > _LLONG_MAX - now:
            raise CommandError(invalid_expire(command_name))
        value += now
    return value


def get_string(session, key: bytes) -> bytes | None:
    """The string at ``key`` or None; WRONGTYPE for another type (no statistics)."""
    return write_typed(session, key, bytes)


def read_string(session, key: bytes) -> bytes | None:
    """Like :func:`get_string`, counted as a read lookup."""
    return read_typed(session, key, bytes)


def _bulk_or_null(s, value: bytes | None) -> bytes:
    return s.proto.null if value is None else b"$%d\r\n%b\r\n" % (len(value), value)


def max_string_length(s) -> int:
    """The longest string a command may build (``proto-max-bulk-len``)."""
    return s.node.config["proto-max-bulk-len"]


_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"

# -- GET / SET and friends --------------------------------------------------------------


def _get_run(s, batch, i, out, _headers=BULK_HEADERS):
    """GET for a run of pipelined GETs from ``batch[i]`` on (see CommandSpec.run_handler).

    Stops at the first request that is not a plain GET or that finds another type,
    leaving it to the per-request path and its error reply.  This loop is the
    hottest code of a pipelined benchmark, so it inlines :meth:`Keyspace.get` (a
    key with a deadline goes through :meth:`Keyspace.peek`, to expire there) and appends a bulk
    reply as three pieces that the session's single join puts together.
    """
    name = batch[i][0]
    ks = s.ks
    lookup = ks.data.get
    expires = ks.expires
    append = out.append
    count = len(batch)
    start = i
    misses = 0
    access = ks.access
    lru = not access.lfu
    cells, mask, clock = access.cells, access.mask, access.clock
    while i < count:
        args = batch[i]
        if args.__class__ is not list or len(args) != 2 or args[0] != name:
            break
        key = args[1]
        if key.__class__ is not bytes:  # malformed: the session deals with it
            break
        value = ks.peek(key) if expires and key in expires else lookup(key)
        if value.__class__ is bytes:
            if lru:  # the access, as Keyspace.get counts it
                key_hash = hash(key)
                cells[key_hash & mask] = ((key_hash >> 32) & TAG_MASK) | clock
            else:
                access.touch(key)
            try:
                append(_headers[len(value)])
            except IndexError:  # no ready-made header for a value this long
                append(reply.bulk(value))
            else:
                append(value)
                append(b"\r\n")
        elif value is None:
            misses += 1
            append(s.proto.null)
        else:
            break
        i += 1
    stats = s.stats
    stats.keyspace_hits += i - start - misses
    stats.keyspace_misses += misses
    return i


@command("get", "Reads the string stored at a key.", group="string", since="1.0.0", run_handler=_get_run)
def get(s, args):
    out = []
    if _get_run(s, (args,), 0, out):
        return b"".join(out)
    raise CommandError(WRONGTYPE)


def _set_run(s, batch, i, out):
    """Plain ``SET key value`` for a run of pipelined SETs (see CommandSpec.run_handler).

    While a store needs no bookkeeping (see :meth:`Keyspace.stores_are_plain`), a
    string stored over a string goes straight into the keyspace's dictionary, with
    :meth:`Keyspace.set`'s accounting and LRU stamp done inline; every other SET
    goes through :meth:`Keyspace.set`.  The run stops once it added more than the
    room ``maxmemory`` left (``Keyspace.evict_at``), so that the session evicts
    before the next SET.
    """
    name = batch[i][0]
    ks = s.ks
    append = out.append
    count = len(batch)
    plain = ks.stores_are_plain() and not ks.access.lfu
    data = ks.data
    lookup = data.get
    ks_set = ks.set
    access = ks.access
    cells, mask, clock = access.cells, access.mask, access.clock
    evict_at = ks.evict_at  # maxmemory: the run stops once the keyspace grew past it
    while i < count:
        args = batch[i]
        if args.__class__ is not list or len(args) != 3 or args[0] != name:
            break
        key = args[1]
        value = args[2]
        if key.__class__ is not bytes or value.__class__ is not bytes:  # malformed
            break
        if ks.stored_bytes > evict_at:
            break
        if not plain:
            ks_set(key, value)
        elif (old := lookup(key)).__class__ is bytes:
            # Keyspace.set's work for a string over a string.
            data[key] = value
            key_hash = hash(key)
            cells[key_hash & mask] = ((key_hash >> 32) & TAG_MASK) | clock
            if len(value) != len(old):
                ks.stored_bytes += resized(len(old), len(value))
        else:
            ks_set(key, value)
            cells, mask = access.cells, access.mask  # a new key may have grown the table
        append(reply.OK)
        i += 1
    return i


_SET_OPTIONS = frozenset([b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT"])


@command(
    "set",
    "Stores a string at a key, replacing any value, with optional expiry and conditions.",
    group="string", since="1.0.0", run_handler=_set_run,
)
def set_(s, args):
    if len(args) == 3:  # the common case: plain SET key value
        s.ks.set(args[1], args[2])
        return reply.OK
    flags, expire = parse_set_options(args, 3, _SET_OPTIONS)
    ks = s.ks
    key = args[1]
    # Redis validates the expiry before anything else, then runs the GET part
    # (which may fail with WRONGTYPE), then the NX/XX condition.
    deadline = expire_deadline(s, expire, "set") if expire is not None else None
    old = None
    if flags & _GET:
        old = read_string(s, key)
        found = old is not None
    else:
        found = ks.get(key) is not None
    if (flags & _NX and found) or (flags & _XX and not found):
        return _bulk_or_null(s, old) if flags & _GET else s.proto.null
    ks.set(key, args[2], keep_ttl=bool(flags & _KEEPTTL))
    if deadline is not None:
        ks.set_deadline(key, deadline)
    return _bulk_or_null(s, old) if flags & _GET else reply.OK


@command("setnx", "Stores a string at a key unless the key already exists.", group="string", since="1.0.0")
def setnx(s, args):
    ks = s.ks
    if ks.get(args[1]) is not None:
        return reply.ZERO
    ks.set(args[1], args[2])
    return reply.ONE


def _set_with_expire(s, args, unit: int, name: str) -> bytes:
    deadline = expire_deadline(s, (args[2], unit, False), name)
    ks = s.ks
    ks.set(args[1], args[3])
    ks.set_deadline(args[1], deadline)
    return reply.OK


@command(
    "setex",
    "Stores a string at a key together with a time to live in seconds.",
    group="string", since="2.0.0",
)
def setex(s, args):
    return _set_with_expire(s, args, 1000, "setex")


@command(
    "psetex",
    "Stores a string at a key together with a time to live in milliseconds.",
    group="string", since="2.6.0",
)
def psetex(s, args):
    return _set_with_expire(s, args, 1, "psetex")


@command(
    "getset",
    "Stores a new string at a key and replies with the string it replaced.",
    group="string", since="1.0.0",
)
def getset(s, args):
    old = read_string(s, args[1])
    s.ks.set(args[1], args[2])
    return _bulk_or_null(s, old)


@command("getdel", "Reads the string stored at a key and removes the key.", group="string", since="6.2.0")
def getdel(s, args):
    value = read_string(s, args[1])
    if value is None:
        return s.proto.null
    s.ks.delete(args[1])
    return b"$%d\r\n%b\r\n" % (len(value), value)


_GETEX_OPTIONS = frozenset([b"EX", b"PX", b"EXAT", b"PXAT", b"PERSIST"])


@command(
    "getex",
    "Reads the string stored at a key and optionally changes or drops its expiry.",
    group="string", since="6.2.0",
)
def getex(s, args):
    flags, expire = parse_set_options(args, 2, _GETEX_OPTIONS)
    key = args[1]
    # A missing key answers nil even when the expiry value is invalid: Redis looks
    # the key up before it validates the expiry.
    value = read_string(s, key)
    if value is None:
        return s.proto.null
    ks = s.ks
    if expire is not None:
        deadline = expire_deadline(s, expire, "getex")
        if expire[2] and deadline <= ks.clock_ms():
            ks.delete(key)  # an absolute deadline already past deletes the key
        else:
            ks.set_deadline(key, deadline)
            ks.signal_modified(key)
    elif flags & _PERSIST:
        if ks.persist(key):
            ks.signal_modified(key)
    return b"$%d\r\n%b\r\n" % (len(value), value)


@command("mget", "Reads the strings stored at several keys in one step.", group="string", since="1.0.0")
def mget(s, args):
    get_value = s.ks.get
    stats = s.node.stats
    null = s.proto.null
    parts = []
    hits = 0
    for key in args[1:]:
        value = get_value(key)
        if value is None:
            parts.append(null)
            continue
        hits += 1
        if value.__class__ is bytes:
            parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
        else:
            parts.append(null)  # MGET answers nil for keys of another type
    stats.keyspace_hits += hits
    stats.keyspace_misses += len(args) - 1 - hits
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


def _check_pairs(args: list[bytes], name: str) -> None:
    if len(args) % 2 == 0:
        raise CommandError(wrong_arity(name))


@command("mset", "Stores strings at several keys in one step.", group="string", since="1.0.1")
def mset(s, args):
    _check_pairs(args, "mset")
    set_value = s.ks.set
    for i in range(1, len(args), 2):
        set_value(args[i], args[i + 1])
    return reply.OK


@command(
    "msetnx",
    "Stores strings at several keys in one step, unless any of them exists.",
    group="string", since="1.0.1",
)
def msetnx(s, args):
    _check_pairs(args, "msetnx")
    ks = s.ks
    for i in range(1, len(args), 2):
        if ks.get(args[i]) is not None:
            return reply.ZERO
    for i in range(1, len(args), 2):
        ks.set(args[i], args[i + 1])
    return reply.ONE


# -- lengths and ranges -----------------------------------------------------------------


@command(
    "append",
    "Adds bytes to the end of a string, creating the key when it is missing.",
    group="string", since="2.0.0",
)
def append(s, args):
    ks = s.ks
    key, extra = args[1], args[2]
    value = get_string(s, key)
    if value is None:
        ks.set(key, extra)
        return b":%d\r\n" % len(extra)
    total = len(value) + len(extra)
    if total > max_string_length(s):
        raise CommandError(_TOO_LONG)
    value = value + extra
    ks.set(key, value, keep_ttl=True)
    ks.hint_encoding(key, value, b"raw")  # Redis appends to a private raw copy
    return b":%d\r\n" % total


@command("strlen", "Gives the length in bytes of the string stored at a key.", group="string", since="2.2.0")
def strlen(s, args):
    value = read_string(s, args[1])
    return b":%d\r\n" % (0 if value is None else len(value))


def _getrange(s, args):
    start = int_arg(args[2])
    end = int_arg(args[3])
    value = read_string(s, args[1])
    if value is None:
        return reply.EMPTY_BULK
    n = len(value)
    # Redis's index arithmetic, quirks included: "GETRANGE k 0 -100" on a short
    # string still returns its first byte because a negative end clamps to 0.
    if start < 0 and end < 0 and start > end:
        return reply.EMPTY_BULK
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return reply.EMPTY_BULK
    return reply.bulk(value[start : end + 1])


@command(
    "getrange",
    "Reads the bytes of a string between two inclusive offsets.",
    group="string", since="2.4.0",
)
def getrange(s, args):
    return _getrange(s, args)


@command(
    "substr",
    "Older name of GETRANGE: reads the bytes of a string between two offsets.",
    group="string", since="1.0.0",
)
def substr(s, args):
    return _getrange(s, args)


@command(
    "setrange",
    "Overwrites bytes of a string from an offset on, zero-padding and creating as needed.",
    group="string", since="2.2.0",
)
def setrange(s, args):
    offset = int_arg(args[2])
    if offset < 0:
        raise CommandError("ERR offset is out of range")
    key, piece = args[1], args[3]
    ks = s.ks
    value = get_string(s, key)
    if value is None:
        if not piece:
            return reply.ZERO  # setting nothing on a missing key creates nothing
        if offset + len(piece) > max_string_length(s):
            raise CommandError(_TOO_LONG)
        value = bytes(offset) + piece
        ks.set(key, value)
        ks.hint_encoding(key, value, b"raw")
        return b":%d\r\n" % len(value)
    if not piece:
        return b":%d\r\n" % len(value)
    end = offset + len(piece)
    if end > max_string_length(s):
        raise CommandError(_TOO_LONG)
    n = len(value)
    if offset >= n:
        new = value + bytes(offset - n) + piece
    else:
        new = value[:offset] + piece + value[end:]
    ks.set(key, new, keep_ttl=True)
    ks.hint_encoding(key, new, b"raw")
    return b":%d\r\n" % len(new)
