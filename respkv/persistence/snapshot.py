"""Snapshots: the whole state as framed records, written atomically.

Theory of operation
-------------------
A snapshot file is the snapshot header (:data:`~respkv.persistence.framing.SNAPSHOT_FORMAT`)
followed by entries framed as in the log.  Each entry's payload starts with a kind
byte: ``D`` then a record (the caller's bytes), or ``E`` then the number of records
(``u64``, little endian).  The ``E`` entry, the end marker, is the last entry of a
complete snapshot, so a snapshot cut anywhere - even exactly between two entries -
is recognised as incomplete.  Snapshots are never truncated to load: an incomplete
or damaged one is an error (:class:`~respkv.persistence.exceptions.CorruptSnapshot`)
naming the file and byte offset.

Writing goes to ``NAME.tmp``; :meth:`SnapshotWriter.finish` appends the end marker,
fsyncs the file, renames it over ``NAME`` and fsyncs the directory.  A crash before
the rename leaves the previous ``NAME`` untouched (and a ``.tmp`` file nobody reads,
which the next writer of that name truncates, or
:meth:`~respkv.persistence.manifest.Layout.remove_stray_files` deletes).

The writer separates buffering from I/O so a snapshot can be produced
incrementally: :meth:`SnapshotWriter.add` only frames into memory (cheap, in the
event-loop thread, a chunk of records per turn); :meth:`SnapshotWriter.flush` and
:meth:`SnapshotWriter.finish` do the blocking I/O, meant for a worker thread
(``await trio.to_thread.run_sync(writer.flush)``).  Never run ``add`` while a
``flush`` runs.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .exceptions import BadFileHeader, CorruptSnapshot
from .files import READ_CHUNK_SIZE, FileEntryReader, OnePassLoad, fsync_directory, write_all
from .framing import (
    ENTRY_HEADER_SIZE,
    FILE_HEADER_SIZE,
    SNAPSHOT_FORMAT,
    HeaderState,
    ScanEnd,
    append_entry,
    check_file_header,
)

__all__ = ["SnapshotInfo", "SnapshotWriter", "write_snapshot", "SnapshotLoad", "read_snapshot", "TEMPORARY_SUFFIX"]

#: Suffix of the file a snapshot is written under before its rename.
TEMPORARY_SUFFIX = ".tmp"

_RECORD = b"D"
_END = b"E"
_COUNT = struct.Struct("<Q")


@dataclass(frozen=True)
class SnapshotInfo:
    """A finished snapshot: where, how many records, how many bytes."""

    path: str
    entries: int
    size: int


class SnapshotWriter:
    """Writes one snapshot to ``path`` (through ``path.tmp``); see the module docstring.

    Creating the writer does no I/O; the temporary file is created by the first
    :meth:`flush` or by :meth:`finish`.  Use it as a context manager to
    :meth:`abort` on an exception.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.temporary_path = path + TEMPORARY_SUFFIX
        self._buffer = bytearray(SNAPSHOT_FORMAT.header)
        self._fd: int | None = None
        self._entries = 0
        self._size = 0  # bytes written to the temporary file
        self._done = False

    @property
    def entries(self) -> int:
        """Records added so far."""
        return self._entries

    @property
    def buffered_bytes(self) -> int:
        """Bytes framed but not yet written; flush when this grows large."""
        return len(self._buffer)

    def add(self, payload: bytes | bytearray | memoryview) -> None:
        """Frame one record into the buffer (no I/O)."""
        self._check_active()
        append_entry(self._buffer, _RECORD, payload)
        self._entries += 1

    def flush(self) -> None:
        """Write the buffer to the temporary file (blocking I/O)."""
        self._check_active()
        if self._fd is None:
            self._fd = os.open(self.temporary_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        write_all(self._fd, self._buffer)
        self._size += len(self._buffer)
        self._buffer = bytearray()

    def finish(self) -> SnapshotInfo:
        """Append the end marker, write, fsync, rename over :attr:`path` and fsync the
        directory (blocking I/O).  On an error the temporary file is removed."""
        self._check_active()
        try:
            append_entry(self._buffer, _END, _COUNT.pack(self._entries))
            self.flush()
            assert self._fd is not None
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self.temporary_path, self.path)
            self._done = True
            fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            if not self._done:
                self.abort()
            raise
        return SnapshotInfo(self.path, self._entries, self._size)

    def abort(self) -> None:
        """Give up: close and remove the temporary file; :attr:`path` is untouched."""
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.temporary_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.abort()
            raise RuntimeError(f"snapshot writer for {self.path} left without finish() or abort()")

    def _check_active(self) -> None:
        if self._done:
            raise ValueError(f"the snapshot writer for {self.path} is finished or aborted")


def write_snapshot(
    path: str, payloads: Iterable[bytes | bytearray | memoryview], *, flush_bytes: int = READ_CHUNK_SIZE
) -> SnapshotInfo:
    """Write a whole snapshot of ``payloads`` to ``path`` at once (blocking I/O),
    flushing every ``flush_bytes`` buffered bytes."""
    with SnapshotWriter(path) as writer:
        for payload in payloads:
            writer.add(payload)
            if writer.buffered_bytes >= flush_bytes:
                writer.flush()
        return writer.finish()


class SnapshotLoad(OnePassLoad):
    """One pass over a snapshot (see :func:`read_snapshot`): iterate for the records,
    then read ``entries``."""

    def __init__(self, path: str, *, chunk_size: int) -> None:
        self.path = path
        self._chunk_size = chunk_size
        #: Records loaded; final once iteration finished.
        self.entries = 0
        #: Whether the whole snapshot was loaded and verified.
        self.finished = False

    def _load(self, fd: int) -> Iterator[bytes]:
        file_size = os.fstat(fd).st_size
        try:
            state = check_file_header(os.pread(fd, FILE_HEADER_SIZE, 0), SNAPSHOT_FORMAT)
        except ValueError as exc:
            raise BadFileHeader(self.path, str(exc)) from None
        if state is HeaderState.CUT:
            raise CorruptSnapshot(self.path, 0, f"incomplete: file header cut after {file_size} bytes")
        reader = FileEntryReader(fd, FILE_HEADER_SIZE, file_size, chunk_size=self._chunk_size)
        offset = FILE_HEADER_SIZE
        end_marker_at: int | None = None
        for payload in reader:
            if end_marker_at is not None:
                raise CorruptSnapshot(self.path, offset, f"data after the end marker at byte {end_marker_at}")
            kind = payload[:1]
            if kind == _RECORD:
                self.entries += 1
                yield bytes(payload[1:])
            elif kind == _END and len(payload) == 1 + _COUNT.size:
                (count,) = _COUNT.unpack_from(payload, 1)
                if count != self.entries:
                    reason = f"end marker counts {count} records, the file holds {self.entries}"
                    raise CorruptSnapshot(self.path, offset, reason)
                end_marker_at = offset
            else:
                reason = f"unknown entry kind {bytes(kind)!r} in an entry of {len(payload)} bytes"
                raise CorruptSnapshot(self.path, offset, reason)
            offset += ENTRY_HEADER_SIZE + len(payload)
        outcome = reader.outcome
        if outcome.end is ScanEnd.TORN:
            raise CorruptSnapshot(self.path, outcome.good_end, f"incomplete: {outcome.reason}")
        if outcome.end is ScanEnd.CORRUPT:
            raise CorruptSnapshot(self.path, outcome.good_end, outcome.reason)
        if end_marker_at is None:
            reason = f"incomplete: no end marker after {self.entries} records"
            raise CorruptSnapshot(self.path, outcome.good_end, reason)
        self.finished = True


def read_snapshot(path: str, *, chunk_size: int = READ_CHUNK_SIZE) -> SnapshotLoad:
    """Prepare to load the snapshot ``path``; iterate over the result for its records.

    Records come out as they are read; the checks that need the whole file (end
    marker, record count) fail at the end of the iteration, so a caller that gets
    :class:`CorruptSnapshot` or :class:`BadFileHeader` treats the whole load as
    failed.  Missing file: ``FileNotFoundError``.
    """
    return SnapshotLoad(path, chunk_size=chunk_size)
