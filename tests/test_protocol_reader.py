"""The sans-IO request reader: chunking, pipelining, inline, errors and limits."""

from __future__ import annotations

import pytest

from respkv.protocol.reader import ProtocolError, QueryBufferFull, RequestReader, well_formed


def encode(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%b\r\n" % (len(a), a)
    return out


def feed(reader: RequestReader, data: bytes, out: list | None = None) -> list[list[bytes]]:
    """Hand ``data`` to the reader the way a session does; all requests it yields.

    Like the session, this takes a request only once it is well formed and on the
    first that is not lets the exact path take over from it (``reparse``).  The
    requests go to ``out`` as they come, so a caller sees those before an error.
    """
    out = [] if out is None else out
    batch = reader.parse(data)
    while batch:
        for i, request in enumerate(batch):
            if not well_formed(request):
                batch = reader.reparse(i)
                break
            out.append(request)
        else:
            batch = reader.read_batch() if not reader.idle else []
    return out


def parse_in_chunks(data: bytes, size: int, **kwargs) -> list[list[bytes]]:
    reader = RequestReader(**kwargs)
    out = []
    for i in range(0, len(data), size):
        out.extend(feed(reader, data[i : i + size]))
    return out


PIPELINE = (
    encode(b"SET", b"key:1", b"v" * 100)
    + encode(b"GET", b"key:1")
    + b"PING\r\n"
    + b'SET "a b" \'c d\'\r\n'
    + encode(b"MSET", b"k\r\n1", b"", b"k2", b"\x00\xff")
    + b"\r\n"  # empty inline line: ignored
    + encode(b"ECHO", b"*12345 and $999999999 inside a bulk")
    + b"*0\r\n"  # empty multibulk: ignored
    + encode(b"DEL", b"x")
)
EXPECTED = [
    [b"SET", b"key:1", b"v" * 100],
    [b"GET", b"key:1"],
    [b"PING"],
    [b"SET", b"a b", b"c d"],
    [b"MSET", b"k\r\n1", b"", b"k2", b"\x00\xff"],
    [b"ECHO", b"*12345 and $999999999 inside a bulk"],
    [b"DEL", b"x"],
]


@pytest.mark.parametrize("size", list(range(1, 40)) + [64, 100, 1000, len(PIPELINE)])
def test_every_chunk_size_gives_the_same_requests(size):
    assert parse_in_chunks(PIPELINE, size) == EXPECTED


def test_split_in_the_middle_of_crlf():
    data = encode(b"GET", b"foo")
    for cut in range(1, len(data)):
        reader = RequestReader()
        assert feed(reader, data[:cut]) == []
        assert feed(reader, data[cut:]) == [[b"GET", b"foo"]]


def test_many_pipelined_requests_in_one_read():
    data = b"".join(encode(b"INCR", b"counter:%d" % i) for i in range(1000))
    reader = RequestReader()
    reqs = reader.parse(data)
    assert reader.idle  # one batch, straight from the fast path
    assert len(reqs) == 1000
    assert reqs[999] == [b"INCR", b"counter:999"]


def test_inline_requests_with_lf_only_and_quotes():
    assert parse_in_chunks(b'ping\nECHO "x\\ty"\r\n', 3) == [[b"ping"], [b"ECHO", b"x\ty"]]


def test_fast_path_resumes_after_an_inline_request():
    reader = RequestReader()
    assert feed(reader, b"PING\r\n") == [[b"PING"]]
    assert feed(reader, encode(b"GET", b"a")) == [[b"GET", b"a"]]
    assert reader._exact is False


def test_inline_request_after_multibulk_in_the_same_read():
    reader = RequestReader()
    assert feed(reader, encode(b"GET", b"a") + encode(b"GET", b"b") + b"PING\r\n" + encode(b"GET", b"c")) == [[b"GET", b"a"], [b"GET", b"b"], [b"PING"], [b"GET", b"c"]]


def test_big_bulk_arriving_in_many_reads():
    value = b"y" * 3_000_000
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % len(value) + value + b"\r\n"
    assert parse_in_chunks(data, 65536) == [[b"SET", b"k", value]]


def test_big_array_through_the_exact_path():
    args = [b"MSET"] + [b"k%d" % i for i in range(20000)]
    assert parse_in_chunks(encode(*args), 4096) == [args]


def errors_of(data: bytes, **kwargs) -> tuple[list[list[bytes]], str]:
    reader = RequestReader(**kwargs)
    got = []
    with pytest.raises(ProtocolError) as info:
        feed(reader, data, got)
    return got, str(info.value)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$2147483648\r\n", "invalid bulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
        (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
        (b'SET "abc\r\n', "unbalanced quotes in request"),
        (b"x" * (64 * 1024 + 1), "too big inline request"),
        (b"*" + b"1" * (64 * 1024 + 1), "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * (64 * 1024 + 1), "too big bulk count string"),
    ],
)
def test_malformed_requests_get_redis_reasons(data, reason):
    got, text = errors_of(data)
    assert got == []
    assert text == reason


def test_requests_before_a_malformed_one_are_returned_first():
    got, text = errors_of(encode(b"GET", b"a") + encode(b"GET", b"b") + b"*1\r\nxx\r\n")
    assert got == [[b"GET", b"a"], [b"GET", b"b"]]
    assert text == "expected '$', got 'x'"


def test_announced_sizes_are_never_allocated():
    reader = RequestReader()
    assert feed(reader, b"*2000000000\r\n") == []  # valid header: waits for the elements
    assert reader._exact is True and reader._args == []
    assert feed(reader, b"$3\r\nGET\r\n") == []


def test_bulk_limit_is_configurable():
    _, text = errors_of(b"*1\r\n$2000\r\n", max_bulk=1024)
    assert text == "invalid bulk length"


def test_query_buffer_limit():
    reader = RequestReader(max_query_buffer=1000)
    with pytest.raises(QueryBufferFull):
        feed(reader, b"*1\r\n$5000\r\n" + b"x" * 999)


def test_query_buffer_limit_on_the_fast_path():
    reader = RequestReader(max_query_buffer=1000)
    assert feed(reader, b"*1\r\n$50000\r\n" + b"x" * 500) == []
    with pytest.raises(QueryBufferFull):
        feed(reader, b"x" * 1000)


def test_unauthenticated_limits():
    _, text = errors_of(encode(*[b"a"] * 11), unauthenticated=True)
    assert text == "unauthenticated multibulk length"
    _, text = errors_of(encode(b"AUTH", b"x" * 16385), unauthenticated=True)
    assert text == "unauthenticated bulk length"
    reader = RequestReader(unauthenticated=True)
    assert feed(reader, encode(b"AUTH", b"pw")) == [[b"AUTH", b"pw"]]


def test_partial_request_after_complete_ones_is_kept():
    reader = RequestReader()
    assert feed(reader, encode(b"GET", b"a") + b"*2\r\n$3\r\nGET\r\n") == [[b"GET", b"a"]]
    assert feed(reader, b"$1\r\nb\r\n") == [[b"GET", b"b"]]


def test_a_resp3_set_starting_a_read_is_an_inline_request():
    reader = RequestReader()
    assert feed(reader, b"~1\r\n$1\r\na\r\n") == [[b"~1"], [b"$1"], [b"a"]]


def test_one_request_per_batch_before_auth():
    reader = RequestReader(unauthenticated=True)
    assert reader.parse(encode(b"AUTH", b"pw") + encode(b"GET", b"a")) == [[b"AUTH", b"pw"]]
    reader.unauthenticated = False
    assert reader.read_batch() == [[b"GET", b"a"]]


def test_empty_and_null_multibulk_are_skipped():
    assert parse_in_chunks(b"*0\r\n*-1\r\n" + encode(b"PING"), 100) == [[b"PING"]]


def test_buffered_counts_unparsed_bytes():
    reader = RequestReader()
    assert feed(reader, b"*1\r\n$4\r\nPI") == []
    assert reader.buffered() == len(b"*1\r\n$4\r\nPI")


def test_guard_bounds_foreign_aggregate_headers_anywhere():
    from respkv.protocol.guard import fast_path_safe

    # Announced counts behind map/set/push/attribute bytes, even inside payloads.
    assert not fast_path_safe(b"*2\r\n$6\r\nSTRLEN\r5>536870913\r\n")
    assert not fast_path_safe(b"*1\r\n$5\r\n%9999\r\n")
    assert not fast_path_safe(b"*1\r\n$4\r\n|01\r\n")  # leading zero
    # Binary payloads full of aggregate bytes, without long counts, pass.
    payload = bytes(range(256)).replace(b"\n", b"") * 40
    chunk = b"*2\r\n$3\r\nSET\r\n$%d\r\n%b\r\n" % (len(payload), payload)
    assert fast_path_safe(chunk)
    # A chunk whose only aggregate bytes are headers within the budget passes.
    assert fast_path_safe(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n%1\r\n")


def test_the_bus_guard_bounds_allocation_only():
    """The bus's guard passes what binary records hold by chance (a line feed then
    ``=``, a ``*0``, answers of more than 9,999 elements), which the client guard
    refuses for Redis's error texts, and refuses what could allocate more."""
    from respkv.peer.wire import ANSWER, REQUEST, encode
    from respkv.protocol.guard import bus_chunk_safe, fast_path_safe

    record = b"\x01\x00$\x00\x04\x00\x00\x00\n=\"R\xa2\x01\x00\x00*05\x00" * 3  # a stamp, a "*05"
    frame = encode(REQUEST, 9, b"REPL", [b"key:{06S}:000000013606", b"", record] * 40)
    listing = encode(ANSWER, 10, b"", [b"key:%d" % i for i in range(12_339)])
    for chunk in (frame, listing):
        assert not fast_path_safe(chunk)
        assert bus_chunk_safe(chunk)
    assert bus_chunk_safe(frame[40:], True)
    for chunk in (
        b"*1\r\n$12\r\n>536870913\r\n",  # 4 GB announced inside a payload
        b"*1\r\n$14\r\n*1234567890\r\n",  # more digits than the bus allows
        b"*2\r\n+REPL\r\n+k\r\n",  # simple strings after a CRLF
        b"*3\r\n$1\r\nR\r\n$1\r\n1\r\n$0\r\n\r\n*9999\r\n",  # over the budget
    ):
        assert not bus_chunk_safe(chunk), chunk
