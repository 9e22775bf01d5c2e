"""Number parsing and formatting with Redis 7.0's exact rules.

Clients see these rules directly: which arguments are rejected, and the exact
text of every numeric reply. Four families are covered:

* 64-bit integers (:func:`parse_int`), as accepted by INCRBY, EXPIRE, LRANGE...;
* doubles (:func:`parse_float`, :func:`format_double`), as used for sorted-set
  scores and every double reply;
* the x87 80-bit ``long double`` arithmetic behind INCRBYFLOAT and
  HINCRBYFLOAT (:func:`incr_by_float`, :func:`hincr_by_float`), emulated
  exactly with integers because Python has no such type;
* error texts that go with them.

Values of the emulated long double are kept as ``(mantissa, exponent)`` pairs
of Python ints meaning ``mantissa * 2**exponent``, already rounded to the
format's 64-bit significand and exponent range; infinities are the floats
``math.inf`` and ``-math.inf``.
"""

from __future__ import annotations

import math
import re
from typing import Union

__all__ = [
    "LLONG_MAX",
    "LLONG_MIN",
    "ERR_NOT_INTEGER",
    "ERR_NOT_FLOAT",
    "ERR_HASH_NOT_FLOAT",
    "ERR_NAN_OR_INFINITY",
    "ERR_INCR_NAN_OR_INFINITY",
    "parse_int",
    "parse_float",
    "format_double",
    "parse_long_double",
    "add_long_double",
    "format_long_double",
    "incr_by_float",
    "hincr_by_float",
]

LLONG_MAX = (1 << 63) - 1
LLONG_MIN = -(1 << 63)

ERR_NOT_INTEGER = "ERR value is not an integer or out of range"
ERR_NOT_FLOAT = "ERR value is not a valid float"
ERR_HASH_NOT_FLOAT = "ERR hash value is not a float"
ERR_NAN_OR_INFINITY = "ERR value is NaN or Infinity"
ERR_INCR_NAN_OR_INFINITY = "ERR increment would produce NaN or Infinity"

#: A finite emulated long double ``(mantissa, exponent)`` or an infinity.
LongDouble = Union[tuple[int, int], float]


# ---------------------------------------------------------------------------
# Integers


def parse_int(b: bytes) -> int | None:
    """Parse a signed 64-bit integer the strict way Redis does.

    Accepted: ``0``, or an optional ``-`` followed by a non-zero digit and more
    digits, within the signed 64-bit range. Rejected: empty strings, ``+``,
    ``-0``, leading zeros, any whitespace, anything longer than 20 bytes.
    Returns ``None`` when Redis would reply :data:`ERR_NOT_INTEGER`.
    """
    n = len(b)
    if n == 0 or n > 20:
        return None
    if b.isdigit():  # ASCII digits only, for bytes
        if b[0] == 0x30 and n > 1:
            return None
        v = int(b)
        return v if v <= LLONG_MAX else None
    if b[0] == 0x2D and n > 1 and b[1] != 0x30 and b[1:].isdigit():
        v = int(b)
        return v if v >= LLONG_MIN else None
    return None


# ---------------------------------------------------------------------------
# Doubles

# What strtod() would consume, required to cover the whole input: a sign,
# then a decimal number, a hexadecimal one, or inf/infinity. NaN is left out
# because Redis rejects it.
_STRTOD = re.compile(
    rb"([+-]?)(?:"
    rb"(?P<dec>(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]+))?)"
    rb"|0[xX](?P<hex>(?P<hint>[0-9a-fA-F]*)(?:\.(?P<hfrac>[0-9a-fA-F]*))?"
    rb"(?:[pP](?P<hexp>[+-]?[0-9]+))?)"
    rb"|(?P<inf>[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    rb")"
).fullmatch

_SIMPLE_DECIMAL = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?").fullmatch


def _has_digits(m: re.Match) -> bool:
    """Whether a decimal or hex match contains at least one digit."""
    if m.group("dec") is not None:
        return bool(m.group("int") or m.group("frac"))
    return bool(m.group("hint") or m.group("hfrac"))


def parse_float(b: bytes) -> float | None:
    """Parse a double as Redis does for scores and other float arguments.

    This is C ``strtod`` applied to the whole argument: decimal and
    hexadecimal (``0x1.8p1``) forms, an optional ``+``/``-``, ``inf`` and
    ``infinity`` in any case. Rejected, so ``None`` is returned: leading or
    trailing whitespace, trailing garbage, NaN, values that overflow to
    infinity, and non-zero values that underflow to zero (subnormal results
    are fine).
    """
    if len(b) < 16 and _SIMPLE_DECIMAL(b) is not None:
        # Fewer than 16 digits: can neither overflow nor underflow.
        return float(b)
    m = _STRTOD(b)
    if m is None:
        return None
    if m.group("inf") is not None:
        return -math.inf if m.group(1) == b"-" else math.inf
    if not _has_digits(m):
        return None
    if m.group("dec") is not None:
        value = float(b)  # correctly rounded, like glibc
        nonzero = (m.group("int") + (m.group("frac") or b"")).strip(b"0") != b""
    else:
        try:
            value = float.fromhex(b.decode("ascii"))
        except OverflowError:
            return None
        nonzero = (m.group("hint") + (m.group("hfrac") or b"")).strip(b"0") != b""
    if math.isinf(value):
        return None  # overflow
    if value == 0.0 and nonzero:
        return None  # underflow to zero
    return value


def format_double(x: float) -> bytes:
    """Format a double the way Redis 7.0 replies with it.

    This is ``%.17g`` (so ``1.1`` becomes ``1.1000000000000001``), with
    ``inf`` and ``-inf`` for infinities. The same text is used in RESP2 bulk
    strings and in RESP3 ``,`` doubles.
    """
    return b"%.17g" % x


# ---------------------------------------------------------------------------
# Emulated x87 long double (64-bit significand, 15-bit exponent)

_LD_MANT_BITS = 64
#: Exponent of the lowest significand bit of the smallest subnormal.
_LD_MIN_LSB_EXP = -16445
#: A value is finite while mantissa.bit_length() + exponent stays within this.
_LD_MAX_BITS = 16384
#: strtold() is fed through a fixed 5 KiB buffer; longer inputs are refused.
_MAX_LONG_DOUBLE_CHARS = 5 * 1024

_INF = math.inf
_FRAC_DIGITS = 17
_FRAC_SCALE = 10**_FRAC_DIGITS

# Plain decimals (the usual INCRBYFLOAT operands) take a shorter road.
_PLAIN_DECIMAL = re.compile(rb"(-?)([0-9]+)(?:\.([0-9]+))?").fullmatch
_PLAIN_MAX_LEN = 40
_POW5 = [5**k for k in range(_PLAIN_MAX_LEN)]
_TWO_64 = 1 << 64

_STR_CHUNK = 4000
_STR_CHUNK_POW = 10**_STR_CHUNK


def _round_ld(num: int, den: int, exp2: int) -> tuple[int, int] | None:
    """Round ``num / den * 2**exp2`` (num, den > 0) to the long double grid.

    Rounds to nearest, ties to even, honouring the subnormal range. Returns
    ``(mantissa, exponent)`` with a non-negative mantissa (0 when the value
    underflows to zero), or ``None`` when it overflows.
    """
    lead = num.bit_length() - den.bit_length()
    # Scale so the integer quotient has 65 or 66 bits: 64 kept, plus at least
    # one rounding bit.
    shift = _LD_MANT_BITS + 1 - lead
    if shift >= 0:
        q, r = divmod(num << shift, den)
    else:
        q, r = divmod(num, den << -shift)
    exp = exp2 - shift
    drop = q.bit_length() - _LD_MANT_BITS
    if exp + drop < _LD_MIN_LSB_EXP:
        drop = _LD_MIN_LSB_EXP - exp
    # drop >= 1 here: the quotient always has more than 64 bits.
    mant = q >> drop
    low = q - (mant << drop)
    half = 1 << (drop - 1)
    if low > half or (low == half and (r or mant & 1)):
        mant += 1
    exp += drop
    if mant >> _LD_MANT_BITS:
        mant >>= 1
        exp += 1
    if mant and mant.bit_length() + exp > _LD_MAX_BITS:
        return None
    return mant, exp


def _exponent(text: bytes | None) -> int:
    """A decimal exponent, clamped so absurd ones stay cheap to handle."""
    if not text:
        return 0
    negative = text[:1] == b"-"
    digits = text.lstrip(b"+-").lstrip(b"0")
    if len(digits) > 9:
        return -(10**9) if negative else 10**9
    value = int(digits) if digits else 0
    return -value if negative else value


def _digits_to_int(digits: bytes) -> int:
    """``int(digits)`` that also works past Python's digit-count guard."""
    n = len(digits)
    if n <= _STR_CHUNK:
        return int(digits) if digits else 0
    head = digits[: n - _STR_CHUNK]
    return _digits_to_int(head) * _STR_CHUNK_POW + int(digits[n - _STR_CHUNK :])


def _int_to_str(v: int) -> str:
    """``str(v)`` for a non-negative int of any size."""
    if v < _STR_CHUNK_POW:
        return str(v)
    hi, lo = divmod(v, _STR_CHUNK_POW)
    return _int_to_str(hi) + str(lo).zfill(_STR_CHUNK)


def parse_long_double(b: bytes) -> LongDouble | None:
    """Parse a value the way Redis reads INCRBYFLOAT operands (``strtold``).

    The accepted syntax is that of :func:`parse_float`, but the result is
    rounded to the 80-bit long double, whose range reaches about 1.19e4932,
    and inputs of 5120 bytes or more are refused. Returns ``(mantissa,
    exponent)`` for finite values, ``±math.inf`` for an explicit infinity, or
    ``None`` when Redis would reply :data:`ERR_NOT_FLOAT` (syntax, NaN,
    overflow, non-zero underflow to zero).
    """
    if len(b) <= _PLAIN_MAX_LEN:
        m = _PLAIN_DECIMAL(b)
        if m is not None:
            sign, int_digits, frac_digits = m.groups()
            if frac_digits is None:
                v = int(int_digits)
                if v < _TWO_64:  # exactly representable
                    return (-v if sign else v, 0)
                res = _round_ld(v, 1, 0)
            else:
                v = int(int_digits + frac_digits)
                if not v:
                    return (0, 0)
                k = len(frac_digits)
                res = _round_ld(v, _POW5[k], -k)
            # At most 40 digits: neither overflow nor underflow is possible.
            return (-res[0], res[1]) if sign else res
    elif len(b) >= _MAX_LONG_DOUBLE_CHARS:
        return None
    m = _STRTOD(b)
    if m is None:
        return None
    negative = m.group(1) == b"-"
    if m.group("inf") is not None:
        return -_INF if negative else _INF
    if not _has_digits(m):
        return None
    if m.group("dec") is not None:
        int_digits = m.group("int")
        frac_digits = m.group("frac") or b""
        exp10 = _exponent(m.group("exp")) - len(frac_digits)
        digits = (int_digits + frac_digits).lstrip(b"0")
        if not digits:
            return (0, 0)
        # Cheap range checks before any big-number work: the value lies in
        # [10**(mag-1), 10**mag).
        mag = exp10 + len(digits)
        if mag > 4934:
            return None  # overflow
        if mag < -4952:
            return None  # underflows to zero
        stripped = digits.rstrip(b"0")
        exp10 += len(digits) - len(stripped)
        mant10 = _digits_to_int(stripped)
        if exp10 >= 0:
            res = _round_ld(mant10 * 5**exp10, 1, exp10)
        else:
            res = _round_ld(mant10, 5**-exp10, exp10)
    else:
        hint = m.group("hint")
        hfrac = m.group("hfrac") or b""
        digits = (hint + hfrac).lstrip(b"0")
        if not digits:
            return (0, 0)
        exp2 = _exponent(m.group("hexp")) - 4 * len(hfrac)
        mag = exp2 + 4 * len(digits)
        if mag > _LD_MAX_BITS + 4:
            return None
        if mag < _LD_MIN_LSB_EXP - 4:
            return None
        res = _round_ld(int(digits, 16), 1, exp2)
    if res is None or res[0] == 0:
        return None  # overflow, or a non-zero value that underflowed
    mant, exp = res
    return (-mant, exp) if negative else (mant, exp)


def add_long_double(a: LongDouble, b: LongDouble) -> LongDouble:
    """Add two long doubles with one rounding, as the x87 FPU does.

    Returns ``math.nan`` for ``inf + -inf`` and an infinity on overflow.
    """
    if isinstance(a, float) or isinstance(b, float):
        return (a if isinstance(a, float) else 0.0) + (b if isinstance(b, float) else 0.0)
    ma, ea = a
    mb, eb = b
    if not mb:
        return a
    if not ma:
        return b
    if ea >= eb:
        total = (ma << (ea - eb)) + mb
        exp = eb
    else:
        total = ma + (mb << (eb - ea))
        exp = ea
    if not total:
        return (0, 0)
    res = _round_ld(abs(total), 1, exp)
    if res is None:
        return -_INF if total < 0 else _INF
    mant, exp = res
    return (-mant, exp) if total < 0 else (mant, exp)


def format_long_double(value: tuple[int, int]) -> bytes:
    """Format a finite long double as INCRBYFLOAT replies with it.

    Redis prints ``%.17Lf`` (exact decimal expansion rounded to 17 decimals,
    ties to even), then strips trailing zeros and a trailing dot, and turns
    ``-0`` into ``0``. So 5e100 prints all 101 digits of its binary value.
    """
    mant, exp = value
    negative = mant < 0
    if negative:
        mant = -mant
    if exp >= 0:
        int_part = mant << exp
        frac = 0
    else:
        scaled = mant * _FRAC_SCALE
        div = 1 << -exp
        q = scaled >> -exp
        r2 = (scaled - (q << -exp)) << 1
        if r2 > div or (r2 == div and q & 1):
            q += 1
        int_part, frac = divmod(q, _FRAC_SCALE)
    if frac:
        text = _int_to_str(int_part) + "." + ("%017d" % frac).rstrip("0")
    elif int_part:
        text = _int_to_str(int_part)
    else:
        return b"0"
    if negative:
        text = "-" + text
    return text.encode("ascii")


def _incr(
    current: bytes | None, increment: bytes, stored_error: str, check_increment: bool
) -> bytes:
    """Shared body of INCRBYFLOAT and HINCRBYFLOAT.

    ``check_increment`` selects HINCRBYFLOAT's order: increment first, with
    infinities refused before the stored value is even looked at.
    """
    if check_increment:
        incr = parse_long_double(increment)
        if incr is None:
            raise ValueError(ERR_NOT_FLOAT)
        if isinstance(incr, float):
            raise ValueError(ERR_NAN_OR_INFINITY)
        value = (0, 0) if current is None else parse_long_double(current)
        if value is None:
            raise ValueError(stored_error)
    else:
        value = (0, 0) if current is None else parse_long_double(current)
        if value is None:
            raise ValueError(stored_error)
        incr = parse_long_double(increment)
        if incr is None:
            raise ValueError(ERR_NOT_FLOAT)
    total = add_long_double(value, incr)
    if isinstance(total, float):
        raise ValueError(ERR_INCR_NAN_OR_INFINITY)
    return format_long_double(total)


def incr_by_float(current: bytes | None, increment: bytes) -> bytes:
    """The new string value INCRBYFLOAT stores and replies with.

    ``current`` is the key's present string value, or ``None`` when the key
    does not exist (counted as 0). Raises ``ValueError`` carrying the Redis
    error text: :data:`ERR_NOT_FLOAT` when the stored value (checked first) or
    the increment is not a float, :data:`ERR_INCR_NAN_OR_INFINITY` when the
    sum is infinite or NaN (which includes any infinite operand).
    """
    return _incr(current, increment, ERR_NOT_FLOAT, False)


def hincr_by_float(current: bytes | None, increment: bytes) -> bytes:
    """The new field value HINCRBYFLOAT stores and replies with.

    Same arithmetic as :func:`incr_by_float`, but the increment is checked
    first, with its own errors: :data:`ERR_NOT_FLOAT` when it does not parse
    and :data:`ERR_NAN_OR_INFINITY` when it is infinite. A stored field value
    that does not parse gives :data:`ERR_HASH_NOT_FLOAT`.
    """
    return _incr(current, increment, ERR_HASH_NOT_FLOAT, True)
