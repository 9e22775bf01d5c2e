"""The journal: what a node's data directory holds of its keys, and how it gets there.

Theory of operation
-------------------
A node's durable state is a **snapshot** plus the **commit logs** written since it
(listed, in order, by the directory's manifest, :mod:`.manifest`).  Both hold the
same entries: the whole current image of one key — its value and absolute expiry
(standalone), or its version record (replication) — or the key's absence, or
"everything was flushed".  An image, not the command that made it: replaying an
entry twice, or replaying entries older than the snapshot's own copy of a key,
ends in the same state, which is what lets snapshots be taken while the node keeps
serving (below) and makes recovery a plain replay.

*Writing.*  Whoever changes a key marks it dirty (:meth:`Journal.mark`, or
:meth:`Journal.mark_image` with the image when it has the bytes at hand, as
replication has the record it ships); at the end
of the event-loop round :meth:`Journal.commit` encodes each dirty key's image once
(a key written sixteen times in a pipeline costs one entry; ``images`` encodes a
whole round in one call), packs the round's entries into one ``BATCH`` entry
(:func:`~.entries.batch`: one frame and one checksum for the round instead of one per key,
which is most of what framing costs), appends it to the log and writes it with
one system call — fsynced first under ``appendfsync always`` (group commit).  A
round of one entry is logged as that entry; a round of more than
:data:`BATCH_MAX_BYTES` is split into several batches.  A batch is all or nothing
when loaded: a torn one drops the whole round, which was not fsynced either (under
``always`` the fsync precedes the replies, so a torn tail was never acknowledged).  Replies, and a replica's acknowledgements,
leave only after that (see :mod:`respkv.net.poller` and the replication
coordinator): no write is acknowledged before it is in the log.  When the write or
fsync fails, :meth:`commit` raises :class:`LogWriteError` and :attr:`failed` stays
set until a retry succeeds; the node refuses writes meanwhile (``-MISCONF``).

*Snapshots and rewrites.*  :meth:`Journal.rewrite` (``BGSAVE``, ``BGREWRITEAOF``,
the ``save`` schedule, growth of the log) first switches appends to a new log and
records that in the manifest, then writes every key's image into a new snapshot,
a chunk at a time between turns of the event loop (one batch entry per chunk; file
I/O in a worker thread),
then makes the manifest name the new snapshot and the new log alone and deletes
the old files.  A key changed while the snapshot is written is in the new log
too, so replaying the new log over the snapshot gives the exact current state;
a crash at any step leaves a manifest whose parts load.

*Operations.*  Imaging a collection whenever a round changed it costs what the
collection holds: one ``SADD`` to a set of 100,000 members would log 100,000
members.  A changer that can say how a key changed, in a form that replays to
the same state over the state before it, marks the key with
:meth:`Journal.mark_operation` instead: replication's shipped command (the
command, the version it makes and the digest of the versions it ran over), or a
plain keyspace's replayable command (:mod:`.command_entries`, which brackets the
command with :meth:`Journal.begin_operation` and :meth:`Journal.end_operation`
so that its change of the key is not marked for an image).  The round logs that
entry after the key's image if the round has one in hand, and an image marked
later in the round supersedes it.  An operation is only right over the exact
state the entries before it leave, and a snapshot written while the node serves
may hold a key as it was before or after an operation logged meanwhile.  So
from the switch to a new log until the first commit after the snapshot's last
key, a key's first change is logged as its image (and the ones after it as
operations): replaying the new log then sets each key changed meanwhile to an
exact state before its operations, whatever state the snapshot holds.

*Entries that are no key's image.*  A replicated node also keeps its **hints**
(a key some other node may lack, see :mod:`respkv.replication.handoff`) in the
log: ``HINT`` when one is stored, ``DELIVERED`` when the node it names has the
key's record (or it is given up).  :meth:`Journal.append_entry` queues such an
entry for the next commit, in order, beside the round's images.  They are not
images, so a rewrite cannot re-create them from the keys: whoever sets
:attr:`Journal.snapshot_extras` is asked for the entries that restore them as they
are at the moment appends switch to the new log (right after a commit, so what
memory holds is exactly what the old logs say), and the snapshot holds those too;
later changes are in the new log.

Without a log (``appendonly no``) the snapshot alone is the durable state, so it
must be consistent by itself: the keys changed while it is written are imaged once
more at its end (and, after a FLUSHALL meanwhile, every key), in one step of the
event loop, which makes the snapshot the exact state of that moment.

*Recovery.*  :meth:`Journal.load` replays the snapshot and the logs into an
``apply(kind, key, body)`` callback; a torn tail of the last log is cut
(``aof-load-truncated``), a corrupt entry stops the start (see :mod:`.log`).
Files no manifest lists (leftovers of an interrupted rewrite) are deleted then.

*Statistics.*  ``changes`` counts the keys changed since the last snapshot, once
per event-loop round in which a key changed (plus one per FLUSHALL): the ``save``
schedule's "changes" and ``rdb_changes_since_last_save``.  :attr:`current_size`
and :attr:`base_size` are the bytes of the snapshot and logs now and after the
last rewrite (or the start), for ``auto-aof-rewrite-percentage``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

import trio

from .exceptions import LogWriteError, UnreplayableEntry
from .entries import ABSENT, BATCH, FLUSHED, batches, entry, split_batch, split_entry
from .log import CommitLog, read_log
from .manifest import Layout, Manifest, plan_first_log, plan_rewrite
from .snapshot import SnapshotWriter, read_snapshot

log = logging.getLogger(__name__)

#: Keys encoded per turn of the event loop while a snapshot is written: about
#: 2 ms of encoding, which bounds what a background snapshot adds to a client's wait.
SNAPSHOT_CHUNK = 500
#: Bytes buffered by the snapshot writer before they are written out.
SNAPSHOT_FLUSH_BYTES = 1 << 20
#: A rewrite of at least this many keys logs its progress every tenth of the way;
#: any rewrite logs it every PROGRESS_SECONDS.
PROGRESS_MIN_KEYS = 20_000
PROGRESS_SECONDS = 5.0


class Journal:
    """The commit log and snapshots of one data directory (see the module doc).

    ``image(key)`` returns the entry that makes a replay hold ``key`` as it is now
    (built with :func:`~.entries.entry`, ``ABSENT`` for a missing key).  ``images(marked)``,
    if given, does the same for a whole round: ``marked`` maps each key to its
    entry or None, and it returns the entries in that order (the hot loop of
    :meth:`commit`; by default ``image`` per key).
    """

    def __init__(
        self,
        directory: str,
        image: Callable[[bytes], bytes],
        *,
        images: Callable[[dict[bytes, bytes | None]], list[bytes]] | None = None,
        appendonly: bool = True,
        fsync: str = "everysec",
        truncate_torn: bool = True,
        truncate_corrupt: bool = False,
    ) -> None:
        self.layout = Layout(directory)
        self.image = image
        self.images = images or _images_from(image)
        self.appendonly = appendonly
        self.fsync = fsync
        self.truncate_torn = truncate_torn
        self.truncate_corrupt = truncate_corrupt
        self.manifest = Manifest()
        self.log: CommitLog | None = None
        #: Keys changed since the last commit: their entry when the changer made it
        #: already (mark_image), else None (imaged at the commit).
        self._dirty: dict[bytes, bytes | None] = {}
        #: Keys changed by operations since the last commit (logged after the
        #: key's image in ``_dirty``, if any): the operations' entries, in order.
        self._operations: dict[bytes, list[bytes]] = {}
        #: While a snapshot is written (from the switch to a new log to the first
        #: commit after the snapshot's end): the keys imaged in the new log so
        #: far, the only ones whose operations may be logged (see the module doc).
        self._imaged_in_new_log: set[bytes] | None = None
        #: The key of the operation running now (begin_operation), and whether
        #: it changed the key so far.
        self._operating: bytes | None = None
        self._operated = False
        self._flushed = False
        #: Entries that are no key's image (hints), for the next commit, in order.
        self._extra: list[bytes] = []
        #: Returns the entries a snapshot needs besides the keys' images (the
        #: pending hints); None: none (see the module doc).
        self.snapshot_extras: Callable[[], list[bytes]] | None = None
        #: Statistics for INFO persistence.
        self.loading = False
        self.loaded_entries = 0
        self.load_seconds = 0.0
        self.rewriting = False
        self.rewrites = 0
        self.rewrite_failures_in_a_row = 0
        self.last_rewrite_ok = True
        self.last_rewrite_seconds = -1.0
        #: ``time.monotonic()`` when the running rewrite started, else None.
        self.rewrite_started: float | None = None
        self.last_save_time = int(time.time())
        self.rewrite_progress: tuple[int, int] = (0, 0)  # keys written, keys to write
        self.truncations: list[str] = []
        #: Entries the last load skipped (see :meth:`load`).
        self.skipped_entries = 0
        #: Keys changed since the last successful snapshot (see the module doc).
        self.changes = 0
        #: Bytes of the snapshot the manifest lists (0 for none).
        self.snapshot_size = 0
        #: :attr:`current_size` after the last rewrite, or after the start.
        self.base_size = 0
        self._other_parts_size = 0  # the snapshot and every log but the active one
        #: appendonly no: keys changed while a snapshot is written (see the module doc).
        self._unlogged: set[bytes] | None = None
        self._unlogged_flushed = False
        #: Held by the fsync loop while it fsyncs, and by a rewrite while it
        #: switches logs (an fsync in a thread must not outlive its file).
        self._switching = trio.Lock()

    # -- recovery ------------------------------------------------------------------

    def load(self, apply: Callable[[bytes, bytes, bytes], object]) -> int:
        """Replay the directory's snapshot and logs into ``apply``; returns the
        entries replayed.  Raises a PersistenceError naming the file that stops it.
        ``apply`` returns False for an entry it skipped (an operation that does
        not follow the state before it), counted in :attr:`skipped_entries`."""
        started = time.monotonic()
        self.loading = True
        count = 0
        try:
            self.manifest = self.layout.load()
            for name in self.layout.remove_stray_files(self.manifest):
                log.warning("removed %s: a leftover of an interrupted rewrite, not in the manifest",
                            os.path.join(self.layout.directory, name))
            for part in self.layout.parts(self.manifest):
                if part.kind == "snapshot":
                    payloads: Iterable = read_snapshot(part.path)
                    loaded = None
                else:
                    loaded = read_log(
                        part.path, truncate_torn=self.truncate_torn,
                        truncate_corrupt=self.truncate_corrupt, last=part.last,
                    )
                    payloads = loaded
                try:
                    for payload in payloads:
                        if payload[:1] == BATCH:
                            for sub in split_batch(payload):
                                kind, key, body = split_entry(sub)
                                if apply(kind, key, body) is False:
                                    self.skipped_entries += 1
                                count += 1
                            continue
                        kind, key, body = split_entry(payload)
                        if apply(kind, key, body) is False:
                            self.skipped_entries += 1
                        count += 1
                except ValueError as exc:  # checksummed, so written so: not for this node
                    raise UnreplayableEntry(part.path, str(exc)) from None
                if loaded is not None and loaded.truncation is not None:
                    note = loaded.truncation.describe()
                    self.truncations.append(note)
                    log.warning("%s", note)
                log.info("loaded %s (%d entries so far)", part.path, count)
        finally:
            self.loading = False
        self.loaded_entries = count
        self.load_seconds = time.monotonic() - started
        return count

    def open(self) -> None:
        """Open the log to append to (creating the first one), after :meth:`load`."""
        if self.appendonly:
            first = plan_first_log(self.manifest)
            if first is not None:
                self.log = CommitLog.create(self.layout.path(first.active_log), self.fsync)
                self.layout.store(first)
                self.manifest = first
            else:
                self.log = CommitLog.open(self.layout.path(self.manifest.active_log), self.fsync)
        snapshot = self.manifest.snapshot
        self.snapshot_size = self._file_size(snapshot) if snapshot else 0
        active = self.manifest.active_log if self.log is not None else None
        self._other_parts_size = sum(self._file_size(name) for name in self.manifest.files if name != active)
        self.base_size = self.current_size

    def close(self) -> None:
        """Write what is buffered and close the log (fsynced), e.g. at shutdown."""
        if self.log is not None:
            try:
                self.commit()
            finally:
                self.log.close()
                self.log = None

    # -- writing -------------------------------------------------------------------

    def mark(self, key: bytes) -> None:
        """``key`` changed: its image goes into the next commit."""
        if key == self._operating:
            self._operated = True  # end_operation logs it
            return
        self._dirty[key] = None
        if self._operations:
            self._operations.pop(key, None)

    def mark_image(self, key: bytes, payload: bytes) -> None:
        """``key`` changed, and ``payload`` is its image now (the changer had the
        bytes at hand): the next commit logs it unless ``key`` changes again."""
        self._dirty[key] = payload
        if self._operations:
            self._operations.pop(key, None)

    def mark_operation(self, key: bytes, payload: bytes) -> None:
        """``key`` changed by the operation entry ``payload``, which replays to the
        key's state now over the state the key's earlier entries leave (see the
        module doc): the next commit logs it, or the key's image if the commit
        images the key anyway."""
        if self._dirty.get(key, b"") is None:
            return  # imaged at the commit, which holds this change too
        operations = self._operations.get(key)
        if operations is None:
            self._operations[key] = [payload]
        else:
            operations.append(payload)

    def append_entry(self, payload: bytes) -> None:
        """Log ``payload``, an entry that is no key's image (a hint or its
        delivery), at the next commit, after the entries queued before it."""
        self._extra.append(payload)

    def begin_operation(self, key: bytes) -> bool:
        """A command that may be logged as an operation starts on ``key``: its
        changes of ``key`` (:meth:`mark`) are kept for :meth:`end_operation`.
        False (and nothing begins) while another one runs: the outer one is
        what gets logged."""
        if self._operating is not None:
            return False
        self._operating = key
        self._operated = False
        return True

    def end_operation(self, payload: bytes | None) -> None:
        """The command of :meth:`begin_operation` ended: if it changed the key, log
        ``payload`` as the operation that did (:meth:`mark_operation`), or the
        key's image if ``payload`` is None (the command failed midway)."""
        key, self._operating = self._operating, None
        if self._operated:
            self._operated = False
            if payload is None:
                self.mark(key)
            else:
                self.mark_operation(key, payload)

    def mark_flushed(self) -> None:
        """Every key was removed (FLUSHALL): recorded before the round's images."""
        self._flushed = True
        self._dirty.clear()
        self._operations.clear()

    @property
    def failed(self) -> bool:
        return self.log is not None and self.log.failed

    def error_text(self) -> str:
        """The ``-MISCONF`` error writes get while the log cannot be written."""
        error = self.log.last_error if self.log is not None else None
        reason = error.strerror if error is not None and error.strerror else str(error)
        return f"MISCONF Errors writing to the AOF file: {reason}"

    def set_fsync(self, policy: str) -> None:
        """Change ``appendfsync`` at run time; it applies from the next commit."""
        self.fsync = policy
        if self.log is not None:
            self.log.set_policy(policy)

    def commit(self) -> None:
        """Append the images of the keys changed since the last commit and write
        them (fsynced under ``always``); raises LogWriteError if that fails."""
        journal_log = self.log
        flushed = self._flushed
        operations = self._operations
        imaged = self._imaged_in_new_log
        if operations:
            self._operations = {}
            if journal_log is None:
                operations = dict.fromkeys(operations)
            elif imaged is not None:  # a key's first change since the switch is imaged
                operations = {key: None if key not in imaged and key not in self._dirty else entries
                              for key, entries in operations.items()}
            for key in [key for key, entries in operations.items() if entries is None]:
                del operations[key]
                self._dirty[key] = None
            if operations:
                self.changes += sum(key not in self._dirty for key in operations)
        if imaged is not None:
            imaged.update(self._dirty)
            if not self.rewriting:
                self._imaged_in_new_log = None  # the snapshot holds every key: operations again
        if flushed or self._dirty:
            self.changes += len(self._dirty) + flushed
        if journal_log is None:
            self._extra.clear()  # no log: the next snapshot holds what is pending
            unlogged = self._unlogged
            if unlogged is not None:  # a snapshot is being written: remember for its end
                if flushed:
                    self._unlogged_flushed = True
                    unlogged.clear()
                unlogged.update(self._dirty)
            self._dirty.clear()
            self._flushed = False
            return
        if flushed:
            self._flushed = False
            journal_log.append(entry(FLUSHED, b""))
        payloads: list[bytes] = []
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            payloads = self.images(dirty)
            if flushed:  # absent keys are gone with the flush anyway
                payloads = [payload for payload in payloads if payload[:1] != ABSENT]
        if operations:  # after the images, in the round's one batch
            payloads = [*payloads, *(payload for entries in operations.values() for payload in entries)]
        if payloads:
            journal_log.append_all(batches(payloads))
        if self._extra:
            extra, self._extra = self._extra, []
            journal_log.append_all(extra)
        if journal_log.pending_bytes or journal_log.failed:
            journal_log.commit()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Once a second: fsync the log under ``everysec`` (in a worker thread), and
        retry a log that failed."""
        task_status.started()
        while True:
            await trio.sleep(1)
            if self.failed:
                try:
                    self.commit()
                    log.warning("the commit log %s is writable again", self.log.path)
                except LogWriteError:
                    continue
            if self.fsync == "everysec":
                async with self._switching:
                    current = self.log
                    if current is not None and current.fsync_due:
                        try:
                            await current.sync_in_thread()
                        except LogWriteError as exc:
                            log.error("fsync of the commit log failed: %s", exc)

    # -- snapshots -----------------------------------------------------------------

    @property
    def current_size(self) -> int:
        """Bytes of the snapshot and the logs the manifest lists, now (the log's
        written bytes; what is buffered does not count yet)."""
        return self._other_parts_size + (self.log.size if self.log is not None else 0)

    def log_growth(self) -> tuple[int, int]:
        """``(current_size, base_size)``: the snapshot and logs now, and after the
        last rewrite (or the start), for automatic rewrites."""
        return self.current_size, self.base_size

    @property
    def rewrite_seconds(self) -> float:
        """How long the running rewrite has run so far; -1 when none runs."""
        started = self.rewrite_started
        return -1.0 if started is None else time.monotonic() - started

    async def rewrite(self, keys: Callable[[], list[bytes]]) -> None:
        """Write a new snapshot of every key (``keys()`` lists them) and start a new
        log, while the node keeps serving (see the module doc)."""
        if self.rewriting:
            raise RuntimeError("a snapshot is already being written")
        self.rewriting = True
        started = self.rewrite_started = time.monotonic()
        try:
            await self._rewrite(keys)
            self.last_rewrite_ok = True
            self.last_save_time = int(time.time())
            self.rewrites += 1
            self.rewrite_failures_in_a_row = 0
        except BaseException:
            self.last_rewrite_ok = False
            self.rewrite_failures_in_a_row += 1
            raise
        finally:
            self.rewriting = False
            self.rewrite_started = None
            self._unlogged = None
            self.last_rewrite_seconds = time.monotonic() - started

    async def _rewrite(self, keys: Callable[[], list[bytes]]) -> None:
        plan = plan_rewrite(self.manifest)
        old_log = self.log
        if self.appendonly:
            async with self._switching:
                self.commit()  # everything so far is in the old log
                self.log = CommitLog.create(self.layout.path(plan.new_log), self.fsync)
                self._imaged_in_new_log = set()
                self.layout.store(plan.during)
                self.manifest = plan.during
                if old_log is not None:
                    self._other_parts_size += old_log.size
                    old_log.close()
                # As the old logs leave them: their changes from now on are in the new log.
                extras = self.snapshot_extras() if self.snapshot_extras is not None else []
            after = plan.after
        else:
            self.commit()
            self._unlogged, self._unlogged_flushed = set(), False
            extras = []  # taken at the end, with the keys changed meanwhile
            after = Manifest(plan.new_snapshot, ())
        changes_before = self.changes
        snapshot_keys = keys()
        total = len(snapshot_keys)
        self.rewrite_progress = (0, total)
        log.info("writing snapshot %s: %d keys", plan.new_snapshot, total)
        writer = SnapshotWriter(self.layout.path(plan.new_snapshot))
        try:
            for payload in extras:
                writer.add(payload)
            images = self.images
            progress = _Progress(plan.new_snapshot, total)
            imaged = 0
            for start in range(0, total, SNAPSHOT_CHUNK):
                payloads = images(dict.fromkeys(snapshot_keys[start : start + SNAPSHOT_CHUNK]))
                payloads = [payload for payload in payloads if payload[:1] != ABSENT]
                imaged += len(payloads)
                for payload in batches(payloads):
                    writer.add(payload)
                if writer.buffered_bytes >= SNAPSHOT_FLUSH_BYTES:
                    await trio.to_thread.run_sync(writer.flush)
                done = min(total, start + SNAPSHOT_CHUNK)
                self.rewrite_progress = (done, total)
                progress.report(done)
                await trio.lowlevel.checkpoint()
            if self._unlogged is not None:
                imaged += self._add_unlogged_changes(writer, keys)
                changes_before = self.changes  # the snapshot holds them all
            info = await trio.to_thread.run_sync(writer.finish)
        except BaseException:
            writer.abort()
            raise
        self.layout.store(after)
        self.manifest = after
        self.layout.remove_obsolete(plan)
        self.snapshot_size = self._other_parts_size = info.size
        self.base_size = self.current_size
        self.changes -= changes_before
        log.info("snapshot %s written: %d entries, %d bytes, in %.3f s", plan.new_snapshot, imaged,
                 info.size, progress.elapsed())

    def _add_unlogged_changes(self, writer: SnapshotWriter, keys: Callable[[], list[bytes]]) -> int:
        """Without a log: image again, in this one step, the keys changed while the
        snapshot was written (every key after a FLUSHALL), absent ones included;
        returns the entries added."""
        self.commit()  # the current round's changes too
        if self._unlogged_flushed:
            writer.add(entry(FLUSHED, b""))
            changed: Iterable[bytes] = keys()
        else:
            changed = self._unlogged or ()
        image = self.image
        added = 0
        for key in changed:
            writer.add(image(key))
            added += 1
        if self.snapshot_extras is not None:
            for payload in self.snapshot_extras():
                writer.add(payload)
        self._unlogged = None
        return added + self._unlogged_flushed

    def _file_size(self, name: str) -> int:
        try:
            return os.path.getsize(self.layout.path(name))
        except OSError:
            return 0


def _images_from(image: Callable[[bytes], bytes]) -> Callable[[dict[bytes, bytes | None]], list[bytes]]:
    """``images(marked)`` of a journal given only ``image`` (see :class:`Journal`)."""

    def images(marked: dict[bytes, bytes | None]) -> list[bytes]:
        return [image(key) if payload is None else payload for key, payload in marked.items()]

    return images


class _Progress:
    """Logs how far a long snapshot got: every tenth of the keys (for snapshots of
    at least PROGRESS_MIN_KEYS keys) and every PROGRESS_SECONDS whatever its size."""

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.started = self.last = time.monotonic()
        self.next_percent = 10

    def report(self, done: int) -> None:
        now = time.monotonic()
        percent = done * 100 // self.total if self.total else 100
        if (self.total >= PROGRESS_MIN_KEYS and percent >= self.next_percent) or now - self.last >= PROGRESS_SECONDS:
            log.info("snapshot %s: %d of %d keys written (%d%%) in %.1f s", self.name, done, self.total,
                     percent, now - self.started)
            self.last = now
            self.next_percent = (percent // 10 + 1) * 10

    def elapsed(self) -> float:
        return time.monotonic() - self.started
