"""The durability checker of the fault suite (:mod:`tools.faultsuite`): what the
clients were told, what the cluster answered at the end, and what was lost.

No processes, sockets or clocks here, so the rule can be tested with tables.

The ledger
----------
Every write a client attempts is recorded once, with its outcome as the client saw
it:

* **acknowledged**: the coordinator answered ``+OK`` to ``SET key value``, or an
  integer to ``SADD set element`` (0 counts too: the element was already there, so
  the set holds it).  The cluster promised to keep it.
* **unknown**: an error reply (``-NOQUORUM``, ``-CLUSTERDOWN``, ...), a timeout or
  a dropped connection.  As in Dynamo, a write that missed its quorum is not undone
  where it landed, and a connection may drop after the command ran, so the write
  may or may not have taken effect; either is fine.

Every key is written once, with a value no other write uses, and every element is
added once, to one set; nothing is ever deleted.  So the expected end state is
exact: an acknowledged key holds its value, an acknowledged element is in its set.

The verdict
-----------
Against the final quorum reads (:class:`Observation`):

* **lost write**: an acknowledged key reads as nil;
* **wrong value**: a key (acknowledged or not) reads as a value its one write did
  not write;
* **lost element**: an acknowledged element is missing from its set;
* **phantom element**: a set holds an element no client ever tried to add;
* **unread**: a key or set the final read could not get (errors until the
  deadline): nothing can be concluded about it, so it fails the run too;
* **unacknowledged present / absent**: an unknown write that took effect, or did
  not.  Both are fine; they are counted to show the workload hit the faults.

A lost element is still lost when it survives in a concurrent version (a sibling)
that ``SMEMBERS`` does not show: a plain client cannot see it.  When the reads
include ``SIBLINGS``, the verdict counts those apart
(``lost_elements_in_siblings``), which tells a write dropped by a replica from two
coordinators' versions that nobody merged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Ledger:
    """Every write attempted and whether it was acknowledged.

    One ledger per client thread (no locks); :meth:`merge` combines them.
    """

    #: key -> value, for the SETs answered ``+OK``.
    writes: dict[str, str] = field(default_factory=dict)
    #: key -> value, for the SETs whose outcome is unknown.
    unknown_writes: dict[str, str] = field(default_factory=dict)
    #: set key -> elements, for the SADDs answered with an integer.
    elements: dict[str, set[str]] = field(default_factory=dict)
    #: set key -> elements, for the SADDs whose outcome is unknown.
    unknown_elements: dict[str, set[str]] = field(default_factory=dict)
    #: Why writes were not acknowledged: the error's first word -> count.
    errors: Counter = field(default_factory=Counter)

    def write(self, key: str, value: str, acknowledged: bool, error: str | None = None) -> None:
        """Record ``SET key value`` and its outcome (each key written once)."""
        if key in self.writes or key in self.unknown_writes:
            raise ValueError(f"key {key!r} written twice: keys must be unique")
        (self.writes if acknowledged else self.unknown_writes)[key] = value
        if not acknowledged:
            self.errors[error_kind(error)] += 1

    def add(self, set_key: str, element: str, acknowledged: bool, error: str | None = None) -> None:
        """Record ``SADD set_key element`` and its outcome (each element added once)."""
        if element in self.elements.get(set_key, ()) or element in self.unknown_elements.get(set_key, ()):
            raise ValueError(f"element {element!r} added twice to {set_key!r}: elements must be unique")
        target = self.elements if acknowledged else self.unknown_elements
        target.setdefault(set_key, set()).add(element)
        if not acknowledged:
            self.errors[error_kind(error)] += 1

    def merge(self, other: "Ledger") -> "Ledger":
        """Add ``other``'s records to this ledger (they must not overlap); returns self."""
        for key, value in other.writes.items():
            self.write(key, value, True)
        for key, value in other.unknown_writes.items():
            if key in self.writes or key in self.unknown_writes:
                raise ValueError(f"key {key!r} written twice: keys must be unique")
            self.unknown_writes[key] = value
        for set_key, members in other.elements.items():
            for element in members:
                self.add(set_key, element, True)
        for set_key, members in other.unknown_elements.items():
            for element in members:
                if element in self.elements.get(set_key, ()) or element in self.unknown_elements.get(set_key, ()):
                    raise ValueError(f"element {element!r} added twice to {set_key!r}")
                self.unknown_elements.setdefault(set_key, set()).add(element)
        self.errors.update(other.errors)
        return self

    @property
    def acknowledged_writes(self) -> int:
        return len(self.writes)

    @property
    def acknowledged_elements(self) -> int:
        return sum(len(m) for m in self.elements.values())

    @property
    def unacknowledged(self) -> int:
        return len(self.unknown_writes) + sum(len(m) for m in self.unknown_elements.values())

    def keys(self) -> list[str]:
        """Every key written, acknowledged or not."""
        return [*self.writes, *self.unknown_writes]

    def sets(self) -> list[str]:
        """Every set added to, acknowledged or not."""
        return sorted(set(self.elements) | set(self.unknown_elements))


def error_kind(error: str | None) -> str:
    """The first word of an error (``NOQUORUM``, ``ConnectionError``, ...)."""
    if not error:
        return "unknown"
    return error.split(None, 1)[0].rstrip(":")


@dataclass
class Observation:
    """What the final quorum reads returned."""

    #: key -> value read (None: nil).
    values: dict[str, str | None] = field(default_factory=dict)
    #: set key -> its members.
    members: dict[str, set[str]] = field(default_factory=dict)
    #: Keys and sets that could not be read.
    unread_keys: set[str] = field(default_factory=set)
    unread_sets: set[str] = field(default_factory=set)
    #: set key -> the members of all its live siblings together (from ``SIBLINGS``).
    sibling_members: dict[str, set[str]] = field(default_factory=dict)
    #: set key -> how many live siblings it has.
    siblings: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    """What :func:`judge` found; ``ok`` when nothing acknowledged is missing or wrong."""

    acknowledged_writes: int = 0
    acknowledged_elements: int = 0
    unacknowledged: int = 0
    lost_writes: list[str] = field(default_factory=list)
    #: (key, the value written, the value read)
    wrong_values: list[tuple[str, str, str]] = field(default_factory=list)
    #: (set key, element)
    lost_elements: list[tuple[str, str]] = field(default_factory=list)
    phantom_elements: list[tuple[str, str]] = field(default_factory=list)
    unread_keys: list[str] = field(default_factory=list)
    unread_sets: list[str] = field(default_factory=list)
    unacknowledged_present: int = 0
    unacknowledged_absent: int = 0
    #: Lost elements that a sibling ``SMEMBERS`` does not show still holds.
    lost_elements_in_siblings: int = 0
    #: Sets that have more than one live sibling.
    sets_with_siblings: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost_writes or self.wrong_values or self.lost_elements
                    or self.phantom_elements or self.unread_keys or self.unread_sets)

    def counts(self) -> dict[str, int]:
        """The numbers of the summary, by name."""
        return {
            "acknowledged_writes": self.acknowledged_writes,
            "acknowledged_elements": self.acknowledged_elements,
            "lost_writes": len(self.lost_writes),
            "lost_elements": len(self.lost_elements),
            "lost_elements_in_siblings": self.lost_elements_in_siblings,
            "sets_with_siblings": self.sets_with_siblings,
            "wrong_values": len(self.wrong_values),
            "phantom_elements": len(self.phantom_elements),
            "unread_keys": len(self.unread_keys),
            "unread_sets": len(self.unread_sets),
            "unacknowledged": self.unacknowledged,
            "unacknowledged_present": self.unacknowledged_present,
            "unacknowledged_absent": self.unacknowledged_absent,
        }

    def samples(self, shown: int = 5) -> list[str]:
        """A few of the failures, in words."""
        out = [f"lost write: {k}" for k in sorted(self.lost_writes)[:shown]]
        out += [f"wrong value: {k} wrote {w!r}, read {r!r}" for k, w, r in sorted(self.wrong_values)[:shown]]
        out += [f"lost element: {e} of {s}" for s, e in sorted(self.lost_elements)[:shown]]
        out += [f"phantom element: {e} in {s}" for s, e in sorted(self.phantom_elements)[:shown]]
        out += [f"unread key: {k}" for k in sorted(self.unread_keys)[:shown]]
        out += [f"unread set: {s}" for s in sorted(self.unread_sets)[:shown]]
        return out


def judge(ledger: Ledger, seen: Observation) -> Verdict:
    """Compare what was acknowledged with what was read (the module doc's rule)."""
    v = Verdict(acknowledged_writes=ledger.acknowledged_writes,
                acknowledged_elements=ledger.acknowledged_elements,
                unacknowledged=ledger.unacknowledged)
    for key, value in ledger.writes.items():
        if key in seen.unread_keys or key not in seen.values:
            v.unread_keys.append(key)
            continue
        got = seen.values[key]
        if got is None:
            v.lost_writes.append(key)
        elif got != value:
            v.wrong_values.append((key, value, got))
    for key, value in ledger.unknown_writes.items():
        got = seen.values.get(key)
        if key in seen.unread_keys or key not in seen.values:
            continue
        if got is None:
            v.unacknowledged_absent += 1
        elif got == value:
            v.unacknowledged_present += 1
        else:
            v.wrong_values.append((key, value, got))
    for set_key in ledger.sets():
        acked = ledger.elements.get(set_key, set())
        unknown = ledger.unknown_elements.get(set_key, set())
        if set_key in seen.unread_sets or set_key not in seen.members:
            if acked:
                v.unread_sets.append(set_key)
            continue
        members = seen.members[set_key]
        lost = acked - members
        v.lost_elements += [(set_key, e) for e in lost]
        v.lost_elements_in_siblings += len(lost & seen.sibling_members.get(set_key, set()))
        v.sets_with_siblings += seen.siblings.get(set_key, 1) > 1
        v.phantom_elements += [(set_key, e) for e in members - acked - unknown]
        present = len(unknown & members)
        v.unacknowledged_present += present
        v.unacknowledged_absent += len(unknown) - present
    # Sets read that no client added to (a set key the workload never used).
    for set_key, members in seen.members.items():
        if set_key not in ledger.elements and set_key not in ledger.unknown_elements:
            v.phantom_elements += [(set_key, e) for e in members]
    return v
