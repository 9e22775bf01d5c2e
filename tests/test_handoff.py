"""Hinted hand-off passes: how much one pass ships, and to whom."""

from __future__ import annotations

from respkv.replication import handoff as handoff_module
from respkv.replication.handoff import HANDOFF_BATCH, HANDOFF_BATCHES_PER_PASS, HintedHandoff

PEER = "b" * 40


class Topology:
    def __init__(self, live: bool = True) -> None:
        self.live = live

    def is_live(self, peer: str) -> bool:
        return self.live

    def nodes_for(self, slot: int) -> tuple[str, ...]:
        return (PEER,)


class State:
    def __init__(self, live: bool = True) -> None:
        self.topology = Topology(live)


class Link:
    connected = True

    def __init__(self, backlog: int = 0) -> None:
        self.backlog = backlog


class Bus:
    def __init__(self, link: Link) -> None:
        self.links = {PEER: link}


def handoff_with(link: Link, live: bool = True):
    sent: list[list[bytes]] = []

    def send_records(peer, keys):
        sent.append(list(keys))
        return len(keys)

    return HintedHandoff(State(live), Bus(link), send_records), sent


def test_a_pass_ships_several_batches_to_a_returning_replica():
    handoff, sent = handoff_with(Link())
    total = HANDOFF_BATCH * HANDOFF_BATCHES_PER_PASS + 10
    handoff.hint(PEER, [b"k%d" % i for i in range(total)])
    handoff.hand_off()
    assert [len(batch) for batch in sent] == [HANDOFF_BATCH] * HANDOFF_BATCHES_PER_PASS
    assert handoff.pending() == 10
    handoff.hand_off()
    assert handoff.pending() == 0 and handoff.delivered == total


def test_nothing_goes_to_a_replica_that_is_down_or_behind():
    handoff, sent = handoff_with(Link(), live=False)
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    handoff, behind = handoff_with(Link(backlog=handoff_module.MAX_BACKLOG + 1))
    handoff.hint(PEER, [b"k"])
    handoff.hand_off()
    assert sent == [] and behind == [] and handoff.pending() == 1
