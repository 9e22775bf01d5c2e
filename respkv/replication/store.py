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

Records are kept in their compact form (``versions.compact``: nearly always the
first bytes of the one-version wire record, which the cyclic garbage collector
never tracks, so millions of records cost it nothing).  Callers see Records of
Version objects, made on each lookup (:meth:`VersionStore.record`,
:attr:`VersionStore.records`); the hot write paths below build and compare the
compact form directly.

The store changes records in three ways:

* :meth:`VersionStore.written`: the coordinator ran a command that changed a key;
  the new version supersedes the versions of the given context (by default all the
  coordinator holds) and is what gets shipped to the replicas;
* :meth:`VersionStore.apply`: a record arrived from another node (replication,
  read repair, hand-off): it is reconciled with the local record and the winner is
  materialized again if it changed;
* :meth:`VersionStore.purge`: a tombstone every replica holds is dropped after
  its grace period.

**Siblings of a convergent type show their merge.**  When the versions of a
record are collections of one type without expiry (tombstones beside them count
as what they saw) or counters of one origin, the keyspace holds their merge
(:mod:`respkv.replication.convergent`) and every version keeps its own value; a
write over the record runs on the merge and supersedes all of them.  The
metadata this needs (dots, tallies) travels in the version values; the store
keeps the materialized version's in :attr:`VersionStore.meta`.  With
``convergent-types no`` none is made and only sets merge, as their union.

Every change of a record is reported to :attr:`VersionStore.on_change`, with the
new record's wire form when the write made it anyway (the node's commit log marks
the key, and writes its record at the end of the round;
see :mod:`respkv.replication.journaled`); a change by a shipped command is
reported to :attr:`VersionStore.on_operation` with the operation (logged as
such).  Every change also goes to :attr:`VersionStore.on_moved` with the digests
before and after (anti-entropy's hash trees, :mod:`~.merkle`).
:meth:`VersionStore.restore` and :meth:`VersionStore.drop` replay such records at
start, without reporting them.

Nothing here does I/O; the coordinator (:mod:`respkv.replication.coordinator`)
moves records between nodes.
"""

from __future__ import annotations

from ..keyspace.codec import STRING_TAG, decode_value, encode_value
from ..keyspace.values import Hash, Set
from ..keyspace.zset import SortedSet
from . import convergent, counters, vclock
from .convergent import TALLY_TAG, Dots, Meta, decode_meta, join_value, split_value
from .counters import Tally
from .versions import (
    ACTOR_AT,
    CLOCK_AT,
    DEFAULT_MAX_SIBLINGS,
    Compact,
    Record,
    RecordsView,
    Version,
    compact,
    compact_digest,
    compact_holds,
    compact_single,
    compact_stamp,
    context,
    decode_record,
    digest,
    encode_operation_write,
    encode_record,
    encode_single,
    encode_string_write,
    expand,
    next_clock,
    next_string_write,
    plain_string_at,
    reconcile,
    string_wire_record,
    supersede,
    winner,
)

#: The ``parent`` of a shipped record that must be reconciled, never replace blindly.
RECONCILE = b"*"

#: Command names (lower case) whose effect convergent metadata follows.
_COUNTER_NAMES = frozenset(name.encode() for name in counters.COUNTERS)
_TRACKED_NAMES = frozenset(name.encode() for name in convergent.ADDS | convergent.REMOVES)
_COLLECTIONS = (Set, Hash, SortedSet)

#: The codec tag of each value class a merge may start from.
_TAGS = {bytes: STRING_TAG, Set: b"S", Hash: b"h", SortedSet: b"z"}


def _unobserved(key: bytes, record: bytes | None = None) -> None:
    """The default :attr:`VersionStore.on_change`: nobody keeps a log."""


class VersionStore:
    """Per-key version records of this node, and the keyspace values they stand for."""

    def __init__(self, keyspace, actor: bytes, max_siblings: int = DEFAULT_MAX_SIBLINGS) -> None:
        self.keyspace = keyspace
        self.actor = actor
        self.max_siblings = max_siblings
        #: key → compact record (``versions.compact``).
        self._kept: dict[bytes, Compact] = {}
        #: The same records as Records of Version objects, for callers.
        self.records = RecordsView(self._kept)
        #: Statistics for INFO replication.
        self.siblings_dropped = 0
        self.versions_applied = 0
        self.tombstones_purged = 0
        #: Called with a key after its record changed, and with the record's wire
        #: form when it is at hand (the commit log logs it).
        self.on_change = _unobserved
        #: ``on_operation(key, parent, blob)``, instead of ``on_change(key)`` when a
        #: shipped command changed a key here (as coordinator or replica): ``blob``
        #: run over the versions named ``parent`` makes the record now (what the
        #: commit log logs instead of the whole collection).
        self.on_operation = lambda key, parent, blob: self.on_change(key)
        #: ``on_moved(key, old, new)``: ``key``'s record went from the versions
        #: named ``old`` to those named ``new`` (digests, empty for no record),
        #: once for every change made while running (not for the replay at start).
        self.on_moved = lambda key, old, new: None
        #: key → metadata (dots, tally) of the version the keyspace holds, decoded
        #: or in the wire form it arrived in (decoded to write or merge the key).
        self.meta: dict[bytes, Meta | bytes] = {}
        #: Whether writes make convergent metadata and siblings merge by type.
        self.convergent = True

    def clear(self) -> None:
        """Forget every record (FLUSHALL / FLUSHDB, which are node-local)."""
        self._kept.clear()
        self.meta.clear()

    def keys(self) -> list[bytes]:
        """Every key holding a record, tombstones included (what a snapshot holds)."""
        return list(self._kept)

    # -- replaying the commit log ----------------------------------------------------------

    def restore(self, key: bytes, record: Record) -> None:
        """Hold ``record`` for ``key`` as the commit log says (replaying it at start):
        it replaces whatever is held, and its winner is materialized unless it is a
        tombstone or has expired (a key that expired while the node was down is
        never served)."""
        self._materialize(key, record, None)

    def drop(self, key: bytes) -> None:
        """Hold no record for ``key`` (replaying a purge or a forgotten expiry)."""
        self._kept.pop(key, None)
        self.meta.pop(key, None)
        self.keyspace.delete(key)

    def relinquish(self, key: bytes) -> None:
        """Hold no record for ``key`` any more, and log that: a fallback's copy,
        once the nodes it stood in for have it."""
        if key in self._kept:
            self.keyspace.delete(key)
            self._forget(key)

    # -- reading -------------------------------------------------------------------------

    def record(self, key: bytes) -> Record | None:
        """``key``'s record (new Version objects, the caller's), None if there is none."""
        kept = self._kept.get(key)
        return None if kept is None else expand(kept)

    def digest(self, key: bytes) -> bytes:
        """The digest of what this replica holds of ``key`` (compared with parents)."""
        kept = self._kept.get(key)
        if kept is None:
            return b""
        return kept[CLOCK_AT:] if kept.__class__ is bytes else compact_digest(kept)

    def holds(self, key: bytes, digest: bytes) -> bool:
        """Whether what this replica holds of ``key`` has ``digest`` (``self.digest(key)
        == digest``, without slicing the common case)."""
        kept = self._kept.get(key)
        if kept is None:
            return not digest
        if kept.__class__ is bytes:
            return len(kept) == CLOCK_AT + len(digest) and kept.endswith(digest)
        return compact_holds(kept, digest)

    def tombstone_clock(self, key: bytes) -> bytes | None:
        """The clock of ``key``'s record if it is one tombstone (to purge later)."""
        kept = self._kept.get(key)
        single = None if kept is None else compact_single(kept)
        return single[0] if single is not None and single[1] else None

    def full_record(self, key: bytes) -> Record | None:
        """The record with every version's value filled in (for shipping or SIBLINGS)."""
        record = self.record(key)
        if record is None:
            return None
        for version in record:
            if version.value is None:
                self._fill(key, version)
        return record

    def wire_record(self, key: bytes) -> bytes | None:
        """The wire form of :meth:`full_record` (what is shipped, answered and
        logged), None if there is no record; a plain string's in one join.  Not an
        access of the key (see :meth:`_fill`)."""
        kept = self._kept.get(key)
        if kept.__class__ is bytes and key not in self.meta and (
                plain := string_wire_record(kept, self.keyspace.peek(key))):
            return plain
        record = self.full_record(key)
        return None if record is None else encode_record(record)

    def _fill(self, key: bytes, version: Version) -> Version:
        """Give the materialized ``version`` (one of ours) the keyspace's value, encoded.
        Not an access of the key: shipping, answering or imaging a record leaves
        its LRU stamp and LFU counter alone (as Redis's rewrite and replication do)."""
        value = self.keyspace.peek(key)
        # A materialized winner gone from the keyspace has expired: no value to ship.
        version.value = b"" if value is None else join_value(encode_value(value), self.meta.get(key))
        return version

    def causal_context(self, key: bytes) -> vclock.VClock:
        kept = self._kept.get(key)
        if kept is None:
            return vclock.EMPTY
        if kept.__class__ is bytes:
            return vclock.decode(kept[CLOCK_AT:])
        return context(expand(kept))

    # -- writes by this node as coordinator ------------------------------------------------

    def written(
        self,
        key: bytes,
        now_ms: int,
        seen: vclock.VClock | None = None,
        operation: list[bytes] | None = None,
        commands: list[list[bytes]] | None = None,
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

        ``commands`` are the requests that made the change, when all of them
        are :data:`~.convergent.TRACKED` commands naming ``key`` first: they
        decide the new version's convergent metadata (without them a collection's
        dots are reset and a string is no counter).
        """
        ks = self.keyspace
        value = ks.get(key)
        kept = self._kept
        old = kept.get(key)
        if value is None or seen is not None:
            if value is None and (old is None or not winner(expand(old)).live(now_ms)):
                if seen is None or old is None:
                    return None  # no value before, none now: only an expiry happened
            if seen is not None:
                self.meta.pop(key, None)  # RESOLVE writes a plain value
                return RECONCILE, self._written_in_context(key, value, old, seen, now_ms)
        # A plain write: the new version supersedes everything held here.
        actor = self.actor
        if value.__class__ is bytes and old is not None and not (commands and self.convergent) and key not in self.meta:
            hot = next_string_write(old, actor, now_ms, ks.deadline(key) or 0, value)
            if hot is not None:  # a string over a version only this node wrote
                parent, kept[key], blob = hot
                self.on_change(key, blob)
                self._moved(key, parent)
                return parent, blob
        parent, clock = next_clock(old, actor, now_ms)
        meta = self._next_meta(key, value, old, actor, clock, now_ms, commands)
        if value is None:
            new = Version(clock, now_ms, actor, True, 0, b"")
            kept[key] = blob = compact((new,))
            self.on_change(key, blob)
            self._moved(key, parent)
            return parent, blob  # a tombstone's compact form is its whole record
        expire_at = ks.deadline(key) or 0
        if value.__class__ is bytes and meta is None:
            kept[key], blob = encode_string_write(clock, now_ms, actor, expire_at, value)
            self.on_change(key, blob)
            self._moved(key, parent)
            return parent, blob
        if operation is not None and not expire_at:
            single = None if old is None else compact_single(old)
            if old is None or (single is not None and not single[2]):  # the old version did not expire
                kept[key], blob = encode_operation_write(clock, now_ms, actor, operation)
                self.on_operation(key, parent, blob)
                self._moved(key, parent)
                return parent, blob
        new = Version(clock, now_ms, actor, False, expire_at, None)
        kept[key] = compact((new,))
        blob = encode_single(new, self._fill(key, new).value)
        self.on_change(key, blob)
        self._moved(key, parent)
        return parent, blob

    def _next_meta(
        self, key: bytes, value, old: Compact | None, actor: bytes, clock: bytes, now_ms: int,
        commands: list[list[bytes]] | None,
    ) -> Meta | None:
        """The convergent metadata of ``key``'s new version (written by ``actor``
        with clock ``clock`` at ``now_ms`` over ``old``, by ``commands``), kept in
        :attr:`meta`; the same on the coordinator and on a replica running the
        shipped command."""
        meta = None
        if self.convergent and value is not None and (commands or value.__class__ is not bytes):
            prior = self.metadata(key)
            if old is None:
                parent = b""
            else:
                parent = old[CLOCK_AT:] if old.__class__ is bytes else vclock.encode(context(expand(old)))
            if value.__class__ is bytes:
                if all(c[0].lower() in _COUNTER_NAMES for c in commands):
                    increments = [counters.increments_of(c) for c in commands]
                    meta = counters.counted(prior if prior.__class__ is Tally else None, parent, value,
                                              actor, increments)
            elif value.__class__ in _COLLECTIONS:
                if commands and all(c[0].lower() in _TRACKED_NAMES for c in commands):
                    dots = prior if prior.__class__ is Dots else Dots(parent)
                    dots = convergent.aged(dots, parent, now_ms if old is None else compact_stamp(old, now_ms), now_ms)
                    dot = convergent.dot_of(actor, vclock.counter(vclock.decode(clock), actor))
                    meta = convergent.applied(dots, value, commands, dot)
                else:
                    meta = Dots(clock)  # history unknown: every element as old as this version
        if meta is None:
            self.meta.pop(key, None)
        else:
            self.meta[key] = meta
        return meta

    def operation_applied(self, key: bytes, parent: bytes, blob: bytes, kept: bytes, command: list[bytes]) -> None:
        """Record the version of the shipped operation ``blob`` (over the versions
        named ``parent``) whose ``command`` was just run here: ``kept`` is the
        version's compact form (``versions.parse_operation``), whose value the
        keyspace holds, with the convergent metadata the coordinator gave it."""
        ks = self.keyspace
        expire_at = compact_single(kept)[2]  # coordinators ship commands only without one
        if expire_at:
            ks.set_deadline(key, expire_at)
        else:
            ks.persist(key)
        tracked = command if command[0].lower() in _TRACKED_NAMES else None
        self._next_meta(key, ks.get(key), self._kept.get(key), kept[ACTOR_AT : ACTOR_AT + vclock.ACTOR_SIZE],
                        kept[CLOCK_AT:], compact_stamp(kept, 0), None if tracked is None else [tracked])
        self._kept[key] = kept
        self.versions_applied += 1
        self.on_operation(key, parent, blob)
        self._moved(key, parent)

    def _written_in_context(
        self, key: bytes, value, old: Compact | None, seen: vclock.VClock, now_ms: int
    ) -> bytes:
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
        self._install(key, supersede(None if old is None else expand(old), seen, new), materialized=new)
        return self.wire_record(key)

    def dematerialize(self, key: bytes) -> None:
        """Give the winner its encoded value back, before a command overwrites the
        keyspace value while that version may survive as a sibling (RESOLVE)."""
        record = self.record(key)
        if record is not None and any(v.value is None for v in record):
            self._kept[key] = compact(self.full_record(key))

    # -- records from other nodes ----------------------------------------------------------

    def apply_shipped(self, key: bytes, parent: bytes, blob: bytes) -> bool:
        """Apply a record a coordinator wrote over the versions named by ``parent``.

        ``parent`` is the digest of the record the coordinator superseded (or
        :data:`RECONCILE`).  When this replica holds exactly those versions the new
        record replaces them without comparing clocks: the common case, kept cheap
        (a string without expiry goes from ``blob`` to the keyspace in one slice).
        Otherwise the records are reconciled.  True if the local record changed.
        """
        if parent != RECONCILE and self.holds(key, parent):
            self.versions_applied += 1
            at = plain_string_at(blob)
            if at:  # a string without expiry, the bulk of replication traffic
                self.keyspace.set(key, blob[at:])
                self._kept[key] = blob[: at - 1]
                self.on_change(key, blob)
                self._moved(key, parent)
            else:
                self._install(key, decode_record(blob), None)
            return True
        return self.apply(key, decode_record(blob))

    def apply(self, key: bytes, incoming: Record) -> bool:
        """Reconcile ``incoming`` into the local record; True if the local one changed."""
        held = self._kept.get(key)
        old = None
        if held is None:
            merged, dropped = reconcile([incoming], self.max_siblings)
        else:
            held_digest = compact_digest(held)
            if held_digest == digest(incoming):
                return False
            old = expand(held)
            merged, dropped = reconcile([old, incoming], self.max_siblings)
            if digest(merged) == held_digest:
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
        held = self.tombstone_clock(key)
        if held is not None and held == clock:
            self._forget(key)
            self.tombstones_purged += 1
            return True
        return False

    def expired_clock(self, key: bytes, now_ms: int) -> bytes | None:
        """The clock of ``key``'s record if it is one version that has expired."""
        kept = self._kept.get(key)
        single = None if kept is None else compact_single(kept)
        if single is not None:
            clock, tombstone, expire_at = single
            if not tombstone and expire_at and expire_at <= now_ms:
                return clock
        return None

    def forget_expired(self, key: bytes, clock: bytes, now_ms: int) -> bool:
        """Drop the record of a key that expired (every replica expires it on its own)."""
        if self.expired_clock(key, now_ms) == clock:
            self._forget(key)
            return True
        return False

    def _forget(self, key: bytes) -> None:
        """Drop ``key``'s record, and report it."""
        old = self.digest(key)
        del self._kept[key]
        self.meta.pop(key, None)
        self.on_change(key)
        self.on_moved(key, old, b"")

    # -- materializing ------------------------------------------------------------------------

    def _install(self, key: bytes, record: Record, materialized: Version | None) -> None:
        """Store ``record`` and make the keyspace hold its winner.

        ``materialized`` is the version whose value the keyspace holds right now
        (None if it holds no version of this record; when given, it is one of the
        store's own, made by ``expand``).  The Version objects handed in are not
        changed: what is kept is their compact form, the winner's without a value.
        """
        old = self.digest(key)
        self.on_change(key)
        self._materialize(key, record, materialized)
        self._moved(key, old)

    def _moved(self, key: bytes, old: bytes) -> None:
        """Report that ``key``'s record, named ``old`` before, changed (:attr:`on_moved`)."""
        self.on_moved(key, old, self.digest(key))

    def _materialize(self, key: bytes, record: Record, materialized: Version | None) -> None:
        """:meth:`_install` without reporting the change."""
        ks = self.keyspace
        if len(record) > 1 and self._materialize_merge(key, record, materialized):
            return
        best = record[0] if len(record) == 1 else winner(record)
        if best is materialized:
            self._kept[key] = compact(record)
            return
        if materialized is not None and len(record) > 1 and any(v is materialized for v in record):
            # The version the keyspace holds may stay as a sibling: keep its value.
            self._fill(key, materialized)
        # An empty value is a version that had expired where it was read (no value).
        if not best.tombstone and best.value and (not best.expire_at or best.expire_at > ks.clock_ms()):
            blob, meta = split_value(best.value, decode=False)
            ks.set(key, decode_value(blob))
            if best.expire_at:
                ks.set_deadline(key, best.expire_at)
            self._keep_meta(key, meta)
            self._kept[key] = compact(record, materialized=best)
        else:
            ks.delete(key)
            self.meta.pop(key, None)
            self._kept[key] = compact(record)

    def metadata(self, key: bytes) -> Meta | None:
        """The convergent metadata of ``key``'s materialized version, decoded now
        if kept as it arrived; None if none, or if that does not decode (the next
        write then starts afresh, as for a version of unknown history)."""
        meta = self.meta.get(key)
        if meta.__class__ is bytes:
            try:
                meta = self.meta[key] = decode_meta(meta)
            except ValueError:
                del self.meta[key]
                return None
        return meta

    def _keep_meta(self, key: bytes, meta: Meta | bytes | None) -> None:
        if meta is None or not self.convergent:
            self.meta.pop(key, None)
        else:
            self.meta[key] = meta

    def _materialize_merge(self, key: bytes, record: Record, materialized: Version | None) -> bool:
        """Make the keyspace hold the merge of ``record``'s versions if they are all
        without expiry and of one convergent type, or tombstones beside
        collections (see the module doc); False if they are not."""
        kinds = set()
        deleted = False
        for v in record:
            if v.expire_at:
                return False
            if v.tombstone:
                deleted = True
            elif v.value == b"":
                return False
            else:
                kinds.add(self._kind(key, v.value))
        if len(kinds) != 1:
            return False
        (kind,) = kinds
        if kind not in (convergent.MERGED if self.convergent else convergent.UNITED):
            return False
        if deleted and (not self.convergent or kind[0] == STRING_TAG):
            return False
        if materialized is not None and any(v is materialized for v in record):
            self._fill(key, materialized)
        parts = {id(v): split_value(v.value) for v in record if not v.tombstone}
        if kind[0] == STRING_TAG:
            tally = counters.merge_tallies([meta for _, meta in parts.values()])
            if tally is None:
                return False
            self.keyspace.set(key, counters.tally_value(tally))
            self.meta[key] = tally
        else:
            values = {key_: decode_value(blob) for key_, (blob, _) in parts.items()}
            if not convergent.mergeable_collection(list(values.values())):
                return False
            kind_of = next(iter(values.values())).__class__
            # A deletion is the empty collection its clock saw: it removes the
            # elements whose adds it had seen, and no add made concurrently with it.
            siblings = [(v.clock, kind_of(), None) if v.tombstone else
                        (v.clock, values[id(v)], parts[id(v)][1] if self.convergent else None) for v in record]
            merged, dots = convergent.merge_collections(siblings)
            if len(merged):
                self.keyspace.set(key, merged)
            else:
                self.keyspace.delete(key)  # every element was removed
            self._keep_meta(key, dots)
        self._kept[key] = compact(record)  # every version keeps its value
        return True

    def _kind(self, key: bytes, value: bytes | None) -> tuple[bytes, bool]:
        """:func:`~.convergent.kind_of` a version's value (None: the keyspace's)."""
        if value is None:
            tag = _TAGS.get(self.keyspace.peek(key).__class__, b"?")
            meta = self.meta.get(key)
            return tag, tag == STRING_TAG and (meta.__class__ is Tally or (meta.__class__ is bytes and
                                                                            meta[:1] == TALLY_TAG))
        return convergent.kind_of(value)

    def sibling_count(self) -> int:
        """Keys holding more than one version."""
        return sum(1 for kept in self._kept.values() if kept.__class__ is not bytes and len(kept) > 1)
