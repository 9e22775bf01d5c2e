"""Failure detection: which members this node considers up, suspect or failed.

Theory of operation
-------------------
The detector follows Redis Cluster's two-step scheme.  Each node notes when it last
heard from every other member (a heartbeat or a reply on the cluster bus).  A member
silent for longer than ``node_timeout`` is **pfail** ("possibly failing", shown as
``fail?`` in ``CLUSTER NODES``): one node's opinion, which may only mean that *its*
link is broken.  Nodes gossip the members they suspect; each suspicion received is a
*failure report*, kept with the time it arrived and dropped once older than
``2 * node_timeout`` (Redis's report validity), so peers must keep repeating a
suspicion for it to count.

A suspect becomes **fail** when a strict majority of the *reachable* members agree:
the members this node does not itself hold as failed, counting itself and the
suspect.  Votes are this node's own suspicion plus the live reports of reachable
reporters.  So on the majority side of a partition the minority is failed, while on
the minority side nothing reaches fail, because the unreachable majority still counts
in the denominator.  Marking one member failed shrinks the denominator, which can
tip another suspect over; :func:`assess` repeats until nothing changes.  A node
never fails a member it can hear: a suspect needs this node's own vote.

Fail is sticky, as in Redis: it lasts while the member stays silent, even if the
reports behind it expire, so topology does not flap while a dead node's peers stop
mentioning it.  Hearing from a member clears both its suspicion and its fail at once.
A two-node cluster can never fail a member (one vote of two is no majority), the same
limit Redis has: a lone survivor cannot tell a dead peer from a partition.

:func:`assess` is the rule as a pure function of explicit inputs;
:class:`FailureDetector` is the small bookkeeping around it (last-heard times,
reports, the sticky fail set) for the node's gossip loop to drive.  Times are
monotonic seconds supplied by the caller, so tests move time by hand.  Nothing here
does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping

#: Default seconds of silence after which a member is suspected.
DEFAULT_NODE_TIMEOUT = 5.0

#: Failure reports stay valid for this many node timeouts (as in Redis).
REPORT_VALIDITY_MULT = 2


class NodeState(enum.Enum):
    """What this node believes about a member."""

    OK = "ok"
    PFAIL = "pfail"
    FAIL = "fail"

    @property
    def flag(self) -> str:
        """The ``CLUSTER NODES`` flag: ``""``, ``"fail?"`` or ``"fail"``."""
        return _FLAGS[self]

    @property
    def suspected(self) -> bool:
        """Whether this node reports the member to peers (pfail or fail)."""
        return self is not NodeState.OK


_FLAGS = {NodeState.OK: "", NodeState.PFAIL: "fail?", NodeState.FAIL: "fail"}


def quorum(reachable: int) -> int:
    """Votes needed among ``reachable`` members: a strict majority."""
    return reachable // 2 + 1


def assess(
    myself: str,
    members: Iterable[str],
    last_heard: Mapping[str, float],
    reports: Mapping[str, Mapping[str, float]],
    now: float,
    node_timeout: float = DEFAULT_NODE_TIMEOUT,
    failed: Collection[str] = (),
) -> dict[str, NodeState]:
    """The state of every member from ``myself``'s point of view.

    ``members`` are the current member ids (``myself`` among them or not; it is
    always OK).  ``last_heard[m]`` is when ``myself`` last heard from ``m``; a member
    missing from it counts as just heard (the caller starts each member's clock, see
    :class:`FailureDetector`).  ``reports[r][m]`` is when ``myself`` received ``r``'s
    report that ``m`` is pfail or fail; reports older than
    ``REPORT_VALIDITY_MULT * node_timeout`` and reports by non-members, by ``myself``
    or by members held failed do not count.  ``failed`` is the set previously
    assessed FAIL: those stay FAIL while still silent.

    Silence is strictly longer than ``node_timeout``, and a report is live while its
    age is at most the validity, matching Redis's comparisons.
    """
    ids = list(dict.fromkeys(members))
    if myself not in ids:
        ids.append(myself)
    validity = REPORT_VALIDITY_MULT * node_timeout

    silent = {
        node_id
        for node_id in ids
        if node_id != myself and now - last_heard.get(node_id, now) > node_timeout
    }
    down = {node_id for node_id in failed if node_id in silent}

    # Live votes per suspect, remembered with their reporter so a reporter that is
    # later held failed can be discounted.
    voters: dict[str, set[str]] = {node_id: set() for node_id in silent}
    member_set = set(ids)
    for reporter, suspects in reports.items():
        if reporter == myself or reporter not in member_set:
            continue
        for suspect, received in suspects.items():
            if suspect in voters and suspect != reporter and now - received <= validity:
                voters[suspect].add(reporter)

    while True:
        needed = quorum(len(ids) - len(down))
        newly = {
            suspect
            for suspect in silent - down
            if 1 + len(voters[suspect] - down) >= needed
        }
        if not newly:
            break
        down |= newly

    states = dict.fromkeys(ids, NodeState.OK)
    for node_id in silent:
        states[node_id] = NodeState.FAIL if node_id in down else NodeState.PFAIL
    return states


def suspects(states: Mapping[str, NodeState]) -> list[str]:
    """The members to report to peers: those pfail or fail, in id order."""
    return sorted(node_id for node_id, state in states.items() if state.suspected)


class FailureDetector:
    """This node's failure-detector state, updated by the gossip loop.

    Call :meth:`heard` whenever a member's heartbeat or reply arrives,
    :meth:`receive_reports` with each peer's gossiped suspect list, and
    :meth:`update` periodically (and after membership changes) to get every
    member's :class:`NodeState`.  A member's silence clock starts the first time
    :meth:`update` sees it, unless :meth:`heard` came first.
    """

    __slots__ = ("myself", "node_timeout", "last_heard", "reports", "failed")

    def __init__(self, myself: str, node_timeout: float = DEFAULT_NODE_TIMEOUT):
        if not node_timeout > 0:
            raise ValueError(f"node timeout must be positive, not {node_timeout!r}")
        self.myself = myself
        self.node_timeout = node_timeout
        #: node id -> monotonic time this node last heard from it.
        self.last_heard: dict[str, float] = {}
        #: reporter -> {suspect: monotonic time the report arrived}.
        self.reports: dict[str, dict[str, float]] = {}
        #: Members assessed FAIL and not heard from since.
        self.failed: set[str] = set()

    def heard(self, node_id: str, now: float) -> None:
        """``node_id`` is alive as of ``now``: it is OK again at once."""
        if node_id == self.myself:
            return
        if now > self.last_heard.get(node_id, float("-inf")):
            self.last_heard[node_id] = now
        self.failed.discard(node_id)

    def receive_reports(self, reporter: str, suspected: Iterable[str], now: float) -> None:
        """``reporter``'s complete current list of suspects, received at ``now``.

        Replaces what ``reporter`` said before, so a suspicion it no longer
        gossips is withdrawn at once (as Redis does when a gossip entry arrives
        without the PFAIL/FAIL flag).
        """
        if reporter == self.myself:
            return
        fresh = {suspect: now for suspect in suspected if suspect != reporter}
        if fresh:
            self.reports[reporter] = fresh
        else:
            self.reports.pop(reporter, None)

    def update(self, members: Iterable[str], now: float) -> dict[str, NodeState]:
        """Every member's state at ``now``; forgets state about non-members.

        Also drops expired reports and records which members are now failed.
        """
        ids = list(dict.fromkeys(members))
        current = set(ids)
        for node_id in ids:
            if node_id != self.myself:
                self.last_heard.setdefault(node_id, now)
        for node_id in [n for n in self.last_heard if n not in current]:
            del self.last_heard[node_id]
        self.failed &= current

        validity = REPORT_VALIDITY_MULT * self.node_timeout
        for reporter in list(self.reports):
            kept = {
                suspect: received
                for suspect, received in self.reports[reporter].items()
                if suspect in current and now - received <= validity
            }
            if reporter in current and kept:
                self.reports[reporter] = kept
            else:
                del self.reports[reporter]

        states = assess(
            self.myself,
            ids,
            self.last_heard,
            self.reports,
            now,
            self.node_timeout,
            self.failed,
        )
        self.failed = {node_id for node_id, state in states.items() if state is NodeState.FAIL}
        return states
