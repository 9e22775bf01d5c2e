"""Quorum settings: N/R/W, a connection's override, the NOQUORUM text.

A slot lives on the N nodes of its preference list.  A write is done once W of them
acknowledged it, a read once R of them answered (the coordinator's own copy counts
in both); the state machines that decide that are :mod:`~.put_core` and
:mod:`~.get_core`.  Settings are capped the way Dynamo's are: N by the number of
members, R and W by N.  A connection may override R and W for itself
(``CONSISTENCY``), and whether its writes take a sloppy quorum (fallbacks beyond
the preference list count towards W).  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quorums:
    """Replicas per slot (n) and the answers a read (r) or write (w) waits for."""

    n: int
    r: int
    w: int


def requested(config, override: tuple | None) -> tuple[int, int]:
    """The (R, W) asked for: a connection's CONSISTENCY override ``(r, w[, sloppy])``,
    else the configured ones."""
    return override[:2] if override else (config["read-quorum"], config["write-quorum"])


def sloppy(config, override: tuple | None) -> bool:
    """Whether writes may count fallbacks towards W (sloppy quorum): a connection's
    ``CONSISTENCY SLOPPY`` override, else ``sloppy-quorum``."""
    if override and len(override) > 2:
        return override[2]
    return config["sloppy-quorum"]


def stand_ins(config, session, fallbacks) -> tuple[tuple[str, str], ...]:
    """The ``(fallback, down node)`` pairs a write of ``session`` (None: no client)
    sends to, from a slot's ``{down node: fallback or None}``: none unless its
    quorum is sloppy."""
    if not sloppy(config, session.consistency if session is not None else None):
        return ()
    return tuple((fallback, node) for node, fallback in fallbacks.items() if fallback is not None)


def effective(replication_factor: int, members: int, r: int, w: int) -> Quorums:
    """The settings in force: N capped at the member count, R and W at N (all >= 1)."""
    n = max(1, min(replication_factor, members))
    return Quorums(n, max(1, min(r, n)), max(1, min(w, n)))


def noquorum_error(kind: str, needed: int, answered: int) -> str:
    """The error text of a request that missed its quorum (``kind``: read or write)."""
    verb = "acknowledged" if kind == "write" else "answered"
    return f"NOQUORUM {kind} quorum not reached: {answered} of {needed} required replicas {verb}"
