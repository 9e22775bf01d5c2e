"""Snapshots: atomic replacement, incremental writing, incomplete and corrupt files."""

from __future__ import annotations

import os

import pytest
import trio

from respkv.persistence.exceptions import BadFileHeader, CorruptSnapshot
from respkv.persistence.framing import FILE_HEADER_SIZE, LOG_FORMAT, SNAPSHOT_FORMAT, frame_entry
from respkv.persistence.snapshot import SnapshotWriter, read_snapshot, write_snapshot

RECORDS = [b"key:1=one", b"", b"v" * 1000, bytes(range(256))]


def load(path, **options):
    return list(read_snapshot(str(path), **options))


def test_write_and_read_back(tmp_path):
    path = tmp_path / "snapshot.1"
    info = write_snapshot(str(path), RECORDS)
    assert (info.entries, info.size) == (4, path.stat().st_size)
    assert path.read_bytes().startswith(SNAPSHOT_FORMAT.header)
    assert not (tmp_path / "snapshot.1.tmp").exists()
    loaded = read_snapshot(str(path))
    assert list(loaded) == RECORDS  # an empty record is fine: the kind byte frames it
    assert loaded.finished and loaded.entries == 4


def test_an_empty_snapshot_has_only_the_end_marker(tmp_path):
    path = tmp_path / "snapshot.1"
    write_snapshot(str(path), [])
    assert load(path) == []


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_chunked_reading(tmp_path, chunk_size):
    path = tmp_path / "snapshot.1"
    write_snapshot(str(path), RECORDS * 5, flush_bytes=100)
    assert load(path, chunk_size=chunk_size) == RECORDS * 5


async def test_incremental_writing_with_io_in_a_worker_thread(tmp_path):
    path = tmp_path / "snapshot.2"
    writer = SnapshotWriter(str(path))
    assert not os.path.exists(writer.temporary_path)  # no I/O until the first flush
    with trio.fail_after(10):
        for chunk in range(10):
            for index in range(100):
                writer.add(b"%d:%d" % (chunk, index))
            assert writer.buffered_bytes > 0
            await trio.to_thread.run_sync(writer.flush)
            assert writer.buffered_bytes == 0
            assert not path.exists()
        info = await trio.to_thread.run_sync(writer.finish)
    assert info.entries == 1000 == writer.entries
    assert load(path) == [b"%d:%d" % (c, i) for c in range(10) for i in range(100)]


def test_a_crash_before_the_rename_leaves_the_old_snapshot(tmp_path):
    path = tmp_path / "snapshot.1"
    write_snapshot(str(path), [b"old"])
    old = path.read_bytes()
    writer = SnapshotWriter(str(path))
    writer.add(b"new")
    writer.flush()
    # "crash": the process dies here; the temporary file stays, the snapshot is old.
    assert path.read_bytes() == old and load(path) == [b"old"]
    assert os.path.exists(writer.temporary_path)
    # A later writer of the same name starts over from an empty temporary file.
    write_snapshot(str(path), [b"newer"])
    assert load(path) == [b"newer"]
    assert not os.path.exists(writer.temporary_path)


def test_abort_and_context_manager_remove_the_temporary_file(tmp_path):
    path = tmp_path / "snapshot.1"
    with pytest.raises(KeyError):
        with SnapshotWriter(str(path)) as writer:
            writer.add(b"x")
            writer.flush()
            raise KeyError("producer failed")
    assert not os.path.exists(writer.temporary_path) and not path.exists()
    with pytest.raises(ValueError, match="finished or aborted"):
        writer.add(b"y")
    with pytest.raises(RuntimeError, match="without finish"):
        with SnapshotWriter(str(path)) as writer:
            writer.add(b"x")


def test_a_snapshot_cut_anywhere_is_incomplete(tmp_path):
    path = tmp_path / "snapshot.1"
    write_snapshot(str(path), RECORDS)
    whole = path.read_bytes()
    entry_ends = {FILE_HEADER_SIZE}
    for record in RECORDS:
        entry_ends.add(max(entry_ends) + len(frame_entry(b"D" + record)))
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        with pytest.raises(CorruptSnapshot) as caught:
            load(path, chunk_size=64)
        assert "incomplete" in str(caught.value), cut
        assert str(path) in str(caught.value)
        if cut in entry_ends:  # cut exactly between entries: the end marker is missing
            assert "no end marker" in str(caught.value)
            assert caught.value.offset == cut
    assert path.stat().st_size == len(whole) - 1  # never truncated


def test_a_flipped_byte_is_corrupt_naming_the_offset(tmp_path):
    path = tmp_path / "snapshot.1"
    write_snapshot(str(path), RECORDS)
    data = bytearray(path.read_bytes())
    second = FILE_HEADER_SIZE + len(frame_entry(b"D" + RECORDS[0]))
    data[second + 8] ^= 0x10  # the kind byte of the second entry
    path.write_bytes(data)
    with pytest.raises(CorruptSnapshot) as caught:
        load(path)
    assert caught.value.offset == second and f"byte offset {second}" in str(caught.value)
    assert "checksum" in caught.value.reason


def test_unknown_kind_wrong_count_and_data_after_the_end_are_corrupt(tmp_path):
    path = tmp_path / "snapshot.1"
    header = SNAPSHOT_FORMAT.header
    path.write_bytes(header + frame_entry(b"Xwhat"))
    with pytest.raises(CorruptSnapshot, match="unknown entry kind"):
        load(path)
    path.write_bytes(header + frame_entry(b"Done") + frame_entry(b"E" + (2).to_bytes(8, "little")))
    with pytest.raises(CorruptSnapshot, match="counts 2 records, the file holds 1"):
        load(path)
    end = frame_entry(b"E" + (0).to_bytes(8, "little"))
    path.write_bytes(header + end + frame_entry(b"Dlate"))
    with pytest.raises(CorruptSnapshot, match="after the end marker") as caught:
        load(path)
    assert caught.value.offset == FILE_HEADER_SIZE + len(end)


def test_a_log_is_not_a_snapshot(tmp_path):
    path = tmp_path / "snapshot.1"
    path.write_bytes(LOG_FORMAT.header)
    with pytest.raises(BadFileHeader, match="not a respkv snapshot"):
        load(path)
