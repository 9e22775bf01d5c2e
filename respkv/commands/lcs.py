"""LCS: the longest common subsequence of two strings, its length or its match ranges.

Redis 7.0 fills a (len(a)+1) x (len(b)+1) table of counters; here the table is
computed column by column with a bit-parallel algorithm (see
:func:`_lcs_columns`), and the walk back from its end follows Redis's choices on
ties, so the subsequence and the match ranges are the ones Redis gives.  The size
limit is Redis's: the table Redis would allocate must fit ``proto-max-bulk-len``.
"""

from __future__ import annotations

from ..errors import SYNTAX
from ..protocol import reply
from .args import int_arg
from .lookups import lookup_read
from .strings import max_string_length
from .table import CommandError, command


def _lcs_columns(a: bytes, b: bytes) -> list[int]:
    """Bit vectors from which every LCS length of prefixes of ``a`` and ``b`` follows.

    This is the bit-parallel LCS algorithm (Allison-Dix, in Hyyrö's formulation):
    bit ``i`` of a vector stands for ``a[i]``, and one step per byte of ``b`` costs a
    few big-integer operations instead of ``len(a)`` interpreted ones.  After the
    ``j``-th step, the zero bits below bit ``i`` count ``LCS(a[:i], b[:j])``; see
    :func:`_lcs_at`.  Element ``j`` of the result is the vector after ``j`` steps.
    """
    masks: dict[int, int] = {}
    for i, byte in enumerate(a):
        masks[byte] = masks.get(byte, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    columns = [v]
    for byte in b:
        u = v & masks.get(byte, 0)
        v = ((v + u) | (v - u)) & full
        columns.append(v)
    return columns


def _lcs_at(columns: list[int], i: int, j: int) -> int:
    """``LCS(a[:i], b[:j])`` from :func:`_lcs_columns`."""
    return i - (columns[j] & ((1 << i) - 1)).bit_count()


@command(
    "lcs",
    "Computes the longest common subsequence of two strings, its length or its match ranges.",
    group="string", since="7.0.0",
)
def lcs(s, args):
    va = lookup_read(s, args[1])
    vb = lookup_read(s, args[2])
    if (va is not None and va.__class__ is not bytes) or (vb is not None and vb.__class__ is not bytes):
        raise CommandError("ERR The specified keys must contain string values")
    a = va or b""
    b = vb or b""
    want_len = want_idx = with_len = False
    min_len = 0
    i, n = 3, len(args)
    while i < n:
        opt = args[i].upper()
        if opt == b"IDX":
            want_idx = True
        elif opt == b"LEN":
            want_len = True
        elif opt == b"WITHMATCHLEN":
            with_len = True
        elif opt == b"MINMATCHLEN" and i + 1 < n:
            min_len = max(int_arg(args[i + 1]), 0)
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    if want_len and want_idx:
        raise CommandError("ERR If you want both the length and indexes, please just use IDX.")
    # Redis refuses when its (len(a)+1) x (len(b)+1) table of 32-bit counters would
    # exceed proto-max-bulk-len, LEN included; that also bounds our bit vectors.
    if (len(a) + 1) * (len(b) + 1) * 4 > max_string_length(s):
        raise CommandError("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    columns = _lcs_columns(a, b)
    if want_len:
        return reply.integer(_lcs_at(columns, len(a), len(b)))
    # Walk back from the end like Redis does (on a tie it moves along b), so the
    # chosen subsequence and the match ranges are the same as Redis's.
    i, j = len(a), len(b)
    total = _lcs_at(columns, i, j)
    result = bytearray(total)
    k = total
    matches = []
    a_start = a_end = b_start = b_end = -1
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[k - 1] = a[i - 1]
            if a_start < 0:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            k -= 1
            i -= 1
            j -= 1
        else:
            if _lcs_at(columns, i - 1, j) > _lcs_at(columns, i, j - 1):
                i -= 1
            else:
                j -= 1
            if a_start >= 0:
                emit = True
        if emit:
            length = a_end - a_start + 1
            if want_idx and (min_len == 0 or length >= min_len):
                item = [reply.array([reply.integer(a_start), reply.integer(a_end)]),
                        reply.array([reply.integer(b_start), reply.integer(b_end)])]
                if with_len:
                    item.append(reply.integer(length))
                matches.append(reply.array(item))
            a_start = -1
    if want_idx:
        return s.proto.map([
            (reply.bulk(b"matches"), reply.array(matches)),
            (reply.bulk(b"len"), reply.integer(total)),
        ])
    return reply.bulk(bytes(result))
