"""A node's incarnation: which of its lives writes a version.

Theory of operation
-------------------
A vector clock entry says "this actor's n-th write".  Replicas use it to decide
that a version descends from another, and drop the older one.  That is only
safe while an actor never reuses a counter.  A node that restarts may have lost
the counters it reached (under ``appendfsync everysec`` the last second of its
log may be gone, and with the log off everything is), and FLUSHALL forgets them
on purpose.  Were its actor the node id alone, its next write would count from
an old number, and replicas still holding a higher one would treat the new
write as already seen: they would drop it and acknowledge it anyway.

So the actor is the node id's first 16 bytes plus an **incarnation** number
(:func:`~.vclock.actor_of`) kept in ``incarnation`` in the node's directory,
advanced and fsynced before the first write of each start and at each FLUSHALL.
A new incarnation starts new counters that no replica has seen; the entries of
old incarnations stay in the clocks of what they wrote until pruning drops them
(``vclock.prune``), which keeps clocks small.

The next incarnation is the stored one plus one, but never less than the seconds
since :data:`INCARNATION_EPOCH`.  So a node whose directory was lost or replaced
while it kept its identity (a new disk, the node id restored) does not start
again from 1, which would reuse the actors of its first lives: it starts from the
clock, above every incarnation it had unless it advanced faster than once a
second for a long time (thousands of FLUSHALLs) just before losing the file.
"""

from __future__ import annotations

import os
import time

from ..persistence.files import replace_file

INCARNATION_FILE = "incarnation"
#: Unix time of 2024-01-01: incarnations taken from the clock count seconds from
#: it (a u32 lasts until the 22nd century).
INCARNATION_EPOCH = 1_704_067_200


def clock_incarnation(now: float | None = None) -> int:
    """The least incarnation a start at ``now`` (Unix seconds) may take."""
    return int((time.time() if now is None else now) - INCARNATION_EPOCH)


class IncarnationError(Exception):
    """The incarnation file cannot be read; the node must not guess."""


class Incarnation:
    """The incarnation counter of the node whose directory is ``directory``."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, INCARNATION_FILE)

    def advance(self) -> int:
        """Start the next incarnation: the number after the one on disk (or the
        clock's, if higher; see the module doc), written and fsynced before it is
        returned (and so before it writes anything)."""
        incarnation = max(self._stored() + 1, clock_incarnation())
        replace_file(self.path, b"%d\n" % incarnation)
        return incarnation

    def _stored(self) -> int:
        try:
            with open(self.path, "rb") as file:
                text = file.read()
        except FileNotFoundError:
            return 0
        try:
            value = int(text.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise IncarnationError(
                f"{self.path} does not hold an incarnation number ({text[:40]!r}); "
                "restore it, or write in it a number above any incarnation this node had "
                "(a reused one could make replicas drop new writes)"
            )
        return value
