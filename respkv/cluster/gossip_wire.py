"""The wire formats of gossip messages (see :mod:`.gossip` for the protocol).

Flat lists of byte strings, the arguments of a bus frame::

    body  = digest, n, suspect_1 .. suspect_n, [members/1, member fields...]
    PING  = member fields of the sender (7), body            -> body
    MEET  = member fields of the sender (7), vnodes          -> body (with members)

Every decoder raises ``ValueError`` on malformed input.  Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .membership import WIRE_FIELDS, Member, Membership, is_node_id

_DIGEST_LENGTH = 16
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class GossipBody:
    """What every ping, pong and MEET answer carries about the sender's view."""

    digest: str
    suspects: tuple[str, ...]
    membership: Membership | None


def encode_body(digest: str, suspected: Sequence[str], membership: Membership | None) -> list[bytes]:
    """The body fields: digest, suspect count and ids, then maybe the membership."""
    fields = [digest.encode(), b"%d" % len(suspected)]
    fields.extend(node_id.encode() for node_id in suspected)
    if membership is not None:
        fields.extend(membership.to_wire())
    return fields


def decode_body(fields: Sequence[bytes]) -> GossipBody:
    """Parse :func:`encode_body` output; ``ValueError`` if malformed."""
    if len(fields) < 2:
        raise ValueError("gossip body needs a digest and a suspect count")
    digest = _text(fields[0])
    if len(digest) != _DIGEST_LENGTH or not _HEX.issuperset(digest):
        raise ValueError(f"bad membership digest {digest!r}")
    count_text = _text(fields[1])
    if not count_text.isdigit() or int(count_text) > len(fields) - 2:
        raise ValueError(f"bad suspect count {count_text!r}")
    count = int(count_text)
    suspected = tuple(_text(field) for field in fields[2 : 2 + count])
    for node_id in suspected:
        if not is_node_id(node_id):
            raise ValueError(f"bad suspect id {node_id!r}")
    rest = fields[2 + count :]
    return GossipBody(digest, suspected, Membership.from_wire(rest) if rest else None)


def encode_ping(record: Member, body: list[bytes]) -> list[bytes]:
    """PING arguments: the sender's own record, then its gossip body."""
    return record.to_wire() + body


def decode_ping(fields: Sequence[bytes]) -> tuple[Member, GossipBody]:
    """``(sender's record, body)`` of PING arguments; ``ValueError`` if malformed."""
    return Member.from_wire(fields[:WIRE_FIELDS]), decode_body(fields[WIRE_FIELDS:])


def encode_meet(record: Member, vnodes: int) -> list[bytes]:
    """MEET arguments: the sender's own record and its ``cluster-vnodes``."""
    return record.to_wire() + [b"%d" % vnodes]


def decode_meet(fields: Sequence[bytes]) -> tuple[Member, int]:
    """``(sender's record, vnodes)`` of MEET arguments; ``ValueError`` if malformed."""
    if len(fields) != WIRE_FIELDS + 1:
        raise ValueError(f"MEET has {WIRE_FIELDS + 1} arguments, not {len(fields)}")
    vnodes = _text(fields[WIRE_FIELDS])
    if not vnodes.isdigit():
        raise ValueError(f"bad vnodes {vnodes!r}")
    return Member.from_wire(fields[:WIRE_FIELDS]), int(vnodes)


def _text(field: bytes) -> str:
    try:
        return bytes(field).decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"expected ASCII, not {bytes(field)!r}") from None
