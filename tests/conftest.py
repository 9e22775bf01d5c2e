"""Shared fixtures: a real respkv node on a loopback port, and redis-py clients.

The node runs with its own ``trio.run`` in a background thread so the tests can
drive it with redis-py's ordinary synchronous client over a real socket, exactly as
an application would.  Each test module gets a fresh node on a free port (port 0).
"""

from __future__ import annotations

import threading

import pytest
import redis
import trio

from respkv.config import Config
from respkv.node import Node, serve_node


class NodeThread:
    """A node served by ``trio.run`` in a daemon thread; ``stop()`` cancels it."""

    def __init__(self, tmp_path, **config) -> None:
        self.config = Config(dir=str(tmp_path / "node"), port=0, **config)
        self.node = Node(self.config)
        self.port: int | None = None
        self._token = None
        self._cancel = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clients: list[redis.Redis] = []

    def _run(self) -> None:
        async def main():
            with trio.CancelScope() as scope:
                self._cancel = scope
                self._token = trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    self.port = await nursery.start(serve_node, self.node)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> "NodeThread":
        self._thread.start()
        if not self._ready.wait(10) or self.port is None:
            raise RuntimeError(f"node did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._token is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(10)
        if self._error is not None:
            raise self._error

    def client(self, protocol: int = 3, **kwargs) -> redis.Redis:
        """A redis-py client; kept referenced and closed when the node stops."""
        client = redis.Redis(port=self.port, protocol=protocol, socket_timeout=10, **kwargs)
        self._clients.append(client)
        return client


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    server = NodeThread(tmp_path_factory.mktemp("node")).start()
    yield server
    server.stop()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def r(request, node):
    """A redis-py client on the module's node, once per protocol; db flushed first."""
    client = node.client(protocol=request.param)
    client.flushall()
    yield client
    client.close()
