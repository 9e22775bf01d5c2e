"""Gossip: how members find each other, agree on membership and detect failures.

Theory of operation
-------------------
Each node runs one :class:`Gossip` beside its cluster bus.  It feeds the node's
:class:`~respkv.cluster.state.ClusterState` (membership, failure states) and keeps
the bus's dialing table in step with membership.  Two bus operations carry it,
both requests answered on the same multiplexed link:

``MEET``
    A node introduces itself to an address (``--join``, ``CLUSTER MEET``): it
    dials the address's bus port, sends its own :class:`~.membership.Member`
    record and its ring parameter ``cluster-vnodes`` (members must agree on it,
    or they would compute different rings), and the receiver merges the record
    and answers with a gossip body that always holds its whole membership.  So a
    node that meets one member learns them all.

``PING``
    Every ``node_timeout / 5`` (at least 100 ms) a node pings each member it has a
    connected link to.  The ping carries the sender's own record, then the gossip
    body: its membership digest, the members it suspects (its failure reports),
    and its whole membership when the digest this peer last told it differs from
    its own.  The answer (a ``pong`` in the message counters) is a gossip body
    too, with the receiver's digest and suspects, and the receiver's whole
    membership when the digest in the ping differs from the receiver's digest
    after merging.  Membership is a state-based CRDT (merge is commutative,
    associative, idempotent), so shipping whole values whenever two digests
    differ is enough for every pair that talks to end with equal values: a ping
    that carried the sender's value leaves both sides with the union of what
    either knew, and one that did not (the sender's idea of the peer's digest
    was stale) brings the peer's value back, so the next ping carries the
    sender's.  Digests make the steady state cheap: a ping is then one record
    and a few ids.

Wire formats (flat lists of byte strings, the arguments of a bus frame; encoded and
decoded by :mod:`.gossip_wire`)::

    body  = digest, n, suspect_1 .. suspect_n, [members/1, member fields...]
    PING  = member fields of the sender (7), body            -> body
    MEET  = member fields of the sender (7), vnodes          -> body (with members)

``digest`` is :meth:`~.membership.Membership.digest` (16 hex digits), ``n`` a
decimal count of node ids, member fields are :meth:`~.membership.Member.to_wire`
and the optional tail is :meth:`~.membership.Membership.to_wire`.  A record
claiming another id than the bus handshake gave is refused.

Failure detection is :class:`~.failure.FailureDetector`'s rule; this module only
drives it: any request or answer from a peer counts as *heard* (a member heard
while ``fail?`` or ``fail`` is cleared at once), every ping and pong delivers the
sender's complete suspect list as its failure reports, and after each round the
detector's verdicts are installed with ``ClusterState.set_states``.  A member
silent for ``node_timeout`` is ``fail?`` here at the end of the next round, and
peers' reports of it arrive within one more interval, so with three members a
dead one is ``fail`` on both survivors at most about 1.4 node timeouts after it
died (1.05 to 1.2 measured).  A member that comes back is cleared by each peer
as soon as a message passes between them, which for a peer with the smaller id
waits for its bus redialer (backoff at most a second).

Restarts: a node that comes back with the same data directory has the same id
and the membership it saved there (:mod:`.persisted`, which also meets the saved
members again), and after every merge re-asserts its own record
(``ClusterState.set_myself``): a no-op when the cluster's copy already says where
it is, otherwise a write with an epoch above the cluster's (new address, new
weight, or a tombstone to undo), which then wins every merge.

Structured concurrency: :meth:`Gossip.run` owns a nursery holding the round loop
and the ping tasks it spawns; :meth:`Gossip.join` is a separate task that retries
the seed addresses until one answers.  Both are started by the node with
``nursery.start`` and end only when cancelled (join also ends once joined).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterable

import trio

from ..peer import wire
from ..peer.auth import AuthenticationFailed
from ..peer.bus import CONNECT_TIMEOUT, ClusterBus, PeerError, PeerUnavailable
from .failure import DEFAULT_NODE_TIMEOUT, FailureDetector, NodeState, suspects
from .gossip_wire import GossipBody, decode_body, decode_meet, decode_ping, encode_body, encode_meet, encode_ping
from .membership import Member, Membership
from .state import ClusterState

log = logging.getLogger(__name__)

MEET = b"MEET"
PING = b"PING"
#: The bus operations :meth:`Gossip.handle` answers.
OPERATIONS = (MEET, PING)

#: Bus port offset from the client port when a member does not say otherwise.
BUS_PORT_OFFSET = 10000

#: Rounds per node timeout, and the shortest interval between rounds (seconds).
ROUNDS_PER_TIMEOUT = 5
MIN_INTERVAL = 0.1

#: Seconds a MEET may take once the bus connection is up.
MEET_TIMEOUT = 5.0

#: Backoff between rounds of join attempts (seconds).
JOIN_RETRY_MIN, JOIN_RETRY_MAX = 0.1, 2.0



class MeetError(Exception):
    """Meeting an address failed: nothing answered there, or not as a member would."""


# -- addresses -------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int, int | None]:
    """``(host, port, bus_port)`` from ``HOST:PORT`` or ``HOST:PORT@BUSPORT``.

    ``port`` is the member's client port; ``bus_port`` is None unless given, which
    means "client port + 10000, unless the member says otherwise" (see
    :meth:`Gossip.meet`).  IPv6 hosts may be bracketed (``[::1]:7000``).
    ``ValueError`` for anything else.
    """
    address, at, bus_text = text.partition("@")
    host, colon, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    port = _port(port_text, text)
    bus_port = _port(bus_text, text) if at else None
    return host, port, bus_port


def _port(digits: str, text: str) -> int:
    if not digits.isdigit() or not 0 < int(digits) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return int(digits)


async def announce_ip(bind: str, announce: str = "") -> str:
    """The address this node tells peers and clients, as a canonical IP.

    ``announce`` (``cluster-announce-ip``) when given; else the bind address, with
    the wildcard addresses replaced by loopback (a wildcard cannot be dialed).
    A host name is resolved once, here: records and ``MOVED`` replies carry IPs.
    """
    text = announce or bind
    if text in ("", "0.0.0.0", "*"):
        text = "127.0.0.1"
    elif text == "::":
        text = "::1"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    infos = await trio.socket.getaddrinfo(text, None, type=trio.socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {text!r}")
    return str(ipaddress.ip_address(infos[0][4][0]))


async def ask_bus_port(host: str, port: int) -> int | None:
    """The bus port the member at client address ``host:port`` is configured with.

    Asks the client port ``CONFIG GET cluster-port``; None when the answer is an
    error, unknown, or 0 (which means the default, client port + 10000).  Used by
    :meth:`Gossip.meet` only after the default bus port did not answer.
    """
    with trio.fail_after(CONNECT_TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$12\r\ncluster-port\r\n")
            data = b""
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk or len(data) + len(chunk) > 4096:
                    return None  # closed, or not an answer to this question
                data += chunk
                done, value = _config_get_value(data)
                if done:
                    break
    if value is None or not value.isdigit() or not 0 < int(value) < 65536:
        return None
    return int(value)


def _config_get_value(data: bytes) -> tuple[bool, bytes | None]:
    """``(complete, value)`` of a RESP2 ``CONFIG GET`` reply for one directive."""
    if b"\r\n" not in data:
        return False, None
    if not data.startswith(b"*2\r\n"):
        return True, None  # an error, or no such directive (*0)
    lines = data.split(b"\r\n")
    if len(lines) < 6:
        return False, None
    return True, lines[4]


# -- the protocol driver ---------------------------------------------------------


def _unix_ms() -> int:
    return int(time.time() * 1000)


class Gossip:
    """One node's gossip: answers MEET/PING, runs the ping rounds, joins seeds.

    ``bus`` is the node's :class:`~respkv.peer.bus.ClusterBus` (anything with its
    ``dial``/``link``/``addresses``/``keep_connected``/``forget`` works, which the
    tests use to run many nodes in memory); its handler must route
    :data:`OPERATIONS` to :meth:`handle`.  ``node_timeout`` is in seconds.  Time
    comes from ``trio.current_time()``, so a mock clock drives everything.
    """

    def __init__(self, state: ClusterState, bus: ClusterBus, *, node_timeout: float = DEFAULT_NODE_TIMEOUT) -> None:
        self.state = state
        self.bus = bus
        self.myself = state.myself
        record = state.membership[state.myself]
        #: This node's own address and weight, re-asserted after every merge.
        self.address = (record.host, record.port, record.bus_port, record.weight)
        self.node_timeout = node_timeout
        self.detector = FailureDetector(state.myself, node_timeout)
        #: Seconds between ping rounds.
        self.interval = max(MIN_INTERVAL, node_timeout / ROUNDS_PER_TIMEOUT)
        #: How long a ping waits for its pong; no answer means not heard.
        self.ping_timeout = node_timeout / 2
        self._told: dict[str, str] = {}  # peer -> the membership digest it last told us
        self._in_flight: set[str] = set()
        self._bus_view: Membership | None = None
        #: Set when this node's membership changed: the next round starts at once.
        self._spread = trio.Event()
        #: Bumped by CLUSTER RESET: answers to pings sent before it are ignored.
        self._generation = 0
        #: True while joining at weight 0 (see :meth:`meet`).
        self.joining = False
        #: Whether any member has been heard from since this node started.
        self.in_contact = False
        state.on_change.append(self._on_change)

    # -- the loop ------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Ping every member each interval and re-assess liveness, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._bus_view = None
            self._sync_bus()
            self.refresh()
            task_status.started()
            while True:
                for peer_id in self.state.membership.active_ids():
                    if peer_id != self.myself and peer_id not in self._in_flight:
                        self._in_flight.add(peer_id)
                        nursery.start_soon(self._ping, peer_id)
                with trio.move_on_after(self.interval):
                    await self._spread.wait()  # a membership change goes out at once
                self._spread = trio.Event()
                self.refresh()

    async def _ping(self, peer_id: str) -> None:
        try:
            link = self.bus.link(peer_id)
            if not link.connected:
                return  # the bus redials; silence meanwhile is what the detector sees
            membership = self.state.membership
            include = self._told.get(peer_id) != membership.digest()
            args = encode_ping(membership[self.myself], self._body(include))
            generation = self._generation
            self.state.count(self.state.messages_sent, "ping")
            self.state.ping_sent.setdefault(peer_id, _unix_ms())
            try:
                answer = await link.request(PING, args, timeout=self.ping_timeout)
            except (PeerUnavailable, PeerError) as exc:
                log.debug("ping to %s: %s", peer_id, exc)
                return
            self.state.count(self.state.messages_received, "pong")
            if generation != self._generation:
                return  # sent before a CLUSTER RESET: what it says of the cluster is forgotten
            try:
                self._on_answer(peer_id, answer)
            except ValueError as exc:
                log.warning("malformed pong from %s: %s", peer_id, exc)
        finally:
            self._in_flight.discard(peer_id)

    def refresh(self) -> None:
        """Re-assess every member now and install the verdicts."""
        before = self.state.states
        states = self.detector.update(self.state.membership.active_ids(), trio.current_time())
        if self.state.set_states(states):
            for node_id, state in states.items():
                if state is not before.get(node_id, NodeState.OK):
                    log.info("member %s is now %s", node_id, state.flag or "ok")

    def heard(self, peer_id: str) -> None:
        """A request or answer came from ``peer_id``: it is alive now."""
        self.in_contact = True
        self.detector.heard(peer_id, trio.current_time())
        if self.state.states.get(peer_id, NodeState.OK) is not NodeState.OK:
            self.refresh()  # a member that answers again is cleared at once

    # -- what arrives ----------------------------------------------------------------

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """Answer a gossip request from ``peer_id`` (a bus handler for :data:`OPERATIONS`).

        ``ValueError`` for a malformed or unknown request; the bus sends it back
        as an error answer.
        """
        if op == PING:
            return self._on_ping(peer_id, args)
        if op == MEET:
            return self._on_meet(peer_id, args)
        raise ValueError(f"not a gossip operation: {op!r}")

    def _on_ping(self, peer_id: str, args: list[bytes]) -> list[bytes]:
        """As in Redis only a MEET introduces a node: a PING from an unknown one (say,
        sent just before this node's CLUSTER RESET) is answered and changes nothing."""
        record, body = decode_ping(args)
        if record.node_id != peer_id:
            raise ValueError(f"PING from {peer_id} carries the record of {record.node_id}")
        self.state.count(self.state.messages_received, "ping")
        if peer_id not in self.state.membership:
            self.state.count(self.state.messages_sent, "pong")
            return self._body(include=False)
        self.heard(peer_id)
        self._take_body(peer_id, body, Membership([record]))
        self.state.count(self.state.messages_sent, "pong")
        return self._body(include=body.digest != self.state.membership.digest())

    def _on_meet(self, peer_id: str, args: list[bytes]) -> list[bytes]:
        record, vnodes = decode_meet(args)
        if record.node_id != peer_id:
            raise ValueError(f"MEET from {peer_id} carries the record of {record.node_id}")
        if vnodes != self.state.vnodes:
            raise ValueError(
                f"cluster-vnodes differs: {record.host}:{record.port} has {vnodes}, "
                f"this cluster {self.state.vnodes}"
            )
        self.state.count(self.state.messages_received, "meet")
        self.heard(peer_id)
        self.absorb(Membership([record]))
        self.state.count(self.state.messages_sent, "pong")
        return self._body(include=True)

    def _on_answer(self, peer_id: str, answer: list[bytes]) -> None:
        """A pong (to a PING or a MEET) from ``peer_id``."""
        body = decode_body(answer)
        self.heard(peer_id)
        self.state.pong_received[peer_id] = _unix_ms()
        self.state.ping_sent.pop(peer_id, None)
        self._take_body(peer_id, body, None)

    def _take_body(self, peer_id: str, body: GossipBody, extra: Membership | None) -> None:
        self.detector.receive_reports(peer_id, body.suspects, trio.current_time())
        incoming = body.membership
        if extra is not None:
            incoming = extra if incoming is None else incoming.merge(extra)
        changed = incoming is not None and self.absorb(incoming)
        if body.suspects and not changed:
            self.refresh()  # new reports may tip a suspect over to fail
        self._told[peer_id] = body.digest

    def absorb(self, other: Membership) -> bool:
        """Merge gossiped membership, then re-assert this node's own record.

        True if this node's view changed (the detector is then re-run, which also
        starts the silence clock of new members).
        """
        changed = self.state.merge(other)
        host, port, bus_port, weight = self.address
        own = self.state.membership.get(self.myself)
        if weight == 0 and own is not None and own.left:
            if changed:  # a node that left and was forgotten stays out: nothing to re-assert
                log.warning("this node left the cluster and was forgotten by it; stop it, or CLUSTER RESET it")
                self.refresh()
            return changed
        if self.state.set_myself(host, port, bus_port, weight):
            log.info(
                "re-asserted this node's record at epoch %d",
                self.state.membership[self.myself].epoch,
            )
            changed = True
        if changed:
            self.refresh()
        return changed

    def views_agree(self) -> bool:
        """Whether every live member last told this node the membership it has now
        (what a move waits for, as riak_core waits for a ready ring)."""
        if self.joining:
            return False  # the weight-0 record is not this node's lasting one
        digest = self.state.membership.digest()
        topology = self.state.topology
        return all(self._told.get(member) == digest for member in self.state.membership.active_ids()
                   if member != self.myself and topology.is_live(member))

    async def leave(self) -> bool:
        """Give up this node's share of the ring for good (``CLUSTER LEAVE``): its
        record's weight becomes 0, so it stays a member, holding no slot, while it
        hands its keys over; False if it was leaving already.

        The other live members get the new record first (a PING each, answered
        or timed out), and this node installs it last: until then it still
        coordinates its slots, so a client never bounces between this node,
        which would send it on, and a member still sending it here."""
        host, port, bus_port, weight = self.address
        self.address = (host, port, bus_port, 0)
        if weight == 0:
            return False
        leaving = self.state.membership.with_member(self.myself, host, port, bus_port, 0)
        body = encode_body(leaving.digest(), suspects(self.state.states), leaving)
        args = encode_ping(leaving[self.myself], body)
        async with trio.open_nursery() as nursery:
            for peer_id in self.state.membership.active_ids():
                link = self.bus.links.get(peer_id)
                if peer_id != self.myself and link is not None and link.connected:
                    nursery.start_soon(self._tell, link, args)
        if not self.state.set_myself(*self.address):
            return False
        self.refresh()
        return True

    async def _tell(self, link, args: list[bytes]) -> None:
        with contextlib.suppress(PeerUnavailable, PeerError, ValueError):  # a member not told learns by gossip
            self._on_answer(link.peer_id, await link.request(PING, args, timeout=self.ping_timeout))

    @property
    def leaving(self) -> bool:
        return self.address[3] == 0

    def reset(self, weight: int) -> None:
        """``CLUSTER RESET``: know only this node again, with ``weight``."""
        host, port, bus_port, _ = self.address
        self.address = (host, port, bus_port, weight)
        self._generation += 1
        self.state.reset_membership(host, port, bus_port, weight)
        self.refresh()

    def forget(self, node_id: str) -> None:
        """Remove ``node_id`` from the membership for good: its record becomes a
        tombstone, which gossip spreads and no older record can undo."""
        self.absorb(self.state.membership.without_member(node_id))

    def _body(self, include: bool) -> list[bytes]:
        membership = self.state.membership
        return encode_body(
            membership.digest(), suspects(self.state.states), membership if include else None
        )

    # -- the bus's dialing table -----------------------------------------------------

    def _on_change(self, _topology) -> None:
        if self.state.membership is not self._bus_view:
            self._sync_bus()
            self._spread.set()

    def _sync_bus(self) -> None:
        """Point the bus at every active member and forget the ones that left."""
        membership = self._bus_view = self.state.membership
        addresses = self.bus.addresses
        active = set()
        for member in membership.active():
            if member.node_id == self.myself:
                continue
            active.add(member.node_id)
            addresses[member.node_id] = (member.host, member.bus_port)
            self.bus.keep_connected(member.node_id)
        for peer_id in [peer_id for peer_id in addresses if peer_id not in active]:
            self.bus.forget(peer_id)
            self._told.pop(peer_id, None)

    # -- meeting and joining -----------------------------------------------------------

    async def meet(
        self, host: str, port: int, bus_port: int | None = None, *, expect: str | None = None
    ) -> str:
        """Introduce this node to the member at client address ``host:port``.

        ``bus_port`` defaults to ``port + 10000``; when nothing answers there the
        member is asked for its configured ``cluster-port`` on its client port.
        Merges the member's whole membership and returns its node id (this node's
        own id if the address is this node).  ``MeetError`` when no member answers,
        or when ``expect`` is given and another node answers at the address (a
        recorded address that someone else took since).
        """
        if bus_port is not None:
            peer_id = await self._dial(host, bus_port)
        else:
            peer_id = None
            failure = None
            if port + BUS_PORT_OFFSET <= 65535:
                try:
                    peer_id = await self._dial(host, port + BUS_PORT_OFFSET)
                except MeetError as exc:
                    failure = exc
            if peer_id is None:
                try:
                    asked = await ask_bus_port(host, port)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    raise MeetError(f"no member answers at {host}:{port}: {exc!r}") from None
                if asked is None:
                    raise failure or MeetError(f"{host}:{port} names no cluster bus port")
                peer_id = await self._dial(host, asked)
        if expect is not None and peer_id != expect:
            raise MeetError(f"{host}:{port} is node {peer_id} now, not {expect}")
        if peer_id == self.myself:
            return peer_id
        link = self.bus.link(peer_id)
        await self._connected([link], CONNECT_TIMEOUT)
        membership = self.state.membership
        record = membership[self.myself]
        # A node alone joins at weight 0 (no slot, so nobody sends it clients
        # yet), connects to every member, and only then takes its share: it
        # never coordinates a write it has no link to replicate.
        weight = self.address[3]
        joining = weight > 0 and membership.active_ids() == (self.myself,)
        if joining:
            record = membership.with_member(self.myself, *self.address[:3], 0)[self.myself]
            self.address = (*self.address[:3], 0)
            self.joining = True
        self.state.count(self.state.messages_sent, "meet")
        try:
            try:
                answer = await link.request(MEET, encode_meet(record, self.state.vnodes), timeout=MEET_TIMEOUT)
            except (PeerUnavailable, PeerError) as exc:
                raise MeetError(f"{host}:{port} did not accept MEET: {exc}") from None
            self.state.count(self.state.messages_received, "pong")
            try:
                self._on_answer(peer_id, answer)
            except ValueError as exc:
                raise MeetError(f"{host}:{port} answered MEET with {exc}") from None
            if joining:
                links = [self.bus.link(m) for m in self.state.membership.active_ids() if m != self.myself]
                await self._connected(links, CONNECT_TIMEOUT)
        finally:
            if joining:
                self.joining = False
                self.address = (*self.address[:3], weight)
                if self.state.set_myself(*self.address):
                    self.refresh()
        return peer_id

    @staticmethod
    async def _connected(links, timeout: float) -> None:
        """Wait until every link of ``links`` is connected, ``timeout`` seconds at most."""
        with trio.move_on_after(timeout):
            while not all(link.connected for link in links):  # the bus starts new links as tasks
                await trio.sleep(0.001)

    async def _dial(self, host: str, bus_port: int) -> str:
        try:
            return await self.bus.dial(host, bus_port)
        except AuthenticationFailed as exc:
            raise MeetError(f"the cluster bus at {host}:{bus_port} refused the handshake: {exc}") from None
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, wire.BusProtocolError) as exc:
            raise MeetError(f"cannot reach a cluster bus at {host}:{bus_port}: {exc!r}") from None

    async def join(
        self,
        seeds: Iterable[tuple[str, int, int | None]],
        *,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Meet the seed addresses, retrying with backoff until one answers.

        Seeds are ``(host, client port, bus port or None)``.  A seed that turns
        out to be this node is skipped; if every seed is, there is nobody to join.
        """
        seeds = list(seeds)
        task_status.started()
        delay = JOIN_RETRY_MIN
        attempt = 0
        while True:
            attempt += 1
            unanswered = 0
            for host, port, bus_port in seeds:
                try:
                    peer_id = await self.meet(host, port, bus_port)
                except MeetError as exc:
                    unanswered += 1
                    log.log(logging.WARNING if attempt == 1 else logging.DEBUG, "join: %s", exc)
                    continue
                if peer_id != self.myself:
                    log.info("joined the cluster through %s:%d (%s)", host, port, peer_id)
                    return
            if not unanswered:
                return
            await trio.sleep(delay)
            delay = min(JOIN_RETRY_MAX, delay * 2)
