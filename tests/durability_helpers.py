"""Helpers of the durability tests: respkv server processes on a data directory
that outlives them, a small trio RESP client, and the commit log's entry layout.

Every wait here has a deadline (``trio.fail_after``); nothing sleeps for a guessed
time.  Server processes run this checkout's package (``PYTHONPATH`` is the
repository), whatever the virtualenv's editable install points at.
"""

from __future__ import annotations

import os
import pathlib
import signal
import struct
import subprocess
import sys

import hiredis
import trio

from respkv.persistence.framing import ENTRY_HEADER_SIZE, FILE_HEADER_SIZE
from respkv.persistence.entries import BATCH, split_batch, split_entry
from tools.procs import free_port

REPO = pathlib.Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: Seconds a node process may take to start listening or to exit (generous for a
#: loaded machine; the waits end as soon as the event happens).
PROCESS_TIMEOUT = 30.0
#: Seconds one request may take.
REQUEST_TIMEOUT = 10.0

_LENGTH = struct.Struct("<I")


class ConnectionClosed(Exception):
    """The server closed the connection before replying."""


class Client:
    """A RESP client over a trio stream; errors come back as ``hiredis.ReplyError``
    values (not raised), so a test can compare their text."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader()

    @classmethod
    async def connect(cls, port: int) -> Client:
        with trio.fail_after(REQUEST_TIMEOUT):
            return cls(await trio.open_tcp_stream(HOST, port))

    async def call(self, *args):
        """Send one command and return its reply."""
        return (await self.pipeline([args]))[0]

    async def pipeline(self, commands) -> list:
        """Send ``commands`` in one write and return their replies, in order."""
        payload = bytearray()
        for args in commands:
            words = [a if isinstance(a, bytes) else str(a).encode() for a in args]
            payload += b"*%d\r\n" % len(words)
            for word in words:
                payload += b"$%d\r\n%s\r\n" % (len(word), word)
        replies = []
        with trio.fail_after(REQUEST_TIMEOUT):
            try:
                await self.stream.send_all(bytes(payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(str(exc)) from None
            while len(replies) < len(commands):
                reply = self.reader.gets()
                if reply is not False:
                    replies.append(reply)
                    continue
                try:
                    data = await self.stream.receive_some(1 << 16)
                except trio.BrokenResourceError as exc:
                    raise ConnectionClosed(str(exc)) from None
                if not data:
                    raise ConnectionClosed("the server closed the connection")
                self.reader.feed(data)
        return replies

    async def info(self, section: str = "persistence") -> dict[str, str]:
        text = (await self.call("INFO", section)).decode()
        return dict(line.split(":", 1) for line in text.split("\r\n") if line and not line.startswith("#"))

    async def aclose(self) -> None:
        await self.stream.aclose()


class ServerProcess:
    """``respkv server`` on ``directory``, started and stopped as often as a test
    likes; its output goes to ``directory.log`` (appended across runs)."""

    def __init__(self, directory: pathlib.Path, *args: str, fiu_fifo: str | None = None) -> None:
        self.directory = directory
        self.args = list(args)
        self.fiu_fifo = fiu_fifo
        self.log_path = directory.with_name(directory.name + ".log")
        self.port: int | None = None
        self.proc: trio.Process | None = None
        self._clients: list[Client] = []

    def argv(self, port: int, *extra: str) -> list[str]:
        argv = [sys.executable, "-m", "respkv", "server", "--bind", HOST, "--port", str(port),
                "--dir", str(self.directory), *self.args, *extra]
        if self.fiu_fifo is not None:
            argv = ["fiu-run", "-x", "-f", self.fiu_fifo, *argv]
        return argv

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, *extra: str) -> ServerProcess:
        """Start the server and return once it accepts connections."""
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = await trio.lowlevel.open_process(
                self.argv(self.port, *extra), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=_env(),
            )
        with trio.fail_after(PROCESS_TIMEOUT):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
                try:
                    stream = await trio.open_tcp_stream(HOST, self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.aclose()
                return self

    async def client(self) -> Client:
        """A connection to the server, closed when the process ends (:meth:`wait`)."""
        client = await Client.connect(self.port)
        self._clients.append(client)
        return client

    async def stop(self, how: int = signal.SIGTERM) -> int:
        """Send ``how`` and wait for the process to end; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(how)
        return await self.wait()

    async def wait(self) -> int:
        """Wait for the process to end; return its exit status."""
        with trio.fail_after(PROCESS_TIMEOUT):
            status = await self.proc.wait()
        await self.close_clients()
        return status

    async def close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()

    async def aclose(self) -> None:
        """Kill the process if it still runs and close its clients (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            await self.wait()
        await self.close_clients()


async def failed_start(directory: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``respkv server`` on ``directory`` expecting it to refuse to start; the
    result holds its exit status and output."""
    argv = [sys.executable, "-m", "respkv", "server", "--bind", HOST, "--port", str(free_port()),
            "--dir", str(directory), *args]
    with trio.fail_after(PROCESS_TIMEOUT):
        return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False,
                                      cwd=REPO, env=_env())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# -- the commit log's layout ----------------------------------------------------------


def manifest_parts(directory: pathlib.Path) -> list[str]:
    """The files the data directory's manifest lists, in order."""
    lines = (directory / "manifest").read_text().splitlines()[1:]
    return [line.split(" ", 1)[1] for line in lines]


def active_log(directory: pathlib.Path) -> pathlib.Path:
    return directory / [name for name in manifest_parts(directory) if name.startswith("log.")][-1]


def log_entries(path: pathlib.Path) -> list[tuple[int, int, bytes, list[bytes]]]:
    """``(offset, framed size, kind, keys)`` of every entry of a commit log: a
    batch's kind is BATCH and its keys are those of its entries, in order."""
    data = path.read_bytes()
    offset = FILE_HEADER_SIZE
    entries = []
    while offset < len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        payload = data[offset + ENTRY_HEADER_SIZE : offset + ENTRY_HEADER_SIZE + length]
        if payload[:1] == BATCH:
            kind, keys = BATCH, [split_entry(sub)[1] for sub in split_batch(payload)]
        else:
            kind, key, _ = split_entry(payload)
            keys = [key]
        entries.append((offset, ENTRY_HEADER_SIZE + length, kind, keys))
        offset += ENTRY_HEADER_SIZE + length
    return entries
