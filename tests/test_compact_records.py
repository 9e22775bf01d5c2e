"""The compact form a version store keeps records in: round trips, digests, the
fast encoders and parsers against the general ones, and what the collector tracks."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.keyspace.store import Keyspace
from respkv.peer import wire
from respkv.replication import vclock
from respkv.replication.store import VersionStore
from respkv.replication.versions import (
    Version,
    compact,
    compact_digest,
    compact_holds,
    compact_single,
    decode_operation,
    decode_record,
    digest,
    encode_operation,
    encode_operation_write,
    encode_record,
    encode_single,
    encode_string_write,
    expand,
    next_string_write,
    parse_operation,
    plain_string_at,
)

A = b"\x01" * 20
B = b"\x02" * 20
C = b"\x03" * 20


def _fields(record):
    return [(v.clock, v.stamp, v.actor, v.tombstone, v.expire_at, v.value) for v in record]


def _clock(*entries):
    return vclock.encode(tuple(sorted(entries)))


ONE = _clock((A, 1, 10))
TWO = _clock((A, 2, 20), (B, 1, 15))
OTHER = _clock((C, 1, 12))

#: Records as a store holds them: the keyspace's version has value None.
RECORDS = {
    "materialized": (Version(ONE, 10, A, False, 0, None),),
    "materialized-expiring": (Version(TWO, 20, A, False, 2**63, None),),
    "tombstone": (Version(TWO, 20, B, True, 0, b""),),
    "value-kept-here": (Version(ONE, 10, A, False, 5, b"sold"),),
    "empty-clock": (Version(b"", 0, A, False, 0, None),),
    "tombstone-with-value": (Version(ONE, 10, A, True, 0, b"sx"),),
    "siblings": (Version(ONE, 10, A, False, 0, b"sa"), Version(OTHER, 12, C, False, 0, None)),
    "siblings-tombstone": (Version(TWO, 20, A, True, 0, b""), Version(OTHER, 12, C, False, 7, b"sc")),
}


@pytest.mark.parametrize("record", RECORDS.values(), ids=RECORDS.keys())
def test_compact_round_trip_and_digest(record):
    kept = compact(record)
    assert _fields(expand(kept)) == _fields(record)
    assert compact_digest(kept) == digest(record)
    assert compact_holds(kept, digest(record))
    assert not compact_holds(kept, digest(record) + b"x")
    single = compact_single(kept)
    if len(record) == 1:
        (v,) = record
        assert single == (v.clock, v.tombstone, v.expire_at)
    else:
        assert single is None


@pytest.mark.parametrize("name", ["materialized", "materialized-expiring", "tombstone", "empty-clock"])
def test_the_common_records_are_bytes(name):
    kept = compact(RECORDS[name])
    assert kept.__class__ is bytes and not gc.is_tracked(kept)


def test_materialized_version_loses_its_value():
    record = (Version(ONE, 10, A, False, 0, b"sa"), Version(OTHER, 12, C, False, 0, b"sc"))
    assert [v.value for v in expand(compact(record, materialized=record[1]))] == [b"sa", None]
    (single,) = expand(compact(record[:1], materialized=record[0]))
    assert single.value is None


def test_tuple_forms_are_untracked_once_collected():
    kept = compact(RECORDS["siblings"])
    gc.collect()
    gc.collect()  # a tuple of tuples is untracked once its items are
    assert not gc.is_tracked(kept) and not any(gc.is_tracked(v) for v in kept)


def test_expand_makes_new_versions():
    kept = compact(RECORDS["siblings"])
    first, second = expand(kept), expand(kept)
    assert first[0] is not second[0]
    first[0].value = b"changed"
    assert expand(kept)[0].value == b"sa"


versions = st.builds(
    Version,
    clock=st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1)),
                   max_size=3, unique_by=lambda e: e[0]).map(lambda entries: vclock.encode(tuple(sorted(entries)))),
    stamp=st.integers(0, 2**64 - 1),
    actor=st.binary(min_size=20, max_size=20),
    tombstone=st.booleans(),
    expire_at=st.integers(0, 2**64 - 1),
    value=st.one_of(st.none(), st.binary(max_size=40)),
)


@given(st.lists(versions, min_size=1, max_size=4, unique_by=lambda v: v.clock))
def test_compact_round_trip_property(record):
    record = tuple(record)
    for v in record:
        if v.tombstone and v.value is None:
            v.value = b""  # a tombstone is never materialized
    kept = compact(record)
    expanded = expand(kept)
    assert compact_digest(kept) == digest(record) == digest(expanded)
    for got, want in zip(expanded, record):
        assert (got.clock, got.stamp, got.actor, got.tombstone, got.expire_at) == (
            want.clock, want.stamp, want.actor, want.tombstone, want.expire_at,
        )
        # A lone tombstone's value is b"" either way; every other value is kept.
        assert got.value == want.value or (got.tombstone and not got.value and not want.value)


# -- the hot encoders and parsers ------------------------------------------------------------


@pytest.mark.parametrize("clock", [ONE, TWO, b""], ids=["one-entry", "two-entries", "empty"])
@pytest.mark.parametrize("data", [b"", b"xyz", b"\r\n" * 100])
@pytest.mark.parametrize("expire_at", [0, 12345])
def test_encode_string_write_is_the_record_and_its_prefix(clock, data, expire_at):
    kept, blob = encode_string_write(clock, 77, A, expire_at, data)
    version = Version(clock, 77, A, False, expire_at, None)
    assert blob == encode_single(version, b"s" + data)
    assert blob.startswith(kept)  # the compact form is the record's first bytes
    assert _fields(expand(kept)) == _fields((version,))
    assert _fields(decode_record(blob)) == _fields((version.with_value(b"s" + data),))
    assert plain_string_at(blob) == (0 if expire_at else len(kept) + 1)


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(encode_single(Version(ONE, 1, A, True, 0, b""), b""), id="tombstone"),
        pytest.param(encode_single(Version(ONE, 1, A, False, 5, None), b"sx"), id="expiring"),
        pytest.param(encode_single(Version(ONE, 1, A, False, 0, None), b"Sx"), id="not-a-string"),
        pytest.param(encode_single(Version(ONE, 1, A, False, 0, None), b""), id="no-value"),
        pytest.param(encode_record(RECORDS["siblings-tombstone"]), id="siblings"),
        pytest.param(encode_single(Version(ONE, 1, A, False, 0, None), b"sx")[:-1], id="truncated"),
        pytest.param(encode_single(Version(ONE, 1, A, False, 0, None), b"sx") + b"x", id="trailing"),
        pytest.param(encode_single(Version(ONE[:-1], 1, A, False, 0, None), b"sx"), id="bad-clock-length"),
        pytest.param(b"\x01\x00", id="short"),
        pytest.param(b"", id="empty"),
    ],
)
def test_plain_string_at_refuses_everything_else(blob):
    assert plain_string_at(blob) == 0


def test_plain_string_at_validates_a_long_clock():
    unsorted = b"".join(vclock.encode(((actor, 1, 0),)) for actor in (B, A))
    with pytest.raises(ValueError):
        plain_string_at(encode_single(Version(unsorted, 1, A, False, 0, None), b"sx"))


@pytest.mark.parametrize(
    ("old_clock", "expected"),
    [
        (_clock((A, 4, 5)), True),  # only this node wrote it: the fused path
        (_clock((B, 4, 5)), False),
        (TWO, False),
    ],
)
def test_next_string_write_matches_the_general_path(old_clock, expected):
    old = compact((Version(old_clock, 5, A, False, 0, None),))
    fused = next_string_write(old, A, 99, 0, b"new")
    if not expected:
        assert fused is None
        return
    clock = vclock.increment_encoded(old_clock, A, 99)
    assert fused == (old_clock, *encode_string_write(clock, 99, A, 0, b"new"))


def test_next_string_write_needs_a_materialized_single_version():
    assert next_string_write(compact(RECORDS["siblings"]), A, 1, 0, b"x") is None
    assert next_string_write(compact(RECORDS["value-kept-here"]), A, 1, 0, b"x") is None


@pytest.mark.parametrize("clock", [ONE, TWO])
def test_operation_write_matches_encode_operation(clock):
    args = [b"SADD", b"k", b"", b"\r\n\x00"]
    kept, blob = encode_operation_write(clock, 42, A, args)
    version = Version(clock, 42, A, False, 0, None)
    assert blob == encode_operation(version, args)
    parsed_kept, command = parse_operation(blob)
    assert command == args
    assert parsed_kept == kept
    assert _fields(expand(kept)) == _fields((version,))
    decoded, _ = decode_operation(blob)
    assert _fields((decoded,)) == _fields((version,))


def test_first_clock():
    assert vclock.first(A, 7) == vclock.encode(vclock.increment(vclock.EMPTY, A, 7))


@pytest.mark.parametrize("args", [[], [b""], [b"REPL", b"k", b"\r\n$3\r\n"], [b"x" * 1000] * 3])
def test_encode_args_is_resp_bulks(args):
    assert wire.encode_args(args) == b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


# -- a store under load ---------------------------------------------------------------------------


def test_replicated_writes_leave_nothing_for_the_collector():
    coordinator_ks, replica_ks = Keyspace(clock_ms=lambda: 1000), Keyspace(clock_ms=lambda: 1000)
    coordinator = VersionStore(coordinator_ks, A)
    replica = VersionStore(replica_ks, B)
    keys = [b"key:%d" % i for i in range(2000)]
    gc.collect()
    before = len(gc.get_objects())
    for stamp in (1000, 1001):
        for key in keys:
            coordinator_ks.set(key, b"v%d" % stamp)
            parent, blob = coordinator.written(key, stamp)
            assert replica.apply_shipped(key, parent, blob)
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # not one object per record
    for key in keys:
        assert replica_ks.get(key) == b"v1001"
        assert _fields(replica.record(key)) == _fields(coordinator.record(key))
        assert replica.holds(key, coordinator.digest(key))
    assert len(replica.records) == len(keys) and keys[0] in replica.records
