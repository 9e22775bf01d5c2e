"""The sorted-set value: unique members, each with a score, kept in (score, member) order.

Theory of operation
-------------------
A :class:`SortedSet` holds two views of the same data:

* ``scores``, a dict member → score, answers ZSCORE and membership in O(1);
* ``order``, a ``sortedcontainers.SortedList`` of ``(score, member)`` tuples, answers
  rank, rank ranges and score/lex ranges in O(log n + m).

Both views share the same float and bytes objects, so a member costs one tuple and
two references beyond its dict entry.  Tuples compare as Redis orders a sorted set:
by score as a double (``-0.0`` equals ``0.0``), then by member bytes, shorter first
when one is a prefix of the other, which is exactly ``memcmp`` order.

Score bounds use one-element tuples: ``(x,)`` sorts before every ``(x, member)``, so
``bisect_left((x,))`` is the first element scoring at least ``x``; exclusive bounds
step to the neighbouring double with ``math.nextafter``.

Redis 7.0 stores a small sorted set as a *listpack* and converts it for good to a
*skiplist* once it exceeds 128 members or receives a member longer than 64 bytes.
Clients can see the difference in three places, so the value tracks the encoding:
``OBJECT ENCODING``; ``ZSCAN`` (a listpack is returned whole with cursor 0 and prints
integral scores as integers); and the sign of a zero score (a listpack stores
integral scores as integers, so ``-0`` becomes ``0``, a skiplist keeps ``-0``).

Lex ranges assume all members share one score, as Redis documents.  When they do
not, Redis's answer depends on its encoding (and, for skiplists, on random node
levels); this value answers as a listpack does: scan from the head (or tail) for the
first member inside the range, then take members while they stay inside.
"""

from __future__ import annotations

import math
import random
import re
import struct
from collections.abc import Iterator

from sortedcontainers import SortedList

#: Redis 7.0 defaults of ``zset-max-listpack-entries`` and ``zset-max-listpack-value``.
LISTPACK_MAX_ENTRIES = 128
LISTPACK_MAX_VALUE = 64

_INF = math.inf
_TWO_62 = float(2**62)


def _next_up(x: float) -> float:
    return math.nextafter(x, _INF)


# -- ranges -------------------------------------------------------------------------


class ScoreRange:
    """A score interval as ZRANGEBYSCORE takes it: ``min``/``max`` with exclusivity."""

    __slots__ = ("min", "minex", "max", "maxex")

    def __init__(self, lo: float, loex: bool, hi: float, hiex: bool) -> None:
        self.min, self.minex, self.max, self.maxex = lo, loex, hi, hiex

    def is_empty(self) -> bool:
        """True when no score at all can lie inside (``min > max`` or a shut point)."""
        return self.min > self.max or (self.min == self.max and (self.minex or self.maxex))

    def contains(self, score: float) -> bool:
        above = score > self.min if self.minex else score >= self.min
        below = score < self.max if self.maxex else score <= self.max
        return above and below


# What C strtod() accepts after optional leading blanks: decimal, hexadecimal,
# inf/infinity or nan.  Range items must be consumed whole.
_STRTOD_FORMS = re.compile(
    rb"[+-]?(?:"
    rb"(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<inf>[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    rb"|(?P<nan>[nN][aA][nN](?:\([0-9A-Za-z_]*\))?)"
    rb")"
).fullmatch


_PLAIN_DECIMAL = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?").fullmatch


def _range_double(text: bytes) -> float | None:
    """A score range bound as Redis reads it, or None (error).

    Redis hands the argument to ``strtod`` as a C string and only checks that the
    whole string was consumed and the result is not NaN.  Hence, unlike ZADD scores:
    the text ends at a NUL byte, the empty string is 0, leading blanks are skipped,
    and out-of-range values become ±inf or 0 instead of being refused.
    """
    if _PLAIN_DECIMAL(text) is not None:
        return float(text)  # the common case; correctly rounded like strtod
    nul = text.find(b"\0")
    if nul >= 0:
        text = text[:nul]
    if not text:
        return 0.0
    body = text.lstrip(b" \t\n\v\f\r")
    m = _STRTOD_FORMS(body)
    if m is None or m.group("nan") is not None:
        return None
    negative = body[:1] == b"-"
    if m.group("inf") is not None:
        return -_INF if negative else _INF
    if m.group("dec") is not None:
        return float(body)
    try:
        return float.fromhex(body.decode("ascii"))
    except OverflowError:
        return -_INF if negative else _INF


def parse_score_range(lo: bytes, hi: bytes) -> ScoreRange | None:
    """Parse ZRANGEBYSCORE-style bounds (``(`` prefix = exclusive); None if invalid."""
    loex = lo[:1] == b"("
    a = _range_double(lo[1:] if loex else lo)
    hiex = hi[:1] == b"("
    b = _range_double(hi[1:] if hiex else hi)
    if a is None or b is None:
        return None
    return ScoreRange(a, loex, b, hiex)


class _Extreme:
    """The lex bounds ``-`` and ``+``: below, respectively above, every member."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign

    def __repr__(self) -> str:
        return "-" if self.sign < 0 else "+"


LEX_MIN = _Extreme(-1)
LEX_MAX = _Extreme(1)


def _lex_cmp(a, b) -> int:
    """Three-way comparison of lex bounds, where ``-``/``+`` are the extremes."""
    if a.__class__ is _Extreme or b.__class__ is _Extreme:
        sa = a.sign if a.__class__ is _Extreme else 0
        sb = b.sign if b.__class__ is _Extreme else 0
        return (sa > sb) - (sa < sb)
    return (a > b) - (a < b)


class LexRange:
    """A member interval as ZRANGEBYLEX takes it; bounds are bytes or LEX_MIN/LEX_MAX."""

    __slots__ = ("min", "minex", "max", "maxex")

    def __init__(self, lo, loex: bool, hi, hiex: bool) -> None:
        self.min, self.minex, self.max, self.maxex = lo, loex, hi, hiex

    def is_empty(self) -> bool:
        cmp = _lex_cmp(self.min, self.max)
        return cmp > 0 or (cmp == 0 and (self.minex or self.maxex))

    def above_min(self, member: bytes) -> bool:
        lo = self.min
        if lo.__class__ is _Extreme:
            return lo.sign < 0
        return member > lo if self.minex else member >= lo

    def below_max(self, member: bytes) -> bool:
        hi = self.max
        if hi.__class__ is _Extreme:
            return hi.sign > 0
        return member < hi if self.maxex else member <= hi


def _lex_item(raw: bytes):
    """One ZRANGEBYLEX bound → (value, exclusive), or None if malformed.

    ``-`` and ``+`` (a lone byte; Redis reads it as a C string, so a NUL may follow)
    are the extremes, counted as exclusive as Redis does; ``[x`` and ``(x`` are
    inclusive and exclusive bounds on the bytes ``x``.
    """
    if not raw:
        return None
    first = raw[0]
    if first in b"+-":
        if len(raw) > 1 and raw[1] != 0:
            return None
        return (LEX_MAX if first == 0x2B else LEX_MIN), True
    if first == 0x28:  # (
        return raw[1:], True
    if first == 0x5B:  # [
        return raw[1:], False
    return None


def parse_lex_range(lo: bytes, hi: bytes) -> LexRange | None:
    a = _lex_item(lo)
    b = _lex_item(hi)
    if a is None or b is None:
        return None
    return LexRange(a[0], a[1], b[0], b[1])


# -- score text -----------------------------------------------------------------------


def score_text(score: float) -> bytes:
    """A score as Redis 7.0 prints it in replies: ``%.17g``, ``inf``, ``-inf``."""
    if score in (_INF, -_INF):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score


def listpack_score_text(score: float) -> bytes:
    """A score as a listpack holds it (what ZSCAN of a small set prints).

    Integral scores within ±2**62 are stored as integers, everything else as
    ``%.17g`` text.
    """
    if -_TWO_62 <= score <= _TWO_62 and score == int(score):
        return b"%d" % int(score)
    return score_text(score)


# -- the value ------------------------------------------------------------------------


class SortedSet:
    """A Redis sorted set.  Commands keep it non-empty: an empty set deletes its key."""

    __slots__ = ("scores", "order", "listpack")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: SortedList = SortedList()
        #: True while Redis would still hold this set as a listpack (never reset).
        self.listpack = True

    @classmethod
    def from_scores(cls, scores: dict[bytes, float]) -> "SortedSet":
        """A new set holding ``scores``, encoded as Redis encodes a freshly stored result.

        ZUNIONSTORE, ZRANGESTORE and friends build their result and then pick the
        encoding its size calls for, so a small result is a listpack even when its
        sources were skiplists.
        """
        zs = cls()
        listpack = len(scores) <= LISTPACK_MAX_ENTRIES and all(
            len(m) <= LISTPACK_MAX_VALUE for m in scores
        )
        if listpack:
            scores = {m: (0.0 if s == 0 else s) for m, s in scores.items()}
        zs.listpack = listpack
        zs.scores = dict(scores)
        zs.order = SortedList(zip(scores.values(), scores.keys()))
        return zs

    def copy(self) -> "SortedSet":
        """An independent copy with the same encoding (COPY)."""
        zs = SortedSet()
        zs.scores = dict(self.scores)
        zs.order = SortedList(self.order)
        zs.listpack = self.listpack
        return zs

    @property
    def encoding(self) -> bytes:
        return b"listpack" if self.listpack else b"skiplist"

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: bytes) -> bool:
        return member in self.scores

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        """``(score, member)`` pairs in order."""
        return iter(self.order)

    def score(self, member: bytes) -> float | None:
        return self.scores.get(member)

    # -- changes --------------------------------------------------------------------

    def set_score(self, member: bytes, score: float) -> None:
        """Insert ``member`` or move it to ``score`` (never NaN)."""
        scores = self.scores
        old = scores.get(member)
        if old is None:
            if self.listpack and (
                len(scores) >= LISTPACK_MAX_ENTRIES or len(member) > LISTPACK_MAX_VALUE
            ):
                self.listpack = False  # converts before the insert: -0 survives
        else:
            self.order.remove((old, member))
        if score == 0 and self.listpack:
            score = 0.0  # a listpack stores the integer 0: no negative zero
        scores[member] = score
        self.order.add((score, member))

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def remove_span(self, lo: int, hi: int) -> int:
        """Remove the members at ranks ``lo`` to ``hi - 1``; returns how many."""
        if hi <= lo:
            return 0
        scores = self.scores
        for _, member in self.order.islice(lo, hi):
            del scores[member]
        del self.order[lo:hi]
        return hi - lo

    def pop(self, count: int, highest: bool) -> list[tuple[float, bytes]]:
        """Remove and return up to ``count`` members from the low (or high) end."""
        n = len(self.order)
        count = min(count, n)
        if highest:
            taken = list(self.order.islice(n - count, n, reverse=True))
            lo, hi = n - count, n
        else:
            taken = list(self.order.islice(0, count))
            lo, hi = 0, count
        self.remove_span(lo, hi)
        return taken

    # -- queries --------------------------------------------------------------------

    def rank(self, member: bytes, reverse: bool = False) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        rank = self.order.bisect_left((score, member))
        return len(self.scores) - 1 - rank if reverse else rank

    def span(self, lo: int, hi: int, reverse: bool = False) -> list[tuple[float, bytes]]:
        """Elements at ranks ``lo`` to ``hi - 1`` (counted from the top if ``reverse``)."""
        if hi <= lo:
            return []
        if reverse:
            n = len(self.order)
            return list(self.order.islice(n - hi, n - lo, reverse=True))
        return list(self.order.islice(lo, hi))

    def score_span(self, rng: ScoreRange) -> tuple[int, int]:
        """Rank interval ``[lo, hi)`` of the members whose score lies in ``rng``."""
        if rng.is_empty():
            return 0, 0
        order = self.order
        lo = order.bisect_left((_next_up(rng.min) if rng.minex else rng.min,))
        if rng.maxex:
            hi = order.bisect_left((rng.max,))
        elif rng.max == _INF:
            hi = len(order)
        else:
            hi = order.bisect_left((_next_up(rng.max),))
        return lo, max(lo, hi)

    def lex_span(self, rng: LexRange, reverse: bool = False) -> tuple[int, int]:
        """Rank interval ``[lo, hi)`` of the members inside ``rng``.

        ``reverse`` says from which end the range is searched; it only matters when
        the members do not all share one score (see the module notes).
        """
        order = self.order
        n = len(order)
        if n == 0 or rng.is_empty():
            return 0, 0
        first, last = order[0], order[-1]
        # Cheap rejections Redis makes before looking further.
        if not rng.above_min(last[1]) or not rng.below_max(first[1]):
            return 0, 0
        if first[0] == last[0]:
            return self._lex_bisect(rng, first[0])
        if reverse:
            i = n - 1
            while i >= 0 and not rng.below_max(order[i][1]):
                i -= 1
            if i < 0 or not rng.above_min(order[i][1]):
                return 0, 0
            j = i
            while j > 0 and rng.above_min(order[j - 1][1]):
                j -= 1
            return j, i + 1
        i = 0
        while i < n and not rng.above_min(order[i][1]):
            i += 1
        if i >= n or not rng.below_max(order[i][1]):
            return 0, 0
        j = i + 1
        while j < n and rng.below_max(order[j][1]):
            j += 1
        return i, j

    def _lex_bisect(self, rng: LexRange, score: float) -> tuple[int, int]:
        """``lex_span`` for a set whose members all have ``score``: two bisections."""
        order = self.order
        lo_bound, hi_bound = rng.min, rng.max
        if lo_bound.__class__ is _Extreme:
            lo = 0 if lo_bound.sign < 0 else len(order)
        elif rng.minex:
            lo = order.bisect_right((score, lo_bound))
        else:
            lo = order.bisect_left((score, lo_bound))
        if hi_bound.__class__ is _Extreme:
            hi = len(order) if hi_bound.sign > 0 else 0
        elif rng.maxex:
            hi = order.bisect_left((score, hi_bound))
        else:
            hi = order.bisect_right((score, hi_bound))
        return lo, max(lo, hi)

    # -- randomness and iteration ---------------------------------------------------------

    def random_element(self) -> tuple[float, bytes]:
        return self.order[random.randrange(len(self.order))]

    def random_distinct(self, count: int) -> list[tuple[float, bytes]]:
        """``count`` distinct elements (fewer than the set holds) in random order."""
        order = self.order
        return [order[i] for i in random.sample(range(len(order)), count)]

    def scan(self, cursor: int, count: int) -> tuple[int, list[tuple[float, bytes]]]:
        """One ZSCAN page: ``(next cursor, elements)``; cursor 0 starts and ends a walk.

        A listpack is returned whole (cursor 0), as Redis does.  A larger set is walked
        in score order; the cursor is the next score to visit, mapped order-preservingly
        to 64 bits, so a member present for the whole walk is returned even when others
        come and go.  A page therefore never stops between two equal scores (it may
        hold more than ``count`` elements; COUNT is only a hint).
        """
        order = self.order
        if self.listpack:
            return 0, list(order)
        if cursor == 0:
            lo = 0
        else:
            start = _cursor_score(cursor)
            if start != start:  # NaN patterns: below -inf starts over, above +inf ends
                lo = 0 if cursor < (1 << 63) else len(order)
            else:
                lo = order.bisect_left((start,))
        n = len(order)
        hi = min(lo + max(count, 1), n)
        if hi < n:
            last = order[hi - 1][0]
            hi = n if last == _INF else order.bisect_left((_next_up(last),))
        page = list(order.islice(lo, hi))
        return (_score_cursor(order[hi][0]) if hi < n else 0), page


_SIGN = 1 << 63
_MASK = (1 << 64) - 1


def _score_cursor(score: float) -> int:
    """Map a double to 64 bits so that integer order is score order (never 0)."""
    bits = int.from_bytes(struct.pack(">d", score), "big")
    return bits | _SIGN if not bits & _SIGN else ~bits & _MASK


def _cursor_score(cursor: int) -> float:
    bits = cursor ^ _SIGN if cursor & _SIGN else ~cursor & _MASK
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]

