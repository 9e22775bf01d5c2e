"""Commands run again without a client: shipped to replicas, replayed from the commit log.

A collection changed by a small command is cheaper to send and to log as that
command than as the whole collection, but only for commands that, run again
over the same prior value with the same arguments, make the same new value:
:data:`REPLAYABLE` lists them (one key, at position 1; no clock, no randomness,
no other key).  A replica runs one a coordinator shipped
(:mod:`respkv.replication.replica`); a node starting up runs one its commit log
holds (:mod:`respkv.persistence.command_entries`); both through
:func:`run_replayable`, with a :class:`ClientlessSession` standing in for the
client.

A command that is not replayable itself may still change one key as a
replayable one would: a blocking pop served at once pops as ``LPOP`` does, an
``SPOP`` removes what ``SREM`` of the members it drew would.  Such a command
runs its change through :func:`logged_as`, naming that equivalent, so that a
commit log holding commands (the keyspace's ``command_log``) logs it instead of
the collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..protocol.reply import RESP2
from .table import CommandError, CommandTable

T = TypeVar("T")

#: Single-key commands whose result depends only on the key's prior value and the
#: arguments (no clock, no randomness): run again over the same prior value they
#: make the same value.
REPLAYABLE = frozenset(
    """lpush rpush lpushx rpushx lpop rpop lset linsert lrem ltrim
    hset hsetnx hmset hdel hincrby hincrbyfloat
    sadd srem
    zadd zrem zincrby zremrangebyscore zremrangebyrank zremrangebylex zpopmin zpopmax""".split()
)


class ClientlessSession:
    """What a command handler needs of a session, for commands run with no client.

    Handlers read the keyspace, the node and counters through their session; a
    replica running a shipped command, or a replay of the commit log, has no
    client, so it hands them this."""

    proto = RESP2
    in_exec = False
    multi = None
    tracking = None

    def __init__(self, node) -> None:
        self.node = node
        self.ks = node.keyspace
        self.stats = type(node.stats)()  # counters of its own: not client traffic


def run_replayable(table: CommandTable, session: ClientlessSession, key: bytes, command: list[bytes]) -> bool:
    """Run ``command``, one of :data:`REPLAYABLE` naming ``key``, as a client would;
    False if it refuses to run (an error reply, which changes nothing).  Raises
    ValueError for a command that is not replayable on ``key``."""
    spec = table.lookup(command[0])
    if spec is None or spec.name not in REPLAYABLE or spec.first_key != 1 or command[1:2] != [key] or not (
            spec.min_args <= len(command) <= spec.max_args):
        raise ValueError(f"{command[0][:64]!r} cannot be run again on a key")
    try:
        spec.handler(session, command)
    except CommandError:
        return False
    return True


def logged_as(ks, key: bytes, change: Callable[..., T], command: list[bytes] | Callable[[T], list[bytes]],
              *change_args) -> T:
    """Run ``change(*change_args)``, which changes the collection at ``key`` as
    the replayable ``command`` (its arguments, or ``command(result)``) would; with
    a command log on ``ks`` (its ``run``: an existing collection without expiry,
    no other change bracketed now), that command is what the log holds of the
    change.  Returns the result."""
    log = ks.command_log
    return change(*change_args) if log is None else log.run(key, command, change, *change_args)
