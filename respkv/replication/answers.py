"""Callbacks of the coordinator's bus requests: acknowledgements and read answers.

They run in the bus link's reader when an answer (or the loss of the connection)
arrives, so they only merge and report events to the requests' state machines
through the coordinator: a ``REPL`` answer acknowledges the writes it carried (a
failed one fails them, which hints their keys to the peer); an ``RREAD`` answer
merges what differed into the local store and tells each read what the peer
held, and the stale keys of all its reads are repaired with one request.
"""

from __future__ import annotations

import logging

from .pending import ReadRequest, WriteRequest
from .replica import NO_RECORD, SAME
from .versions import decode_record, digest

log = logging.getLogger(__name__)


class ReplAnswer:
    """Callback of one REPL request: acknowledge or fail the writes it carried."""

    __slots__ = ("coordinator", "peer", "waiting", "keys")

    def __init__(self, coordinator, peer: str, waiting: list[WriteRequest], keys: list[bytes]) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.waiting = waiting
        self.keys = keys

    def __call__(self, answer, error) -> None:
        coordinator = self.coordinator
        if error is None:
            if answer:
                # Shipped commands the replica could not run: send those records whole,
                # and count this replica's acknowledgement when they are in.
                coordinator.send_records(self.peer, list(answer), self.waiting)
                return
            for request in self.waiting:
                coordinator.write_acked(request, self.peer)
            return
        log.debug("replication to %s failed: %r", self.peer, error)
        if not self.waiting:  # read repair or hand-off: the keys stay hinted
            coordinator.hint(self.peer, self.keys)
        for request in self.waiting:
            coordinator.write_failed(request, self.peer)


class ReadAnswer:
    """Callback of one RREAD request: merge what differs, report, repair."""

    __slots__ = ("coordinator", "peer", "reads")

    def __init__(self, coordinator, peer: str, reads: list[tuple[ReadRequest, list[bytes], list[bytes]]]) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.reads = reads

    def __call__(self, answer, error) -> None:
        coordinator = self.coordinator
        peer = self.peer
        if error is None:
            total = sum(len(keys) for _, keys, _ in self.reads)
            if len(answer) != total:
                error = ValueError(f"RREAD answered {len(answer)} entries for {total} keys")
        if error is not None:
            log.debug("replica read from %s failed: %r", peer, error)
            for request, _, _ in self.reads:
                coordinator.read_failed(request, peer)
            return
        offset = 0
        repairs: list[bytes] = []
        for request, keys, _ in self.reads:
            answers = answer[offset : offset + len(keys)]
            offset += len(keys)
            try:
                merged_newer, stale = merge_answer(coordinator.store, keys, answers)
            except ValueError as exc:
                log.warning("bad record from %s: %s", peer, exc)
                coordinator.read_failed(request, peer)
                continue
            found = [key for key, held in zip(keys, answers) if held != SAME and held != NO_RECORD]
            coordinator.read_answered(request, peer, found, merged_newer, stale, repairs)
        if repairs:
            coordinator.repair(peer, list(dict.fromkeys(repairs)))


def merge_answer(store, keys: list[bytes], answers: list[bytes]) -> tuple[bool, list[bytes]]:
    """Reconcile a replica's RREAD ``answers`` for ``keys`` into ``store``;
    returns (whether a local record changed, the keys the peer holds stale)."""
    changed = False
    stale: list[bytes] = []
    for key, answer in zip(keys, answers):
        if answer == SAME:
            continue
        if answer == NO_RECORD:
            if store.record(key) is not None:
                stale.append(key)
            continue
        remote = decode_record(answer)
        if store.apply(key, remote):
            changed = True
        if store.digest(key) != digest(remote):
            stale.append(key)
    return changed, stale
