"""Versions and records: winner choice, reconciliation, superseding, digests, wire form."""

from __future__ import annotations

import itertools
import struct

import pytest

from respkv.replication import vclock
from respkv.replication.versions import (
    Version,
    context,
    decode_record,
    encode_operation,
    encode_single,
    is_operation,
    decode_operation,
    digest,
    encode_record,
    reconcile,
    same_versions,
    supersede,
    winner,
)

A = b"\x01" * 20
B = b"\x02" * 20
C = b"\x03" * 20
D = b"\x04" * 20


def ver(clock, stamp, actor=A, value=b"sx", tombstone=False, expire_at=0):
    return Version(vclock.encode(clock), stamp, actor, tombstone, expire_at, b"" if tombstone else value)


BASE = vclock.increment(vclock.EMPTY, A, 100)  # [A1]
X = ver(vclock.increment(BASE, B, 300), 300, B, b"sfrom-b")  # [A1, B1]
Y = ver(vclock.increment(BASE, C, 200), 200, C, b"sfrom-c")  # [A1, C1], concurrent with X


# -- winner ----------------------------------------------------------------------------------


def _all_orders(*versions):
    return list(itertools.permutations(versions))


@pytest.mark.parametrize("record", _all_orders(ver(BASE, 100), ver(BASE, 300, B), ver(BASE, 200, C)))
def test_winner_newest_stamp(record):
    assert winner(record).stamp == 300


@pytest.mark.parametrize("record", _all_orders(ver(BASE, 100, A), ver(BASE, 100, C), ver(BASE, 100, B)))
def test_winner_stamp_tie_broken_by_actor(record):
    assert winner(record).actor == C


LOW_CLOCK = ((A, 1, 5),)
HIGH_CLOCK = ((A, 2, 5),)  # encodes to larger bytes at the same stamp and actor


@pytest.mark.parametrize("record", _all_orders(ver(LOW_CLOCK, 100), ver(HIGH_CLOCK, 100)))
def test_winner_then_clock(record):
    assert winner(record).clock == vclock.encode(HIGH_CLOCK)


# -- reconcile -------------------------------------------------------------------------------


@pytest.mark.parametrize("newer_first", [False, True])
def test_reconcile_drops_dominated(newer_first):
    old = ver(BASE, 100)
    new = ver(vclock.increment(BASE, A, 110), 110)
    records = [(new,), (old,)] if newer_first else [(old,), (new,)]
    assert reconcile(records) == ((new,), 0)


def test_reconcile_causality_beats_stamps():
    # A descendant written on a node whose clock runs behind still replaces its ancestor.
    old = ver(BASE, 999)
    new = ver(vclock.increment(BASE, B, 1), 1, B)
    assert reconcile([(old,), (new,)]) == ((new,), 0)


@pytest.mark.parametrize("records", [[(X,), (Y,)], [(Y,), (X,)], [(X, Y)], [(Y, X), (X,)]])
def test_reconcile_keeps_concurrent_oldest_first(records):
    merged, dropped = reconcile(records)
    assert merged == (Y, X)
    assert dropped == 0


def test_reconcile_equal_versions_count_once_first_copy_kept():
    local = X.with_value(None)  # as a replica's materialized winner
    remote = X.with_value(b"sfrom-b")
    merged, dropped = reconcile([(local, Y), (remote, Y.with_value(Y.value))])
    assert dropped == 0
    assert len(merged) == 2
    assert merged[0] is Y
    assert merged[1] is local


def test_reconcile_single_equal_version_keeps_first_object():
    local = X.with_value(None)
    merged, dropped = reconcile([(local,), (X,)])
    assert merged == (local,) and merged[0] is local
    assert dropped == 0


@pytest.mark.parametrize(("max_siblings", "kept_stamps", "dropped"), [(4, [100, 200, 300, 400], 0), (2, [300, 400], 2), (1, [400], 3)])
def test_reconcile_bounds_siblings_dropping_oldest(max_siblings, kept_stamps, dropped):
    versions = [
        ver(vclock.increment(vclock.EMPTY, actor, stamp), stamp, actor)
        for actor, stamp in [(A, 400), (B, 100), (C, 300), (D, 200)]
    ]
    merged, count = reconcile([(v,) for v in versions], max_siblings)
    assert [v.stamp for v in merged] == kept_stamps
    assert count == dropped


@pytest.mark.parametrize("tombstone_first", [False, True])
def test_reconcile_dominating_tombstone_wins(tombstone_first):
    value = ver(BASE, 100)
    tombstone = ver(vclock.increment(BASE, B, 50), 50, B, tombstone=True)
    records = [(tombstone,), (value,)] if tombstone_first else [(value,), (tombstone,)]
    assert reconcile(records) == ((tombstone,), 0)


# -- supersede -------------------------------------------------------------------------------


def _clock(version):
    return vclock.decode(version.clock)


def _write(seen, stamp, actor=D):
    return ver(vclock.increment(seen, actor, stamp), stamp, actor, b"snew")


def test_supersede_no_record():
    new = _write(vclock.EMPTY, 500)
    assert supersede(None, vclock.EMPTY, new) == (new,)


def test_supersede_with_full_context_leaves_only_new():
    seen = context((X, Y))
    new = _write(seen, 500)
    assert supersede((Y, X), seen, new) == (new,)


@pytest.mark.parametrize(("seen_sibling", "other"), [(X, Y), (Y, X)])
def test_supersede_with_one_siblings_context_keeps_the_other(seen_sibling, other):
    seen = _clock(seen_sibling)
    new = _write(seen, 500)
    assert supersede((Y, X), seen, new) == (other, new)


def test_supersede_keeps_concurrent_version_arrived_after_the_read():
    seen = context((X, Y))  # what the client read
    late = ver(vclock.increment(vclock.EMPTY, D, 50), 50, D)  # arrived since, concurrent
    new = _write(seen, 500, A)
    assert supersede((late, Y, X), seen, new) == (late, new)


def test_supersede_keeps_newer_write_descending_the_context():
    seen = context((X, Y))
    newer = ver(vclock.increment(seen, C, 400), 400, C)  # a plain write after the read
    new = _write(seen, 500, A)
    assert supersede((newer,), seen, new) == (newer, new)


# -- context and digest ----------------------------------------------------------------------


def test_context_of_one_version_is_its_clock():
    assert context((X,)) == _clock(X)


def test_context_merges_siblings():
    assert context((X, Y)) == vclock.merge(_clock(X), _clock(Y))
    assert context((Y, X)) == ((A, 1, 100), (B, 1, 300), (C, 1, 200))


def test_digest_is_order_independent_and_set_sensitive():
    assert digest((X, Y)) == digest((Y, X))
    assert digest((X,)) != digest((X, Y))
    assert digest((Y,)) != digest((X,))
    assert digest((X,)) == digest((X.with_value(None),))
    assert same_versions((X, Y), (Y, X))
    assert not same_versions((X,), (Y,))


@pytest.mark.parametrize("empty", [None, ()])
def test_digest_of_no_record_is_empty(empty):
    assert digest(empty) == b""
    assert digest((X,)) != b""


# -- wire form -------------------------------------------------------------------------------

TWO_SIBLINGS = (
    Version(vclock.encode(_clock(X)), 300, B, False, 123_456, b"sfrom-b"),
    Version(vclock.encode(_clock(Y)), 200, C, True, 0, b""),
)


def _fields(version):
    return (version.clock, version.stamp, version.actor, version.tombstone, version.expire_at, version.value)


@pytest.mark.parametrize(
    "record",
    [
        TWO_SIBLINGS,
        (X,),
        (ver(vclock.EMPTY, 0, A, b""),),
        (ver(BASE, 2**63, A, b"s" + bytes(range(256)), expire_at=2**64 - 1),),
    ],
)
def test_record_round_trip(record):
    decoded = decode_record(encode_record(record))
    assert [_fields(v) for v in decoded] == [_fields(v) for v in record]


def test_record_round_trip_tombstone_flag():
    decoded = decode_record(encode_record(TWO_SIBLINGS))
    assert [v.tombstone for v in decoded] == [False, True]
    assert decoded[1].value == b""


BLOB = encode_record(TWO_SIBLINGS)


@pytest.mark.parametrize("cut", range(len(BLOB)))
def test_decode_record_rejects_every_truncation(cut):
    with pytest.raises(ValueError):
        decode_record(BLOB[:cut])


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(BLOB + b"\x00", id="trailing-byte"),
        pytest.param(struct.pack("<H", 0), id="count-zero"),
        pytest.param(b"", id="empty"),
    ],
)
def test_decode_record_rejects_malformed(blob):
    with pytest.raises(ValueError):
        decode_record(blob)


def test_decode_record_rejects_bad_clock():
    unsorted = b"".join(struct.pack("<20sQQ", actor, 1, 0) for actor in (B, A))
    with pytest.raises(ValueError):
        decode_record(encode_record((Version(unsorted, 1, A, False, 0, b"sx"),)))


# -- liveness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tombstone", "expire_at", "now", "live"),
    [
        (True, 0, 100, False),
        (True, 200, 100, False),
        (False, 0, 100, True),
        (False, 101, 100, True),
        (False, 100, 100, False),
        (False, 99, 100, False),
    ],
)
def test_version_live(tombstone, expire_at, now, live):
    assert ver(BASE, 1, tombstone=tombstone, expire_at=expire_at).live(now) is live


@pytest.mark.parametrize("tombstone", [False, True])
def test_encode_single_matches_encode_record(tombstone):
    clock = vclock.encode(((b"\x03" * 20, 2, 10),))
    value = b"" if tombstone else b"sabc"
    version = Version(clock, 10, b"\x03" * 20, tombstone, 0 if tombstone else 99, None)
    assert encode_single(version, value) == encode_record((version.with_value(value),))
    (decoded,) = decode_record(encode_single(version, value))
    assert (decoded.clock, decoded.tombstone, decoded.value) == (clock, tombstone, value)


def test_operations_round_trip_and_are_told_from_records():
    clock = vclock.encode(((b"\x04" * 20, 3, 77),))
    version = Version(clock, 77, b"\x04" * 20, False, 0, None)
    args = [b"LPUSH", b"list", b"", b"\r\n\x00"]
    blob = encode_operation(version, args)
    assert is_operation(blob) and not is_operation(encode_single(version, b"sv"))
    decoded, command = decode_operation(blob)
    assert command == args
    assert (decoded.clock, decoded.stamp, decoded.actor, decoded.tombstone) == (clock, 77, b"\x04" * 20, False)
    for cut in range(len(blob)):
        with pytest.raises(ValueError):
            decode_operation(blob[:cut])
    with pytest.raises(ValueError):
        decode_operation(blob + b"x")
    with pytest.raises(ValueError):
        decode_operation(encode_single(version, b"sv"))  # a record is not an operation
