"""Read barriers: reads that run inside a wrapper honour R too.

A plain read is answered here and checked against R-1 replicas afterwards (the
coordinator's read path).  A command that runs other commands — ``EXEC`` today, a
script later — cannot be answered and then run again, so before it runs, the keys
its queued reads will read are checked against the replicas first, and whatever
they hold that this node lacks is merged in (:func:`read_barrier`).  The wrapper
then runs at once, with nothing in between, on that merged state.  If the read
quorum is missed, the transaction is discarded and answers ``-NOQUORUM``.
"""

from __future__ import annotations

import trio

from ..commands.keyspecs import request_keys
from ..commands.transactions import discard
from ..keyspace.slots import key_slot
from .get_core import FAIL
from .pending import ReadRequest


class _BarrierWait:
    """Where the barrier's reads put their replies: counts them down, wakes the barrier."""

    __slots__ = ("pending", "event", "payload")

    def __init__(self) -> None:
        self.pending = 0
        self.event = trio.Event()
        self.payload: bytes | None = None  # set once every read is decided

    def fill(self, payload: bytes) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.payload = b""
            self.event.set()


async def exec_after_reads(coordinator, session, spec, args, keys: list[bytes]):
    """``EXEC`` once the transaction's reads of ``keys`` passed :func:`read_barrier`."""
    missed = await read_barrier(coordinator, session, keys)
    if missed is not None:
        discard(session, [b"DISCARD"])  # a transaction runs whole or not at all
        return missed
    return coordinator.execute(session, spec, args, reads_merged=True)


async def read_barrier(coordinator, session, keys: list[bytes]) -> bytes | None:
    """Merge into this node what R replicas hold of ``keys``, before a wrapper
    (``EXEC``) runs commands that read them here.

    Returns None once every key's read quorum was met (or R is 1), else the
    ``-NOQUORUM`` reply of a read that missed it.  Replicas found stale are
    repaired as after any read.
    """
    q = coordinator.quorums(session)
    if q.r <= 1:
        return None
    by_peers: dict[tuple[tuple[str, ...], tuple[str, ...]], list[bytes]] = {}
    for key in dict.fromkeys(keys):
        peers, _, extra = coordinator.placement(key_slot(key))
        by_peers.setdefault((peers, extra), []).append(key)
    wait = _BarrierWait()
    reads: list[tuple[ReadRequest, bytes | None]] = []
    for (peers, extra), group in by_peers.items():
        request = coordinator.read_request(session, b"", q.r, peers, group, None, (), extra)
        reads.append((request, coordinator.begin_read(request)))
    for request, decided in reads:
        if decided is None:
            wait.pending += 1
            coordinator.watch(request, wait)
    if wait.pending:
        coordinator.flush()
        await wait.event.wait()  # the coordinator decides each read by its timeout
    for request, decided in reads:
        if request.core.decided is FAIL:
            core = request.core
            return request.failure(core.answered, core.r)
    return None


def transaction_reads(session) -> list[bytes]:
    """The keys the commands queued in ``session``'s transaction read, if its EXEC
    will run them (no errors while queuing, no WATCHed key changed)."""
    queued = session.multi
    if not queued or session.multi_dirty or session.watch_dirty:
        return []
    keys: list[bytes] = []
    for spec, args in queued:
        if spec.is_readonly and (spec.first_key > 0 or spec.movable_keys):
            keys.extend(request_keys(spec, args))
    return keys


