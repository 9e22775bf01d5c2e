"""The errors of the persistence layer: each names the file and, where one applies,
the byte offset, and says what the operator can do about it.

Every one is a :class:`PersistenceError`, so a caller that only wants to stop the
node on any durability problem can catch that one class.
"""

from __future__ import annotations

__all__ = [
    "CORRUPT_TRUNCATE_OPTION",
    "TORN_TRUNCATE_OPTION",
    "PersistenceError",
    "BadFileHeader",
    "CorruptLog",
    "TornLog",
    "CorruptSnapshot",
    "CorruptManifest",
    "LogWriteError",
]

#: respkv's option that lets the loader truncate a log at a corrupt entry in the
#: middle, dropping it and everything after it (default ``no``).
CORRUPT_TRUNCATE_OPTION = "aof-load-corrupt-truncate"

#: Redis's option that lets the loader truncate a torn last entry (default ``yes``).
TORN_TRUNCATE_OPTION = "aof-load-truncated"


class PersistenceError(Exception):
    """Base class of everything this package raises about its files."""


class BadFileHeader(PersistenceError):
    """A file does not start with the expected magic and format version."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class CorruptLog(PersistenceError):
    """A log entry in the middle of a log fails its checks.

    ``offset`` is where the bad entry starts, which is also the end of the last good
    entry: truncating the file there keeps every entry before it.
    """

    def __init__(self, path: str, offset: int, reason: str, file_size: int) -> None:
        dropped = file_size - offset
        super().__init__(
            f"Bad file format reading the commit log {path}: corrupt entry at byte offset {offset} "
            f"({reason}); {dropped} bytes from there to the end of the file cannot be loaded. "
            f"Restore the file from a backup, or set {CORRUPT_TRUNCATE_OPTION} yes to truncate it "
            f"at byte {offset} and lose those bytes."
        )
        self.path = path
        self.offset = offset
        self.reason = reason
        self.file_size = file_size


class TornLog(PersistenceError):
    """The last entry of a log is cut short and truncating it is not allowed."""

    def __init__(self, path: str, offset: int, reason: str, file_size: int) -> None:
        dropped = file_size - offset
        super().__init__(
            f"Unexpected end of file reading the commit log {path}: the last entry, at byte offset "
            f"{offset}, is torn ({reason}). Set {TORN_TRUNCATE_OPTION} yes to truncate the file there "
            f"({dropped} bytes dropped), or truncate it yourself."
        )
        self.path = path
        self.offset = offset
        self.reason = reason
        self.file_size = file_size


class CorruptSnapshot(PersistenceError):
    """A snapshot is incomplete or damaged; snapshots are never truncated to load."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"Bad snapshot {path} at byte offset {offset}: {reason}. The snapshot cannot be "
            f"loaded; restore it from a backup."
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class CorruptManifest(PersistenceError):
    """The manifest cannot be parsed."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"Bad manifest {path}, line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class UnreplayableEntry(PersistenceError):
    """An entry is well formed but cannot be replayed by this node (a version
    record on a node without replication, a malformed command or operation)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Cannot load {path}: {reason}")
        self.path = path
        self.reason = reason


class LogWriteError(PersistenceError):
    """Writing or fsyncing the commit log failed; what was not written is kept.

    ``errno`` and ``strerror`` come from the ``OSError`` (chained as ``__cause__``);
    ``operation`` is ``"write"`` or ``"fsync"``.
    """

    def __init__(self, path: str, operation: str, error: OSError) -> None:
        super().__init__(f"Error {operation} of the commit log {path}: {error.strerror} (errno {error.errno})")
        self.path = path
        self.operation = operation
        self.errno = error.errno
        self.strerror = error.strerror
