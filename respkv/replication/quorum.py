"""Quorum decisions: N/R/W settings, when a request has its answer, whom to repair.

Theory of operation
-------------------
A slot lives on the N nodes of its preference list.  A write is done once W of them
acknowledged it (the coordinator's own copy counts), a read once R of them answered
(the coordinator's own copy counts).  Replicas are asked in parallel; every answer
or failure updates a :class:`Tally`, whose ``outcome`` is decided as soon as it can
be: ``REACHED`` with enough acknowledgements, ``MISSED`` once too few replicas are
left to reach the quorum, ``PENDING`` otherwise.  A request still pending at its
timeout has missed its quorum.

A "not found" answers a read but never outweighs a version: while some key of a
read has been found by nobody yet (``unfound``), the read waits for every replica
it asked, even past R, since one still to answer may hold it (a replica that lost
its data, or missed the write, must not make an acknowledged key read as nil).
Only at the timeout, or once every replica answered or failed, does such a read
settle on "not found" — as Riak does with ``notfound_ok`` off.

Settings are capped the way Dynamo's are: N by the number of members, R and W by N.
A connection may override R and W for itself (``CONSISTENCY``).  Nothing here does
I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "pending"
REACHED = "reached"
MISSED = "missed"


@dataclass(frozen=True, slots=True)
class Quorums:
    """Replicas per slot (n) and the answers a read (r) or write (w) waits for."""

    n: int
    r: int
    w: int


def requested(config, override: tuple[int, int] | None) -> tuple[int, int]:
    """The (R, W) asked for: a connection's CONSISTENCY override, else the configured ones."""
    return override or (config["read-quorum"], config["write-quorum"])


def effective(replication_factor: int, members: int, r: int, w: int) -> Quorums:
    """The settings in force: N capped at the member count, R and W at N (all >= 1)."""
    n = max(1, min(replication_factor, members))
    return Quorums(n, max(1, min(r, n)), max(1, min(w, n)))


def outcome(needed: int, answered: int, failed: int, asked: int) -> str:
    """Whether ``answered`` of ``asked`` replicas (``failed`` lost) meet ``needed``."""
    if answered >= needed:
        return REACHED
    if asked - failed < needed:
        return MISSED
    return PENDING


def read_outcome(needed: int, answered: int, failed: int, asked: int, unfound: int, final: bool = False) -> str:
    """:func:`outcome` for a read of which ``unfound`` keys no answer has held yet.

    Not found never outweighs found: with such keys the read stays pending past R
    while replicas it asked may still answer, unless ``final`` (its timeout).
    """
    decided = outcome(needed, answered, failed, asked)
    if decided == REACHED and unfound and not final and answered + failed < asked:
        return PENDING
    return decided


class Tally:
    """Answers of one replicated request: counts toward its quorum.

    ``unfound`` (reads) is how many of the request's keys no answer has held yet
    (see :func:`read_outcome`).
    """

    __slots__ = ("needed", "asked", "answered", "failed", "unfound")

    def __init__(self, needed: int, asked: int, answered: int = 0, unfound: int = 0) -> None:
        self.needed = needed
        self.asked = asked
        self.answered = answered
        self.failed = 0
        self.unfound = unfound

    def ack(self) -> str:
        self.answered += 1
        return self.outcome()

    def fail(self) -> str:
        self.failed += 1
        return self.outcome()

    def outcome(self, final: bool = False) -> str:
        """PENDING, REACHED or MISSED; ``final`` once the request timed out."""
        if self.unfound:
            return read_outcome(self.needed, self.answered, self.failed, self.asked, self.unfound, final)
        return outcome(self.needed, self.answered, self.failed, self.asked)


def noquorum_error(kind: str, needed: int, answered: int) -> str:
    """The error text of a request that missed its quorum (``kind``: read or write)."""
    verb = "acknowledged" if kind == "write" else "answered"
    return f"NOQUORUM {kind} quorum not reached: {answered} of {needed} required replicas {verb}"


def repair_targets(merged: bytes, digests: dict[str, bytes]) -> list[str]:
    """The replicas whose record digest differs from the merged record's, in id order."""
    return sorted(node for node, digest in digests.items() if digest != merged)
