"""A replica's version records, kept beside its keyspace.

Theory of operation
-------------------
With replication on, every key this node holds has a record (see
:mod:`respkv.replication.versions`): its siblings, each with a vector clock.  The
keyspace keeps serving commands unchanged because it holds exactly one value per
key, the record's **winner**, "materialized": decoded into the keyspace's own
value classes, with its expiry.  The winner's version keeps ``value=None`` here
(its value is the keyspace's); the other siblings keep their encoded values.  A
tombstone or expired winner means the key is absent from the keyspace.

The store changes records in three ways:

* :meth:`VersionStore.written`: the coordinator ran a command that changed a key;
  the new version supersedes the versions of the given context (by default all the
  coordinator holds) and is what gets shipped to the replicas;
* :meth:`VersionStore.apply`: a record arrived from another node (replication,
  read repair, hand-off): it is reconciled with the local record and the winner is
  materialized again if it changed;
* :meth:`VersionStore.purge`: a tombstone every replica holds is dropped after
  its grace period.

Nothing here does I/O; the coordinator (:mod:`respkv.replication.coordinator`)
moves records between nodes.
"""

from __future__ import annotations

from ..keyspace.codec import decode_value, encode_value
from . import vclock
from .versions import (
    DEFAULT_MAX_SIBLINGS,
    Record,
    Version,
    context,
    decode_record,
    decode_single,
    digest,
    encode_operation,
    encode_record,
    encode_single,
    reconcile,
    supersede,
    winner,
)


#: The ``parent`` of a shipped record that must be reconciled, never replace blindly.
RECONCILE = b"*"


class VersionStore:
    """Per-key version records of this node, and the keyspace values they stand for."""

    def __init__(self, keyspace, actor: bytes, max_siblings: int = DEFAULT_MAX_SIBLINGS) -> None:
        self.keyspace = keyspace
        self.actor = actor
        self.max_siblings = max_siblings
        self.records: dict[bytes, Record] = {}
        #: Statistics for INFO replication.
        self.siblings_dropped = 0
        self.versions_applied = 0
        self.tombstones_purged = 0

    def clear(self) -> None:
        """Forget every record (FLUSHALL / FLUSHDB, which are node-local)."""
        self.records.clear()

    # -- reading -------------------------------------------------------------------------

    def record(self, key: bytes) -> Record | None:
        return self.records.get(key)

    def digest(self, key: bytes) -> bytes:
        """The digest of what this replica holds of ``key`` (compared with parents)."""
        return digest(self.records.get(key))

    def full_record(self, key: bytes) -> Record | None:
        """The record with every version's value filled in (for shipping or SIBLINGS)."""
        record = self.records.get(key)
        if record is None:
            return None
        return tuple(self._filled(key, v) for v in record)

    def _filled(self, key: bytes, version: Version) -> Version:
        if version.value is not None:
            return version
        value = self.keyspace.get(key)
        # A materialized winner gone from the keyspace has expired: no value to ship.
        return version.with_value(b"" if value is None else encode_value(value))

    def causal_context(self, key: bytes) -> vclock.VClock:
        record = self.records.get(key)
        return vclock.EMPTY if record is None else context(record)

    # -- writes by this node as coordinator ------------------------------------------------

    def written(
        self, key: bytes, now_ms: int, seen: vclock.VClock | None = None, operation: list[bytes] | None = None
    ) -> tuple[bytes, bytes] | None:
        """Version the keyspace's current state of ``key`` after a command changed it.

        ``seen`` is the write's causal context: None for a plain command (it
        supersedes every version held here), or the context a client passed to
        ``RESOLVE`` (concurrent versions it did not see stay as siblings).  Returns
        ``(parent, record)`` to ship: the digest of the versions the write replaced
        (:data:`RECONCILE` for RESOLVE, whose record must be merged) and the wire
        form of the new record; None when nothing changed that replicas need (the
        key only expired).

        ``operation`` is the command that made the change, if replicas may run it
        instead of receiving the value: it is shipped when the value is a
        collection (costly to send whole) and neither the old nor the new version
        expires (a replica's clock must not decide what the command finds).
        """
        ks = self.keyspace
        value = ks.get(key)
        records = self.records
        old = records.get(key)
        if value is None and (old is None or not winner(old).live(now_ms)):
            if seen is None or old is None:
                return None  # no value before, none now: only an expiry happened
        if seen is not None:
            return RECONCILE, self._written_in_context(key, value, old, seen, now_ms)
        # A plain write: the new version supersedes everything held here.
        actor = self.actor
        if old is None:
            parent = b""
            clock = vclock.encode(((actor, 1, now_ms),))
        elif len(old) == 1:
            parent = old[0].clock
            clock = vclock.increment_encoded(parent, actor, now_ms)
            if len(clock) > vclock.SMALL_CLOCK * vclock.ENTRY_SIZE:
                clock = vclock.encode(vclock.prune(vclock.decode(clock), now_ms))
        else:
            parent = digest(old)
            clock = vclock.encode(vclock.prune(vclock.increment(context(old), actor, now_ms), now_ms))
        if value is None:
            new = Version(clock, now_ms, actor, True, 0, b"")
            records[key] = (new,)
            return parent, encode_single(new, b"")
        new = Version(clock, now_ms, actor, False, ks.deadline(key) or 0, None)
        records[key] = (new,)
        if (
            operation is not None
            and value.__class__ is not bytes
            and not new.expire_at
            and (old is None or (len(old) == 1 and not old[0].expire_at))
        ):
            return parent, encode_operation(new, operation)
        return parent, encode_single(new, encode_value(value))

    def operation_applied(self, key: bytes, version: Version) -> None:
        """Record ``version`` as the result of a shipped command just run here."""
        ks = self.keyspace
        if version.expire_at:
            ks.set_deadline(key, version.expire_at)
        else:
            ks.persist(key)
        version.value = None
        self.records[key] = (version,)
        self.versions_applied += 1

    def _written_in_context(self, key: bytes, value, old: Record | None, seen: vclock.VClock, now_ms: int) -> bytes:
        clock = vclock.prune(vclock.increment(seen, self.actor, now_ms), now_ms)
        live = value is not None
        new = Version(
            vclock.encode(clock),
            now_ms,
            self.actor,
            tombstone=not live,
            expire_at=(self.keyspace.deadline(key) or 0) if live else 0,
            value=None if live else b"",
        )
        self._install(key, supersede(old, seen, new), materialized=new)
        return encode_record(self.full_record(key))

    def dematerialize(self, key: bytes) -> None:
        """Give the winner its encoded value back, before a command overwrites the
        keyspace value while that version may survive as a sibling (RESOLVE)."""
        record = self.records.get(key)
        if record is not None and any(v.value is None for v in record):
            self.records[key] = tuple(self._filled(key, v) for v in record)

    # -- records from other nodes ----------------------------------------------------------

    def apply_shipped(self, key: bytes, parent: bytes, blob: bytes) -> bool:
        """Apply a record a coordinator wrote over the versions named by ``parent``.

        ``parent`` is the digest of the record the coordinator superseded (or
        :data:`RECONCILE`).  When this replica holds exactly those versions the new
        record replaces them without comparing clocks: the common case, kept cheap.
        Otherwise the records are reconciled.  True if the local record changed.
        """
        if parent != RECONCILE:
            if self.digest(key) == parent:
                self.versions_applied += 1
                single = decode_single(blob)
                if single is None:
                    self._install(key, decode_record(blob), None)
                elif single.tombstone or single.expire_at or single.value[:1] != b"s":
                    self._install(key, (single,), None)
                else:  # a string without expiry, the bulk of replication traffic
                    self.keyspace.set(key, single.value[1:])
                    single.value = None
                    self.records[key] = (single,)
                return True
        return self.apply(key, decode_record(blob))

    def apply(self, key: bytes, incoming: Record) -> bool:
        """Reconcile ``incoming`` into the local record; True if the local one changed."""
        old = self.records.get(key)
        if old is None:
            merged, dropped = reconcile([incoming], self.max_siblings)
        else:
            held = digest(old)
            if held == digest(incoming):
                return False
            merged, dropped = reconcile([old, incoming], self.max_siblings)
            if digest(merged) == held:
                return False
        self.siblings_dropped += dropped
        self.versions_applied += 1
        current = None
        if old is not None:
            for v in old:
                if v.value is None:
                    current = v
        self._install(key, merged, materialized=current)
        return True

    def purge(self, key: bytes, clock: bytes) -> bool:
        """Drop ``key``'s record if it is still exactly the tombstone ``clock``."""
        record = self.records.get(key)
        if record is not None and len(record) == 1 and record[0].tombstone and record[0].clock == clock:
            del self.records[key]
            self.tombstones_purged += 1
            return True
        return False

    def expired_clock(self, key: bytes, now_ms: int) -> bytes | None:
        """The clock of ``key``'s record if it is one version that has expired."""
        record = self.records.get(key)
        if record is not None and len(record) == 1 and not record[0].tombstone and not record[0].live(now_ms):
            return record[0].clock
        return None

    def forget_expired(self, key: bytes, clock: bytes, now_ms: int) -> bool:
        """Drop the record of a key that expired (every replica expires it on its own)."""
        if self.expired_clock(key, now_ms) == clock:
            del self.records[key]
            return True
        return False

    # -- materializing ------------------------------------------------------------------------

    def _install(self, key: bytes, record: Record, materialized: Version | None) -> None:
        """Store ``record`` and make the keyspace hold its winner.

        ``materialized`` is the version whose value the keyspace holds right now
        (None if it holds no version of this record).  Versions handed in are owned
        by the store from now on (the winner's value is dropped in place).
        """
        ks = self.keyspace
        best = record[0] if len(record) == 1 else winner(record)
        if best is materialized:
            self.records[key] = record
            return
        if materialized is not None and len(record) > 1:
            # The version the keyspace holds may stay as a sibling: keep its value.
            record = tuple(self._filled(key, v) if v is materialized else v for v in record)
        # An empty value is a version that had expired where it was read (no value).
        if not best.tombstone and best.value and (not best.expire_at or best.expire_at > ks.clock_ms()):
            ks.set(key, decode_value(best.value))
            if best.expire_at:
                ks.set_deadline(key, best.expire_at)
            best.value = None
        else:
            ks.delete(key)
        self.records[key] = record

    def sibling_count(self) -> int:
        """Keys holding more than one version."""
        return sum(1 for record in self.records.values() if len(record) > 1)

