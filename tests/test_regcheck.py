"""The register checker of ``tools/regcheck.py``: tables of histories that pass and
of every kind of violation, the driver's recording of pipelines (against stand-in
connections, one answering in order and one answering a read with a later write of
its own pipeline), and, marked ``cluster``, a short run against a fresh 3-node
cluster with replication factor 3 and R = W = 2 that must find no violation.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tools import regcheck
from tools.regcheck import (
    FUTURE_VALUE,
    MISSED_OWN_WRITE,
    NIL_AFTER_WRITE,
    OWN_LATER_WRITE,
    READ,
    STALE_VALUE,
    UNKNOWN_VALUE,
    WRITE,
    HistoryError,
    Op,
    check,
    explain,
)


class History:
    """Builds histories: each call is one pipeline of one client, sent at ``start``
    and answered at ``end``; ops get the client's next indexes in the order given.

    A command is ``("set", key, value)`` or ``("get", key, value_read)``, with an
    optional fourth item False for a failed op (an error reply or a timeout).
    """

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._index: dict[int, int] = defaultdict(int)
        self._batch: dict[int, int] = defaultdict(int)

    def pipeline(self, client: int, start: float, end: float, *commands) -> "History":
        batch = self._batch[client]
        self._batch[client] += 1
        for command in commands:
            verb, key, value, *rest = command
            ok = rest[0] if rest else True
            self.ops.append(Op(
                client=client, index=self._index[client], batch=batch, key=key,
                kind=WRITE if verb == "set" else READ, value=value,
                invoked=float(start), completed=float(end), ok=ok, error=None if ok else "timeout",
            ))
            self._index[client] += 1
        return self

    def set(self, client, key, value, start, end, ok=True) -> "History":
        return self.pipeline(client, start, end, ("set", key, value, ok))

    def get(self, client, key, value, start, end, ok=True) -> "History":
        return self.pipeline(client, start, end, ("get", key, value, ok))


# --------------------------------------------------------------------------- #
# Histories that must pass
# --------------------------------------------------------------------------- #

PASSING = {
    "empty": History(),
    "read after write": History().set(1, "k", "a", 0, 1).get(2, "k", "a", 2, 3),
    "nil before any write": History().get(1, "k", None, 0, 1).set(2, "k", "a", 2, 3),
    "nil concurrent with the first write": History().set(1, "k", "a", 0, 3).get(2, "k", None, 1, 2),
    "read concurrent with a write sees the old value":
        History().set(1, "k", "a", 0, 1).set(1, "k", "b", 2, 5).get(2, "k", "a", 3, 4),
    "read concurrent with a write sees the new value":
        History().set(1, "k", "a", 0, 1).set(1, "k", "b", 2, 5).get(2, "k", "b", 3, 4),
    "read sees a write that started before the read completed":
        History().get(2, "k", "a", 0, 2).set(1, "k", "a", 1, 3),
    "concurrent writes: either one may be read after both":
        History().set(1, "k", "a", 0, 3).set(2, "k", "b", 1, 2).get(3, "k", "a", 4, 5).get(3, "k", "b", 6, 7),
    "a failed write may land after a later acknowledged one":
        History().set(1, "k", "a", 0, 1, ok=False).set(2, "k", "b", 2, 3).get(3, "k", "a", 4, 5),
    "own failed write of an earlier pipeline may land late":
        History().set(1, "k", "a", 0, 1, ok=False).set(1, "k", "b", 2, 3).get(1, "k", "a", 4, 5),
    "failed reads are not judged": History().set(1, "k", "a", 0, 1).get(2, "k", "zzz", 2, 3, ok=False),
    "another key's writes do not overwrite":
        History().set(1, "k", "a", 0, 1).set(1, "j", "b", 2, 3).get(2, "k", "a", 4, 5),
    "pipeline: read, write, read":
        History().set(2, "k", "old", 0, 1).pipeline(
            1, 2, 3, ("get", "k", "old"), ("set", "k", "new"), ("get", "k", "new")),
    "pipeline: read your own write": History().pipeline(1, 0, 1, ("set", "k", "a"), ("get", "k", "a")),
    "pipeline: a write answered with an error is still read after it":
        History().pipeline(1, 0, 1, ("set", "k", "a", False), ("get", "k", "a")),
    "pipeline: another client's concurrent write may follow your own":
        History().pipeline(1, 0, 3, ("set", "k", "a"), ("get", "k", "b")).set(2, "k", "b", 1, 2),
}


@pytest.mark.parametrize("name", sorted(PASSING))
def test_history_passes(name):
    violations = check(PASSING[name].ops)
    assert violations == [], [explain(v) for v in violations]


# --------------------------------------------------------------------------- #
# Histories with exactly one violation each
# --------------------------------------------------------------------------- #

VIOLATING = {
    # The issue: GET k followed in the same pipeline by SET k LATER answers LATER.
    "pipeline: GET k answered with the later SET k LATER": (
        OWN_LATER_WRITE,
        History().set(2, "k", "EARLIER", 0, 1).pipeline(
            1, 2, 3, ("get", "k", "LATER"), ("set", "k", "LATER")),
    ),
    "pipeline: GET k on a new key answered with the later SET": (
        OWN_LATER_WRITE,
        History().pipeline(1, 0, 1, ("get", "k", "LATER"), ("set", "k", "LATER")),
    ),
    "read answered with the client's write of its next pipeline": (
        OWN_LATER_WRITE,
        History().get(1, "k", "b", 0, 1).set(1, "k", "b", 2, 3),
    ),
    "value nobody wrote": (UNKNOWN_VALUE, History().set(1, "k", "a", 0, 1).get(2, "k", "zzz", 2, 3)),
    "value written to another key": (UNKNOWN_VALUE, History().set(1, "j", "a", 0, 1).get(2, "k", "a", 2, 3)),
    "value from the future": (FUTURE_VALUE, History().get(2, "k", "a", 0, 1).set(1, "k", "a", 2, 3)),
    "value overwritten before the read began": (
        STALE_VALUE,
        History().set(1, "k", "a", 0, 1).set(2, "k", "b", 2, 3).get(3, "k", "a", 4, 5),
    ),
    "value overwritten by the writer's next write in its pipeline": (
        STALE_VALUE,
        History().pipeline(1, 0, 1, ("set", "k", "a"), ("set", "k", "b")).get(2, "k", "a", 2, 3),
    ),
    "a write answered with an error, overwritten later in its own pipeline": (
        STALE_VALUE,
        History().pipeline(1, 0, 1, ("set", "k", "a", False), ("set", "k", "b")).get(2, "k", "a", 2, 3),
    ),
    "older value than the reader's own acknowledged write": (
        MISSED_OWN_WRITE,
        History().set(1, "k", "a", 0, 1).set(2, "k", "b", 2, 3).get(2, "k", "a", 4, 5),
    ),
    "pipeline: older value than the write just before the read": (
        MISSED_OWN_WRITE,
        History().set(2, "k", "a", 0, 1).pipeline(1, 2, 3, ("set", "k", "b"), ("get", "k", "a")),
    ),
    "pipeline: the first of two own writes read after both": (
        MISSED_OWN_WRITE,
        History().pipeline(1, 0, 1, ("set", "k", "a"), ("set", "k", "b"), ("get", "k", "a")),
    ),
    "nil after an acknowledged write": (NIL_AFTER_WRITE, History().set(1, "k", "a", 0, 1).get(2, "k", None, 2, 3)),
    "pipeline: nil right after the client's own write": (
        NIL_AFTER_WRITE,
        History().pipeline(1, 0, 1, ("set", "k", "a"), ("get", "k", None)),
    ),
}


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_violation_is_caught(name):
    kind, history = VIOLATING[name]
    violations = check(history.ops)
    assert [v.kind for v in violations] == [kind], [explain(v) for v in violations]
    assert violations[0].read.kind == READ
    assert explain(violations[0]).startswith(kind + ": ")


def test_explanation_names_both_operations():
    history = History().set(2, "k", "EARLIER", 0, 1).pipeline(
        1, 2, 3, ("get", "k", "LATER"), ("set", "k", "LATER"))
    [violation] = check(history.ops)
    text = explain(violation)
    assert "client 1 GET k 'LATER' [op 0, pipeline 0" in text
    assert "sent after it: SET k 'LATER' [op 1, pipeline 0" in text
    assert regcheck.pipeline_text(history.ops, violation.read) == ">>GET k -> LATER<<; SET k LATER -> OK"


def test_every_offending_read_is_reported_once_in_invocation_order():
    history = (History().set(1, "k", "a", 0, 1).set(1, "k", "b", 2, 3)
               .get(2, "k", "a", 6, 7).get(3, "k", "zzz", 4, 5).get(3, "k", None, 8, 9))
    assert [v.kind for v in check(history.ops)] == [UNKNOWN_VALUE, STALE_VALUE, NIL_AFTER_WRITE]


@pytest.mark.parametrize("history", [
    History().set(1, "k", "a", 0, 1).set(2, "k", "a", 2, 3),                 # a value written twice
    History().set(1, "k", "a", 2, 1),                                        # completed before invoked
    History().set(1, "k", "a", 2, 3).set(1, "k", "b", 0, 1),                 # a client's pipelines reordered
    History().set(1, "k", "a", 0, 3).set(1, "k", "b", 1, 4),                 # ... or overlapping
])
def test_histories_the_checker_cannot_judge_are_refused(history):
    with pytest.raises(HistoryError):
        check(history.ops)


def test_saved_history_checks_the_same(tmp_path):
    _, history = VIOLATING["pipeline: GET k answered with the later SET k LATER"]
    path = tmp_path / "history.jsonl"
    regcheck.save_history(history.ops, str(path))
    assert regcheck.load_history(str(path)) == history.ops
    assert regcheck.main(["--check", str(path)]) == 1
    regcheck.save_history(PASSING["pipeline: read, write, read"].ops, str(path))
    assert regcheck.main(["--check", str(path)]) == 0


def test_large_history_is_checked_quickly():
    """The checker indexes writes per key: a long history costs about n log n."""
    h = History()
    t = 0.0
    for i in range(20000):
        h.pipeline(i % 4, t, t + 0.5, ("set", "k", f"v{i}"), ("get", "k", f"v{i}"))
        t += 1.0
    started = time.monotonic()
    assert check(h.ops) == []
    assert time.monotonic() - started < 10.0


# --------------------------------------------------------------------------- #
# The driver's recording, against stand-in connections
# --------------------------------------------------------------------------- #


class StandInPipeline:
    """Runs a pipeline on a dict.  ``later_wins``: a GET answers with the value the
    pipeline's last SET of that key writes, even when that SET comes after it (the
    defect the issue reports); otherwise commands run in order."""

    def __init__(self, data: dict, later_wins: bool) -> None:
        self.data = data
        self.later_wins = later_wins
        self.commands: list[tuple] = []

    def get(self, key):
        self.commands.append(("get", key))

    def set(self, key, value):
        self.commands.append(("set", key, value))

    def execute(self, raise_on_error=True):
        final = {c[1]: c[2] for c in self.commands if c[0] == "set"}
        out = []
        for c in self.commands:
            if c[0] == "set":
                self.data[c[1]] = c[2]
                out.append(True)
            elif self.later_wins and c[1] in final:
                out.append(final[c[1]])
            else:
                out.append(self.data.get(c[1]))
        return out


class StandInConnection:
    def __init__(self, data: dict, later_wins: bool) -> None:
        self.data = data
        self.later_wins = later_wins

    def pipeline(self, transaction=True):
        assert transaction is False
        return StandInPipeline(self.data, self.later_wins)

    def close(self):
        pass


def record(monkeypatch, later_wins: bool) -> list[Op]:
    """Two clients, 400 ops each in pipelines of 8 on two keys, one after the other."""
    data: dict = {}
    monkeypatch.setattr(regcheck, "_connect", lambda port, settings: StandInConnection(data, later_wins))
    settings = regcheck.Settings(clients=2, keys=2, pipeline=8)
    history = []
    for cid in range(2):
        client = regcheck._Client(cid, settings, {1: ["k1", "k2"]}, time.monotonic() + 60, regcheck._Budget(400))
        client.run()
        assert client.failure is None
        assert client.pipelines == 50 and client.read_then_write > 0
        history += client.history
    return history


def test_driver_records_pipelines_in_order(monkeypatch):
    history = record(monkeypatch, later_wins=False)
    assert len(history) == 800
    assert {op.kind for op in history} == {READ, WRITE}
    assert check(history) == []


def test_driver_catches_a_read_answered_with_a_later_write(monkeypatch):
    violations = check(record(monkeypatch, later_wins=True))
    assert violations
    assert {v.kind for v in violations} == {OWN_LATER_WRITE}
    for v in violations:
        assert v.write.client == v.read.client and v.write.batch == v.read.batch
        assert v.write.index > v.read.index


# --------------------------------------------------------------------------- #
# CI's short form: a few seconds against a fresh cluster
# --------------------------------------------------------------------------- #


@pytest.mark.cluster
def test_no_violations_on_a_three_node_cluster(tmp_path):
    """Rf 3, R = W = 2 (checked on every node), no faults: every read is a value
    written and not yet overwritten when the read began, also within pipelines that
    read, write and read again one key on its coordinator."""
    settings = regcheck.Settings(clients=6, keys=6, seconds=4.0, pipeline=8)
    report = regcheck.run(settings, str(tmp_path / "cluster"))
    print(report.summary(10))
    assert len(report.nodes) == 3
    assert all(q == regcheck.EXPECTED for q in report.quorums.values())
    assert len(set(report.keys.values())) == 3, "the keys should be spread over every coordinator"
    assert report.reads > 500 and report.writes > 500 and report.read_then_write > 50, report.summary()
    assert report.violations == [], report.summary(10)
