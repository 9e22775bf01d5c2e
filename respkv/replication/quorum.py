"""Quorum settings: N/R/W, a connection's override, the NOQUORUM text.

A slot lives on the N nodes of its preference list.  A write is done once W of them
acknowledged it, a read once R of them answered (the coordinator's own copy counts
in both); the state machines that decide that are :mod:`~.put_core` and
:mod:`~.get_core`.  Settings are capped the way Dynamo's are: N by the number of
members, R and W by N.  A connection may override R and W for itself
(``CONSISTENCY``).  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quorums:
    """Replicas per slot (n) and the answers a read (r) or write (w) waits for."""

    n: int
    r: int
    w: int


def requested(config, override: tuple[int, int] | None) -> tuple[int, int]:
    """The (R, W) asked for: a connection's CONSISTENCY override, else the configured ones."""
    return override or (config["read-quorum"], config["write-quorum"])


def effective(replication_factor: int, members: int, r: int, w: int) -> Quorums:
    """The settings in force: N capped at the member count, R and W at N (all >= 1)."""
    n = max(1, min(replication_factor, members))
    return Quorums(n, max(1, min(r, n)), max(1, min(w, n)))


def noquorum_error(kind: str, needed: int, answered: int) -> str:
    """The error text of a request that missed its quorum (``kind``: read or write)."""
    verb = "acknowledged" if kind == "write" else "answered"
    return f"NOQUORUM {kind} quorum not reached: {answered} of {needed} required replicas {verb}"
