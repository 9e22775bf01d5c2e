"""What the dataset costs in bytes: the model behind ``used_memory`` and ``maxmemory``.

Theory of operation
-------------------
Redis reads ``used_memory`` from its allocator.  CPython offers nothing as cheap
(``tracemalloc`` slows every allocation; the resident set size includes the
interpreter, freed-but-kept arenas and other processes' pages), so the keyspace
keeps an estimate, maintained as values change rather than sampled:

* a ``bytes`` object of ``n`` bytes costs :func:`bytes_cost` (``n`` + a 33-byte
  header, rounded up to CPython's 16-byte allocation classes; objects above 512
  bytes come from ``malloc``, which adds its own header);
* a key costs its ``bytes`` object and its entry in the keyspace dictionary: in
  the total, the dictionary's real size (``sys.getsizeof``, which a dict answers
  in O(1); after many insertions and deletions its table is about twice what a
  fresh one needs), per key :data:`KEY_ENTRY` (for one key's share and as the
  trigger of the next maxmemory check); a deadline costs its entry in the expiry
  map and :data:`EXPIRY_OBJECTS` (the ``int``, the heap's tuple);
* a string value costs its ``bytes`` object; a collection costs a fixed part plus,
  per member, its container overhead (measured per type, :data:`MEMBER_OVERHEAD`)
  and the average cost of a few sampled members (:func:`value_cost`), recomputed
  whenever a command changes it (``O(samples)``, not ``O(members)``).

The figures were measured on CPython 3.11 (64-bit) with ``tracemalloc``; the
benchmark ``tools.membench`` compares the sum with the growth of the resident set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import islice
from sys import getsizeof

from .values import TYPE_NAMES

#: Bytes of a ``bytes`` object's header (``sys.getsizeof(b"")``).
BYTES_HEADER = 33
#: Objects up to this size come from CPython's small-object allocator.
SMALL_OBJECT_LIMIT = 512
#: Average bytes of one entry of a large dict (hash, key, value, index; growth slack).
KEY_ENTRY = 40
#: Bytes of a deadline's objects: the ``int`` and the expiry heap's tuple and slot.
EXPIRY_OBJECTS = 32 + 72
#: ...and with its expiry-map entry (for one key's share, MEMORY USAGE).
EXPIRY_ENTRY = 40 + EXPIRY_OBJECTS
#: Bytes per key of the slot index, once it is built (a set entry).
SLOT_INDEX_ENTRY = 40
#: Fixed bytes of an empty collection object (header, slots, first table).
COLLECTION_BASE = 240
#: Per-member overhead by type name, excluding the members' own bytes objects:
#: set/hash/list table slots and sorted-set score floats and order entries.
MEMBER_OVERHEAD = {"set": 72, "hash": 32, "list": 9, "zset": 118}
#: Members whose sizes are averaged when a collection is costed.
DEFAULT_SAMPLES = 8


#: Dictionaries smaller than this are left to CPython (a rebuild is too small to
#: matter), and so are larger ones than the second: a rebuild pauses the node about
#: 0.13 us a key (90 ms for 700,000), some three times CPython's own rebuild, which
#: it replaces, so it is bounded to about half a second.
COMPACT_MIN_KEYS = 4096
COMPACT_MAX_KEYS = 4_000_000
#: New keys between two looks at a dictionary's size (:meth:`DictTable.created`).
DICT_CHECK_EVERY = 64
#: Keys a rebuild puts back at a time (:meth:`DictTable._rebuild`).
REFILL_CHUNK = 4096
#: CPython 3.11's sizes of a dictionary with ``bytes`` keys: the object with its GC
#: header, the keys object's header, and one entry (hash, key, value).
_DICT_OBJECT = 48 + 16
_KEYS_HEADER = 32
_ENTRY = 24


def dict_layout(log2_size: int) -> tuple[int, int]:
    """``(sys.getsizeof, usable entries)`` of a dictionary of ``bytes`` keys whose table
    has ``2 ** log2_size`` slots (CPython 3.11: an index of 1, 2, 4 or 8 bytes a slot,
    and two thirds as many entries)."""
    size = 1 << log2_size
    index = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8
    usable = (size << 1) // 3
    return _DICT_OBJECT + _KEYS_HEADER + size * index + usable * _ENTRY, usable


def copy_layout(keys: int) -> tuple[int, int]:
    """The layout of a fresh copy of a dictionary of ``keys`` keys (CPython sizes it
    for one and a half times them, in a power of two of at least 8 slots)."""
    return dict_layout(max(3, ((keys * 3 + 1) // 2 - 1).bit_length()))


def usable_entries(table_bytes: int) -> int | None:
    """The entries of a table of ``table_bytes`` (``sys.getsizeof``), None if no
    layout gives that size (another interpreter: then only shrinking is done)."""
    for log2_size in range(3, 48):
        size, usable = dict_layout(log2_size)
        if size == table_bytes:
            return usable
        if size > table_bytes:
            return None
    return None


class DictTable:
    """Keeps a dictionary that keys come and go from at the size its keys need.

    CPython never reuses the entry of a deleted key: a dictionary holding about n
    keys while keys come and go (a cache evicting, keys expiring) fills its entry
    array and is then rebuilt for 3n keys, four to six table slots a key (60 to 120
    bytes) where a copy needs 1.5 to 3, holding the old table and the big new one
    at once.  The owner calls :meth:`created` after each new key (each takes an
    entry) and :meth:`reset` after emptying the dictionary.  Knowing how many
    entries are left, this rebuilds the dictionary at its right size just before
    CPython would (when deleted keys make that worth it: a copy leaves room for at
    least a quarter more keys), and after a rebuild of CPython's that left it much
    larger than a copy, shrinks it.  A rebuild is O(n), as CPython's own, made in
    place (the pairs set aside in two lists, the dictionary cleared and filled
    again from them), so every holder keeps seeing the same object.
    Never let it run while something iterates the dictionary.
    """

    __slots__ = ("table", "table_bytes", "entries_left", "countdown", "rebuilds", "before_rebuild",
                 "after_rebuild")

    def __init__(self, table: dict, before_rebuild: Callable[[], None] | None = None,
                 after_rebuild: Callable[[], None] | None = None) -> None:
        self.table = table
        #: Called just before and just after a rebuild: the owner frees what it can
        #: build again, and builds it again (a rebuild is the process's peak on a
        #: node evicting all the time).
        self.before_rebuild = before_rebuild
        self.after_rebuild = after_rebuild
        self.rebuilds = 0
        self.countdown = DICT_CHECK_EVERY
        self.reset()

    def reset(self) -> None:
        """The dictionary was just (re)built, so its entries are all live ones."""
        self.table_bytes = getsizeof(self.table)
        usable = usable_entries(self.table_bytes)
        self.entries_left = -1 if usable is None else usable - len(self.table)

    def created(self) -> None:
        """A key was added (it took an entry)."""
        self.entries_left -= 1
        self.countdown -= 1
        if self.entries_left == 1 or not self.countdown:
            self.countdown = DICT_CHECK_EVERY
            self._check()

    def _check(self) -> None:
        table = self.table
        keys = len(table)
        if getsizeof(table) != self.table_bytes:  # CPython rebuilt it (or keys came by other ways)
            self.reset()
            if COMPACT_MIN_KEYS <= keys <= COMPACT_MAX_KEYS and 4 * copy_layout(keys)[0] <= 3 * self.table_bytes:
                self._rebuild()
        elif (self.entries_left == 1 and COMPACT_MIN_KEYS <= keys <= COMPACT_MAX_KEYS
              and 4 * (copy_layout(keys)[1] - keys) >= keys):
            self._rebuild()  # the next new key would have CPython rebuild it for 3n

    def _rebuild(self) -> None:
        table = self.table
        if self.before_rebuild is not None:
            self.before_rebuild()
        # The keys and values wait in two lists (16 bytes a key against the
        # table's 40 or so) while the table is filled again from them; the lists
        # shrink as they are consumed, so when CPython resizes the refilling
        # table (holding its old and new arrays at once) they are small.  Some
        # 0.1 to 0.2 us a key, twice a copy's time, for half to three quarters of
        # a table at the peak where a copy holds two full tables.
        keys = list(table)
        values = list(table.values())  # if either fails, nothing has changed
        keys.reverse()
        values.reverse()
        table.clear()
        try:
            _move_back(table, keys, values)
        except MemoryError:
            # Never leave the dictionary without its keys (a snapshot would then
            # persist the loss): try once more, or stop the process (the commit
            # log holds every key).
            try:
                if len(values) > len(keys):  # the chunk on top was stored
                    del values[len(keys):]
                _move_back(table, keys, values)
            except BaseException:
                os._exit(70)
        self.rebuilds += 1
        self.reset()
        if self.after_rebuild is not None:
            self.after_rebuild()


def _move_back(table: dict, keys: list, values: list) -> None:
    """Store the pairs of ``keys`` and ``values`` into ``table``, the last ones
    first, :data:`REFILL_CHUNK` at a time, dropping each chunk from the lists only
    once stored: after a failure, calling it again loses nothing."""
    while keys:
        key_chunk = keys[-REFILL_CHUNK:]
        value_chunk = values[-REFILL_CHUNK:]
        key_chunk.reverse()
        value_chunk.reverse()
        table.update(zip(key_chunk, value_chunk))
        del keys[-REFILL_CHUNK:]
        del values[-REFILL_CHUNK:]


def bytes_cost(length: int) -> int:
    """Bytes a ``bytes`` object of ``length`` bytes takes from the allocator."""
    size = (BYTES_HEADER + length + 15) & ~15
    return size if size <= SMALL_OBJECT_LIMIT else size + 16


#: ``bytes_cost(n)`` for ``n`` below 1024, for hot loops (an index instead of a call).
SMALL_COSTS = tuple(bytes_cost(n) for n in range(1024))


def resized(old_size: int, size: int) -> int:
    """How many bytes more a string of ``size`` bytes costs than one of
    ``old_size`` (the change a write of one over the other makes)."""
    costs = SMALL_COSTS
    return ((costs[size] if size < 1024 else bytes_cost(size))
            - (costs[old_size] if old_size < 1024 else bytes_cost(old_size)))


def _members(value, type_name: str):
    """Iterator over the bytes objects one member of ``value`` owns, grouped per member."""
    if type_name == "hash":
        return ((field, field_value) for field, field_value in value.items())
    if type_name == "zset":
        return ((member,) for member in value.scores)
    return ((member,) for member in value)


def value_cost(value, samples: int = DEFAULT_SAMPLES) -> int:
    """Estimated bytes of a stored value.

    Strings are exact; a collection's members are costed from ``samples`` of them
    (all of them when ``samples`` is 0), as ``MEMORY USAGE ... SAMPLES`` does.
    """
    if value.__class__ is bytes:
        return bytes_cost(len(value))
    type_name = TYPE_NAMES[value.__class__].decode()
    count = len(value)
    if not count:
        return COLLECTION_BASE
    picked = _members(value, type_name)
    if samples:
        picked = islice(picked, samples)
    seen = 0
    total = 0
    for member in picked:
        seen += 1
        for part in member:
            total += bytes_cost(len(part))
    per_member = MEMBER_OVERHEAD[type_name] + (total // seen if seen else 0)
    return COLLECTION_BASE + count * per_member


def key_cost(key: bytes) -> int:
    """Bytes of a key: its ``bytes`` object and its keyspace entry."""
    return KEY_ENTRY + bytes_cost(len(key))
