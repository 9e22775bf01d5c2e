"""Play conformance scripts against two servers and compare their replies.

Theory of operation
-------------------
There are two *sides*: the reference (a stock ``redis-server``) and the subject (a
respkv node, or a second ``redis-server`` in self-test mode). Each side keeps its own
set of named TCP connections; a script's ``@conn NAME`` picks the same name on both
sides, so the two servers see the same commands on the same logical connections in the
same order.

A step is executed in lock step: the bytes go out to both sides first, then one reply
is read from each, so the two round trips overlap. Replies are cut out of the byte
stream with :func:`conformance.resp.frame_length` and kept verbatim; an
:class:`Outcome` records those bytes plus how reading ended (normally, by the server
closing the connection, by a timeout, or by a refused connection). Two outcomes pass
when they are equal byte for byte, unless the step carries a marker that relaxes the
comparison (README.md lists each marker and why it is allowed).

Blocking on a socket with a timeout keeps the harness simple and fast: a whole run is a
few thousand loopback round trips. A connection whose read ended abnormally (closed,
timed out, garbage) is dropped, and the next step that names it opens a fresh one, so
one bad reply cannot shift every later reply by one.

Every script starts from an empty keyspace (``FLUSHALL`` on a separate, fresh RESP2
connection) and closes all of its connections when it ends.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from .resp import ProtocolError, decode, frame_length, split_aggregate
from .script import DEFAULT_CONN, SCAN_COMMANDS, Script, Step

__all__ = ["Outcome", "Side", "Failure", "Runner", "encode_command"]

_SCAN_MAX_ROUNDS = 10_000
_BLOCKED_POLL_S = 0.002


def encode_command(args: list[bytes]) -> bytes:
    """Encode a command as a RESP array of bulk strings, as redis-cli sends it."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


@dataclass(frozen=True)
class Outcome:
    """What one side answered to one step.

    ``data`` is the raw reply bytes (for ``@raw`` everything received; for ``!scan`` the
    sorted distinct element frames). ``end`` says how reading stopped: ``""`` for a
    complete reply, ``"closed"`` when the server closed the connection, ``"timeout"``,
    ``"refused"`` when no connection could be made, ``"garbage"`` when the bytes were not
    valid RESP.
    """

    data: bytes
    end: str = ""
    scan: bool = False

    @property
    def complete(self) -> bool:
        """True when a whole reply arrived and the connection is still usable."""
        return self.end == ""

    def describe(self) -> str:
        """A one-line human description: the repr of the bytes and how reading ended."""
        if self.scan:
            text = "scan union " + repr(split_frames(self.data))
        else:
            text = repr(self.data)
        if self.end:
            text += f" <{'connection closed' if self.end == 'closed' else self.end}>"
        return text


def split_frames(data: bytes) -> list[bytes]:
    """Cut a concatenation of complete replies into the individual replies."""
    frames, pos = [], 0
    while pos < len(data):
        length = frame_length(data, pos)
        if length is None:
            frames.append(data[pos:])
            break
        frames.append(data[pos:pos + length])
        pos += length
    return frames


class Connection:
    """A blocking TCP connection to one server with a reply buffer."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.buffer = bytearray()
        self.sock: socket.socket | None = None
        self.failed: str = ""          # set when connecting or sending failed
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self.failed = "refused"

    @property
    def usable(self) -> bool:
        return self.sock is not None and not self.failed

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data: bytes) -> None:
        """Send bytes; a failure is remembered and reported by the next read."""
        if not self.usable:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.failed = "closed"

    def _fill(self, deadline: float) -> str:
        """Read more bytes into the buffer; return "" or why no more can come."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return "timeout"
        except OSError:
            return "closed"
        if not chunk:
            return "closed"
        self.buffer += chunk
        return ""

    def read_replies(self, count: int | None) -> Outcome:
        """Read ``count`` complete replies, or everything until close if ``None``."""
        if not self.usable:
            return Outcome(b"", self.failed or "closed")
        deadline = time.monotonic() + self.timeout
        got = 0
        out = bytearray()
        while count is None or got < count:
            try:
                length = frame_length(self.buffer)
            except ProtocolError:
                out += self.buffer
                self.buffer.clear()
                return Outcome(bytes(out), "garbage")
            if length is not None:
                out += self.buffer[:length]
                del self.buffer[:length]
                got += 1
                continue
            why = self._fill(deadline)
            if why:
                out += self.buffer
                self.buffer.clear()
                return Outcome(bytes(out), why)
        return Outcome(bytes(out))

    def read_reply(self) -> Outcome:
        return self.read_replies(1)


@dataclass
class Side:
    """One server under comparison and its named connections."""

    label: str
    port: int
    timeout: float = 2.0
    conns: dict[str, Connection] = field(default_factory=dict)

    def conn(self, name: str) -> Connection:
        """The connection called ``name``, opened on first use (or after it broke)."""
        conn = self.conns.get(name)
        if conn is None or not conn.usable:
            if conn is not None:
                conn.close()
            conn = self.conns[name] = Connection(self.port, self.timeout)
        return conn

    def settle(self, name: str, outcome: Outcome) -> None:
        """Drop a connection whose last read ended abnormally."""
        if not outcome.complete:
            conn = self.conns.pop(name, None)
            if conn is not None:
                conn.close()

    def close_all(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


@dataclass
class Failure:
    """A step whose replies did not match, ready to print."""

    where: str
    text: str
    outcomes: list[tuple[str, Outcome]]

    def render(self) -> str:
        width = max(len(label) for label, _ in self.outcomes)
        lines = [f"FAIL {self.where}: {self.text}"]
        for label, outcome in self.outcomes:
            lines.append(f"  {label.ljust(width)}: {outcome.describe()}")
        return "\n".join(lines)


# ---------------------------------------------------------------- comparisons

def _aggregate_items(data: bytes, pairs: bool):
    """(type, count, sorted items) of an aggregate reply, or None for a scalar."""
    parts = split_aggregate(data)
    if parts is None:
        return None
    kind, count, elements = parts
    if kind == "%" or pairs:
        if len(elements) % 2:
            return None
        items = [elements[i] + elements[i + 1] for i in range(0, len(elements), 2)]
    else:
        items = list(elements)
    return kind, count, sorted(items)


def _same_unordered(a: bytes, b: bytes, pairs: bool) -> bool:
    ia, ib = _aggregate_items(a, pairs), _aggregate_items(b, pairs)
    if ia is None or ib is None:
        return a == b
    return ia == ib


def _same_type(a: bytes, b: bytes) -> bool:
    if a[:1] != b[:1]:
        return False
    pa, pb = split_aggregate(a), split_aggregate(b)
    if pa is None or pb is None:
        return (pa is None) == (pb is None)
    return pa[1] == pb[1]


def _same_ttl(a: bytes, b: bytes, tolerance: int) -> bool:
    if a[:1] == b[:1] == b":":
        return abs(decode(a)[0] - decode(b)[0]) <= tolerance
    return a == b


_HELLO_VARIABLE = {b"server", b"version", b"id"}


def _same_hello(a: bytes, b: bytes) -> bool:
    """HELLO replies: same fields in the same order; proto, mode, role, modules equal;
    server name, version and client id only of the same type."""
    pa, pb = split_aggregate(a), split_aggregate(b)
    if pa is None or pb is None:
        return a == b
    (ka, ca, ea), (kb, cb, eb) = pa, pb
    if ka != kb or ca != cb or len(ea) % 2 or len(ea) != len(eb):
        return False
    for i in range(0, len(ea), 2):
        if ea[i] != eb[i]:
            return False
        field_name = decode(ea[i])[0]
        if field_name in _HELLO_VARIABLE:
            if ea[i + 1][:1] != eb[i + 1][:1]:
                return False
        elif ea[i + 1] != eb[i + 1]:
            return False
    return True


def outcomes_match(step: Step, ref: Outcome, sub: Outcome) -> bool:
    """Decide whether the subject's outcome is acceptable given the reference's."""
    if ref == sub:
        return True
    if ref.scan or sub.scan or not (ref.complete and sub.complete):
        return False
    marker = step.marker
    value = step.markers.get(marker) if marker else None
    a, b = ref.data, sub.data
    if marker in ("unordered", "pairs"):
        return _same_unordered(a, b, pairs=marker == "pairs")
    if marker == "type":
        return _same_type(a, b)
    if marker == "ttl":
        return _same_ttl(a, b, 1 if value is None else value)
    if marker == "ignore":
        return True
    if marker == "db":
        return b[:1] in (b"-", b"!")
    if marker == "hello":
        return _same_hello(a, b)
    return False


# ---------------------------------------------------------------- execution

def _scan_outcome(side: Side, conn_name: str, args: list[bytes]) -> Outcome:
    """Run a SCAN-family command to completion; return the union of its elements."""
    index = SCAN_COMMANDS[args[0].decode("utf-8", "replace").upper()]
    pairs = index == 2 and args[0].upper() in (b"HSCAN", b"ZSCAN")
    args = list(args)
    seen: set[bytes] = set()
    for _ in range(_SCAN_MAX_ROUNDS):
        conn = side.conn(conn_name)
        conn.send(encode_command(args))
        outcome = conn.read_reply()
        side.settle(conn_name, outcome)
        if not outcome.complete:
            return outcome
        parts = split_aggregate(outcome.data)
        if parts is None or parts[0] != "*" or len(parts[2]) != 2:
            return outcome
        cursor_frame, batch = parts[2]
        cursor = decode(cursor_frame)[0]
        inner = split_aggregate(batch)
        if not isinstance(cursor, bytes) or inner is None:
            return outcome
        elements = inner[2]
        if pairs:
            if len(elements) % 2:
                return outcome
            seen.update(elements[i] + elements[i + 1] for i in range(0, len(elements), 2))
        else:
            seen.update(elements)
        if cursor == b"0":
            return Outcome(b"".join(sorted(seen)), scan=True)
        args[index] = cursor
    return Outcome(b"", "timeout")


def _blocked_outcome(side: Side, count: int) -> Outcome:
    """Poll ``INFO clients`` until it reports ``count`` blocked clients."""
    want = b"blocked_clients:%d\r\n" % count
    deadline = time.monotonic() + side.timeout
    name = "\0blocked-poll"        # not a name a script can write
    outcome = Outcome(b"", "timeout")
    while time.monotonic() < deadline:
        conn = side.conn(name)
        conn.send(encode_command([b"INFO", b"clients"]))
        outcome = conn.read_reply()
        side.settle(name, outcome)
        if outcome.complete and want in outcome.data:
            return Outcome(want.strip())
        time.sleep(_BLOCKED_POLL_S)
    return Outcome(outcome.data, "timeout")


def _responds(side: Side) -> bool:
    """Whether the side answers PING on a fresh connection (after a failed step)."""
    conn = Connection(side.port, min(side.timeout, 1.0))
    try:
        conn.send(encode_command([b"PING"]))
        return conn.read_reply() == Outcome(b"+PONG\r\n")
    finally:
        conn.close()


class Runner:
    """Executes parsed scripts against a reference side and a subject side."""

    def __init__(self, ref: Side, sub: Side, verbose: bool = False,
                 emit: Callable[[str], None] = print) -> None:
        self.ref = ref
        self.sub = sub
        self.verbose = verbose
        self.emit = emit
        self.passed = 0
        self.failed = 0
        self._unresponsive: list[str] = []

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.ref, self.sub

    # -- bookkeeping

    def _record(self, script: Script, step: Step, ref: Outcome, sub: Outcome,
                ok: bool, where: str | None = None) -> None:
        where = where or f"{script.name}.txt:{step.lineno}"
        text = step.text if step.conn == DEFAULT_CONN else f"[{step.conn}] {step.text}"
        if ok:
            self.passed += 1
            if self.verbose:
                self.emit(f"ok   {where}: {text}\n       -> {ref.describe()}")
        else:
            self.failed += 1
            self.emit(Failure(where, text, [(self.ref.label, ref),
                                            (self.sub.label, sub)]).render())
            if any(o.end in ("timeout", "refused", "closed") for o in (ref, sub)):
                self._unresponsive = [s.label for s in self.sides if not _responds(s)]

    def fail(self, where: str, message: str, checks: int = 1) -> None:
        """Count and print a failure that is not a reply mismatch (setup, a dead
        server...); ``checks`` is how many checks it stands for."""
        self.failed += checks
        self.emit(f"FAIL {where}: {message}")

    # -- steps

    def _flushall(self) -> str:
        """Empty both keyspaces on fresh connections; return an error text or ""."""
        for side in self.sides:
            conn = Connection(side.port, side.timeout)
            try:
                conn.send(encode_command([b"FLUSHALL"]))
                outcome = conn.read_reply()
            finally:
                conn.close()
            if outcome.data != b"+OK\r\n" or not outcome.complete:
                return f"FLUSHALL on {side.label} answered {outcome.describe()}"
        return ""

    def _both(self, act: Callable[[Side], Outcome]) -> tuple[Outcome, Outcome]:
        return act(self.ref), act(self.sub)

    def _run_step(self, script: Script, step: Step) -> None:
        name = step.conn
        if step.kind == "sleep":
            time.sleep(step.number / 1000)
            return
        if step.kind == "blocked":
            ref, sub = self._both(lambda s: _blocked_outcome(s, step.number))
            self._record(script, step, ref, sub, ref == sub and ref.complete)
            return
        if step.kind == "call" and "scan" in step.markers:
            ref, sub = self._both(lambda s: _scan_outcome(s, name, step.args))
            self._record(script, step, ref, sub, outcomes_match(step, ref, sub))
            return
        if step.kind in ("call", "send"):
            payload = encode_command(step.args)
        elif step.kind == "raw":
            payload = step.data
        else:
            payload = b""
        if payload:
            for side in self.sides:
                side.conn(name).send(payload)
        if step.kind == "send":
            return
        if step.kind == "raw" and step.replies == 0:
            return
        count = step.replies if step.kind == "raw" else 1
        outcomes = []
        for side in self.sides:
            outcome = side.conn(name).read_replies(count)
            side.settle(name, outcome)
            outcomes.append(outcome)
        ref, sub = outcomes
        judged = step.origin if step.kind == "recv" else step
        where = None
        if step.kind == "recv":
            where = f"{script.name}.txt:{judged.lineno} (@recv line {step.lineno})"
            step = judged
        self._record(script, step, ref, sub, outcomes_match(judged, ref, sub), where)

    def run_script(self, script: Script) -> None:
        """Run one script from an empty keyspace on fresh connections."""
        error = self._flushall()
        if error:
            self.fail(f"{script.name}.txt", f"setup failed: {error}; its "
                      f"{script.check_count} checks count as failed",
                      max(1, script.check_count))
            return
        self._unresponsive = []
        try:
            for index, step in enumerate(script.steps):
                self._run_step(script, step)
                if self._unresponsive:
                    rest = sum(1 for s in script.steps[index + 1:] if s.is_check)
                    self.fail(f"{script.name}.txt:{step.lineno}",
                              f"{', '.join(self._unresponsive)} stopped answering PING; "
                              f"the script's {rest} remaining checks count as failed",
                              rest)
                    break
        finally:
            for side in self.sides:
                side.close_all()
