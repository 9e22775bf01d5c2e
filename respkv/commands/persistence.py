"""Persistence commands: SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE, SHUTDOWN.

In respkv one mechanism stands for Redis's RDB saves and AOF rewrites alike: the
journal's rewrite writes a new snapshot while the node serves and switches to a
fresh commit log (see :mod:`respkv.persistence.journal` and
:mod:`respkv.persistence.rewrites`).  So ``BGSAVE`` and ``BGREWRITEAOF`` start the
same background work, and while it runs each answers with its own "already in
progress" error; ``SAVE`` runs it to completion before replying (other clients are
served meanwhile, unlike in Redis, where SAVE blocks the server).  Replies and
errors are Redis 7.0's texts.

``SHUTDOWN`` takes Redis's arguments: ``SAVE`` writes a snapshot first (also the
default when a ``save`` schedule is set), ``NOSAVE`` never, ``FORCE`` stops even if
that snapshot fails; ``NOW`` is accepted and changes nothing (respkv has no
Redis-style replicas to wait for), so there is never a shutdown in progress for
``ABORT`` to cancel.  The node then stops as on SIGTERM - the commit log is written
and fsynced - and, as in Redis, the client gets no reply: its connection closes.
"""

from __future__ import annotations

import logging

from ..errors import SYNTAX
from ..protocol import reply
from .table import CloseConnection, CommandError, command

log = logging.getLogger(__name__)

SAVE_RUNNING = "ERR Background save already in progress"
REWRITE_RUNNING = "ERR Background append only file rewriting already in progress"
NO_JOURNAL = "ERR This node keeps no journal of its own: nothing to save"
SHUTDOWN_FAILED = "ERR Errors trying to SHUTDOWN. Check logs."


def _rewrites(s):
    rewrites = s.node.rewrites
    if rewrites is None:
        raise CommandError(NO_JOURNAL)
    return rewrites


@command("save", "Synchronously saves the database(s) to disk.", group="server")
async def save(s, args):
    rewrites = _rewrites(s)
    if rewrites.running:
        raise CommandError(SAVE_RUNNING)
    try:
        await rewrites.save()
    except Exception as exc:  # Redis answers a bare -ERR and logs why
        log.error("SAVE failed: %s", exc)
        raise CommandError("ERR") from None
    return reply.OK


@command("bgsave", "Asynchronously saves the database(s) to disk.", group="server")
def bgsave(s, args):
    schedule = False
    if len(args) > 1:
        if len(args) == 2 and args[1].lower() == b"schedule":
            schedule = True
        else:
            raise CommandError(SYNTAX)
    rewrites = _rewrites(s)
    if rewrites.running:
        if schedule:
            rewrites.schedule()
            return reply.simple("Background saving scheduled")
        raise CommandError(SAVE_RUNNING)
    rewrites.start("BGSAVE")
    return reply.simple("Background saving started")


@command("bgrewriteaof", "Asynchronously rewrites the append-only file to disk.", group="server")
def bgrewriteaof(s, args):
    rewrites = _rewrites(s)
    if rewrites.running:
        raise CommandError(REWRITE_RUNNING)
    rewrites.start("BGREWRITEAOF")
    return reply.simple("Background append only file rewriting started")


@command("lastsave", "Returns the Unix timestamp of the last successful save to disk.", group="server")
def lastsave(s, args):
    return reply.integer(s.node.last_save)


@command("shutdown", "Synchronously saves the database(s) to disk and shuts down the server.",
         group="server")
async def shutdown(s, args):
    flags: set[bytes] = set()
    abort = False
    for raw in args[1:]:
        word = raw.lower()
        if word in (b"nosave", b"save", b"now", b"force"):
            flags.add(word)
        elif word == b"abort":
            abort = True
        else:
            raise CommandError(SYNTAX)
    if (abort and flags) or {b"nosave", b"save"} <= flags:
        raise CommandError(SYNTAX)
    if abort:
        raise CommandError("ERR No shutdown in progress.")
    snapshot = True if b"save" in flags else False if b"nosave" in flags else None
    if not await s.node.shutdown(save=snapshot, force=b"force" in flags):
        raise CommandError(SHUTDOWN_FAILED)
    raise CloseConnection(b"")  # no reply: the connection closes, as in Redis
