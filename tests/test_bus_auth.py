"""Cluster-bus authentication: the pure proofs, the handshake between buses, and an
outsider on a real cluster's bus port.

The end-to-end test plays the attacker of the issue that asked for this: a process
that connects to a node's bus port with an invented node id and tries to write a
key and to add a member.  Without the cluster secret it gets nothing; the same
attempts made with the secret (the control) do take effect, which shows the test
would notice a bus that let strangers in.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import trio
import trio.testing
from redis.cluster import RedisCluster

from respkv import launcher
from respkv.cluster.gossip import MEET, encode_meet
from respkv.cluster.identity import SECRET_FILE, SecretError, load_cluster_secret
from respkv.cluster.membership import Member
from respkv.keyspace.codec import encode_value
from respkv.peer import auth, wire
from respkv.peer.bus import MAX_HANDSHAKES, ClusterBus
from respkv.replication import vclock
from respkv.replication.coordinator import REPL
from respkv.replication.store import RECONCILE
from respkv.replication.versions import Version, encode_record

from .test_bus import A_ID, B_ID, SECRET, echo_handler, start_bus
from .test_cluster_e2e import HOST, cluster_mark, start_cluster

INTRUDER = "e" * 40
NONCE_D, NONCE_A = b"d" * auth.NONCE_SIZE, b"a" * auth.NONCE_SIZE


# -- the proofs (pure) -------------------------------------------------------------------


def test_a_proof_depends_on_everything_it_signs():
    base = (SECRET, auth.DIALER, A_ID, B_ID, NONCE_D, NONCE_A)
    reference = auth.proof(*base)
    assert reference == auth.proof(*base)  # deterministic
    variants = [
        (b"another secret", auth.DIALER, A_ID, B_ID, NONCE_D, NONCE_A),
        (SECRET, auth.ACCEPTOR, A_ID, B_ID, NONCE_D, NONCE_A),  # the other side's role
        (SECRET, auth.DIALER, B_ID, A_ID, NONCE_D, NONCE_A),  # ids swapped
        (SECRET, auth.DIALER, INTRUDER, B_ID, NONCE_D, NONCE_A),  # another claimed id
        (SECRET, auth.DIALER, A_ID, B_ID, NONCE_A, NONCE_D),  # nonces swapped
        (SECRET, auth.DIALER, A_ID, B_ID, NONCE_D, b"x" * auth.NONCE_SIZE),  # a fresh challenge
    ]
    proofs = {auth.proof(*variant) for variant in variants}
    assert reference not in proofs and len(proofs) == len(variants)
    assert SECRET not in reference  # a hex HMAC, not the secret


def test_check_accepts_only_the_expected_proof():
    expected = auth.proof(SECRET, auth.DIALER, A_ID, B_ID, NONCE_D, NONCE_A)
    auth.check(expected, expected)
    for offered in (b"", expected[:-1], expected + b"0", auth.proof(b"x", auth.DIALER, A_ID, B_ID, NONCE_D, NONCE_A)):
        with pytest.raises(auth.AuthenticationFailed, match="same cluster-secret"):
            auth.check(expected, offered)


def test_nonces_are_fresh_and_sized():
    nonces = {auth.new_nonce() for _ in range(100)}
    assert len(nonces) == 100 and all(auth.valid_nonce(n) for n in nonces)
    assert not auth.valid_nonce(b"short")


# -- where the secret comes from -----------------------------------------------------------


def test_secret_sources_in_order(tmp_path):
    secret_file = tmp_path / "shared"
    secret_file.write_text("from-the-file\nignored\n")
    assert load_cluster_secret(str(tmp_path / "a"), "direct", str(secret_file))[0] == b"direct"
    assert load_cluster_secret(str(tmp_path / "a"), "", str(secret_file))[0] == b"from-the-file"
    generated, source = load_cluster_secret(str(tmp_path / "a"))
    assert len(generated) == 64 and "generated" in source
    path = tmp_path / "a" / SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_cluster_secret(str(tmp_path / "a")) == (generated, str(path))  # kept across restarts
    assert load_cluster_secret(str(tmp_path / "b"))[0] != generated  # each node its own


@pytest.mark.parametrize("content, message", [(None, "cannot read"), ("\n", "is empty")])
def test_an_unusable_secret_file_says_what_to_do(tmp_path, content, message):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SecretError, match=message):
        load_cluster_secret(str(tmp_path / "node"), "", str(path))


# -- the handshake between two buses -----------------------------------------------------------


async def test_buses_with_different_secrets_refuse_each_other():
    log_b = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]), secret=b"secret one")
            bus_b, port_b = await start_bus(nursery, B_ID, echo_handler(log_b), secret=b"secret two")
            with pytest.raises(auth.AuthenticationFailed, match="same cluster-secret"):
                await bus_a.dial("127.0.0.1", port_b)
            await trio.testing.wait_all_tasks_blocked()
            assert not bus_a.link(B_ID).connected and not bus_b.link(A_ID).connected
            assert bus_a.handshakes_refused == 1 and log_b == []
            nursery.cancel_scope.cancel()


async def _raw_connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _closed_without_answer(stream: trio.SocketStream) -> bytes:
    """Everything the node sends until it closes the connection."""
    received = b""
    async with stream:
        while data := await stream.receive_some(65536):
            received += data
    return received


async def test_frames_before_the_handshake_reach_nothing():
    log_b = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, port_b = await start_bus(nursery, B_ID, echo_handler(log_b))
            # The handshake of old, an invented id, then a request.
            stream = await _raw_connect(port_b)
            await stream.send_all(wire.encode(wire.NOTIFY, 0, b"HELLO", [INTRUDER.encode()])
                                  + wire.encode(wire.REQUEST, 1, b"ECHO", [b"x"]))
            assert await _closed_without_answer(stream) == b""
            # A well-formed HELLO, then a made-up proof.
            stream = await _raw_connect(port_b)
            await stream.send_all(wire.encode(wire.NOTIFY, 0, b"HELLO", [INTRUDER.encode(), NONCE_D]))
            reader = wire.new_reader()
            frames = []
            while not frames:
                frames = reader.parse(await stream.receive_some(65536))
            kind, _, op, args = wire.split(frames[0])
            assert op == b"HELLO" and args[0] == B_ID.encode() and len(args) == 3
            await stream.send_all(wire.encode(wire.NOTIFY, 0, b"PROOF", [b"0" * 64]))
            rest = reader.parse(await _closed_without_answer(stream))
            assert [wire.split(f)[2] for f in rest] == [b"DENIED"]
            # A proof with a request behind it, sent before the handshake is over.
            stream = await _raw_connect(port_b)
            await stream.send_all(wire.encode(wire.NOTIFY, 0, b"HELLO", [INTRUDER.encode(), NONCE_D]))
            await stream.receive_some(65536)
            await stream.send_all(wire.encode(wire.NOTIFY, 0, b"PROOF", [b"0" * 64])
                                  + wire.encode(wire.REQUEST, 1, b"ECHO", [b"x"]))
            assert await _closed_without_answer(stream) == b""
            # Nonsense instead of a HELLO.
            stream = await _raw_connect(port_b)
            await stream.send_all(b"*1\r\n>536870913\r\n")
            assert await _closed_without_answer(stream) == b""
            assert log_b == []
            nursery.cancel_scope.cancel()


async def test_handshakes_under_way_are_bounded():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_b, port_b = await start_bus(nursery, B_ID, echo_handler([]))
            idle = [await _raw_connect(port_b) for _ in range(MAX_HANDSHAKES)]
            await trio.testing.wait_all_tasks_blocked()
            extra = await _raw_connect(port_b)
            assert await _closed_without_answer(extra) == b""
            assert bus_b.handshakes_refused == 1
            for stream in idle:
                await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]))
            assert await bus_a.dial("127.0.0.1", port_b) == B_ID  # room again
            nursery.cancel_scope.cancel()


# -- an outsider on a real cluster's bus port ------------------------------------------------


def _intrude(bus_port: int, secret: bytes, key: bytes, fake: Member) -> list[str]:
    """Connect to ``bus_port`` as node INTRUDER knowing ``secret``; try to write
    ``key`` and to add ``fake`` as a member.  Returns what went through."""
    done = []

    async def main():
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                listeners = await trio.open_tcp_listeners(0, host=HOST)
                bus = ClusterBus(INTRUDER, lambda peer, op, args: [], secret)
                await nursery.start(bus.serve, listeners[0])
                try:
                    peer_id = await bus.dial(HOST, bus_port)
                except auth.AuthenticationFailed:
                    nursery.cancel_scope.cancel()
                    return
                link = bus.link(peer_id)
                while not link.connected:
                    await trio.sleep(0.01)
                stamp = int(time.time() * 1000)
                clock = vclock.encode(((vclock.actor_of(INTRUDER), 1, stamp),))
                record = (Version(clock, stamp, vclock.actor_of(INTRUDER), False, 0, encode_value(b"injected")),)
                await link.request(REPL, [key, RECONCILE, encode_record(record)])
                done.append("write")
                await link.request(MEET, encode_meet(fake, 1024))
                done.append("meet")
                nursery.cancel_scope.cancel()

    trio.run(main)
    return done


def _raw_old_style_write(bus_port: int, key: bytes) -> bytes:
    """The attack as it worked before: HELLO with an invented id, then a write."""
    stamp = int(time.time() * 1000)
    clock = vclock.encode(((vclock.actor_of(INTRUDER), 1, stamp),))
    record = (Version(clock, stamp, vclock.actor_of(INTRUDER), False, 0, encode_value(b"injected")),)
    frames = (wire.encode(wire.NOTIFY, 0, b"HELLO", [INTRUDER.encode()])
              + wire.encode(wire.REQUEST, 1, REPL, [key, RECONCILE, encode_record(record)]))
    received = b""
    with socket.create_connection((HOST, bus_port), timeout=10) as sock:
        sock.sendall(frames)
        while data := sock.recv(65536):
            received += data
    return received


def _members(cluster: launcher.LocalCluster) -> set[str]:
    ids = set()
    for node in cluster.nodes:
        text = launcher.command(HOST, node.port, "CLUSTER", "NODES").decode()
        ids |= {line.split()[0] for line in text.splitlines() if line}
    return ids


@cluster_mark
def test_an_outsider_on_the_bus_port_cannot_write_or_add_members(tmp_path):
    cluster = start_cluster(tmp_path / "c")
    try:
        members = _members(cluster)
        assert len(members) == 3
        bus_port = cluster.nodes[1].bus_port
        fake = Member(INTRUDER, HOST, 1, 2)
        client = RedisCluster(host=HOST, port=cluster.nodes[0].port, socket_timeout=10)
        # No secret: an invented id and a guessed secret, or the handshake of old.
        assert _intrude(bus_port, b"a guessed secret", b"stolen", fake) == []
        assert _raw_old_style_write(bus_port, b"stolen-raw") == b""
        assert client.get("stolen") is None and client.get("stolen-raw") is None
        assert _members(cluster) == members
        info = launcher.parse_info(launcher.command(HOST, cluster.nodes[1].port, "CLUSTER", "INFO"))
        assert int(info["cluster_bus_handshakes_refused"]) >= 2
        for node in cluster.nodes:
            assert launcher.command(HOST, node.port, "PING") == b"PONG"
        # The control: with the cluster's secret the same steps go through.
        with open(os.path.join(cluster.directory, SECRET_FILE), encoding="utf-8") as f:
            secret = f.readline().strip().encode()
        assert _intrude(bus_port, secret, b"controlled", fake) == ["write", "meet"]
        assert fake.node_id in _members(cluster)
        client.close()
    finally:
        cluster.stop()
