"""Number parsing and formatting, checked row by row against a real Redis 7.0.

How the rows were checked: integers with ``INCRBY`` on a missing key; double
parsing with ``ZADD`` (accepted or ``value is not a valid float``); double
formatting with ``ZSCORE`` in RESP2 and RESP3 on a skiplist-encoded sorted set;
INCRBYFLOAT and HINCRBYFLOAT rows by storing the current value (when not None)
and running the command.
"""

import math

import pytest

from respkv.keyspace.numbers import (
    ERR_HASH_NOT_FLOAT,
    ERR_INCR_NAN_OR_INFINITY,
    ERR_NAN_OR_INFINITY,
    ERR_NOT_FLOAT,
    add_long_double,
    format_double,
    format_long_double,
    hincr_by_float,
    incr_by_float,
    parse_float,
    parse_int,
    parse_long_double,
)

INT_ROWS = [
    (b"0", 0),
    (b"1", 1),
    (b"-1", -1),
    (b"12345", 12345),
    (b"9223372036854775807", 9223372036854775807),
    (b"-9223372036854775808", -9223372036854775808),
    (b"9223372036854775808", None),
    (b"-9223372036854775809", None),
    (b"18446744073709551616", None),
    (b"99999999999999999999", None),
    (b"-99999999999999999999", None),
    (b"12345678901234567890123", None),
    (b"-0", None),
    (b"00", None),
    (b"01", None),
    (b"00000000000000000001", None),
    (b"-0000000000000000001", None),
    (b"+1", None),
    (b" 1", None),
    (b"1 ", None),
    (b"", None),
    (b"-", None),
    (b"--1", None),
    (b"1e3", None),
    (b"1.0", None),
    (b"0x10", None),
    (b"1_000", None),
    (b"1\x00", None),
    (b"\xd9\xa1", None),  # a non-ASCII digit
]

FLOAT_ROWS = [
    (b"1", 1.0),
    (b"1.5", 1.5),
    (b".5", 0.5),
    (b"5.", 5.0),
    (b"-.5", -0.5),
    (b"+.5", 0.5),
    (b"+1", 1.0),
    (b"00012", 12.0),
    (b"1e5", 1e5),
    (b"1E5", 1e5),
    (b"1e+5", 1e5),
    (b"1e0005", 1e5),
    (b"1e-5", 1e-5),
    (b"inf", math.inf),
    (b"+inf", math.inf),
    (b"-inf", -math.inf),
    (b"Inf", math.inf),
    (b"INF", math.inf),
    (b"infinity", math.inf),
    (b"-Infinity", -math.inf),
    (b"0x10", 16.0),
    (b"0X1P3", 8.0),
    (b"0x1.8p1", 3.0),
    (b"0x.8", 0.5),
    (b"0x1p-1074", 5e-324),
    (b"1e-310", 1e-310),  # subnormal results are fine
    (b"3e-324", 5e-324),
    (b"2.4703282292062328e-324", 5e-324),
    (b"0e-400", 0.0),
    (b"0e999999", 0.0),
    (b"1.7976931348623158e308", 1.7976931348623157e308),
    (b"1." + b"0" * 6000, 1.0),  # no length limit for doubles
    # rejected
    (b".", None),
    (b"", None),
    (b"1e", None),
    (b"1e+", None),
    (b" 1", None),
    (b"1 ", None),
    (b"\t1", None),
    (b"infinit", None),
    (b"nan", None),
    (b"NaN", None),
    (b"-nan", None),
    (b"nan(123)", None),
    (b"0x", None),
    (b"0x1p", None),
    (b"0x-1", None),
    (b"--1", None),
    (b"1,5", None),
    (b"1_0", None),
    (b"1\x00", None),
    (b"1.5\x00x", None),
    (b"\xd9\xa1", None),
    (b"1e400", None),  # overflow
    (b"-1e400", None),
    (b"1.7976931348623159e308", None),
    (b"0x1.fffffffffffff8p1023", None),
    (b"1e-400", None),  # non-zero value that underflows to zero
    (b"1e-324", None),
    (b"2.4703282292062327e-324", None),
    (b"0x1p-1075", None),
]

# (score as given to ZADD, reply text of ZSCORE, identical in RESP2 and RESP3)
FORMAT_ROWS = [
    (b"1.1", b"1.1000000000000001"),
    (b"0.1", b"0.10000000000000001"),
    (b"0.3", b"0.29999999999999999"),
    (b"-3.14159", b"-3.1415899999999999"),
    (b"2.5", b"2.5"),
    (b"100", b"100"),
    (b"0", b"0"),
    (b"-0", b"-0"),  # a listpack-encoded zset would say "0": sign lost in storage
    (b"0.0001", b"0.0001"),
    (b"1e-5", b"1.0000000000000001e-05"),
    (b"-1.5e-7", b"-1.4999999999999999e-07"),
    (b"1e15", b"1000000000000000"),
    (b"1e16", b"10000000000000000"),
    (b"1e17", b"1e+17"),
    (b"1e20", b"1e+20"),
    (b"1e21", b"1e+21"),
    (b"12345678901234567", b"12345678901234568"),
    (b"123456789012345678", b"1.2345678901234568e+17"),
    (b"123456.789e3", b"123456789"),
    (b"5e-324", b"4.9406564584124654e-324"),
    (b"1e-310", b"9.9999999999999694e-311"),
    (b"1.7976931348623157e308", b"1.7976931348623157e+308"),
    (b"inf", b"inf"),
    (b"-inf", b"-inf"),
]

FIVE_E_100 = (
    b"4999999999999999999834676766103671309749349509914248039635695770876009334741322"
    b"1622094889200585277440"
)
ONE_E_400 = (
    b"1000000000000000000028188068394758651458645343362905203862591069353968553400862"
    b"9862039363994848324160522094053927317616200295822777259255734023828976593340661"
    b"0177974474345461739178624481166749717237789438243915933380474706750262466844013"
    b"5923751360383034373548550524495596497902182503828009106841494740245689865304095"
    b"1017512658092615827588920183472511643316591362664138176309734806343732497430221"
    b"946880"
)

# (stored value or None for a missing key, increment, new value or error text)
INCRBYFLOAT_ROWS = [
    (None, b"3.0e3", b"3000"),
    (b"10.5", b"0.1", b"10.6"),
    (b"1.1", b"2.2", b"3.3"),
    (b"0.1", b"0.2", b"0.3"),
    (None, b"0.1", b"0.1"),
    (None, b"-0.1", b"-0.1"),
    (b"10", b".5", b"10.5"),
    (b"5.", b"+5", b"10"),
    (b"-5", b"5", b"0"),
    (b"3", b"-5", b"-2"),
    (None, b"1E5", b"100000"),
    (None, b"1e-5", b"0.00001"),
    (None, b"0X1P3", b"8"),
    (b"0xd68F3cBbFBfp-16", b"598455514.", b"823437477.7490081787109375"),
    # 17 decimals of the exact long double value, trailing zeros trimmed
    (None, b"123456789.123456789", b"123456789.12345678899873747"),
    (None, b"1.23456789012345678901234567890", b"1.23456789012345679"),
    (None, b"3.14159265358979323846", b"3.14159265358979324"),
    (None, b"0.99999999999999999999", b"1"),
    (b"3608377835337", b"415868", b"3608378251205"),
    (b"-4890682883607.59", b"-8.", b"-4890682883615.59000015258789062"),
    (b"35139.69371648", b"-2.", b"35137.69371647999999908"),
    (b"187.1", b"-9629137028587", b"-9629137028399.89999961853027344"),
    # 64-bit significand: exact beyond doubles, rounded beyond 2**64
    (None, b"9007199254740993", b"9007199254740993"),
    (None, b"18446744073709551617", b"18446744073709551616"),
    (b"+63431297929", b"75463134113657120090307", b"75463134113720551391232"),
    (b"99999999999999999", b"1", b"100000000000000000"),
    (None, b"1e20", b"100000000000000000000"),
    (b"1e20", b"0.1", b"100000000000000000000"),
    (b"1.5", b"1e-20", b"1.5"),
    # large values print every integer digit
    (None, b"5e100", FIVE_E_100),
    (None, b"1e400", ONE_E_400),
    # rounding at the 17th decimal: ties go to even
    (None, b"1e-17", b"0.00000000000000001"),
    (None, b"5e-18", b"0"),
    (None, b"5.000000001e-18", b"0.00000000000000001"),
    (None, b"1.5e-17", b"0.00000000000000002"),
    (None, b"2.5e-17", b"0.00000000000000002"),
    (None, b"0.000003814697265625", b"0.00000381469726562"),
    (None, b"0.000011444091796875", b"0.00001144409179688"),
    (None, b"-0.000003814697265625", b"-0.00000381469726562"),
    # negative zero never shows
    (None, b"-0", b"0"),
    (b"-0", b"-0", b"0"),
    (None, b"-1e-18", b"0"),
    (None, b"-0.000000000000000005", b"0"),
    (None, b"-0.000000000000000006", b"-0.00000000000000001"),
    # the long double range and its subnormals
    (None, b"0x1p-16445", b"0"),
    (None, b"0x1.8p-16446", b"0"),
    (None, b"0x1p-16446", ERR_NOT_FLOAT),
    (None, b"1e-4951", ERR_NOT_FLOAT),
    (None, b"1e4933", ERR_NOT_FLOAT),
    (None, b"1.18973149535723176508e+4932", ERR_NOT_FLOAT),
    (b"1.1897314953572317650e4932", b"1.1897314953572317650e4932", ERR_INCR_NAN_OR_INFINITY),
    # operands of 5120 bytes or more are refused
    (None, b"1." + b"0" * 5117, b"1"),
    (None, b"1." + b"0" * 5118, ERR_NOT_FLOAT),
    (b"1." + b"0" * 5118, b"1", ERR_NOT_FLOAT),
    # infinities are parsed, then refused as a result
    (None, b"inf", ERR_INCR_NAN_OR_INFINITY),
    (None, b"-inf", ERR_INCR_NAN_OR_INFINITY),
    (b"inf", b"1", ERR_INCR_NAN_OR_INFINITY),
    (b"inf", b"-inf", ERR_INCR_NAN_OR_INFINITY),
    # bad operands
    (b"abc", b"1", ERR_NOT_FLOAT),
    (b"abc", b"x", ERR_NOT_FLOAT),
    (b"inf", b"x", ERR_NOT_FLOAT),
    (b"1", b"x", ERR_NOT_FLOAT),
    (None, b"nan", ERR_NOT_FLOAT),
    (None, b" 1", ERR_NOT_FLOAT),
    (None, b"1 ", ERR_NOT_FLOAT),
    (None, b"", ERR_NOT_FLOAT),
    (None, b"1_0", ERR_NOT_FLOAT),
    (None, b"1.5\x00x", ERR_NOT_FLOAT),
    (b" 1", b"1", ERR_NOT_FLOAT),
]

HINCRBYFLOAT_ROWS = [
    (None, b"1.5", b"1.5"),
    (b"10.5", b"0.1", b"10.6"),
    (None, b"1e400", ONE_E_400),
    (None, b"0x1p-16445", b"0"),
    (None, b"-1e-20", b"0"),
    # the increment is checked first, and infinities are refused up front
    (b"abc", b"1", ERR_HASH_NOT_FLOAT),
    (b"abc", b"x", ERR_NOT_FLOAT),
    (b"abc", b"inf", ERR_NAN_OR_INFINITY),
    (b"1", b"inf", ERR_NAN_OR_INFINITY),
    (b"1", b"-inf", ERR_NAN_OR_INFINITY),
    (b"1", b"nan", ERR_NOT_FLOAT),
    (b"inf", b"1", ERR_INCR_NAN_OR_INFINITY),
    (b"1.1897314953572317650e4932", b"1.1897314953572317650e4932", ERR_INCR_NAN_OR_INFINITY),
]


@pytest.mark.parametrize("text, expected", INT_ROWS)
def test_parse_int(text, expected):
    assert parse_int(text) == expected


@pytest.mark.parametrize("text, expected", FLOAT_ROWS)
def test_parse_float(text, expected):
    got = parse_float(text)
    if expected is None:
        assert got is None
    else:
        assert got == expected and math.copysign(1, got) == math.copysign(1, expected)


@pytest.mark.parametrize("score, reply", FORMAT_ROWS)
def test_format_double(score, reply):
    assert format_double(parse_float(score)) == reply


def _run(fn, current, increment):
    try:
        return fn(current, increment)
    except ValueError as e:
        return str(e)


@pytest.mark.parametrize("current, increment, expected", INCRBYFLOAT_ROWS)
def test_incr_by_float(current, increment, expected):
    assert _run(incr_by_float, current, increment) == expected


@pytest.mark.parametrize("current, increment, expected", HINCRBYFLOAT_ROWS)
def test_hincr_by_float(current, increment, expected):
    assert _run(hincr_by_float, current, increment) == expected


def test_huge_result_prints_all_digits():
    # HINCRBYFLOAT h f 1e4932 on a field holding "1": 4933 digits.
    got = hincr_by_float(b"1", b"1e4932")
    assert len(got) == 4933
    assert got.startswith(b"1000000000000000000006018949387963891323837774254533114773785")
    assert got.endswith(b"886622720")


def test_incrbyfloat_chain_matches_redis():
    # Ten INCRBYFLOAT 0.1 in a row on a missing key, as Redis replies them.
    value = None
    replies = []
    for _ in range(10):
        value = incr_by_float(value, b"0.1")
        replies.append(value)
    assert replies == [
        b"0.1", b"0.2", b"0.3", b"0.4", b"0.5", b"0.6", b"0.7", b"0.8", b"0.9", b"1",
    ]


def test_long_double_extremes():
    largest = parse_long_double(b"1.18973149535723176502e+4932")
    assert largest == ((1 << 64) - 1, 16320)
    text = format_long_double(largest)
    assert len(text) == 4933 and text.startswith(b"118973149535723176502126385303")
    assert parse_long_double(b"0x1p-16445") == (1, -16445)
    assert parse_long_double(b"-0x1p-16445") == (-1, -16445)
    assert add_long_double(largest, largest) == math.inf
    assert math.isnan(add_long_double(math.inf, -math.inf))


def test_integer_stored_values_parse_like_strings():
    # A value written by INCR is an integer string; it feeds INCRBYFLOAT as is.
    assert incr_by_float(b"-9223372036854775808", b"0") == b"-9223372036854775808"
    assert incr_by_float(b"9223372036854775807", b"1") == b"9223372036854775808"
