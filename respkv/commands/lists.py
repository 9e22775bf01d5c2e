"""List commands: pushes and pops at both ends, ranges, edits, moves, multi-key pops.

A list value is a :class:`~respkv.keyspace.values.ListValue`, a ``deque`` of
``bytes``.  Like Redis, a list never stays empty: the command that takes its last
element deletes the key.  Every change is reported with ``signal_modified`` (or
implied by ``set``/``delete``) so blocked clients and ``WATCH`` see it.

Argument errors follow Redis 7.0 command by command: most commands parse their
numbers and options before looking at the key (LRANGE, LTRIM, LREM, LINSERT, LPOS,
LMPOP), while LINDEX and LSET look the key up first, so a missing key or WRONGTYPE
wins over a bad index there.

The blocking variants (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) are in
:mod:`respkv.commands.blocking_lists`, built from the helpers here.
"""

from __future__ import annotations

from itertools import islice

from ..errors import NO_SUCH_KEY, SYNTAX, wrong_arity
from ..keyspace.numbers import parse_int
from ..keyspace.values import ListValue
from ..protocol import reply
from .args import int_arg
from .lookups import read_typed, write_typed
from .replay import logged_as
from .table import CommandError, command

_POSITIVE = "ERR value is out of range, must be positive"
_WHERE = {b"LEFT": True, b"RIGHT": False}  # True: the head


# -- lookups and argument helpers --------------------------------------------------------


def list_for_write(s, key: bytes) -> ListValue | None:
    """The list at ``key`` or None; WRONGTYPE for another type (a write lookup)."""
    return write_typed(s, key, ListValue)


def _list_for_read(s, key: bytes) -> ListValue | None:
    """Like :func:`list_for_write`, counted as a read (keyspace hits/misses)."""
    return read_typed(s, key, ListValue)


def parse_where(raw: bytes) -> bool:
    """LEFT (True) or RIGHT (False), any case; anything else is a syntax error."""
    where = _WHERE.get(raw.upper())
    if where is None:
        raise CommandError(SYNTAX)
    return where


def _positive_arg(raw: bytes, error: str) -> int:
    """An integer in 0..LONG_MAX; a non-integer gets the same ``error`` text, as in Redis."""
    value = parse_int(raw)
    if value is None or value < 0:
        raise CommandError(error)
    return value


def _range_arg(raw: bytes, error: str) -> int:
    """An integer in 1..LONG_MAX (numkeys, COUNT of LMPOP); else ``error``."""
    value = parse_int(raw)
    if value is None or value < 1:
        raise CommandError(error)
    return value


def after_pop(s, key: bytes, lst: ListValue) -> None:
    """Delete the key if the list became empty, else report the change."""
    if lst:
        s.ks.signal_modified(key)
    else:
        s.ks.delete(key)


def _pop_n(lst: ListValue, left: bool, count: int) -> list[bytes]:
    pop = lst.popleft if left else lst.pop
    return [pop() for _ in range(min(count, len(lst)))]


def _push_value(s, key: bytes, dst: ListValue | None, value: bytes, left: bool) -> None:
    """Push one element onto the list ``dst`` at ``key``, creating it if None."""
    if dst is None:
        s.ks.set(key, ListValue((value,)))
    else:
        if left:
            dst.appendleft(value)
        else:
            dst.append(value)
        s.ks.signal_modified(key)


def _normalize_range(start: int, end: int, length: int) -> tuple[int, int] | None:
    """Redis's LRANGE/LTRIM index rules: inclusive ``(start, end)``, or None if empty."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    if start < 0:
        start = 0
    if start > end or start >= length:
        return None
    if end >= length:
        end = length - 1
    return start, end


# -- pushes --------------------------------------------------------------------------------


def _push(s, args: list[bytes], left: bool, only_existing: bool) -> bytes:
    key = args[1]
    lst = list_for_write(s, key)
    if lst is None:
        if only_existing:
            return reply.ZERO
        lst = ListValue()
        created = True
    else:
        created = False
    elements = islice(args, 2, None)
    if left:
        lst.extendleft(elements)
    else:
        lst.extend(elements)
    if created:
        s.ks.set(key, lst)
    else:
        s.ks.signal_modified(key)
    return reply.integer(len(lst))


@command(
    "lpush",
    "Prepends one or more elements to a list, creating it if needed.",
    group="list", since="1.0.0",
)
def lpush(s, args):
    return _push(s, args, True, False)


@command(
    "rpush",
    "Appends one or more elements to a list, creating it if needed.",
    group="list", since="1.0.0",
)
def rpush(s, args):
    return _push(s, args, False, False)


@command(
    "lpushx",
    "Prepends one or more elements to a list only when the list exists.",
    group="list", since="2.2.0",
)
def lpushx(s, args):
    return _push(s, args, True, True)


@command(
    "rpushx",
    "Appends one or more elements to a list only when the list exists.",
    group="list", since="2.2.0",
)
def rpushx(s, args):
    return _push(s, args, False, True)


# -- pops ----------------------------------------------------------------------------------


def _pop(s, args: list[bytes], left: bool) -> bytes:
    if len(args) > 3:
        raise CommandError(wrong_arity("lpop" if left else "rpop"))
    key = args[1]
    if len(args) == 3:
        count = _positive_arg(args[2], _POSITIVE)
        lst = list_for_write(s, key)
        if lst is None:
            return s.proto.null_array
        if not count:
            return reply.EMPTY_ARRAY
        items = _pop_n(lst, left, count)
        after_pop(s, key, lst)
        return reply.bulk_array(items)
    lst = list_for_write(s, key)
    if lst is None:
        return s.proto.null
    value = lst.popleft() if left else lst.pop()
    after_pop(s, key, lst)
    return reply.bulk(value)


@command("lpop", "Removes and returns the first elements of a list.", group="list", since="1.0.0")
def lpop(s, args):
    return _pop(s, args, True)


@command("rpop", "Removes and returns the last elements of a list.", group="list", since="1.0.0")
def rpop(s, args):
    return _pop(s, args, False)


# -- reading -------------------------------------------------------------------------------


@command("llen", "Returns the number of elements in a list.", group="list", since="1.0.0")
def llen(s, args):
    lst = _list_for_read(s, args[1])
    return reply.integer(len(lst)) if lst is not None else reply.ZERO


@command(
    "lrange",
    "Returns the elements of a list between two indexes.",
    group="list", since="1.0.0",
)
def lrange(s, args):
    start = int_arg(args[2])
    end = int_arg(args[3])
    lst = _list_for_read(s, args[1])
    if lst is None:
        return reply.EMPTY_ARRAY
    length = len(lst)
    bounds = _normalize_range(start, end, length)
    if bounds is None:
        return reply.EMPTY_ARRAY
    start, end = bounds
    if start > length - 1 - end:  # nearer the tail: walk from there
        items = list(islice(reversed(lst), length - 1 - end, length - start))
        items.reverse()
    else:
        items = islice(lst, start, end + 1)
    return reply.bulk_array(items)


@command("lindex", "Returns an element of a list by its index.", group="list", since="1.0.0")
def lindex(s, args):
    lst = _list_for_read(s, args[1])
    if lst is None:
        return s.proto.null
    index = int_arg(args[2])
    if index < 0:
        index += len(lst)
    if not 0 <= index < len(lst):
        return s.proto.null
    return reply.bulk(lst[index])


@command("lpos", "Returns the indexes of matching elements in a list.", group="list", since="6.0.6")
def lpos(s, args):
    element = args[2]
    rank, count, maxlen = 1, -1, 0  # count -1: no COUNT option
    i, n = 3, len(args)
    while i < n:
        opt = args[i].upper()
        more = i + 1 < n
        if opt == b"RANK" and more:
            rank = int_arg(args[i + 1])
            if rank == 0:
                raise CommandError(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
                    "second ... or use negative to start from the end of the list"
                )
        elif opt == b"COUNT" and more:
            count = _positive_arg(args[i + 1], "ERR COUNT can't be negative")
        elif opt == b"MAXLEN" and more:
            maxlen = _positive_arg(args[i + 1], "ERR MAXLEN can't be negative")
        else:
            raise CommandError(SYNTAX)
        i += 2
    lst = _list_for_read(s, args[1])
    if lst is None:
        return reply.EMPTY_ARRAY if count != -1 else s.proto.null
    length = len(lst)
    from_tail = rank < 0
    # -LONG_MIN overflows in C and stays negative: every match then qualifies.
    rank = -rank if from_tail and rank != -(1 << 63) else rank
    items = reversed(lst) if from_tail else iter(lst)
    if maxlen:
        items = islice(items, maxlen)
    found = []
    matches = 0
    for index, item in enumerate(items):
        if item == element:
            matches += 1
            if matches >= rank:
                found.append(length - 1 - index if from_tail else index)
                if count == -1 or (count and len(found) >= count):
                    break
    if count != -1:
        return reply.array([reply.integer(pos) for pos in found])
    return reply.integer(found[0]) if found else s.proto.null


# -- editing -------------------------------------------------------------------------------


@command(
    "lset",
    "Sets the value of an element in a list by its index.",
    group="list", since="1.0.0",
)
def lset(s, args):
    key = args[1]
    lst = list_for_write(s, key)
    if lst is None:
        raise CommandError(NO_SUCH_KEY)
    index = int_arg(args[2])
    if index < 0:
        index += len(lst)
    if not 0 <= index < len(lst):
        raise CommandError("ERR index out of range")
    lst[index] = args[3]
    s.ks.signal_modified(key)
    return reply.OK


@command("lrem", "Removes elements from a list.", group="list", since="1.0.0")
def lrem(s, args):
    count = int_arg(args[2])
    key, element = args[1], args[3]
    lst = list_for_write(s, key)
    if lst is None:
        return reply.ZERO
    limit = abs(count) if count else len(lst)
    kept = []
    removed = 0
    for item in (reversed(lst) if count < 0 else lst):
        if removed < limit and item == element:
            removed += 1
        else:
            kept.append(item)
    if removed:
        if count < 0:
            kept.reverse()
        lst.clear()
        lst.extend(kept)
        after_pop(s, key, lst)
    return reply.integer(removed)


@command(
    "ltrim",
    "Removes elements from both ends of a list, keeping a range.",
    group="list", since="1.0.0",
)
def ltrim(s, args):
    start = int_arg(args[2])
    end = int_arg(args[3])
    key = args[1]
    lst = list_for_write(s, key)
    if lst is None:
        return reply.OK
    length = len(lst)
    bounds = _normalize_range(start, end, length)
    if bounds is None:
        s.ks.delete(key)
        return reply.OK
    start, end = bounds
    if end - start + 1 < length // 2:
        kept = list(islice(lst, start, end + 1))
        lst.clear()
        lst.extend(kept)
    else:
        for _ in range(start):
            lst.popleft()
        for _ in range(length - 1 - end):
            lst.pop()
    s.ks.signal_modified(key)
    return reply.OK


@command(
    "linsert",
    "Inserts an element before or after another element in a list.",
    group="list", since="2.2.0",
)
def linsert(s, args):
    where = args[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise CommandError(SYNTAX)
    key = args[1]
    lst = list_for_write(s, key)
    if lst is None:
        return reply.ZERO
    try:
        index = lst.index(args[3])
    except ValueError:
        return b":-1\r\n"
    lst.insert(index if where == b"BEFORE" else index + 1, args[4])
    s.ks.signal_modified(key)
    return reply.integer(len(lst))


# -- moves ---------------------------------------------------------------------------------


def move_element(s, src_key: bytes, dst_key: bytes, src: ListValue, wherefrom: bool, whereto: bool) -> bytes:
    """Pop from the non-empty list ``src`` and push onto ``dst_key``'s list.

    As in Redis the element is pushed before the source is emptied, so a list
    rotated onto itself keeps its one element.  Each side changes as the
    replayable command it equals (``LPUSH``/``RPUSH`` of the element, then
    ``LPOP``/``RPOP``), so a commit log holding commands logs those two rather
    than the lists (a queue moved item by item into a big list stays cheap)."""
    dst = list_for_write(s, dst_key)  # WRONGTYPE before anything is popped
    value = src[0] if wherefrom else src[-1]
    pop = [b"LPOP" if wherefrom else b"RPOP", src_key]
    push = [b"LPUSH" if whereto else b"RPUSH", dst_key, value]
    if src is dst:
        if len(src) == 1:
            s.ks.signal_modified(src_key)  # rotating one element changes nothing
        else:
            logged_as(s.ks, src_key, _pop_one, pop, s, src_key, src, wherefrom)
            logged_as(s.ks, dst_key, _push_value, push, s, dst_key, dst, value, whereto)
        return reply.bulk(value)
    logged_as(s.ks, dst_key, _push_value, push, s, dst_key, dst, value, whereto)
    logged_as(s.ks, src_key, _pop_one, pop, s, src_key, src, wherefrom)
    return reply.bulk(value)


def _pop_one(s, key: bytes, lst: ListValue, left: bool) -> None:
    """Pop one element of the list ``lst`` at ``key`` (deleted once empty)."""
    lst.popleft() if left else lst.pop()
    after_pop(s, key, lst)


def _lmove(s, src_key: bytes, dst_key: bytes, wherefrom: bool, whereto: bool) -> bytes:
    src = list_for_write(s, src_key)
    if src is None:
        return s.proto.null
    return move_element(s, src_key, dst_key, src, wherefrom, whereto)


@command(
    "lmove",
    "Pops an element from one end of a list and pushes it onto another list.",
    group="list", since="6.2.0",
)
def lmove(s, args):
    wherefrom = parse_where(args[3])
    whereto = parse_where(args[4])
    return _lmove(s, args[1], args[2], wherefrom, whereto)


@command(
    "rpoplpush",
    "Pops the last element of a list and pushes it at the head of another.",
    group="list", since="1.2.0",
)
def rpoplpush(s, args):
    return _lmove(s, args[1], args[2], False, True)


# -- multi-key pops ------------------------------------------------------------------------


def parse_mpop(args: list[bytes], numkeys_at: int) -> tuple[list[bytes], bool, int]:
    """Keys, direction and count of LMPOP/BLMPOP, numkeys at ``args[numkeys_at]``."""
    numkeys = _range_arg(args[numkeys_at], "ERR numkeys should be greater than 0")
    where_at = numkeys_at + numkeys + 1
    if where_at >= len(args):
        raise CommandError(SYNTAX)
    left = parse_where(args[where_at])
    count = -1
    i = where_at + 1
    while i < len(args):
        if count == -1 and args[i].upper() == b"COUNT" and i + 1 < len(args):
            count = _range_arg(args[i + 1], "ERR count should be greater than 0")
            i += 2
        else:
            raise CommandError(SYNTAX)
    return args[numkeys_at + 1 : where_at], left, (1 if count == -1 else count)


def mpop_reply(s, key: bytes, lst: ListValue, left: bool, count: int) -> bytes:
    """LMPOP/BLMPOP popping ``count`` elements of ``lst`` at ``key`` (logged as
    the LPOP/RPOP with a count it equals)."""

    def pop() -> list[bytes]:
        items = _pop_n(lst, left, count)
        after_pop(s, key, lst)
        return items

    items = logged_as(s.ks, key, pop, lambda _: [b"LPOP" if left else b"RPOP", key, b"%d" % count])
    return reply.array([reply.bulk(key), reply.bulk_array(items)])


@command(
    "lmpop",
    "Pops elements from the first non-empty list among several keys.",
    group="list", since="7.0.0",
)
def lmpop(s, args):
    keys, left, count = parse_mpop(args, 1)
    for key in keys:
        lst = list_for_write(s, key)
        if lst is not None:
            return mpop_reply(s, key, lst, left, count)
    return s.proto.null_array
