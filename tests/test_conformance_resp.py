"""Tests of the conformance harness's raw RESP reply framer and decoder.

The framer decides where one reply ends and the next begins, so every comparison the
harness makes depends on it: each reply type is framed whole, never early (every split
point of every sample is incomplete), never late (trailing bytes are left alone), and
malformed input is refused rather than guessed at.
"""

from __future__ import annotations

import math

import pytest

from conformance.resp import (
    BigNumber,
    ErrorReply,
    ProtocolError,
    Push,
    Status,
    Verbatim,
    decode,
    frame_length,
    split_aggregate,
)

# One complete reply of every type, with the decoded value expected for it.
SAMPLES: list[tuple[str, bytes, object]] = [
    ("simple string", b"+OK\r\n", Status(b"OK")),
    ("empty simple string", b"+\r\n", Status(b"")),
    ("error", b"-ERR unknown command 'x'\r\n", ErrorReply(b"ERR unknown command 'x'")),
    ("integer", b":42\r\n", 42),
    ("negative integer", b":-9223372036854775808\r\n", -9223372036854775808),
    ("bulk string", b"$5\r\nhello\r\n", b"hello"),
    ("empty bulk string", b"$0\r\n\r\n", b""),
    ("bulk string holding CRLF", b"$4\r\n\r\n\r\n\r\n", b"\r\n\r\n"),
    ("binary bulk string", b"$3\r\n\x00\xff*\r\n", b"\x00\xff*"),
    ("null bulk string", b"$-1\r\n", None),
    ("array", b"*2\r\n$1\r\na\r\n:1\r\n", [b"a", 1]),
    ("empty array", b"*0\r\n", []),
    ("null array", b"*-1\r\n", None),
    ("null", b"_\r\n", None),
    ("double", b",3.25\r\n", 3.25),
    ("double exponent", b",1e-5\r\n", 1e-5),
    ("double inf", b",inf\r\n", math.inf),
    ("double -inf", b",-inf\r\n", -math.inf),
    ("boolean true", b"#t\r\n", True),
    ("boolean false", b"#f\r\n", False),
    ("blob error", b"!21\r\nSYNTAX invalid syntax\r\n", ErrorReply(b"SYNTAX invalid syntax")),
    ("verbatim string", b"=15\r\ntxt:Some string\r\n", Verbatim(b"Some string", b"txt")),
    ("big number", b"(3492890328409238509324850943850943825024385\r\n",
     BigNumber(3492890328409238509324850943850943825024385)),
    ("map", b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
     {Status(b"first"): 1, Status(b"second"): 2}),
    ("empty map", b"%0\r\n", {}),
    ("set", b"~3\r\n+a\r\n+b\r\n:1\r\n", {Status(b"a"), Status(b"b"), 1}),
    ("push", b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
     Push([b"message", b"ch", b"hi"])),
    ("attribute then reply", b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n"
     b"*2\r\n:2039123\r\n:9543892\r\n", [2039123, 9543892]),
    ("nested aggregates", b"*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n%1\r\n$1\r\nk\r\n"
     b"~1\r\n_\r\n*0\r\n", [[1, [b"x"]], {b"k": {None}}, []]),
    ("array of nulls", b"*3\r\n$-1\r\n*-1\r\n_\r\n", [None, None, None]),
    ("map with aggregate key", b"%1\r\n*2\r\n:1\r\n:2\r\n+v\r\n", {(1, 2): Status(b"v")}),
]

IDS = [name for name, _, _ in SAMPLES]


@pytest.mark.parametrize(("name", "reply", "value"), SAMPLES, ids=IDS)
def test_complete_reply_is_framed_exactly(name, reply, value):
    assert frame_length(reply) == len(reply)
    assert frame_length(bytearray(reply)) == len(reply)


@pytest.mark.parametrize(("name", "reply", "value"), SAMPLES, ids=IDS)
def test_every_split_point_is_incomplete(name, reply, value):
    for cut in range(len(reply)):
        assert frame_length(reply[:cut]) is None, f"cut at {cut}"


@pytest.mark.parametrize(("name", "reply", "value"), SAMPLES, ids=IDS)
def test_trailing_bytes_are_not_consumed(name, reply, value):
    assert frame_length(reply + b"+NEXT\r\n") == len(reply)
    assert frame_length(reply + b"$100\r\npartial") == len(reply)


@pytest.mark.parametrize(("name", "reply", "value"), SAMPLES, ids=IDS)
def test_start_offset(name, reply, value):
    assert frame_length(b":1\r\n" + reply, 4) == len(reply)


@pytest.mark.parametrize(("name", "reply", "value"), SAMPLES, ids=IDS)
def test_decode(name, reply, value):
    decoded, length = decode(reply)
    assert length == len(reply)
    assert decoded == value
    assert type(decoded) is type(value)


def test_decode_keeps_verbatim_format():
    decoded, _ = decode(b"=8\r\nmkd:# hi\r\n")
    assert decoded == b"# hi" and decoded.format == b"mkd"


def test_decode_nan():
    decoded, _ = decode(b",nan\r\n")
    assert math.isnan(decoded)


def test_decode_incomplete_is_none():
    assert decode(b"*2\r\n:1\r\n") is None
    assert decode(b"") is None


def test_pipelined_replies_are_cut_one_by_one():
    stream = b"".join(reply for _, reply, _ in SAMPLES)
    pos, seen = 0, []
    while pos < len(stream):
        length = frame_length(stream, pos)
        seen.append(stream[pos:pos + length])
        pos += length
    assert seen == [reply for _, reply, _ in SAMPLES]


def test_pipelined_stream_split_at_every_byte():
    stream = b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n%1\r\n+k\r\n_\r\n"
    expected = [b"+OK\r\n", b"$3\r\nabc\r\n", b"*2\r\n:1\r\n%1\r\n+k\r\n_\r\n"]
    for cut in range(len(stream) + 1):
        # Feed the first chunk, then the rest, collecting replies as they complete.
        buffer, out = bytearray(), []
        for chunk in (stream[:cut], stream[cut:]):
            buffer += chunk
            while (length := frame_length(buffer)) is not None:
                out.append(bytes(buffer[:length]))
                del buffer[:length]
        assert out == expected and not buffer, f"cut at {cut}"


def test_deep_nesting_needs_no_recursion():
    depth = 50_000
    reply = b"*1\r\n" * depth + b":7\r\n"
    assert frame_length(reply) == len(reply)
    assert frame_length(reply[:-1]) is None


def test_empty_buffer_is_incomplete():
    assert frame_length(b"") is None
    assert frame_length(b":1\r\n", 4) is None


def test_lone_cr_is_incomplete():
    assert frame_length(b"+OK\r") is None
    assert frame_length(b"$2\r\nab\r") is None


@pytest.mark.parametrize("bad", [
    b"?1\r\n",             # unknown type byte
    b"hello\r\n",          # inline text is not a reply
    b"$abc\r\n",           # length not a number
    b"$-2\r\n",            # negative length other than -1
    b"$ 1\r\nx\r\n",       # padded length
    b"$+1\r\nx\r\n",       # signed length
    b"$\r\n",              # empty length
    b"*-5\r\n",            # negative count
    b"*1_0\r\n",           # underscore digits
    b"%-1\r\n",            # null map
    b"~-1\r\n",            # null set
    b"!-1\r\n",            # null blob error
    b"$3\r\nabcde\r\n",    # blob longer than announced
    b":1.5\r\n",           # non-integer integer
    b":\r\n",              # empty integer
    b"(12a\r\n",           # bad big number
    b"#x\r\n",             # bad boolean
    b"_x\r\n",             # null with payload
    b",one\r\n",           # bad double
    b"=3\r\ntxt\r\n",      # verbatim without format prefix
    b"*2\r\n:1\r\n?\r\n",  # bad element inside an aggregate
    b"*?\r\n",             # streamed aggregates are not supported
])
def test_malformed_input_is_refused(bad):
    with pytest.raises(ProtocolError):
        frame_length(bad)


def test_split_aggregate_array():
    kind, count, elements = split_aggregate(b"*3\r\n$1\r\na\r\n*1\r\n:1\r\n_\r\n")
    assert (kind, count) == ("*", 3)
    assert elements == [b"$1\r\na\r\n", b"*1\r\n:1\r\n", b"_\r\n"]


def test_split_aggregate_map_counts_pairs():
    kind, count, elements = split_aggregate(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n")
    assert (kind, count) == ("%", 2)
    assert elements == [b"+a\r\n", b":1\r\n", b"+b\r\n", b":2\r\n"]


def test_split_aggregate_skips_attribute():
    kind, count, elements = split_aggregate(b"|1\r\n+k\r\n+v\r\n~1\r\n:5\r\n")
    assert (kind, count, elements) == ("~", 1, [b":5\r\n"])


@pytest.mark.parametrize("scalar", [b"+OK\r\n", b"$-1\r\n", b"*-1\r\n", b":1\r\n", b"_\r\n"])
def test_split_aggregate_of_scalar_or_null_is_none(scalar):
    assert split_aggregate(scalar) is None
