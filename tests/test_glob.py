"""Redis glob matching: every row below was checked against a real Redis 7.0.

Case-sensitive rows were checked with KEYS on a server holding the key; the
case-insensitive rows with COMMAND LIST FILTERBY PATTERN (which matches command
names without regard to case), so their subjects are command names.
"""

import pytest

from respkv.keyspace.glob import compile_glob, glob_match

# (pattern, key, matches)
CASE_SENSITIVE = [
    # the basics
    (b"*", b"anything", True),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"hllo", True),
    (b"h*llo", b"heeeello", True),
    (b"h[ae]llo", b"hello", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[a-b]llo", b"hcllo", False),
    (b"hello", b"HELLO", False),
    (b"hello", b"hello!", False),
    # empty keys and empty patterns: only "*" (a KEYS/SCAN short-cut) and ""
    (b"*", b"", True),
    (b"**", b"", False),
    (b"", b"", True),
    (b"", b"a", False),
    (b"?", b"", False),
    (b"**", b"a", True),
    # any byte counts, newlines and NUL included
    (b"a?c", b"a\nc", True),
    (b"a*", b"a\n\n", True),
    (b"a\x00*", b"a\x00b", True),
    (b"?", b"\xff", True),
    # prefix / suffix / infix shapes
    (b"user:*", b"user:", True),
    (b"user:*", b"user", False),
    (b"*:name", b"u:name", True),
    (b"*:name", b":nam", False),
    (b"*mid*", b"mid", True),
    (b"*mid*", b"mi", False),
    (b"a*b", b"ab", True),
    (b"a*b", b"b", False),
    (b"a*a", b"a", False),
    (b"ab*ab", b"ab", False),
    (b"ab*ab", b"abab", True),
    (b"a*b*c", b"aXbYc", True),
    (b"a*b*c", b"acb", False),
    (b"*[0-9]*[0-9]", b"x1y2", True),
    (b"*[0-9]*[0-9]", b"x1y", False),
    (b"*a*a*a*a*a*a*a*a*b", b"a" * 5000, False),
    (b"*a*a*a*a*a*a*a*a*b", b"a" * 5000 + b"b", True),
    # sets: backwards ranges, "!" is not a negation, "^" only first
    (b"[z-a]", b"m", True),
    (b"[!a]", b"!", True),
    (b"[!a]", b"b", False),
    (b"[a^]", b"^", True),
    (b"[\\^a]", b"^", True),
    (b"[\\^a]", b"b", False),
    (b"[-a]", b"-", True),
    (b"[a-c-z]", b"-", True),
    (b"[a-c-z]", b"z", True),
    (b"[a-c-z]", b"y", False),
    (b"[a-b-]", b"-", True),
    # "]" right after "[" closes an empty set
    (b"[]", b"]", False),
    (b"[]a]", b"a", False),
    (b"[]a]", b"xa]", False),
    (b"[^]", b"x", True),
    (b"[^]", b"", False),
    (b"[^]]", b"x]", True),
    (b"[^]]", b"]", False),
    # unterminated sets run to the end of the pattern
    (b"[abc", b"b", True),
    (b"[abc", b"[abc", False),
    (b"[", b"[", False),
    (b"[^", b"q", True),
    (b"x[", b"x", False),
    (b"[a-", b"-", True),
    (b"[a-", b"b", False),
    # a range may end on "]" ...
    (b"[a-]", b"]", True),
    (b"[a-]", b"_", True),
    (b"[a-]", b"-", False),
    (b"[a-]]", b"^", True),
    (b"[a-]]", b"^]", False),
    # ... or on a backslash, and an escaped byte cannot start one
    (b"[a-\\c]", b"_", True),
    (b"[a-\\c]", b"c", True),
    (b"[a-\\c]", b"b", False),
    (b"[\\a-c]", b"-", True),
    (b"[\\a-c]", b"b", False),
    # escapes inside and outside sets
    (b"[\\]]", b"]", True),
    (b"[\\]", b"]", True),
    (b"[\\", b"\\", True),
    (b"\\", b"\\", True),
    (b"a\\", b"a\\", True),
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?", b"a", False),
    (b"\\[a]", b"[a]", True),
    (b"\\a", b"a", True),
    # range ends compare as signed chars: 0x80..0xff sort below 0x00
    (b"[\x00-\xff]", b"\x00", True),
    (b"[\x00-\xff]", b"\xff", True),
    (b"[\x00-\xff]", b"\x80", False),
    (b"[\x00-\xff]", b"a", False),
    (b"[\x80-\xff]", b"\xc3", True),
    (b"[\x80-\xff]", b"a", False),
    (b"[a-\xff]", b"\x01", True),
    (b"[a-\xff]", b"\xff", True),
    (b"[a-\xff]", b"z", False),
    (b"[\x7f-\x80]", b"a", True),
    (b"[\x7f-\x80]", b"\xc3", True),
    # Redis's recursion guard: more than 1000 non-trailing star groups
    (b"a*" * 1001, b"a" * 1001, True),
    (b"a*" * 1002, b"a" * 1002, False),
    (b"*a" * 1000, b"a" * 1000, True),
    (b"*a" * 1001, b"a" * 1001, False),
    (b"*" + b"a*" * 1000, b"a" * 1100, True),
    (b"*" + b"a*" * 1001, b"a" * 1100, False),
]

# (pattern, command name, matches), matched with nocase=True
NOCASE = [
    (b"GET", b"get", True),
    (b"G?T", b"get", True),
    (b"*ET", b"get", True),
    (b"[G]ET", b"get", True),
    (b"[^G]ET", b"get", False),
    (b"[^G]ET", b"set", True),
    (b"[A-Z]et", b"get", True),
    (b"[A-C]et", b"get", False),
    # the range is swapped before its ends are lowercased
    (b"[Z-a]et", b"get", False),
    (b"[a-Z]et", b"get", False),
    # an escaped byte in a set still compares case-sensitively
    (b"[\\G]et", b"get", False),
    (b"[\\g]et", b"get", True),
    (b"[^\\G]et", b"get", True),
    # outside a set an escaped letter folds case as usual
    (b"\\GET", b"get", True),
]


@pytest.mark.parametrize("pattern, key, expected", CASE_SENSITIVE)
def test_case_sensitive(pattern, key, expected):
    assert compile_glob(pattern)(key) is expected
    assert glob_match(pattern, key) is expected


@pytest.mark.parametrize("pattern, key, expected", NOCASE)
def test_nocase(pattern, key, expected):
    assert compile_glob(pattern, nocase=True)(key) is expected


def test_nocase_differs_from_case_sensitive():
    assert compile_glob(b"GET", nocase=True)(b"get")
    assert not compile_glob(b"GET")(b"get")


def test_compiled_matchers_are_cached():
    assert compile_glob(b"user:[0-9]*") is compile_glob(b"user:[0-9]*")
    assert compile_glob(b"a*", nocase=True) is not compile_glob(b"a*")


def test_accepts_bytes_like_patterns():
    assert compile_glob(bytearray(b"a*"))(b"abc")
    assert compile_glob(memoryview(b"[ab]"))(b"b")
