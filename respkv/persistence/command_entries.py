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
this, for the node to serve with; :class:`CommandLog` is the bracket they use,
which the keyspace offers other commands too (a blocking pop served at once is
logged as ``LPOP``, ``SPOP`` as ``SREM`` of what it drew; see
:func:`~respkv.commands.replay.logged_as`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..commands.replay import REPLAYABLE, ClientlessSession, run_replayable
from ..commands.table import CommandTable, per_request_run
from .entries import BATCH, COMMAND, KIND_AND_KEY_LENGTH, batch_lengths, split_batch
from .journal import Journal

log = logging.getLogger(__name__)


def encode_command(args: list[bytes]) -> bytes:
    """The body of a ``COMMAND`` entry of ``args`` (see the module doc): laid out
    as a :func:`~.entries.batch` of the arguments, without its kind byte."""
    return b"".join((batch_lengths(args), *args))


def decode_command(body: bytes) -> list[bytes]:
    """The arguments of a ``COMMAND`` entry's body; ValueError if malformed."""
    args = split_batch(BATCH + body)
    if not args:
        raise ValueError("command entry without arguments")
    return args


class CommandLog:
    """Brackets a change of one key that the journal may log as a command (the
    keyspace's ``command_log``, see :func:`~respkv.commands.replay.logged_as`)."""

    def __init__(self, journal: Journal, keyspace) -> None:
        self._data = keyspace.data
        self._expires = keyspace.expires
        self._begin = journal.begin_operation
        self._end = journal.end_operation

    def run(self, key: bytes, command, change: Callable, *change_args):
        """Run ``change(*change_args)``, a change of ``key`` equal to ``command``
        (a command's arguments, or a function of the change's result that makes
        them), and return its result.  The journal logs it as that command if the
        key held a collection without expiry before (a new key, or one whose
        expiry the replay would meet, is imaged) and no other change is
        bracketed now (the outer one is what is logged); a change that fails
        midway is imaged."""
        value = self._data.get(key)
        if value is None or value.__class__ is bytes or key in self._expires or not self._begin(key):
            return change(*change_args)
        try:
            result = change(*change_args)
        except BaseException:
            self._end(None)
            raise
        args = command if command.__class__ is list else command(result)
        self._end(b"".join((KIND_AND_KEY_LENGTH.pack(COMMAND, len(key)), key, batch_lengths(args), *args)))
        return result


def logging_table(table: CommandTable, command_log: CommandLog) -> CommandTable:
    """``table`` with each replayable command logging itself through
    ``command_log`` when it changes an existing collection without expiry (see
    the module doc); every other command as it is."""
    logged = CommandTable()
    for spec in table:
        if spec.name in REPLAYABLE:
            handler = _logging_handler(spec.handler, command_log)
            spec = dataclasses.replace(
                spec, handler=handler,
                run_handler=None if spec.run_handler is None else per_request_run(handler, spec.min_args),
            )
        logged.add(spec)
    return logged


def _logging_handler(handler: Callable, command_log: CommandLog) -> Callable:
    run = command_log.run

    def logging(session, args):
        return run(args[1], args, handler, session, args)

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
