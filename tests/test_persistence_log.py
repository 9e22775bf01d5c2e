"""The commit log: group commit, fsync policies, write errors, and loading with
torn tails and corrupt entries."""

from __future__ import annotations

import errno
import os
import struct
import tracemalloc

import pytest
import trio

from respkv.persistence.exceptions import BadFileHeader, CorruptLog, LogWriteError, TornLog
from respkv.persistence.framing import FILE_HEADER_SIZE, LOG_FORMAT, SNAPSHOT_FORMAT, frame_entry
from respkv.persistence.log import CommitLog, FsyncPolicy, read_log

PAYLOADS = [b"SET a 1", b"x" * 300, b"DEL a", bytes(range(256))]


class CountingIO:
    """Test doubles for CommitLog's injectable write and fsync: the real calls,
    counted, optionally cut into small writes."""

    def __init__(self, max_write: int | None = None) -> None:
        self.max_write = max_write
        self.writes: list[int] = []
        self.fsyncs = 0

    def write(self, fd, data):
        if self.max_write is not None:
            data = data[: self.max_write]
        written = os.write(fd, data)
        self.writes.append(written)
        return written

    def fsync(self, fd):
        self.fsyncs += 1
        os.fsync(fd)


def load(path, **options):
    loaded = read_log(str(path), **options)
    return list(loaded), loaded


def write_log(path, payloads):
    log = CommitLog.create(str(path), "no")
    for payload in payloads:
        log.append(payload)
    log.close()
    return path.read_bytes()


# -- writing ----------------------------------------------------------------------------


def test_create_writes_the_header_and_appends_load_back(tmp_path):
    path = tmp_path / "log.1"
    log = CommitLog.create(str(path), FsyncPolicy.NO)
    assert path.read_bytes() == LOG_FORMAT.header
    for payload in PAYLOADS:
        log.append(payload)
    log.commit()
    log.close()
    assert path.read_bytes() == LOG_FORMAT.header + b"".join(frame_entry(p) for p in PAYLOADS)
    payloads, loaded = load(path)
    assert payloads == PAYLOADS
    assert loaded.finished and loaded.entries == 4 and loaded.truncation is None


def test_append_only_buffers_and_commit_writes_once(tmp_path):
    path = tmp_path / "log.1"
    io = CountingIO()
    log = CommitLog.create(str(path), "no", write=io.write, fsync=io.fsync)
    for payload in PAYLOADS * 25:
        log.append(payload)
    assert path.stat().st_size == FILE_HEADER_SIZE
    assert io.writes == []
    pending = log.pending_bytes
    assert log.commit() == pending
    assert io.writes == [pending]
    assert path.stat().st_size == FILE_HEADER_SIZE + pending == log.size
    assert log.pending_bytes == 0
    assert log.commit() == 0 and len(io.writes) == 1  # nothing pending: no write
    log.close()


def test_commit_loops_over_partial_writes(tmp_path):
    path = tmp_path / "log.1"
    io = CountingIO(max_write=7)
    log = CommitLog.create(str(path), "no", write=io.write)
    for payload in PAYLOADS:
        log.append(payload)
    pending = log.pending_bytes
    log.commit()
    assert len(io.writes) == -(-pending // 7)
    log.close()
    assert load(path)[0] == PAYLOADS


def test_always_fsyncs_in_commit(tmp_path):
    io = CountingIO()
    log = CommitLog.create(str(tmp_path / "log.1"), "always", write=io.write, fsync=io.fsync)
    log.append(b"one")
    log.append(b"two")
    log.commit()
    assert io.fsyncs == 1 and log.unsynced_bytes == 0
    log.commit()  # nothing new: no fsync
    assert io.fsyncs == 1
    log.append(b"three")
    log.commit()
    assert io.fsyncs == 2
    assert log.statistics().last_fsync_time is not None
    log.close()
    assert io.fsyncs == 2  # close had nothing left to sync


def test_no_never_fsyncs_in_commit_but_close_does(tmp_path):
    io = CountingIO()
    log = CommitLog.create(str(tmp_path / "log.1"), "no", write=io.write, fsync=io.fsync)
    for _ in range(5):
        log.append(b"entry")
        log.commit()
    assert io.fsyncs == 0
    assert log.unsynced_bytes == 5 * len(frame_entry(b"entry"))
    assert not log.fsync_due
    log.close()
    assert io.fsyncs == 1


# The fsync loop's fsync runs in a worker thread, which trio's autojump clock does not
# wait for; these tests run on the real clock with a short interval instead.
INTERVAL = 0.05


async def wait_until(condition):
    while not condition():
        await trio.sleep(INTERVAL / 5)


async def test_everysec_fsyncs_once_per_interval_in_a_thread_when_something_was_written(tmp_path):
    io = CountingIO()
    log = CommitLog.create(str(tmp_path / "log.1"), "everysec", write=io.write, fsync=io.fsync)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: log.run_fsync_loop(interval=INTERVAL, task_status=task_status))
            await trio.sleep(5 * INTERVAL)
            assert io.fsyncs == 0  # nothing written
            log.append(b"a")
            log.commit()
            assert io.fsyncs == 0  # commit does not fsync under everysec
            assert log.fsync_due
            await wait_until(lambda: log.statistics().fsyncs == 1)  # recorded after the thread's fsync
            assert io.fsyncs == 1
            assert not log.fsync_due and log.statistics().last_fsync_time is not None
            for _ in range(3):  # several commits within one interval: one fsync
                log.append(b"b")
                log.commit()
            await wait_until(lambda: not log.fsync_due)
            assert io.fsyncs == 2
            await trio.sleep(5 * INTERVAL)
            assert io.fsyncs == 2
            nursery.cancel_scope.cancel()
    log.close()


async def test_fsync_loop_is_for_everysec_only(tmp_path):
    log = CommitLog.create(str(tmp_path / "log.1"), "always")
    with pytest.raises(ValueError, match="everysec"):
        await log.run_fsync_loop()
    log.close()


def test_write_error_on_a_full_device_is_kept_and_retried(tmp_path):
    # /dev/full fails every write with ENOSPC: a real I/O error.
    full = os.open("/dev/full", os.O_WRONLY)
    log = CommitLog(full, "/dev/full", FsyncPolicy.NO, size=FILE_HEADER_SIZE)
    log.append(b"first")
    with pytest.raises(LogWriteError) as caught:
        log.commit()
    assert caught.value.errno == errno.ENOSPC and caught.value.operation == "write"
    assert "/dev/full" in str(caught.value)
    assert log.failed and log.write_status == "err"
    assert log.last_error.errno == errno.ENOSPC
    stats = log.statistics()
    assert (stats.write_status, stats.last_error_errno) == ("err", errno.ENOSPC)
    assert stats.last_error_strerror == os.strerror(errno.ENOSPC)
    assert stats.pending_bytes == len(frame_entry(b"first"))
    log.append(b"second")  # still buffered during the failure
    with pytest.raises(LogWriteError):
        log.commit()  # keeps refusing
    # The disk "gets space": the same descriptor now refers to a real file.
    path = tmp_path / "log.1"
    good = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(good, LOG_FORMAT.header)
    os.dup2(good, full)
    os.close(good)
    assert log.commit() == len(frame_entry(b"first") + frame_entry(b"second"))
    assert not log.failed and log.write_status == "ok"
    assert log.last_error.errno == errno.ENOSPC  # kept for INFO
    log.close()
    assert load(path)[0] == [b"first", b"second"]


def test_a_write_failing_after_a_partial_write_resumes_where_the_file_ends(tmp_path):
    path = tmp_path / "log.1"
    state = {"fail": True}

    def write(fd, data):
        if state["fail"] and len(data) < 20:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return os.write(fd, data[:13] if state["fail"] else data)

    log = CommitLog.create(str(path), "no", write=write)
    for payload in PAYLOADS:
        log.append(payload)
    total = log.pending_bytes
    with pytest.raises(LogWriteError):
        log.commit()
    assert 0 < path.stat().st_size - FILE_HEADER_SIZE < total
    assert log.size == path.stat().st_size
    state["fail"] = False
    log.commit()
    log.close()
    assert load(path)[0] == PAYLOADS


def test_fsync_error_is_kept_and_retried_by_commit(tmp_path):
    # fsync of /dev/null fails with EINVAL, another real error; writes succeed.
    null = os.open("/dev/null", os.O_WRONLY)
    log = CommitLog(null, "/dev/null", FsyncPolicy.ALWAYS, size=FILE_HEADER_SIZE)
    log.append(b"entry")
    with pytest.raises(LogWriteError) as caught:
        log.commit()
    assert caught.value.operation == "fsync" and caught.value.errno == errno.EINVAL
    assert log.failed and log.pending_bytes == 0 and log.unsynced_bytes > 0
    with pytest.raises(LogWriteError):
        log.commit()  # nothing to write, but the fsync is retried
    path = tmp_path / "log.1"
    good = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(good, null)
    os.close(good)
    log.commit()
    assert not log.failed and log.unsynced_bytes == 0
    log.close()


async def test_everysec_loop_records_fsync_errors_and_keeps_running():
    null = os.open("/dev/null", os.O_WRONLY)
    log = CommitLog(null, "/dev/null", FsyncPolicy.EVERYSEC, size=FILE_HEADER_SIZE)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: log.run_fsync_loop(interval=INTERVAL, task_status=task_status))
            log.append(b"entry")
            log.commit()
            await wait_until(lambda: log.failed)
            assert log.last_error.errno == errno.EINVAL and log.write_status == "err"
            with pytest.raises(LogWriteError):
                log.commit()
            await trio.sleep(3 * INTERVAL)  # still retrying, still failing
            assert log.failed and log.fsync_due
            nursery.cancel_scope.cancel()
    with pytest.raises(LogWriteError):
        log.close()  # closes the descriptor anyway
    with pytest.raises(OSError):
        os.fstat(null)


def test_statistics_count_what_was_written(tmp_path):
    log = CommitLog.create(str(tmp_path / "log.1"), "always")
    log.append(b"one")
    log.append(b"two")
    log.commit()
    log.append(b"three")
    stats = log.statistics()
    assert stats.entries_written == 2 and stats.pending_entries == 1
    assert stats.bytes_written == 2 * len(frame_entry(b"one"))
    assert stats.size == FILE_HEADER_SIZE + stats.bytes_written
    assert stats.pending_bytes == len(frame_entry(b"three"))
    assert (stats.commits, stats.fsyncs, stats.policy, stats.write_status) == (1, 1, "always", "ok")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append(b"late")


def test_open_appends_to_an_existing_log(tmp_path):
    path = tmp_path / "log.1"
    write_log(path, PAYLOADS[:2])
    log = CommitLog.open(str(path), "no")
    assert log.size == path.stat().st_size
    log.append(PAYLOADS[2])
    log.close()
    assert load(path)[0] == PAYLOADS[:3]


def test_open_refuses_another_kind_of_file(tmp_path):
    path = tmp_path / "log.1"
    path.write_bytes(SNAPSHOT_FORMAT.header)
    with pytest.raises(BadFileHeader, match="log.1"):
        CommitLog.open(str(path), "no")
    with pytest.raises(BadFileHeader, match="not a respkv commit log"):
        list(read_log(str(path)))


# -- loading ----------------------------------------------------------------------------


def test_an_empty_or_header_only_file_is_an_empty_log(tmp_path):
    path = tmp_path / "log.1"
    path.write_bytes(b"")
    assert load(path)[0] == []
    path.write_bytes(LOG_FORMAT.header)
    payloads, loaded = load(path)
    assert payloads == [] and loaded.finished and loaded.size == FILE_HEADER_SIZE


@pytest.mark.parametrize("earlier", [0, 1, 3])
def test_torn_tail_at_every_cut_is_truncated_at_the_last_good_entry(tmp_path, earlier):
    path = tmp_path / "log.1"
    whole = write_log(path, PAYLOADS[:earlier] + [b"last entry"])
    good_end = len(whole) - len(frame_entry(b"last entry"))
    for cut in range(good_end + 1, len(whole)):
        path.write_bytes(whole[:cut])
        payloads, loaded = load(path)
        assert payloads == PAYLOADS[:earlier], cut
        assert loaded.truncation.offset == good_end and loaded.truncation.kind == "torn"
        assert loaded.truncation.dropped_bytes == cut - good_end
        assert path.stat().st_size == good_end == loaded.size
        line = loaded.truncation.describe()
        assert str(path) in line and f"byte offset {good_end}" in line and f"{cut - good_end} bytes" in line
    log = CommitLog.open(str(path), "no")  # appending goes on after the truncation
    log.append(b"after")
    log.close()
    assert load(path)[0] == PAYLOADS[:earlier] + [b"after"]


def test_torn_file_header_truncates_to_empty_and_open_rewrites_it(tmp_path):
    path = tmp_path / "log.1"
    for cut in range(1, FILE_HEADER_SIZE):
        path.write_bytes(LOG_FORMAT.header[:cut])
        payloads, loaded = load(path)
        assert payloads == [] and loaded.truncation.offset == 0 and path.stat().st_size == 0
    log = CommitLog.open(str(path), "no")
    log.append(b"x")
    log.close()
    assert load(path)[0] == [b"x"]


def test_torn_tail_without_aof_load_truncated_is_an_error_and_the_file_is_kept(tmp_path):
    path = tmp_path / "log.1"
    whole = write_log(path, PAYLOADS)
    path.write_bytes(whole[:-3])
    loaded = read_log(str(path), truncate_torn=False)
    seen = []
    with pytest.raises(TornLog) as caught:
        for payload in loaded:
            seen.append(payload)
    assert seen == PAYLOADS[:-1]
    offset = len(whole) - len(frame_entry(PAYLOADS[-1]))
    assert caught.value.offset == offset
    assert str(path) in str(caught.value) and "aof-load-truncated" in str(caught.value)
    assert path.read_bytes() == whole[:-3]


def corrupt_middle(path):
    whole = bytearray(write_log(path, PAYLOADS))
    offset = FILE_HEADER_SIZE + len(frame_entry(PAYLOADS[0]))
    whole[offset + 20] ^= 0x01  # a payload byte of the second entry
    path.write_bytes(whole)
    return offset, bytes(whole)


def test_flipped_byte_in_a_middle_entry_raises_corrupt_log_naming_the_offset(tmp_path):
    path = tmp_path / "log.3"
    offset, data = corrupt_middle(path)
    with pytest.raises(CorruptLog) as caught:
        load(path)
    message = str(caught.value)
    assert caught.value.offset == offset
    assert str(path) in message and f"byte offset {offset}" in message
    assert "aof-load-corrupt-truncate" in message and "checksum" in message
    assert path.read_bytes() == data  # never truncated without the option


def test_corrupt_truncate_loads_up_to_the_corrupt_entry(tmp_path):
    path = tmp_path / "log.3"
    offset, data = corrupt_middle(path)
    payloads, loaded = load(path, truncate_corrupt=True)
    assert payloads == PAYLOADS[:1]
    assert loaded.truncation.kind == "corrupt" and loaded.truncation.offset == offset
    assert loaded.truncation.dropped_bytes == len(data) - offset
    assert path.stat().st_size == offset


def test_torn_tail_of_a_log_that_is_not_the_last_counts_as_corruption(tmp_path):
    path = tmp_path / "log.1"
    whole = write_log(path, PAYLOADS)
    path.write_bytes(whole[:-1])
    with pytest.raises(CorruptLog, match="later logs follow"):
        load(path, last=False)
    assert load(path, last=False, truncate_corrupt=True)[0] == PAYLOADS[:-1]


def test_huge_announced_length_in_a_tiny_file(tmp_path):
    path = tmp_path / "log.1"
    ok = LOG_FORMAT.header + frame_entry(b"ok")
    path.write_bytes(ok + struct.pack("<II", (1 << 30) - 1, 0) + b"abc")  # plausible: torn
    payloads, loaded = load(path, chunk_size=16)
    assert payloads == [b"ok"] and loaded.truncation.kind == "torn" and path.stat().st_size == len(ok)
    path.write_bytes(ok + struct.pack("<II", 0xFFFFFFF0, 0) + b"abc")  # impossible: corrupt
    with pytest.raises(CorruptLog, match="impossible entry length"):
        load(path)


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 1 << 20])
def test_chunk_size_does_not_change_the_result(tmp_path, chunk_size):
    path = tmp_path / "log.1"
    whole = write_log(path, PAYLOADS * 3)
    path.write_bytes(whole[:-2])
    payloads, loaded = load(path, chunk_size=chunk_size)
    assert payloads == (PAYLOADS * 3)[:-1]
    assert loaded.truncation.offset == len(whole) - len(frame_entry(PAYLOADS[-1]))


def test_loading_memory_stays_near_one_chunk(tmp_path):
    path = tmp_path / "log.1"
    log = CommitLog.create(str(path), "no")
    for index in range(2000):
        log.append(index.to_bytes(4, "little") * 512)  # 2 KiB each, 4 MiB in all
    log.close()
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_log(str(path), chunk_size=64 << 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2000
    assert peak < 512 << 10
