"""Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB.

The subscriptions and the delivery of messages are the node's registry
(:mod:`respkv.net.pubsub`); these handlers check arguments and shape the replies
as Redis 7.0 does.  The kinds are 0 (channels), 1 (patterns) and 2 (shard channels).
"""

from __future__ import annotations

from ..protocol import reply
from .table import CommandError, command, container

_CHANNEL, _PATTERN, _SHARD = 0, 1, 2


@command("subscribe", "Listens for messages published to channels.", since="2.0.0")
def subscribe(s, args):
    return s.node.pubsub.subscribe(s, _CHANNEL, args[1:])


@command("psubscribe", "Listens for messages published to channels that match one or more patterns.",
         since="2.0.0")
def psubscribe(s, args):
    return s.node.pubsub.subscribe(s, _PATTERN, args[1:])


@command("ssubscribe", "Listens for messages published to shard channels.", since="7.0.0")
def ssubscribe(s, args):
    return s.node.pubsub.subscribe(s, _SHARD, args[1:])


@command("unsubscribe", "Stops listening to messages posted to channels.", since="2.0.0")
def unsubscribe(s, args):
    return s.node.pubsub.unsubscribe(s, _CHANNEL, args[1:])


@command("punsubscribe", "Stops listening to messages published to channels that match one or more patterns.",
         since="2.0.0")
def punsubscribe(s, args):
    return s.node.pubsub.unsubscribe(s, _PATTERN, args[1:])


@command("sunsubscribe", "Stops listening to messages posted to shard channels.", since="7.0.0")
def sunsubscribe(s, args):
    return s.node.pubsub.unsubscribe(s, _SHARD, args[1:])


@command("publish", "Posts a message to a channel (in a cluster, to the subscribers of every node).",
         since="2.0.0")
def publish(s, args):
    pubsub = s.node.pubsub
    receivers, own = pubsub.publish(args[1], args[2], s)
    if pubsub.forward is not None:
        pubsub.forward(args[1], args[2])
    return own + reply.integer(receivers)


@command("spublish", "Posts a message to a shard channel.", since="7.0.0")
def spublish(s, args):
    receivers, own = s.node.pubsub.publish(args[1], args[2], s, shard=True)
    return own + reply.integer(receivers)


container("pubsub", "A container for Pub/Sub commands.", since="2.8.0")


@command("pubsub|channels", "Returns the active channels.", since="2.8.0")
def pubsub_channels(s, args):
    return _names(s, args, _CHANNEL)


@command("pubsub|shardchannels", "Returns the active shard channels.", since="7.0.0")
def pubsub_shardchannels(s, args):
    return _names(s, args, _SHARD)


def _names(s, args, kind: int) -> bytes:
    if len(args) > 3:  # Redis's own wording for this one
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for "
                           f"'{args[1].decode('latin-1')}'. Try PUBSUB HELP.")
    return reply.bulk_array(s.node.pubsub.active(kind, args[2] if len(args) == 3 else None))


@command("pubsub|numsub", "Returns a count of subscribers to channels.", since="2.8.0")
def pubsub_numsub(s, args):
    return _counts(s, args, _CHANNEL)


@command("pubsub|shardnumsub", "Returns the count of subscribers of shard channels.", since="7.0.0")
def pubsub_shardnumsub(s, args):
    return _counts(s, args, _SHARD)


def _counts(s, args, kind: int) -> bytes:
    pairs = s.node.pubsub.counts(args[2:], kind)
    return reply.array([part for name, n in pairs for part in (reply.bulk(name), reply.integer(n))])


@command("pubsub|numpat", "Returns a count of unique pattern subscriptions.", since="2.8.0")
def pubsub_numpat(s, args):
    return reply.integer(len(s.node.pubsub.subscribers[_PATTERN]))


_PUBSUB_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
]


@command("pubsub|help", "Returns helpful text about the different subcommands.", since="6.2.0")
def pubsub_help(s, args):
    return reply.help_lines(_PUBSUB_HELP)
