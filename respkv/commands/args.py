"""Argument parsing shared by handlers, raising Redis's error texts."""

from __future__ import annotations

from ..errors import NOT_FLOAT, NOT_INTEGER
from ..keyspace.numbers import parse_float, parse_int
from .table import CommandError


def int_arg(raw: bytes, error: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer argument, or the error reply."""
    value = parse_int(raw)
    if value is None:
        raise CommandError(error)
    return value


def float_arg(raw: bytes, error: str = NOT_FLOAT) -> float:
    value = parse_float(raw)
    if value is None:
        raise CommandError(error)
    return value
