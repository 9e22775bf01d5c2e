"""Conformance script parsing: a redis-cli style splitter and the step model.

Theory of operation
-------------------
A script is a text file with one step per line. Plain lines are commands, written the
way one types them into ``redis-cli``; lines starting with ``@`` are directives that
steer the run (protocol version, which connection, raw bytes, a short sleep); lines
starting with ``#`` are comments. Trailing unquoted ``!marker`` tokens on a command
relax how its replies are compared (see conformance/README.md for each one and why it
is allowed).

Parsing is done up front, for the whole file, so a malformed script fails before any
byte is sent and so the parser can check things that are easy to get wrong by hand:
unknown directives and markers, a ``@recv`` without a matching ``@send``, a plain
command issued on a connection that still owes replies, or a script that ends with
replies outstanding. The runner then only executes the resulting list of steps.

The splitter follows redis-cli's rules: whitespace separates arguments; inside double
quotes ``\\n \\r \\t \\b \\a \\\\ \\"`` and ``\\xHH`` are escapes (any other escaped
character stands for itself); inside single quotes everything is literal except
``\\'``; a closing quote must be followed by whitespace or the end of the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ScriptError",
    "split_args",
    "Step",
    "Script",
    "parse_script",
    "load_script",
    "MARKERS",
    "DEFAULT_CONN",
]

DEFAULT_CONN = "main"

#: Marker name → whether it takes a ``=N`` value. Semantics live in the runner and
#: are documented in conformance/README.md.
MARKERS = {
    "unordered": False,
    "pairs": False,
    "type": False,
    "scan": False,
    "ttl": True,
    "ignore": False,
    "db": False,
    "hello": False,
}

SCAN_COMMANDS = {"SCAN": 1, "SSCAN": 2, "HSCAN": 2, "ZSCAN": 2}   # name → cursor index

_MARKER_RE = re.compile(r"!([a-z]+)(?:=([0-9]+))?\Z")
_CONN_RE = re.compile(r"[A-Za-z0-9_.-]+\Z")
_RAW_RE = re.compile(r"@raw(?:/([0-9]+))?\Z")
_MAX_SLEEP_MS = 1000


class ScriptError(ValueError):
    """A script line cannot be parsed; carries the reason, file name and line number."""

    def __init__(self, reason: str, name: str | None = None, lineno: int = 0) -> None:
        super().__init__(f"{name}:{lineno}: {reason}" if name else reason)
        self.reason = reason
        self.name = name
        self.lineno = lineno


_SIMPLE_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "b": b"\b", "a": b"\a"}
_HEX = "0123456789abcdefABCDEF"


def split_args(line: str) -> list[tuple[bytes, bool]]:
    """Split one line into arguments the way redis-cli does.

    Returns ``(argument bytes, was_quoted)`` pairs; the flag lets the caller treat an
    unquoted ``!marker`` differently from a quoted argument that merely starts with
    ``!``. Raises :class:`ScriptError` on unbalanced quotes or a closing quote that is
    glued to the next character.
    """
    args: list[tuple[bytes, bool]] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t\r\n":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quoted = False
        in_double = in_single = False
        while True:
            if in_double:
                if i >= n:
                    raise ScriptError("unbalanced double quote")
                c = line[i]
                if c == "\\" and i + 3 < n and line[i + 1] == "x" \
                        and line[i + 2] in _HEX and line[i + 3] in _HEX:
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 4
                    continue
                if c == "\\" and i + 1 < n:
                    e = line[i + 1]
                    current += _SIMPLE_ESCAPES.get(e, e.encode())
                    i += 2
                    continue
                if c == '"':
                    if i + 1 < n and line[i + 1] not in " \t\r\n":
                        raise ScriptError("closing quote must be followed by a space")
                    in_double = False
                    i += 1
                    break
                current += c.encode()
                i += 1
            elif in_single:
                if i >= n:
                    raise ScriptError("unbalanced single quote")
                c = line[i]
                if c == "\\" and i + 1 < n and line[i + 1] == "'":
                    current += b"'"
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < n and line[i + 1] not in " \t\r\n":
                        raise ScriptError("closing quote must be followed by a space")
                    in_single = False
                    i += 1
                    break
                current += c.encode()
                i += 1
            else:
                if i >= n or line[i] in " \t\r\n":
                    break
                c = line[i]
                if c == '"':
                    in_double = quoted = True
                elif c == "'":
                    in_single = quoted = True
                else:
                    current += c.encode()
                i += 1
        args.append((bytes(current), quoted))


@dataclass
class Step:
    """One executable line of a script.

    ``kind`` is one of ``call`` (send a command and compare its reply), ``send`` (send
    a command, reply collected by a later ``recv``), ``recv``, ``raw`` (send raw bytes),
    ``sleep`` or ``blocked`` (wait until N clients are blocked on both servers).
    """

    kind: str
    lineno: int
    text: str
    conn: str = DEFAULT_CONN
    args: list[bytes] = field(default_factory=list)
    markers: dict[str, int | None] = field(default_factory=dict)
    data: bytes = b""
    replies: int | None = None      # raw: replies to read; None means "until closed"
    number: int = 0                 # sleep: milliseconds; blocked: client count
    origin: "Step | None" = None    # recv: the send step whose reply it collects

    @property
    def is_check(self) -> bool:
        """Whether running this step compares replies (and so counts as a check)."""
        if self.kind == "raw":
            return self.replies != 0
        return self.kind in ("call", "recv", "blocked")

    @property
    def marker(self) -> str | None:
        """The comparison marker of this step (at most one), if any."""
        return next(iter(self.markers), None)


@dataclass
class Script:
    """A parsed script: its name (file stem) and its steps in order."""

    name: str
    steps: list[Step]

    @property
    def check_count(self) -> int:
        """Number of compared steps (the checks this script contributes)."""
        return sum(1 for s in self.steps if s.is_check)


def _parse_command(tokens: list[tuple[bytes, bool]], name: str, lineno: int
                   ) -> tuple[list[bytes], dict[str, int | None]]:
    """Separate trailing unquoted ``!marker`` tokens from a command's arguments."""
    markers: dict[str, int | None] = {}
    while tokens and not tokens[-1][1] and tokens[-1][0].startswith(b"!"):
        m = _MARKER_RE.match(tokens[-1][0].decode("utf-8", "replace"))
        if not m:
            break
        marker, value = m.group(1), m.group(2)
        if marker not in MARKERS:
            raise ScriptError(f"unknown marker !{marker}", name, lineno)
        if value is not None and not MARKERS[marker]:
            raise ScriptError(f"marker !{marker} takes no value", name, lineno)
        markers[marker] = int(value) if value is not None else None
        tokens = tokens[:-1]
    if len(markers) > 1:
        raise ScriptError("at most one marker per command", name, lineno)
    args = [t for t, _ in tokens]
    if not args:
        raise ScriptError("empty command", name, lineno)
    if "scan" in markers:
        index = SCAN_COMMANDS.get(args[0].decode("utf-8", "replace").upper())
        if index is None or len(args) <= index:
            raise ScriptError("!scan needs SCAN/SSCAN/HSCAN/ZSCAN with a cursor",
                              name, lineno)
    return args, markers


def parse_script(text: str, name: str) -> Script:
    """Parse the text of a script into steps; raise :class:`ScriptError` if malformed."""
    steps: list[Step] = []
    conn = DEFAULT_CONN
    pending: dict[str, list[Step]] = {}
    for lineno, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = split_args(line)
        except ScriptError as exc:
            raise ScriptError(exc.reason, name, lineno) from None
        if line.startswith("@"):
            word = line.split(None, 1)[0]
            rest = tokens[1:]
            step = Step("", lineno, line, conn)
            raw_match = _RAW_RE.match(word)
            if word == "@proto":
                if len(rest) != 1:
                    raise ScriptError("usage: @proto 2|3", name, lineno)
                step.kind = "call"
                step.args = [b"HELLO", rest[0][0]]
                step.markers = {"hello": None}
            elif word == "@conn":
                if len(rest) != 1 or not _CONN_RE.match(rest[0][0].decode("utf-8", "replace")):
                    raise ScriptError("usage: @conn NAME", name, lineno)
                conn = rest[0][0].decode()
                continue
            elif word == "@send":
                step.kind = "send"
                step.args, step.markers = _parse_command(rest, name, lineno)
                if "scan" in step.markers:
                    raise ScriptError("!scan cannot be used with @send", name, lineno)
                pending.setdefault(conn, []).append(step)
            elif word == "@recv":
                if rest:
                    raise ScriptError("@recv takes no arguments", name, lineno)
                if not pending.get(conn):
                    raise ScriptError(f"@recv on connection {conn!r} with nothing sent",
                                      name, lineno)
                step.kind = "recv"
                step.origin = pending[conn].pop(0)
            elif raw_match:
                if len(rest) != 1:
                    raise ScriptError('usage: @raw[/N] "escaped bytes"', name, lineno)
                step.kind = "raw"
                step.data = rest[0][0]
                step.replies = int(raw_match.group(1)) if raw_match.group(1) else None
            elif word == "@sleep":
                if len(rest) != 1 or not rest[0][0].isdigit() \
                        or int(rest[0][0]) > _MAX_SLEEP_MS:
                    raise ScriptError(f"usage: @sleep MS (at most {_MAX_SLEEP_MS})",
                                      name, lineno)
                step.kind = "sleep"
                step.number = int(rest[0][0])
            elif word == "@blocked":
                if len(rest) != 1 or not rest[0][0].isdigit():
                    raise ScriptError("usage: @blocked N", name, lineno)
                step.kind = "blocked"
                step.number = int(rest[0][0])
            else:
                raise ScriptError(f"unknown directive {word}", name, lineno)
        else:
            step = Step("call", lineno, line, conn)
            step.args, step.markers = _parse_command(tokens, name, lineno)
        if step.kind in ("call", "raw") and pending.get(conn):
            raise ScriptError(f"connection {conn!r} still owes replies to @send; "
                              "@recv them first", name, lineno)
        steps.append(step)
    for owed in pending.values():
        if owed:
            raise ScriptError("@send without a matching @recv", name, owed[0].lineno)
    return Script(name, steps)


def load_script(path: Path) -> Script:
    """Read and parse one script file; its name is the file stem."""
    return parse_script(path.read_text(encoding="utf-8"), path.stem)
