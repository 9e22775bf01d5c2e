"""Versioned values and siblings: what a replica keeps of a key, and how records merge.

Theory of operation
-------------------
Each replica keeps, per key, a **record**: the tuple of versions of the key that no
other version it knows supersedes.  Usually that is one version; after writes that
did not see each other (a partition, two coordinators) it is several **siblings**.
A :class:`Version` is one write's result: its vector clock, when and by whom it was
written (``stamp``, ``actor``), its absolute expiry, whether it is a **tombstone**
(the key was deleted; the tombstone carries the deletion's clock so an older value
cannot come back), and the encoded value.

``reconcile`` merges records from several replicas: the union of their versions,
minus every version whose clock another one dominates, so a stale copy is replaced
and concurrent ones are all kept.  Siblings are bounded (``max_siblings``): beyond
it the oldest are dropped and counted, a policy chosen over refusing writes so a
key always stays writable.

Stock clients see one value: ``winner`` picks the sibling with the newest stamp,
ties broken by the writer's node id, the same choice on every node.  A write
supersedes exactly the versions its causal context (a merged clock) has seen
(``supersede``): a plain command uses the context of every version its coordinator
holds; ``RESOLVE`` passes the context a client read with ``SIBLINGS``, so a sibling
written since stays.

``digest`` names a record's set of versions in a few bytes per sibling, so a
coordinator can ask a replica "do you hold the same?" without shipping values.
``encode_record``/``decode_record`` are the wire form.  A store keeps records
in a compact form the garbage collector never walks (``compact``/``expand``, at
the end): nearly always the first bytes of the one-version wire record, which a
coordinator builds with the record it ships and a replica slices off the record
it receives.  Nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

from . import vclock

#: Siblings kept per key unless configured (``max-siblings``).
DEFAULT_MAX_SIBLINGS = 16


class Version:
    """One version of a key (see the module doc).

    ``value`` is the encoded value (:mod:`respkv.keyspace.codec`), ``b""`` for a
    tombstone; a replica's store sets it to None for the version it keeps live in
    its keyspace, so the value is not held twice.
    """

    __slots__ = ("clock", "stamp", "actor", "tombstone", "expire_at", "value")

    def __init__(
        self,
        clock: bytes,
        stamp: int,
        actor: bytes,
        tombstone: bool = False,
        expire_at: int = 0,
        value: bytes | None = b"",
    ) -> None:
        self.clock = clock  # vclock.encode() of the version's clock
        self.stamp = stamp  # Unix ms of the write
        self.actor = actor  # the coordinating node's actor id
        self.tombstone = tombstone
        self.expire_at = expire_at  # absolute Unix ms, 0 for none
        self.value = value

    def __repr__(self) -> str:
        kind = "tombstone" if self.tombstone else f"value={self.value!r}"
        return f"Version({vclock.decode(self.clock)}, stamp={self.stamp}, {kind}, expire_at={self.expire_at})"

    def live(self, now_ms: int) -> bool:
        """Whether this version holds a value at ``now_ms`` (not deleted, not expired)."""
        return not self.tombstone and (not self.expire_at or self.expire_at > now_ms)

    def with_value(self, value: bytes | None) -> "Version":
        """The same version holding ``value``."""
        return Version(self.clock, self.stamp, self.actor, self.tombstone, self.expire_at, value)


Record = tuple[Version, ...]


def _order(version: Version) -> tuple[int, bytes, bytes]:
    return version.stamp, version.actor, version.clock


def winner(record: Record) -> Version:
    """The sibling plain clients see: newest stamp, ties by writer id (then clock)."""
    return max(record, key=_order)


def context(record: Record) -> vclock.VClock:
    """The causal context of a record: the merge of its siblings' clocks."""
    if len(record) == 1:
        return vclock.decode(record[0].clock)
    return vclock.merge(*[vclock.decode(v.clock) for v in record])


def digest(record: Record | None) -> bytes:
    """A short name of the record's set of versions (empty for no record)."""
    if not record:
        return b""
    if len(record) == 1:
        return record[0].clock
    return b"|".join(sorted(v.clock for v in record))


def reconcile(records: list[Record], max_siblings: int = DEFAULT_MAX_SIBLINGS) -> tuple[Record, int]:
    """Merge replicas' records: every version no other version dominates.

    Returns the merged record (siblings in ``winner`` order, oldest first) and how
    many concurrent siblings were dropped to respect ``max_siblings``.  Equal versions
    count once; the first record's copy is kept (a replica passes its own first, so
    its locally materialized version keeps ``value=None``).
    """
    by_clock: dict[bytes, Version] = {}
    for record in records:
        for version in record:
            by_clock.setdefault(version.clock, version)
    if len(by_clock) == 1:
        return tuple(by_clock.values()), 0
    decoded = [(v, vclock.decode(v.clock)) for v in by_clock.values()]
    kept = [
        v
        for v, clock in decoded
        if not any(other is not v and vclock.dominates(c, clock) for other, c in decoded)
    ]
    kept.sort(key=_order)
    dropped = max(0, len(kept) - max_siblings)
    return tuple(kept[dropped:]), dropped


def supersede(record: Record | None, seen: vclock.VClock, new: Version) -> Record:
    """``record`` after a write ``new`` whose causal context is ``seen``.

    Versions ``seen`` descends are replaced; concurrent ones stay as siblings.
    """
    if not record:
        return (new,)
    kept = [v for v in record if not vclock.descends(seen, vclock.decode(v.clock))]
    if not kept:
        return (new,)
    kept.append(new)
    kept.sort(key=_order)
    return tuple(kept)


def same_versions(a: Record | None, b: Record | None) -> bool:
    """Whether two records hold exactly the same versions."""
    return digest(a) == digest(b)


# -- wire form ---------------------------------------------------------------------------

#: One version's header: clock length, value length, stamp, expiry, actor, flags.
VERSION_HEADER = struct.Struct("<HIQQ20sB")
_COUNT = struct.Struct("<H")
TOMBSTONE_FLAG = 1
#: Where a one-version record's clock starts (after the count and the header).
ONE_VERSION_START = _COUNT.size + VERSION_HEADER.size


def encode_record(record: Record) -> bytes:
    """The wire form of ``record``; every version's ``value`` must be bytes."""
    parts = [_COUNT.pack(len(record))]
    pack = VERSION_HEADER.pack
    for v in record:
        value = v.value
        parts.append(pack(len(v.clock), len(value), v.stamp, v.expire_at, v.actor, TOMBSTONE_FLAG if v.tombstone else 0))
        parts.append(v.clock)
        parts.append(value)
    return b"".join(parts)


_ONE = struct.Struct("<HHIQQ20sB")


def encode_single(version: Version, value: bytes) -> bytes:
    """The wire form of a one-version record holding ``value`` (the hot case)."""
    clock = version.clock
    return b"".join(
        (
            _ONE.pack(1, len(clock), len(value), version.stamp, version.expire_at, version.actor,
                      TOMBSTONE_FLAG if version.tombstone else 0),
            clock,
            value,
        )
    )


def encode_operation(version: Version, args: list[bytes]) -> bytes:
    """The wire form of a new version made by running command ``args``.

    Shipped instead of the value when the command is cheaper to send than its
    result (a push onto a long list): a replica holding the same prior version runs
    the same command.  It starts with a record count of 0, which no record has.
    """
    clock = version.clock
    return b"".join(
        (
            _ONE.pack(0, len(clock), len(args), version.stamp, version.expire_at, version.actor,
                      TOMBSTONE_FLAG if version.tombstone else 0),
            clock,
            struct.pack(f"<{len(args)}I", *map(len, args)),
            *args,
        )
    )


#: How an operation blob starts: a record count of 0.
OPERATION_PREFIX = b"\x00\x00"


def is_operation(blob: bytes) -> bool:
    """Whether ``blob`` is an operation (``encode_operation``), not a record."""
    return blob.startswith(OPERATION_PREFIX)


def decode_operation(blob: bytes) -> tuple[Version, list[bytes]]:
    """The version and command of an operation blob; ValueError if malformed."""
    kept, args = parse_operation(blob)
    (version,) = expand(kept)
    version.value = None
    return version, args


def parse_operation(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The compact form (see below) of the version an operation blob makes,
    materialized, and its command; ValueError if the blob is malformed."""
    try:
        count, clock_len, argc, _, _, _, _ = _ONE.unpack_from(blob)
        if count != 0 or not argc:
            raise ValueError("not an operation")
        end = ONE_VERSION_START + clock_len
        lengths = struct.unpack_from(f"<{argc}I", blob, end)
    except struct.error as exc:
        raise ValueError(f"truncated operation: {exc}") from None
    if clock_len % vclock.ENTRY_SIZE:
        raise ValueError("vector clock length is not a multiple of its entry size")
    if clock_len > vclock.ENTRY_SIZE:
        vclock.decode(blob[ONE_VERSION_START:end])  # validates the actor order
    offset = end + 4 * argc
    args = []
    for length in lengths:
        args.append(blob[offset : offset + length])
        offset += length
    if offset != len(blob):
        raise ValueError("truncated operation" if offset > len(blob) else "trailing bytes after operation")
    # The header of a record of one version: a count of 1 (the value length left is
    # the argument count, which means nothing in a compact form).
    return _ONE_RECORD + blob[_COUNT.size : end], args


def parse_single(blob: bytes) -> tuple | None:
    """``(clock, stamp, actor, tombstone, expire_at, value_at)`` of a well-formed
    one-version record, the common case, in one unpack and one slice: the value is
    ``blob[value_at:]``, left to the caller to slice (or not) as it needs.  None for
    anything else (``decode_record`` decides)."""
    if len(blob) < ONE_VERSION_START:
        return None
    count, clock_len, value_len, stamp, expire_at, actor, flags = _ONE.unpack_from(blob)
    end = ONE_VERSION_START + clock_len
    if count != 1 or end + value_len != len(blob) or clock_len % vclock.ENTRY_SIZE:
        return None
    clock = blob[ONE_VERSION_START:end]
    if clock_len > vclock.ENTRY_SIZE:
        vclock.decode(clock)  # validates the actor order
    return clock, stamp, actor, flags & TOMBSTONE_FLAG == TOMBSTONE_FLAG, expire_at, end


def decode_single(blob: bytes) -> Version | None:
    """The version of a well-formed one-version record (see ``parse_single``), or None."""
    fields = parse_single(blob)
    if fields is None:
        return None
    clock, stamp, actor, tombstone, expire_at, value_at = fields
    return Version(clock, stamp, actor, tombstone, expire_at, blob[value_at:])


def decode_record(blob: bytes) -> Record:
    """The record encoded in ``blob``; ValueError if it is malformed."""
    single = decode_single(blob)
    if single is not None:
        return (single,)
    try:
        (count,) = _COUNT.unpack_from(blob, 0)
        offset = _COUNT.size
        versions = []
        for _ in range(count):
            clock_len, value_len, stamp, expire_at, actor, flags = VERSION_HEADER.unpack_from(blob, offset)
            offset += VERSION_HEADER.size
            clock = blob[offset : offset + clock_len]
            offset += clock_len
            value = blob[offset : offset + value_len]
            offset += value_len
            if len(clock) != clock_len or len(value) != value_len:
                raise ValueError("truncated version record")
            vclock.decode(clock)  # validates
            versions.append(Version(clock, stamp, actor, bool(flags & TOMBSTONE_FLAG), expire_at, value))
    except struct.error as exc:
        raise ValueError(f"truncated version record: {exc}") from None
    if offset != len(blob):
        raise ValueError("trailing bytes after version record")
    if not versions:
        raise ValueError("empty version record")
    return tuple(versions)


# -- the compact form a store keeps ------------------------------------------------------
#
# A replica holds a record for every key, millions of them.  Kept as Version objects
# (always tracked by the cyclic garbage collector) they made every collection of
# the oldest generation walk millions of objects: a third of a replicating node's
# CPU.  So a store keeps records in a form the collector never tracks:
#
# * one version whose value the keyspace holds (materialized), or a tombstone: the
#   bytes of its one-version wire record up to the value (count, header, clock;
#   the header's value length is that of the record it was cut from, and means
#   nothing here).  Nearly every record is this: a coordinator builds it as the
#   prefix of the record it ships, a replica slices it off the record it receives.
# * anything else (siblings, a version whose value is kept here): a tuple of
#   ``(clock, stamp, actor, tombstone, expire_at, value)`` tuples, all bytes, ints,
#   bools and None, which CPython stops tracking when the collector first sees them.
#
# Callers never see this form: ``expand`` turns it back into a Record.

Compact = bytes | tuple

#: Offsets in a one-version record (and in its compact form): the expiry, the
#: stamp, the actor, the flags byte, the clock.
EXPIRE_AT_AT = struct.calcsize("<HHIQ")
STAMP_AT = struct.calcsize("<HHI")
ACTOR_AT = struct.calcsize("<HHIQQ")
FLAGS_AT = struct.calcsize("<HHIQQ20s")
CLOCK_AT = ONE_VERSION_START
_ONE_RECORD = _COUNT.pack(1)  # how a one-version record starts
_NO_EXPIRY = bytes(8)  # an expiry of 0: none
_EXPIRE_AT = struct.Struct("<Q")

#: The value codec's tag of a string (:mod:`respkv.keyspace.codec`): a string's
#: encoded value is this byte and the string's bytes.
STRING_TAG = b"s"
_STRING_TAG_BYTE = STRING_TAG[0]


def compact(record: Record, materialized: Version | None = None) -> Compact:
    """The compact form of ``record``, whose version ``materialized`` (or whose
    versions with ``value=None``) the keyspace holds."""
    if len(record) == 1:
        v = record[0]
        if v.tombstone:
            if v.value == b"":
                return _ONE.pack(1, len(v.clock), 0, v.stamp, v.expire_at, v.actor, TOMBSTONE_FLAG) + v.clock
        elif v is materialized or v.value is None:
            return _ONE.pack(1, len(v.clock), 0, v.stamp, v.expire_at, v.actor, 0) + v.clock
    return tuple(
        [
            (v.clock, v.stamp, v.actor, v.tombstone, v.expire_at, None if v is materialized else v.value)
            for v in record
        ]
    )


def expand(kept: Compact) -> Record:
    """The Record a compact form stands for (new Version objects, the caller's to keep)."""
    if kept.__class__ is bytes:
        _, _, _, stamp, expire_at, actor, flags = _ONE.unpack_from(kept)
        tombstone = flags & TOMBSTONE_FLAG == TOMBSTONE_FLAG
        return (Version(kept[CLOCK_AT:], stamp, actor, tombstone, expire_at, b"" if tombstone else None),)
    return tuple([Version(*v) for v in kept])


def compact_digest(kept: Compact | None) -> bytes:
    """``digest(expand(kept))``, without expanding."""
    if kept is None:
        return b""
    if kept.__class__ is bytes:
        return kept[CLOCK_AT:]
    if len(kept) == 1:
        return kept[0][0]
    return b"|".join(sorted([v[0] for v in kept]))


def compact_holds(kept: Compact | None, digest: bytes) -> bool:
    """``compact_digest(kept) == digest``, without slicing the common case."""
    if kept.__class__ is bytes:
        return len(kept) == CLOCK_AT + len(digest) and kept.endswith(digest)
    return compact_digest(kept) == digest


def compact_single(kept: Compact) -> tuple[bytes, bool, int] | None:
    """``(clock, tombstone, expire_at)`` if ``kept`` is one version, else None."""
    if kept.__class__ is bytes:
        return (
            kept[CLOCK_AT:],
            kept[FLAGS_AT] & TOMBSTONE_FLAG == TOMBSTONE_FLAG,
            _EXPIRE_AT.unpack_from(kept, EXPIRE_AT_AT)[0],
        )
    if len(kept) == 1:
        clock, _, _, tombstone, expire_at, _ = kept[0]
        return clock, tombstone, expire_at
    return None


def compact_stamp(kept: Compact, otherwise: int) -> int:
    """When the version of a one-version compact form was written (``otherwise``
    for a record of siblings)."""
    if kept.__class__ is bytes:
        return _STAMP.unpack_from(kept, STAMP_AT)[0]
    return kept[0][1] if len(kept) == 1 else otherwise


_STAMP = struct.Struct("<Q")


#: The fields of a one-version record's header that tell a plain string record:
#: count, clock length, value length, expiry, flags.
_PLAIN = struct.Struct("<HHI8xQ20xB")


def plain_string_at(blob: bytes) -> int:
    """Where the string starts in ``blob`` if it is a well-formed one-version
    record of a live string without expiry (most of what replicas receive), else
    0.  Then ``blob[:at - 1]`` is the record's compact form, materialized."""
    if len(blob) <= ONE_VERSION_START:
        return 0
    count, clock_len, value_len, expire_at, flags = _PLAIN.unpack_from(blob)
    end = ONE_VERSION_START + clock_len
    if (
        count != 1
        or expire_at
        or flags & TOMBSTONE_FLAG
        or end + value_len != len(blob)
        or not value_len
        or blob[end] != _STRING_TAG_BYTE
        or clock_len % vclock.ENTRY_SIZE
    ):
        return 0
    if clock_len > vclock.ENTRY_SIZE:
        vclock.decode(blob[ONE_VERSION_START:end])  # validates the actor order
    return end + 1


#: A compact form whose clock has one entry: header and that entry, packed at once.
_ONE_ENTRY = struct.Struct(_ONE.format + vclock.ENTRY_FORMAT.lstrip("<"))
_ONE_ENTRY_SIZE = _ONE_ENTRY.size
_COUNTER_AT = ONE_VERSION_START + vclock.ACTOR_SIZE
_COUNTER = struct.Struct("<Q")


def encode_operation_write(clock: bytes, stamp: int, actor: bytes, args: list[bytes]) -> tuple[bytes, bytes]:
    """``(compact form, operation blob)`` of ``actor``'s new live version without
    expiry made by running command ``args`` (``encode_operation``)."""
    head = _ONE.pack(0, len(clock), len(args), stamp, 0, actor, 0)
    blob = b"".join((head, clock, struct.pack(f"<{len(args)}I", *map(len, args)), *args))
    return _ONE_RECORD + head[_COUNT.size :] + clock, blob


def encode_string_write(clock: bytes, stamp: int, actor: bytes, expire_at: int, data: bytes) -> tuple[bytes, bytes]:
    """``(compact form, wire record)`` of a new live string version holding
    ``data``, materialized: the compact form is the record's first bytes."""
    kept = _ONE.pack(1, len(clock), len(data) + 1, stamp, expire_at, actor, 0) + clock
    return kept, b"".join((kept, STRING_TAG, data))


_VALUE_LENGTH = struct.Struct("<I")
_VALUE_LENGTH_AT = struct.calcsize("<HH")


def string_wire_record(kept: bytes, data) -> bytes | None:
    """The wire record of the one-version compact form ``kept`` of a live
    version, materialized, whose value in the keyspace is ``data``, if that is a
    string without convergent metadata (the caller knows); else None (not a
    string, or a tombstone).  ``encode_record`` of the expanded, filled record
    without building one: the header's value length is rewritten unless it
    already is ``data``'s (as after ``encode_string_write`` or a replica's slice)."""
    if data.__class__ is not bytes or kept[FLAGS_AT] & TOMBSTONE_FLAG:
        return None
    length = len(data) + 1
    if _VALUE_LENGTH.unpack_from(kept, _VALUE_LENGTH_AT)[0] == length:
        return b"".join((kept, STRING_TAG, data))
    at = _VALUE_LENGTH_AT + _VALUE_LENGTH.size
    return b"".join((kept[:_VALUE_LENGTH_AT], _VALUE_LENGTH.pack(length), kept[at:], STRING_TAG, data))


_MAX_UNPRUNED_CLOCK = vclock.SMALL_CLOCK * vclock.ENTRY_SIZE


def next_clock(old: Compact | None, actor: bytes, stamp: int) -> tuple[bytes, bytes]:
    """``(parent, clock)`` of ``actor``'s write at ``stamp`` over the compact
    record ``old`` (None: no record): the digest of the versions it supersedes,
    and its clock, which has seen all of them (pruned once it grows past
    ``vclock.SMALL_CLOCK`` entries)."""
    if old is None:
        return b"", vclock.first(actor, stamp)
    if old.__class__ is bytes:
        parent = old[CLOCK_AT:]
        clock = vclock.increment_encoded(parent, actor, stamp)
        if len(clock) > _MAX_UNPRUNED_CLOCK:
            clock = vclock.encode(vclock.prune(vclock.decode(clock), stamp))
        return parent, clock
    return compact_digest(old), vclock.encode(vclock.prune(vclock.increment(context(expand(old)), actor, stamp), stamp))


def next_string_write(
    old: Compact, actor: bytes, stamp: int, expire_at: int, data: bytes
) -> tuple[bytes, bytes, bytes] | None:
    """``(parent, compact form, wire record)`` of ``actor``'s write of the string
    ``data`` over ``old`` when ``old`` is one version whose clock has only
    ``actor``'s entry (a key only this node has written: the common case), in one
    pack; None otherwise.  Same result as ``vclock.increment_encoded`` and
    ``encode_string_write``."""
    if old.__class__ is not bytes or len(old) != _ONE_ENTRY_SIZE or not old.startswith(actor, ONE_VERSION_START):
        return None
    counter = _COUNTER.unpack_from(old, _COUNTER_AT)[0] + 1
    kept = _ONE_ENTRY.pack(1, vclock.ENTRY_SIZE, len(data) + 1, stamp, expire_at, actor, 0, actor, counter, stamp)
    return old[ONE_VERSION_START:], kept, b"".join((kept, STRING_TAG, data))


class RecordsView(Mapping):
    """The store's records as callers know them: key → Record of Version objects,
    made from the compact form on each lookup (read-only)."""

    __slots__ = ("_kept",)

    def __init__(self, kept: dict[bytes, Compact]) -> None:
        self._kept = kept

    def __getitem__(self, key: bytes) -> Record:
        return expand(self._kept[key])

    def __contains__(self, key) -> bool:
        return key in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._kept)
