"""VersionStore over a real Keyspace: local writes, remote records, RESOLVE, purge, bounds."""

from __future__ import annotations

import pytest

from respkv.keyspace.codec import decode_value, encode_value
from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import Set
from respkv.replication import vclock
from respkv.replication.convergent import split_value
from respkv.replication.store import VersionStore
from respkv.replication.versions import Version, decode_record, encode_record

LOCAL = b"\x01" * 20
REMOTE = b"\x02" * 20
OTHER = b"\x03" * 20
START = 1_000_000
KEY = b"k"


@pytest.fixture
def now():
    return [START]


@pytest.fixture
def ks(now):
    return Keyspace(clock_ms=lambda: now[0])


@pytest.fixture
def store(ks):
    return VersionStore(ks, actor=LOCAL, max_siblings=3)


def remote(clock, stamp, value=b"remote", actor=REMOTE, expire_at=0, tombstone=False):
    """A version as it arrives from another node (value encoded)."""
    return Version(vclock.encode(clock), stamp, actor, tombstone, expire_at, b"" if tombstone else encode_value(value))


def written_record(store, key, now_ms, seen=None):
    """The record ``store.written`` ships, decoded (None when nothing is shipped)."""
    shipped = store.written(key, now_ms, seen=seen)
    return None if shipped is None else decode_record(shipped[1])


def write(store, ks, now, value, at=None):
    """Set ``value`` in the keyspace and version it as this node's write."""
    ks.set(KEY, value)
    return written_record(store, KEY, now[0] if at is None else at)


def clock_of(version):
    return vclock.decode(version.clock)


def held(store, key=KEY):
    """Every field of every version ``store`` holds of ``key``: equal exactly when
    the record is unchanged (records are made anew on each lookup)."""
    record = store.record(key)
    return None if record is None else [
        (v.clock, v.stamp, v.actor, v.tombstone, v.expire_at, v.value) for v in record
    ]


# -- local writes --------------------------------------------------------------------------


def test_written_names_the_versions_it_replaced(store, ks, now):
    ks.set(KEY, b"one")
    parent, _ = store.written(KEY, now[0])
    assert parent == b""  # nothing was held before
    (first,) = store.record(KEY)
    ks.set(KEY, b"two")
    parent, _ = store.written(KEY, now[0] + 1)
    assert parent == first.clock
    # A replica holding exactly the parent replaces it without reconciling.
    other_ks = Keyspace(clock_ms=lambda: now[0])
    replica = VersionStore(other_ks, REMOTE)
    ks.set(KEY, b"three")
    parent, blob = store.written(KEY, now[0] + 2)
    assert replica.apply_shipped(KEY, parent, blob)  # parent unknown here: reconciled
    assert other_ks.get(KEY) == b"three"


def test_first_write_creates_one_version(store, ks, now):
    ks.set(KEY, b"hello")
    ks.set_deadline(KEY, START + 5_000)
    shipped = written_record(store, KEY, now[0])
    assert len(shipped) == 1
    assert shipped[0].value == b"shello"
    (kept,) = store.record(KEY)
    assert kept.value is None  # materialized: the keyspace holds it
    assert clock_of(kept) == ((LOCAL, 1, START),)
    assert (kept.stamp, kept.actor, kept.tombstone) == (START, LOCAL, False)
    assert kept.expire_at == START + 5_000 == ks.deadline(KEY)
    assert store.full_record(KEY)[0].value == b"shello"


def test_second_write_increments_and_supersedes(store, ks, now):
    write(store, ks, now, b"one")
    now[0] += 10
    shipped = write(store, ks, now, b"two")
    assert len(shipped) == 1 and len(store.record(KEY)) == 1
    assert clock_of(shipped[0]) == ((LOCAL, 2, START + 10),)
    assert shipped[0].value == b"stwo"
    assert store.causal_context(KEY) == ((LOCAL, 2, START + 10),)


def test_delete_writes_tombstone(store, ks, now):
    write(store, ks, now, b"one")
    now[0] += 10
    ks.delete(KEY)
    (tombstone,) = written_record(store, KEY, now[0])
    assert tombstone.tombstone and tombstone.value == b""
    assert tombstone.expire_at == 0
    assert clock_of(tombstone) == ((LOCAL, 2, START + 10),)
    assert store.record(KEY)[0].tombstone


def test_never_versioned_absent_key_writes_nothing(store, now):
    assert written_record(store, b"absent", now[0]) is None
    assert store.record(b"absent") is None
    assert store.causal_context(b"absent") == vclock.EMPTY


def test_pure_expiry_writes_nothing(store, ks, now):
    ks.set(KEY, b"short")
    ks.set_deadline(KEY, START + 100)
    written_record(store, KEY, now[0])
    before = held(store)
    now[0] += 100
    assert ks.get(KEY) is None
    assert written_record(store, KEY, now[0]) is None
    assert held(store) == before


# -- records from other nodes ------------------------------------------------------------------


def test_apply_dominating_record_materializes_it(store, ks, now):
    write(store, ks, now, b"local")
    stamp = START + 5
    incoming = (remote(vclock.increment(store.causal_context(KEY), REMOTE, stamp), stamp, expire_at=START + 60_000),)
    assert store.apply(KEY, incoming)
    assert ks.get(KEY) == b"remote"
    assert ks.deadline(KEY) == START + 60_000
    (kept,) = store.record(KEY)
    assert kept.value is None and kept.actor == REMOTE
    assert store.full_record(KEY)[0].value == b"sremote"
    assert store.versions_applied == 1


def test_apply_into_empty_store(store, ks, now):
    incoming = (remote(((REMOTE, 1, START),), START),)
    assert store.apply(KEY, incoming)
    assert ks.get(KEY) == b"remote"
    assert ks.deadline(KEY) is None


def test_apply_older_record_changes_nothing(store, ks, now):
    write(store, ks, now, b"one")
    now[0] += 10
    write(store, ks, now, b"two")
    before = held(store)
    stale = (remote(((LOCAL, 1, START),), START + 999, b"one", actor=LOCAL),)  # newer stamp, older clock
    assert not store.apply(KEY, stale)
    assert held(store) == before
    assert ks.get(KEY) == b"two"
    assert store.versions_applied == 0


@pytest.mark.parametrize(("offset", "shown"), [(100, b"remote"), (-100, b"local")])
def test_apply_concurrent_record_keeps_siblings(store, ks, now, offset, shown):
    write(store, ks, now, b"local")
    stamp = START + offset
    assert store.apply(KEY, (remote(((REMOTE, 1, stamp),), stamp),))
    record = store.record(KEY)
    assert len(record) == 2
    assert ks.get(KEY) == shown  # the newest stamp wins
    values = {v.actor: v.value for v in record}
    winner_actor = REMOTE if shown == b"remote" else LOCAL
    loser_actor = LOCAL if winner_actor == REMOTE else REMOTE
    assert values[winner_actor] is None
    assert values[loser_actor] == b"s" + (b"local" if loser_actor == LOCAL else b"remote")
    assert {v.value for v in store.full_record(KEY)} == {b"slocal", b"sremote"}
    assert store.sibling_count() == 1


def test_apply_same_record_twice(store, ks, now):
    write(store, ks, now, b"local")
    incoming = (remote(((REMOTE, 1, START + 1),), START + 1),)
    assert store.apply(KEY, incoming)
    after = held(store)
    assert not store.apply(KEY, incoming)
    assert held(store) == after
    assert store.versions_applied == 1


def test_apply_dominating_tombstone_deletes(store, ks, now):
    write(store, ks, now, b"local")
    clock = vclock.increment(store.causal_context(KEY), REMOTE, START + 1)
    assert store.apply(KEY, (remote(clock, START + 1, tombstone=True),))
    assert ks.get(KEY) is None
    assert store.record(KEY)[0].tombstone


# -- RESOLVE ---------------------------------------------------------------------------------


def _two_siblings(store, ks, now, remote_stamp):
    write(store, ks, now, b"local")
    seen = store.causal_context(KEY)  # the client saw only the local sibling
    unseen = remote(((REMOTE, 1, remote_stamp),), remote_stamp)
    store.apply(KEY, (unseen,))
    return seen, unseen


def _resolve(store, ks, now, seen, value):
    store.dematerialize(KEY)  # as the RESOLVE command does
    ks.set(KEY, value)
    return written_record(store, KEY, now[0], seen=seen)


def test_resolve_keeps_unseen_sibling(store, ks, now):
    seen, unseen = _two_siblings(store, ks, now, START + 1)
    now[0] += 10
    shipped = _resolve(store, ks, now, seen, b"resolved")
    assert {v.clock for v in store.record(KEY)} == {unseen.clock, vclock.encode(((LOCAL, 2, START + 10),))}
    assert {v.value for v in shipped} == {b"sremote", b"sresolved"}
    assert ks.get(KEY) == b"resolved"


def test_resolve_with_full_context_leaves_one_version(store, ks, now):
    _two_siblings(store, ks, now, START + 1)
    now[0] += 10
    shipped = _resolve(store, ks, now, store.causal_context(KEY), b"resolved")
    assert len(shipped) == 1 and shipped[0].value == b"sresolved"
    assert clock_of(shipped[0]) == ((LOCAL, 2, START + 10), (REMOTE, 1, START + 1))


@pytest.mark.parametrize("remote_stamp", [START + 10, START + 5_000], ids=["same-ms", "skewed-clock"])
def test_resolve_keeps_new_value_when_unseen_sibling_wins(store, ks, now, remote_stamp):
    seen, unseen = _two_siblings(store, ks, now, remote_stamp)
    now[0] += 10  # the remote sibling's stamp is >= now (REMOTE > LOCAL breaks the tie)
    _resolve(store, ks, now, seen, b"resolved")
    assert ks.get(KEY) == b"remote"  # the unseen sibling is the winner plain clients see
    values = {v.clock: v.value for v in store.full_record(KEY)}
    assert values[unseen.clock] == b"sremote"
    assert values[vclock.encode(((LOCAL, 2, START + 10),))] == b"sresolved"


# -- purge, bounds, clear ------------------------------------------------------------------------


def test_purge_only_exact_tombstone(store, ks, now):
    write(store, ks, now, b"one")
    live_clock = store.record(KEY)[0].clock
    assert not store.purge(KEY, live_clock)  # not a tombstone
    now[0] += 1
    ks.delete(KEY)
    (tombstone,) = written_record(store, KEY, now[0])
    assert not store.purge(KEY, live_clock)  # not the tombstone's clock
    assert not store.purge(b"other", tombstone.clock)  # no record
    assert store.purge(KEY, tombstone.clock)
    assert store.record(KEY) is None
    assert store.tombstones_purged == 1


def test_purge_skips_tombstone_with_sibling(store, ks, now):
    write(store, ks, now, b"one")
    now[0] += 1
    ks.delete(KEY)
    (tombstone,) = written_record(store, KEY, now[0])
    store.apply(KEY, (remote(((REMOTE, 1, START + 2),), START + 2),))
    assert not store.purge(KEY, tombstone.clock)
    assert len(store.record(KEY)) == 2


def test_max_siblings_drops_oldest_applied_one_by_one(store, ks, now):
    write(store, ks, now, b"local")  # oldest stamp
    for i in range(1, 5):
        actor = bytes([0x10 + i]) * 20
        store.apply(KEY, (remote(((actor, 1, START + i),), START + i, b"v%d" % i, actor),))
    record = store.record(KEY)
    assert [v.stamp for v in record] == [START + 2, START + 3, START + 4]
    assert store.siblings_dropped == 2
    assert ks.get(KEY) == b"v4"
    assert [v.value is None for v in record] == [False, False, True]


def test_max_siblings_bounds_one_incoming_record(store, ks):
    incoming = tuple(
        remote(((bytes([0x10 + i]) * 20, 1, START + i),), START + i, b"v%d" % i, bytes([0x10 + i]) * 20)
        for i in range(5)
    )
    assert store.apply(KEY, incoming)
    assert len(store.record(KEY)) == 3
    assert store.siblings_dropped == 2
    assert ks.get(KEY) == b"v4"


def test_clear_forgets_records(store, ks, now):
    write(store, ks, now, b"one")
    store.apply(b"x", (remote(((REMOTE, 1, START),), START),))
    store.clear()
    assert store.records == {}
    assert store.record(KEY) is None
    assert store.digest(KEY) == b""


@pytest.mark.parametrize(
    "value, expire_at",
    [(b"plain", 0), (b"with-ttl", START + 60_000)],
)
def test_apply_shipped_over_the_parent_replaces_it(store, ks, now, value, expire_at):
    write(store, ks, now, b"before")
    (held,) = store.record(KEY)
    clock = vclock.increment(vclock.decode(held.clock), REMOTE, now[0] + 1)
    incoming = remote(clock, now[0] + 1, value=value, expire_at=expire_at)
    assert store.apply_shipped(KEY, held.clock, encode_record((incoming,)))
    assert ks.get(KEY) == value
    assert ks.deadline(KEY) == (expire_at or None)
    (kept,) = store.record(KEY)
    assert kept.clock == incoming.clock and kept.value is None


def test_apply_shipped_installs_other_types_and_tombstones(store, ks, now):
    from respkv.keyspace.values import Hash

    value = Hash()
    dict.update(value, {b"f": b"v"})
    first = remote(((REMOTE, 1, START),), START, value=value)
    assert store.apply_shipped(KEY, b"", encode_record((first,)))
    assert dict(ks.get(KEY)) == {b"f": b"v"}
    tomb = remote(((REMOTE, 2, START + 1),), START + 1, tombstone=True)
    assert store.apply_shipped(KEY, first.clock, encode_record((tomb,)))
    assert ks.get(KEY) is None and store.record(KEY)[0].tombstone


def test_apply_shipped_with_another_parent_reconciles(store, ks, now):
    write(store, ks, now, b"mine")
    other = remote(((REMOTE, 1, START + 5),), START + 5, value=b"theirs")
    assert store.apply_shipped(KEY, b"some-other-parent", encode_record((other,)))
    assert len(store.record(KEY)) == 2  # concurrent: both kept


def test_an_expired_record_is_forgotten_only_while_unchanged(store, ks, now):
    ks.set(KEY, b"v")
    ks.set_deadline(KEY, START + 100)
    store.written(KEY, now[0])
    assert store.expired_clock(KEY, now[0]) is None  # still live
    now[0] = START + 100
    clock = store.expired_clock(KEY, now[0])
    assert clock is not None
    assert not store.forget_expired(KEY, b"another clock", now[0])
    assert store.forget_expired(KEY, clock, now[0])
    assert store.record(KEY) is None


# -- set siblings ----------------------------------------------------------------------------


def a_set(*members):
    value = Set()
    for member in members:
        value.add_member(member)
    return value


def test_concurrent_set_versions_show_their_union_and_a_write_keeps_every_member(store, ks, now):
    """A coordinator that wrote over a stale copy makes a sibling; the members the
    other side added must neither hide behind the winner nor be dropped by the
    next write (which supersedes every sibling)."""
    write(store, ks, now, a_set(b"a", b"mine"))
    theirs = remote(((REMOTE, 1, START + 100),), START + 100, a_set(b"a", b"theirs"))
    assert store.apply(KEY, (theirs,))
    assert len(store.record(KEY)) == 2
    assert set(ks.get(KEY)) == {b"a", b"mine", b"theirs"}
    # each sibling keeps its own members (ours with its convergent metadata)
    assert {split_value(v.value)[0][:1] for v in store.full_record(KEY)} == {b"S"}
    ks.get(KEY).add_member(b"next")
    (version,) = written_record(store, KEY, START + 200)
    assert set(decode_value(split_value(version.value)[0])) == {b"a", b"mine", b"theirs", b"next"}
    assert len(store.record(KEY)) == 1


def test_a_set_sibling_beside_a_tombstone_or_a_string_shows_the_winner(store, ks, now):
    write(store, ks, now, a_set(b"mine"))
    assert store.apply(KEY, (remote(((REMOTE, 1, START + 100),), START + 100, b"text"),))
    assert ks.get(KEY) == b"text"
    assert store.apply(KEY, (remote(((OTHER, 1, START + 200),), START + 200, tombstone=True),))
    assert ks.get(KEY) is None


def _general_wire_record(store, key):
    """The wire record built the general way (expand, fill, encode)."""
    record = store.full_record(key)
    return None if record is None else encode_record(record)


@pytest.mark.parametrize("how", ["written", "written-again", "shipped", "restored", "expiring", "changed-length",
                                 "tombstone", "counter", "collection", "siblings"])
def test_the_wire_record_of_a_plain_string_is_the_general_one(store, ks, now, how):
    """``wire_record``'s shortcut for a materialized plain string gives the bytes
    the general encoding gives, whatever compact form the string was kept in
    (value length in its header or not) and falls back for everything else."""
    other = VersionStore(Keyspace(clock_ms=lambda: now[0]), actor=REMOTE)
    if how in ("written", "written-again", "changed-length", "expiring"):
        ks.set(KEY, b"value")
        if how == "expiring":
            ks.set_deadline(KEY, START + 60_000)
        store.written(KEY, now[0])
        if how == "written-again":
            ks.set(KEY, b"other")
            store.written(KEY, now[0] + 1)
        if how == "changed-length":  # the keyspace's value changed, not yet versioned
            ks.set(KEY, b"a longer value")
    elif how == "shipped":
        other.keyspace.set(KEY, b"shipped value")
        parent, blob = other.written(KEY, now[0])
        assert store.apply_shipped(KEY, parent, blob)
    elif how == "restored":
        store.restore(KEY, (remote(((REMOTE, 1, START),), START, b"restored"),))
    elif how == "tombstone":
        ks.set(KEY, b"value")
        store.written(KEY, now[0])
        ks.delete(KEY)
        store.written(KEY, now[0] + 1)
    elif how == "counter":
        ks.set(KEY, b"5")
        store.written(KEY, now[0], commands=[[b"incrby", KEY, b"5"]])
    elif how == "collection":
        members = Set()
        members.add_member(b"a")
        ks.set(KEY, members)
        store.written(KEY, now[0])
    elif how == "siblings":
        store.apply(KEY, (remote(((REMOTE, 1, START),), START, b"one"),))
        store.apply(KEY, (remote(((OTHER, 1, START),), START + 1, b"two", actor=OTHER),))
        assert len(store.record(KEY)) == 2
    assert store.wire_record(KEY) == _general_wire_record(store, KEY)
    assert decode_record(store.wire_record(KEY))


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_shipping_or_imaging_a_record_is_not_an_access(now, policy):
    """A snapshot images every record and read repair ships them: neither may
    stamp the keys as used, or a rewrite would make every key equally recent
    (as Redis's rewrite and replication, which never touch a key)."""
    ks = Keyspace(clock_ms=lambda: now[0])
    ks.access.reset(lfu=policy == "allkeys-lfu")
    store = VersionStore(ks, actor=LOCAL)
    ks.set(KEY, b"plain")
    store.written(KEY, now[0])
    members = Set()
    members.add_member(b"m")
    ks.set(b"s", members)
    store.written(b"s", now[0])
    now[0] += 3_600_000
    ks.tick_access()
    before = {key: (ks.access.idle(key), ks.access.frequency(key)) for key in (KEY, b"s")}
    for _ in range(20):
        assert store.wire_record(KEY) is not None and store.wire_record(b"s") is not None
        assert store.full_record(b"s") is not None
    assert {key: (ks.access.idle(key), ks.access.frequency(key)) for key in (KEY, b"s")} == before
    assert before[KEY][0] == 3600 or policy == "allkeys-lfu"
