"""Set commands: membership, random members, moves, algebra (SINTER/SUNION/SDIFF), SSCAN.

A set is a :class:`~respkv.keyspace.values.Set`: a Python ``set`` of ``bytes``
members that also remembers which encoding Redis 7.0 would use (intset or
hashtable), because that encoding decides the order in which members are listed
(an intset lists in ascending numeric order); see :mod:`respkv.keyspace.values`.

Redis computes SUNION, SDIFF and the ``*STORE`` variants by filling a brand-new set
(which starts as an intset) and then listing or storing it, so their results are
sorted whenever they are all integers and few enough; SDIFF's second algorithm first
copies the whole first set, so a big or non-integer first set makes the result a
hashtable even when what is left would fit an intset.  SINTER lists the smallest
input set's members in that set's order.  These rules are reproduced below.

Every change of membership goes through :meth:`Set.add_member` and
:meth:`Set.remove_member` (see :mod:`respkv.keyspace.values`).
"""

from __future__ import annotations

from ..errors import SYNTAX, WRONGTYPE
from ..keyspace.buckets import index_of, pick_distinct, pick_one, pick_repeated
from ..keyspace.values import Set, build_set, fits_intset
from ..protocol import reply
from .args import int_arg
from .keys import parse_cursor, parse_scan_options
from .lookups import read_typed, write_typed
from .replay import logged_as
from .table import CommandError, command

_LLONG_MAX = 2**63 - 1
_COUNT_RANGE = f"ERR value is out of range, value must between {-_LLONG_MAX} and {_LLONG_MAX}"
_NOT_POSITIVE = "ERR value is out of range, must be positive"
_EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"


# -- lookups and replies ----------------------------------------------------------------


def read_set(s, key: bytes) -> Set | None:
    """The set at ``key`` or None, as a read (counted in keyspace hits/misses)."""
    return read_typed(s, key, Set)


def _write_lookup(s, key: bytes) -> Set | None:
    return write_typed(s, key, Set)


def _lookup_all(s, keys: list[bytes], read: bool) -> list[Set | None]:
    """The sets at ``keys`` (None for missing ones); WRONGTYPE if any is not a set."""
    lookup = read_set if read else _write_lookup
    return [lookup(s, key) for key in keys]


def _set_reply(s, members) -> bytes:
    """A set reply (``~`` in RESP3, an array in RESP2) of bulk strings."""
    return s.proto.set([b"$%d\r\n%b\r\n" % (len(m), m) for m in members])


def _store(s, key: bytes, result: Set) -> bytes:
    """Replace ``key`` with a computed set (deleting it when empty); reply its size."""
    if result:
        s.ks.set(key, result)
    else:
        s.ks.delete(key)
    return reply.integer(len(result))


# -- membership -------------------------------------------------------------------------


@command("sadd", "Adds members to a set, creating it if needed; replies with the number added.",
         group="set", since="1.0.0", runs=True)
def sadd(s, args):
    key = args[1]
    st = _write_lookup(s, key)
    created = st is None
    if created:
        st = Set()
    add = st.add_member
    added = 0
    for member in args[2:]:
        if add(member):
            added += 1
    if created:
        s.ks.set(key, st)
    elif added:
        s.ks.signal_modified(key)
    return reply.integer(added)


@command("srem", "Removes members from a set; the key goes when its last member does.",
         group="set", since="1.0.0")
def srem(s, args):
    key = args[1]
    st = _write_lookup(s, key)
    if st is None:
        return reply.ZERO
    removed = 0
    for member in args[2:]:
        if st.remove_member(member):
            removed += 1
            if not st:
                break
    if removed:
        if st:
            s.ks.signal_modified(key)
        else:
            s.ks.delete(key)
    return reply.integer(removed)


@command("smembers", "Lists the members of a set.", group="set", since="1.0.0")
def smembers(s, args):
    st = read_set(s, args[1])
    return _set_reply(s, st.ordered() if st is not None else ())


@command("sismember", "Tells whether a value is a member of a set.", group="set", since="1.0.0")
def sismember(s, args):
    st = read_set(s, args[1])
    return reply.ONE if st is not None and args[2] in st else reply.ZERO


@command("smismember", "Tells, for each of several values, whether it is a member of a set.",
         group="set", since="6.2.0")
def smismember(s, args):
    st = read_set(s, args[1])
    if st is None:
        return reply.array([reply.ZERO] * (len(args) - 2))
    return reply.array([reply.ONE if m in st else reply.ZERO for m in args[2:]])


@command("scard", "Counts the members of a set.", group="set", since="1.0.0")
def scard(s, args):
    st = read_set(s, args[1])
    return reply.integer(len(st) if st is not None else 0)


@command("smove", "Moves a member from one set to another.", group="set", since="1.0.0")
def smove(s, args):
    """A missing source answers 0 before the destination's type is even checked."""
    src_key, dst_key, member = args[1], args[2], args[3]
    src = s.ks.get(src_key)
    dst = s.ks.get(dst_key)
    if src is None:
        return reply.ZERO
    if src.__class__ is not Set or (dst is not None and dst.__class__ is not Set):
        raise CommandError(WRONGTYPE)
    if src is dst:
        return reply.ONE if member in src else reply.ZERO
    if member not in src:
        return reply.ZERO
    # Each side changes as the replayable command it equals (a commit log holding
    # commands logs those rather than the sets).
    logged_as(s.ks, src_key, _remove_member, [b"SREM", src_key, member], s, src_key, src, member)
    logged_as(s.ks, dst_key, _add_member, [b"SADD", dst_key, member], s, dst_key, dst, member)
    return reply.ONE


def _remove_member(s, key: bytes, st: Set, member: bytes) -> None:
    st.remove_member(member)
    if st:
        s.ks.signal_modified(key)
    else:
        s.ks.delete(key)


def _add_member(s, key: bytes, st: Set | None, member: bytes) -> None:
    if st is None:
        st = Set()
        st.add_member(member)
        s.ks.set(key, st)
    elif st.add_member(member):
        s.ks.signal_modified(key)


# -- random members ---------------------------------------------------------------------


@command("spop", "Removes and returns random members of a set.", group="set", since="1.0.0")
def spop(s, args):
    n = len(args)
    if n > 3:
        raise CommandError(SYNTAX)
    if n == 3:
        return _spop_count(s, args)
    key = args[1]
    st = _write_lookup(s, key)
    if st is None:
        return s.proto.null

    def pop() -> bytes:
        member = pick_one(st)
        st.remove_member(member)
        if st:
            s.ks.signal_modified(key)
        else:
            s.ks.delete(key)
        return member

    # Logged as the SREM of the member drawn: a replay must not draw again.
    return reply.bulk(logged_as(s.ks, key, pop, lambda member: [b"SREM", key, member]))


def _spop_count(s, args) -> bytes:
    """SPOP key count: a set reply; popping everything lists the set as SUNION would."""
    count = int_arg(args[2], _NOT_POSITIVE)
    if count < 0:
        raise CommandError(_NOT_POSITIVE)
    key = args[1]
    st = _write_lookup(s, key)
    if st is None or count == 0:
        return _set_reply(s, ())
    if count >= len(st):
        members = build_set(st).ordered()
        s.ks.delete(key)
        return _set_reply(s, members)

    def pop() -> list[bytes]:
        popped = pick_distinct(st, count)
        remove = st.remove_member
        for member in popped:
            remove(member)
        s.ks.signal_modified(key)
        return popped

    return _set_reply(s, logged_as(s.ks, key, pop, lambda popped: [b"SREM", key, *popped]))


@command("srandmember", "Returns random members of a set without removing them.",
         group="set", since="1.0.0")
def srandmember(s, args):
    """Without a count, one member or null.  With a count N: N distinct members (the
    whole set, in its order, if N covers it); with -N: N independent draws."""
    n = len(args)
    if n > 3:
        raise CommandError(SYNTAX)
    if n == 2:
        st = read_set(s, args[1])
        return s.proto.null if st is None else reply.bulk(pick_one(st))
    count = int_arg(args[2])
    if count < -_LLONG_MAX:
        raise CommandError(_COUNT_RANGE)
    st = read_set(s, args[1])
    if st is None or count == 0:
        return reply.EMPTY_ARRAY
    if count < 0:
        return reply.bulk_array(pick_repeated(st, -count))
    if count == 1:
        return reply.bulk_array([pick_one(st)])
    if count >= len(st):
        return reply.bulk_array(st.ordered())
    return reply.bulk_array(pick_distinct(st, count))


# -- algebra ----------------------------------------------------------------------------


def _intersection(sets: list[Set | None], limit: int = 0):
    """Members common to every set, in the order of the smallest set.

    Like Redis, the sets are ordered by size with a stable sort, so among equally
    small sets the first given is listed.  ``limit`` (when non-zero) stops early.
    """
    if any(st is None for st in sets):
        return []
    ordered = sorted(sets, key=len)
    first = ordered[0]
    others = [st for st in ordered[1:] if st is not first]
    found = []
    for member in first.ordered():
        for other in others:
            if member not in other:
                break
        else:
            found.append(member)
            if len(found) == limit:
                break
    return found


def _union(sets: list[Set | None]) -> Set:
    members: set = set()
    for st in sets:
        if st is not None:
            members.update(st)
    return build_set(members)


def _difference(sets: list[Set | None]) -> Set:
    """The first set minus the others, with the encoding Redis's algorithm leaves.

    Redis picks between testing each member of the first set against the others
    (algorithm 1) and copying the first set then removing the others' members
    (algorithm 2) by estimated work; only the second passes through a copy of the
    whole first set, which decides the result's encoding.
    """
    first = sets[0]
    if first is None or any(st is first for st in sets[1:]):
        return build_set(())
    present = [st for st in sets if st is not None]
    work_one = len(first) * len(present) // 2
    work_two = sum(len(st) for st in present)
    result = build_set(first.difference(*present[1:]))
    if work_one > work_two and not result.hashtable and not fits_intset(first):
        result.hashtable = True
    return result


@command("sinter", "Lists the members common to several sets.", group="set", since="1.0.0")
def sinter(s, args):
    return _set_reply(s, _intersection(_lookup_all(s, args[1:], True)))


@command("sinterstore", "Stores the members common to several sets in a key.", group="set", since="1.0.0")
def sinterstore(s, args):
    sets = _lookup_all(s, args[2:], False)
    return _store(s, args[1], build_set(_intersection(sets)))


@command("sintercard", "Counts the members common to several sets, optionally up to a limit.",
         group="set", since="7.0.0")
def sintercard(s, args):
    numkeys = int_arg(args[1], "ERR numkeys should be greater than 0")
    if numkeys < 1:
        raise CommandError("ERR numkeys should be greater than 0")
    n = len(args)
    if numkeys > n - 2:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    limit = 0
    i = 2 + numkeys
    while i < n:
        if args[i].lower() == b"limit" and i + 1 < n:
            limit = int_arg(args[i + 1], "ERR LIMIT can't be negative")
            if limit < 0:
                raise CommandError("ERR LIMIT can't be negative")
            i += 2
        else:
            raise CommandError(SYNTAX)
    sets = _lookup_all(s, args[2:2 + numkeys], True)
    return reply.integer(len(_intersection(sets, limit)))


@command("sunion", "Lists the members of the union of several sets.", group="set", since="1.0.0")
def sunion(s, args):
    return _set_reply(s, _union(_lookup_all(s, args[1:], True)).ordered())


@command("sunionstore", "Stores the union of several sets in a key.", group="set", since="1.0.0")
def sunionstore(s, args):
    return _store(s, args[1], _union(_lookup_all(s, args[2:], False)))


@command("sdiff", "Lists the members of the first set that are in none of the others.",
         group="set", since="1.0.0")
def sdiff(s, args):
    return _set_reply(s, _difference(_lookup_all(s, args[1:], True)).ordered())


@command("sdiffstore", "Stores the difference of the first set and the others in a key.",
         group="set", since="1.0.0")
def sdiffstore(s, args):
    return _store(s, args[1], _difference(_lookup_all(s, args[2:], False)))


# -- SSCAN ------------------------------------------------------------------------------


@command("sscan", "Iterates over the members of a set.", group="set", since="2.8.0")
def sscan(s, args):
    """An intset is returned whole, sorted, with cursor 0 (the cursor is not even
    looked at), as Redis does; a hashtable is walked with bucket cursors."""
    cursor = parse_cursor(args[2])
    st = read_set(s, args[1])
    if st is None:
        return _EMPTY_SCAN
    count, match, _ = parse_scan_options(args, 3, False)
    if st.hashtable:
        cursor, members = index_of(st).scan(cursor, count)
    else:
        cursor, members = 0, st.ordered()
    if match is not None:
        members = [m for m in members if match(m)]
    return b"*2\r\n%b%b" % (reply.bulk(b"%d" % cursor), reply.bulk_array(members))
