"""Hostile input for a respkv node: a corpus, mutators, a prober and a long-run fuzzer.

    python -m tools.fuzz --frames 1000000 --connections 32            # starts its own node
    python -m tools.fuzz --frames 100000 --port 6379                  # a node already running
    python -m tools.fuzz --frames 100000 --bus                        # the cluster bus port

Theory of operation
-------------------
A *frame* is a few bytes a client might send: a valid command (RESP or inline), a
valid command with a few bytes inserted, deleted or replaced (type bytes, huge
numbers, ``\\r``, ``\\n``, NUL), random bytes, or an entry of the hostile corpus
(:func:`hostile_corpus`: every RESP type byte as a header at absurd sizes, deep
nesting, huge lines).  Each fuzzing connection sends a random number of frames in
random chunks, then half-closes; the node must answer, then close the connection
once it has read our end of stream, within ``--hang-timeout``.  A protocol error
makes the node close earlier: the connection is replaced by a fresh one.

Meanwhile a separate process (:class:`Prober`) sends ``PING`` on its own
connection every few milliseconds and records the slowest answer, and the node's
resident memory is sampled from ``/proc``.  The run stops after ``--frames``
frames or ``--seconds``; its report counts crashes (the node process died),
stalls (a ``PING`` answered after more than ``--stall-ms``, or not at all) and
connections the node did not close in time, and the exit status is 1 if any of
those is non-zero.

The corpus and the mutators (:mod:`tools.fuzzframes`), the prober and the
``/proc`` readers are shared with the CI test ``tests/test_hostile_input.py``.  Commands that block, reconfigure or stop a node
are never generated (:func:`is_safe`); only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tools.fuzzframes import (
    CRLF,
    FRAME_KINDS,
    Case,
    encode,
    fuzz_frame,
    hostile_corpus,
    huge_header_frames,
    split_chunks,
    unauthenticated_corpus,
)

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# -- observing the node ------------------------------------------------------------

def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in bytes."""
    result = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                result[line[:5]] = int(line.split()[1]) * 1024
    return result


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def reset_peak(pid: int) -> None:
    """Make ``VmHWM`` start again from ``VmRSS`` (Linux 4.0+; the owner may do it)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def ask(port: int, args: list[bytes], password: str | None = None, pattern: bytes = rb":(\d+)\r\n") -> int:
    """Send one request (after AUTH, given a password); the number ``pattern`` finds in the reply."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall((encode([b"AUTH", password.encode()]) if password else b"") + encode(args))
        data = b""
        while (match := re.search(pattern, data)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"no answer to {args} from port {port}: {data[:200]!r}")
            data += chunk
    return int(match.group(1))


def ends_with_protocol_error(data: bytes | bytearray) -> bool:
    """Whether the last line received is a ``-ERR Protocol error: ...`` reply."""
    if not data.endswith(CRLF):
        return False
    start = data.rfind(CRLF, 0, len(data) - 2)
    return data.startswith(b"-ERR Protocol error: ", start + 2 if start >= 0 else 0)


# -- the prober --------------------------------------------------------------------

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


class Prober:
    """``PING`` a node continuously from a child process; record the latencies.

    The child (``python -m tools.fuzz --probe PORT``) pings every ``interval``
    seconds on one connection (reconnecting after a failure) and prints its counts
    as a JSON line several times a second; it stops when its stdin closes.  A
    separate process measures the node, not the scheduling of the process that
    floods it.  ``snapshot()`` and ``stop()`` return ``pings``, ``max_ms``,
    ``stalls`` (answers slower than ``stall_ms``) and ``errors`` (no answer).
    """

    def __init__(self, port: int, *, password: str | None = None, interval: float = 0.002,
                 stall_ms: float = 100.0) -> None:
        argv = [sys.executable, "-m", "tools.fuzz", "--probe", str(port),
                "--probe-interval", str(interval), "--stall-ms", str(stall_ms)]
        if password:
            argv += ["--password", password]
        self._proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._latest: dict = {}
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._first.wait(20) or not self._latest.get("pings"):
            self.stop()
            raise RuntimeError(f"the prober got no answer from port {port}")

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._latest = json.loads(line)
            if self._latest.get("pings"):
                self._first.set()
        self._first.set()

    def snapshot(self) -> dict:
        return dict(self._latest)

    def stop(self) -> dict:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._thread.join(20)
        self._proc.stdout.close()
        return self.snapshot()

    def __enter__(self) -> "Prober":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _probe_main(port: int, interval: float, stall_ms: float, password: str | None) -> int:
    """The prober's child process (see :class:`Prober`)."""
    hello = encode([b"AUTH", password.encode()]) if password else b""
    stats = {"pings": 0, "max_ms": 0.0, "stalls": 0, "errors": 0}
    sock = None
    last_report = 0.0
    while True:
        started = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if hello:
                    sock.sendall(hello)
                    if sock.recv(64) != b"+OK\r\n":
                        raise ConnectionError("AUTH refused")
                    started = time.perf_counter()
            sock.sendall(PING)
            reply = b""
            while len(reply) < len(PONG):
                data = sock.recv(64)
                if not data:
                    raise ConnectionError("closed")
                reply += data
            if reply != PONG:
                raise ConnectionError(f"unexpected reply {reply!r}")
            elapsed = (time.perf_counter() - started) * 1000
            stats["pings"] += 1
            stats["max_ms"] = max(stats["max_ms"], round(elapsed, 3))
            if elapsed > stall_ms:
                stats["stalls"] += 1
        except OSError:
            stats["errors"] += 1
            if sock is not None:
                sock.close()
            sock = None
        now = time.monotonic()
        if now - last_report > 0.1:
            last_report = now
            print(json.dumps(stats), flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], interval)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            print(json.dumps(stats), flush=True)
            return 0


# -- the long run ------------------------------------------------------------------

@dataclass
class Report:
    """What a fuzzing run did and saw."""

    frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FRAME_KINDS, 0))
    bytes_sent: int = 0
    bytes_received: int = 0
    protocol_errors: int = 0
    connections: int = 0
    closed_early: int = 0
    refused: int = 0
    hung: int = 0
    slowest_close_ms: float = 0.0
    crashed: bool = False
    prober: dict = field(default_factory=dict)
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0
    keys: int | None = None
    seconds: float = 0.0

    @property
    def frames_sent(self) -> int:
        return sum(self.frames.values())

    def failed(self) -> bool:
        return bool(self.crashed or self.hung or self.prober.get("stalls") or self.prober.get("errors"))

    def lines(self) -> list[str]:
        mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
        kinds = ", ".join(f"{k} {v}" for k, v in self.frames.items())
        p = self.prober
        return [
            f"frames sent          {self.frames_sent} ({kinds}; written whole before any close)",
            f"bytes sent           {self.bytes_sent}",
            f"bytes received       {self.bytes_received}",
            f"protocol errors      {self.protocol_errors}",
            f"connections          {self.connections} (closed by the node before our end of stream: "
            f"{self.closed_early}; refused: {self.refused})",
            f"hung connections     {self.hung} (slowest close after our end of stream: "
            f"{self.slowest_close_ms:.1f} ms)",
            f"crashes              {int(self.crashed)}",
            f"prober               {p.get('pings', 0)} PINGs, max latency {p.get('max_ms', 0):.1f} ms, "
            f"stalls {p.get('stalls', 0)}, unanswered {p.get('errors', 0)}",
            f"node RSS             start {mib(self.rss_start)}, peak {mib(self.rss_peak)}, "
            f"end {mib(self.rss_end)} ({self.keys} keys at the end)",
            f"duration             {self.seconds:.1f} s ({self.frames_sent / max(self.seconds, 1e-9):.0f} frames/s)",
        ]


async def _connection(port: int, chunks: list[bytes], report: Report, hang_timeout: float) -> int:
    """One fuzzing connection: send the chunks, half-close, read until the node closes.

    Returns how many bytes were sent (fewer than the chunks hold if the node closed
    the connection first).
    """
    sent = 0
    try:
        stream = await trio.open_tcp_stream(HOST, port)
    except OSError:
        report.refused += 1
        return sent
    report.connections += 1
    # Close with a reset: thousands of connections a second must not pile up in TIME_WAIT.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tail = bytearray()
    eof_sent_at = None
    closed_at = None

    async def receive() -> None:
        nonlocal closed_at
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                closed_at = time.monotonic()
                return
            report.bytes_received += len(data)
            tail.extend(data)
            del tail[:-512]

    with trio.move_on_after(hang_timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            try:
                for chunk in chunks:
                    await stream.send_all(chunk)
                    sent += len(chunk)
                await stream.send_eof()
                eof_sent_at = time.monotonic()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    if closed_at is None:
        report.hung += 1
    elif eof_sent_at is None or closed_at < eof_sent_at:
        report.closed_early += 1
    else:
        report.slowest_close_ms = max(report.slowest_close_ms, (closed_at - eof_sent_at) * 1000)
    if ends_with_protocol_error(tail):
        report.protocol_errors += 1
    await stream.aclose()
    report.bytes_sent += sent
    return sent


async def fuzz(port: int, *, frames: int, connections: int, seconds: float, seed: int,
               pid: int | None, alive, report: Report, progress: float = 5.0,
               hang_timeout: float = 5.0, stall_ms: float = 100.0, password: str | None = None,
               probe_port: int | None = None, out=sys.stdout) -> Report:
    """Fuzz the node on ``port`` until ``frames`` were sent or ``seconds`` passed."""
    corpus = hostile_corpus() + [Case("huge header", frame) for frame in huge_header_frames()]
    if password:  # the fuzzing connections never authenticate: the pre-AUTH limits apply
        corpus += unauthenticated_corpus()
    remaining = frames
    started = time.monotonic()
    deadline = started + seconds
    if pid is not None:
        try:
            reset_peak(pid)
        except OSError:  # not ours to reset: the peak comes from the samples alone
            pass
        report.rss_start = report.rss_peak = memory(pid)["VmRSS"]

    async def worker(index: int) -> None:
        nonlocal remaining
        rng = random.Random(seed * 1_000_003 + index)
        while remaining > 0 and time.monotonic() < deadline and not report.crashed:
            n = min(remaining, rng.randrange(1, 33))
            remaining -= n
            batch = [fuzz_frame(rng, corpus) for _ in range(n)]
            payload = b"".join(frame for _, frame in batch)
            sent = await _connection(port, split_chunks(rng, payload, most=6), report, hang_timeout)
            end = 0
            for kind, frame in batch:  # count the frames written whole; the rest go again
                end += len(frame)
                if end > sent:
                    break
                report.frames[kind] += 1
                n -= 1
            remaining += n

    def sample() -> dict[str, int]:
        try:
            return memory(pid) if pid is not None and alive() else {}
        except OSError:  # the process ended between the two looks
            return {}

    async def monitor(done: trio.Event) -> None:
        next_line = time.monotonic() + progress
        while not done.is_set():
            if not alive():
                report.crashed = True
            report.rss_peak = max(report.rss_peak, sample().get("VmRSS", 0))
            if time.monotonic() >= next_line:
                next_line += progress
                p = prober.snapshot()
                elapsed = time.monotonic() - started
                print(f"[{elapsed:7.1f}s] frames {report.frames_sent} ({report.frames_sent / elapsed:.0f}/s), "
                      f"connections {report.connections}, protocol errors {report.protocol_errors}, "
                      f"hung {report.hung}, prober max {p.get('max_ms', 0):.1f} ms stalls "
                      f"{p.get('stalls', 0)}, rss {report.rss_peak / 2**20:.1f} MiB peak", file=out, flush=True)
            with trio.move_on_after(0.1):
                await done.wait()

    with Prober(probe_port or port, password=password, stall_ms=stall_ms) as prober:
        done = trio.Event()
        async with trio.open_nursery() as outer:
            outer.start_soon(monitor, done)
            async with trio.open_nursery() as nursery:
                for i in range(connections):
                    nursery.start_soon(worker, i)
            done.set()
        report.prober = prober.stop()
    report.seconds = time.monotonic() - started
    status = sample()
    report.crashed = report.crashed or not alive()
    if not report.crashed:  # the keys the fuzzing wrote explain most of the growth
        report.keys = ask(probe_port or port, [b"DBSIZE"], password)
    report.rss_end = status.get("VmRSS", 0)
    report.rss_peak = max(report.rss_peak, status.get("VmHWM", 0))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100_000, help="frames to send (default 100000)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--seconds", type=float, default=3600, help="stop after this long (default 3600)")
    p.add_argument("--port", type=int, help="fuzz the node already listening on 127.0.0.1:PORT")
    p.add_argument("--password", help="the node's requirepass (the prober authenticates; fuzzing does not)")
    p.add_argument("--bus", action="store_true", help="send the frames to the cluster bus port "
                   "(the node's own is started with --cluster; with --port, the bus is PORT+10000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--stall-ms", type=float, default=100.0, help="a PING slower than this is a stall")
    p.add_argument("--hang-timeout", type=float, default=5.0,
                   help="seconds a connection may stay open after our end of stream")
    p.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    p.add_argument("--probe-interval", type=float, default=0.002, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.probe is not None:
        return _probe_main(ns.probe, ns.probe_interval, ns.stall_ms, ns.password)

    from tools.procs import start_respkv

    server = None
    if ns.port is None:
        server = start_respkv(["--cluster"] if ns.bus else [])
        port, pid = server.port, server.pid
        alive = lambda: server.proc.poll() is None  # noqa: E731
    else:
        port = ns.port
        pid = ask(port, [b"INFO", b"server"], ns.password, rb"process_id:(\d+)")
        alive = functools.partial(running, pid)
    target = port + 10000 if ns.bus else port
    report = Report()
    print(f"fuzzing 127.0.0.1:{target} ({'cluster bus' if ns.bus else 'client port'}, node pid {pid}) "
          f"with {ns.frames} frames over {ns.connections} connections, seed {ns.seed}", flush=True)
    try:
        trio.run(functools.partial(
            fuzz, target, frames=ns.frames, connections=ns.connections, seconds=ns.seconds, seed=ns.seed,
            pid=pid, alive=alive, report=report, progress=ns.progress, hang_timeout=ns.hang_timeout,
            stall_ms=ns.stall_ms, password=ns.password, probe_port=port))
    finally:
        if server is not None:
            crashed = server.proc.poll() is not None
            server.stop()
            report.crashed = report.crashed or crashed
    failed = report.failed()
    print("fuzz report", *("  " + line for line in report.lines()),
          f"  result               {'FAIL' if failed else 'PASS'}", sep="\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
