"""Callbacks of the coordinator's bus requests: acknowledgements and read answers.

They run in the bus link's reader when an answer (or the loss of the connection)
arrives, so they only count, merge and queue: a ``REPL`` answer acknowledges the
write placeholders it carried (or hints their keys to the peer when it failed); an
``RREAD`` answer merges what differed into the local store, marks the keys found,
counts towards each read's quorum and queues read repair for the peer.
"""

from __future__ import annotations

import logging

from .pending import Deferred
from .replica import NO_RECORD, SAME

log = logging.getLogger(__name__)


class ReplAnswer:
    """Callback of one REPL request: count acks, hint the keys of a failed one."""

    __slots__ = ("coordinator", "peer", "waiting", "keys")

    def __init__(self, coordinator, peer: str, waiting: list[Deferred], keys: list[bytes]) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.waiting = waiting
        self.keys = keys

    def __call__(self, answer, error) -> None:
        if error is None:
            if answer:
                # Shipped commands the replica could not run: send those records whole,
                # and count this replica's acknowledgement when they are in.
                self.coordinator.send_records(self.peer, list(answer), self.waiting)
                return
            for deferred in self.waiting:
                deferred.ack()
            return
        log.debug("replication to %s failed: %r", self.peer, error)
        self.coordinator.hint(self.peer, self.keys)
        for deferred in self.waiting:
            deferred.fail()


class ReadAnswer:
    """Callback of one RREAD request: merge what differs, count answers, repair."""

    __slots__ = ("coordinator", "peer", "reads")

    def __init__(self, coordinator, peer: str, reads) -> None:
        self.coordinator = coordinator
        self.peer = peer
        self.reads = reads

    def __call__(self, answer, error) -> None:
        if error is None:
            total = sum(len(keys) for _, keys, _ in self.reads)
            if len(answer) != total:
                error = ValueError(f"RREAD answered {len(answer)} entries for {total} keys")
        if error is not None:
            log.debug("replica read from %s failed: %r", self.peer, error)
            for deferred, _, _ in self.reads:
                deferred.fail()
            return
        coordinator = self.coordinator
        offset = 0
        stale: list[bytes] = []
        for deferred, keys, _ in self.reads:
            answers = answer[offset : offset + len(keys)]
            offset += len(keys)
            try:
                changed, lacking = coordinator.merge_answer(keys, answers)
            except ValueError as exc:
                log.warning("bad record from %s: %s", self.peer, exc)
                deferred.fail()
                continue
            if changed:
                deferred.changed = True
            if deferred.unfound:
                deferred.found([key for key, held in zip(keys, answers) if held != SAME and held != NO_RECORD])
            stale.extend(lacking)
            deferred.ack()
        if stale:
            coordinator.repair(self.peer, stale)
