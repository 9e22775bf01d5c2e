"""When a node's journal is rewritten: on request, on the ``save`` schedule, and
when the data directory has grown.

Theory of operation
-------------------
One mechanism, :meth:`Journal.rewrite <respkv.persistence.journal.Journal.rewrite>`
(a new snapshot and a fresh log, written while the node serves), stands for all of
Redis's: ``BGSAVE`` and ``BGREWRITEAOF`` start it in the background, ``SAVE`` and
``SHUTDOWN SAVE`` wait for it, the ``save`` schedule and
``auto-aof-rewrite-percentage`` start it from the node's cron.  :class:`Rewrites`
holds one node's state of it (running, scheduled, the last attempt) and starts
background rewrites through the ``start_background`` callable the node provides, so
they are tasks of the node's nursery and end with it.

The decisions themselves are pure functions of numbers, as Redis's ``serverCron``
makes them: :func:`save_due` (after N seconds if at least M keys changed; a failed
attempt is retried after :data:`RETRY_DELAY` seconds, not at every tick) and
:func:`growth_due` (the snapshot and logs are bigger than
``auto-aof-rewrite-min-size`` and grew by ``auto-aof-rewrite-percentage`` since
the last rewrite).  Redis 7's size of the AOF counts its base file too, so "the
log grew by 100%" means "the log is as big as the snapshot": a rewrite's cost,
proportional to the data, is paid once per that much logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from .journal import Journal

__all__ = ["RETRY_DELAY", "RewriteRunning", "Rewrites", "growth_due", "save_due"]

log = logging.getLogger(__name__)

#: Seconds before an automatic rewrite is tried again after one failed (Redis's
#: ``CONFIG_BGSAVE_RETRY_DELAY``).
RETRY_DELAY = 5


def save_due(
    schedule: tuple[tuple[int, int], ...],
    changes: int,
    since_save: float,
    last_ok: bool,
    since_try: float,
) -> tuple[int, int] | None:
    """The first ``(seconds, changes)`` point of ``schedule`` that is due, or None.

    A point is due when at least its number of keys changed and more than its
    seconds passed since the last successful snapshot; after a failed attempt, only
    once :data:`RETRY_DELAY` seconds passed since it.
    """
    if not last_ok and since_try <= RETRY_DELAY:
        return None
    for seconds, needed in schedule:
        if changes >= needed and since_save > seconds:
            return seconds, needed
    return None


def growth_due(percentage: int, min_size: int, current: int, base: int) -> int | None:
    """The growth in percent when an automatic rewrite is due, else None.

    ``current`` and ``base`` are the bytes of the snapshot and logs now and after the
    last rewrite; ``percentage`` 0 turns automatic rewrites off.
    """
    if not percentage or current <= min_size:
        return None
    growth = current * 100 // (base or 1) - 100
    return growth if growth >= percentage else None


class RewriteRunning(Exception):
    """A rewrite runs already (the caller answers with Redis's error)."""


class Rewrites:
    """Starts and tracks one node's rewrites (see the module doc).

    ``keys()`` lists the keys a snapshot holds; ``config`` is the node's
    configuration (``save``, ``auto-aof-rewrite-*``, read at every tick, so
    ``CONFIG SET`` takes effect at once); ``start_background(async_fn, *args)`` runs
    a task in the node's nursery.
    """

    def __init__(
        self,
        journal: Journal,
        keys: Callable[[], list[bytes]],
        config,
        start_background: Callable[..., None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.keys = keys
        self.config = config
        self._start_background = start_background
        self._clock = clock
        #: A rewrite runs (set as soon as one is started, before its task runs).
        self.running = False
        #: ``BGSAVE SCHEDULE`` asked for one while another ran: the cron starts it.
        self.scheduled = False
        #: Clock time of the last attempt (0: none yet).
        self.last_try = 0.0
        self._idle = trio.Event()
        self._idle.set()

    # -- on request -----------------------------------------------------------------

    def start(self, reason: str) -> None:
        """Start a background rewrite; raises :class:`RewriteRunning` if one runs."""
        self._begin()
        log.info("background rewrite started (%s)", reason)
        self._start_background(self._run_in_background, reason)

    def schedule(self) -> None:
        """Start a rewrite once the running one is done (``BGSAVE SCHEDULE``)."""
        self.scheduled = True

    async def save(self) -> None:
        """Rewrite now and return when the snapshot is durable (``SAVE``); raises
        :class:`RewriteRunning` if one runs, or what made the rewrite fail."""
        self._begin()
        try:
            await self.journal.rewrite(self.keys)
        finally:
            self._end()

    async def save_when_idle(self) -> None:
        """Wait for a running rewrite to end, then :meth:`save` (``SHUTDOWN``)."""
        while self.running:
            await self._idle.wait()
        await self.save()

    def _begin(self) -> None:
        if self.running:
            raise RewriteRunning("a rewrite is already in progress")
        self.running = True
        self.scheduled = False
        self.last_try = self._clock()
        self._idle = trio.Event()

    def _end(self) -> None:
        self.running = False
        self._idle.set()

    async def _run_in_background(self, reason: str) -> None:
        try:
            await self.journal.rewrite(self.keys)
        except Exception as exc:  # the node keeps serving; INFO and the log say it failed
            log.error("background rewrite (%s) failed: %s", reason, exc)
        else:
            log.info("background rewrite (%s) done", reason)
        finally:
            self._end()

    # -- from the cron ----------------------------------------------------------------

    def tick(self) -> None:
        """Start the rewrite that is due, if any (called by the node's cron)."""
        if self.running:
            return
        if self.scheduled:
            self.start("scheduled by BGSAVE SCHEDULE")
            return
        journal = self.journal
        now = self._clock()
        point = save_due(self.config["save"], journal.changes, now - journal.last_save_time,
                         journal.last_rewrite_ok, now - self.last_try)
        if point is not None:
            log.info("%d changes in %d seconds. Saving...", point[1], point[0])
            self.start("save schedule")
            return
        if journal.log is None or (not journal.last_rewrite_ok and now - self.last_try <= RETRY_DELAY):
            return
        current, base = journal.log_growth()
        growth = growth_due(self.config["auto-aof-rewrite-percentage"], self.config["auto-aof-rewrite-min-size"],
                            current, base)
        if growth is not None:
            log.info("Starting automatic rewriting of AOF on %d%% growth", growth)
            self.start(f"log grew by {growth}%")

