"""The get state machine: when a replicated read may answer, and what to repair.

Theory of operation
-------------------
A read's coordinator computes the reply from its own copy at once, then asks the
other live nodes of the slot's preference list for digests of what they hold of
the request's keys.  A replica holding something else sends its record back; the
coordinator merges it into its own store (that is the store's business, by
clock) and tells this machine what the answer amounted to.  :class:`GetCore`
decides from those events alone, and returns **actions** the coordinator
performs (riak_kv's ``get_fsm``/``get_core`` split):

========================  ===========================================================
action                    the coordinator ...
========================  ===========================================================
``(ASK, peer)``           sends ``peer`` the digest check of the keys
``(REPAIR, peer, keys)``  ships the merged records of ``keys`` to a stale ``peer``
                          (read repair, in the background: the client never waits)
``(REPLY, rerun)``        answers the client; ``rerun``: an answer merged newer
                          versions, so the command runs again on the merged state
``(FAIL, answered, r)``   answers ``-NOQUORUM``
========================  ===========================================================

Rules:

* R answers (the coordinator's own copy is the first) make a quorum.
* **Not found never outweighs found.**  While some key has been found by nobody
  yet — not here, not in any answer — the read waits for every node it asked,
  even past R, since one still to answer may hold it (a replica that lost its
  data must not make an acknowledged key read as nil).  Only the timeout, or the
  last answer, settles such a key as not found (Riak's ``notfound_ok`` off).
* Tombstones and siblings are versions like any other: the merge decides what
  the client sees; a key whose only version is a tombstone is *found* (deleted).
* A node answers once: a duplicate answer, or one from a node never asked,
  changes nothing.  Answers after the reply still lead to read repair.
* **Former holders** (``extra``): while the ring moves a slot, the nodes that
  still hold keys of it outside its preference list (:mod:`.ownership`) are asked
  too when the coordinator lacks one of the keys read.  Their records are merged
  and what they found counts as found, so a key nobody else holds yet waits for
  them; but their answers never count towards R, which only the slot's own
  replicas make (a former holder knows nothing of the writes made since the ring
  changed).  A read of keys the coordinator holds is decided by the slot's own
  replicas alone (a former holder's answer could not hold its reply back
  anyway), so it does not cost them a request: during a move most reads are
  such reads, and asking every former holder too cost clients about a third of
  their read throughput.

Nothing here does I/O.
"""

from __future__ import annotations

ASK = "ask"
REPAIR = "repair"
REPLY = "reply"
FAIL = "fail"

NOTHING: tuple = ()


class GetCore:
    """The quorum state of one replicated read of ``keys`` (see the module doc).

    ``unfound`` are the keys this node holds no version of; ``peers`` the live
    nodes asked besides the coordinator; ``extra`` the former holders, asked too
    when ``unfound`` is not empty, whose answers do not count towards R.
    """

    __slots__ = ("r", "peers", "extra", "unfound", "answered_by", "failed_by", "extra_heard", "rerun", "decided")

    def __init__(self, r: int, peers: tuple[str, ...], unfound: set[bytes] | frozenset = frozenset(),
                 extra: tuple[str, ...] = ()) -> None:
        self.r = r
        self.peers = peers
        self.extra = extra if unfound else ()
        #: Former holders that answered or failed.
        self.extra_heard: set[str] = set()
        self.unfound = set(unfound)
        self.answered_by: set[str] = set()
        self.failed_by: set[str] = set()
        #: Some answer merged versions newer than the coordinator's.
        self.rerun = False
        #: REPLY or FAIL once the client's answer is decided, else None.
        self.decided: str | None = None

    @property
    def answered(self) -> int:
        """Answers so far, the coordinator's own copy included."""
        return 1 + len(self.answered_by)

    def start(self) -> list[tuple]:
        """Ask every live peer; a read nobody else can answer is decided at once."""
        actions: list[tuple] = [(ASK, peer) for peer in self.peers]
        actions.extend((ASK, peer) for peer in self.extra)
        actions.extend(self._decide(final=False))
        return actions

    def answer(self, peer: str, found: list[bytes] | tuple = (), merged_newer: bool = False,
               stale: list[bytes] | tuple = ()) -> tuple:
        """``peer`` answered: it held versions of ``found``; merging its records
        changed the coordinator's (``merged_newer``); it lacks the merged
        versions of ``stale``."""
        if peer in self.extra:
            if peer in self.extra_heard:
                return NOTHING
            self.extra_heard.add(peer)
        elif peer not in self.peers or peer in self.answered_by or peer in self.failed_by:
            return NOTHING
        else:
            self.answered_by.add(peer)
        if found and self.unfound:
            self.unfound.difference_update(found)
        if merged_newer:
            self.rerun = True
        decided = self._decide(final=False)
        if stale and peer not in self.extra:  # a former holder is not repaired: it gives keys away
            return ((REPAIR, peer, tuple(stale)),) + decided
        return decided

    def failed(self, peer: str) -> tuple:
        """``peer`` could not answer (connection lost, error, bad record)."""
        if peer in self.extra:
            if peer in self.extra_heard:
                return NOTHING
            self.extra_heard.add(peer)
            return self._decide(final=False)
        if peer not in self.peers or peer in self.answered_by or peer in self.failed_by:
            return NOTHING
        self.failed_by.add(peer)
        return self._decide(final=False)

    def timed_out(self) -> tuple:
        """The request timeout passed: decide with the answers there are."""
        return self._decide(final=True)

    @property
    def asked(self) -> int:
        return 1 + len(self.peers)

    def _decide(self, final: bool) -> tuple:
        if self.decided is not None:
            return NOTHING
        answered = self.answered
        heard = answered + len(self.failed_by) + len(self.extra_heard)
        if answered >= self.r:
            if self.unfound and not final and heard < self.asked + len(self.extra):
                return NOTHING  # someone still to answer may hold a key nobody had
            self.decided = REPLY
            return ((REPLY, self.rerun),)
        if final or self.asked - len(self.failed_by) < self.r:
            self.decided = FAIL
            return ((FAIL, answered, self.r),)
        return NOTHING
