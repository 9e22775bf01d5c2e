"""Gossip: joining, convergence, failure detection and restarts.

Most tests run several members' gossip over an in-memory bus under trio's
``autojump_clock``, so timing claims ("fail within 3 node timeouts") are checked
exactly in virtual time; the fake bus still passes every message through the real
frame encoder and reader.  Then the same story runs on real loopback sockets (the
real cluster bus, real time, 0.5 s node timeout), once with bare bus+gossip pairs
and once with whole nodes started by ``serve_node`` in cluster mode.
"""

from __future__ import annotations

import argparse
import errno
import inspect
import math

import pytest
import trio
import trio.testing

from respkv import cli
from respkv.cluster import gossip as gossip_module
from respkv.cluster.failure import NodeState
from respkv.cluster.gossip import (
    MEET,
    PING,
    Gossip,
    MeetError,
    announce_ip,
    decode_body,
    decode_meet,
    decode_ping,
    encode_body,
    encode_meet,
    encode_ping,
    parse_address,
)
from respkv.cluster.membership import Member, Membership
from respkv.cluster.state import ClusterState
from respkv.config import Config, ConfigError
from respkv.keyspace.slots import SLOT_COUNT
from respkv.node import Node, serve_node
from respkv.peer import wire
from respkv.peer.bus import ClusterBus, PeerError, PeerUnavailable

OK, PFAIL, FAIL = NodeState.OK, NodeState.PFAIL, NodeState.FAIL
T = 0.5  # node timeout, seconds
VNODES = 16  # small rings keep rebuilding topology cheap
HOST = "127.0.0.1"


def node_id(i: int) -> str:
    return f"{i:x}" * 40


# -- message formats -------------------------------------------------------------


def record(i: int, port: int = 7000, epoch: int = 1) -> Member:
    return Member(node_id(i), HOST, port + i, port + i + 10000, 1, epoch)


def test_body_round_trip_with_and_without_membership():
    membership = Membership([record(1), record(2, epoch=3)])
    for included in (None, membership):
        fields = encode_body(membership.digest(), [node_id(2)], included)
        assert all(isinstance(f, bytes) for f in fields)
        body = decode_body(fields)
        assert body.digest == membership.digest()
        assert body.suspects == (node_id(2),)
        assert body.membership == included


def test_ping_and_meet_round_trip():
    body = encode_body("0123456789abcdef", [], None)
    sender, decoded = decode_ping(encode_ping(record(1), body))
    assert sender == record(1) and decoded.suspects == () and decoded.membership is None
    assert decode_meet(encode_meet(record(2), 1024)) == (record(2), 1024)


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [b"0123456789abcdef"],
        [b"nothex!!89abcdef", b"0"],
        [b"0123456789abcdef", b"2", node_id(1).encode()],  # count beyond the fields
        [b"0123456789abcdef", b"1", b"not-an-id"],
        [b"0123456789abcdef", b"-1"],
        [b"0123456789abcdef", b"0", b"members/2"],  # not a membership encoding
    ],
)
def test_malformed_bodies_are_refused(fields):
    with pytest.raises(ValueError):
        decode_body(fields)


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("127.0.0.1:7000", ("127.0.0.1", 7000, None)),
        ("localhost:7000@17500", ("localhost", 7000, 17500)),
        ("[::1]:7000", ("::1", 7000, None)),
        ("::1:7000", ("::1", 7000, None)),
    ],
)
def test_parse_address(text, parsed):
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", ["7000", ":7000", "h:", "h:0", "h:65536", "h:70x0", "h:7000@", "h:7000@0"])
def test_parse_address_refuses(text):
    with pytest.raises(ValueError):
        parse_address(text)


async def test_announce_ip():
    assert await announce_ip("127.0.0.1") == "127.0.0.1"
    assert await announce_ip("0.0.0.0") == "127.0.0.1"
    assert await announce_ip("::") == "::1"
    assert await announce_ip("0.0.0.0", "10.1.2.3") == "10.1.2.3"
    assert await announce_ip("0:0::1") == "::1"  # canonical spelling


# -- an in-memory bus --------------------------------------------------------------


class FakeNet:
    """Which fake buses are up and which pairs are cut off from each other."""

    LATENCY = 0.001

    def __init__(self) -> None:
        self.buses: dict[str, FakeBus] = {}
        self.cut: set[frozenset[str]] = set()

    def reachable(self, a: str, b: str) -> bool:
        return a in self.buses and b in self.buses and frozenset((a, b)) not in self.cut

    def partition(self, group: set[str]) -> None:
        """Cut every member of ``group`` off from everyone outside it."""
        for a in group:
            for b in self.buses:
                if b not in group:
                    self.cut.add(frozenset((a, b)))


def through_wire(op: bytes, args: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Encode and parse a frame as the real bus would."""
    reader = wire.new_reader()
    (frame,) = reader.parse(wire.encode(wire.REQUEST, 1, op, args))
    _, _, op, args = wire.split(frame)
    return op, args


class FakeLink:
    def __init__(self, bus: FakeBus, peer_id: str) -> None:
        self.bus = bus
        self.peer_id = peer_id

    @property
    def connected(self) -> bool:
        return self.bus.net.reachable(self.bus.node_id, self.peer_id)

    async def request(self, op, args=(), timeout=5.0):
        net = self.bus.net
        if not self.connected:
            raise PeerUnavailable(self.peer_id)
        with trio.move_on_after(timeout):
            await trio.sleep(net.LATENCY)
            if not self.connected:
                raise PeerUnavailable(self.peer_id)
            op, args = through_wire(op, list(args))
            try:
                answer = net.buses[self.peer_id].handler(self.bus.node_id, op, args)
                if inspect.isawaitable(answer):
                    answer = await answer
            except ValueError as exc:
                raise PeerError(repr(exc)) from None
            await trio.sleep(net.LATENCY)
            if not self.connected:
                raise PeerUnavailable(self.peer_id)
            return through_wire(b"", list(answer))[1]
        raise PeerUnavailable(f"{self.peer_id}: no answer within {timeout}s")


class FakeBus:
    """The parts of :class:`ClusterBus` gossip uses, over :class:`FakeNet`."""

    def __init__(self, net: FakeNet, node_id: str, bus_address: tuple[str, int]) -> None:
        self.net = net
        self.node_id = node_id
        self.bus_address = bus_address
        self.handler = None
        self.addresses: dict[str, tuple[str, int]] = {}

    def link(self, peer_id: str) -> FakeLink:
        return FakeLink(self, peer_id)

    async def dial(self, host: str, port: int) -> str:
        await trio.sleep(self.net.LATENCY)
        for bus in self.net.buses.values():
            if bus.bus_address == (host, port) and (
                bus is self or self.net.reachable(self.node_id, bus.node_id)
            ):
                return bus.node_id
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

    def keep_connected(self, peer_id: str) -> None:
        pass

    def forget(self, peer_id: str) -> None:
        self.addresses.pop(peer_id, None)


class Sim:
    """One member's gossip on the fake net, startable and stoppable."""

    def __init__(
        self, net: FakeNet, i: int, port: int | None = None, vnodes: int = VNODES, rf: int = 1
    ) -> None:
        self.net = net
        self.rf = rf
        self.id = node_id(i)
        self.port = port or 7000 + i
        self.vnodes = vnodes
        self.scope: trio.CancelScope | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    async def start(self, nursery: trio.Nursery) -> Sim:
        self.state = ClusterState(
            Member(self.id, HOST, self.port, self.port + 10000), vnodes=self.vnodes, rf=self.rf
        )
        self.bus = FakeBus(self.net, self.id, (HOST, self.port + 10000))
        self.gossip = Gossip(self.state, self.bus, node_timeout=T)
        self.bus.handler = self.gossip.handle
        self.net.buses[self.id] = self.bus
        await nursery.start(self._serve)
        return self

    async def _serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.gossip.run)
                task_status.started()

    def stop(self) -> None:
        """Like kill -9: gone at once, no goodbye."""
        self.scope.cancel()
        if self.net.buses.get(self.id) is self.bus:
            del self.net.buses[self.id]

    def state_of(self, other: Sim) -> NodeState:
        return self.state.topology.state(other.id)


def converged(sims) -> bool:
    return len({sim.state.membership.digest() for sim in sims}) == 1


async def wait_for(predicate, step: float = 0.01) -> float:
    """Poll ``predicate`` every ``step`` seconds; the time it first held."""
    while not predicate():
        await trio.sleep(step)
    return trio.current_time()


async def start_cluster(nursery, net, count: int, rf: int = 1) -> list[Sim]:
    """``count`` members, each meeting the first."""
    sims = [await Sim(net, i + 1, rf=rf).start(nursery) for i in range(count)]
    for sim in sims[1:]:
        await sim.gossip.meet(*sims[0].address)
    await wait_for(lambda: converged(sims))
    return sims


# -- joining and convergence (virtual time) ---------------------------------------------


async def test_three_members_join_through_one_seed_and_converge(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a, b, c = [await Sim(net, i).start(nursery) for i in (1, 2, 3)]
            assert await b.gossip.meet(*a.address) == a.id
            assert await c.gossip.meet(*a.address) == a.id
            # The MEET answer carries the seed's whole membership: c knows b at once.
            assert set(c.state.membership.active_ids()) == {a.id, b.id, c.id}
            started = trio.current_time()
            done = await wait_for(lambda: converged([a, b, c]))
            assert done - started <= 2 * b.gossip.interval
            for sim in (a, b, c):
                assert len(sim.state.membership) == 3
                assert all(sim.state_of(other) is OK for other in (a, b, c))
                # Every node computes the same slot map: each slot served exactly once.
            served = [sum(s) for s in zip(a.state.served, b.state.served, c.state.served)]
            assert served == [1] * SLOT_COUNT
            # Steady state: pings stop carrying whole memberships.
            assert b.gossip._told[a.id] == b.state.membership.digest()
            sent = dict(b.state.messages_sent)
            assert sent["meet"] == 1 and sent["ping"] >= 1 and b.state.messages_received["pong"] >= 2
            assert a.state.messages_received["meet"] == 2 and a.state.messages_sent["pong"] >= 2
            nursery.cancel_scope.cancel()


async def test_a_member_meeting_any_member_spreads_to_all(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            sims = await start_cluster(nursery, net, 3)
            d = await Sim(net, 4).start(nursery)
            # CLUSTER MEET run on b (a non-seed member) pointing at d.
            assert await sims[1].gossip.meet(*d.address) == d.id
            everyone = [*sims, d]
            started = trio.current_time()
            done = await wait_for(lambda: converged(everyone) and len(d.state.membership) == 4)
            assert done - started <= 3 * d.gossip.interval
            for sim in everyone:
                assert set(sim.state.membership.active_ids()) == {s.id for s in everyone}
            nursery.cancel_scope.cancel()


async def test_meeting_yourself_or_nothing(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a = await Sim(net, 1).start(nursery)
            assert await a.gossip.meet(*a.address) == a.id
            assert len(a.state.membership) == 1
            with pytest.raises(MeetError):
                await a.gossip.meet(HOST, 6999, 16999)
            nursery.cancel_scope.cancel()


async def test_meet_refuses_a_different_ring_size(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a = await Sim(net, 1).start(nursery)
            b = await Sim(net, 2, vnodes=VNODES * 2).start(nursery)
            with pytest.raises(MeetError, match="cluster-vnodes differs"):
                await b.gossip.meet(*a.address)
            assert len(a.state.membership) == 1
            nursery.cancel_scope.cancel()


async def test_join_retries_until_a_seed_answers_and_skips_itself(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            b = await Sim(net, 2).start(nursery)
            a = Sim(net, 1)
            joined = trio.Event()

            async def join():
                await b.gossip.join([(HOST, b.port, None), (HOST, a.port, None)])
                joined.set()

            nursery.start_soon(join)
            await trio.sleep(3)
            assert not joined.is_set() and len(b.state.membership) == 1
            await a.start(nursery)
            await joined.wait()
            await wait_for(lambda: converged([a, b]))
            assert trio.current_time() < 3 + 2 * gossip_module.JOIN_RETRY_MAX
            # Nobody to join but itself: returns at once.
            with trio.fail_after(1):
                await a.gossip.join([(HOST, a.port, None)])
            nursery.cancel_scope.cancel()


async def test_malformed_or_impersonating_requests_are_refused(autojump_clock):
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a = await Sim(net, 1).start(nursery)
            body = encode_body("0123456789abcdef", [], None)
            with pytest.raises(ValueError, match="carries the record"):
                a.gossip.handle(node_id(2), PING, encode_ping(record(3), body))
            with pytest.raises(ValueError, match="carries the record"):
                a.gossip.handle(node_id(2), MEET, encode_meet(record(3), VNODES))
            with pytest.raises(ValueError):
                a.gossip.handle(node_id(2), PING, [b"junk"])
            with pytest.raises(ValueError, match="not a gossip operation"):
                a.gossip.handle(node_id(2), b"NOPE", [])
            assert len(a.state.membership) == 1
            nursery.cancel_scope.cancel()


async def test_a_ping_from_an_unknown_node_introduces_nothing(autojump_clock):
    """Only a MEET introduces a node (as in Redis).  The case that matters: a
    ping sent just before ``redis-cli --cluster del-node``'s CLUSTER RESET that
    arrives after it must not bring the reset node back into the cluster."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a, b, c = await start_cluster(nursery, net, 3)
            in_flight = encode_ping(a.state.membership[a.id], encode_body(
                a.state.membership.digest(), [], a.state.membership))
            for sim in (a, c):
                sim.gossip.forget(b.id)
            b.gossip.reset(1)
            answer = decode_body(b.gossip.handle(a.id, PING, in_flight))
            assert answer.membership is None
            assert list(b.state.membership.active_ids()) == [b.id]
            await trio.sleep(5 * T)  # rounds of gossip change nothing either
            assert list(b.state.membership.active_ids()) == [b.id]
            assert set(a.state.membership.active_ids()) == {a.id, c.id}
            # A node that knows it, even as forgotten, still takes what it says.
            assert b.id in a.state.membership
            nursery.cancel_scope.cancel()


# -- failure detection (virtual time) -------------------------------------------------


async def watch(observer: Sim, target: Sim, timeline: dict, step: float = 0.005):
    """Record when ``observer`` first saw ``target`` in each state."""
    while True:
        state = observer.state_of(target)
        timeline.setdefault(state, trio.current_time())
        await trio.sleep(step)


async def test_a_stopped_member_is_flagged_then_failed_then_cleared_on_restart(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a, b, c = await start_cluster(nursery, net, 3, rf=2)
            before = bytes(c.state.served)
            await trio.sleep(1)
            c.stop()
            killed = trio.current_time()
            timelines = {a.id: {}, b.id: {}}
            async with trio.open_nursery() as watchers:
                for sim in (a, b):
                    watchers.start_soon(watch, sim, c, timelines[sim.id])
                await wait_for(lambda: all(FAIL in t for t in timelines.values()))
                watchers.cancel_scope.cancel()
            for sim in (a, b):
                seen = timelines[sim.id]
                # Suspected only after a node timeout of silence, and before failing
                # (between two looks when the other's report arrives as it suspects too).
                assert killed + T - sim.gossip.interval < seen.get(PFAIL, seen[FAIL]) <= seen[FAIL]
                assert seen[FAIL] - killed <= 3 * T
                assert sim.state.topology.is_live(c.id) is False
                assert "fail" in sim.state.topology.cluster_nodes().split(c.id)[1].split("\n")[0]
            # The survivors now coordinate every slot between them (rf=2: the next
            # node of each of c's preference lists took over).
            served = [x + y for x, y in zip(a.state.served, b.state.served)]
            assert served == [1] * SLOT_COUNT
            assert sum(before) > 0
            # Failure stays while c is silent, long after the reports expire.
            await trio.sleep(5 * T)
            assert a.state_of(c) is FAIL and b.state_of(c) is FAIL

            # Restart with the same id and address: cleared everywhere, same record.
            epoch = a.state.membership[c.id].epoch
            restarted = Sim(net, 3, rf=2)
            await restarted.start(nursery)
            back = trio.current_time()
            await restarted.gossip.meet(*a.address)
            await wait_for(
                lambda: a.state_of(restarted) is OK
                and b.state_of(restarted) is OK
                and converged([a, b, restarted])
            )
            assert trio.current_time() - back <= 2 * T
            # Without its membership file it rejoins as a new node does: at weight 0
            # until connected to every member, then at its weight (two epochs up).
            assert a.state.membership[c.id].epoch == epoch + 2
            assert a.state.membership[c.id].weight == 1
            assert restarted.state_of(a) is OK and restarted.state_of(b) is OK
            assert bytes(restarted.state.served) == before
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("port", [6900, 7100])
async def test_a_restart_on_a_new_address_is_reasserted(autojump_clock, port):
    """The cluster holds the node's record at epoch 3 (it joined at weight 0 with
    epoch 2, then took its weight).  Restarted without its membership file, it
    meets the cluster as a joining node does; the answer shows it its older
    self, which it re-asserts above, still at weight 0 (epoch 4), then takes its
    weight back (epoch 5), whatever the address sorts like."""
    epoch = 5
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a, b, c = await start_cluster(nursery, net, 3)
            c.stop()
            await wait_for(lambda: a.state_of(c) is FAIL)
            moved = await Sim(net, 3, port=port).start(nursery)
            await moved.gossip.meet(*b.address)
            await wait_for(lambda: converged([a, b, moved]) and a.state_of(moved) is OK)
            for sim in (a, b, moved):
                assert sim.state.membership[c.id].port == port
                assert sim.state.membership[c.id].epoch == epoch
                assert sim.state.membership[c.id].weight == 1
                if sim is not moved:
                    assert sim.bus.addresses[c.id] == (HOST, port + 10000)
            nursery.cancel_scope.cancel()


async def test_a_partition_fails_the_minority_only_and_heals(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            sims = await start_cluster(nursery, net, 5)
            majority, minority = sims[:3], sims[3:]
            net.partition({s.id for s in minority})
            await wait_for(
                lambda: all(m.state_of(x) is FAIL for m in majority for x in minority)
            )
            await trio.sleep(4 * T)
            for m in minority:
                # The minority suspects the majority but cannot reach a quorum.
                assert all(m.state_of(x) is PFAIL for x in majority)
                assert not any(m.state_of(x) is FAIL for x in sims)
            net.cut.clear()
            await wait_for(lambda: all(m.state_of(x) is OK for m in sims for x in sims))
            assert converged(sims)
            nursery.cancel_scope.cancel()


async def test_a_member_that_answers_again_is_cleared_at_once(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            net = FakeNet()
            a, b, c = await start_cluster(nursery, net, 3)
            net.partition({c.id})
            await wait_for(lambda: a.state_of(c) is FAIL and b.state_of(c) is FAIL)
            net.cut.clear()
            healed = trio.current_time()
            await wait_for(lambda: a.state_of(c) is OK and b.state_of(c) is OK, step=0.001)
            assert trio.current_time() - healed <= a.gossip.interval + 0.01
            nursery.cancel_scope.cancel()


# -- real sockets, real time --------------------------------------------------------------


class BusMember:
    """Bus and gossip of one member on loopback sockets (no client port)."""

    def __init__(self, i: int) -> None:
        self.id = node_id(i)
        self.port = 7000 + i  # a client port nobody dials here

    async def start(self, nursery: trio.Nursery) -> BusMember:
        listener = (await trio.open_tcp_listeners(0, host=HOST))[0]
        self.bus_port = listener.socket.getsockname()[1]
        self.state = ClusterState(Member(self.id, HOST, self.port, self.bus_port), vnodes=VNODES)
        self.bus = ClusterBus(self.id, lambda peer, op, args: self.gossip.handle(peer, op, args), b"secret")
        self.gossip = Gossip(self.state, self.bus, node_timeout=T)
        await nursery.start(self._serve, listener)
        return self

    async def _serve(self, listener, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.bus.serve, listener)
                await nursery.start(self.gossip.run)
                task_status.started()

    def state_of(self, other) -> NodeState:
        return self.state.topology.state(other.id)


async def test_real_bus_converges_fails_and_recovers():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a, b, c = [await BusMember(i).start(nursery) for i in (1, 2, 3)]
            for m in (b, c):
                assert await m.gossip.meet(HOST, m.port, a.bus_port) == a.id
            await wait_for(lambda: converged([a, b, c]))
            await wait_for(lambda: all(m.bus.link(o.id).connected for m in (a, b, c) for o in (a, b, c) if m is not o))

            c.scope.cancel()
            killed = trio.current_time()
            await wait_for(lambda: a.state_of(c) is FAIL and b.state_of(c) is FAIL)
            elapsed = trio.current_time() - killed
            assert elapsed <= 3 * T + 0.5, elapsed  # slack for a loaded machine

            # Back with the same id on a new bus port; it joins through b.
            restarted = BusMember(3)
            await restarted.start(nursery)
            await restarted.gossip.meet(HOST, restarted.port, b.bus_port)
            await wait_for(
                lambda: converged([a, b, restarted])
                and a.state_of(restarted) is OK
                and b.state_of(restarted) is OK
            )
            assert a.state.membership[c.id].bus_port == restarted.bus_port
            assert a.bus.addresses[c.id] == (HOST, restarted.bus_port)
            nursery.cancel_scope.cancel()


def cluster_config(tmp_path, name: str, **extra) -> Config:
    return Config(
        dir=str(tmp_path / name),
        port=0,
        cluster_enabled=True,
        cluster_node_timeout=int(T * 1000),
        cluster_vnodes=VNODES,
        cluster_secret="the test cluster's secret",
        **extra,
    )


async def start_node(nursery, config: Config, join=()) -> Node:
    node = Node(config)
    node.cluster_join = list(join)
    await nursery.start(serve_node, node)
    return node


async def run_stoppable(config: Config, join, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve a node in a scope of its own; reports ``(node, scope)``."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, config, join)
            task_status.started((node, scope))


def bus_address(node: Node) -> str:
    member = node.cluster.membership[node.cluster.myself]
    return f"{member.host}:{member.port}@{member.bus_port}"


async def test_nodes_in_cluster_mode_join_and_serve_disjoint_slots(tmp_path):
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            first = await start_node(nursery, cluster_config(tmp_path, "n1"))
            assert first.mode == "cluster" and first.cluster is not None
            assert first.cluster.myself == (tmp_path / "n1" / "node-id").read_text().strip()
            others = [
                await start_node(nursery, cluster_config(tmp_path, f"n{i}"), [bus_address(first)])
                for i in (2, 3)
            ]
            nodes = [first, *others]
            await wait_for(
                lambda: len({n.cluster.membership.digest() for n in nodes}) == 1
                and len(first.cluster.membership) == 3
            )
            served = [sum(s) for s in zip(*(n.cluster.served for n in nodes))]
            assert served == [1] * SLOT_COUNT
            member = first.cluster.membership[first.cluster.myself]
            assert (member.host, member.port) == (HOST, first.port)

            # CLUSTER MEET's coroutine: a fourth node introduced to the second.
            fourth = await start_node(nursery, cluster_config(tmp_path, "n4"))
            host, port, bus_port = parse_address(bus_address(fourth))
            assert await others[0].cluster_gossip.meet(host, port, bus_port) == fourth.cluster.myself
            nodes.append(fourth)
            await wait_for(
                lambda: len({n.cluster.membership.digest() for n in nodes}) == 1
                and len(fourth.cluster.membership) == 4
            )
            nursery.cancel_scope.cancel()


async def test_node_restart_keeps_its_id_and_rejoins(tmp_path):
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_node(nursery, cluster_config(tmp_path, "a"))
            b = await start_node(nursery, cluster_config(tmp_path, "b"), [bus_address(a)])
            c, c_scope = await nursery.start(run_stoppable, cluster_config(tmp_path, "c"), [bus_address(a)])
            c_id = c.cluster.myself
            await wait_for(lambda: all(len(n.cluster.membership) == 3 for n in (a, b, c)))
            c_scope.cancel()
            await wait_for(lambda: all(n.cluster.topology.state(c_id) is FAIL for n in (a, b)))

            again = await start_node(nursery, cluster_config(tmp_path, "c"), [bus_address(b)])
            assert again.cluster.myself == c_id
            await wait_for(
                lambda: all(n.cluster.topology.state(c_id) is OK for n in (a, b))
                and len({n.cluster.membership.digest() for n in (a, b, again)}) == 1
            )
            # It came back on new ports, and every member has its new record (with
            # a bumped epoch if the old one won the tie: see the virtual-time test).
            for node in (a, b):
                assert node.cluster.membership[c_id] == again.cluster.membership[c_id]
                assert node.cluster.membership[c_id].port == again.port
            nursery.cancel_scope.cancel()


async def test_meet_by_client_port_asks_for_a_configured_bus_port(tmp_path):
    # A free port to configure as the bus port (bound, read, released).
    probe = (await trio.open_tcp_listeners(0, host=HOST))[0]
    free = probe.socket.getsockname()[1]
    await probe.aclose()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_node(nursery, cluster_config(tmp_path, "a", cluster_port=free))
            assert a.cluster.membership[a.cluster.myself].bus_port == free
            b = await start_node(nursery, cluster_config(tmp_path, "b"))
            assert await b.cluster_gossip.meet(HOST, a.port) == a.cluster.myself
            nursery.cancel_scope.cancel()


async def test_standalone_node_has_no_cluster(tmp_path):
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, Config(dir=str(tmp_path / "s"), port=0))
            assert node.cluster is None and node.cluster_gossip is None and node.mode == "standalone"
            assert not (tmp_path / "s" / "node-id").exists()
            nursery.cancel_scope.cancel()


# -- configuration and command line ---------------------------------------------------------


def parse_server_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli._server_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["server", *argv])


def test_cluster_defaults():
    config = Config()
    assert config["cluster-enabled"] is False
    assert config["cluster-port"] == 0
    assert config["cluster-node-timeout"] == 5000
    assert config["cluster-announce-ip"] == ""
    assert config["cluster-weight"] == 1
    assert config["cluster-vnodes"] == 1024
    assert config["replication-factor"] == 3
    assert config["cluster-routing"] == "redirect"


def test_server_cluster_options():
    ns = parse_server_args(
        "--cluster", "--port", "7001", "--join", "127.0.0.1:7000", "--join", "10.0.0.2:7000@17500",
        "--weight", "2", "--rf", "3", "--routing", "proxy", "--cluster-port", "17001",
        "--node-timeout", "1500",
    )
    config = cli.build_config(ns)
    assert config["cluster-enabled"] is True
    assert ns.join == ["127.0.0.1:7000", "10.0.0.2:7000@17500"]
    assert (config["cluster-weight"], config["replication-factor"], config["cluster-routing"]) == (2, 3, "proxy")
    assert (config["cluster-port"], config["cluster-node-timeout"]) == (17001, 1500)
    assert cli.build_config(parse_server_args())["cluster-enabled"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--join", "127.0.0.1:7000"],  # without --cluster
        ["--cluster", "--join", "nonsense"],
        ["--cluster", "--routing", "teleport"],
        ["--cluster", "--node-timeout", "10"],
        ["--cluster", "--weight", "0"],
        ["--cluster", "--port", "60000"],  # no room for the default bus port
    ],
)
def test_server_cluster_options_refused(argv):
    with pytest.raises(ConfigError):
        cli.build_config(parse_server_args(*argv))


def test_announce_ip_directive_wants_an_ip():
    config = Config()
    config.set_text("cluster-announce-ip", "0:0::1", startup=True)
    assert config["cluster-announce-ip"] == "::1"
    with pytest.raises(ConfigError):
        config.set_text("cluster-announce-ip", "example.org", startup=True)


def test_interval_follows_the_node_timeout():
    state = ClusterState(record(1), vnodes=VNODES)
    assert Gossip(state, FakeBus(FakeNet(), node_id(1), (HOST, 17001)), node_timeout=5).interval == 1
    fast = Gossip(state, FakeBus(FakeNet(), node_id(1), (HOST, 17001)), node_timeout=0.2)
    assert math.isclose(fast.interval, gossip_module.MIN_INTERVAL)
