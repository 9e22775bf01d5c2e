"""The entries of a node's commit logs and snapshots, and their batches.

An entry is one change of one key (or a note that is no key's change, as a
hint), framed by :mod:`.framing` in the log and by :mod:`.snapshot` in a
snapshot::

    entry = kind (1 byte) | key length (u32) | key | body

All lengths are little endian.  What each kind's body holds is said by the
module that writes it: :mod:`.keyspace_images` (``VALUE``),
:mod:`.command_entries` (``COMMAND``), :mod:`respkv.replication.journaled`
(``RECORD``, ``OPERATION``), :mod:`respkv.replication.handoff` (``HINT``,
``DELIVERED``).  A round's entries are written as one :func:`batch`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

#: Entry kinds: a key's value image (standalone), its version record
#: (replication), an operation over the key's previous state (replication), a
#: command over the key's previous value (standalone), its absence, everything
#: flushed; a hint stored for the node whose id is the body, and its delivery
#: (or abandonment); and a batch of such entries.
VALUE = b"V"
RECORD = b"R"
OPERATION = b"O"
COMMAND = b"C"
ABSENT = b"X"
FLUSHED = b"F"
HINT = b"H"
DELIVERED = b"D"
BATCH = b"B"

#: The key length that follows an entry's kind.
KEY_LENGTH = struct.Struct("<I")
#: An entry's kind and key length, in one pack.
KIND_AND_KEY_LENGTH = struct.Struct("<cI")
#: The entry count that follows a batch's kind.
BATCH_COUNT = struct.Struct("<I")
#: Bytes of entries one batch holds at most (a round that wrote more is split).
BATCH_MAX_BYTES = 16 << 20


def entry(kind: bytes, key: bytes, body: bytes = b"") -> bytes:
    """One journal entry: kind, key length, key, body."""
    return b"".join((kind, KEY_LENGTH.pack(len(key)), key, body))


def split_entry(payload) -> tuple[bytes, bytes, bytes]:
    """``(kind, key, body)`` of an entry; ValueError if malformed."""
    payload = bytes(payload)
    if len(payload) < 5:
        raise ValueError("journal entry shorter than its header")
    (length,) = KEY_LENGTH.unpack_from(payload, 1)
    if 5 + length > len(payload):
        raise ValueError("journal entry key runs past its end")
    return payload[:1], payload[5 : 5 + length], payload[5 + length :]


def batch(payloads: list[bytes]) -> bytes:
    """One entry holding the entries ``payloads`` (at least one), in order::

        batch = "B" | count (u32) | count x entry length (u32) | entries back to back

    All lengths are little endian; the entries are as :func:`entry` makes them
    (never batches).  Replaying a batch replays its entries in order."""
    return b"".join((BATCH, batch_lengths(payloads), *payloads))


def batch_lengths(payloads: list[bytes]) -> bytes:
    """What follows a :func:`batch`'s kind: the count and the length of each of
    ``payloads``."""
    return struct.pack(f"<{len(payloads) + 1}I", len(payloads), *map(len, payloads))


def split_batch(payload) -> list[bytes]:
    """The entries of a :func:`batch`; ValueError if malformed."""
    payload = bytes(payload)
    if len(payload) < 1 + BATCH_COUNT.size:
        raise ValueError("batch entry shorter than its header")
    (count,) = BATCH_COUNT.unpack_from(payload, 1)
    position = 1 + BATCH_COUNT.size * (count + 1)
    if position > len(payload):  # checked before the table is unpacked
        raise ValueError("batch entry's length table runs past its end")
    lengths = struct.unpack_from(f"<{count}I", payload, 1 + BATCH_COUNT.size)
    if position + sum(lengths) != len(payload):
        raise ValueError("batch entry's lengths do not add up to its size")
    entries = []
    for length in lengths:
        entries.append(payload[position : position + length])
        position += length
    return entries


def batches(payloads: list[bytes], limit: int = BATCH_MAX_BYTES) -> Iterator[bytes]:
    """``payloads`` (entries) as few log entries as batches of at most ``limit``
    bytes of entries allow: one alone stays as it is, a run of several becomes a
    :func:`batch`."""
    if not payloads:
        return
    if len(payloads) == 1:
        yield payloads[0]
        return
    if sum(map(len, payloads)) <= limit:
        yield batch(payloads)
        return
    run: list[bytes] = []
    size = 0
    for payload in payloads:
        if run and size + len(payload) > limit:
            yield run[0] if len(run) == 1 else batch(run)
            run, size = [], 0
        run.append(payload)
        size += len(payload)
    if run:
        yield run[0] if len(run) == 1 else batch(run)
