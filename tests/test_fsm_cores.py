"""The pure get/put state machines, as tables: events in, actions out.

Each row is a sequence of events and the actions each one returns.  Events:
``start``, ``ack X`` / ``fail X`` (put), ``ans X [found=k,..] [newer] [stale=k,..]``
/ ``fail X`` (get), ``timeout``.  The coordinator is ``me``; peers are ``b``, ``c``,
``d``.
"""

from __future__ import annotations

import pytest

from respkv.replication.get_core import ASK, REPAIR, GetCore
from respkv.replication.get_core import FAIL as GET_FAIL
from respkv.replication.get_core import REPLY as GET_REPLY
from respkv.replication.put_core import FAIL, FULL, HINT, REPLY, SEND, SEND_HINTED, PutCore


def drive_put(core: PutCore, events: list[str]) -> list[list[tuple]]:
    out = []
    for event in events:
        word, _, who = event.partition(" ")
        if word == "start":
            out.append(list(core.start()))
        elif word == "ack":
            out.append(list(core.acked(who)))
        elif word == "fail":
            out.append(list(core.failed(who)))
        elif word == "timeout":
            out.append(list(core.timed_out()))
        else:
            raise AssertionError(event)
    return out


PUT_TABLE = [
    # (w, peers, down, events, expected actions per event)
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(REPLY,)], [(FULL,)]], id="w2-of-3-all-ack"),
    pytest.param(1, ("b", "c"), (), ["start", "ack me", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [(REPLY,)], [], [(FULL,)]], id="w1-replies-on-local-write"),
    pytest.param(3, ("b", "c"), (), ["start", "ack me", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [], [(REPLY,), (FULL,)]], id="w3-needs-everyone"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "fail b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(HINT, "b")], [(REPLY,)]], id="one-failure-still-reaches-w"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "fail b", "fail c", "timeout"],
                 [[(SEND, "b"), (SEND, "c")], [], [(HINT, "b")], [(HINT, "c"), (FAIL, 1, 2)], []],
                 id="all-peers-fail-misses-w"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "timeout", "ack b"],
                 [[(SEND, "b"), (SEND, "c")], [], [(FAIL, 1, 2)], []], id="timeout-misses-w-late-ack-ignored-for-reply"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "ack b", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(REPLY,)], [], [(FULL,)]], id="duplicate-ack-counts-once"),
    pytest.param(3, ("b", "c"), (), ["start", "ack me", "ack b", "ack b", "timeout"],
                 [[(SEND, "b"), (SEND, "c")], [], [], [], [(FAIL, 2, 3)]], id="duplicate-ack-does-not-make-w"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "ack x", "fail x", "timeout"],
                 [[(SEND, "b"), (SEND, "c")], [], [], [], [(FAIL, 1, 2)]], id="answers-from-strangers-ignored"),
    pytest.param(2, ("b",), ("c",), ["start", "ack me", "ack b"],
                 [[(SEND, "b"), (HINT, "c")], [], [(REPLY,)]], id="down-preferred-node-hinted-never-full"),
    pytest.param(3, ("b",), ("c",), ["start", "ack me"],
                 [[(SEND, "b"), (HINT, "c")], [(FAIL, 1, 3)]], id="w-above-live-set-fails-at-once"),
    pytest.param(2, (), ("b", "c"), ["start", "ack me"],
                 [[(HINT, "b"), (HINT, "c")], [(FAIL, 1, 2)]], id="alone-below-w"),
    pytest.param(1, (), (), ["start", "ack me"], [[], [(REPLY,), (FULL,)]], id="rf1-alone"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "fail b", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(HINT, "b")], [(REPLY,)], [(FULL,)]],
                 id="late-success-after-failure-counts"),
    pytest.param(2, ("b", "c"), (), ["start", "ack me", "ack b", "fail b", "fail c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(REPLY,)], [], [(HINT, "c")]], id="failure-after-ack-ignored"),
    # The local copy counts once the commit log has it: acknowledged after peers,
    # or failed (the log could not be written; no hint for itself).
    pytest.param(2, ("b", "c"), (), ["start", "ack b", "ack me", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [(REPLY,)], [(FULL,)]], id="local-commit-after-a-peer"),
    pytest.param(2, ("b", "c"), (), ["start", "fail me", "ack b", "ack c"],
                 [[(SEND, "b"), (SEND, "c")], [], [], [(REPLY,)]], id="local-log-failed-peers-make-w"),
    pytest.param(2, ("b",), (), ["start", "fail me", "ack b"],
                 [[(SEND, "b")], [(FAIL, 0, 2)], []], id="local-log-failed-w-out-of-reach"),
    pytest.param(1, ("b", "c"), (), ["start", "fail me", "ack me", "ack b"],
                 [[(SEND, "b"), (SEND, "c")], [], [(REPLY,)], []], id="local-failure-then-ack-is-a-late-success"),
]


@pytest.mark.parametrize(("w", "peers", "down", "events", "expected"), PUT_TABLE)
def test_put_core(w, peers, down, events, expected):
    assert drive_put(PutCore(w, "me", peers, down), events) == expected


# Sloppy quorum: (w, peers, down, fallbacks as (fallback, down node), events, expected).
# Fallbacks are ``f``, ``g``; their acknowledgements count towards W, a failed one
# hints the node it stood in for, and a write with a down node is never FULL.
SLOPPY_PUT_TABLE = [
    pytest.param(2, (), ("b", "c"), (("f", "b"), ("g", "c")), ["start", "ack me", "ack f", "ack g"],
                 [[(SEND_HINTED, "f", "b"), (SEND_HINTED, "g", "c")], [], [(REPLY,)], []],
                 id="two-down-two-fallbacks-make-w"),
    pytest.param(2, ("b",), ("c",), (("f", "c"),), ["start", "ack me", "ack f", "ack b"],
                 [[(SEND, "b"), (SEND_HINTED, "f", "c")], [], [(REPLY,)], []],
                 id="fallback-ack-counts-before-a-preferred-one"),
    pytest.param(2, (), ("b", "c"), (("f", "b"),), ["start", "ack me", "ack f"],
                 [[(SEND_HINTED, "f", "b"), (HINT, "c")], [], [(REPLY,)]],
                 id="a-down-node-without-fallback-is-hinted"),
    pytest.param(2, (), ("b", "c"), (("f", "b"), ("g", "c")), ["start", "ack me", "fail f", "fail g"],
                 [[(SEND_HINTED, "f", "b"), (SEND_HINTED, "g", "c")], [], [(HINT, "b")], [(HINT, "c"), (FAIL, 1, 2)]],
                 id="failed-fallbacks-hint-the-nodes-they-stood-in-for"),
    pytest.param(3, (), ("b", "c"), (("f", "b"), ("g", "c")), ["start", "ack me", "ack f", "ack f", "timeout"],
                 [[(SEND_HINTED, "f", "b"), (SEND_HINTED, "g", "c")], [], [], [], [(FAIL, 2, 3)]],
                 id="duplicate-fallback-ack-counts-once"),
    pytest.param(2, (), ("b", "c"), (("f", "b"),), ["start", "ack me", "ack g", "ack b", "timeout"],
                 [[(SEND_HINTED, "f", "b"), (HINT, "c")], [], [], [], [(FAIL, 1, 2)]],
                 id="acks-from-nodes-not-asked-ignored"),
    pytest.param(2, (), ("b", "c"), (), ["start", "ack me"],
                 [[(HINT, "b"), (HINT, "c")], [(FAIL, 1, 2)]], id="strict-alone-below-w"),
]


@pytest.mark.parametrize(("w", "peers", "down", "fallbacks", "events", "expected"), SLOPPY_PUT_TABLE)
def test_put_core_with_fallbacks(w, peers, down, fallbacks, events, expected):
    assert drive_put(PutCore(w, "me", peers, down, fallbacks), events) == expected


def drive_get(core: GetCore, events: list[str]) -> list[list[tuple]]:
    out = []
    for event in events:
        word, *rest = event.split()
        if word == "start":
            out.append(list(core.start()))
        elif word == "ans":
            peer, options = rest[0], rest[1:]
            found: list[bytes] = []
            stale: list[bytes] = []
            newer = False
            for option in options:
                if option == "newer":
                    newer = True
                elif option.startswith("found="):
                    found = [k.encode() for k in option[6:].split(",")]
                elif option.startswith("stale="):
                    stale = [k.encode() for k in option[6:].split(",")]
                else:
                    raise AssertionError(option)
            out.append(list(core.answer(peer, found, newer, stale)))
        elif word == "fail":
            out.append(list(core.failed(rest[0])))
        elif word == "timeout":
            out.append(list(core.timed_out()))
        else:
            raise AssertionError(event)
    return out


ASK_BC = [(ASK, "b"), (ASK, "c")]

GET_TABLE = [
    # (r, peers, keys not held here, events, expected actions per event)
    pytest.param(2, ("b", "c"), (), ["start", "ans b", "ans c"], [ASK_BC, [(GET_REPLY, False)], []], id="r2-same-versions"),
    pytest.param(1, ("b", "c"), (), ["start", "ans b"], [[*ASK_BC, (GET_REPLY, False)], []], id="r1-answers-at-once"),
    pytest.param(2, ("b", "c"), (), ["start", "ans b newer stale=k"],
                 [ASK_BC, [(REPAIR, "b", (b"k",)), (GET_REPLY, True)]], id="stale-replica-newer-version-reruns"),
    pytest.param(2, ("b", "c"), (), ["start", "ans b", "ans c stale=k"],
                 [ASK_BC, [(GET_REPLY, False)], [(REPAIR, "c", (b"k",))]], id="late-stale-answer-still-repaired"),
    pytest.param(2, ("b", "c"), ("k",), ["start", "ans b", "ans c found=k newer"],
                 [ASK_BC, [], [(GET_REPLY, True)]], id="not-found-never-outweighs-found"),
    pytest.param(2, ("b", "c"), ("k",), ["start", "ans b", "ans c"],
                 [ASK_BC, [], [(GET_REPLY, False)]], id="nobody-has-it-after-everyone-answered"),
    pytest.param(2, ("b", "c"), ("k",), ["start", "ans b", "timeout"],
                 [ASK_BC, [], [(GET_REPLY, False)]], id="timeout-settles-not-found-with-r"),
    pytest.param(2, ("b", "c"), ("k",), ["start", "ans b", "fail c"],
                 [ASK_BC, [], [(GET_REPLY, False)]], id="last-peer-fails-settles-not-found"),
    pytest.param(2, ("b", "c"), ("k",), ["start", "ans b found=k newer"],
                 [ASK_BC, [(GET_REPLY, True)]], id="found-by-first-answer"),
    pytest.param(2, ("b", "c"), ("k", "j"), ["start", "ans b found=k newer", "ans c found=j newer"],
                 [ASK_BC, [], [(GET_REPLY, True)]], id="two-keys-found-on-different-replicas"),
    pytest.param(2, ("b", "c"), (), ["start", "fail b", "fail c"], [ASK_BC, [], [(GET_FAIL, 1, 2)]], id="all-fail"),
    pytest.param(2, ("b", "c"), (), ["start", "timeout", "ans b"], [ASK_BC, [(GET_FAIL, 1, 2)], []], id="timeout-below-r"),
    pytest.param(3, ("b", "c"), (), ["start", "ans b", "ans b", "timeout"],
                 [ASK_BC, [], [], [(GET_FAIL, 2, 3)]], id="duplicate-answer-counts-once"),
    pytest.param(2, ("b", "c"), (), ["start", "ans x", "fail x", "ans b"],
                 [ASK_BC, [], [], [(GET_REPLY, False)]], id="answers-from-strangers-ignored"),
    pytest.param(3, ("b",), (), ["start"], [[(ASK, "b"), (GET_FAIL, 1, 3)]], id="r-above-live-set-fails-at-once"),
    pytest.param(2, (), (), ["start"], [[(GET_FAIL, 1, 2)]], id="alone-below-r"),
    pytest.param(2, ("b", "c"), (), ["start", "fail b", "ans c newer stale=k", "ans b"],
                 [ASK_BC, [], [(REPAIR, "c", (b"k",)), (GET_REPLY, True)], []], id="answer-after-own-failure-ignored"),
    pytest.param(2, ("b", "c", "d"), ("k",), ["start", "ans b", "ans c", "ans d found=k newer"],
                 [[*ASK_BC, (ASK, "d")], [], [], [(GET_REPLY, True)]], id="tombstone-or-value-found-last"),
]


@pytest.mark.parametrize(("r", "peers", "unfound", "events", "expected"), GET_TABLE)
def test_get_core(r, peers, unfound, events, expected):
    core = GetCore(r, peers, {k.encode() for k in unfound})
    assert drive_get(core, events) == expected


def test_put_core_decides_once():
    core = PutCore(2, "me", ("b", "c"))
    core.start()
    core.acked("me")
    assert core.acked("b") == ((REPLY,),)
    assert core.decided == REPLY
    assert core.timed_out() == ()


def test_get_core_decides_once():
    core = GetCore(2, ("b", "c"))
    core.start()
    assert core.answer("b") == ((GET_REPLY, False),)
    assert core.timed_out() == () and core.failed("c") == ()
