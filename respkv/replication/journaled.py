"""Journal entries of a replicated node: a key's whole version record, or its absence.

With replication on, what must survive a crash is the version store, not only the
keyspace: the siblings, their vector clocks, the tombstones that keep a deleted
value from coming back, the absolute expiries.  So a replicated node's commit log
and snapshots (:mod:`respkv.persistence.journal`) hold, per key, a ``RECORD``
entry whose body is the record's wire form (:func:`~.versions.encode_record`,
every version's value included) — the same bytes replicas exchange — or an
``ABSENT`` entry once the record is gone (a purged tombstone, a forgotten
expiry).  Replaying a record replaces what is held (:meth:`VersionStore.restore`),
so a replay ends in the state of the last entry of each key.

A collection changed by a shipped command (see :mod:`~.replica`) is logged as an
``OPERATION`` entry instead: the digest of the versions the command ran over and
the operation as replicas receive it (the command and the version it makes), so
that one ``SADD`` to a big set logs one member, not the set.  Replaying it runs
the command as a replica does, over the record the entries before it restored;
the digest must match (the journal logs operations only where the state before
them replays exactly), and a mismatch — a damaged directory — leaves the key's
record as it was, with a warning: anti-entropy brings the newer versions back
from the other replicas.

The log holds the node's hints as well (``HINT`` and ``DELIVERED`` entries, see
:mod:`~.handoff`); the replay hands them to the hand-off's own replay.

A directory written by the same node without replication (``VALUE`` and
``COMMAND`` entries of a plain keyspace) is adopted: once replayed, each value
becomes a version written by this node, which then reaches the other replicas
as any write does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from ..persistence.entries import (
    ABSENT,
    COMMAND,
    DELIVERED,
    FLUSHED,
    HINT,
    KEY_LENGTH,
    OPERATION,
    RECORD,
    VALUE,
    entry,
)
from ..persistence.journal import Journal
from ..persistence.keyspace_images import keyspace_replay
from .store import VersionStore
from .versions import decode_record

log = logging.getLogger(__name__)

#: The length of the parent digest that starts an ``OPERATION`` entry's body.
_PARENT_LENGTH = struct.Struct("<I")


def record_image(store: VersionStore) -> Callable[[bytes], bytes]:
    """``image(key)``: the entry that restores ``store``'s record of ``key`` as now."""
    wire_record = store.wire_record

    def image(key: bytes) -> bytes:
        record = wire_record(key)
        if record is None:
            return entry(ABSENT, key)
        return entry(RECORD, key, record)

    return image


def record_marker(journal: Journal) -> Callable[..., None]:
    """The store's ``on_change(key, record=None)`` for ``journal``: a change whose
    record's wire form is at hand is logged as is, others are imaged at commit."""
    mark = journal.mark
    mark_image = journal.mark_image
    key_length = KEY_LENGTH.pack

    def changed(key: bytes, record: bytes | None = None) -> None:
        if record is None:
            mark(key)
        else:
            mark_image(key, b"".join((RECORD, key_length(len(key)), key, record)))

    return changed


def operation_marker(journal: Journal) -> Callable[[bytes, bytes, bytes], None]:
    """The store's ``on_operation(key, parent, blob)`` for ``journal``: logs the
    operation, not the collection it changed."""
    mark_operation = journal.mark_operation
    parent_length = _PARENT_LENGTH.pack

    def operated(key: bytes, parent: bytes, blob: bytes) -> None:
        mark_operation(key, entry(OPERATION, key, b"".join((parent_length(len(parent)), parent, blob))))

    return operated


def split_operation(body: bytes) -> tuple[bytes, bytes]:
    """``(parent, blob)`` of an ``OPERATION`` entry's body; ValueError if malformed."""
    if len(body) < _PARENT_LENGTH.size:
        raise ValueError("operation entry shorter than its parent's length")
    (length,) = _PARENT_LENGTH.unpack_from(body)
    end = _PARENT_LENGTH.size + length
    if end > len(body):
        raise ValueError("operation entry's parent runs past its end")
    return body[_PARENT_LENGTH.size : end], body[end:]


class RecordReplay:
    """``replay(kind, key, body)``: replays journal entries into a store (and its
    keyspace).  ``expired(key)`` is told of each restored record whose value has
    expired, so that it is forgotten in time as if it had expired while running.

    ``operation(key, parent, blob)`` runs a logged operation as a replica runs a
    shipped one, False if the record is not the one it ran over (see the module
    doc): the replay skips it and returns False.

    Values of a journal written without replication (and the commands it logged
    over them, run by ``command(key, body)``) are adopted as versions of this
    node once the replay is done (:meth:`adopt`), to be written to the log as
    records once it is open."""

    def __init__(self, store: VersionStore, expired: Callable[[bytes], None],
                 hints: Callable[[bytes, bytes, bytes], None] | None = None,
                 operation: Callable[[bytes, bytes, bytes], bool] | None = None,
                 command: Callable[[bytes, bytes], object] | None = None) -> None:
        self.store = store
        self.expired = expired
        self.hints = hints
        self.operation = operation
        #: Keys whose value a plain keyspace's entry set, not versioned yet.
        self._unversioned: dict[bytes, None] = {}
        self._replay_value = keyspace_replay(store.keyspace, command)

    def adopt(self) -> list[bytes]:
        """Make each value replayed from entries of a plain keyspace (and not
        replaced by a record since) a version of this node; returns their keys."""
        store = self.store
        now = store.keyspace.clock_ms()
        adopted = [key for key in self._unversioned if store.written(key, now) is not None]
        self._unversioned.clear()
        return adopted

    def __call__(self, kind: bytes, key: bytes, body: bytes) -> bool | None:
        store = self.store
        keyspace = store.keyspace
        if self._unversioned and kind in (RECORD, ABSENT):
            self._unversioned.pop(key, None)  # replaced: it was adopted when that was logged
        if kind == RECORD:
            store.restore(key, decode_record(body))
            if keyspace.peek(key) is None and store.expired_clock(key, keyspace.clock_ms()) is not None:
                self.expired(key)
        elif kind == OPERATION:
            parent, blob = split_operation(body)
            if self.operation is None or not self.operation(key, parent, blob):
                log.warning("the commit log's operation on key %r does not follow the record before it; "
                            "the key stays as that record (anti-entropy brings newer versions from its replicas)",
                            key[:64])
                return False
        elif kind == ABSENT:
            store.drop(key)
        elif kind == FLUSHED:
            keyspace.flush()
            store.clear()
            self._unversioned.clear()
        elif kind == HINT or kind == DELIVERED:
            if self.hints is not None:
                self.hints(kind, key, body)
        elif kind == VALUE or kind == COMMAND:
            self._unversioned[key] = None  # versioned once, after the replay
            return self._replay_value(kind, key, body)
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")
