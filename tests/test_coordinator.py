"""The replication coordinator over a scripted bus: writes, reads, repair, hints.

A node with a hand-made three-member view coordinates its slots; its peers are
fake links that record every request and answer it the way a test says (at once,
with an error, never, or by a real replica store).  Sessions run requests through
``_run_all`` exactly as the poller makes them, and the coordinator is flushed as the
poller flushes it at the end of a round.  The tests run inside trio (sessions read
its clock) but never wait: answers arrive through the callbacks
``PeerLink.request_nowait`` would call.
"""

from __future__ import annotations

import socket
import tempfile

import pytest
import trio
import trio.testing

from respkv.cluster.membership import Member, Membership
from respkv.cluster.state import ClusterState
from respkv.config import Config
from respkv.keyspace.slots import key_slot
from respkv.keyspace.store import Keyspace
from respkv.net.replies import ReplySlot, joined
from respkv.net.session import ClientSession
from respkv.node import Node, start_replication
from respkv.peer.bus import PeerUnavailable
from respkv.replication import coordinator as coordinator_module
from respkv.replication.coordinator import REPL, RREAD
from respkv.replication.replica import PURGE, ReplicaSide
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of
from respkv.replication.versions import is_operation

ME, B, C = "a" * 40, "b" * 40, "c" * 40


class FakeLink:
    """A peer link that records requests; ``answer(op, args)`` decides the reply."""

    def __init__(self, peer: str, answer) -> None:
        self.peer = peer
        self.answer = answer
        self.connected = True
        self.backlog = 0
        self.sent: list[tuple[bytes, list[bytes]]] = []
        #: The callback of every request, for answering one later.
        self.callbacks: list = []

    def request_nowait(self, op, args, callback) -> bool:
        if args.__class__ is not list:  # pre-encoded REPL records: decode them back
            from respkv.peer import wire

            (frame,) = wire.new_reader().parse(wire.encode(wire.REQUEST, 1, op, args))
            args = wire.split(frame)[3]
        self.sent.append((op, args))
        self.callbacks.append(callback)
        result = self.answer(op, args)
        if result is not None:
            if isinstance(result, Exception):
                callback(None, result)
            else:
                callback(result, None)
        return True

    def notify(self, op, args) -> bool:
        self.sent.append((op, list(args)))
        return True


class FakeBus:
    def __init__(self) -> None:
        self.links: dict[str, FakeLink] = {}


def ack(op, args):
    return []


def unlogged_cluster_config() -> Config:
    """A cluster node's config with the commit log off (these tests are about
    replication; tests/test_durability_cluster.py covers the log), in a directory
    of its own (the node writes its incarnation there)."""
    return Config(**{"cluster-enabled": True, "appendonly": False, "dir": tempfile.mkdtemp(prefix="respkv-coord-")})


def coordinating_node():
    """(node, session, bus, client socket): a node coordinating some slots of a
    3-member ring, over a scripted bus, with one session whose replies can be read
    from the client end of its socket."""
    node = Node(unlogged_cluster_config())
    state = ClusterState(Member(ME, "127.0.0.1", 7000, 17000), rf=3)
    state.merge(Membership([Member(B, "127.0.0.1", 7001, 17001), Member(C, "127.0.0.1", 7002, 17002)]))
    node.cluster = state
    bus = FakeBus()
    bus.links = {B: FakeLink(B, ack), C: FakeLink(C, ack)}
    start_replication(node, state, bus)
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)
    session = ClientSession(node, server_end, 1, "127.0.0.1:1", "127.0.0.1:2")
    return node, session, bus, client_end


@pytest.fixture
async def cluster():
    """(node, session, bus): see :func:`coordinating_node`."""
    node, session, bus, client_end = coordinating_node()
    yield node, session, bus
    session.sock.close()
    client_end.close()


def my_keys(node, count: int, prefix: str = "k") -> list[bytes]:
    keys = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}{i}".encode()
        if node.cluster.topology.coordinator(key_slot(key)) == ME:
            keys.append(key)
        i += 1
    return keys


def run(node, session, *requests) -> list:
    """Run a pipeline; flush as the poller does; the replies, settled or not."""
    out: list = []
    session._run_all([list(r) for r in requests], 0, out)
    node.replication.flush()
    waiting, session.waiting = session.waiting, None
    if waiting is not None and waiting.pending:
        return out  # still waiting: the test looks at the placeholders
    return [joined(out)]


async def test_a_pipeline_of_writes_is_one_request_per_peer_and_waits_for_w(cluster):
    node, session, bus = cluster
    keys = my_keys(node, 5)
    counter = my_keys(node, 1, prefix="counter")[0]
    replies = run(node, session, *[(b"SET", k, b"v") for k in keys], (b"INCR", counter))
    assert b"".join(replies) == b"+OK\r\n" * 5 + b":1\r\n"
    for peer in (B, C):
        (request,) = bus.links[peer].sent  # the SET run and the INCR share one REPL
        op, args = request
        assert op == REPL
        assert args[0::3] == [*keys, counter] and all(parent == b"" for parent in args[1::3])


async def test_writes_wait_until_w_acks_and_then_answer(cluster):
    node, session, bus = cluster
    pending = []
    bus.links[B].answer = bus.links[C].answer = lambda op, args: pending.append(op)  # never answer
    (key,) = my_keys(node, 1)
    out = run(node, session, (b"SET", key, b"v"))
    assert len(out) == 1 and out[0].__class__ is ReplySlot and out[0].payload is None
    queue = out[0].queue
    bus.links[B].callbacks[0]([], None)  # one replica acknowledges: W=2 reached
    assert out[0].payload == b"+OK\r\n" and queue.pending == 0
    bus.links[B].callbacks[0]([], None)  # the same answer again changes nothing
    assert joined(out) == b"+OK\r\n"


async def test_below_w_the_reply_is_noquorum_and_the_peers_get_hints(cluster):
    node, session, bus = cluster
    bus.links[B].answer = bus.links[C].answer = lambda op, args: PeerUnavailable("down")
    keys = my_keys(node, 3)
    replies = run(node, session, *[(b"SET", k, b"v") for k in keys])
    assert b"".join(replies) == b"-NOQUORUM write quorum not reached: 1 of 2 required replicas acknowledged\r\n" * 3
    assert node.replication.handoff.hints == {B: set(keys), C: set(keys)}
    assert node.keyspace.get(keys[0]) == b"v"  # not undone, as in Dynamo
    assert node.replication.stats["write_quorum_missed"] == 1


async def test_w1_answers_at_once_and_still_replicates(cluster):
    node, session, bus = cluster
    session.consistency = (2, 1)
    bus.links[B].answer = bus.links[C].answer = lambda op, args: None  # answers later
    (key,) = my_keys(node, 1)
    assert run(node, session, (b"SET", key, b"v")) == [b"+OK\r\n"]
    assert [op for op, _ in bus.links[B].sent] == [REPL]


async def test_a_peer_far_behind_gets_hints_instead_of_more_data(cluster):
    node, session, bus = cluster
    bus.links[C].backlog = coordinator_module.MAX_BACKLOG + 1
    (key,) = my_keys(node, 1)
    assert run(node, session, (b"SET", key, b"v")) == [b"+OK\r\n"]  # B and this node: W=2
    assert bus.links[C].sent == []
    assert node.replication.handoff.hints == {C: {key}}


def replica_answering(store: VersionStore):
    """A link answer that behaves like a real replica's store."""
    replica = ReplicaSide(Node(Config(), store.keyspace), store)  # a node without a log

    def answer(op, args):
        return replica.handle(B, op, args)

    return answer


async def test_a_read_merges_a_newer_replica_version_and_repairs_the_stale_one(cluster):
    node, session, bus = cluster
    (key,) = my_keys(node, 1)
    assert run(node, session, (b"SET", key, b"old")) == [b"+OK\r\n"]
    # Replica B then gets a newer version this node never saw (written elsewhere).
    b_store = VersionStore(Keyspace(), actor_of(B))
    b_store.keyspace.set(key, b"new")
    b_store.written(key, node.keyspace.clock_ms() + 10)
    bus.links[B].answer = replica_answering(b_store)
    c_store = VersionStore(Keyspace(), actor_of(C))  # C holds nothing
    bus.links[C].answer = replica_answering(c_store)
    bus.links[B].sent.clear()
    bus.links[C].sent.clear()

    replies = run(node, session, (b"GET", key), (b"GET", key))
    assert replies == [b"$3\r\nnew\r\n$3\r\nnew\r\n"]  # one placeholder for the run, run again
    assert bus.links[B].sent[0][0] == RREAD
    # The two versions were concurrent: this node now holds both, as siblings.
    assert len(node.replication.store.record(key)) == 2
    # Both replicas lacked something: each was sent the merged record.
    assert [op for op, _ in bus.links[C].sent] == [RREAD, REPL]
    assert [op for op, _ in bus.links[B].sent] == [RREAD, REPL]
    assert len(c_store.record(key)) == 2 and len(b_store.record(key)) == 2
    assert node.replication.stats["read_repairs"] == 2


@pytest.mark.parametrize("held_here", [None, b"old"], ids=["absent-here", "older-here"])
async def test_a_read_answers_what_arrived_here_while_it_waited(cluster, held_here):
    """The reply is computed from this node's copy when the read begins; if the
    copy changes before the replicas answer (a hint handed off, an anti-entropy
    pull), a replica sending that same record merges nothing new, yet the reply
    must be run again: answering the first one would read an acknowledged key as
    nil (or as its older value).  Found in the fault suite's partition cycles."""
    node, session, bus = cluster
    (key,) = my_keys(node, 1)
    if held_here is not None:
        assert run(node, session, (b"SET", key, held_here)) == [b"+OK\r\n"]
    b_store = VersionStore(Keyspace(), actor_of(B))
    if held_here is not None:
        b_store.apply(key, node.replication.store.full_record(key))
    b_store.keyspace.set(key, b"new")
    b_store.written(key, node.keyspace.clock_ms() + 10)  # written through B while this node was away
    b_replica, c_replica = replica_answering(b_store), replica_answering(VersionStore(Keyspace(), actor_of(C)))
    bus.links[B].answer = bus.links[C].answer = lambda op, args: None  # they answer later
    bus.links[B].callbacks.clear()
    bus.links[C].callbacks.clear()
    out = run(node, session, (b"GET", key))
    assert len(out) == 1 and out[0].payload is None
    # B's record reaches this node before B's answer does (B's hand-off, say).
    assert node.replication.store.apply(key, b_store.full_record(key))
    rread_b, rread_c = bus.links[B].sent[-1], bus.links[C].sent[-1]
    bus.links[B].callbacks[-1](b_replica(*rread_b), None)
    bus.links[C].callbacks[-1](c_replica(*rread_c), None)
    assert out[0].payload == b"$3\r\nnew\r\n"


async def test_reads_with_r1_ask_nobody(cluster):
    node, session, bus = cluster
    session.consistency = (1, 2)
    (key,) = my_keys(node, 1)
    run(node, session, (b"SET", key, b"v"))
    bus.links[B].sent.clear()
    assert run(node, session, (b"GET", key)) == [b"$1\r\nv\r\n"]
    assert bus.links[B].sent == []


async def test_a_deleted_key_becomes_a_tombstone_purged_after_every_replica_acked(cluster):
    node, session, bus = cluster
    node.config.set_text("tombstone-grace", "0")
    (key,) = my_keys(node, 1)
    run(node, session, (b"SET", key, b"v"))
    assert run(node, session, (b"DEL", key)) == [b":1\r\n"]
    (tomb,) = node.replication.store.record(key)
    assert tomb.tombstone
    node.replication.forgetting.purge_due(node.keyspace.clock_ms() + 1)
    assert node.replication.store.record(key) is None
    assert [op for op, _ in bus.links[B].sent][-1] == PURGE


def replica_node(node_id: str) -> Node:
    """Another member with the same three-member view, as a replica answering REPLs."""
    node = Node(unlogged_cluster_config())
    state = ClusterState(Member(node_id, "127.0.0.1", 7001, 17001), rf=3)
    state.merge(Membership([Member(ME, "127.0.0.1", 7000, 17000), Member(C if node_id == B else B, "127.0.0.1", 7002, 17002)]))
    node.cluster = state
    start_replication(node, state, FakeBus())
    return node


async def test_pushes_onto_a_collection_ship_the_command_not_the_value(cluster):
    node, session, bus = cluster
    replica = replica_node(B)
    bus.links[B].answer = lambda op, args: replica.replication.handle(ME, op, args)
    (key,) = my_keys(node, 1, prefix="list")
    assert run(node, session, (b"RPUSH", key, *[b"x%d" % i for i in range(1000)])) == [b":1000\r\n"]
    assert is_operation(bus.links[B].sent[-1][1][2])  # a new key: both run it on nothing
    assert run(node, session, (b"LPUSH", key, b"head")) == [b":1001\r\n"]
    op, args = bus.links[B].sent[-1]
    assert op == REPL and is_operation(args[2]) and len(args[2]) < 200  # the command, not 1001 elements
    assert list(replica.keyspace.get(key)) == list(node.keyspace.get(key))
    assert replica.replication.store.record(key)[0].clock == node.replication.store.record(key)[0].clock
    assert run(node, session, (b"LPOP", key)) == [b"$4\r\nhead\r\n"]
    assert list(replica.keyspace.get(key)) == list(node.keyspace.get(key))


async def test_moves_and_pops_ship_the_replayable_commands_they_amount_to(cluster):
    """LMOVE, SMOVE, SPOP, LMPOP and a blocking pop served at once change each key
    as a replayable command would; that command is shipped, not the collection.
    A key changed twice by one command, or also another way, ships its record."""
    node, session, bus = cluster
    replica = replica_node(B)
    bus.links[B].answer = lambda op, args: replica.replication.handle(ME, op, args)
    src, dst, s1, s2 = my_keys(node, 4, prefix="{m}")
    run(node, session, (b"RPUSH", src, *[b"x%d" % i for i in range(1000)]))
    run(node, session, (b"RPUSH", dst, b"d"))
    run(node, session, (b"SADD", s1, *[b"m%d" % i for i in range(1000)]))
    run(node, session, (b"SADD", s2, b"n"))

    def shipped() -> dict[bytes, bool]:
        """key -> shipped as a command, of the last request; replicas agree."""
        op, args = bus.links[B].sent[-1]
        assert op == REPL
        for key in (src, dst, s1, s2):
            mine, theirs = node.keyspace.get(key), replica.keyspace.get(key)
            assert (sorted(mine) if mine is not None else None) == (sorted(theirs) if theirs is not None else None)
        return {key: is_operation(blob) for key, blob in zip(args[0::3], args[2::3])}

    assert run(node, session, (b"LMOVE", src, dst, b"LEFT", b"RIGHT")) == [b"$2\r\nx0\r\n"]
    assert shipped() == {dst: True, src: True}
    assert run(node, session, (b"SMOVE", s1, s2, b"m1")) == [b":1\r\n"]
    assert shipped() == {s1: True, s2: True}
    run(node, session, (b"SPOP", s1, b"3"))
    assert shipped() == {s1: True}
    run(node, session, (b"LMPOP", b"1", src, b"RIGHT", b"COUNT", b"2"))
    assert shipped() == {src: True}
    assert run(node, session, (b"BLPOP", src, b"0")) == [b"*2\r\n$%d\r\n%s\r\n$2\r\nx1\r\n" % (len(src), src)]
    assert shipped() == {src: True}
    run(node, session, (b"LMOVE", src, src, b"LEFT", b"RIGHT"))  # popped and pushed: one key, twice
    assert shipped() == {src: False}
    run(node, session, (b"MULTI",), (b"SPOP", s1), (b"SADD", s1, b"new"), (b"EXEC",))
    assert shipped() == {s1: False}


async def test_a_replica_without_the_prior_version_gets_the_whole_record(cluster):
    node, session, bus = cluster
    replica = replica_node(B)
    bus.links[B].answer = lambda op, args: replica.replication.handle(ME, op, args)
    (key,) = my_keys(node, 1, prefix="set")
    run(node, session, (b"SADD", key, b"a", b"b"))
    replica.replication.store.clear()  # B lost its copy (a restart, say)
    replica.keyspace.flush()
    bus.links[B].sent.clear()
    assert run(node, session, (b"SADD", key, b"c")) == [b":1\r\n"]
    (first, second) = bus.links[B].sent
    assert is_operation(first[1][2])
    assert second[1][0] == key and not is_operation(second[1][2])  # the record, resent whole
    assert sorted(replica.keyspace.get(key)) == [b"a", b"b", b"c"]


async def test_commands_with_expiring_values_ship_the_value(cluster):
    node, session, bus = cluster
    (key,) = my_keys(node, 1, prefix="h")
    run(node, session, (b"HSET", key, b"f", b"v"))
    run(node, session, (b"PEXPIRE", key, b"100000"))
    run(node, session, (b"HSET", key, b"g", b"w"))
    assert not is_operation(bus.links[B].sent[-1][1][2])


async def test_a_transaction_is_versioned_and_shipped_as_values(cluster):
    node, session, bus = cluster
    a, b = my_keys(node, 2, prefix="{t}")
    replies = run(node, session, (b"MULTI",), (b"SET", a, b"1"), (b"RPUSH", b, b"x"), (b"EXEC",))
    assert b"".join(replies) == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n"
    (request,) = bus.links[B].sent
    op, args = request
    assert op == REPL and args[0::3] == [a, b]
    assert not any(is_operation(blob) for blob in args[2::3])  # EXEC ships values


async def test_a_push_that_serves_a_blocked_client_ships_the_result(cluster):
    node, session, bus = cluster
    (key,) = my_keys(node, 1, prefix="q")
    run(node, session, (b"RPUSH", key, b"a"))
    run(node, session, (b"LPOP", key))
    waiter_sock, other = socket.socketpair()
    waiter = ClientSession(node, waiter_sock, 2, "127.0.0.1:3", "127.0.0.1:2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.blocking.wait, waiter, node.table.lookup(b"BLPOP").handler.core(waiter, [b"BLPOP", key, b"0"]))
        await trio.testing.wait_all_tasks_blocked()
        assert run(node, session, (b"RPUSH", key, b"b", b"c")) == [b":2\r\n"]
        op, args = bus.links[B].sent[-1]
        assert not is_operation(args[2])  # RPUSH alone would leave "b" on the replicas
        assert node.keyspace.get(key) is not None and list(node.keyspace.get(key)) == [b"c"]
    waiter_sock.close()
    other.close()


class _TaskSteps(trio.abc.Instrument):
    """Counts the steps of tasks whose name ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0

    def before_task_step(self, task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


async def test_the_timeout_task_sleeps_while_nothing_waits_and_still_times_out(cluster, autojump_clock):
    """An idle coordinator's timeout task does not wake every tick (it used to, 100
    times a second, most of an idle replicated node's CPU); a request that starts
    waiting afterwards still gets its -NOQUORUM at its deadline."""
    node, session, bus = cluster
    node.config.set_text("request-timeout", "500")
    bus.links[B].answer = bus.links[C].answer = lambda op, args: None  # never answer
    counter = _TaskSteps("_expire_waiting")
    async with trio.open_nursery() as nursery:
        await nursery.start(node.replication.run)
        await trio.sleep(0)
        trio.lowlevel.add_instrument(counter)
        await trio.sleep(10)
        assert counter.steps == 0
        (key,) = my_keys(node, 1)
        (slot,) = run(node, session, (b"SET", key, b"v"))
        started = trio.current_time()
        await trio.sleep(0.45)
        assert slot.payload is None
        await trio.sleep(0.1)
        assert slot.payload == b"-NOQUORUM write quorum not reached: 1 of 2 required replicas acknowledged\r\n"
        assert trio.current_time() - started < 0.6
        steps_while_waiting = counter.steps
        await trio.sleep(10)
        assert counter.steps - steps_while_waiting <= 2  # asleep again once the queue emptied
        trio.lowlevel.remove_instrument(counter)
        nursery.cancel_scope.cancel()
