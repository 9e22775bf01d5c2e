"""Generic key commands: existence, deletion, types, expiry, iteration, renaming, OBJECT.

These commands work on keys of every type.  What they need to know about a type
(its name for ``TYPE`` and ``SCAN ... TYPE``, its ``OBJECT ENCODING``, how ``COPY``
duplicates it) is declared with the value types in :mod:`respkv.keyspace.values`.

Expiry semantics follow Redis 7.0: relative times are added to the current clock
with 64-bit overflow checks (``invalid expire time``), NX/XX/GT/LT compare against
the current deadline (no deadline counts as infinite), and a deadline that is
already past deletes the key at once and still answers 1.
"""

from __future__ import annotations

import re

from ..errors import DB_INDEX_OUT_OF_RANGE, NO_SUCH_KEY, NOT_INTEGER, SYNTAX, invalid_expire
from ..keyspace import numbers
from ..keyspace.glob import compile_glob
from ..keyspace.slots import SLOT_COUNT
from ..keyspace.values import copy_value, encoding_of, type_name
from ..protocol import reply
from .args import int_arg
from .lookups import lookup_read
from .table import CommandError, command, container

_LLONG_MAX = 2**63 - 1
_SHARED_INTEGERS = 10000  # Redis shares the objects of the integers 0..9999
_SHARED_REFCOUNT = 2**31 - 1  # OBJECT REFCOUNT of a shared object (INT_MAX)


# -- existence and deletion -------------------------------------------------------------


@command("del", "Removes keys and counts how many existed.", since="1.0.0")
def del_(s, args):
    delete = s.ks.delete
    return b":%d\r\n" % sum(1 for key in args[1:] if delete(key))


@command("unlink", "Removes keys and counts how many existed (same as DEL here).", since="4.0.0")
def unlink(s, args):
    # Values are freed by reference counting; there is no slow synchronous free to avoid.
    delete = s.ks.delete
    return b":%d\r\n" % sum(1 for key in args[1:] if delete(key))


@command("exists", "Counts how many of the given keys exist, repeats included.", since="1.0.0")
def exists(s, args):
    # As in Redis 7.0, not an access (TOUCH is the one that counts as one).
    return b":%d\r\n" % sum(1 for key in args[1:] if lookup_read(s, key, touch=False) is not None)


@command("touch", "Returns the number of existing keys out of those specified after updating the time they were "
         "last accessed.", since="3.2.1")
def touch(s, args):
    return b":%d\r\n" % sum(1 for key in args[1:] if lookup_read(s, key) is not None)


@command("type", "Names the type of the value stored at a key.", since="1.0.0")
def type_(s, args):
    value = lookup_read(s, args[1], touch=False)  # as Redis 7.0: not an access
    if value is None:
        return b"+none\r\n"
    return b"+%b\r\n" % type_name(value)


# -- expiry -----------------------------------------------------------------------------

_EXPIRE_NX, _EXPIRE_XX, _EXPIRE_GT, _EXPIRE_LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"NX": _EXPIRE_NX, b"XX": _EXPIRE_XX, b"GT": _EXPIRE_GT, b"LT": _EXPIRE_LT}


def _expire_flags(args: list[bytes]) -> int:
    flags = 0
    for raw in args[3:]:
        flag = _EXPIRE_FLAGS.get(raw.upper())
        if flag is None:
            # Redis prints the option as a C string: it stops at a NUL byte.
            shown = raw.split(b"\0", 1)[0].decode("latin-1")
            raise CommandError(f"ERR Unsupported option {shown}")
        flags |= flag
    if flags & _EXPIRE_NX and flags & (_EXPIRE_XX | _EXPIRE_GT | _EXPIRE_LT):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags & _EXPIRE_GT and flags & _EXPIRE_LT:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    return flags


def _expire_generic(s, args, unit_ms: int, relative: bool, name: str) -> bytes:
    """EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT: set a deadline under NX/XX/GT/LT."""
    flags = _expire_flags(args)
    when = int_arg(args[2])
    ks = s.ks
    if unit_ms == 1000:
        # C division truncates, so the lower bound is -(LLONG_MAX // 1000).
        if when > _LLONG_MAX // 1000 or when < -(_LLONG_MAX // 1000):
            raise CommandError(invalid_expire(name))
        when *= 1000
    base = ks.clock_ms() if relative else 0
    if when > _LLONG_MAX - base:
        raise CommandError(invalid_expire(name))
    when += base
    key = args[1]
    if ks.get(key) is None:
        return reply.ZERO
    if flags:
        current = ks.deadline(key)
        if flags & _EXPIRE_NX and current is not None:
            return reply.ZERO
        if flags & _EXPIRE_XX and current is None:
            return reply.ZERO
        # No deadline counts as an infinite one: GT never beats it, LT always does.
        if flags & _EXPIRE_GT and (current is None or when <= current):
            return reply.ZERO
        if flags & _EXPIRE_LT and current is not None and when >= current:
            return reply.ZERO
    if when <= ks.clock_ms():
        ks.delete(key)
    else:
        ks.set_deadline(key, when)
        ks.signal_modified(key)
    return reply.ONE


@command("expire", "Gives a key a time to live in seconds.", since="1.0.0")
def expire(s, args):
    return _expire_generic(s, args, 1000, True, "expire")


@command("pexpire", "Gives a key a time to live in milliseconds.", since="2.6.0")
def pexpire(s, args):
    return _expire_generic(s, args, 1, True, "pexpire")


@command("expireat", "Makes a key expire at a Unix time in seconds.", since="1.2.0")
def expireat(s, args):
    return _expire_generic(s, args, 1000, False, "expireat")


@command("pexpireat", "Makes a key expire at a Unix time in milliseconds.", since="2.6.0")
def pexpireat(s, args):
    return _expire_generic(s, args, 1, False, "pexpireat")


def _ttl_generic(s, key: bytes, in_ms: bool, absolute: bool) -> bytes:
    """TTL family: -2 for a missing key, -1 without a deadline.

    Seconds are rounded to the nearest second (``(ms + 500) / 1000``), as Redis does
    for both TTL and EXPIRETIME.
    """
    if lookup_read(s, key, touch=False) is None:  # as Redis 7.0: not an access
        return b":-2\r\n"
    deadline = s.ks.deadline(key)
    if deadline is None:
        return b":-1\r\n"
    ttl = deadline if absolute else deadline - s.ks.clock_ms()
    if ttl < 0:
        ttl = 0
    return b":%d\r\n" % (ttl if in_ms else (ttl + 500) // 1000)


@command("ttl", "Gives the remaining time to live of a key in seconds.", since="1.0.0")
def ttl(s, args):
    return _ttl_generic(s, args[1], False, False)


@command("pttl", "Gives the remaining time to live of a key in milliseconds.", since="2.6.0")
def pttl(s, args):
    return _ttl_generic(s, args[1], True, False)


@command("expiretime", "Gives the Unix time in seconds at which a key expires.", since="7.0.0")
def expiretime(s, args):
    return _ttl_generic(s, args[1], False, True)


@command("pexpiretime", "Gives the Unix time in milliseconds at which a key expires.", since="7.0.0")
def pexpiretime(s, args):
    return _ttl_generic(s, args[1], True, True)


@command("persist", "Drops the expiry of a key so it lives until deleted.", since="2.2.0")
def persist(s, args):
    ks = s.ks
    key = args[1]
    if ks.get(key) is None or not ks.persist(key):
        return reply.ZERO
    ks.signal_modified(key)
    return reply.ONE


# -- iteration --------------------------------------------------------------------------


@command("keys", "Lists every key whose name matches a glob pattern.", since="1.0.0")
def keys_(s, args):
    found = s.ks.live_keys(s.visible_slots())
    pattern = args[1]
    if pattern != b"*":
        match = compile_glob(pattern)
        found = [key for key in found if match(key)]
    return reply.bulk_array(found)


_CURSOR = re.compile(rb"[+-]?[0-9]+\Z")
_ULONG = 2**64


def parse_cursor(raw: bytes) -> int:
    """A SCAN cursor with C ``strtoul`` rules, as Redis parses it.

    An optional sign then decimal digits; a minus wraps modulo 2**64; the empty
    string is cursor 0; leading whitespace, trailing bytes or a value beyond 64 bits
    are ``ERR invalid cursor``.
    """
    if not raw:
        return 0
    if _CURSOR.match(raw) is None:
        raise CommandError("ERR invalid cursor")
    value = int(raw.lstrip(b"+-"))
    if value >= _ULONG:
        raise CommandError("ERR invalid cursor")
    return (_ULONG - value) % _ULONG if raw[0] == 0x2D else value


def parse_scan_options(args: list[bytes], start: int, allow_type: bool):
    """COUNT, MATCH and (for the keyspace) TYPE options of the SCAN family.

    Returns ``(count, matcher or None, type name or None)``; a repeated option
    overrides the earlier one.  COUNT below 1 is a syntax error.
    """
    count = 10
    match = None
    wanted_type = None
    i, n = start, len(args)
    while i < n:
        opt = args[i].upper()
        if i + 1 >= n:
            raise CommandError(SYNTAX)
        if opt == b"COUNT":
            count = int_arg(args[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"MATCH":
            pattern = args[i + 1]
            match = None if pattern == b"*" else compile_glob(pattern)
        elif opt == b"TYPE" and allow_type:
            wanted_type = args[i + 1].lower()
        else:
            raise CommandError(SYNTAX)
        i += 2
    return count, match, wanted_type


@command(
    "scan",
    "Walks the keys in steps with a cursor, optionally filtered by pattern and type.",
    since="2.8.0",
)
def scan(s, args):
    """Walk the keyspace slot by slot; the returned cursor is the next slot to visit.

    A cursor past the last slot ends the walk (cursor 0, no keys).
    """
    cursor = parse_cursor(args[1])
    count, match, wanted_type = parse_scan_options(args, 2, True)
    ks = s.ks
    if cursor >= SLOT_COUNT:
        return b"*2\r\n$1\r\n0\r\n*0\r\n"
    next_cursor, candidates = ks.scan(cursor, count, s.visible_slots())
    found = []
    for key in candidates:
        if match is not None and not match(key):
            continue
        value = ks.get(key)
        if value is None:
            continue
        if wanted_type is not None and type_name(value) != wanted_type:
            continue
        found.append(key)
    return b"*2\r\n%b%b" % (reply.bulk(b"%d" % next_cursor), reply.bulk_array(found))


@command("randomkey", "Picks the name of a random existing key.", since="1.0.0")
def randomkey(s, args):
    key = s.ks.random_key(s.visible_slots())
    return s.proto.null if key is None else reply.bulk(key)


# -- renaming and copying ---------------------------------------------------------------


def _rename(s, args, nx: bool) -> bytes:
    ks = s.ks
    src, dst = args[1], args[2]
    value = ks.get(src)
    if value is None:
        raise CommandError(NO_SUCH_KEY)
    if src == dst:
        return reply.ZERO if nx else reply.OK
    if ks.get(dst) is not None and nx:
        return reply.ZERO
    deadline = ks.deadline(src)
    ks.set(dst, value)  # replaces dst and drops its deadline
    if deadline is not None:
        ks.set_deadline(dst, deadline)
    ks.delete(src)
    return reply.ONE if nx else reply.OK


@command("rename", "Moves a value to a new key name, replacing what was there.", since="1.0.0")
def rename(s, args):
    return _rename(s, args, False)


@command("renamenx", "Moves a value to a new key name unless that name is taken.", since="1.0.0")
def renamenx(s, args):
    return _rename(s, args, True)


_INT32_RANGE = "ERR value is out of range, value must between -2147483648 and 2147483647"


@command("copy", "Duplicates the value and expiry of a key under another name.", since="6.2.0")
def copy_(s, args):
    """COPY src dst [DB n] [REPLACE]; only database 0 exists, so DB n≠0 is out of range."""
    replace = False
    i, n = 3, len(args)
    while i < n:
        opt = args[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < n:
            db = numbers.parse_int(args[i + 1])
            if db is None:
                raise CommandError(NOT_INTEGER)
            if not -(2**31) <= db < 2**31:
                raise CommandError(_INT32_RANGE)
            if db != 0:
                raise CommandError(DB_INDEX_OUT_OF_RANGE)
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    src, dst = args[1], args[2]
    if src == dst:
        raise CommandError("ERR source and destination objects are the same")
    value = lookup_read(s, src)
    if value is None:
        return reply.ZERO
    ks = s.ks
    if ks.get(dst) is not None:
        if not replace:
            return reply.ZERO
    deadline = ks.deadline(src)
    ks.set(dst, copy_value(value))
    if deadline is not None:
        ks.set_deadline(dst, deadline)
    return reply.ONE


# -- OBJECT -----------------------------------------------------------------------------

container("object", "Introspection of stored values: encoding, reference count, access data.", since="2.2.3")


def _object_lookup(s, key: bytes):
    """The value at ``key`` as Redis's OBJECT looks it up: a read, not an access."""
    return lookup_read(s, key, touch=False)


@command("object|encoding", "Names the internal representation Redis would use for a value.", since="2.2.3")
def object_encoding(s, args):
    value = _object_lookup(s, args[2])
    if value is None:
        return s.proto.null
    hint = s.ks.encoding_hint(args[2], value)
    if hint is not None:
        return reply.bulk(hint)
    return reply.bulk(encoding_of(value))


_NO_LFU = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
    "Please note that when switching between policies at runtime LRU and LFU data "
    "will take some time to adjust."
)


_NO_LRU = (
    "ERR An LFU maxmemory policy is selected, idle time not tracked. "
    "Please note that when switching between policies at runtime LRU and LFU data "
    "will take some time to adjust."
)


@command(
    "object|freq",
    "Access-frequency counter of a key (LFU eviction policies only).",
    since="4.0.0",
)
def object_freq(s, args):
    """The key's logarithmic access counter, decayed to now, under an LFU policy;
    an error under the others, as Redis (see keyspace.eviction)."""
    if _object_lookup(s, args[2]) is None:
        return s.proto.null
    access = s.ks.access
    if not access.lfu:
        raise CommandError(_NO_LFU)
    return reply.integer(access.frequency(args[2]))


@command(
    "object|idletime",
    "Seconds since a key was last read or written (not under LFU policies).",
    since="2.2.3",
)
def object_idletime(s, args):
    """Seconds since the key's last access by the LRU clock (one-second steps,
    moved by the node's cron); an error under an LFU policy, as Redis."""
    if _object_lookup(s, args[2]) is None:
        return s.proto.null
    access = s.ks.access
    if access.lfu:
        raise CommandError(_NO_LRU)
    return reply.integer(access.idle(args[2]))


@command("object|refcount", "How many references Redis would hold to a value.", since="2.2.3")
def object_refcount(s, args):
    """1, except Redis's shared integer objects (0..9999), which report INT_MAX."""
    value = _object_lookup(s, args[2])
    if value is None:
        return s.proto.null
    if value.__class__ is bytes and len(value) <= 4:
        number = numbers.parse_int(value)
        if number is not None and 0 <= number < _SHARED_INTEGERS:
            return reply.integer(_SHARED_REFCOUNT)
    return reply.ONE


_OBJECT_HELP = reply.array([reply.simple(line) for line in (
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
)])


@command("object|help", "Lists the OBJECT subcommands.", since="6.2.0")
def object_help(s, args):
    return _OBJECT_HELP
