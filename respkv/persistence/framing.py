"""Entry framing shared by the commit log and snapshots: pure, bytes in and out.

Theory of operation
-------------------
A durability file is a fixed header followed by entries back to back::

    file   = magic (10 bytes) | format version (u16, big endian) | entry*
    entry  = length (u32, little endian) | CRC32C of payload (u32, little endian) | payload

The header tells the kinds of file apart (:data:`LOG_FORMAT`, :data:`SNAPSHOT_FORMAT`)
and lets a later respkv refuse a format it does not know.  Payloads are opaque here;
they are never empty (a zero length is how a zero-filled block shows up after a
crash on some filesystems, and ``CRC32C(b"") == 0`` would make such a block look like
valid entries), and never longer than :data:`MAX_ENTRY_LENGTH`.

:class:`EntryScanner` walks a buffer and yields each good payload, then stops with a
:class:`ScanOutcome` that says why:

* ``CLEAN``: the buffer ends exactly at the end of an entry.
* ``TORN``: the last entry is cut short, as a crash in the middle of a write leaves
  it: its header is incomplete, or its payload is shorter than announced, or it is
  complete, ends exactly at the end of the data and fails its checksum (its sectors
  were only partly written), or its header announces an impossible length and
  nothing follows the header.
* ``CORRUPT``: an entry with more data after it fails its checksum, or announces an
  impossible length (zero, or more than :data:`MAX_ENTRY_LENGTH`) with data after
  its header.  Nothing after it can be trusted.
* ``NEED_MORE``: only when the caller said more data may follow (``at_eof=False``):
  the buffer ends inside an entry; ``needed`` is how many bytes from ``good_end``
  must be present to decide.  A file reader feeds the file in bounded chunks this
  way (see :mod:`respkv.persistence.files`).

``good_end`` is always the offset just after the last good entry, which is where a
torn or corrupt file can be truncated.  The scanner never allocates from a length it
read: an announced length is checked against the bound and against the bytes
actually present before anything is sliced.

A known limit: a length field damaged so that the entry runs past the end of the
file reads as a torn tail, indistinguishable from a real one; the loader reports the
number of bytes it drops, which is how an operator notices a suspiciously large one.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

__all__ = [
    "FileFormat",
    "LOG_FORMAT",
    "SNAPSHOT_FORMAT",
    "FILE_HEADER_SIZE",
    "ENTRY_HEADER_SIZE",
    "MAX_ENTRY_LENGTH",
    "HeaderState",
    "check_file_header",
    "frame_entry",
    "append_entry",
    "ScanEnd",
    "ScanOutcome",
    "EntryScanner",
]

#: Bytes of the entry header: length and checksum.
ENTRY_HEADER_SIZE = 8

#: Longest payload an entry may carry: 1 GiB plus 1 MiB of slack for the record's
#: own header around a value (Redis's ``proto-max-bulk-len`` is 512 MiB, and a record
#: may carry a key and a value).  A longer announced length is corruption.
MAX_ENTRY_LENGTH = (1 << 30) + (1 << 20)

_ENTRY_HEADER = struct.Struct("<II")
_VERSION = struct.Struct(">H")
_MAGIC_SIZE = 10

#: Bytes of the file header: magic and version.
FILE_HEADER_SIZE = _MAGIC_SIZE + _VERSION.size


@dataclass(frozen=True)
class FileFormat:
    """A kind of durability file: its 10-byte magic and the format version written."""

    magic: bytes
    version: int
    description: str

    @property
    def header(self) -> bytes:
        """The bytes every file of this format starts with."""
        return self.magic + _VERSION.pack(self.version)


LOG_FORMAT = FileFormat(b"RESPKV-LOG", 1, "respkv commit log")
SNAPSHOT_FORMAT = FileFormat(b"RESPKV-SNP", 1, "respkv snapshot")


class HeaderState(enum.Enum):
    """What :func:`check_file_header` found at the start of a file."""

    COMPLETE = "complete"  # the full header of the expected format
    CUT = "cut"  # a proper prefix of it (the file was cut while being created)


def check_file_header(data: bytes | memoryview, expected: FileFormat) -> HeaderState:
    """Check that ``data`` (the first bytes of a file) starts with ``expected``'s header.

    Raises ``ValueError`` with a description when it does not: another kind of file,
    or the right kind in a version this code does not read.
    """
    head = bytes(data[:FILE_HEADER_SIZE])
    if len(head) < FILE_HEADER_SIZE:
        if expected.header.startswith(head):
            return HeaderState.CUT
        raise ValueError(f"not a {expected.description} (file too short and does not start with its magic)")
    if head[:_MAGIC_SIZE] != expected.magic:
        raise ValueError(f"not a {expected.description} (magic {head[:_MAGIC_SIZE]!r}, expected {expected.magic!r})")
    (version,) = _VERSION.unpack_from(head, _MAGIC_SIZE)
    if version != expected.version:
        raise ValueError(
            f"{expected.description} in format version {version}; this respkv reads version {expected.version}"
        )
    return HeaderState.COMPLETE


def append_entry(buffer: bytearray, *parts: bytes | bytearray | memoryview) -> int:
    """Append one entry whose payload is the concatenation of ``parts`` to ``buffer``.

    Parts let a caller prefix a payload (a record kind, say) without copying it
    first.  Returns the number of bytes appended.  Raises ``ValueError`` for an empty
    payload or one longer than :data:`MAX_ENTRY_LENGTH`.
    """
    length = sum(len(part) for part in parts)
    if length == 0:
        raise ValueError("an entry's payload must not be empty")
    if length > MAX_ENTRY_LENGTH:
        raise ValueError(f"entry payload of {length} bytes is over the {MAX_ENTRY_LENGTH}-byte limit")
    checksum = 0
    for part in parts:
        checksum = crc32c.crc32c(part, checksum)
    buffer += _ENTRY_HEADER.pack(length, checksum)
    for part in parts:
        buffer += part
    return ENTRY_HEADER_SIZE + length


def append_entries(buffer: bytearray, payloads) -> int:
    """Append one entry per payload of ``payloads`` to ``buffer`` (the group
    commit's hot loop: :func:`append_entry` for each, without its generality).
    Returns the number of entries; same errors as :func:`append_entry`."""
    pack = _ENTRY_HEADER.pack
    crc = crc32c.crc32c
    count = 0
    for payload in payloads:
        length = len(payload)
        if not 0 < length <= MAX_ENTRY_LENGTH:
            raise ValueError(f"entry payload of {length} bytes is empty or over the {MAX_ENTRY_LENGTH}-byte limit")
        buffer += pack(length, crc(payload))
        buffer += payload
        count += 1
    return count


def frame_entry(payload: bytes | bytearray | memoryview) -> bytes:
    """One entry carrying ``payload``, as bytes (see :func:`append_entry`)."""
    buffer = bytearray()
    append_entry(buffer, payload)
    return bytes(buffer)


class ScanEnd(enum.Enum):
    """Why an :class:`EntryScanner` stopped."""

    CLEAN = "clean"
    TORN = "torn"
    CORRUPT = "corrupt"
    NEED_MORE = "need-more"


@dataclass(frozen=True)
class ScanOutcome:
    """How a scan ended.

    ``good_end``: offset (counted from ``base_offset``) just after the last good
    entry.  ``entries``: good entries yielded.  ``reason``: what is wrong with the
    entry at ``good_end`` (empty when clean).  ``needed``: for ``NEED_MORE``, bytes
    from ``good_end`` that must be present to decide.
    """

    end: ScanEnd
    good_end: int
    entries: int
    reason: str = ""
    needed: int = 0


class EntryScanner:
    """Iterate over the payloads of the entries in ``data``; then read :attr:`outcome`.

    ``data`` holds entries only (no file header).  Yielded payloads are memoryviews
    into ``data``, valid as long as it is; copy what you keep.  ``base_offset`` is
    the file offset of ``data[0]``, so offsets in the outcome are file offsets.
    ``at_eof`` says whether ``data`` runs to the end of the file; when it is false, an
    entry cut by the end of ``data`` ends the scan with ``NEED_MORE`` instead of
    ``TORN``.
    """

    def __init__(self, data: bytes | bytearray | memoryview, *, at_eof: bool = True, base_offset: int = 0) -> None:
        self._data = data
        self._at_eof = at_eof
        self._base_offset = base_offset
        self._outcome: ScanOutcome | None = None

    @property
    def outcome(self) -> ScanOutcome:
        """How the scan ended; available once iteration has finished."""
        if self._outcome is None:
            raise RuntimeError("the scan has not finished: iterate over the scanner first")
        return self._outcome

    def __iter__(self) -> Iterator[memoryview]:
        view = memoryview(self._data).cast("B")
        size = len(view)
        position = 0
        entries = 0
        while True:
            remaining = size - position
            if remaining == 0:
                if self._at_eof:
                    self._stop(ScanEnd.CLEAN, position, entries)
                else:
                    self._stop(ScanEnd.NEED_MORE, position, entries, needed=ENTRY_HEADER_SIZE)
                return
            if remaining < ENTRY_HEADER_SIZE:
                if self._at_eof:
                    reason = f"entry header cut after {remaining} of {ENTRY_HEADER_SIZE} bytes"
                    self._stop(ScanEnd.TORN, position, entries, reason)
                else:
                    self._stop(ScanEnd.NEED_MORE, position, entries, needed=ENTRY_HEADER_SIZE)
                return
            length, checksum = _ENTRY_HEADER.unpack_from(view, position)
            if length == 0 or length > MAX_ENTRY_LENGTH:
                reason = f"impossible entry length {length}"
                if remaining > ENTRY_HEADER_SIZE:
                    self._stop(ScanEnd.CORRUPT, position, entries, reason)
                elif self._at_eof:
                    self._stop(ScanEnd.TORN, position, entries, reason + " in the last bytes of the file")
                else:
                    self._stop(ScanEnd.NEED_MORE, position, entries, needed=ENTRY_HEADER_SIZE + 1)
                return
            entry_size = ENTRY_HEADER_SIZE + length
            if remaining < entry_size:
                if self._at_eof:
                    reason = f"payload cut after {remaining - ENTRY_HEADER_SIZE} of {length} bytes"
                    self._stop(ScanEnd.TORN, position, entries, reason)
                else:
                    self._stop(ScanEnd.NEED_MORE, position, entries, needed=entry_size)
                return
            payload = view[position + ENTRY_HEADER_SIZE : position + entry_size]
            if crc32c.crc32c(payload) != checksum:
                payload.release()
                reason = f"checksum mismatch in an entry of {length} bytes"
                if remaining > entry_size:
                    self._stop(ScanEnd.CORRUPT, position, entries, reason)
                elif self._at_eof:
                    self._stop(ScanEnd.TORN, position, entries, reason + " ending at the end of the file")
                else:
                    self._stop(ScanEnd.NEED_MORE, position, entries, needed=entry_size + 1)
                return
            yield payload
            position += entry_size
            entries += 1

    def _stop(self, end: ScanEnd, position: int, entries: int, reason: str = "", needed: int = 0) -> None:
        self._outcome = ScanOutcome(end, self._base_offset + position, entries, reason, needed)
