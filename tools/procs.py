"""Start and stop server processes for the conformance harness and the benchmarks.

Both a reference ``redis-server`` and a respkv node are started the same way: on a
free loopback port, with a private data directory, as a child process that is
stopped (SIGTERM, then SIGKILL) when the caller is done with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from respkv.launcher import find_free_base_port


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the block, SIGTERM raises KeyboardInterrupt: a tool stopped with
    ``kill`` or ``timeout`` then unwinds as after Ctrl-C, and its ``finally``
    blocks stop the servers and clusters it started instead of leaving them
    running.  The previous handler comes back at the end."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The port's cluster-bus twin (port + 10000) is free too, so a respkv node
    started in cluster mode can bind both; both lie below the ephemeral range, so
    no client connection (or its TIME_WAIT remains) can take them meanwhile.
    """
    return find_free_base_port(1)


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Block until something accepts connections on ``port`` (or raise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@dataclass
class ServerProcess:
    """A running server child process and where to reach it."""

    name: str
    port: int
    proc: subprocess.Popen
    workdir: str
    _owns_workdir: bool = field(default=True, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident set size of the process, from /proc."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _spawn(name: str, argv: list[str], port: int, workdir: str, log_name: str) -> ServerProcess:
    log = open(os.path.join(workdir, log_name), "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()
    server = ServerProcess(name, port, proc, workdir)
    try:
        wait_for_port(port, proc)
    except BaseException:
        server.stop()
        raise
    return server


def start_redis_server(extra: list[str] | None = None, port: int | None = None) -> ServerProcess:
    """Start a reference ``redis-server`` on a free port: no snapshots, the log on (as respkv's default)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="redis-ref-")
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "yes", "--dir", workdir, "--daemonize", "no",
        *(extra or []),
    ]
    return _spawn("redis", argv, port, workdir, "redis.log")


def start_respkv(extra: list[str] | None = None, port: int | None = None) -> ServerProcess:
    """Start a respkv node (this checkout's package) on a free port."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="respkv-node-")
    argv = [
        sys.executable, "-m", "respkv", "server", "--port", str(port),
        "--bind", "127.0.0.1", "--dir", os.path.join(workdir, "data"),
        *(extra or []),
    ]
    return _spawn("respkv", argv, port, workdir, "respkv.log")
