"""Entry framing and the scanner: round trips, torn tails, corruption, chunked reads."""

from __future__ import annotations

import os
import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.persistence.files import FileEntryReader
from respkv.persistence.framing import (
    ENTRY_HEADER_SIZE,
    FILE_HEADER_SIZE,
    LOG_FORMAT,
    MAX_ENTRY_LENGTH,
    SNAPSHOT_FORMAT,
    EntryScanner,
    HeaderState,
    ScanEnd,
    append_entries,
    append_entry,
    check_file_header,
    frame_entry,
)

PAYLOADS = [b"a", b"hello world", bytes(range(256)) * 3, b"\x00" * 17]
SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None)


def scan(data, **options):
    scanner = EntryScanner(data, **options)
    payloads = [bytes(payload) for payload in scanner]
    return payloads, scanner.outcome


def framed(payloads):
    return b"".join(frame_entry(payload) for payload in payloads)


def test_entry_layout_is_length_crc_payload():
    entry = frame_entry(b"abc")
    assert entry == struct.pack("<II", 3, crc32c.crc32c(b"abc")) + b"abc"


def test_append_entry_with_parts_frames_their_concatenation():
    buffer = bytearray(b"prefix")
    assert append_entry(buffer, b"D", b"value") == ENTRY_HEADER_SIZE + 6
    assert bytes(buffer) == b"prefix" + frame_entry(b"Dvalue")


@pytest.mark.parametrize("parts", [(), (b"",), (b"", b"")])
def test_empty_payload_is_refused(parts):
    with pytest.raises(ValueError, match="empty"):
        append_entry(bytearray(), *parts)


def test_oversized_payload_is_refused_before_reading_it():
    class Huge:  # claims a length past the bound; its bytes are never touched
        def __len__(self):
            return MAX_ENTRY_LENGTH + 1

    buffer = bytearray()
    with pytest.raises(ValueError, match="limit"):
        append_entry(buffer, b"D", Huge())
    assert buffer == b""


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=30))
def test_any_list_of_payloads_round_trips(payloads):
    payloads_out, outcome = scan(framed(payloads))
    assert payloads_out == payloads
    assert outcome.end is ScanEnd.CLEAN
    assert outcome.entries == len(payloads)
    assert outcome.good_end == len(framed(payloads))


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(1, 700))
def test_chunked_file_reader_matches_a_whole_scan(tmp_path_factory, payloads, chunk_size):
    path = tmp_path_factory.mktemp("chunks") / "entries"
    data = framed(payloads)
    path.write_bytes(b"H" * 5 + data)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = FileEntryReader(fd, 5, 5 + len(data), chunk_size=chunk_size)
        assert [bytes(payload) for payload in reader] == payloads
    finally:
        os.close(fd)
    assert reader.outcome.end is ScanEnd.CLEAN
    assert reader.outcome.good_end == 5 + len(data)


def test_base_offset_shifts_reported_offsets():
    data = framed([b"one", b"two"])
    _, outcome = scan(data, base_offset=100)
    assert outcome.good_end == 100 + len(data)


@pytest.mark.parametrize("earlier", [[], [b"first"], [b"first", b"second entry", b"x" * 40]])
def test_torn_tail_at_every_cut_of_the_last_entry(earlier):
    head = framed(earlier)
    last = frame_entry(b"the last entry, cut")
    for cut in range(1, len(last)):
        payloads, outcome = scan(head + last[:cut])
        assert payloads == earlier, cut
        assert outcome.end is ScanEnd.TORN, cut
        assert outcome.good_end == len(head), cut
        assert outcome.entries == len(earlier)
        assert outcome.reason


def test_torn_reasons_say_which_part_is_cut():
    last = frame_entry(b"payload")
    assert "header cut after 3 of 8" in scan(last[:3])[1].reason
    assert "payload cut after 2 of 7" in scan(last[:10])[1].reason


def test_last_entry_failing_its_checksum_at_the_end_is_torn():
    data = bytearray(framed([b"good", b"last one"]))
    data[-1] ^= 0xFF
    payloads, outcome = scan(bytes(data))
    assert payloads == [b"good"]
    assert outcome.end is ScanEnd.TORN
    assert outcome.good_end == len(frame_entry(b"good"))
    assert "checksum" in outcome.reason


@pytest.mark.parametrize("flip_at", ["length", "crc", "payload"])
def test_flipped_byte_in_a_middle_entry_is_corrupt(flip_at):
    first, middle, last = frame_entry(b"first"), frame_entry(b"middle entry"), frame_entry(b"l" * 300)
    data = bytearray(first + middle + last)
    position = len(first) + {"length": 0, "crc": 5, "payload": ENTRY_HEADER_SIZE + 4}[flip_at]
    data[position] ^= 0x40
    payloads, outcome = scan(bytes(data))
    assert payloads == [b"first"]
    assert outcome.end is ScanEnd.CORRUPT
    assert outcome.good_end == len(first)


def test_length_flip_that_stays_in_bounds_reads_as_corrupt_or_torn_never_as_data():
    first, middle = frame_entry(b"first"), frame_entry(b"m" * 20)
    for delta in (-19, -1, 1, 2, 10):
        data = bytearray(first + middle + frame_entry(b"last"))
        struct.pack_into("<I", data, len(first), 20 + delta)
        payloads, outcome = scan(bytes(data))
        assert payloads == [b"first"]
        assert outcome.end in (ScanEnd.CORRUPT, ScanEnd.TORN)
        assert outcome.good_end == len(first)


def test_known_limit_a_length_damaged_to_run_past_the_end_reads_as_torn():
    # Documented in framing: indistinguishable from a torn tail; the drop is reported.
    first, middle = frame_entry(b"first"), frame_entry(b"middle entry")
    data = bytearray(first + middle + frame_entry(b"last"))
    data[len(first) + 3] ^= 0x40  # length + 1 GiB, still under the bound
    payloads, outcome = scan(bytes(data))
    assert payloads == [b"first"]
    assert outcome.end is ScanEnd.TORN
    assert outcome.good_end == len(first)


def test_huge_announced_length_with_data_after_it_is_corrupt():
    data = frame_entry(b"ok") + struct.pack("<II", 0xFFFFFFFF, 0) + b"more bytes"
    payloads, outcome = scan(data)
    assert payloads == [b"ok"]
    assert outcome.end is ScanEnd.CORRUPT
    assert "impossible entry length 4294967295" in outcome.reason


def test_huge_announced_length_as_the_last_bytes_is_torn():
    data = frame_entry(b"ok") + struct.pack("<II", 0xFFFFFFFF, 0)
    _, outcome = scan(data)
    assert outcome.end is ScanEnd.TORN
    assert outcome.good_end == len(frame_entry(b"ok"))


def test_plausible_length_past_the_end_is_torn_without_allocating(tmp_path):
    # 1 GiB announced in a file of a few bytes: the reader reads only what is there.
    path = tmp_path / "tiny"
    path.write_bytes(frame_entry(b"ok") + struct.pack("<II", 1 << 30, 0) + b"tail")
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = FileEntryReader(fd, 0, os.fstat(fd).st_size, chunk_size=4)
        assert [bytes(payload) for payload in reader] == [b"ok"]
    finally:
        os.close(fd)
    assert reader.outcome.end is ScanEnd.TORN
    assert "payload cut after 4 of 1073741824" in reader.outcome.reason


def test_zero_length_entries_are_corrupt():
    # A zero-filled block after a crash must not read as empty entries.
    _, outcome = scan(frame_entry(b"ok") + bytes(64))
    assert outcome.end is ScanEnd.CORRUPT
    assert outcome.good_end == len(frame_entry(b"ok"))


def test_not_at_eof_asks_for_the_rest_of_an_entry():
    entry = frame_entry(b"0123456789")
    for cut in range(len(entry)):
        _, outcome = scan(entry[:cut], at_eof=False)
        assert outcome.end is ScanEnd.NEED_MORE
        assert outcome.good_end == 0
        assert cut < outcome.needed <= len(entry)


def test_outcome_before_iteration_is_an_error():
    with pytest.raises(RuntimeError):
        EntryScanner(b"").outcome


def test_file_headers():
    assert len(LOG_FORMAT.header) == FILE_HEADER_SIZE == len(SNAPSHOT_FORMAT.header)
    assert LOG_FORMAT.header == b"RESPKV-LOG\x00\x01"
    assert check_file_header(LOG_FORMAT.header + b"entries", LOG_FORMAT) is HeaderState.COMPLETE
    for cut in range(FILE_HEADER_SIZE):
        assert check_file_header(LOG_FORMAT.header[:cut], LOG_FORMAT) is HeaderState.CUT
    with pytest.raises(ValueError, match="not a respkv commit log"):
        check_file_header(SNAPSHOT_FORMAT.header, LOG_FORMAT)
    with pytest.raises(ValueError, match="format version 2"):
        check_file_header(b"RESPKV-LOG\x00\x02", LOG_FORMAT)
    with pytest.raises(ValueError, match="too short"):
        check_file_header(b"REDIS", LOG_FORMAT)


def test_append_entries_frames_each_payload_as_append_entry_does():
    payloads = [b"a", b"xyz" * 100, bytes(range(256))]
    one_by_one = bytearray()
    for payload in payloads:
        append_entry(one_by_one, payload)
    batched = bytearray()
    assert append_entries(batched, iter(payloads)) == 3
    assert batched == one_by_one
    with pytest.raises(ValueError):
        append_entries(bytearray(), [b"ok", b""])
