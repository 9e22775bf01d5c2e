"""Quorum decisions: outcomes, answer tallies, effective N/R/W, errors and repair targets."""

from __future__ import annotations

import pytest

from respkv.replication.quorum import (
    MISSED,
    PENDING,
    REACHED,
    Quorums,
    Tally,
    effective,
    noquorum_error,
    outcome,
    read_outcome,
    repair_targets,
)


@pytest.mark.parametrize(
    ("needed", "answered", "failed", "asked", "expected"),
    [
        (2, 2, 0, 3, REACHED),
        (2, 3, 0, 3, REACHED),
        (2, 2, 1, 3, REACHED),  # enough answers: failures no longer matter
        (1, 1, 2, 3, REACHED),
        (3, 3, 0, 3, REACHED),
        (0, 0, 0, 0, REACHED),  # nothing needed
        (2, 1, 0, 3, PENDING),
        (2, 1, 1, 3, PENDING),  # one replica left can still make it
        (2, 0, 1, 3, PENDING),
        (1, 0, 0, 1, PENDING),
        (2, 1, 2, 3, MISSED),
        (3, 2, 1, 3, MISSED),  # every replica must answer
        (1, 0, 1, 1, MISSED),
        (2, 0, 0, 1, MISSED),  # fewer asked than needed
        (3, 0, 2, 3, MISSED),
    ],
)
def test_outcome(needed, answered, failed, asked, expected):
    assert outcome(needed, answered, failed, asked) == expected


@pytest.mark.parametrize(
    ("needed", "asked", "answered", "events", "outcomes"),
    [
        (2, 3, 1, "a", [REACHED]),
        (2, 3, 1, "ff", [PENDING, MISSED]),
        (2, 3, 1, "fa", [PENDING, REACHED]),
        (3, 3, 1, "aa", [PENDING, REACHED]),
        (3, 3, 1, "af", [PENDING, MISSED]),
        (2, 3, 0, "faa", [PENDING, PENDING, REACHED]),
        (1, 1, 1, "", []),
        (1, 3, 0, "ffa", [PENDING, PENDING, REACHED]),
    ],
)
def test_tally_sequences(needed, asked, answered, events, outcomes):
    tally = Tally(needed, asked, answered)
    seen = [tally.ack() if event == "a" else tally.fail() for event in events]
    assert seen == outcomes
    assert tally.answered == answered + events.count("a")
    assert tally.failed == events.count("f")
    assert tally.outcome() == (outcomes[-1] if outcomes else outcome(needed, answered, 0, asked))


def test_tally_starts_with_coordinators_own_copy():
    assert Tally(1, 3, 1).outcome() == REACHED
    assert Tally(2, 3, 1).outcome() == PENDING


@pytest.mark.parametrize(
    ("rf", "members", "r", "w", "expected"),
    [
        (3, 5, 2, 2, Quorums(3, 2, 2)),
        (3, 2, 2, 2, Quorums(2, 2, 2)),  # N capped by members
        (3, 1, 2, 2, Quorums(1, 1, 1)),  # single node
        (3, 5, 5, 4, Quorums(3, 3, 3)),  # R and W capped by N
        (3, 5, 0, 0, Quorums(3, 1, 1)),  # at least 1
        (0, 5, 1, 1, Quorums(1, 1, 1)),
        (3, 0, 2, 2, Quorums(1, 1, 1)),  # no members yet
        (5, 5, 1, 5, Quorums(5, 1, 5)),
    ],
)
def test_effective(rf, members, r, w, expected):
    assert effective(rf, members, r, w) == expected


def test_noquorum_error_write():
    text = noquorum_error("write", 2, 1)
    assert text.startswith("NOQUORUM write quorum not reached")
    assert text == "NOQUORUM write quorum not reached: 1 of 2 required replicas acknowledged"


def test_noquorum_error_read():
    text = noquorum_error("read", 3, 0)
    assert text.startswith("NOQUORUM read quorum")
    assert text == "NOQUORUM read quorum not reached: 0 of 3 required replicas answered"


@pytest.mark.parametrize(
    ("merged", "digests", "targets"),
    [
        (b"m", {"c": b"m", "b": b"x", "a": b""}, ["a", "b"]),
        (b"m", {"b": b"m", "a": b"m"}, []),
        (b"m", {}, []),
        (b"", {"b": b"m", "a": b""}, ["b"]),
        (b"m", {"z": b"x", "y": b"y", "x": b"z"}, ["x", "y", "z"]),
    ],
)
def test_repair_targets(merged, digests, targets):
    assert repair_targets(merged, digests) == targets


@pytest.mark.parametrize("needed, answered, failed, asked, unfound, final, expected", [
    (2, 2, 0, 3, 0, False, REACHED),  # every key found: R is enough
    (2, 2, 0, 3, 1, False, PENDING),  # a key nobody held yet: wait for the third replica
    (2, 3, 0, 3, 1, False, REACHED),  # everyone answered: not found it is
    (2, 2, 1, 3, 1, False, REACHED),  # the third failed: nobody left to ask
    (2, 2, 0, 3, 1, True, REACHED),  # timed out with R answers: not found
    (2, 1, 0, 3, 1, True, PENDING),  # timed out below R (the caller calls that missed)
    (2, 1, 2, 3, 1, False, MISSED),  # too few replicas left
])
def test_read_outcome_never_lets_not_found_outweigh_a_version(needed, answered, failed, asked, unfound, final, expected):
    assert read_outcome(needed, answered, failed, asked, unfound, final) == expected


def test_tally_of_a_read_settles_when_the_missing_key_is_found():
    tally = Tally(2, 3, 1, unfound=1)
    assert tally.ack() == PENDING  # a second "not found"
    tally.unfound = 0  # the third replica's answer held the key
    assert tally.ack() == REACHED
