"""The commit log: an append-only file of framed records, with group commit.

Theory of operation
-------------------
*Writing.*  :meth:`CommitLog.append` frames a payload into an in-memory buffer and
does no I/O, so the node can append every write of an event-loop round cheaply.
:meth:`CommitLog.commit` then writes the whole buffer with one ``os.write`` loop
(looping only over partial writes) - one system call per round however many
records it holds - and, under the ``always`` policy, fsyncs before it returns, so
a reply sent after ``commit()`` is durable.  The policies are Redis's
``appendfsync``:

* ``always``: ``commit()`` fsyncs whatever it wrote (blocking the caller);
* ``everysec``: :meth:`CommitLog.run_fsync_loop` fsyncs once a second, in a worker
  thread, when something was written since the last fsync; a crash loses about a
  second of writes;
* ``no``: never fsync; the kernel writes back when it likes (``close()`` still
  fsyncs, as Redis does at shutdown).

*Failures.*  An ``OSError`` from a write or an fsync is remembered (``last_error``,
``write_status`` "err", like Redis's ``aof_last_write_status``) and raised as
:class:`~respkv.persistence.exceptions.LogWriteError`.  Nothing is dropped: the
bytes a failed write did not write stay buffered, and the next ``commit()`` retries
them (and, after a failed fsync, retries the fsync as well).  Until a retry
succeeds every ``commit()`` raises and :attr:`CommitLog.failed` is true; the node
is expected to refuse writes meanwhile, as Redis refuses them with ``-MISCONF``.
``append()`` keeps buffering during a failure, so nothing already accepted is lost.
Under ``everysec`` the fsync loop retries too.  One caveat, as for Redis and
PostgreSQL: on Linux a failed fsync may have dropped the dirty pages it was
flushing, so a later successful fsync does not prove that everything written
before it is on disk; a restart, which reloads what the file really holds, is the
cautious answer to a failed fsync.

*Reading.*  :func:`read_log` returns a :class:`LogLoad`; iterating over it yields the
payloads in order, reading the file in bounded chunks
(:class:`~respkv.persistence.files.FileEntryReader`).  A torn last entry (a crash
during a write) is truncated away when allowed (Redis's ``aof-load-truncated``,
default yes) and reported as a :class:`Truncation` for the caller to log; a corrupt
entry with data after it raises :class:`~respkv.persistence.exceptions.CorruptLog`
unless respkv's ``aof-load-corrupt-truncate`` allows truncating there.  Errors are
raised during the iteration, after the good entries before them were yielded; a
caller that gets one treats the whole load as failed.  Only the last log listed in
the manifest may lose a torn tail: in an earlier one, later logs depend on what is
missing, so it counts as corruption (pass ``last=False``).
"""

from __future__ import annotations

import enum
import errno
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import trio

from .exceptions import BadFileHeader, CorruptLog, LogWriteError, TornLog
from .files import READ_CHUNK_SIZE, FileEntryReader, OnePassLoad, fsync_directory, write_all
from .framing import FILE_HEADER_SIZE, LOG_FORMAT, HeaderState, ScanEnd, append_entries, append_entry, check_file_header

__all__ = ["FsyncPolicy", "LogStatistics", "CommitLog", "Truncation", "LogLoad", "read_log"]


class FsyncPolicy(enum.Enum):
    """When the log is fsynced (Redis's ``appendfsync``); ``FsyncPolicy("everysec")``."""

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


@dataclass(frozen=True)
class LogStatistics:
    """Counters of a :class:`CommitLog`, for ``INFO persistence``."""

    path: str
    policy: str
    size: int  # bytes in the file, header included
    pending_bytes: int  # framed but not yet written
    pending_entries: int
    bytes_written: int  # since the log was opened
    entries_written: int
    commits: int  # commit() calls that wrote something
    fsyncs: int
    last_fsync_time: float | None  # clock time of the last successful fsync
    unsynced_bytes: int  # written since the start of the last successful fsync
    write_status: str  # "ok" or "err"
    last_error_errno: int | None
    last_error_strerror: str | None


WriteFunction = Callable[[int, memoryview], int]
FsyncFunction = Callable[[int], None]


class CommitLog:
    """An open commit log, appended to with group commit (see the module docstring).

    Open one with :meth:`create` (a new, empty log) or :meth:`open` (an existing log,
    after :func:`read_log` checked it).  ``write``, ``fsync`` and ``clock`` default to
    ``os.write``, ``os.fsync`` and ``time.time``; tests pass their own to count calls.
    """

    def __init__(
        self,
        fd: int,
        path: str,
        policy: FsyncPolicy,
        *,
        size: int,
        write: WriteFunction = os.write,
        fsync: FsyncFunction = os.fsync,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fd = fd
        self._path = path
        self._policy = FsyncPolicy(policy)
        self._initial_size = size
        self._write = write
        self._fsync = fsync
        self._clock = clock
        self._pending = bytearray()
        self._pending_entries = 0
        self._bytes_written = 0
        self._synced_bytes = 0
        self._entries_written = 0
        self._commits = 0
        self._fsyncs = 0
        self._last_fsync_time: float | None = None
        self._write_error: OSError | None = None
        self._fsync_error: OSError | None = None
        self._last_error: OSError | None = None
        self._fsyncs_running = 0
        self._closed = False

    # -- opening --------------------------------------------------------------------

    @classmethod
    def create(cls, path: str, policy: FsyncPolicy | str, **options) -> CommitLog:
        """Create a new, empty log at ``path`` (replacing any file there), with its
        header written and fsynced and the directory entry made durable."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, LOG_FORMAT.header)
            os.fsync(fd)
            fsync_directory(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path, FsyncPolicy(policy), size=FILE_HEADER_SIZE, **options)

    @classmethod
    def open(cls, path: str, policy: FsyncPolicy | str, **options) -> CommitLog:
        """Open the existing log ``path`` to append to it.

        Load it with :func:`read_log` first: this checks only the header.  A file
        left empty by truncating a torn header gets a new one.
        """
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                write_all(fd, LOG_FORMAT.header)
                os.fsync(fd)
                size = FILE_HEADER_SIZE
            else:
                try:
                    state = check_file_header(os.pread(fd, FILE_HEADER_SIZE, 0), LOG_FORMAT)
                except ValueError as exc:
                    raise BadFileHeader(path, str(exc)) from None
                if state is HeaderState.CUT:
                    raise BadFileHeader(path, "the header is cut short; load the log with read_log first")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path, FsyncPolicy(policy), size=size, **options)

    # -- state ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def policy(self) -> FsyncPolicy:
        return self._policy

    def set_policy(self, policy: FsyncPolicy | str) -> None:
        """Change the fsync policy of the open log (``CONFIG SET appendfsync``).

        It applies from the next :meth:`commit`: switching to ``always`` makes that
        commit fsync whatever was written before it too, so every reply after the
        switch is durable.  The ``everysec`` loop of whoever runs one decides from
        :attr:`fsync_due`, which is false under any other policy.
        """
        self._policy = FsyncPolicy(policy)

    @property
    def fsync_running(self) -> bool:
        """Whether an fsync runs in a worker thread now (``aof_pending_bio_fsync``)."""
        return self._fsyncs_running > 0

    @property
    def size(self) -> int:
        """Bytes in the file (header included), not counting what is pending."""
        return self._initial_size + self._bytes_written

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    @property
    def unsynced_bytes(self) -> int:
        return self._bytes_written - self._synced_bytes

    @property
    def failed(self) -> bool:
        """Whether the last write or fsync failed and no retry has succeeded yet."""
        return self._write_error is not None or self._fsync_error is not None

    @property
    def write_status(self) -> str:
        """``"err"`` while :attr:`failed`, else ``"ok"`` (Redis's ``aof_last_write_status``)."""
        return "err" if self.failed else "ok"

    @property
    def last_error(self) -> OSError | None:
        """The most recent write or fsync error (kept after a successful retry)."""
        return self._last_error

    @property
    def fsync_due(self) -> bool:
        """Whether the ``everysec`` loop has something to fsync."""
        return self._policy is FsyncPolicy.EVERYSEC and (self.unsynced_bytes > 0 or self._fsync_error is not None)

    def statistics(self) -> LogStatistics:
        error = self._last_error
        return LogStatistics(
            path=self._path,
            policy=self._policy.value,
            size=self.size,
            pending_bytes=len(self._pending),
            pending_entries=self._pending_entries,
            bytes_written=self._bytes_written,
            entries_written=self._entries_written,
            commits=self._commits,
            fsyncs=self._fsyncs,
            last_fsync_time=self._last_fsync_time,
            unsynced_bytes=self.unsynced_bytes,
            write_status=self.write_status,
            last_error_errno=None if error is None else error.errno,
            last_error_strerror=None if error is None else error.strerror,
        )

    # -- writing --------------------------------------------------------------------

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Frame ``payload`` into the buffer (no I/O); return the framed size.

        Raises ``ValueError`` for an empty or oversized payload or a closed log.
        """
        self._check_open()
        size = append_entry(self._pending, payload)
        self._pending_entries += 1
        return size

    def append_all(self, payloads) -> None:
        """:meth:`append` each of ``payloads`` (an iterable), in one pass."""
        self._check_open()
        self._pending_entries += append_entries(self._pending, payloads)

    def commit(self) -> int:
        """Write everything appended so far, fsync under ``always``; return the bytes
        written.

        Raises :class:`LogWriteError` when the write or fsync fails (and, until a
        retry succeeds, on every call; each call retries).
        """
        self._check_open()
        written = self._write_pending()
        if self._fsync_error is not None or (self._policy is FsyncPolicy.ALWAYS and self.unsynced_bytes):
            self.sync()
        return written

    def sync(self) -> None:
        """fsync the log now, in the calling thread; raises :class:`LogWriteError`."""
        self._check_open()
        target = self._bytes_written
        try:
            self._fsync(self._fd)
        except OSError as exc:
            raise self._fsync_failed(exc) from exc
        self._fsync_succeeded(target)

    async def sync_in_thread(self) -> None:
        """fsync the log in a worker thread; raises :class:`LogWriteError`.

        Cancelling waits for the fsync to finish (the file descriptor stays in use
        until it has).
        """
        self._check_open()
        target = self._bytes_written
        self._fsyncs_running += 1
        try:
            await trio.to_thread.run_sync(self._fsync, self._fd)
        except OSError as exc:
            raise self._fsync_failed(exc) from exc
        finally:
            self._fsyncs_running -= 1
        self._fsync_succeeded(target)

    async def run_fsync_loop(self, *, interval: float = 1.0, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The ``everysec`` fsync loop: every ``interval`` seconds, fsync in a worker
        thread if :attr:`fsync_due`.  Failures are recorded (see :attr:`failed`) and
        retried at the next turn; the loop runs until cancelled.  Start it with
        ``nursery.start``; cancel it before :meth:`close`.
        """
        if self._policy is not FsyncPolicy.EVERYSEC:
            raise ValueError(f"the fsync loop is for the everysec policy, not {self._policy.value}")
        task_status.started()
        while True:
            await trio.sleep(interval)
            if self.fsync_due and not self._closed:
                try:
                    await self.sync_in_thread()
                except LogWriteError:
                    pass  # recorded in last_error / write_status; commit() reports it

    def close(self) -> None:
        """Commit what is pending, fsync (whatever the policy, as Redis does at
        shutdown) and close the file.  The file is closed even if that fails, and
        the failure is raised as :class:`LogWriteError`."""
        if self._closed:
            return
        if self._fsyncs_running:
            raise RuntimeError("an fsync is running in a worker thread: cancel the fsync loop first")
        try:
            self._write_pending()
            if self.unsynced_bytes or self._fsync_error is not None:
                self.sync()
        finally:
            self._closed = True
            os.close(self._fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the commit log {self._path} is closed")

    def _write_pending(self) -> int:
        if not self._pending:
            return 0
        view = memoryview(self._pending)
        done = 0
        try:
            while done < len(view):
                written = self._write(self._fd, view[done:])
                if written <= 0:
                    raise OSError(errno.EIO, "write accepted no bytes")
                done += written
        except OSError as exc:
            self._write_error = self._last_error = exc
            # Bytes that reached the file leave the buffer, so the retry continues
            # exactly where the file ends.  A new buffer, not a resize: a traceback
            # may still hold a view of the old one.
            self._pending = self._pending[done:]
            raise LogWriteError(self._path, "write", exc) from exc
        finally:
            view.release()
            self._bytes_written += done
        self._pending = bytearray()
        self._write_error = None
        self._entries_written += self._pending_entries
        self._pending_entries = 0
        self._commits += 1
        return done

    def _fsync_failed(self, exc: OSError) -> LogWriteError:
        self._fsync_error = self._last_error = exc
        return LogWriteError(self._path, "fsync", exc)

    def _fsync_succeeded(self, target: int) -> None:
        self._fsync_error = None
        self._fsyncs += 1
        self._synced_bytes = max(self._synced_bytes, target)
        self._last_fsync_time = self._clock()


# -- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Truncation:
    """A log cut at ``offset`` while loading, dropping ``dropped_bytes`` after it."""

    path: str
    offset: int
    dropped_bytes: int
    kind: str  # "torn" (aof-load-truncated) or "corrupt" (aof-load-corrupt-truncate)
    reason: str

    def describe(self) -> str:
        """The line the caller logs."""
        return (
            f"Truncated the commit log {self.path} at byte offset {self.offset}: "
            f"dropped {self.dropped_bytes} bytes of a {self.kind} entry ({self.reason})"
        )


class LogLoad(OnePassLoad):
    """One pass over a log (see :func:`read_log`): iterate for the payloads, then read
    ``entries``, ``size`` and ``truncation``."""

    def __init__(self, path: str, *, truncate_torn: bool, truncate_corrupt: bool, last: bool, chunk_size: int) -> None:
        self.path = path
        self.truncate_torn = truncate_torn
        self.truncate_corrupt = truncate_corrupt
        self.last = last
        self._chunk_size = chunk_size
        #: Good entries loaded; final once iteration finished.
        self.entries = 0
        #: Bytes in the file after loading (after any truncation).
        self.size = 0
        #: What was cut off the file, if anything.
        self.truncation: Truncation | None = None
        #: Whether the whole file was loaded.
        self.finished = False

    def _load(self, fd: int) -> Iterator[bytes]:
        file_size = os.fstat(fd).st_size
        if file_size == 0:
            self._finish(0)
            return
        try:
            state = check_file_header(os.pread(fd, FILE_HEADER_SIZE, 0), LOG_FORMAT)
        except ValueError as exc:
            raise BadFileHeader(self.path, str(exc)) from None
        if state is HeaderState.CUT:
            self._bad_end(ScanEnd.TORN, 0, f"file header cut after {file_size} bytes", file_size)
            return
        reader = FileEntryReader(fd, FILE_HEADER_SIZE, file_size, chunk_size=self._chunk_size)
        for payload in reader:
            self.entries += 1
            yield bytes(payload)
        outcome = reader.outcome
        if outcome.end is ScanEnd.CLEAN:
            self._finish(file_size)
        else:
            self._bad_end(outcome.end, outcome.good_end, outcome.reason, file_size)

    def _bad_end(self, end: ScanEnd, offset: int, reason: str, file_size: int) -> None:
        if end is ScanEnd.TORN and not self.last:
            end = ScanEnd.CORRUPT
            reason += "; later logs follow this one, so its lost tail cannot be dropped"
        if end is ScanEnd.TORN and not self.truncate_torn:
            raise TornLog(self.path, offset, reason, file_size)
        if end is ScanEnd.CORRUPT and not self.truncate_corrupt:
            raise CorruptLog(self.path, offset, reason, file_size)
        writable = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(writable, offset)
            os.fsync(writable)
        finally:
            os.close(writable)
        self.truncation = Truncation(self.path, offset, file_size - offset, end.value, reason)
        self._finish(offset)

    def _finish(self, size: int) -> None:
        self.size = size
        self.finished = True


def read_log(
    path: str,
    *,
    truncate_torn: bool = True,
    truncate_corrupt: bool = False,
    last: bool = True,
    chunk_size: int = READ_CHUNK_SIZE,
) -> LogLoad:
    """Prepare to load the log ``path``; iterate over the result for its payloads.

    ``truncate_torn`` is ``aof-load-truncated``; ``truncate_corrupt`` is
    ``aof-load-corrupt-truncate``; ``last`` says whether the log is the last one of
    the manifest (a torn tail elsewhere counts as corruption).  The file is opened
    when iteration starts.  Iteration raises ``FileNotFoundError``,
    :class:`BadFileHeader`, :class:`TornLog` or :class:`CorruptLog`.
    """
    return LogLoad(
        path, truncate_torn=truncate_torn, truncate_corrupt=truncate_corrupt, last=last, chunk_size=chunk_size
    )
