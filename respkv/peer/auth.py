"""Peer authentication on the cluster bus: a challenge-response over a shared secret.

Theory of operation
-------------------
Every member of a cluster holds the same *cluster secret* (``cluster-secret`` or
``cluster-secret-file``; ``respkv cluster up`` generates one for its nodes).  A bus
connection serves nothing until both ends have proved that they know it, and the
secret itself never crosses the wire.  The handshake is three frames:

1. the dialer sends ``HELLO <dialer id> <dialer nonce>``;
2. the acceptor answers ``HELLO <acceptor id> <acceptor nonce> <acceptor proof>``;
3. the dialer, having checked that proof, sends ``PROOF <dialer proof>``.

A proof is ``HMAC-SHA256(secret, role | dialer id | acceptor id | dialer nonce |
acceptor nonce)``: it names both node ids (so nobody can claim another id with a
proof made for a different pair), both fresh 32-byte nonces (so a recorded
handshake cannot be replayed), and which side made it (so one side's proof can
never be reflected back as the other's).  Nodes with different secrets compute
different proofs and refuse each other; the side that notices logs what to do.

What it does not do: frames after the handshake are neither encrypted nor signed,
so the bus assumes a network where nobody sits between the nodes (as Redis
Cluster's bus does); it stops strangers who merely connect to a bus port.

Everything here is pure: values in, values out; :mod:`respkv.peer.bus` does the I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Bytes of randomness in each side's challenge.
NONCE_SIZE = 32
#: Who made a proof; part of what is signed.
DIALER = b"respkv-bus-dialer"
ACCEPTOR = b"respkv-bus-acceptor"
#: What the side that found a mismatch tells the operator.
MISMATCH_HINT = (
    "the peer does not know this cluster's secret: give every node the same "
    "cluster-secret (or cluster-secret-file)"
)


class AuthenticationFailed(Exception):
    """A peer's proof did not match: it does not know the cluster secret."""


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def valid_nonce(nonce: bytes) -> bool:
    return len(nonce) == NONCE_SIZE


def proof(secret: bytes, role: bytes, dialer_id: str, acceptor_id: str, dialer_nonce: bytes, acceptor_nonce: bytes) -> bytes:
    """The hex HMAC that shows ``role``'s side of one handshake knows ``secret``."""
    message = b"\n".join([role, dialer_id.encode(), acceptor_id.encode(), dialer_nonce, acceptor_nonce])
    return hmac.new(secret, message, hashlib.sha256).hexdigest().encode()


def check(expected: bytes, offered: bytes) -> None:
    """Raise :class:`AuthenticationFailed` unless ``offered`` equals ``expected``
    (compared in constant time)."""
    if not hmac.compare_digest(expected, offered):
        raise AuthenticationFailed(MISMATCH_HINT)
