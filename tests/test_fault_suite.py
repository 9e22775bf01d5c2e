"""The fault suite of ``tools/faultsuite.py``, in the short form CI runs.

* The checker (:mod:`tools.faultcheck`) with tables: a lost key, a wrong value, a
  lost element, a phantom element, an unreadable key fail; an unacknowledged write
  present or absent is fine; lost elements still held by a sibling are counted apart.
* Marked ``cluster``, real runs on 3-node clusters with RF=3, W=2, R=2: three
  cycles of ``kill -9`` of a random node, 1.5 s of concurrent writes, restart on the
  same directory; four cycles with W=1 alternating kills and partitions (a node
  cut off while both sides take writes); and a whole-cluster stop (SIGTERM, then
  ``kill -9``) and restart.  Each must lose no acknowledged write and no
  acknowledged set element.

Every wait of the runs has a deadline (cluster readiness, socket timeouts, the
final reads); the only sleeps are the stretches of writing the cycles consist of.
The full form is ``python -m tools.faultsuite`` (20 cycles of 3 s).
"""

from __future__ import annotations

import json

import pytest

from tools import faultsuite
from tools.faultcheck import Ledger, Observation, error_kind, judge
from tools.faultclients import sibling_values

# --------------------------------------------------------------------------- #
# The checker
# --------------------------------------------------------------------------- #


def ledger_of(writes=(), elements=()) -> Ledger:
    """``writes``: (key, value, acknowledged); ``elements``: (set, element, acknowledged)."""
    ledger = Ledger()
    for key, value, acked in writes:
        ledger.write(key, value, acked, None if acked else "ConnectionError: refused")
    for set_key, element, acked in elements:
        ledger.add(set_key, element, acked, None if acked else "NOQUORUM write quorum not reached")
    return ledger


# Each case: writes, elements, what the reads saw (values, members, unread keys,
# unread sets), and the counts expected (the others must be 0), and whether ok.
CASES = {
    "everything present": (
        [("k1", "v1", True), ("k2", "v2", True)], [("s", "a", True), ("s", "b", True)],
        {"k1": "v1", "k2": "v2"}, {"s": {"a", "b"}}, (), (),
        {}, True),
    "lost key": (
        [("k1", "v1", True), ("k2", "v2", True)], [],
        {"k1": "v1", "k2": None}, {}, (), (),
        {"lost_writes": 1}, False),
    "wrong value": (
        [("k1", "v1", True)], [],
        {"k1": "other"}, {}, (), (),
        {"wrong_values": 1}, False),
    "lost element": (
        [], [("s", "a", True), ("s", "b", True), ("t", "c", True)],
        {}, {"s": {"a"}, "t": {"c"}}, (), (),
        {"lost_elements": 1}, False),
    "a whole set lost": (
        [], [("s", "a", True), ("s", "b", True)],
        {}, {"s": set()}, (), (),
        {"lost_elements": 2}, False),
    "unacknowledged present is fine": (
        [("k1", "v1", False)], [("s", "a", False)],
        {"k1": "v1"}, {"s": {"a"}}, (), (),
        {"unacknowledged_present": 2}, True),
    "unacknowledged absent is fine": (
        [("k1", "v1", False)], [("s", "a", True), ("s", "b", False)],
        {"k1": None}, {"s": {"a"}}, (), (),
        {"unacknowledged_absent": 2}, True),
    "unacknowledged key with a value never written": (
        [("k1", "v1", False)], [],
        {"k1": "v2"}, {}, (), (),
        {"wrong_values": 1}, False),
    "phantom element": (
        [], [("s", "a", True)],
        {}, {"s": {"a", "zz"}}, (), (),
        {"phantom_elements": 1}, False),
    "acknowledged key unread": (
        [("k1", "v1", True)], [],
        {}, {}, {"k1"}, (),
        {"unread_keys": 1}, False),
    "unacknowledged key unread is fine": (
        [("k1", "v1", True), ("k2", "v2", False)], [],
        {"k1": "v1"}, {}, {"k2"}, (),
        {}, True),
    "set unread": (
        [], [("s", "a", True)],
        {}, {}, (), {"s"},
        {"unread_sets": 1}, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_judge(name):
    writes, elements, values, members, unread_keys, unread_sets, expected, ok = CASES[name]
    ledger = ledger_of(writes, elements)
    seen = Observation(values=dict(values), members={k: set(v) for k, v in members.items()},
                       unread_keys=set(unread_keys), unread_sets=set(unread_sets))
    verdict = judge(ledger, seen)
    counts = verdict.counts()
    for field in ("lost_writes", "wrong_values", "lost_elements", "phantom_elements", "unread_keys",
                  "unread_sets", "unacknowledged_present", "unacknowledged_absent"):
        assert counts[field] == expected.get(field, 0), (field, counts)
    assert verdict.ok is ok
    assert counts["acknowledged_writes"] == sum(1 for *_, acked in writes if acked)
    assert counts["acknowledged_elements"] == sum(1 for *_, acked in elements if acked)
    assert bool(verdict.samples()) is not ok


def test_lost_elements_held_by_a_sibling_are_counted_apart():
    ledger = ledger_of(elements=[("s", "a", True), ("s", "b", True), ("s", "c", True)])
    seen = Observation(members={"s": {"a"}}, sibling_members={"s": {"a", "b"}}, siblings={"s": 2})
    verdict = judge(ledger, seen)
    assert sorted(verdict.lost_elements) == [("s", "b"), ("s", "c")]
    assert verdict.lost_elements_in_siblings == 1
    assert verdict.sets_with_siblings == 1
    assert not verdict.ok  # a plain client reading SMEMBERS misses both


def test_ledger_rejects_a_second_write_of_a_key_or_element():
    ledger = ledger_of(writes=[("k", "v", False)], elements=[("s", "a", True)])
    with pytest.raises(ValueError):
        ledger.write("k", "v2", True)
    with pytest.raises(ValueError):
        ledger.add("s", "a", False)
    ledger.add("t", "a", True)  # the same element in another set is another write


def test_ledgers_merge_and_count_errors_by_kind():
    one = ledger_of(writes=[("k1", "v1", True), ("k2", "v2", False)], elements=[("s", "a", True)])
    two = ledger_of(writes=[("k3", "v3", True)], elements=[("s", "b", False), ("s", "c", True)])
    merged = Ledger().merge(one).merge(two)
    assert merged.writes == {"k1": "v1", "k3": "v3"}
    assert merged.unknown_writes == {"k2": "v2"}
    assert merged.elements == {"s": {"a", "c"}}
    assert merged.unknown_elements == {"s": {"b"}}
    assert merged.errors == {"ConnectionError": 1, "NOQUORUM": 1}
    assert (merged.acknowledged_writes, merged.acknowledged_elements, merged.unacknowledged) == (2, 2, 2)
    with pytest.raises(ValueError):
        merged.merge(one)


def test_error_kind():
    assert error_kind("NOQUORUM write quorum not reached: 1 of 2") == "NOQUORUM"
    assert error_kind("ConnectionError: Error 111 connecting") == "ConnectionError"
    assert error_kind(None) == "unknown"


def test_sibling_values_of_resp2_and_resp3_replies():
    resp2 = ["ctx", [["value", ["a", "b"], "type", "set", "tombstone", 0],
                     ["value", None, "type", "none", "tombstone", 1],
                     ["value", ["c"], "type", "set", "tombstone", 0]]]
    assert sibling_values(resp2) == [{"a", "b"}, {"c"}]
    resp3 = ["ctx", [{"value": ["a"], "tombstone": 0}]]
    assert sibling_values(resp3) == [{"a"}]


def test_restarts_use_the_command_line_without_join():
    argv = ["py", "-m", "respkv", "server", "--cluster", "--join", "127.0.0.1:7000", "--port", "7001"]
    assert faultsuite.without_join(argv) == ["py", "-m", "respkv", "server", "--cluster", "--port", "7001"]


def test_bad_arguments_exit_with_status_2(capsys):
    assert faultsuite.main(["--cycles", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


# --------------------------------------------------------------------------- #
# Real runs
# --------------------------------------------------------------------------- #


@pytest.mark.cluster
def test_kill_and_restart_cycles_lose_no_acknowledged_write(tmp_path):
    """Kill -9 cycles, each after rewrites started on every node: the logs hold
    sets' SADDs as operations, over snapshots written while the writes went on."""
    settings = faultsuite.Settings(cycles=3, seconds_per_cycle=1.5, clients=3, sets=4, seed=12, rewrites=True,
                                   keep=str(tmp_path / "cluster"), ready_timeout=45.0, read_timeout=30.0)
    report = faultsuite.run(settings)
    summary = report.summary()
    assert len(report.steps) == 3
    assert all("rewriting_at_kill" in step for step in report.steps), summary
    assert report.quorums and all(q == {"replication-factor": "3", "read-quorum": "2", "write-quorum": "2"}
                                  for q in report.quorums.values()), summary
    assert report.verdict.acknowledged_writes > 0 and report.verdict.acknowledged_elements > 0, summary
    assert report.verdict.lost_writes == [], summary
    assert report.verdict.lost_elements == [], summary
    assert report.ok, summary


@pytest.mark.cluster
def test_kill_and_partition_cycles_with_w1_lose_no_acknowledged_set_element(tmp_path):
    """A partition with W=1 makes both sides acknowledge SADDs to the same sets;
    the siblings must merge (convergent types) without losing one."""
    settings = faultsuite.Settings(cycles=4, seconds_per_cycle=1.5, clients=3, sets=4, seed=21, write_quorum=1,
                                   partitions=True, keep=str(tmp_path / "cluster"), ready_timeout=45.0,
                                   read_timeout=30.0)
    report = faultsuite.run(settings)
    summary = report.summary()
    assert [bool(step.get("partition")) for step in report.steps] == [False, True, False, True], summary
    assert report.verdict.acknowledged_elements > 0, summary
    assert report.verdict.lost_writes == [], summary
    assert report.verdict.lost_elements == [], summary
    assert report.ok, summary


@pytest.mark.cluster
@pytest.mark.parametrize("how", faultsuite.WHOLE_CLUSTER_MODES)
def test_whole_cluster_restart_keeps_every_acknowledged_write(tmp_path, capsys, how):
    status = faultsuite.main(["--whole-cluster", how, "--writes", "600", "--clients", "3", "--sets", "4",
                              "--seed", "5", "--keep", str(tmp_path / "cluster"), "--json"])
    result = json.loads(capsys.readouterr().out)
    (step,) = result["steps"]
    assert step["stop"] == how
    expected_exit = 0 if how == "sigterm" else -9
    assert all(code == expected_exit for code in step["exit_status"].values()), step
    # With every node up the writes are acknowledged (an error would only make one unknown).
    assert result["acknowledged_writes"] > 0 and result["acknowledged_elements"] > 0, result
    assert result["lost_writes"] == 0, result["samples"]
    assert result["lost_elements"] == 0, result["samples"]
    assert status == 0 and result["ok"], result
