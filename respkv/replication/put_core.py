"""The put state machine: when a replicated write is done, and what to do meanwhile.

Theory of operation
-------------------
A write's coordinator applies it locally, then ships it to the other live nodes
of the slot's preference list and answers the client once W of them (its own copy
included) acknowledged.  With a **sloppy quorum** (Dynamo §4.6) each preferred node
that is down may have a **fallback** — a live node beyond the preference list,
chosen by the ring (:meth:`Ring.fallbacks <respkv.cluster.ring.Ring.fallbacks>`) —
that takes the write with a durable hint naming the node it stands in for, and
whose acknowledgement counts towards W.  :class:`PutCore` holds what that decision
needs — W, the live peers asked, the preferred nodes that are down, the fallbacks,
who acknowledged and who failed — and turns each event into **actions** for the
coordinator, which only performs them (riak_kv splits ``put_fsm`` and its core the
same way):

===========================  ====================================================
action                       the coordinator ...
===========================  ====================================================
``(SEND, peer)``             ships the write's records to ``peer``
``(SEND_HINTED, fb, node)``  ships them to fallback ``fb``, to keep for ``node``
``(HINT, peer)``             remembers the write's keys for ``peer`` (hand-off)
``(REPLY,)``                 answers the client: W acknowledged
``(FAIL, acked, w)``         answers ``-NOQUORUM``: W can no longer be (or was not) met
``(FULL,)``                  every node of the preference list has the write
===========================  ====================================================

A down node without a fallback (strict quorum, or too few live nodes beyond the
list) is hinted at once; a fallback that fails gets no hint itself — the node it
stood in for does.

Events: :meth:`PutCore.start`, :meth:`PutCore.acked` and :meth:`PutCore.failed`
(per peer), :meth:`PutCore.timed_out`.  An answer from a node that already
answered, or that was never asked, changes nothing: a duplicate acknowledgement
must not count twice towards W.  A node that failed gets a hint; its late success
still counts (the data did land).  A write that missed W is *not* undone — the
versions stay where they landed, as in Dynamo — but the client is told it failed.
``FULL`` comes only when no preferred node was down: it is what makes a tombstone
safe to purge.  Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

SEND = "send"
SEND_HINTED = "send-hinted"
HINT = "hint"
REPLY = "reply"
FAIL = "fail"
FULL = "full"

NOTHING: tuple = ()
_REPLIED = ((REPLY,),)
_FULL = ((FULL,),)
_REPLIED_AND_FULL = ((REPLY,), (FULL,))


class PutCore:
    """The quorum state of one replicated write (see the module doc).

    ``myself`` is the coordinator: the caller reports its local copy with
    ``acked(myself)`` once it is in the commit log, or ``failed(myself)`` if the
    log could not be written (the local copy then does not count, and gets no
    hint); ``peers`` the live nodes asked; ``down`` the preferred nodes that are
    not; ``fallbacks`` ``(fallback, down node)`` pairs, at most one per down node
    (none: a strict quorum).
    """

    __slots__ = ("w", "myself", "peers", "down", "stand_ins", "acked_by", "failed_by", "decided")

    def __init__(self, w: int, myself: str, peers: tuple[str, ...], down: tuple[str, ...] = (),
                 fallbacks: tuple[tuple[str, str], ...] = ()) -> None:
        self.w = w
        self.myself = myself
        self.peers = peers
        self.down = down
        #: fallback → the down node it stands in for.
        self.stand_ins: dict[str, str] = dict(fallbacks)
        self.acked_by: set[str] = set()
        self.failed_by: set[str] = set()
        #: REPLY or FAIL once the client's answer is decided, else None.
        self.decided: str | None = None

    @property
    def asked(self) -> int:
        """Nodes that hold or were sent the write: the coordinator, its peers and fallbacks."""
        return 1 + len(self.peers) + len(self.stand_ins)

    def _asked(self, node: str) -> bool:
        return node == self.myself or node in self.peers or node in self.stand_ins

    def start(self) -> list[tuple]:
        """Ship to every live peer and fallback, hint every down node without a fallback."""
        actions: list[tuple] = [(SEND, peer) for peer in self.peers]
        covered = {node: fallback for fallback, node in self.stand_ins.items()}
        for node in self.down:
            fallback = covered.get(node)
            actions.append((HINT, node) if fallback is None else (SEND_HINTED, fallback, node))
        return actions  # decided from the first acknowledgement on (the local one)

    def acked(self, node: str) -> tuple:
        """``node`` has the write."""
        if node in self.acked_by or not self._asked(node):
            return NOTHING
        self.failed_by.discard(node)  # a late success after a failure still landed
        self.acked_by.add(node)
        return self._decide()

    def failed(self, node: str) -> tuple:
        """``node`` did not take the write (connection lost, error, backlog; for
        the coordinator itself: its commit log failed)."""
        if node in self.acked_by or node in self.failed_by or not self._asked(node):
            return NOTHING
        self.failed_by.add(node)
        if node == self.myself:
            return self._decide()
        return ((HINT, self.stand_ins.get(node, node)),) + self._decide()

    def timed_out(self) -> tuple:
        """The request timeout passed: a write still undecided missed W."""
        if self.decided is not None:
            return NOTHING
        self.decided = FAIL
        return ((FAIL, len(self.acked_by), self.w),)

    def _decide(self) -> tuple:
        acked = len(self.acked_by)
        full = acked == self.asked and not self.down
        if self.decided is None:
            if acked >= self.w:
                self.decided = REPLY
                return _REPLIED_AND_FULL if full else _REPLIED
            if self.asked - len(self.failed_by) < self.w:
                self.decided = FAIL
                return ((FAIL, acked, self.w),)
            return NOTHING
        return _FULL if full else NOTHING
