"""File plumbing shared by the log, snapshots and the manifest: blocking I/O.

Theory of operation
-------------------
*Reading.*  :class:`FileEntryReader` scans the entries of an open file with the pure
:class:`~respkv.persistence.framing.EntryScanner`, reading it in chunks of
:data:`READ_CHUNK_SIZE` bytes.  When the scanner stops inside an entry
(``NEED_MORE``), the reader keeps the unfinished bytes, reads what the entry needs
(never more than the file still holds, so a huge announced length in a small file
costs nothing) and scans again.  Memory stays at about one chunk plus the largest
entry, whatever the size of the file.

*Replacing.*  A file that must change atomically (a snapshot, the manifest) is
written under a temporary name, fsynced, renamed over the final name, and then the
directory is fsynced so that the rename itself is durable.  A crash at any point
leaves either the old file or the new one under the final name, never a mix; the
temporary file may be left behind, and nothing reads it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from .framing import EntryScanner, ScanEnd, ScanOutcome

__all__ = ["READ_CHUNK_SIZE", "FileEntryReader", "fsync_directory", "write_all", "replace_file"]

#: Bytes read from a file at a time while scanning it.
READ_CHUNK_SIZE = 1 << 20


def write_all(fd: int, data: bytes | bytearray | memoryview, write=os.write) -> None:
    """Write all of ``data`` to ``fd``, looping over partial writes."""
    view = memoryview(data).cast("B")
    try:
        while view:
            written = write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "write accepted no bytes")
            view = view[written:]
    finally:
        view.release()


def fsync_directory(path: str) -> None:
    """fsync the directory ``path``, making the creation, rename or removal of its
    entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by a file holding ``data``, atomically and durably
    (``path.tmp`` created with ``mode``, fsync, rename, fsync of the directory):
    a crash leaves the old file or the new one, never a half-written one."""
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


class FileEntryReader:
    """Iterate over the payloads of the entries of ``fd`` from ``start`` up to
    ``file_size``; then read :attr:`outcome`.

    Payloads are memoryviews into the chunk read; each keeps its chunk alive, so
    copy (``bytes(view)``) what you keep.  Reads with ``os.pread`` and leaves the
    file offset alone.
    """

    def __init__(self, fd: int, start: int, file_size: int, *, chunk_size: int = READ_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._fd = fd
        self._start = start
        self._file_size = file_size
        self._chunk_size = chunk_size
        self._outcome: ScanOutcome | None = None

    @property
    def outcome(self) -> ScanOutcome:
        """How the scan ended (never ``NEED_MORE``); available after iteration."""
        if self._outcome is None:
            raise RuntimeError("the scan has not finished: iterate over the reader first")
        return self._outcome

    def __iter__(self) -> Iterator[memoryview]:
        data_start = self._start  # file offset of data[0]
        data = b""
        entries = 0
        needed = 0
        shrank = False
        while True:
            data_end = data_start + len(data)
            want = min(max(self._chunk_size, needed - len(data)), self._file_size - data_end)
            if want > 0:
                chunk = self._read_exactly(data_end, want)
                shrank = len(chunk) < want
                data += chunk
            at_eof = shrank or data_start + len(data) >= self._file_size
            scanner = EntryScanner(data, at_eof=at_eof, base_offset=data_start)
            yield from scanner
            outcome = scanner.outcome
            entries += outcome.entries
            if outcome.end is not ScanEnd.NEED_MORE:
                self._outcome = ScanOutcome(outcome.end, outcome.good_end, entries, outcome.reason)
                return
            data = data[outcome.good_end - data_start :]
            data_start = outcome.good_end
            needed = outcome.needed

    def _read_exactly(self, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            part = os.pread(self._fd, min(size, self._chunk_size * 4), offset)
            if not part:  # the file shrank under us: scan what is there
                break
            parts.append(part)
            offset += len(part)
            size -= len(part)
        return b"".join(parts)


class OnePassLoad:
    """Base of a one-pass load of the file at ``self.path``: iterating opens the
    file and yields what ``_load(fd)`` yields; a second iteration is refused (the
    load's statistics describe one pass)."""

    path: str
    _started = False

    def _load(self, fd: int) -> Iterator[bytes]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError(f"a {type(self).__name__} is iterated once; read the file again")
        self._started = True
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield from self._load(fd)
        finally:
            os.close(fd)
