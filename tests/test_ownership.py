"""The pure parts of the ownership hand-off (:mod:`respkv.replication.ownership`)
and of reads that ask former holders too (:class:`~respkv.replication.get_core.GetCore`
with ``extra`` peers).

Real moves (joins, decommissions, ``redis-cli --cluster add-node``/``del-node``)
under load are in ``tests/test_moves_e2e.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from respkv.keyspace.slots import SLOT_COUNT
from respkv.replication import get_core
from respkv.replication.get_core import GetCore
from respkv.replication.ownership import Handover, SlotHolders, held_slots

ME, A, B, C = "me", "a", "b", "c"


# -- which slots a node gives away ------------------------------------------------------


def test_held_slots_are_those_with_keys_outside_their_preference_lists():
    lists = [(ME, A)] * SLOT_COUNT
    lists[5] = (A, B)  # moved away, holds keys: held
    lists[6] = (A, B)  # moved away, holds nothing: not held
    lists[7] = (B, ME)  # still a replica (not the first): not held
    counts = {5: 3, 7: 2, 100: 4}
    assert held_slots(lambda slot: counts.get(slot, 0), lists, ME) == [5]


def test_a_leaving_node_holds_every_slot_it_has_keys_of():
    lists = [(A, B)] * SLOT_COUNT
    assert held_slots(lambda slot: 1 if slot % 1000 == 0 else 0, lists, ME) == list(range(0, SLOT_COUNT, 1000))


# -- the former holders a coordinator reads too ------------------------------------------


def test_holders_announce_replace_and_withdraw():
    holders = SlotHolders()
    assert holders.of(3) == () and holders.nodes() == []
    assert holders.announce(B, [3, 4], epoch=7)
    assert holders.announce(A, [4], epoch=2)
    assert holders.of(4) == (A, B) and holders.of(3) == (B,)
    version = holders.version
    assert not holders.announce(A, [4], epoch=2)  # the same again: nothing changes
    assert holders.version == version
    assert holders.announce(B, [5], epoch=7)  # replaces what B held
    assert holders.of(3) == () and holders.of(5) == (B,)
    assert holders.announce(B, [], epoch=8)
    assert holders.nodes() == [A] and not holders.holds_any(B) and holders.holds_any(A)


def test_drained_needs_an_empty_announcement_made_at_the_leaving_epoch():
    holders = SlotHolders()
    assert not holders.drained(B, 3)  # never heard of
    holders.announce(B, [], epoch=2)  # empty, but before its record reached epoch 3
    assert not holders.drained(B, 3)
    holders.announce(B, [9], epoch=3)
    assert not holders.drained(B, 3)  # still holds slot 9
    holders.announce(B, [], epoch=3)
    assert holders.drained(B, 3) and holders.drained(B, 2) and not holders.drained(B, 4)


# -- reads: former holders are asked, never counted towards R -------------------------------


def kinds(actions):
    return [action[0] for action in actions]


def test_a_key_only_a_former_holder_has_waits_for_it():
    core = GetCore(2, (A, B), unfound={b"k"}, extra=(C,))
    assert sorted(action[1] for action in core.start()) == [A, B, C]
    assert core.answer(A) == ()  # R met, but nobody found k yet: wait
    assert core.answer(B) == ()
    assert kinds(core.answer(C, found=[b"k"], merged_newer=True)) == [get_core.REPLY]
    assert core.rerun


def test_a_read_of_keys_the_coordinator_holds_asks_no_former_holder():
    core = GetCore(2, (A, B), unfound=set(), extra=(C,))
    assert sorted(action[1] for action in core.start()) == [A, B]
    assert core.answer(C, found=[b"k"], merged_newer=True) == ()  # never asked: ignored
    assert kinds(core.answer(A)) == [get_core.REPLY] and not core.rerun


def test_a_former_holders_answer_does_not_make_the_quorum():
    core = GetCore(3, (A, B), unfound={b"k"}, extra=(C,))
    core.start()
    assert core.answer(C, found=[b"k"]) == ()
    assert core.answer(A) == ()  # local + A = 2 < R
    assert kinds(core.answer(B)) == [get_core.REPLY]


def test_a_failed_former_holder_settles_an_unfound_key_as_not_found():
    core = GetCore(2, (A,), unfound={b"k"}, extra=(C,))
    core.start()
    assert core.answer(A) == ()
    assert core.failed(C) == ((get_core.REPLY, False),)


def test_a_stale_former_holder_is_not_repaired_and_answers_once():
    core = GetCore(2, (A,), unfound={b"k", b"j"}, extra=(C,))
    core.start()
    assert core.answer(C, found=[b"j"], stale=[b"k"]) == ()
    assert core.answer(C, found=[b"k"]) == ()
    decided = core.answer(A, found=[b"k"], stale=[b"j"])
    assert decided[0] == (get_core.REPAIR, A, (b"j",)) and decided[1][0] == get_core.REPLY


def test_holders_do_not_rescue_a_missed_quorum():
    core = GetCore(2, (A,), unfound={b"k"}, extra=(C,))
    core.start()
    core.answer(C, found=[b"k"])
    assert kinds(core.failed(A)) == [get_core.FAIL]


# -- what a hand-over confirms ------------------------------------------------------------


@pytest.fixture
def handover():
    owner = SimpleNamespace(stats={}, store=None, trees=None)
    return Handover(owner, B, [1, 2], {}, lambda: 1000.0)


def test_a_slot_found_equal_confirms_its_keys_while_its_sum_is_unchanged(handover):
    handover.equal_slots[1] = 0xABC
    assert handover.confirms(1, 0xABC, b"k", 5)
    assert not handover.confirms(1, 0xABD, b"k", 5)  # written here since: keep it
    assert not handover.confirms(2, 0xABC, b"k", 5)


def test_a_key_is_confirmed_in_the_version_listed_or_pushed(handover):
    handover.confirmed[b"k"] = 5
    assert handover.confirms(2, 0, b"k", 5)
    assert not handover.confirms(2, 0, b"k", 6)  # changed here since
    assert not handover.confirms(2, 0, b"other", 5)
