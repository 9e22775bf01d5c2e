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
``encode_record``/``decode_record`` are the wire form.  Nothing here does I/O.
"""

from __future__ import annotations

import struct

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


def is_operation(blob: bytes) -> bool:
    """Whether ``blob`` is an operation (``encode_operation``), not a record."""
    return blob[:2] == b"\x00\x00"


def decode_operation(blob: bytes) -> tuple[Version, list[bytes]]:
    """The version and command of an operation blob; ValueError if malformed."""
    try:
        count, clock_len, argc, stamp, expire_at, actor, flags = _ONE.unpack_from(blob, 0)
        if count != 0 or not argc:
            raise ValueError("not an operation")
        offset = _ONE.size
        clock = blob[offset : offset + clock_len]
        offset += clock_len
        lengths = struct.unpack_from(f"<{argc}I", blob, offset)
        offset += 4 * argc
    except struct.error as exc:
        raise ValueError(f"truncated operation: {exc}") from None
    if len(clock) != clock_len:
        raise ValueError("truncated operation")
    vclock.decode(clock)  # validates
    args = []
    for length in lengths:
        arg = blob[offset : offset + length]
        if len(arg) != length:
            raise ValueError("truncated operation")
        args.append(arg)
        offset += length
    if offset != len(blob):
        raise ValueError("trailing bytes after operation")
    return Version(clock, stamp, actor, bool(flags & TOMBSTONE_FLAG), expire_at, None), args


def decode_single(blob: bytes) -> Version | None:
    """The version of a well-formed one-version record, the common case, in one
    unpack and two slices; None for anything else (``decode_record`` decides)."""
    if blob[:2] != b"\x01\x00" or len(blob) < ONE_VERSION_START:
        return None
    clock_len, value_len, stamp, expire_at, actor, flags = VERSION_HEADER.unpack_from(blob, 2)
    end = ONE_VERSION_START + clock_len
    if end + value_len != len(blob) or clock_len % vclock.ENTRY_SIZE:
        return None
    clock = blob[ONE_VERSION_START:end]
    if clock_len > vclock.ENTRY_SIZE:
        vclock.decode(clock)  # validates the actor order
    return Version(clock, stamp, actor, bool(flags & TOMBSTONE_FLAG), expire_at, blob[end:])


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
