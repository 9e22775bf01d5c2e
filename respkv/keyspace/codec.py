"""Value codec: a whole keyspace value to bytes and back, for shipping to replicas.

Theory of operation
-------------------
The coordinator applies a write to its own keyspace and then sends each replica
the key's *new value*, so a replica need not reproduce a command's logic,
randomness or clock, and two replicas that receive the same blob hold the same
value.  (For collections changed by a few deterministic commands the coordinator
ships the command instead, when the replica holds the same prior version; see
:mod:`respkv.replication.coordinator`.)  This module is the pure part of that:
:func:`encode_value` turns a value into a blob, :func:`decode_value` builds a fresh,
independent value from one.

A blob starts with a one-byte type tag; everything after it is little-endian:

* ``s`` string: the bytes themselves (the common case costs one concatenation);
* ``l`` list: ``u32`` count *n*, *n* ``u32`` item lengths, then the items back to back;
* ``h`` hash: encoding byte (1: hashtable), ``u32`` pair count *n*, *2n* ``u32``
  lengths (field, value, field, value, ...), then the fields and values back to back;
* ``S`` set: encoding byte (1: hashtable), then members laid out as a list's items;
* ``z`` sorted set: encoding byte (1: listpack), ``u32`` count *n*, *n* ``f64``
  scores, *n* ``u32`` member lengths, then the members; entries are written in
  ``(score, member)`` order, so rebuilding the ordered view is a linear sort.

Putting all lengths in one table lets each side pack or unpack them with a single
``struct`` call instead of one per item.  Scores travel as IEEE doubles, so ``inf``,
``-inf`` and ``-0.0`` survive exactly.  The encoding flags travel too, because
Redis's encoding is visible to clients (``OBJECT ENCODING``, listing order of
intsets, ``ZSCAN`` replies) and a replica must answer as the coordinator would.

Decoding checks the blob completely: an unknown tag, a bad flag byte, a truncated
or overlong blob, duplicate members or a NaN score raise :class:`ValueError`, never
a lower-level error.

"""

from __future__ import annotations

import struct
from itertools import accumulate

from sortedcontainers import SortedList

from .values import Hash, ListValue, Set
from .zset import SortedSet

__all__ = ["encode_value", "decode_value"]

_U32 = struct.Struct("<I")
_FLAG_COUNT = struct.Struct("<BI")


# -- encoding -------------------------------------------------------------------------


#: The tags that start an encoded string, and an encoded set.
STRING_TAG = b"s"
SET_TAG = b"S"


def encode_value(value) -> bytes:
    """The blob for ``value`` (bytes, list, hash, set or sorted set).

    Raises ``TypeError`` for any other type and ``ValueError`` for an item too large
    for the format (4 GiB or more).
    """
    if value.__class__ is bytes:
        return STRING_TAG + value
    encoder = _ENCODERS.get(value.__class__)
    if encoder is None:
        raise TypeError(f"cannot encode a value of type {type(value).__name__}")
    try:
        return encoder(value)
    except struct.error as exc:
        raise ValueError(f"value too large to encode: {exc}") from None


def _items(head: bytes, items) -> bytes:
    """``head``, a count, the length table and the items themselves."""
    n = len(items)
    lengths = struct.pack(f"<I{n}I", n, *map(len, items))
    return b"".join((head, lengths, *items))


def _encode_list(value) -> bytes:
    return _items(b"l", value)


def _encode_set(value) -> bytes:
    return _items(b"S\x01" if value.hashtable else b"S\x00", tuple(value))


def _encode_hash(value) -> bytes:
    flat = [x for pair in value.items() for x in pair]
    n = len(value)
    head = struct.pack(f"<cBI{2 * n}I", b"h", value.hashtable, n, *map(len, flat))
    return b"".join((head, *flat))


def _encode_zset(value) -> bytes:
    order = value.order
    n = len(order)
    members = [m for _, m in order]
    head = struct.pack(
        f"<cBI{n}d{n}I", b"z", value.listpack, n, *[s for s, _ in order], *map(len, members)
    )
    return b"".join((head, *members))


# -- decoding -------------------------------------------------------------------------


def decode_value(blob: bytes):
    """A fresh value rebuilt from ``blob``; ``ValueError`` if the blob is malformed."""
    if blob[:1] == b"s":
        return blob[1:]
    if not blob:
        raise ValueError("malformed value blob: empty")
    decoder = _DECODERS.get(blob[:1])
    if decoder is None:
        raise ValueError(f"malformed value blob: unknown type tag {blob[:1]!r}")
    return decoder(blob)


def _flag(blob: bytes) -> tuple[bool, int]:
    """The encoding byte and item count after the tag, as (flag, count)."""
    if len(blob) < 1 + _FLAG_COUNT.size:
        raise ValueError("malformed value blob: truncated header")
    flag, n = _FLAG_COUNT.unpack_from(blob, 1)
    if flag > 1:
        raise ValueError(f"malformed value blob: bad encoding byte {flag}")
    return bool(flag), n


def _split(blob: bytes, offset: int, n: int, what: str) -> list[bytes]:
    """The ``n`` length-table items starting at ``offset``, which must end the blob."""
    table_end = offset + 4 * n
    if table_end > len(blob):
        raise ValueError(f"malformed {what} blob: truncated length table")
    lengths = struct.unpack_from(f"<{n}I", blob, offset)
    ends = list(accumulate(lengths, initial=table_end))
    if ends[-1] != len(blob):
        problem = "truncated" if ends[-1] > len(blob) else "trailing bytes after"
        raise ValueError(f"malformed {what} blob: {problem} item data")
    return [blob[a:b] for a, b in zip(ends, ends[1:])]


def _decode_list(blob: bytes):
    if len(blob) < 5:
        raise ValueError("malformed list blob: truncated header")
    (n,) = _U32.unpack_from(blob, 1)
    return ListValue(_split(blob, 5, n, "list"))


def _decode_set(blob: bytes):
    hashtable, n = _flag(blob)
    members = _split(blob, 6, n, "set")
    value = Set()
    value.update(members)
    if len(value) != n:
        raise ValueError("malformed set blob: duplicate members")
    value.hashtable = hashtable
    return value


def _decode_hash(blob: bytes):
    hashtable, n = _flag(blob)
    flat = iter(_split(blob, 6, 2 * n, "hash"))
    value = Hash()
    dict.update(value, zip(flat, flat))
    if len(value) != n:
        raise ValueError("malformed hash blob: duplicate fields")
    value.hashtable = hashtable
    return value


def _decode_zset(blob: bytes):
    listpack, n = _flag(blob)
    if 6 + 8 * n > len(blob):
        raise ValueError("malformed zset blob: truncated score table")
    scores = struct.unpack_from(f"<{n}d", blob, 6)
    members = _split(blob, 6 + 8 * n, n, "zset")
    table = dict(zip(members, scores))
    if len(table) != n:
        raise ValueError("malformed zset blob: duplicate members")
    if any(s != s for s in scores):
        raise ValueError("malformed zset blob: NaN score")
    value = SortedSet()
    value.scores = table
    value.order = SortedList(zip(table.values(), table.keys()))
    value.listpack = listpack
    return value


# -- dispatch ---------------------------------------------------------------------------

#: Value class -> encoder (strings are handled before the lookup).
_ENCODERS = {ListValue: _encode_list, Set: _encode_set, Hash: _encode_hash, SortedSet: _encode_zset}
#: Tag byte -> decoder (strings are handled before the lookup).
_DECODERS = {b"l": _decode_list, b"S": _decode_set, b"h": _decode_hash, b"z": _decode_zset}
