"""Key lookups shared by the command families: typed, and counted as Redis counts them.

Redis counts ``keyspace_hits``/``keyspace_misses`` on every lookup made for reading
(GET, MGET, EXISTS, TYPE, TTL, HGET, ...) but not on lookups made for writing, and
answers ``WRONGTYPE`` when a key holds another type than the command works on.
"""

from __future__ import annotations

from ..errors import WRONGTYPE
from .table import CommandError


def lookup_read(session, key: bytes, *, touch: bool = True):
    """The live value at ``key`` (any type) or None, counted as a keyspace hit or
    miss; an access for LRU/LFU unless ``touch`` is False (``OBJECT`` looks without
    touching, so that OBJECT IDLETIME does not reset what it reports)."""
    value = session.ks.get(key) if touch else session.ks.peek(key)
    if value is None:
        session.stats.keyspace_misses += 1
    else:
        session.stats.keyspace_hits += 1
    return value


def read_typed(session, key: bytes, cls: type):
    """The ``cls`` value at ``key`` or None, as a read; WRONGTYPE for another type."""
    value = lookup_read(session, key)
    if value is not None and value.__class__ is not cls:
        raise CommandError(WRONGTYPE)
    return value


def write_typed(session, key: bytes, cls: type):
    """The ``cls`` value at ``key`` or None, for a write (not counted); WRONGTYPE else."""
    value = session.ks.get(key)
    if value is not None and value.__class__ is not cls:
        raise CommandError(WRONGTYPE)
    return value
