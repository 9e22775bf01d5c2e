"""Quorum settings: effective N/R/W and the NOQUORUM texts (the decisions are
the state machines', see test_fsm_cores)."""

from __future__ import annotations

import pytest

from respkv.replication import quorum
from respkv.replication.quorum import Quorums, effective, noquorum_error


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


class _Session:
    def __init__(self, consistency) -> None:
        self.consistency = consistency


@pytest.mark.parametrize(
    ("configured", "override", "expected"),
    [
        (True, None, (("f", "b"),)),
        (False, None, ()),
        (False, (2, 2, True), (("f", "b"),)),
        (True, (2, 2, False), ()),
        (True, (1, 1), (("f", "b"),)),  # R/W only: the configured sloppiness
    ],
)
def test_stand_ins_follow_sloppy_quorum_and_its_override(configured, override, expected):
    config = {"sloppy-quorum": configured, "read-quorum": 2, "write-quorum": 2}
    fallbacks = {"b": "f", "c": None}  # c has no live node beyond the list
    assert quorum.stand_ins(config, _Session(override), fallbacks) == expected
    assert quorum.stand_ins(config, None, fallbacks) == ((("f", "b"),) if configured else ())
    assert quorum.requested(config, override) == (override[:2] if override else (2, 2))
