"""Hinted hand-off: how much a pass ships and to whom, when a hint is done, its
bound, and hints in the commit log (logged, replayed, carried by rewrites)."""

from __future__ import annotations

import trio

from respkv.keyspace.store import Keyspace
from respkv.persistence.entries import DELIVERED, HINT, split_entry
from respkv.persistence.journal import Journal
from respkv.replication import handoff as handoff_module
from respkv.replication.handoff import HANDOFF_BATCH, HANDOFF_BATCHES_PER_PASS, HintedHandoff
from respkv.replication.journaled import RecordReplay, record_image
from respkv.replication.replica import REPL
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of

ME = "a" * 40
PEER = "b" * 40
OTHER = "c" * 40


class Ring:
    def __init__(self, preferred: tuple[str, ...]) -> None:
        self.preferred = preferred

    def preference_list(self, slot: int, rf: int) -> tuple[str, ...]:
        return self.preferred


class Topology:
    rf = 3

    def __init__(self, live: bool = True, preferred: tuple[str, ...] = (ME, PEER)) -> None:
        self.live = live
        self.ring = Ring(preferred)

    def is_live(self, peer: str) -> bool:
        return self.live

    def nodes_for(self, slot: int) -> tuple[str, ...]:
        return (PEER, OTHER)


class Record:
    def __init__(self, left: bool) -> None:
        self.left = left


class Members:
    """The part of a Membership the hand-off reads: each node's record (left or not)."""

    def __init__(self) -> None:
        self.left: set[str] = set()

    def get(self, node: str) -> Record:
        return Record(node in self.left)


class State:
    myself = ME

    def __init__(self, live: bool = True, preferred: tuple[str, ...] = (ME, PEER)) -> None:
        self.topology = Topology(live, preferred)
        self.membership = Members()


class Link:
    connected = True

    def __init__(self, backlog: int = 0) -> None:
        self.backlog = backlog


class Bus:
    def __init__(self, link: Link) -> None:
        self.links = {PEER: link, OTHER: link, "d" * 40: link}


class Entries:
    """The part of a Journal the hand-off uses: the entries it appended."""

    def __init__(self) -> None:
        self.entries: list[tuple[bytes, bytes, bytes]] = []
        self.snapshot_extras = None

    def append_entry(self, payload: bytes) -> None:
        self.entries.append(split_entry(payload))


def store_with(keys) -> VersionStore:
    store = VersionStore(Keyspace(), actor_of(ME, 1))
    for key in keys:
        store.keyspace.set(key, b"v")
        store.written(key, 1000)
    return store


def handoff_with(link: Link | None = None, live: bool = True, keys=(), limit: int = 1_000_000,
                 preferred: tuple[str, ...] = (ME, PEER)):
    """A hand-off whose requests are recorded as (peer, op, keys, callback)."""
    sent: list[tuple[str, bytes, list[bytes], object]] = []
    commits: list[int] = []

    def request(peer, op, args, callback):
        sent.append((peer, op, args[0::3], callback))

    store = store_with(keys)
    handoff = HintedHandoff(State(live, preferred), Bus(link or Link()), store, request,
                            {"max-hints-per-node": limit}, lambda: commits.append(1))
    journal = Entries()
    handoff.attach(journal)
    return handoff, sent, journal, store


def test_a_pass_ships_several_batches_and_hints_stay_until_acknowledged():
    keys = [b"k%d" % i for i in range(HANDOFF_BATCH * HANDOFF_BATCHES_PER_PASS + 10)]
    handoff, sent, journal, _ = handoff_with(keys=keys)
    handoff.hint(PEER, keys)
    assert [kind for kind, _, _ in journal.entries] == [HINT] * len(keys)
    handoff.hand_off()
    assert [len(batch) for _, op, batch, _ in sent] == [HANDOFF_BATCH] * HANDOFF_BATCHES_PER_PASS
    assert all(op == REPL for _, op, _, _ in sent)
    assert handoff.pending() == len(keys)  # shipped, not acknowledged
    for _, _, _, callback in sent:
        callback([], None)
    assert handoff.pending() == 10 and handoff.delivered == len(keys) - 10
    delivered = [(key, peer) for kind, key, peer in journal.entries if kind == DELIVERED]
    assert len(delivered) == len(keys) - 10 and {peer for _, peer in delivered} == {PEER.encode()}
    handoff.hand_off()
    sent[-1][3]([], None)
    assert handoff.pending() == 0 and handoff.delivered == len(keys)
    assert handoff.info_fields()[:4] == [("hints_pending", 0), ("hints_stored", len(keys)),
                                         ("hints_delivered", len(keys)), ("hints_dropped", 0)]


def test_nothing_goes_to_a_replica_that_is_down_or_behind():
    handoff, sent, _, _ = handoff_with(live=False, keys=[b"k"])
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    behind, behind_sent, _, _ = handoff_with(Link(backlog=handoff_module.MAX_BACKLOG + 1), keys=[b"k"])
    behind.hint(PEER, [b"k"])
    behind.hand_off()
    assert sent == [] and behind_sent == [] and handoff.pending() == 1 and behind.pending() == 1


def test_a_failed_hand_off_keeps_the_hints_and_ships_them_again():
    handoff, sent, journal, _ = handoff_with(keys=[b"k"])
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    sent[0][3](None, ConnectionError("gone"))
    assert handoff.pending() == 1 and handoff.delivered == 0
    handoff.hand_off()
    assert len(sent) == 2 and sent[1][2] == [b"k"]
    assert [kind for kind, _, _ in journal.entries] == [HINT]


def test_a_key_hinted_again_on_its_way_is_shipped_again_after_its_answer():
    handoff, sent, journal, _ = handoff_with(keys=[b"k"])
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    handoff.hint(PEER, [b"k"])  # written again, and missed by PEER again
    handoff.hand_off()
    assert len(sent) == 1  # not twice on the way at once
    sent[0][3]([], None)
    assert handoff.pending() == 1  # the newer record is still owed
    handoff.hand_off()
    sent[1][3]([], None)
    assert handoff.pending() == 0
    assert [kind for kind, _, _ in journal.entries] == [HINT, DELIVERED]


def test_hints_beyond_the_bound_are_dropped_and_counted():
    handoff, _, journal, _ = handoff_with(keys=[b"a", b"b", b"c"], limit=2)
    handoff.hint(PEER, [b"a", b"b", b"c"])
    handoff.hint(PEER, [b"a"])  # already held: neither stored again nor dropped
    handoff.hint(OTHER, [b"c"])  # the bound is per node
    assert handoff.pending_by_node() == {PEER: 2, OTHER: 1}
    assert (handoff.stored, handoff.dropped) == (3, 1)
    assert ("hints_pending_" + PEER, 2) in handoff.info_fields()
    assert len(journal.entries) == 3


def test_keys_without_a_record_or_no_longer_the_nodes_are_given_up():
    handoff, sent, journal, _ = handoff_with(keys=[b"k"])
    handoff.hint(PEER, [b"k", b"gone"])
    handoff.hint("d" * 40, [b"k"])  # not in the slot's live preference list
    handoff.hand_off()
    assert [(peer, batch) for peer, _, batch, _ in sent] == [(PEER, [b"k"])]
    assert handoff.pending_by_node() == {PEER: 1}
    assert [kind for kind, _, _ in journal.entries] == [HINT, HINT, HINT, DELIVERED, DELIVERED]


def test_hints_for_myself_are_not_kept():
    handoff, _, journal, _ = handoff_with(keys=[b"k"])
    handoff.hint(ME, [b"k"])
    assert handoff.pending() == 0 and journal.entries == []


def test_a_fallback_drops_its_copy_once_every_node_it_stood_in_for_has_it():
    handoff, sent, journal, store = handoff_with(keys=[b"k"], preferred=(PEER, OTHER, "d" * 40))
    handoff.hint(PEER, [b"k"])
    handoff.hint(OTHER, [b"k"])
    handoff.hand_off()
    first = {peer: callback for peer, _, _, callback in sent}
    first[PEER]([], None)
    assert store.record(b"k") is not None  # OTHER still lacks it
    first[OTHER]([], None)
    assert store.record(b"k") is None and store.keyspace.get(b"k") is None


def test_a_preferred_node_keeps_its_copy_after_hand_off():
    handoff, sent, _, store = handoff_with(keys=[b"k"])
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    sent[0][3]([], None)
    assert store.record(b"k") is not None


def test_replaying_the_logged_entries_restores_the_pending_hints():
    handoff, sent, journal, _ = handoff_with(keys=[b"a", b"b"])
    handoff.hint(PEER, [b"a", b"b"])
    handoff.hint(OTHER, [b"a"])
    handoff.hand_off()
    for peer, _, _, callback in sent:
        if peer == PEER:
            callback([], None)  # PEER has a and b now
    handoff.hint(PEER, [b"b"])  # and lacks b again
    restored, _, _, _ = handoff_with()
    for kind, key, body in journal.entries:
        restored.replay(kind, key, body)
    assert restored.hints == handoff.hints == {PEER: {b"b"}, OTHER: {b"a"}}
    from_snapshot, _, _, _ = handoff_with()
    for payload in handoff.snapshot_entries():
        from_snapshot.replay(*split_entry(payload))
    assert from_snapshot.hints == handoff.hints


def test_the_commit_log_and_its_rewrites_keep_the_hints(tmp_path):
    """Hints reach the log at its commit and come back at start, also after a
    rewrite moved them from the old log into the snapshot."""

    def open_node():
        handoff, _, _, store = handoff_with(keys=[b"a", b"b", b"c", b"d"])
        journal = Journal(str(tmp_path), record_image(store))
        journal.load(RecordReplay(store, lambda key: None, handoff.replay))
        journal.open()
        handoff.attach(journal)
        return journal, handoff

    journal, handoff = open_node()
    handoff.hint(PEER, [b"a", b"b"])
    journal.commit()
    journal.close()  # what kill -9 leaves is the written log: the same entries

    journal, handoff = open_node()
    assert handoff.hints == {PEER: {b"a", b"b"}}
    handoff.hint(OTHER, [b"c"])
    handoff.hand_off()  # ships a and b to PEER
    handoff.acknowledged(PEER, [b"a"])  # a arrived; b's answer is still awaited
    journal.commit()

    async def rewrite():
        with trio.fail_after(30):
            await journal.rewrite(lambda: [])

    trio.run(rewrite)
    handoff.hint(OTHER, [b"d"])  # after the rewrite: in the new log
    journal.close()
    assert journal.manifest.snapshot is not None and len(journal.manifest.logs) == 1

    _, handoff = open_node()
    assert handoff.hints == {PEER: {b"b"}, OTHER: {b"c", b"d"}}


def test_hints_for_a_node_that_left_go_to_the_nodes_now_preferred():
    """CLUSTER FORGET: the hints for the forgotten node become hints for the other
    preferred nodes of each key; this fallback keeps its copy until they have it."""
    gone = "d" * 40
    handoff, sent, journal, store = handoff_with(keys=[b"k", b"j"], preferred=(PEER, OTHER))
    handoff.hint(gone, [b"k", b"j"])
    handoff.state.membership.left.add(gone)
    handoff.state.topology.ring = Ring((PEER, OTHER))  # the ring rebuilt without it
    before_redirect = list(journal.entries)
    journal.entries.clear()
    handoff.hand_off()
    # A restart replays the log: after the redirect's entries (logged in one
    # commit), the same hints; without them (killed first), the old ones, which
    # the next pass redirects again.
    restored, _, _, _ = handoff_with()
    for kind, logged_key, body in before_redirect + journal.entries:
        restored.replay(kind, logged_key, body)
    assert restored.pending_by_node() == {OTHER: 2, PEER: 2} and restored.hints[PEER] == {b"k", b"j"}
    crashed, _, _, _ = handoff_with()
    for kind, logged_key, body in before_redirect:
        crashed.replay(kind, logged_key, body)
    assert crashed.pending_by_node() == {gone: 2}
    assert handoff.pending_by_node() == {OTHER: 2, PEER: 2}
    assert sorted((kind, peer) for kind, _, peer in journal.entries) == (
        [(DELIVERED, gone.encode())] * 2 + [(HINT, PEER.encode())] * 2 + [(HINT, OTHER.encode())] * 2)
    assert {peer for peer, _, _, _ in sent} == {PEER, OTHER}
    assert store.record(b"k") is not None  # nobody has acknowledged yet
    for peer, _, _, callback in sent:
        callback([], None)
    assert handoff.pending() == 0
    assert store.record(b"k") is None  # not a preferred node: its copy goes once both have it
