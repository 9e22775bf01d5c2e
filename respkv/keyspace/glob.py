"""Redis-style glob patterns over byte strings.

KEYS, SCAN ... MATCH, PSUBSCRIBE, CONFIG GET and COMMAND LIST FILTERBY PATTERN all
use the same small glob dialect. Matching it exactly matters because clients
(and tests written against real Redis) rely on its corner cases, so this module
reproduces the behaviour of Redis 7.0 byte for byte:

``*``
    any run of bytes, including none. Consecutive stars act as one.
``?``
    exactly one byte (any byte, newlines included).
``[...]``
    one byte from a set. ``[^...]`` negates the set. Inside the brackets
    ``x-y`` is an inclusive range, ``\\x`` is the literal byte ``x``, and every
    other byte stands for itself. Quirks kept on purpose:

    * a ``]`` right after ``[`` (or ``[^``) closes the set, so ``[]`` matches
      nothing and ``[^]`` matches any byte;
    * an unterminated set simply runs to the end of the pattern (``[abc``
      matches one of ``a``, ``b``, ``c``), and a lone ``[`` matches nothing;
    * a range whose ends are given backwards is swapped (``[z-a]`` is
      ``[a-z]``), and a range may end on ``]`` (``[a-]`` is the range
      ``]``..``a`` and leaves the set unterminated);
    * range ends are compared as *signed* chars, as the C code does on x86:
      bytes 0x80-0xff sort below 0x00, so ``[\\x00-\\xff]`` only matches the
      bytes 0x00 and 0xff;
    * an escaped byte cannot start a range (``[\\a-c]`` is ``a``, ``-``, ``c``).
``\\x``
    outside brackets: the literal byte ``x``; a trailing lone backslash is a
    literal backslash.

Case-insensitive matching (``nocase=True``, used by CONFIG GET and COMMAND
LIST) folds ASCII letters only, with two quirks reproduced: a range is swapped
*before* its ends are lowercased (so ``[Z-a]`` and ``[a-Z]`` match nothing), and
an escaped byte inside brackets still compares case-sensitively.

Two more behaviours of the reference matcher are reproduced:

* an empty subject is matched only by the empty pattern (``**`` does not match
  ``b""``). The single pattern ``*`` is the exception, because KEYS and SCAN
  short-cut it to "everything" before matching: the compiled ``*`` therefore
  matches every key, the empty one included. PSUBSCRIBE has no such short-cut
  (``*`` does not receive messages published to the empty channel), so pub/sub
  code should match an empty channel name only against the empty pattern;
* a pattern with more than 1000 ``*`` groups that are not at the very end is
  refused by Redis's recursion guard and matches nothing.

Patterns are compiled to anchored ``re`` objects (with atomic groups so no
pattern can make matching take more than roughly pattern length times key
length), and compiled matchers are cached.
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["compile_glob", "glob_match"]

#: Redis gives up on a pattern once matching recurses through more star
#: groups than this; such a pattern matches nothing.
_MAX_STAR_NESTING = 1000

_STAR = -1  # token for a run of '*'
_ALL_BYTES = (1 << 256) - 1
_CACHE_SIZE = 2048

_BACKSLASH = 0x5C
_CARET = 0x5E
_CLOSE = 0x5D
_DASH = 0x2D
_OPEN = 0x5B
_ASTERISK = 0x2A
_QUESTION = 0x3F


def _lower(b: int) -> int:
    """ASCII-only lowercase of one byte value (C ``tolower`` in the C locale)."""
    return b + 32 if 0x41 <= b <= 0x5A else b


def _signed(b: int) -> int:
    """The byte as a signed char, which is how Redis orders range ends."""
    return b - 256 if b >= 0x80 else b


def _literal_mask(b: int, nocase: bool) -> int:
    """Bit set of the subject bytes that equal ``b`` (folding case if asked)."""
    if nocase and (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A):
        return (1 << (b | 0x20)) | (1 << (b & ~0x20))
    return 1 << b


def _range_mask(first: int, last: int, nocase: bool) -> int:
    """Bit set of the subject bytes inside the range ``first-last``."""
    lo, hi = _signed(first), _signed(last)
    if lo > hi:
        lo, hi = hi, lo
    if nocase:
        # Ends are lowercased after the swap; the subject byte is lowercased too.
        lo, hi = _lower(lo), _lower(hi)
        mask = 0
        for b in range(256):
            if lo <= _signed(_lower(b)) <= hi:
                mask |= 1 << b
        return mask
    mask = 0
    for b in range(256):
        if lo <= _signed(b) <= hi:
            mask |= 1 << b
    return mask


def _parse_set(p: bytes, i: int, nocase: bool) -> tuple[int, int]:
    """Parse the bracket set starting at ``p[i] == '['``.

    Returns the bit set of matching bytes and the index just past the set.
    """
    n = len(p)
    i += 1
    negate = i < n and p[i] == _CARET
    if negate:
        i += 1
    mask = 0
    while i < n:
        c = p[i]
        if c == _BACKSLASH and n - i >= 2:
            # Escaped member: always compared exactly, even when nocase.
            mask |= 1 << p[i + 1]
            i += 2
        elif c == _CLOSE:
            i += 1
            break
        elif n - i >= 3 and p[i + 1] == _DASH:
            mask |= _range_mask(c, p[i + 2], nocase)
            i += 3
        else:
            mask |= _literal_mask(c, nocase)
            i += 1
    if negate:
        mask ^= _ALL_BYTES
    return mask, i


def _tokenize(p: bytes, nocase: bool) -> list[int]:
    """Turn a pattern into tokens: ``_STAR`` or a 256-bit set of bytes.

    Every non-star token matches exactly one subject byte.
    """
    tokens: list[int] = []
    n = len(p)
    i = 0
    while i < n:
        c = p[i]
        if c == _ASTERISK:
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
            i += 1
        elif c == _QUESTION:
            tokens.append(_ALL_BYTES)
            i += 1
        elif c == _OPEN:
            mask, i = _parse_set(p, i, nocase)
            tokens.append(mask)
        else:
            if c == _BACKSLASH and n - i >= 2:
                i += 1
                c = p[i]
            tokens.append(_literal_mask(c, nocase))
            i += 1
    return tokens


def _byte_re(b: int) -> str:
    return "\\x%02x" % b


def _mask_re(mask: int) -> str:
    """Regular-expression text for one byte drawn from ``mask``."""
    if mask == 0:
        return "(?!)"
    if mask == _ALL_BYTES:
        return "."
    if mask & (mask - 1) == 0:
        return _byte_re(mask.bit_length() - 1)
    parts = []
    b = 0
    while b < 256:
        if mask >> b & 1:
            start = b
            while b + 1 < 256 and mask >> (b + 1) & 1:
                b += 1
            if b == start:
                parts.append(_byte_re(start))
            elif b == start + 1:
                parts.append(_byte_re(start) + _byte_re(b))
            else:
                parts.append(_byte_re(start) + "-" + _byte_re(b))
        b += 1
    return "[" + "".join(parts) + "]"


def _never(key: bytes) -> bool:
    return False


def _always(key: bytes) -> bool:
    return True


def _only_empty(key: bytes) -> bool:
    return not key


def _literal_bytes(segment: list[int]) -> bytes | None:
    """The bytes of a segment made only of single-byte tokens, else None."""
    out = bytearray()
    for mask in segment:
        if mask & (mask - 1):
            return None
        out.append(mask.bit_length() - 1)
    return bytes(out)


def _build(pattern: bytes, nocase: bool) -> Callable[[bytes], bool]:
    if pattern == b"*":
        return _always
    if not pattern:
        return _only_empty
    tokens = _tokenize(pattern, nocase)
    if any(t == 0 for t in tokens):
        return _never  # an empty set can never be satisfied
    # Split into the star-separated segments of single-byte tokens.
    segments: list[list[int]] = [[]]
    for t in tokens:
        if t == _STAR:
            segments.append([])
        else:
            segments[-1].append(t)
    stars = len(segments) - 1
    trailing_star = tokens[-1] == _STAR
    if stars - trailing_star > _MAX_STAR_NESTING:
        return _never

    # Literal fast paths for the common shapes, case-sensitive only (under
    # nocase single letters are two-byte sets, so these never apply).
    if len(segments) <= 3:
        lits = [_literal_bytes(s) for s in segments]
        if all(x is not None for x in lits):
            if stars == 0:
                lit = lits[0]
                return lambda key: key == lit
            if stars == 1:
                head, tail = lits
                if not tail:
                    if not head:
                        # "**" and the like: unlike "*", not the empty key.
                        return lambda key: len(key) > 0
                    return lambda key: key.startswith(head)
                if not head:
                    return lambda key: key.endswith(tail)
                need = len(head) + len(tail)
                return lambda key: (
                    len(key) >= need and key.startswith(head) and key.endswith(tail)
                )
            if stars == 2 and not lits[0] and not lits[2]:
                needle = lits[1]
                # bytes.find is markedly cheaper than the ``in`` operator,
                # which first tries to read its operand as an integer.
                return lambda key: key.find(needle) >= 0

    # General case. Every non-star token matches exactly one byte, so the
    # earliest place where a middle segment fits is always the best one; an
    # atomic group commits to it and rules out backtracking blow-ups.
    parts = ["".join(_mask_re(m) for m in segments[0])]
    for seg in segments[1:-1]:
        if seg:
            parts.append("(?>.*?" + "".join(_mask_re(m) for m in seg) + ")")
    if stars:
        parts.append(".*" + "".join(_mask_re(m) for m in segments[-1]))
    regex = re.compile("".join(parts).encode("ascii"), re.DOTALL)
    fullmatch = regex.fullmatch
    # A star never matches when the key is empty, and the only pattern that
    # matches b"" is the empty pattern (handled above), so guard on length.
    return lambda key: len(key) > 0 and fullmatch(key) is not None


_case_cache: dict[bytes, Callable[[bytes], bool]] = {}
_nocase_cache: dict[bytes, Callable[[bytes], bool]] = {}


def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """Return a predicate telling whether a key matches ``pattern``.

    The predicate takes ``bytes`` and returns ``bool``. Matchers are cached
    per ``(pattern, nocase)``, so calling this on every request is cheap; the
    cache is simply emptied when it fills up.
    """
    if type(pattern) is not bytes:
        pattern = bytes(pattern)
    cache = _nocase_cache if nocase else _case_cache
    matcher = cache.get(pattern)
    if matcher is None:
        matcher = _build(pattern, bool(nocase))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[pattern] = matcher
    return matcher


def glob_match(pattern: bytes, key: bytes, nocase: bool = False) -> bool:
    """One-shot form of :func:`compile_glob`: does ``key`` match ``pattern``?"""
    return compile_glob(pattern, nocase)(key)
