"""The dispatcher: the fast path composed once per table and topology, and the
one scan that bounds a run of pipelined requests."""

from __future__ import annotations

from respkv.cluster.failure import NodeState
from respkv.cluster.routing import NOTHING_SERVED
from respkv.keyspace.slots import key_slot
from respkv.net.dispatch import Dispatcher, run_extent

from .test_routing import N2, TABLE, three_member_state


class FakeNode:
    def __init__(self, cluster=None, replication=None) -> None:
        self.table = TABLE
        self.cluster = cluster
        self.replication = replication


def keys_by_service(state):
    keys = [b"k%d" % i for i in range(400)]
    mine = [k for k in keys if state.served[key_slot(k)]]
    other = [k for k in keys if not state.served[key_slot(k)]]
    return mine, other


def test_standalone_fast_path_is_the_plain_table_with_its_runs():
    path = Dispatcher(FakeNode()).fast_path()
    assert path.specs is TABLE.plain_specs and path.served is None
    assert path.runs[b"get"] is TABLE.specs["get"].run_handler


def test_the_fast_path_is_built_once_per_topology():
    state = three_member_state()
    dispatcher = Dispatcher(FakeNode(state))
    path = dispatcher.fast_path()
    assert dispatcher.fast_path() is path
    assert b"mget" not in path.specs and path.specs[b"GET"] is path.specs[b"get"]
    assert path.served is state.served
    state.set_states({N2: NodeState.FAIL})  # a new topology, and the cluster is down
    down = dispatcher.fast_path()
    assert down is not path and down.served is NOTHING_SERVED


def test_run_extent_stops_at_a_key_served_elsewhere_or_a_malformed_request():
    state = three_member_state()
    mine, other = keys_by_service(state)
    batch = [[b"PING"], [b"GET", mine[0]], [b"GET", mine[1]], [b"GET", other[0]], [b"GET", mine[2]]]
    assert run_extent(batch, 1, 1, state.served) == (3, None)
    assert run_extent(batch, 3, 1, state.served) == (3, None)  # the first is not served: empty
    malformed = [[b"GET", mine[0]], [b"GET", 5], [b"GET", mine[1]]]
    assert run_extent(malformed, 0, 1, state.served)[0] == 1
    short = [[b"GET", mine[0]], [b"GET"], "junk"]
    assert run_extent(short, 0, 1, state.served)[0] == 1
    other_command = [[b"GET", mine[0]], [b"SET", mine[1], b"v"]]
    assert run_extent(other_command, 0, 1, state.served)[0] == 1


def test_run_extent_keeps_one_placement():
    state = three_member_state()
    mine, _ = keys_by_service(state)
    batch = [[b"GET", k] for k in mine[:6]]
    group = {key_slot(k): ("A" if n < 3 else "B") for n, k in enumerate(mine[:6])}
    end, first = run_extent(batch, 0, 1, state.served, group.__getitem__)
    assert (end, first) == (3, "A")


def test_bounded_runs_hand_over_only_their_run_and_leave_runs_of_one():
    state = three_member_state()
    mine, other = keys_by_service(state)
    calls = []

    def original(s, batch, i, out):
        calls.append((len(batch), i))
        while i < len(batch) and batch[i][0] == b"GET":
            out.append(b"+" + batch[i][1] + b"\r\n")
            i += 1
        return i

    original.__name__ = "get_run"
    table = TABLE
    spec = table.specs["get"]
    node = FakeNode(state)
    from respkv.net import dispatch

    run = dispatch.bounded_run(original, spec.first_key, state.served)
    batch = [[b"PING"], [b"GET", mine[0]], [b"GET", mine[1]], [b"GET", other[0]], [b"GET", mine[2]]]
    out: list[bytes] = []
    assert run(node, batch, 1, out) == 3
    assert out == [b"+" + mine[0] + b"\r\n", b"+" + mine[1] + b"\r\n"]
    assert calls == [(2, 0)]  # only the run was handed over
    tail = [[b"GET", other[0]], [b"GET", mine[0]], [b"GET", mine[1]]]
    assert run(node, tail, 1, out) == 3  # a run to the end of the batch: no copy
    assert calls[-1] == (3, 1)
    calls.clear()
    assert run(node, batch, 4, out) == 4  # runs of one go to the per-request gate
    assert run(node, [[b"GET", mine[0]], [b"GET", other[0]]], 0, out) == 0
    assert calls == []
