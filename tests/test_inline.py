"""Inline command splitting, checked row by row against a real Redis 7.0.

Each line was sent to the server after an ``RPUSH key marker`` prefix and the
list read back (or the ``unbalanced quotes`` error seen), so the expected
arguments are what Redis itself produced. ``None`` means the line is rejected.
"""

import pytest

from respkv.protocol.inline import _split_quoted, split_inline

# (line without its line terminator, arguments or None)
LINES = [
    # plain whitespace splitting
    (b"PING", [b"PING"]),
    (b"  SET  a   b  ", [b"SET", b"a", b"b"]),
    (b"a\tb", [b"a", b"b"]),
    (b"a\rb", [b"a", b"b"]),
    (b"a\r", [b"a"]),
    # \v and \f separate arguments but do not end an unquoted one
    (b"a\x0bb", [b"a\x0bb"]),
    (b" \x0ba", [b"a"]),
    (b"a\x0c", [b"a\x0c"]),
    (b"a \x0c b", [b"a", b"b"]),
    # double quotes
    (b'"hello world"', [b"hello world"]),
    (b'a "b" c', [b"a", b"b", b"c"]),
    (b'""', [b""]),
    (b'"" ""', [b"", b""]),
    (b'"a\\nb"', [b"a\nb"]),
    (b'"\\r\\t\\b\\a"', [b"\r\t\b\a"]),
    (b'"\\x41\\x4a\\x4A"', [b"AJJ"]),
    (b'"\\xff\\x00"', [b"\xff\x00"]),
    (b'SET k "\\xe2\\x82\\xac"', [b"SET", b"k", "\u20ac".encode()]),
    (b'"\\x4"', [b"x4"]),
    (b'"\\x4g"', [b"x4g"]),
    (b'"\\x4F\\xzz"', [b"Oxzz"]),
    (b'"\\X41"', [b"X41"]),
    (b'"\\q"', [b"q"]),
    (b'"\\\\"', [b"\\"]),
    (b'"\\""', [b'"']),
    (b'"\\\'"', [b"'"]),
    (b"\"a'b\"", [b"a'b"]),
    (b'"a"\tb', [b"a", b"b"]),
    (b'"a"\x0bb', [b"a", b"b"]),
    # single quotes: only \' is an escape
    (b"''", [b""]),
    (b"'a b'", [b"a b"]),
    (b"'a\\'b'", [b"a'b"]),
    (b"'a\\nb'", [b"a\\nb"]),
    (b"'a\"b'", [b'a"b']),
    (b"'\\x41'", [b"\\x41"]),
    # a quote may open mid-argument, and ends it
    (b'a"b c"', [b"ab c"]),
    (b"a'b c'", [b"ab c"]),
    (b'a"b" c', [b"ab", b"c"]),
    # invalid: closing quote glued to more text, or no closing quote
    (b'"a"b', None),
    (b'a"b"c', None),
    (b'"a""b"', None),
    (b"'a'b", None),
    (b'"a', None),
    (b"'a", None),
    (b'"', None),
    (b'"a\\"', None),
    (b'"a\\', None),
    (b"'a\\\\'", None),
    (b'x "unterminated', None),
]

# Blank lines split to nothing (Redis then ignores them without a reply).
BLANK = [b"", b"   ", b"\t \r", b"\x0b\x0c"]

# Redis never hands a line containing NUL to its splitter (its inline reader
# looks for the line end with a C string search, which stops at NUL, so the
# request just waits). These rows pin down the C-string semantics we keep for
# the splitter itself: NUL ends the line outside quotes, and inside quotes it
# is an unterminated quote.
NUL_LINES = [
    (b"a\x00b c", [b"a"]),
    (b'"a"\x00b', [b"a"]),
    (b'"a\x00"', None),
    (b"\x00a", []),
]


@pytest.mark.parametrize("line, expected", LINES)
def test_split(line, expected):
    assert split_inline(line) == expected


@pytest.mark.parametrize("line, expected", LINES)
def test_full_grammar_agrees(line, expected):
    # The quote-aware path must give the same answer on every row, including
    # the ones that normally take the bytes.split() short-cut.
    assert _split_quoted(line) == expected


@pytest.mark.parametrize("line", BLANK)
def test_blank(line):
    assert split_inline(line) == []
    assert _split_quoted(line) == []


@pytest.mark.parametrize("line, expected", NUL_LINES)
def test_nul(line, expected):
    assert split_inline(line) == expected
