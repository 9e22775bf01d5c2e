"""The merge functions of convergent types: CRDT laws and add-wins semantics.

The history tests run random operations on a few replicas — adds and removes of
elements, each a write with a new dot, and syncs that merge one replica's state
into another's — beside an oracle that records every add (its dot) and every
removal (the adds it observed).  After every step each replica must show exactly
the elements with an add no removal observed: the issue's "every acknowledged add
not observed by a remove is visible", and nothing removed coming back.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.keyspace.values import Hash, Set
from respkv.keyspace.zset import SortedSet
from respkv.replication import convergent, counters, vclock
from respkv.replication.convergent import Dots, dot_of, unpack_dot
from respkv.replication.counters import Tally

KEY = b"k"
ACTORS = [bytes([i]) * 20 for i in range(1, 5)]
ELEMENTS = [b"a", b"b", b"c", b"d"]


class Replica:
    """One replica's state of a set key, and the oracle's view of its past."""

    def __init__(self, actor: bytes) -> None:
        self.actor = actor
        self.clock: vclock.VClock = ()
        self.value = Set()
        self.dots = Dots()
        self.adds: dict[bytes, bytes] = {}  # dot -> element, every add in this past
        self.removes: set[tuple] = set()  # dots observed by a removal in this past

    def truth(self) -> set[bytes]:
        return {e for dot, e in self.adds.items() if dot not in self.removes}

    def write(self, command: list[bytes], now: int) -> tuple:
        self.clock = vclock.increment(self.clock, self.actor, now)
        dot = dot_of(self.actor, vclock.counter(self.clock, self.actor))
        self.dots = convergent.applied(self.dots, self.value, [command], dot)
        return dot

    def add(self, element: bytes, now: int) -> None:
        self.value.add_member(element)
        self.adds[self.write([b"SADD", KEY, element], now)] = element

    def remove(self, element: bytes, now: int) -> None:
        if element not in self.value:
            return  # SREM of an absent member changes nothing: no write
        self.removes |= {dot for dot, e in self.adds.items() if e == element and dot not in self.removes}
        self.value.remove_member(element)
        self.write([b"SREM", KEY, element], now)

    def reset(self, now: int) -> None:
        """A write of unknown effect on elements (SINTERSTORE k k): dots reset."""
        self.clock = vclock.increment(self.clock, self.actor, now)
        self.dots = Dots(vclock.encode(self.clock))

    def receive(self, other: "Replica") -> None:
        if vclock.descends(self.clock, other.clock):
            pass
        elif vclock.descends(other.clock, self.clock):
            self.clock, self.value, self.dots = other.clock, other.value.copy(), other.dots.copy()
        else:
            self.value, self.dots = merge([(self.clock, self.value, self.dots), (other.clock, other.value, other.dots)])
            self.clock = vclock.merge(self.clock, other.clock)
        self.adds = {**self.adds, **other.adds}
        self.removes = self.removes | other.removes


class HashReplica(Replica):
    """The same for a hash: each add writes a value naming its own dot."""

    def __init__(self, actor: bytes) -> None:
        super().__init__(actor)
        self.value = Hash()

    def add(self, element: bytes, now: int) -> None:
        counter = vclock.counter(self.clock, self.actor) + 1
        written = self.actor[:1].hex().encode() + b":%d" % counter
        self.value.put(element, written)
        self.adds[self.write([b"HSET", KEY, element, written], now)] = element

    def remove(self, element: bytes, now: int) -> None:
        if element not in self.value:
            return
        self.removes |= {dot for dot, e in self.adds.items() if e == element and dot not in self.removes}
        self.value.remove(element)
        self.write([b"HDEL", KEY, element], now)


def merge(states):
    return convergent.merge_collections([(vclock.encode(c), v, d) for c, v, d in states])


operation = st.tuples(
    st.sampled_from(["add", "add", "remove", "sync", "sync"]),
    st.integers(0, 2),
    st.integers(0, 2),
    st.sampled_from(ELEMENTS),
)


def run(history, with_resets=False, kind=Replica):
    replicas = [kind(actor) for actor in ACTORS[:3]]
    for now, (kind, r, s, element) in enumerate(history, start=1000):
        replica = replicas[r]
        if kind == "add":
            replica.add(element, now)
        elif kind == "remove":
            if with_resets and element == b"d":
                replica.reset(now)
            else:
                replica.remove(element, now)
        elif r != s:
            replica.receive(replicas[s])
        yield replicas


@settings(max_examples=400, deadline=None)
@given(st.lists(operation, max_size=40))
def test_every_replica_shows_exactly_the_adds_no_removal_observed(history):
    for replicas in run(history):
        for replica in replicas:
            assert set(replica.value) == replica.truth()


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_hash_fields_follow_add_wins_and_a_lone_surviving_write_gives_the_value(history):
    for replicas in run(history, kind=HashReplica):
        for replica in replicas:
            assert set(replica.value) == replica.truth()
            for field, value in replica.value.items():
                alive = [dot for dot, e in replica.adds.items() if e == field and dot not in replica.removes]
                if len(alive) == 1:
                    actor, counter = unpack_dot(alive[0])
                    assert value == actor[:1].hex().encode() + b":%d" % counter


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_with_untracked_writes_no_add_is_ever_lost(history):
    """After a write whose effect on elements is unknown the merge may keep a
    removed element (union), never lose an add."""
    for replicas in run(history, with_resets=True):
        for replica in replicas:
            assert replica.truth() <= set(replica.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40), st.booleans())
def test_merge_is_commutative_associative_and_idempotent(history, with_resets):
    """Commutative and idempotent always; associative for exact dots.  After a
    write of unknown effect (a reset) merged versions join their bases, which
    makes a later merge coarser (a union): then merging in any grouping must at
    least keep every element the all-at-once merge keeps."""
    *_, replicas = [[(r.clock, r.value.copy(), r.dots.copy()) for r in state] for state in run(history, with_resets)] or [
        [((), Set(), Dots())] * 3]
    a, b, c = replicas

    def elements(merged):
        return set(merged[0]), merged[1]

    def joined(x, y):
        value, dots = merge([x, y])
        return vclock.merge(x[0], y[0]), value, dots

    for x, y in itertools.permutations([a, b, c], 2):
        assert elements(merge([x, y])) == elements(merge([y, x]))
    assert elements(merge([a, a])) == elements(merge([a]))
    assert set(merge([a])[0]) == set(a[1])
    left = set(merge([joined(a, b), c])[0])
    right = set(merge([a, joined(b, c)])[0])
    at_once = set(merge([a, b, c])[0])
    if with_resets:
        assert at_once <= left and at_once <= right
    else:
        assert left == right == at_once


def test_a_removal_that_saw_the_add_wins_and_a_concurrent_re_add_survives():
    x, y = Replica(ACTORS[0]), Replica(ACTORS[1])
    x.add(b"m", 1)
    y.receive(x)
    y.remove(b"m", 2)  # saw x's add
    x.add(b"m", 3)  # a re-add y did not see
    x.add(b"n", 4)
    y.add(b"o", 5)
    value, _ = merge([(x.clock, x.value, x.dots), (y.clock, y.value, y.dots)])
    assert set(value) == {b"m", b"n", b"o"}
    x2 = Replica(ACTORS[0])
    x2.add(b"m", 1)
    y2 = Replica(ACTORS[1])
    y2.receive(x2)
    y2.remove(b"m", 2)
    x2.add(b"n", 3)  # no re-add of m: y's removal saw every add of it
    value, _ = merge([(x2.clock, x2.value, x2.dots), (y2.clock, y2.value, y2.dots)])
    assert set(value) == {b"n"}


def test_versions_without_metadata_merge_as_their_union():
    a, b = Set(), Set()
    a.update([b"1", b"2"])
    b.update([b"2", b"3"])
    value, dots = convergent.merge_collections([
        (vclock.encode(((ACTORS[0], 1, 1),)), a, None), (vclock.encode(((ACTORS[1], 1, 2),)), b, None)])
    assert set(value) == {b"1", b"2", b"3"} and dots.dots == {}


def test_hash_fields_merge_per_field_and_a_concurrent_value_takes_the_newest_sibling():
    base = Hash()
    base.put(b"f", b"0")
    base.put(b"gone", b"x")
    start = (ACTORS[0], 1, 1)
    clock0 = (start,)
    dots0 = convergent.applied(Dots(), base, [[b"HSET", KEY, b"f", b"0", b"gone", b"x"]], dot_of(ACTORS[0], 1))
    older, newer = base.copy(), base.copy()
    older.put(b"f", b"older")
    older.remove(b"gone")
    clock_older = (start, (ACTORS[1], 1, 5))
    dots_older = convergent.applied(dots0.copy(), older, [[b"HSET", KEY, b"f", b"older"], [b"HDEL", KEY, b"gone"]],
                                    dot_of(ACTORS[1], 1))
    newer.put(b"f", b"newer")
    newer.put(b"g", b"1")
    clock_newer = ((ACTORS[0], 2, 6),)
    dots_newer = convergent.applied(dots0.copy(), newer, [[b"HSET", KEY, b"f", b"newer", b"g", b"1"]],
                                    dot_of(ACTORS[0], 2))
    value, _ = convergent.merge_collections([
        (vclock.encode(clock_older), older, dots_older), (vclock.encode(clock_newer), newer, dots_newer)])
    assert dict(value) == {b"f": b"newer", b"g": b"1"}  # gone: removed having seen its only add


def test_sorted_set_members_merge_with_the_newest_siblings_score():
    a, b = SortedSet(), SortedSet()
    a.set_score(b"m", 1.0)
    b.set_score(b"m", 2.0)
    b.set_score(b"n", 3.0)
    clock_a, clock_b = ((ACTORS[0], 1, 1),), ((ACTORS[1], 1, 2),)
    dots_a = convergent.applied(Dots(), a, [[b"ZADD", KEY, b"1", b"m"]], dot_of(ACTORS[0], 1))
    dots_b = convergent.applied(Dots(), b, [[b"ZADD", KEY, b"GT", b"2", b"m", b"3", b"n"]], dot_of(ACTORS[1], 1))
    value, dots = convergent.merge_collections([
        (vclock.encode(clock_a), a, dots_a), (vclock.encode(clock_b), b, dots_b)])
    assert value.scores == {b"m": 2.0, b"n": 3.0}
    assert dots.dots[b"m"] == dot_of(ACTORS[0], 1) + dot_of(ACTORS[1], 1)  # both adds of m kept


def test_settling_drops_the_dots_a_clock_covers():
    value = Set()
    value.update([b"a", b"b"])
    dots = Dots(b"", {b"a": dot_of(ACTORS[0], 1), b"b": dot_of(ACTORS[0], 3)})
    settled = convergent.settled(dots, vclock.encode(((ACTORS[0], 2, 1),)))
    assert settled.dots == {b"b": dot_of(ACTORS[0], 3)}
    assert vclock.decode(settled.base) == ((ACTORS[0], 2, 1),)


# -- counters ----------------------------------------------------------------------------------

increment = st.tuples(st.integers(0, 2), st.integers(-50, 50), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(increment, max_size=40), st.integers(-1000, 1000))
def test_concurrent_increments_add_up(steps, start):
    tallies = [None, None, None]
    values = [str(start).encode()] * 3
    for r, amount, sync in steps:
        if sync:
            other = (r + 1) % 3
            if tallies[other] is not None and tallies[r] is not None:
                tallies[r] = counters.merge_tallies([tallies[r], tallies[other]])
                values[r] = counters.tally_value(tallies[r])
            continue
        values[r] = str(int(values[r]) + amount).encode()
        tallies[r] = counters.counted(tallies[r], b"origin", values[r], ACTORS[r], [str(amount).encode()])
    present = [t for t in tallies if t is not None]
    if not present:
        return
    total = start + sum(amount for _, amount, sync in steps if not sync)
    for order in itertools.permutations(present):
        merged = counters.merge_tallies(list(order))
        assert counters.tally_value(merged) == str(total).encode()
        assert counters.merge_tallies([merged, merged]) == merged  # idempotent
        assert counters.merge_tallies([merged, order[0]]) == merged  # absorbs what it merged


def test_counters_of_different_origins_do_not_merge_and_floats_add_up():
    one = counters.counted(None, b"x", b"5", ACTORS[0], [b"1"])
    other = counters.counted(None, b"y", b"5", ACTORS[1], [b"1"])
    assert counters.merge_tallies([one, other]) is None
    a = counters.counted(None, b"o", b"1.5", ACTORS[0], [b"0.5"])
    b = counters.counted(None, b"o", b"1.25", ACTORS[1], [b"0.25"])
    assert counters.tally_value(counters.merge_tallies([a, b])) == b"1.75"
    assert counters.increments_of([b"DECRBY", KEY, b"-3"]) == b"3"
    assert counters.increments_of([b"decr", KEY]) == b"-1"


# -- wire form ---------------------------------------------------------------------------------

tally_strategy = st.builds(
    Tally, st.binary(max_size=40), st.integers(-10**6, 10**6).map(lambda n: str(n).encode()),
    st.dictionaries(st.sampled_from(ACTORS),
                    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(
                        lambda p: (str(p[0]).encode(), str(p[1]).encode())), max_size=4),
)


dots_strategy = st.builds(
    Dots,
    st.just(vclock.encode(((ACTORS[0], 3, 7),))),
    st.dictionaries(st.binary(max_size=8),
                    st.lists(st.builds(dot_of, st.sampled_from(ACTORS), st.integers(0, 2**63)), min_size=1,
                             max_size=3).map(b"".join), max_size=6),
    st.dictionaries(st.binary(max_size=8), tally_strategy, max_size=2),
    st.dictionaries(st.binary(max_size=8),
                    st.dictionaries(st.builds(dot_of, st.sampled_from(ACTORS), st.integers(1, 9)),
                                    st.binary(max_size=8), min_size=2, max_size=3), max_size=2),
)


@given(st.one_of(dots_strategy, tally_strategy), st.binary(max_size=20))
def test_metadata_round_trips_with_the_value(meta, blob):
    value = convergent.join_value(b"s" + blob, meta)
    assert convergent.split_value(value) == (b"s" + blob, meta)
    assert convergent.split_value(b"s" + blob) == (b"s" + blob, None)


@given(st.binary(max_size=60))
def test_malformed_metadata_is_a_value_error(junk):
    try:
        convergent.split_value(b"C" + junk)
    except ValueError:
        pass


@pytest.mark.parametrize("cut", [1, 5, 9, 30])
def test_truncated_metadata_is_refused(cut):
    meta = Dots(vclock.encode(((ACTORS[0], 3, 7),)), {b"m": dot_of(ACTORS[0], 2)})
    value = convergent.join_value(b"S\x01", meta)
    with pytest.raises(ValueError):
        convergent.split_value(value[: len(value) - cut])
