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


#: A dictionary of at least :data:`COMPACT_MIN_KEYS` keys whose table takes more than
#: this many bytes a key is rebuilt at its right size (:func:`compact_if_bloated`).
BLOATED_DICT_BYTES_PER_KEY = 70
COMPACT_MIN_KEYS = 4096


def compact_if_bloated(table: dict) -> bool:
    """Give ``table`` the smallest table CPython builds for its keys, if its own is
    much larger; True if it did.

    CPython never reuses the slot of a deleted entry: a dictionary that keeps about
    n keys while keys come and go (a cache evicting, a store expiring) fills its
    entry array and is then rebuilt for 3n keys, 4 to 6 table slots a key (60 to 120
    bytes) where a copy needs 1.5 to 3.  The copy is O(n), as CPython's own rebuild,
    and is made in place (clear, then update from a fresh copy, which takes the
    copy's table as it is), so every holder of ``table`` keeps seeing the same
    object.  Never call it while something iterates ``table``."""
    count = len(table)
    if count < COMPACT_MIN_KEYS or getsizeof(table) <= BLOATED_DICT_BYTES_PER_KEY * count:
        return False
    fresh = dict(table)
    table.clear()
    table.update(fresh)
    return True


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
