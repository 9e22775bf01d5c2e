"""``COMMAND`` entries: a plain keyspace's collection change logged as its command.

A node without replication logs a key's whole value each round it changed
(:mod:`.keyspace_images`), which for a collection costs what it holds: a
``SADD`` of one member to a set of 100,000 would log 100,000 members.  So a
:data:`~respkv.commands.replay.REPLAYABLE` command run on a collection that
exists and has no expiry is logged as itself, an entry whose body is the
command's arguments::

    body = count (u32) | count x argument length (u32) | arguments back to back

(little endian), and replayed by running it again (:func:`command_replay`) over
the value the entries before it restored, which is exactly the value it ran
over (the journal images instead while a snapshot is written; see
:mod:`.journal`).  The key has no expiry before the command, so it is there
when the entry replays; a key that is not (a damaged directory) stays as it
is, with a warning.  A command that changed nothing logs nothing; one that
failed midway is imaged.

:func:`logging_table` makes the command table whose replayable commands do
this, for the node to serve with.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..commands.replay import REPLAYABLE, ClientlessSession, run_replayable
from ..commands.table import CommandTable, per_request_run
from .entries import BATCH, COMMAND, KIND_AND_KEY_LENGTH, batch, split_batch
from .journal import Journal

log = logging.getLogger(__name__)


def encode_command(args: list[bytes]) -> bytes:
    """The body of a ``COMMAND`` entry of ``args`` (see the module doc): laid out
    as a :func:`~.entries.batch` of the arguments, without its kind byte."""
    return batch(args)[len(BATCH):]


def decode_command(body: bytes) -> list[bytes]:
    """The arguments of a ``COMMAND`` entry's body; ValueError if malformed."""
    args = split_batch(BATCH + body)
    if not args:
        raise ValueError("command entry without arguments")
    return args


def logging_table(table: CommandTable, journal: Journal, keyspace) -> CommandTable:
    """``table`` with each replayable command logging itself as a ``COMMAND``
    entry when it changes an existing collection without expiry (see the module
    doc); every other command as it is."""
    logged = CommandTable()
    for spec in table:
        if spec.name in REPLAYABLE:
            handler = _logging_handler(spec.handler, journal, keyspace)
            spec = dataclasses.replace(
                spec, handler=handler,
                run_handler=None if spec.run_handler is None else per_request_run(handler, spec.min_args),
            )
        logged.add(spec)
    return logged


def _logging_handler(handler: Callable, journal: Journal, keyspace) -> Callable:
    data = keyspace.data
    expires = keyspace.expires
    begin = journal.begin_operation
    end = journal.end_operation
    head = KIND_AND_KEY_LENGTH.pack

    def logging(session, args):
        key = args[1]
        value = data.get(key)
        if value is None or value.__class__ is bytes or key in expires:
            return handler(session, args)  # a new key, or one whose expiry the replay would meet
        begin(key)
        try:
            result = handler(session, args)
        except BaseException:
            end(None)
            raise
        end(b"".join((head(COMMAND, len(key)), key, encode_command(args))))
        return result

    logging.__name__ = handler.__name__
    logging.__doc__ = handler.__doc__
    return logging


def command_replay(node) -> Callable[[bytes, bytes], bool]:
    """``run(key, body)``: runs the command of a ``COMMAND`` entry on ``node``'s
    keyspace at start; False, with a warning, if the key is not there to run it
    on.  ValueError if the entry is malformed."""
    session = ClientlessSession(node)
    table = node.table
    keyspace = node.keyspace

    def run(key: bytes, body: bytes) -> bool:
        args = decode_command(body)
        if keyspace.get(key) is None or not run_replayable(table, session, key, args):
            log.warning("the commit log's command on key %r does not follow the value before it; "
                        "the key stays as that value", key[:64])
            return False
        return True

    return run
