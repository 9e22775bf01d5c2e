"""The replication value codec: every type round-trips, malformed blobs are refused."""

from __future__ import annotations

import math
import struct

import pytest

from respkv.keyspace.codec import decode_value, encode_value
from respkv.keyspace.values import Hash, ListValue, Set, build_set
from respkv.keyspace.zset import SortedSet


def round_trip(value):
    blob = encode_value(value)
    assert isinstance(blob, bytes)
    copy = decode_value(blob)
    assert copy.__class__ is value.__class__
    assert copy is not value
    return copy


def make_hash(pairs, hashtable: bool) -> Hash:
    h = Hash()
    dict.update(h, pairs)
    h.hashtable = hashtable
    return h


def make_zset(*pairs) -> SortedSet:
    zs = SortedSet()
    for score, member in pairs:
        zs.set_score(member, score)
    return zs


# -- strings --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", b"hello", b"\r\n\x00\xff binary\x00\r\n", bytes(range(256)) * 40])
def test_string_round_trip(value):
    blob = encode_value(value)
    assert blob == b"s" + value
    assert decode_value(blob) == value
    assert decode_value(blob).__class__ is bytes


# -- lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "items",
    [[b"only"], [b"", b"\x00", b"a\r\nb", b"x" * 1000], [str(i).encode() * (i % 7) for i in range(10_000)]],
)
def test_list_round_trip(items):
    value = ListValue(items)
    copy = round_trip(value)
    assert copy == value
    assert list(copy) == items


def test_empty_list_round_trip():
    assert round_trip(ListValue()) == ListValue()


def test_decoded_list_is_independent():
    value = ListValue([b"a", b"b"])
    copy = round_trip(value)
    copy.append(b"c")
    assert value == ListValue([b"a", b"b"])


# -- hashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("hashtable", [False, True])
def test_hash_round_trip_keeps_encoding(hashtable):
    pairs = {b"f": b"v", b"": b"", b"\x00\r\n": b"bin\x00ary", b"k" * 100: b"v" * 200}
    value = make_hash(pairs, hashtable)
    copy = round_trip(value)
    assert copy == value
    assert copy.hashtable is hashtable
    assert copy.index is None


def test_hash_made_by_put_round_trips():
    value = Hash()
    for i in range(600):  # past the 512-entry listpack limit
        value.put(b"field:%d" % i, b"value:%d" % i)
    assert value.hashtable
    copy = round_trip(value)
    assert copy == value and copy.hashtable


# -- sets -----------------------------------------------------------------------------


def test_intset_round_trip():
    value = build_set([b"3", b"-7", b"12", b"0"])
    assert not value.hashtable
    copy = round_trip(value)
    assert copy == value
    assert copy.hashtable is False
    assert copy.order is None and copy.index is None
    assert list(copy.ordered()) == list(value.ordered()) == [b"-7", b"0", b"3", b"12"]


def test_hashtable_set_round_trip():
    value = build_set([b"a", b"", b"\x00\r\n", b"5"])
    assert value.hashtable
    copy = round_trip(value)
    assert copy == value
    assert copy.hashtable is True
    assert copy.order is None and copy.index is None


def test_forced_hashtable_set_of_integers_keeps_encoding():
    value = build_set([b"1", b"2"], hashtable=True)
    copy = round_trip(value)
    assert copy.hashtable is True


def test_empty_set_round_trip():
    value = Set()
    copy = round_trip(value)
    assert copy == value and copy.hashtable is False


# -- sorted sets ----------------------------------------------------------------------


def assert_same_zset(copy: SortedSet, value: SortedSet) -> None:
    assert copy.scores == value.scores
    assert list(copy) == list(value)  # ZRANGE order
    assert list(copy.order) == sorted((s, m) for m, s in copy.scores.items())  # views agree
    assert copy.listpack is value.listpack
    for member, score in value.scores.items():
        assert math.copysign(1.0, copy.scores[member]) == math.copysign(1.0, score)


def test_zset_round_trip_special_scores_and_ties():
    value = SortedSet()
    value.listpack = False  # a skiplist keeps -0.0
    for score, member in [
        (math.inf, b"top"),
        (-math.inf, b"bottom"),
        (-0.0, b"negzero"),
        (0.0, b"zero"),
        (1.5, b"b"),
        (1.5, b"a"),
        (1.5, b"ab"),
        (1.5, b""),
        (-2.25, b"\x00\r\n"),
        (5e-324, b"tiny"),
    ]:
        value.set_score(member, score)
    copy = round_trip(value)
    assert_same_zset(copy, value)
    assert math.copysign(1.0, copy.scores[b"negzero"]) == -1.0
    assert [m for _, m in copy if _ == 1.5] == [b"", b"a", b"ab", b"b"]
    assert copy.span(0, -1) == value.span(0, -1)
    assert copy.span(0, -1, reverse=True) == value.span(0, -1, reverse=True)
    assert copy.rank(b"a") == value.rank(b"a")


@pytest.mark.parametrize("listpack", [True, False])
def test_zset_listpack_flag_preserved(listpack):
    value = make_zset((1.0, b"a"), (2.0, b"b"), (2.0, b"c"))
    value.listpack = listpack
    copy = round_trip(value)
    assert_same_zset(copy, value)
    assert copy.encoding == value.encoding


def test_large_skiplist_zset_round_trip():
    value = make_zset(*[((i * 7919) % 1000 - 500.5, b"m%05d" % i) for i in range(2000)])
    assert not value.listpack
    copy = round_trip(value)
    assert_same_zset(copy, value)
    copy.set_score(b"new", 0.0)
    assert b"new" not in value


def test_empty_zset_round_trip():
    copy = round_trip(SortedSet())
    assert len(copy) == 0 and copy.listpack is True


# -- unsupported values and malformed blobs -------------------------------------------


def test_unsupported_type_is_a_type_error():
    with pytest.raises(TypeError):
        encode_value("text")
    with pytest.raises(TypeError):
        encode_value({b"a": b"b"})  # a plain dict is not a Hash


def test_empty_blob():
    with pytest.raises(ValueError, match="empty"):
        decode_value(b"")


@pytest.mark.parametrize("tag", [b"x", b"L", b"\x00", b"H"])
def test_unknown_tag(tag):
    with pytest.raises(ValueError, match="unknown type tag"):
        decode_value(tag + b"\x00\x00\x00\x00\x00")


@pytest.mark.parametrize(
    "value",
    [
        ListValue([b"a", b"bc"]),
        make_hash({b"f": b"v", b"g": b"\r\n"}, False),
        build_set([b"1", b"22"]),
        make_zset((1.0, b"a"), (-math.inf, b"b")),
    ],
    ids=["list", "hash", "set", "zset"],
)
def test_truncated_blobs(value):
    blob = encode_value(value)
    for cut in range(1, len(blob)):
        with pytest.raises(ValueError, match="malformed"):
            decode_value(blob[:cut])


def test_truncated_hash_at_every_position():
    blob = encode_value(make_hash({b"field": b"value", b"": b"x"}, True))
    for cut in range(len(blob)):
        with pytest.raises(ValueError):
            decode_value(blob[:cut])


@pytest.mark.parametrize(
    "value",
    [ListValue([b"a"]), make_hash({b"f": b"v"}, False), build_set([b"a"]), make_zset((1.0, b"a")), ListValue()],
    ids=["list", "hash", "set", "zset", "empty-list"],
)
def test_trailing_garbage(value):
    with pytest.raises(ValueError, match="trailing"):
        decode_value(encode_value(value) + b"\x00")


def test_bad_encoding_byte():
    blob = bytearray(encode_value(make_hash({b"f": b"v"}, False)))
    blob[1] = 2
    with pytest.raises(ValueError, match="encoding byte"):
        decode_value(bytes(blob))


def test_huge_count_is_refused_without_allocating():
    for tag in (b"l", b"h\x00", b"S\x00", b"z\x00"):
        with pytest.raises(ValueError, match="truncated"):
            decode_value(tag + struct.pack("<I", 0xFFFFFFFF))


def test_duplicates_and_nan_are_refused():
    dup_set = b"S\x01" + struct.pack("<III", 2, 1, 1) + b"aa"
    with pytest.raises(ValueError, match="duplicate"):
        decode_value(dup_set)
    dup_hash = b"h\x00" + struct.pack("<IIIII", 2, 1, 1, 1, 1) + b"kvkw"
    with pytest.raises(ValueError, match="duplicate"):
        decode_value(dup_hash)
    dup_zset = b"z\x01" + struct.pack("<Idd II", 2, 1.0, 2.0, 1, 1) + b"mm"
    with pytest.raises(ValueError, match="duplicate"):
        decode_value(dup_zset)
    nan_zset = b"z\x01" + struct.pack("<Id I", 1, math.nan, 1) + b"m"
    with pytest.raises(ValueError, match="NaN"):
        decode_value(nan_zset)
