"""The keyspace's value types, and the facts every type has to declare.

Theory of operation
-------------------
A stored value's Python class is its Redis type: ``bytes`` is a string,
:class:`ListValue` a list, :class:`Hash` a hash, :class:`Set` a set and
:class:`~respkv.keyspace.zset.SortedSet` a sorted set.  A string costs nothing
beyond its ``bytes`` object; the collections are thin subclasses of Python's own
containers (the sorted set has a module of its own, :mod:`respkv.keyspace.zset`).

Hashes and sets also remember the encoding Redis 7.0 would give them, because
clients observe it, through ``OBJECT ENCODING`` and through listing order:

* a small hash is a *listpack* in Redis, listed in insertion order (an overwritten
  field keeps its place), which is exactly a ``dict``'s order.  A hash that ever
  held more than 512 fields, or a field or value longer than 64 bytes, becomes a
  *hashtable* for good, listed in an order that is random in Redis;
* a set of at most 512 canonical 64-bit integers is an *intset*, kept sorted by
  value, so it lists in ascending numeric order; any other set is a *hashtable* and
  never converts back.

So every change of membership goes through :meth:`Hash.put`/:meth:`Hash.remove` and
:meth:`Set.add_member`/:meth:`Set.remove_member`, which keep the encoding flag, the
cached order and the bucket index (:mod:`respkv.keyspace.buckets`, used by HSCAN,
SSCAN and random picks) up to date; nothing else may change membership with the
plain container methods.

Commands that work on keys of every type need three facts per type, kept here in
one place: :data:`TYPE_NAMES` (``TYPE``, ``SCAN ... TYPE``), :data:`ENCODINGS`
(``OBJECT ENCODING``) and :data:`COPIERS` (``COPY``).  The value codec
(:mod:`respkv.keyspace.codec`) turns each type into bytes and back.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable

from .numbers import parse_int
from .zset import SortedSet

#: Longest string Redis stores as "embstr" (in one allocation with its header).
EMBSTR_LIMIT = 44
#: A listpack hash turns into a hashtable past this many fields...
HASH_LISTPACK_MAX_ENTRIES = 512
#: ...or when a field or value longer than this many bytes is stored.
HASH_LISTPACK_MAX_VALUE = 64
#: An intset turns into a hashtable past this many members.
INTSET_MAX_ENTRIES = 512


# -- lists --------------------------------------------------------------------------


class ListValue(deque):
    """A Redis list: a deque of ``bytes``, never empty while stored.

    Pushes and pops at either end are O(1), as on Redis's quicklist; indexed access
    walks from the nearer end.
    """

    __slots__ = ()


# -- hashes -------------------------------------------------------------------------


class Hash(dict):
    """A Redis hash: field → value, plus its encoding and optional bucket index."""

    __slots__ = ("hashtable", "index")

    def __init__(self) -> None:
        self.hashtable = False  # False: "listpack"
        self.index = None  # a keyspace.buckets.BucketIndex once scanned or sampled big

    def put(self, field: bytes, value: bytes) -> bool:
        """Set a field; True if it is new.  Converts to a hashtable like Redis."""
        if not self.hashtable and (len(field) > HASH_LISTPACK_MAX_VALUE or len(value) > HASH_LISTPACK_MAX_VALUE):
            self.hashtable = True
        if field in self:
            self[field] = value
            return False
        self[field] = value
        if self.index is not None:
            self.index.add(field)
        if len(self) > HASH_LISTPACK_MAX_ENTRIES:
            self.hashtable = True
        return True

    def remove(self, field: bytes) -> bool:
        """Delete a field; True if it was there."""
        if self.pop(field, None) is None:
            return False
        if self.index is not None:
            self.index.discard(field)
        return True

    def copy(self) -> "Hash":
        """An independent copy with the same encoding (COPY keeps Redis's encoding)."""
        duplicate = Hash()
        dict.update(duplicate, self)
        duplicate.hashtable = self.hashtable
        return duplicate


# -- sets ---------------------------------------------------------------------------


class Set(set):
    """A Redis set: members, plus their encoding, sorted order and bucket index."""

    __slots__ = ("hashtable", "order", "index")

    def __init__(self) -> None:
        self.hashtable = False  # False: "intset"
        self.order = None  # members sorted by value, cached while an intset
        self.index = None  # a keyspace.buckets.BucketIndex once scanned or sampled big

    def add_member(self, member: bytes) -> bool:
        """Add a member; True if it is new.  Converts to a hashtable like Redis."""
        if member in self:
            return False
        self.add(member)
        if not self.hashtable:
            if len(self) > INTSET_MAX_ENTRIES or parse_int(member) is None:
                self.hashtable = True
            self.order = None
        if self.index is not None:
            self.index.add(member)
        return True

    def remove_member(self, member: bytes) -> bool:
        """Remove a member; True if it was there."""
        if member not in self:
            return False
        self.discard(member)
        self.order = None
        if self.index is not None:
            self.index.discard(member)
        return True

    def ordered(self):
        """The members in Redis's listing order (ascending numbers for an intset)."""
        if self.hashtable:
            return self
        if self.order is None:
            self.order = tuple(sorted(self, key=int))
        return self.order

    def copy(self) -> "Set":
        """An independent copy with the same encoding (COPY keeps Redis's encoding)."""
        duplicate = Set()
        duplicate.update(self)
        duplicate.hashtable = self.hashtable
        return duplicate


def fits_intset(members) -> bool:
    """Whether a new set holding exactly ``members`` would still be an intset."""
    return len(members) <= INTSET_MAX_ENTRIES and all(parse_int(m) is not None for m in members)


def build_set(members, hashtable: bool = False) -> Set:
    """A new set of ``members`` with the encoding Redis would give it.

    ``hashtable`` forces that encoding (for a result that passed through a bigger or
    non-integer intermediate state).
    """
    result = Set()
    result.update(members)
    result.hashtable = hashtable or not fits_intset(result)
    return result


# -- what every type declares ----------------------------------------------------------


def string_encoding(value: bytes) -> bytes:
    """Redis's encoding for a string, derived from its bytes: int, embstr or raw.

    Redis also reports ``raw`` for a short string edited in place (APPEND, SETRANGE)
    and ``embstr`` for a numeric result of INCRBYFLOAT; those writers leave a hint in
    the keyspace (``Keyspace.hint_encoding``) that OBJECT ENCODING consults first.
    """
    if len(value) <= 20 and parse_int(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= EMBSTR_LIMIT else b"raw"


#: Redis type name of each value class.
TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    ListValue: b"list",
    Hash: b"hash",
    Set: b"set",
    SortedSet: b"zset",
}

#: Value class → function giving its ``OBJECT ENCODING`` name.
ENCODINGS: dict[type, Callable[[object], bytes]] = {
    bytes: string_encoding,
    ListValue: lambda value: b"quicklist",  # Redis 7.0 encodes every list so
    Hash: lambda value: b"hashtable" if value.hashtable else b"listpack",
    Set: lambda value: b"hashtable" if value.hashtable else b"intset",
    SortedSet: lambda value: value.encoding,
}

#: Value class → function returning an independent copy (for COPY).  Immutable
#: values are shared.  A class without an entry is copied with ``copy.deepcopy``,
#: which is correct for containers of ``bytes`` but recursive, so a type built from
#: long linked structures needs an entry of its own.
COPIERS: dict[type, Callable[[object], object]] = {
    bytes: lambda value: value,
    ListValue: ListValue,
    Hash: Hash.copy,
    Set: Set.copy,
    SortedSet: SortedSet.copy,
}


def type_name(value) -> bytes:
    """The Redis type name of a stored value (``string``, ``list``, ...)."""
    return TYPE_NAMES[value.__class__]


def encoding_of(value) -> bytes:
    """The ``OBJECT ENCODING`` of a stored value (``unknown`` for an unlisted class)."""
    encoder = ENCODINGS.get(value.__class__)
    return encoder(value) if encoder is not None else b"unknown"


def copy_value(value):
    """An independent copy of a stored value (see :data:`COPIERS`)."""
    copier = COPIERS.get(value.__class__)
    return copier(value) if copier is not None else copy.deepcopy(value)
