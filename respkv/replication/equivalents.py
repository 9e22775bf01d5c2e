"""What a coordinator's command amounts to, key by key, in replayable commands.

A coordinator ships a collection changed by a replayable one-key command as that
command (:data:`~.replica.SHIPPED_AS_COMMAND`).  Other commands may still change
a key exactly as a replayable command would: a blocking pop served at once, the
members ``SPOP`` drew, each side of ``LMOVE`` or ``SMOVE``, the pops of
``LMPOP``/``ZMPOP``.  They run that change through
:func:`respkv.commands.replay.logged_as`, which hands it to the keyspace's
``command_log``; on a replicated node that is a :class:`ChangeEquivalents`.

While the coordinator runs a command it :meth:`~ChangeEquivalents.begin`\\ s with
the list its change signal fills (every key each change touched, in order);
each bracketed change notes its key's command and how many entries of that list
it made.  :meth:`~ChangeEquivalents.end` keeps a key's command only if every
change of the key the command made came from that one bracket: a key changed
twice (a list rotated onto itself), or also changed another way (a transaction
that pushed and then popped it), is shipped as its record, as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .convergent import TRACKED


class ChangeEquivalents:
    """The keyspace's ``command_log`` on a replicated node (see the module doc)."""

    def __init__(self) -> None:
        self._recording: list[bytes] | None = None
        #: key -> (its command, how many changes of it the bracket made); None once spoiled.
        self._noted: dict[bytes, tuple[list[bytes], int] | None] = {}
        self._current: bytes | None = None

    def begin(self, recording: list[bytes]) -> None:
        """A command starts; its changes are appended to ``recording``."""
        self._recording = recording

    def end(self) -> dict[bytes, list[bytes]] | None:
        """The command ended: the replayable command each key it changed amounts
        to, for keys changed only by their one bracket (None if there are none)."""
        recording, self._recording = self._recording, None
        noted = self._noted
        if not noted:  # most commands: nothing bracketed, nothing to allocate
            return None
        self._noted = {}
        counts = Counter(recording)
        equivalents = {key: entry[0] for key, entry in noted.items()
                       if entry is not None and counts[key] == entry[1]}
        return equivalents or None

    def run(self, key: bytes, command, change: Callable, *change_args):
        """Run ``change(*change_args)``, a change of ``key`` equal to ``command``
        (its arguments, or a function of the change's result that makes them);
        a bracket inside another is run plainly (the outer one is what counts)."""
        recording = self._recording
        if recording is None or self._current is not None:
            return change(*change_args)
        self._current = key
        before = len(recording)
        noted = self._noted
        try:
            result = change(*change_args)
        except BaseException:
            noted[key] = None  # changed midway: its record is shipped
            raise
        finally:
            self._current = None
        made = len(recording) - before
        if made:
            noted[key] = None if key in noted else (command if command.__class__ is list else command(result), made)
        return result


def tracked_equivalents(equivalents: dict[bytes, list[bytes]]) -> dict[bytes, list[list[bytes]]] | None:
    """Of the replayable commands a coordinator's changes amount to (key →
    command), those whose arguments decide convergent metadata (``TRACKED``), as
    the ``commands`` of ``VersionStore.written``: a replica running one passes
    the same for it."""
    tracked = {key: [command] for key, command in equivalents.items() if command[0].lower() in TRACKED}
    return tracked or None
