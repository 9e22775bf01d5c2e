"""The put state machine: when a replicated write is done, and what to do meanwhile.

Theory of operation
-------------------
A write's coordinator applies it locally, then ships it to the other live nodes
of the slot's preference list and answers the client once W of them (its own copy
included) acknowledged.  :class:`PutCore` holds what that decision needs — W, the
live peers asked, the preferred nodes that are down, who acknowledged and who
failed — and turns each event into **actions** for the coordinator, which only
performs them (riak_kv splits ``put_fsm`` and its core the same way):

=====================  ==========================================================
action                 the coordinator ...
=====================  ==========================================================
``(SEND, peer)``       ships the write's records to ``peer``
``(HINT, peer)``       remembers the write's keys for ``peer`` (hinted hand-off)
``(REPLY,)``           answers the client: W acknowledged
``(FAIL, acked, w)``   answers ``-NOQUORUM``: W can no longer be (or was not) met
``(FULL,)``            every node of the preference list has the write
=====================  ==========================================================

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
    not.
    """

    __slots__ = ("w", "myself", "peers", "down", "acked_by", "failed_by", "decided")

    def __init__(self, w: int, myself: str, peers: tuple[str, ...], down: tuple[str, ...] = ()) -> None:
        self.w = w
        self.myself = myself
        self.peers = peers
        self.down = down
        self.acked_by: set[str] = set()
        self.failed_by: set[str] = set()
        #: REPLY or FAIL once the client's answer is decided, else None.
        self.decided: str | None = None

    @property
    def asked(self) -> int:
        """Nodes that hold or were sent the write: the coordinator and its peers."""
        return 1 + len(self.peers)

    def start(self) -> list[tuple]:
        """Ship to every live peer, hint every preferred node that is down."""
        actions: list[tuple] = [(SEND, peer) for peer in self.peers]
        actions.extend((HINT, peer) for peer in self.down)
        return actions  # decided from the first acknowledgement on (the local one)

    def acked(self, node: str) -> tuple:
        """``node`` has the write."""
        if node in self.acked_by or (node != self.myself and node not in self.peers):
            return NOTHING
        self.failed_by.discard(node)  # a late success after a failure still landed
        self.acked_by.add(node)
        return self._decide()

    def failed(self, node: str) -> tuple:
        """``node`` did not take the write (connection lost, error, backlog; for
        the coordinator itself: its commit log failed)."""
        if node in self.acked_by or node in self.failed_by or (node != self.myself and node not in self.peers):
            return NOTHING
        self.failed_by.add(node)
        if node == self.myself:
            return self._decide()
        return ((HINT, node),) + self._decide()

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
