"""Splitting of inline commands (the telnet-friendly form of the protocol).

A client may send a command as one plain text line instead of a RESP array,
e.g. ``SET greeting "hello world"``. Redis splits such a line with a small
shell-like grammar, and this module reproduces it exactly:

* arguments are separated by whitespace; leading and separating whitespace is
  any of space, ``\\t``, ``\\n``, ``\\v``, ``\\f``, ``\\r``, but an unquoted
  argument only *ends* at space, ``\\t``, ``\\n``, ``\\r`` or NUL, so ``a\\vb``
  is the single argument ``a\\vb`` while `` \\va`` is just ``a``;
* a NUL byte outside quotes ends the whole line: what follows it is ignored;
* ``"..."`` quotes understand ``\\n \\r \\t \\b \\a``, ``\\xHH`` (two hex digits,
  either case) and ``\\<any other byte>`` for that byte itself;
* ``'...'`` quotes only understand ``\\'``; every other backslash is literal;
* a quote may start in the middle of an argument (``a"b c"`` is ``ab c``), but a
  closing quote must be followed by whitespace or the end of the line;
* an unterminated quote, or a closing quote followed by anything else, makes
  the whole line invalid: Redis answers ``-ERR Protocol error: unbalanced
  quotes in request`` and drops the connection.

The line handed in must not include its terminating ``\\n`` (or ``\\r\\n``).
"""

from __future__ import annotations

import re

__all__ = ["split_inline"]

# Bytes that make a line need the full grammar instead of bytes.split():
# quotes, NUL, and the two whitespace bytes that separate arguments but do
# not end an unquoted one.
_NEEDS_SLOW_PATH = re.compile(b"[\"'\x00\x0b\x0c]").search

_SPACE = frozenset(b" \t\n\x0b\x0c\r")  # C isspace() in the C locale
_UNQUOTED_END = frozenset(b" \t\n\r\x00")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}

_DQUOTE = 0x22
_SQUOTE = 0x27
_BACKSLASH = 0x5C
_LOWER_X = 0x78


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command line into its arguments.

    Returns the list of arguments (empty for a blank line), or ``None`` when
    the quoting is unbalanced and the request must be rejected.
    """
    if _NEEDS_SLOW_PATH(line) is None:
        return line.split()
    return _split_quoted(line)


def _split_quoted(line: bytes) -> list[bytes] | None:
    """Full grammar, for lines that contain quotes or unusual bytes."""
    n = len(line)
    args: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n or line[i] == 0:
            return args
        cur = bytearray()
        while True:
            c = line[i] if i < n else 0
            if c in _UNQUOTED_END:
                break
            if c == _DQUOTE:
                i += 1
                while True:
                    if i >= n or line[i] == 0:
                        return None  # no closing quote
                    c = line[i]
                    if c == _BACKSLASH and i + 1 < n and line[i + 1] != 0:
                        e = line[i + 1]
                        if (
                            e == _LOWER_X
                            and i + 3 < n
                            and line[i + 2] in _HEX
                            and line[i + 3] in _HEX
                        ):
                            cur.append(int(line[i + 2 : i + 4], 16))
                            i += 4
                        else:
                            cur.append(_ESCAPES.get(e, e))
                            i += 2
                    elif c == _DQUOTE:
                        i += 1
                        break
                    else:
                        cur.append(c)
                        i += 1
                if i < n and line[i] != 0 and line[i] not in _SPACE:
                    return None  # closing quote glued to more text
                break
            if c == _SQUOTE:
                i += 1
                while True:
                    if i >= n or line[i] == 0:
                        return None
                    c = line[i]
                    if c == _BACKSLASH and i + 1 < n and line[i + 1] == _SQUOTE:
                        cur.append(_SQUOTE)
                        i += 2
                    elif c == _SQUOTE:
                        i += 1
                        break
                    else:
                        cur.append(c)
                        i += 1
                if i < n and line[i] != 0 and line[i] not in _SPACE:
                    return None
                break
            cur.append(c)
            i += 1
        args.append(bytes(cur))
        if i < n and line[i] == 0:
            return args
