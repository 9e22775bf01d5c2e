"""Publish/subscribe: ``SUBSCRIBE``, ``PSUBSCRIBE``, ``SSUBSCRIBE`` and ``PUBLISH``, as Redis 7.0.

Theory of operation
-------------------
The node keeps, per channel, per pattern and per shard channel, the ids of the
connections subscribed to it (:class:`PubSub`, in subscription order); each
connection keeps its own names in :class:`Subscriptions` (``session.subscriptions``,
None while it has none).  ``PUBLISH`` finds the channel's subscribers and every
pattern whose glob matches the channel, and gives each receiver one frame in its
own protocol: ``message channel payload`` (``pmessage pattern channel payload``,
``smessage`` for a shard channel) as a RESP2 array or a RESP3 push.

A message joins the receiver's replies of the current poller round, so it is sent
before the publisher hears its count; to the publisher itself (RESP3 lets a
subscriber publish) it goes just before that count, as Redis writes it.  A receiver
in the middle of something whose bytes must come first (a task sending a long
reply or serving a blocking command, a batch waiting for replicas) gets its messages
in :attr:`PubSub.pending`, sent by the first round after it is free (the
:meth:`PubSub.flush` round hook; the cron nudges).  What waits is bounded by
``client-output-buffer-limit pubsub``: a receiver whose backlog passes the hard
limit, or stays above the soft limit for its seconds, is disconnected, as Redis
disconnects a subscriber that does not read.

A RESP2 connection with any subscription is in the subscribed context: only
(P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING (answered ``pong``, as an array), QUIT and
RESET run; :func:`subscribed_refusal` gives the others their error.

In a cluster, ``PUBLISH`` reaches the subscribers of every member: the node that
runs it delivers it and sends it one-way to each connected member over the cluster
bus (:meth:`PubSub.forward`, bus operation ``PUBLISH``), as Redis Cluster
broadcasts it; its reply counts this node's receivers, as Redis Cluster's does.
Shard channels are routed by their hash slot, like keys, and stay on the node that
coordinates the slot.  Client-side caching's RESP2 redirection uses the channel
``__redis__:invalidate`` (:func:`invalidate_message`).
"""

from __future__ import annotations

import logging
from typing import Callable

import trio

from ..keyspace.glob import compile_glob
from ..protocol import reply

log = logging.getLogger(__name__)

__all__ = ["PubSub", "Subscriptions", "CHANNEL", "PATTERN", "SHARD", "SUBSCRIBED_CONTEXT",
           "subscribed_refusal", "message_frame", "invalidate_message", "PUBLISH_OPERATION"]

#: The three kinds of subscription.
CHANNEL, PATTERN, SHARD = 0, 1, 2
_SUBSCRIBE_NAMES = (b"subscribe", b"psubscribe", b"ssubscribe")
_UNSUBSCRIBE_NAMES = (b"unsubscribe", b"punsubscribe", b"sunsubscribe")
_MESSAGE_NAMES = (b"message", b"pmessage", b"smessage")

#: The commands a RESP2 connection with subscriptions may run (Redis 7.0's list).
SUBSCRIBED_CONTEXT = frozenset({
    "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
    "ping", "quit", "reset",
})
#: The cluster bus operation carrying a published message to the other members.
PUBLISH_OPERATION = b"PUBLISH"
#: Client-side caching's channel for RESP2 redirect targets.
INVALIDATE_CHANNEL = b"__redis__:invalidate"


def subscribed_refusal(command_name: str) -> str:
    """The error of a command a RESP2 connection may not run while subscribed."""
    return (f"ERR Can't execute '{command_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
            "PING / QUIT / RESET are allowed in this context")


def _header(version: int, count: int) -> bytes:
    return (b">%d\r\n" if version == 3 else b"*%d\r\n") % count


def message_frame(version: int, parts: list[bytes]) -> bytes:
    """A pub/sub frame of bulk strings: a RESP2 array or a RESP3 push."""
    return _header(version, len(parts)) + b"".join(map(reply.bulk, parts))


def invalidate_message(keys_frame: bytes) -> bytes:
    """A client-side caching invalidation for a RESP2 redirect target subscribed to
    anything: a ``message`` on ``__redis__:invalidate`` whose payload is
    ``keys_frame`` (an array of keys, or a null for "every key")."""
    return b"*3\r\n$7\r\nmessage\r\n$20\r\n" + INVALIDATE_CHANNEL + b"\r\n" + keys_frame


class Subscriptions:
    """One connection's channels, patterns and shard channels (in subscription order)."""

    __slots__ = ("names",)

    def __init__(self) -> None:
        self.names: tuple[dict[bytes, None], dict[bytes, None], dict[bytes, None]] = ({}, {}, {})

    def count(self, kind: int) -> int:
        """The figure a (un)subscribe reply carries: channels and patterns together,
        shard channels on their own (as Redis counts them)."""
        if kind == SHARD:
            return len(self.names[SHARD])
        return len(self.names[CHANNEL]) + len(self.names[PATTERN])

    def total(self) -> int:
        return sum(map(len, self.names))


class PubSub:
    """The node's subscriptions and the delivery of messages (see the module doc)."""

    def __init__(self, node) -> None:
        self.node = node
        #: Per kind: name → subscriber ids (dicts keep subscription order).
        self.subscribers: tuple[dict[bytes, dict[int, None]], ...] = ({}, {}, {})
        self._matchers: dict[bytes, Callable[[bytes], bool]] = {}
        #: Receiver id → frames waiting until it is free, and their bytes.
        self.pending: dict[int, list[bytes]] = {}
        self.pending_bytes: dict[int, int] = {}
        #: Receiver id → when its backlog went over the soft limit.
        self._over_soft: dict[int, float] = {}
        #: Sends a published message to the other cluster members (cluster mode).
        self.forward: Callable[[bytes, bytes], None] | None = None
        node.round_hooks.append(self.flush)
        node.cron_hooks.append(self.check_limits)
        node.client_closed_hooks.append(self.forget)
        node.client_reset_hooks.append(self.forget)

    def join_cluster(self, bus, operations: dict) -> None:
        """Cluster mode: take messages from the other members, and send them ours."""
        operations[PUBLISH_OPERATION] = self.handle_bus

        def forward(channel: bytes, message: bytes) -> None:
            for link in list(bus.links.values()):
                link.notify(PUBLISH_OPERATION, (channel, message))

        self.forward = forward

    # -- subscribing ---------------------------------------------------------------

    def subscribe(self, session, kind: int, names: list[bytes]) -> bytes:
        """Subscribe ``session`` to ``names``; the confirmations, one frame each."""
        mine = session.subscriptions
        if mine is None:
            mine = session.subscriptions = Subscriptions()
        own = mine.names[kind]
        registry = self.subscribers[kind]
        version = session.proto.version
        out = []
        for name in names:
            if name not in own:
                own[name] = None
                registry.setdefault(name, {})[session.id] = None
                if kind == PATTERN and name not in self._matchers:
                    self._matchers[name] = compile_glob(name)
            out.append(_header(version, 3) + reply.bulk(_SUBSCRIBE_NAMES[kind]) + reply.bulk(name)
                       + reply.integer(mine.count(kind)))
        session.refresh_fast()
        return b"".join(out)

    def unsubscribe(self, session, kind: int, names: list[bytes]) -> bytes:
        """Unsubscribe ``session`` from ``names`` (from all of this kind when empty)."""
        mine = session.subscriptions
        own = mine.names[kind] if mine is not None else {}
        version = session.proto.version
        if not names:
            names = list(own)
            if not names:
                return (_header(version, 3) + reply.bulk(_UNSUBSCRIBE_NAMES[kind]) + session.proto.null
                        + reply.integer(mine.count(kind) if mine is not None else 0))
        out = []
        for name in names:
            if name in own:
                del own[name]
                self._drop(kind, name, session.id)
            out.append(_header(version, 3) + reply.bulk(_UNSUBSCRIBE_NAMES[kind]) + reply.bulk(name)
                       + reply.integer(mine.count(kind) if mine is not None else 0))
        if mine is not None and not mine.total():
            session.subscriptions = None
        session.refresh_fast()
        return b"".join(out)

    def _drop(self, kind: int, name: bytes, client: int) -> None:
        registry = self.subscribers[kind]
        members = registry.get(name)
        if members is not None:
            members.pop(client, None)
            if not members:
                del registry[name]
                if kind == PATTERN:
                    self._matchers.pop(name, None)

    def forget(self, session) -> None:
        """Drop every subscription of ``session`` (it closed, or RESET)."""
        mine = session.subscriptions
        if mine is not None:
            for kind, own in enumerate(mine.names):
                for name in own:
                    self._drop(kind, name, session.id)
            session.subscriptions = None
            session.refresh_fast()
        self._discard_backlog(session.id)

    # -- publishing ----------------------------------------------------------------

    def publish(self, channel: bytes, message: bytes, publisher=None, shard: bool = False) -> tuple[int, bytes]:
        """Deliver ``message`` on ``channel`` to this node's subscribers.  Returns how
        many received it, and the frames for ``publisher`` itself (sent just before
        its reply)."""
        receivers = 0
        own = []
        clients = self.node.clients
        kind = SHARD if shard else CHANNEL
        # (copies: a receiver over its output limit is disconnected, and forgotten, on the way)
        for client in tuple(self.subscribers[kind].get(channel, ())):
            session = clients.get(client)
            if session is not None:
                receivers += 1
                frame = message_frame(session.proto.version, [_MESSAGE_NAMES[kind], channel, message])
                own.append(frame) if session is publisher else self._deliver(session, frame)
        if not shard and self._matchers:
            for pattern, matches in list(self._matchers.items()):
                if not matches(channel):
                    continue
                for client in tuple(self.subscribers[PATTERN].get(pattern, ())):
                    session = clients.get(client)
                    if session is not None:
                        receivers += 1
                        frame = message_frame(session.proto.version, [b"pmessage", pattern, channel, message])
                        own.append(frame) if session is publisher else self._deliver(session, frame)
        return receivers, b"".join(own)

    def handle_bus(self, peer_id: str, op: bytes, args: list[bytes]) -> None:
        """A member forwarded a published message: deliver it here (never onward)."""
        if len(args) != 2:
            raise ValueError("PUBLISH takes a channel and a message")
        self.publish(args[0], args[1])

    # -- delivery ------------------------------------------------------------------

    def _deliver(self, session, frame: bytes) -> None:
        poller = session.poller
        if poller is None or session.closing:
            return
        client = session.id
        if client not in self.pending and _free(session):
            poller.push(session, frame)
            return
        self.pending.setdefault(client, []).append(frame)
        backlog = self.pending_bytes[client] = self.pending_bytes.get(client, 0) + len(frame)
        hard, soft, _ = self.node.config["client-output-buffer-limit"]["pubsub"]
        if hard and backlog > hard:
            self._disconnect(session, f"hard limit {hard}")
        elif soft and backlog > soft:
            self._over_soft.setdefault(client, trio.current_time())
        poller.wake()

    def flush(self) -> None:
        """Send what waits to each receiver that is free now (a round hook)."""
        if not self.pending:
            return
        clients = self.node.clients
        for client in list(self.pending):
            session = clients.get(client)
            if session is None or session.poller is None:
                self._discard_backlog(client)
            elif _free(session):
                frames = self.pending.pop(client)
                self.pending_bytes.pop(client, None)
                self._over_soft.pop(client, None)
                session.poller.push(session, b"".join(frames))

    def check_limits(self) -> None:
        """The cron's part: disconnect receivers over the soft limit for too long,
        and wake the pollers of receivers still waiting for their messages."""
        if not self.pending:
            return
        _, soft, seconds = self.node.config["client-output-buffer-limit"]["pubsub"]
        now = trio.current_time()
        for client, since in list(self._over_soft.items()):
            session = self.node.clients.get(client)
            if session is None or self.pending_bytes.get(client, 0) <= soft:
                self._over_soft.pop(client, None)
            elif now - since >= seconds:
                self._disconnect(session, f"soft limit {soft} for {seconds}s")
        for client in self.pending:
            session = self.node.clients.get(client)
            if session is not None and session.poller is not None:
                session.poller.wake()

    def _disconnect(self, session, limit: str) -> None:
        log.warning("closing pub/sub client %s: its unsent messages (%d bytes) passed the %s of "
                    "client-output-buffer-limit pubsub", session.addr, self.pending_bytes.get(session.id, 0), limit)
        self._discard_backlog(session.id)
        session.kill()

    def _discard_backlog(self, client: int) -> None:
        self.pending.pop(client, None)
        self.pending_bytes.pop(client, None)
        self._over_soft.pop(client, None)

    # -- introspection -------------------------------------------------------------

    def counts(self, names: list[bytes], kind: int) -> list[tuple[bytes, int]]:
        """PUBSUB NUMSUB / SHARDNUMSUB: subscribers per name."""
        registry = self.subscribers[kind]
        return [(name, len(registry.get(name, ()))) for name in names]

    def active(self, kind: int, pattern: bytes | None) -> list[bytes]:
        """PUBSUB CHANNELS / SHARDCHANNELS: names with subscribers, matching ``pattern``."""
        names = list(self.subscribers[kind])
        if pattern is None:
            return names
        matches = compile_glob(pattern)
        return [name for name in names if matches(name)]

    def stats(self) -> dict[str, int]:
        """INFO stats' pub/sub figures."""
        return {
            "pubsub_channels": len(self.subscribers[CHANNEL]),
            "pubsub_patterns": len(self.subscribers[PATTERN]),
            "pubsubshard_channels": len(self.subscribers[SHARD]),
        }


def _free(session) -> bool:
    """Whether a message for ``session`` may join its poller's replies now: it is not
    in a task of its own nor waiting for replicas (their bytes come first)."""
    return session.cancel_scope is None and session.parked is None
