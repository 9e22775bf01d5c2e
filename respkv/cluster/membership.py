"""Cluster membership: who the members are, as a value gossip can merge.

Theory of operation
-------------------
Every node keeps one :class:`Membership`: an immutable map from node id to that
node's :class:`Member` record (address, client and bus ports, ring weight).  Each
record carries an ``epoch``, the member's own incarnation counter: whoever changes a
record raises its epoch above the highest one it has seen for that node, and in
practice that is the member itself (a node announcing a new address or weight) or
an operator removing a node, which leaves a *tombstone* (``left=True``) rather than
deleting the record, so an old copy of the record cannot bring the node back.

Two memberships combine with :meth:`Membership.merge`: per node id the record with
the higher epoch wins, and two different records with the same epoch (which only a
node that lost its own epoch could produce) are ordered by their contents, with the
tombstone first.  Choosing the maximum of a total order per key makes merge
commutative, associative and idempotent (a state-based CRDT), so nodes that gossip
in any order, any number of times, end with the same membership.

The cluster-wide version, :attr:`Membership.config_epoch`, is the sum of all record
epochs: any accepted change raises it and merging never lowers it, so a larger
version means "has seen more changes".  Two memberships with equal versions can still
differ (concurrent changes to different members); :meth:`Membership.digest`, a short
hash of the canonical encoding, tells peers whether they hold exactly the same value
without shipping it.  :meth:`Membership.to_wire` and :meth:`Membership.from_wire`
give that canonical encoding as a flat list of byte strings for a RESP array on the
cluster bus, and :meth:`Membership.ring` builds the consistent-hash ring of the
members that have not left.

A node that restarted without its epoch, or finds a stale or tombstoned copy of its
own record after a merge, re-asserts itself by calling :meth:`Membership.with_member`
with its current address on the merged value: that is a no-op when the record is
already right and otherwise writes it with an epoch one above the known one.

Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .ring import DEFAULT_VNODES, Ring

#: Length of a node id: 160 random bits in lowercase hex, as Redis Cluster uses.
NODE_ID_LENGTH = 40

#: First element of the wire encoding, naming its layout so it can evolve.
WIRE_TAG = b"members/1"

#: Fields per member in the wire encoding, after the tag.
WIRE_FIELDS = 7

_HEX_DIGITS = frozenset("0123456789abcdef")
_MAX_EPOCH = 2**63 - 1


def is_node_id(value: object) -> bool:
    """Whether ``value`` is a well-formed node id (40 lowercase hex digits)."""
    return (
        isinstance(value, str)
        and len(value) == NODE_ID_LENGTH
        and _HEX_DIGITS.issuperset(value)
    )


def _check_port(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ValueError(f"{name} must be an integer in 1..65535, not {value!r}")


@dataclass(frozen=True, slots=True)
class Member:
    """One node's record: where to reach it and how much of the ring it takes.

    ``host`` is a concrete IP address in canonical text form (it goes verbatim into
    ``MOVED`` replies and ``CLUSTER SLOTS``, which clients connect to without name
    resolution); ``port`` is the client port and ``bus_port`` the cluster bus port.
    ``epoch`` versions the record and ``left`` marks a member that has been removed.
    """

    node_id: str
    host: str
    port: int
    bus_port: int
    weight: int = 1
    epoch: int = 1
    left: bool = False

    def __post_init__(self) -> None:
        if not is_node_id(self.node_id):
            raise ValueError(f"node id must be 40 lowercase hex digits, not {self.node_id!r}")
        if not isinstance(self.host, str):
            raise ValueError(f"host must be an IP address string, not {self.host!r}")
        try:
            canonical = str(ipaddress.ip_address(self.host))
        except ValueError:
            raise ValueError(f"host must be an IP address, not {self.host!r}") from None
        if canonical != self.host:
            # Records are compared and hashed by their text, so one address must
            # have one spelling on every node.
            raise ValueError(f"host must be written canonically as {canonical!r}")
        _check_port("port", self.port)
        _check_port("bus port", self.bus_port)
        if not isinstance(self.weight, int) or isinstance(self.weight, bool) or self.weight < 0:
            raise ValueError(f"weight must be a non-negative integer, not {self.weight!r}")
        if (
            not isinstance(self.epoch, int)
            or isinstance(self.epoch, bool)
            or not 0 <= self.epoch <= _MAX_EPOCH
        ):
            raise ValueError(f"epoch must be a non-negative 64-bit integer, not {self.epoch!r}")
        if not isinstance(self.left, bool):
            raise ValueError(f"left must be a bool, not {self.left!r}")

    def rank(self) -> tuple[int, bool, str, int, int, int]:
        """The key merge maximises: epoch first, then a fixed order on the contents.

        At equal epochs the tombstone wins (removal is sticky), then the larger
        address and weight; any two different records of a node rank differently.
        """
        return (self.epoch, self.left, self.host, self.port, self.bus_port, self.weight)

    def supersedes(self, other: Member) -> bool:
        """Whether this record wins a merge against ``other`` (same node)."""
        return self.rank() > other.rank()

    def to_wire(self) -> list[bytes]:
        """The record's :data:`WIRE_FIELDS` fields, as in :meth:`Membership.to_wire`."""
        return [
            self.node_id.encode(),
            self.host.encode(),
            b"%d" % self.port,
            b"%d" % self.bus_port,
            b"%d" % self.weight,
            b"%d" % self.epoch,
            b"1" if self.left else b"0",
        ]

    @classmethod
    def from_wire(cls, fields: Sequence[bytes]) -> Member:
        """Parse :data:`WIRE_FIELDS` fields; ``ValueError`` if they are malformed."""
        if len(fields) != WIRE_FIELDS:
            raise ValueError(f"a member has {WIRE_FIELDS} fields, not {len(fields)}")
        node_id, host, port, bus_port, weight, epoch, left = fields
        if left not in (b"0", b"1"):
            raise ValueError(f"left flag must be 0 or 1, not {left!r}")
        return cls(
            node_id=_ascii(node_id),
            host=_ascii(host),
            port=_wire_int(port),
            bus_port=_wire_int(bus_port),
            weight=_wire_int(weight),
            epoch=_wire_int(epoch),
            left=left == b"1",
        )


def _ascii(value: bytes) -> str:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"expected bytes, not {value!r}")
    try:
        return bytes(value).decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"expected ASCII text, not {bytes(value)!r}") from None


def _wire_int(value: bytes) -> int:
    """A non-negative decimal integer, digits only (no sign, spaces or underscores)."""
    text = _ascii(value)
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"expected a non-negative integer, not {text!r}")
    return int(text)


class Membership:
    """An immutable map from node id to :class:`Member`, tombstones included.

    Iterating yields every record in node id order; :meth:`active` gives the members
    that have not left.  Two memberships are equal when they hold the same records.
    Build one from records with ``Membership(members)``; when the same node appears
    more than once the winning record (as in :meth:`merge`) is kept.
    """

    __slots__ = ("_members", "_version", "_digest", "_wire", "_rings", "_hash")

    def __init__(self, members: Iterable[Member] = ()):
        chosen: dict[str, Member] = {}
        for member in members:
            if not isinstance(member, Member):
                raise TypeError(f"expected a Member, not {member!r}")
            current = chosen.get(member.node_id)
            if current is None or member.supersedes(current):
                chosen[member.node_id] = member
        self._members: dict[str, Member] = dict(sorted(chosen.items()))
        self._version = sum(member.epoch for member in self._members.values())
        self._digest: str | None = None
        self._wire: list[bytes] | None = None
        self._rings: dict[int, Ring] = {}
        self._hash: int | None = None

    # -- the value ---------------------------------------------------------------

    @property
    def members(self) -> Mapping[str, Member]:
        """Read-only ``{node_id: Member}`` of every record, in node id order."""
        return MappingProxyType(self._members)

    @property
    def config_epoch(self) -> int:
        """The cluster-wide version: the sum of every record's epoch."""
        return self._version

    def active(self) -> tuple[Member, ...]:
        """The members that have not left, in node id order."""
        return tuple([member for member in self._members.values() if not member.left])

    def active_ids(self) -> tuple[str, ...]:
        """Node ids of the members that have not left, in order."""
        return tuple([node_id for node_id, member in self._members.items() if not member.left])

    def is_active(self, node_id: str) -> bool:
        """Whether ``node_id`` is a member that has not left."""
        member = self._members.get(node_id)
        return member is not None and not member.left

    def get(self, node_id: str) -> Member | None:
        """The record of ``node_id`` (a tombstone if it left), or None if unknown."""
        return self._members.get(node_id)

    def __getitem__(self, node_id: str) -> Member:
        return self._members[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def __len__(self) -> int:
        return len(self._members)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Membership):
            return NotImplemented
        return self._members == other._members

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._members.values()))
        return self._hash

    def __repr__(self) -> str:
        return f"Membership(version={self._version}, digest={self.digest()}, members={len(self)})"

    # -- changes -----------------------------------------------------------------

    def merge(self, other: Membership) -> Membership:
        """Per node, the record that wins between ``self`` and ``other``.

        Returns ``self`` itself when ``other`` holds nothing newer, so a caller can
        tell "no change" by identity.
        """
        if other is self:
            return self
        newer = [
            member
            for node_id, member in other._members.items()
            if (mine := self._members.get(node_id)) is None or member.supersedes(mine)
        ]
        if not newer:
            return self
        return Membership([*self._members.values(), *newer])

    def with_member(
        self, node_id: str, host: str, port: int, bus_port: int, weight: int = 1
    ) -> Membership:
        """This membership with ``node_id`` at the given address and weight.

        ``self`` when the record already says exactly that; otherwise the record is
        written with an epoch one above the known one (1 for a new node), so it wins
        every merge against what peers have seen.  Re-adding a node that left
        revives it the same way.
        """
        current = self._members.get(node_id)
        if (
            current is not None
            and not current.left
            and (current.host, current.port, current.bus_port, current.weight)
            == (host, port, bus_port, weight)
        ):
            return self
        epoch = current.epoch + 1 if current is not None else 1
        record = Member(node_id, host, port, bus_port, weight, epoch)
        return Membership([*self._members.values(), record])

    def without_member(self, node_id: str) -> Membership:
        """This membership with ``node_id`` marked as left (a tombstone).

        ``KeyError`` if the node is unknown; ``self`` if it already left.
        """
        current = self._members[node_id]
        if current.left:
            return self
        tombstone = Member(
            node_id,
            current.host,
            current.port,
            current.bus_port,
            current.weight,
            current.epoch + 1,
            left=True,
        )
        return Membership([*self._members.values(), tombstone])

    # -- encodings ---------------------------------------------------------------

    def to_wire(self) -> list[bytes]:
        """The canonical encoding: :data:`WIRE_TAG`, then each record's fields.

        Records come in node id order, :data:`WIRE_FIELDS` byte strings each: node
        id, host, port, bus port, weight, epoch, left (``0``/``1``), integers in
        decimal.  A fresh list each call; the fields themselves are shared.
        """
        if self._wire is None:
            wire = [WIRE_TAG]
            for member in self._members.values():
                wire.extend(member.to_wire())
            self._wire = wire
        return list(self._wire)

    @classmethod
    def from_wire(cls, items: Sequence[bytes]) -> Membership:
        """Parse :meth:`to_wire` output; ``ValueError`` if it is malformed.

        A node id appearing twice is malformed: a peer's encoding of its own value
        never repeats one.
        """
        if not items or bytes(items[0]) != WIRE_TAG:
            raise ValueError("not a membership encoding (missing tag)")
        body = items[1:]
        if len(body) % WIRE_FIELDS:
            raise ValueError(f"membership encoding has {len(body)} fields after the tag")
        members = [
            Member.from_wire(body[i : i + WIRE_FIELDS]) for i in range(0, len(body), WIRE_FIELDS)
        ]
        if len({member.node_id for member in members}) != len(members):
            raise ValueError("membership encoding repeats a node id")
        return cls(members)

    def digest(self) -> str:
        """A short, stable hash of the records: 16 hex digits.

        Equal memberships have equal digests on every node and in every process,
        so peers compare digests before shipping whole memberships.
        """
        if self._digest is None:
            hasher = hashlib.blake2b(digest_size=8)
            for field in self.to_wire():
                # Length-prefixing keeps field boundaries unambiguous.
                hasher.update(b"%d:" % len(field))
                hasher.update(field)
            self._digest = hasher.hexdigest()
        return self._digest

    # -- placement ---------------------------------------------------------------

    def ring(self, vnodes: int = DEFAULT_VNODES) -> Ring:
        """The consistent-hash ring of the members that have not left, less those
        of weight 0 (leaving: members that hold no slot, see ``CLUSTER LEAVE``).

        Cached per ``vnodes``: building a ring hashes every token.
        """
        ring = self._rings.get(vnodes)
        if ring is None:
            ring = Ring({member.node_id: member.weight for member in self.active() if member.weight}, vnodes)
            self._rings[vnodes] = ring
        return ring
