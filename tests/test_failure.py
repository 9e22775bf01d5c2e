"""Tests for the failure detector, with time driven by hand.

The rule (:func:`assess`) is a table of classic situations: one silent node among
three, partitions seen from either side, reports expiring, failed reporters, sticky
failure and recovery.  The bookkeeping class is driven through short timelines.
Node ids are single letters here: the detector does not care what ids look like.
"""

from __future__ import annotations

import pytest

from respkv.cluster.failure import (
    DEFAULT_NODE_TIMEOUT,
    REPORT_VALIDITY_MULT,
    FailureDetector,
    NodeState,
    assess,
    quorum,
    suspects,
)

OK, PFAIL, FAIL = NodeState.OK, NodeState.PFAIL, NodeState.FAIL
NOW = 100.0


def test_defaults_match_redis():
    assert DEFAULT_NODE_TIMEOUT == 5.0
    assert REPORT_VALIDITY_MULT == 2


@pytest.mark.parametrize("reachable, needed", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4)])
def test_quorum_is_a_strict_majority(reachable, needed):
    assert quorum(reachable) == needed


@pytest.mark.parametrize(
    "state, flag, suspected",
    [(OK, "", False), (PFAIL, "fail?", True), (FAIL, "fail", True)],
)
def test_state_flags(state, flag, suspected):
    assert state.flag == flag
    assert state.suspected is suspected


def heard(**ages):
    """last_heard for members heard ``age`` seconds before NOW."""
    return {node_id: NOW - age for node_id, age in ages.items()}


# Each row: members (myself is "A"), silence per member in seconds, reports as
# {reporter: {suspect: report age}}, previously failed set, expected states.
CASES = {
    "all heard recently": (
        "ABC", dict(B=1, C=4.9), {}, set(),
        dict(A=OK, B=OK, C=OK),
    ),
    "silence of exactly the timeout is not yet suspect": (
        "ABC", dict(B=1, C=5.0), {}, set(),
        dict(A=OK, B=OK, C=OK),
    ),
    "three nodes, one silent, nobody else reports": (
        "ABC", dict(B=1, C=5.1), {}, set(),
        dict(A=OK, B=OK, C=PFAIL),
    ),
    "three nodes, one silent, the other agrees": (
        "ABC", dict(B=1, C=6), {"B": {"C": 1}}, set(),
        dict(A=OK, B=OK, C=FAIL),
    ),
    "a report exactly 2 x timeout old still counts": (
        "ABC", dict(B=1, C=30), {"B": {"C": 10.0}}, set(),
        dict(A=OK, B=OK, C=FAIL),
    ),
    "a report older than 2 x timeout has expired": (
        "ABC", dict(B=1, C=30), {"B": {"C": 10.1}}, set(),
        dict(A=OK, B=OK, C=PFAIL),
    ),
    "reports alone never fail a node this node hears": (
        "ABC", dict(B=1, C=1), {"B": {"C": 1}}, set(),
        dict(A=OK, B=OK, C=OK),
    ),
    "minority side of a 2|3 partition fails nobody": (
        "ABCDE", dict(B=1, C=20, D=20, E=20), {"B": {"C": 1, "D": 1, "E": 1}}, set(),
        dict(A=OK, B=OK, C=PFAIL, D=PFAIL, E=PFAIL),
    ),
    "majority side of a 3|2 partition fails the minority": (
        "ABCDE", dict(B=20, C=20, D=1, E=1), {"D": {"B": 1, "C": 1}, "E": {"B": 1, "C": 1}}, set(),
        dict(A=OK, B=FAIL, C=FAIL, D=OK, E=OK),
    ),
    "one report short of a majority of five": (
        "ABCDE", dict(B=1, C=1, D=1, E=20), {"B": {"E": 1}}, set(),
        dict(A=OK, B=OK, C=OK, D=OK, E=PFAIL),
    ),
    "a majority of five": (
        "ABCDE", dict(B=1, C=1, D=1, E=20), {"B": {"E": 1}, "C": {"E": 1}}, set(),
        dict(A=OK, B=OK, C=OK, D=OK, E=FAIL),
    ),
    "failing one node shrinks the quorum for the next": (
        # Round one: E has 4 of 6 votes and fails; F has 3 of 6, short of 4.
        # Round two: 5 reachable need 3, and F has them.
        "ABCDEF", dict(B=1, C=1, D=1, E=20, F=20),
        {"B": {"E": 1, "F": 1}, "C": {"E": 1, "F": 1}, "D": {"E": 1}}, set(),
        dict(A=OK, B=OK, C=OK, D=OK, E=FAIL, F=FAIL),
    ),
    "reports by a failed member do not count": (
        # D already failed; its report on E is recent but discounted, leaving
        # A and B: 2 of the 4 reachable, short of 3.
        "ABCDE", dict(B=1, C=1, D=30, E=20), {"B": {"E": 1}, "D": {"E": 1}}, {"D"},
        dict(A=OK, B=OK, C=OK, D=FAIL, E=PFAIL),
    ),
    "fail is sticky while the member stays silent": (
        "ABC", dict(B=1, C=60), {}, {"C"},
        dict(A=OK, B=OK, C=FAIL),
    ),
    "a failed member heard from again is ok at once": (
        "ABC", dict(B=1, C=0.5), {"B": {"C": 1}}, {"C"},
        dict(A=OK, B=OK, C=OK),
    ),
    "two nodes cannot fail each other": (
        "AB", dict(B=60), {}, set(),
        dict(A=OK, B=PFAIL),
    ),
    "a lone node is ok": (
        "A", {}, {}, set(),
        dict(A=OK),
    ),
    "reports by non-members, by myself and about the reporter are ignored": (
        "ABCD", dict(B=1, C=1, D=20),
        {"X": {"D": 1}, "A": {"D": 1}, "D": {"D": 1}, "B": {"B": 1}}, set(),
        dict(A=OK, B=OK, C=OK, D=PFAIL),
    ),
    "a member never heard from counts as just heard": (
        "ABC", dict(B=1), {"B": {"C": 1}}, set(),
        dict(A=OK, B=OK, C=OK),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_assess(case):
    members, silence, report_ages, failed, expected = CASES[case]
    reports = {
        reporter: {suspect: NOW - age for suspect, age in suspected.items()}
        for reporter, suspected in report_ages.items()
    }
    states = assess("A", members, heard(**silence), reports, NOW, 5.0, failed)
    assert states == expected


def test_assess_includes_myself_even_if_not_listed():
    assert assess("A", ["B"], heard(B=1), {}, NOW) == {"A": OK, "B": OK}


def test_assess_scales_with_node_timeout():
    states = assess("A", "ABC", heard(B=1, C=1.5), {}, NOW, node_timeout=1.0)
    assert states["C"] is PFAIL


def test_suspects_lists_pfail_and_fail_in_order():
    assert suspects({"C": FAIL, "A": OK, "B": PFAIL}) == ["B", "C"]
    assert suspects({"A": OK}) == []


# -- the detector over time --------------------------------------------------------


def test_timeline_three_nodes_one_dies_and_returns():
    detector = FailureDetector("A", node_timeout=5.0)
    members = ["A", "B", "C"]
    assert detector.update(members, 0.0) == dict(A=OK, B=OK, C=OK)
    for t in range(1, 11):
        detector.heard("B", float(t))
        detector.heard("C", float(t))
    for t in range(11, 30):
        detector.heard("B", float(t))
    # C last heard at 10: silent for exactly the timeout at 15, beyond it after.
    assert detector.update(members, 15.0)["C"] is OK
    assert detector.update(members, 15.5)["C"] is PFAIL
    # B's gossip says it suspects C too: 2 of 3 agree.
    detector.receive_reports("B", ["C"], 16.0)
    assert detector.update(members, 16.0)["C"] is FAIL
    # B withdraws (or its report expires): C stays failed while silent.
    detector.receive_reports("B", [], 17.0)
    assert detector.update(members, 17.0)["C"] is FAIL
    assert detector.update(members, 40.0)["C"] is FAIL
    # C is back: ok at once, even before the next update.
    detector.heard("C", 41.0)
    assert "C" not in detector.failed
    assert detector.update(members, 41.0)["C"] is OK


def test_timeline_report_expires_before_quorum():
    detector = FailureDetector("A", node_timeout=5.0)
    members = ["A", "B", "C"]
    detector.update(members, 0.0)
    detector.receive_reports("B", ["C"], 1.0)  # B suspects C early
    detector.heard("B", 12.0)
    # C silent since 0; by 11.5 B's report from 1.0 is 10.5 s old and expired.
    assert detector.update(members, 11.5) == dict(A=OK, B=OK, C=PFAIL)
    assert detector.reports == {}
    # A fresh report arrives: now fail.
    detector.receive_reports("B", ["C"], 12.0)
    assert detector.update(members, 12.0)["C"] is FAIL


def test_timeline_minority_partition_never_fails_anyone():
    detector = FailureDetector("A", node_timeout=5.0)
    members = list("ABCDE")
    detector.update(members, 0.0)
    for t in range(1, 60):
        detector.heard("B", float(t))
        detector.receive_reports("B", ["C", "D", "E"], float(t))
        states = detector.update(members, float(t))
        assert FAIL not in states.values()
    assert states == dict(A=OK, B=OK, C=PFAIL, D=PFAIL, E=PFAIL)


def test_clock_starts_when_a_member_is_first_seen():
    detector = FailureDetector("A", node_timeout=5.0)
    detector.update(["A", "B"], 0.0)
    # C joins at 100: not suspect merely because it was unknown before.
    assert detector.update(["A", "B", "C"], 100.0)["C"] is OK
    assert detector.update(["A", "B", "C"], 105.5)["C"] is PFAIL


def test_heard_never_moves_back_in_time():
    detector = FailureDetector("A")
    detector.heard("B", 10.0)
    detector.heard("B", 3.0)
    assert detector.last_heard["B"] == 10.0
    detector.heard("A", 50.0)
    assert "A" not in detector.last_heard


def test_receive_reports_replaces_and_ignores_self():
    detector = FailureDetector("A")
    detector.receive_reports("B", ["C", "D", "B"], 1.0)
    assert detector.reports == {"B": {"C": 1.0, "D": 1.0}}
    detector.receive_reports("B", ["D"], 2.0)
    assert detector.reports == {"B": {"D": 2.0}}
    detector.receive_reports("A", ["D"], 2.0)
    assert "A" not in detector.reports
    detector.receive_reports("B", [], 3.0)
    assert detector.reports == {}


def test_update_forgets_members_that_left():
    detector = FailureDetector("A", node_timeout=5.0)
    members = ["A", "B", "C"]
    detector.update(members, 0.0)
    detector.heard("B", 9.0)
    detector.receive_reports("B", ["C"], 9.0)
    detector.receive_reports("C", ["B"], 9.0)
    assert detector.update(members, 9.0)["C"] is FAIL
    assert detector.update(["A", "B"], 9.5) == dict(A=OK, B=OK)
    assert "C" not in detector.last_heard
    assert "C" not in detector.failed
    assert detector.reports == {}


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_node_timeout_must_be_positive(timeout):
    with pytest.raises(ValueError):
        FailureDetector("A", node_timeout=timeout)
