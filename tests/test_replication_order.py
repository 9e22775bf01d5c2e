"""Defects of the replicated read and write paths, each reproduced end to end through
a client session over a scripted bus (see test_coordinator).

* A pipelined read merged with a replica's newer version must answer as of its
  place in the pipeline, not with a write the same client sent after it.
* ``MULTI; GET k; EXEC`` honours the read quorum like a plain ``GET k``.
* A replica's "not found" never outweighs another replica's version.
* A run of pipelined SETs takes the general write path's steps (RESOLVE contexts).
* A run of pipelined SADDs replicates once, answers in order, versions only the
  keys it changed and ships each key's requests as one merged command.
* A client that sends more while its session is parked gets its replies in order.
* A cluster-bus callback that raises does not end the peer link (test_bus).
"""

from __future__ import annotations

import socket

import pytest
import trio

from respkv.keyspace.store import Keyspace
from respkv.replication.coordinator import RREAD
from respkv.replication.store import VersionStore
from respkv.replication.vclock import actor_of

from .test_coordinator import ME, B, C, coordinating_node, my_keys, replica_answering


@pytest.fixture
async def wired():
    """(node, session, bus, client socket): see test_coordinator.coordinating_node."""
    node, session, bus, client_end = coordinating_node()
    yield node, session, bus, client_end
    session.sock.close()
    client_end.close()


async def pipeline(session, *requests) -> None:
    """Serve one received batch as the poller does, to the end (replies sent)."""
    out: list = []
    pending = session._run_all([list(r) for r in requests], 0, out)
    if pending is not None:
        assert not await session._resume(pending, out)
    elif out:
        await session._send(b"".join(await session._settled(out)))


def received(client_end: socket.socket) -> bytes:
    client_end.setblocking(False)
    data = b""
    while True:
        try:
            chunk = client_end.recv(65536)
        except BlockingIOError:
            return data
        data += chunk


def newer_elsewhere(node, key: bytes, value: bytes) -> VersionStore:
    """A replica store holding a version of ``key`` this node never saw."""
    store = VersionStore(Keyspace(), actor_of(B))
    store.keyspace.set(key, value)
    store.written(key, node.keyspace.clock_ms() - 1000)
    return store


async def test_a_pipelined_read_is_not_answered_with_a_later_write(wired):
    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    bus.links[B].answer = replica_answering(newer_elsewhere(node, key, b"REMOTE"))
    bus.links[C].answer = replica_answering(VersionStore(Keyspace(), actor_of(C)))
    with trio.fail_after(5):
        await pipeline(session, (b"GET", key), (b"SET", key, b"LATER"), (b"GET", key))
    # The first GET merged B's version before the SET ran; the second sees the SET.
    assert received(client_end) == b"$6\r\nREMOTE\r\n+OK\r\n$5\r\nLATER\r\n"


async def test_reads_in_a_transaction_honour_the_read_quorum(wired):
    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    bus.links[B].answer = replica_answering(newer_elsewhere(node, key, b"REMOTE"))
    bus.links[C].answer = replica_answering(VersionStore(Keyspace(), actor_of(C)))
    with trio.fail_after(5):
        await pipeline(session, (b"MULTI",), (b"GET", key), (b"EXEC",))
    assert received(client_end) == b"+OK\r\n+QUEUED\r\n*1\r\n$6\r\nREMOTE\r\n"
    assert [op for op, _ in bus.links[B].sent][:1] == [RREAD]


async def test_a_transaction_whose_read_quorum_fails_is_discarded(wired):
    node, session, bus, client_end = wired
    node.config.set_text("request-timeout", "50")
    (key,) = my_keys(node, 1)
    bus.links[B].answer = bus.links[C].answer = lambda op, args: ConnectionError("down")
    with trio.fail_after(5):
        await pipeline(session, (b"MULTI",), (b"SET", key, b"v"), (b"GET", key), (b"EXEC",), (b"EXEC",))
    replies = received(client_end)
    assert replies.startswith(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n-NOQUORUM read quorum not reached")
    assert replies.endswith(b"-ERR EXEC without MULTI\r\n")
    assert node.keyspace.get(key) is None  # the transaction did not run


async def test_not_found_never_outweighs_a_found_version(wired):
    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    # This node lost its data (restarted empty) and so did C, which answers at once;
    # B holds the acknowledged value and answers later.
    later = []
    holder = replica_answering(newer_elsewhere(node, key, b"ACKED"))

    def b_answers_later(op, args):
        later.append((op, args))  # answered below, after C

    bus.links[B].answer = b_answers_later
    bus.links[C].answer = replica_answering(VersionStore(Keyspace(), actor_of(C)))
    out: list = []
    assert session._run_all([[b"GET", key]], 0, out) is None
    node.replication.flush()
    (slot,) = out
    assert slot.payload is None  # R=2 answered (here and C), but neither found it
    # B's answer arrives through the callback the bus would call.
    (op, args), = later
    bus.links[B].callbacks[0](holder(op, args), None)
    assert slot.payload == b"$5\r\nACKED\r\n"


async def test_not_found_everywhere_is_nil_once_every_replica_answered(wired):
    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    for peer, actor in ((B, actor_of(B)), (C, actor_of(C))):
        bus.links[peer].answer = replica_answering(VersionStore(Keyspace(), actor))
    with trio.fail_after(5):
        await pipeline(session, (b"GET", key))
    assert received(client_end) == b"$-1\r\n"


async def test_not_found_with_a_silent_replica_is_nil_at_the_timeout(wired):
    node, session, bus, client_end = wired
    node.config.set_text("request-timeout", "50")
    (key,) = my_keys(node, 1)
    bus.links[B].answer = lambda op, args: None  # never answers
    bus.links[C].answer = replica_answering(VersionStore(Keyspace(), actor_of(C)))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.replication.run)  # what times requests out
            await pipeline(session, (b"GET", key))
            nursery.cancel_scope.cancel()
    assert received(client_end) == b"$-1\r\n"  # R=2 answered: not found, not NOQUORUM


async def test_a_run_of_sets_takes_the_general_write_path(wired):
    node, session, bus, client_end = wired
    keys = my_keys(node, 3)
    with trio.fail_after(5):
        await pipeline(session, *[(b"SET", key, b"v") for key in keys])  # one run
        for key in keys:
            await pipeline(session, (b"SET", key, b"w"))  # one request a batch
    assert received(client_end) == b"+OK\r\n" * 6
    assert node.replication.stats["replicated_writes"] == 6
    sent = [args for op, args in bus.links[B].sent]
    run, singles = sent[0], [arg for args in sent[1:] for arg in args]
    assert run[0::3] == singles[0::3] == keys
    assert run[1::3] == [b""] * 3  # nothing held before: no parent
    # Each single SET superseded exactly the version the run wrote.
    store = node.replication.store
    assert [len(store.record(key)) for key in keys] == [1, 1, 1]
    assert all(parent != b"" for parent in singles[1::3])


async def test_replica_answers_only_post_to_the_poller(wired):
    """The bus callback that settles a parked session's last reply writes nothing to
    the client's socket: the poller sends it in its next round."""
    from respkv.net.poller import ClientPoller

    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    answers = []
    bus.links[B].answer = bus.links[C].answer = lambda op, args: answers.append(op)  # held back
    poller = ClientPoller(node, node.round_hooks)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            poller.add(session)
            client_end.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$1\r\nv\r\n" % (len(key), key))
            while session.parked is None:
                await trio.sleep(0.001)
            while not bus.links[B].callbacks:  # the poller flushes at the end of its round
                await trio.sleep(0.001)
            bus.links[B].callbacks[0]([], None)  # the REPL answer, in the bus reader
            assert received(client_end) == b""  # posted, not sent
            while not (data := received(client_end)):
                await trio.sleep(0.001)
            assert data == b"+OK\r\n"
            nursery.cancel_scope.cancel()


async def test_a_run_of_sadds_replicates_once_and_answers_in_order(wired):
    from respkv.replication.versions import OPERATION_PREFIX, parse_operation

    node, session, bus, client_end = wired
    node.replication.store.convergent = False  # re-adds change nothing (see the next test)
    k0, k1, text = my_keys(node, 3)
    with trio.fail_after(5):
        await pipeline(session, (b"SET", text, b"x"))
        sent_before = len(bus.links[B].sent)
        await pipeline(
            session,
            (b"SADD", k0, b"a"), (b"SADD", k1, b"b"), (b"SADD", k0, b"c", b"a"),
            (b"SADD", text, b"m"),  # WRONGTYPE: the per-request path answers it
            (b"SADD", k1, b"b"),  # changes nothing
        )
    assert received(client_end) == (
        b"+OK\r\n:1\r\n:1\r\n:1\r\n"
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:0\r\n"
    )
    sent = [args for op, args in bus.links[B].sent[sent_before:]]
    assert len(sent) == 1  # one REPL for the run (the rest changed nothing)
    (repl,) = sent
    assert repl[0::3] == [k0, k1]
    # Shipped as commands: k0's two requests merged into one (SADD is MERGEABLE).
    k0_record, k1_record = repl[2::3]
    assert k0_record.startswith(OPERATION_PREFIX) and k1_record.startswith(OPERATION_PREFIX)
    assert parse_operation(k0_record)[1] == [b"SADD", k0, b"a", b"c", b"a"]
    assert parse_operation(k1_record)[1] == [b"SADD", k1, b"b"]
    assert node.replication.stats["replicated_writes"] == 1 + 3
    store = node.replication.store
    assert [len(store.record(key)) for key in (k0, k1)] == [1, 1]
    assert node.keyspace.get(k0) == {b"a", b"c"} and node.keyspace.get(k1) == {b"b"}

    # A run that changes nothing versions nothing and sends nothing.
    versions = [store.digest(key) for key in (k0, k1)]
    sent_before = len(bus.links[B].sent)
    with trio.fail_after(5):
        await pipeline(session, (b"SADD", k0, b"a"), (b"SADD", k1, b"b"))
    assert received(client_end) == b":0\r\n:0\r\n"
    assert len(bus.links[B].sent) == sent_before
    assert [store.digest(key) for key in (k0, k1)] == versions


async def test_with_convergent_types_a_run_of_re_adds_is_a_write(wired):
    """A re-add changes no Redis value, but it is an add a concurrent removal
    may not have seen: it gets a new version (a new dot for its members)."""
    from respkv.replication.convergent import unpack_dot
    from respkv.replication.versions import parse_operation

    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    store = node.replication.store
    with trio.fail_after(5):
        await pipeline(session, (b"SADD", key, b"a", b"b"))
        before = store.digest(key)
        sent_before = len(bus.links[B].sent)
        await pipeline(session, (b"SADD", key, b"a"), (b"SADD", key, b"b"))
    assert received(client_end) == b":2\r\n:0\r\n:0\r\n"
    (repl,) = [args for op, args in bus.links[B].sent[sent_before:]]
    assert repl[0::3] == [key]
    assert parse_operation(repl[2])[1] == [b"SADD", key, b"a", b"b"]
    assert store.digest(key) != before
    dots = store.metadata(key).dots
    assert dots[b"a"] == dots[b"b"] and unpack_dot(dots[b"a"])[1] == 2  # the second write's dot


async def test_requests_sent_while_parked_are_answered_after_the_parked_batch(wired):
    """A parked session's socket stays with the poller; what the client sends while
    it waits runs only once the parked batch's replies are out."""
    from respkv.net.poller import ClientPoller

    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    bus.links[B].answer = bus.links[C].answer = lambda op, args: None  # held back
    poller = ClientPoller(node, node.round_hooks)

    def command(*args):
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            poller.add(session)
            for round_ in range(3):  # parks again after being finished
                value = b"v%d" % round_
                before = len(bus.links[B].callbacks)
                assert before == 3 * round_
                client_end.sendall(command(b"SET", key, value))
                while len(bus.links[B].callbacks) == before:
                    await trio.sleep(0.001)
                assert session.parked is not None
                client_end.sendall(command(b"SET", key, b"later") + command(b"GET", key))
                await trio.sleep(0.02)  # the poller sees the socket readable meanwhile
                assert received(client_end) == b""
                bus.links[B].callbacks[before]([], None)
                data = b""
                while len(data) < 5:
                    data += received(client_end)
                    await trio.sleep(0.001)
                assert data == b"+OK\r\n"
                # The later requests now run (and park for their own answers: the
                # write's acknowledgement, the read's digests).
                link = bus.links[B]
                while len(link.callbacks) < before + 3:
                    await trio.sleep(0.001)
                for (op, args), callback in zip(link.sent[before + 1 :], link.callbacks[before + 1 :]):
                    callback([] if op == b"REPL" else [b""] * (len(args) // 2), None)
                data = b""
                while len(data) < 5 + 11:
                    data += received(client_end)
                    await trio.sleep(0.001)
                assert data == b"+OK\r\n$5\r\nlater\r\n"
            nursery.cancel_scope.cancel()


async def test_a_run_of_sadds_reaches_a_real_replica_as_merged_commands(wired):
    """What a run ships makes a replica's set what the coordinator's is."""
    node, session, bus, client_end = wired
    (key,) = my_keys(node, 1)
    replica_node, replica_session, _, replica_client = coordinating_node()
    try:
        replica = replica_node.replication.replica
        bus.links[B].answer = lambda op, args: replica.handle(ME, op, args)
        with trio.fail_after(5):
            await pipeline(session, (b"SADD", key, b"a"))
            await pipeline(session, *[(b"SADD", key, b"m%d" % i, b"a") for i in range(20)])
        assert received(client_end) == b":1\r\n" * 21
        assert replica_node.keyspace.get(key) == node.keyspace.get(key)
        assert len(node.keyspace.get(key)) == 21
        assert replica_node.replication.store.digest(key) == node.replication.store.digest(key)
        assert not [op for op, args in bus.links[B].sent[2:]]  # no whole record was asked for
    finally:
        replica_session.sock.close()
        replica_client.close()
