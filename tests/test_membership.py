"""Tests for the membership value gossip ships between nodes.

Record validation and the wire encoding are table tests; merge is checked against
the CRDT laws (commutative, associative, idempotent) over seeded random
memberships, since those laws are what make every node converge.
"""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest

from respkv.cluster.membership import (
    WIRE_FIELDS,
    WIRE_TAG,
    Member,
    Membership,
    is_node_id,
)
from respkv.cluster.ring import Ring

A = "a" * 40
B = "b" * 40
C = "c" * 40


def member(node_id=A, host="10.0.0.1", port=7000, bus_port=17000, weight=1, epoch=1, left=False):
    return Member(node_id, host, port, bus_port, weight, epoch, left)


# -- records -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, ok",
    [
        ("0123456789abcdef0123456789abcdef01234567", True),
        ("0123456789ABCDEF0123456789abcdef01234567", False),  # uppercase
        ("0123456789abcdef0123456789abcdef0123456", False),  # 39 digits
        ("0123456789abcdef0123456789abcdef012345678", False),  # 41 digits
        ("g" * 40, False),
        (b"a" * 40, False),
        (None, False),
    ],
)
def test_is_node_id(value, ok):
    assert is_node_id(value) is ok


@pytest.mark.parametrize(
    "changes",
    [
        {"node_id": "node-1"},
        {"host": "localhost"},  # a name, not an address
        {"host": "10.0.0.01"},  # not an address either
        {"host": "::0001"},  # an address, but not spelled canonically
        {"host": ""},
        {"port": 0},
        {"port": 65536},
        {"port": True},
        {"bus_port": -1},
        {"weight": -1},
        {"weight": 1.5},
        {"epoch": -1},
        {"epoch": 2**63},
        {"left": 1},
    ],
)
def test_member_rejects_bad_fields(changes):
    fields = dict(node_id=A, host="10.0.0.1", port=7000, bus_port=17000)
    fields.update(changes)
    with pytest.raises(ValueError):
        Member(**fields)


@pytest.mark.parametrize("host", ["10.0.0.1", "::1", "2001:db8::7", "0.0.0.0"])
def test_member_accepts_canonical_addresses(host):
    assert member(host=host).host == host


@pytest.mark.parametrize(
    "older, newer",
    [
        (member(epoch=1), member(epoch=2)),
        (member(epoch=1, host="10.0.0.9"), member(epoch=2, host="10.0.0.1")),
        (member(epoch=3), member(epoch=3, left=True)),  # tombstone wins a tie
        (member(epoch=3, left=True), member(epoch=4)),  # a later rejoin beats it
        (member(epoch=3, host="10.0.0.1"), member(epoch=3, host="10.0.0.2")),
        (member(epoch=3, port=7000), member(epoch=3, port=7001)),
        (member(epoch=3, weight=1), member(epoch=3, weight=2)),
    ],
)
def test_supersedes_orders_records(older, newer):
    assert newer.supersedes(older)
    assert not older.supersedes(newer)
    assert not newer.supersedes(newer)


# -- the value ---------------------------------------------------------------------


def test_membership_keeps_winner_for_repeated_ids_and_orders_by_id():
    members = Membership([member(B), member(A, epoch=1), member(A, epoch=5), member(A, epoch=2)])
    assert list(members.members) == [A, B]
    assert members[A].epoch == 5
    assert [m.node_id for m in members] == [A, B]
    assert len(members) == 2 and A in members and C not in members
    assert members.get(C) is None


def test_active_excludes_tombstones():
    members = Membership([member(A), member(B, left=True), member(C)])
    assert members.active_ids() == (A, C)
    assert [m.node_id for m in members.active()] == [A, C]
    assert members.is_active(A) and not members.is_active(B) and not members.is_active("x")


def test_equality_and_hash_depend_on_records_only():
    one = Membership([member(A), member(B)])
    two = Membership([member(B), member(A)])
    assert one == two and hash(one) == hash(two)
    assert one != Membership([member(A), member(B, epoch=2)])


def test_config_epoch_is_sum_of_epochs():
    assert Membership().config_epoch == 0
    assert Membership([member(A, epoch=3), member(B, epoch=4, left=True)]).config_epoch == 7


# -- local changes -----------------------------------------------------------------


def test_with_member_adds_new_node_at_epoch_one():
    members = Membership().with_member(A, "10.0.0.1", 7000, 17000)
    assert members[A] == member(A, epoch=1)


def test_with_member_is_a_no_op_when_record_is_unchanged():
    members = Membership([member(A, epoch=4)])
    assert members.with_member(A, "10.0.0.1", 7000, 17000) is members


@pytest.mark.parametrize(
    "fields",
    [
        ("10.0.0.2", 7000, 17000, 1),
        ("10.0.0.1", 7001, 17000, 1),
        ("10.0.0.1", 7000, 17001, 1),
        ("10.0.0.1", 7000, 17000, 3),
    ],
)
def test_with_member_bumps_epoch_on_change(fields):
    members = Membership([member(A, epoch=4)])
    host, port, bus_port, weight = fields
    changed = members.with_member(A, host, port, bus_port, weight)
    assert changed[A] == Member(A, host, port, bus_port, weight, 5)
    assert changed.config_epoch == members.config_epoch + 1
    # The change wins against the old value however the merge is done.
    assert members.merge(changed) == changed == changed.merge(members)


def test_without_member_leaves_a_sticky_tombstone():
    members = Membership([member(A, epoch=4), member(B)])
    removed = members.without_member(A)
    assert removed[A] == member(A, epoch=5, left=True)
    assert removed.without_member(A) is removed
    # An old copy of the record cannot bring the node back.
    assert removed.merge(members) is removed
    assert members.merge(removed) == removed
    with pytest.raises(KeyError):
        members.without_member(C)


def test_rejoin_after_leaving_outranks_the_tombstone():
    gone = Membership([member(A, epoch=4)]).without_member(A)
    back = gone.with_member(A, "10.0.0.1", 7000, 17000)
    assert back[A] == member(A, epoch=6)
    assert gone.merge(back) == back


def test_restarted_node_reasserts_itself_above_what_peers_saw():
    # Peers remember A at epoch 9 with its old address; A restarted with epoch 1
    # and a new address.  After merging gossip, A re-asserts its record.
    peers = Membership([member(A, host="10.0.0.1", epoch=9), member(B)])
    mine = Membership([member(A, host="10.0.0.2", epoch=1)])
    merged = mine.merge(peers)
    assert merged[A].host == "10.0.0.1"
    fixed = merged.with_member(A, "10.0.0.2", 7000, 17000)
    assert fixed[A] == member(A, host="10.0.0.2", epoch=10)
    assert peers.merge(fixed) == fixed


# -- merge laws --------------------------------------------------------------------


def random_membership(rng: random.Random, ids: list[str]) -> Membership:
    """A random view over a small id pool, so views overlap and collide on epochs."""
    records = []
    for node_id in ids:
        if rng.random() < 0.3:
            continue
        records.append(
            Member(
                node_id,
                f"10.0.0.{rng.randint(1, 3)}",
                7000 + rng.randint(0, 2),
                17000 + rng.randint(0, 1),
                rng.randint(1, 2),
                rng.randint(0, 4),
                rng.random() < 0.2,
            )
        )
    return Membership(records)


def test_merge_laws_over_random_memberships():
    rng = random.Random(20240601)
    pool = ["%040x" % rng.getrandbits(160) for _ in range(5)]
    for _ in range(300):
        x, y, z = (random_membership(rng, pool) for _ in range(3))
        assert x.merge(y) == y.merge(x)
        assert x.merge(y).merge(z) == x.merge(y.merge(z))
        assert x.merge(x) == x
        merged = x.merge(y)
        assert merged.merge(x) == merged and merged.merge(y) == merged
        assert merged.config_epoch >= max(x.config_epoch, y.config_epoch)
        assert merged.digest() == y.merge(x).digest()


def test_gossip_in_any_order_converges():
    rng = random.Random(7)
    pool = ["%040x" % rng.getrandbits(160) for _ in range(6)]
    views = [random_membership(rng, pool) for _ in range(4)]
    results = set()
    for order in itertools.permutations(views):
        state = Membership()
        for view in order:
            state = state.merge(view)
        results.add(state)
    assert len(results) == 1


def test_merge_returns_self_when_nothing_is_newer():
    members = Membership([member(A, epoch=3), member(B)])
    assert members.merge(Membership([member(A, epoch=2)])) is members
    assert members.merge(Membership()) is members
    assert members.merge(members) is members


def test_merge_takes_newer_records_per_node():
    mine = Membership([member(A, epoch=3), member(B, epoch=1)])
    theirs = Membership([member(A, epoch=2), member(B, epoch=2, port=7005), member(C)])
    merged = mine.merge(theirs)
    assert merged[A] == member(A, epoch=3)
    assert merged[B] == member(B, epoch=2, port=7005)
    assert merged[C] == member(C)


# -- digest and wire ---------------------------------------------------------------


def test_digest_is_short_stable_and_content_sensitive():
    members = Membership([member(A), member(B)])
    assert len(members.digest()) == 16
    int(members.digest(), 16)
    assert members.digest() == Membership([member(B), member(A)]).digest()
    # Stable across processes (no salted hash()): BLAKE2b-64 over the
    # length-prefixed wire fields, pinned to a literal value.
    hasher = hashlib.blake2b(digest_size=8)
    for field in members.to_wire():
        hasher.update(b"%d:%b" % (len(field), field))
    assert members.digest() == hasher.hexdigest() == "c1a5eddde6d080dd"
    assert members.digest() != Membership([member(A), member(B, epoch=2)]).digest()
    assert members.digest() != Membership([member(A)]).digest()


def test_to_wire_layout():
    members = Membership([member(B, left=True, epoch=2), member(A, host="::1", weight=3)])
    assert members.to_wire() == [
        WIRE_TAG,
        A.encode(), b"::1", b"7000", b"17000", b"3", b"1", b"0",
        B.encode(), b"10.0.0.1", b"7000", b"17000", b"1", b"2", b"1",
    ]  # fmt: skip
    assert Membership().to_wire() == [WIRE_TAG]
    assert (len(members.to_wire()) - 1) / WIRE_FIELDS == 2


def test_to_wire_returns_a_fresh_list():
    members = Membership([member(A)])
    members.to_wire().clear()
    assert len(members.to_wire()) == 1 + WIRE_FIELDS


def test_wire_round_trip():
    rng = random.Random(3)
    pool = ["%040x" % rng.getrandbits(160) for _ in range(8)]
    for _ in range(50):
        members = random_membership(rng, pool)
        assert Membership.from_wire(members.to_wire()) == members
    # bytearray and memoryview items (as a parser may hand them over) work too.
    wire = [bytearray(item) for item in Membership([member(A)]).to_wire()]
    assert Membership.from_wire(wire) == Membership([member(A)])


GOOD = [A.encode(), b"10.0.0.1", b"7000", b"17000", b"1", b"1", b"0"]


def with_field(index, value):
    fields = list(GOOD)
    fields[index] = value
    return [WIRE_TAG, *fields]


@pytest.mark.parametrize(
    "wire",
    [
        [],
        [b"members/2", *GOOD],
        [WIRE_TAG, *GOOD[:-1]],
        [WIRE_TAG, *GOOD, *GOOD],  # a repeated id
        with_field(0, b"A" * 40),
        with_field(1, b"example.com"),
        with_field(1, b"\xff"),
        with_field(2, b"-1"),
        with_field(2, b"+7000"),
        with_field(2, b" 7000"),
        with_field(2, b"7_000"),
        with_field(2, b"70000"),
        with_field(4, b"-1"),
        with_field(5, b"99999999999999999999"),
        with_field(5, b"\xd9\xa3"),  # a non-ASCII digit
        with_field(6, b"2"),
        with_field(6, b"yes"),
    ],
)
def test_from_wire_rejects_malformed(wire):
    with pytest.raises(ValueError):
        Membership.from_wire(wire)


# -- ring --------------------------------------------------------------------------


def test_ring_holds_active_members_with_weights():
    members = Membership([member(A, weight=2), member(B, left=True), member(C)])
    ring = members.ring(vnodes=8)
    assert ring == Ring({A: 2, C: 1}, vnodes=8)
    assert members.ring(vnodes=8) is ring
    assert members.ring(vnodes=4) == Ring({A: 2, C: 1}, vnodes=4)


def test_a_leaving_member_of_weight_zero_stays_active_but_holds_no_slot():
    members = Membership([member(A, weight=0), member(B), member(C)])
    assert members.is_active(A)
    assert members.ring(vnodes=8) == Ring({B: 1, C: 1}, vnodes=8)


def test_ring_of_empty_membership_is_empty():
    assert len(Membership().ring(vnodes=4)) == 0
