"""Protected mode, as Redis 7.0: without a password, only loopback clients are served.

* The decision as a table (:func:`respkv.net.access.protected_mode_denies`).
* Where it is applied: the listener's admission of an accepted socket, fed socket
  pairs with made-up peer addresses (runs anywhere).
* End to end with real non-loopback traffic: two network namespaces made by the
  test and joined by a veth pair with addresses of a private range that exist only
  inside them.  The node runs in one (bound to 0.0.0.0, so its loopback works too),
  a small client in the other; both are started with ``ip netns exec``.  Skipped
  unless root and able to create namespaces; the namespaces (and with them the veth
  pair) are deleted afterwards.  No traffic leaves them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import hiredis
import pytest

from respkv.config import Config
from respkv.net import server
from respkv.net.access import DENIED, host_of, is_loopback, protected_mode_denies
from respkv.node import Node

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the decision -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.9.8.7", True),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("0.0.0.0", False),
        ("128.0.0.1", False),
        ("::", False),
        ("::2", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
        ("", False),
        ("localhost", False),  # peers are addresses, never names
        ("not an address", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "protected, requirepass, host, denied",
    [
        (True, "", "10.0.0.2", True),
        (True, "", "::ffff:192.0.2.1", True),
        (True, "", "2001:db8::2", True),
        (True, "", "127.0.0.1", False),
        (True, "", "127.0.0.53", False),
        (True, "", "::1", False),
        (True, "", "::ffff:127.0.0.1", False),
        (True, "s3cret", "10.0.0.2", False),  # a password lifts it
        (False, "", "10.0.0.2", False),  # protected-mode no lifts it
        (False, "s3cret", "10.0.0.2", False),
    ],
)
def test_protected_mode_decision(protected, requirepass, host, denied):
    assert protected_mode_denies(protected, requirepass, host) is denied


@pytest.mark.parametrize(
    "addr, host",
    [("127.0.0.1:6379", "127.0.0.1"), ("[::1]:6379", "::1"), ("[::ffff:10.0.0.1]:5", "::ffff:10.0.0.1")],
)
def test_host_of_formatted_address(addr, host):
    assert host_of(addr) == host


def test_denied_is_redis_text():
    assert DENIED.startswith(b"-DENIED Redis is running in protected mode because protected mode is enabled "
                             b"and no password is set for the default user. ")
    assert b"'CONFIG SET protected-mode no'" in DENIED and b"'--protected-mode no'" in DENIED
    assert DENIED.endswith(b"to start accepting connections from the outside.\r\n")
    assert DENIED.count(b"\r\n") == 1 and b"respkv" not in DENIED


# -- where it is applied: admission of accepted sockets ---------------------------------------


def admit(node: Node, host: str):
    """Admit a socket pair's end as if accepted from ``host``; returns (peer end, session)."""
    added = []
    ours, theirs = socket.socketpair()
    theirs.settimeout(10)
    server._admit(node, SimpleNamespace(add=added.append), ours, (host, 40000), "0.0.0.0:6379")
    session = added[0] if added else None
    return theirs, session


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


async def test_admission_refuses_remote_peers_unless_lifted(tmp_path):
    node = Node(Config(dir=str(tmp_path / "node"), port=0))
    peers = []
    try:
        peer, session = admit(node, "10.1.2.3")
        peers.append(peer)
        assert session is None and read_to_eof(peer) == DENIED  # the error, then closed
        assert (node.stats.connections_received, node.stats.rejected_connections) == (1, 1)

        for host in ("127.0.0.1", "127.4.5.6", "::1", "::ffff:127.0.0.1"):
            peer, session = admit(node, host)
            peers.append(peer)
            assert session is not None and session.local, host
            session.sock.close()
        assert node.stats.rejected_connections == 1

        node.config.set_text("requirepass", "s3cret")
        peer, session = admit(node, "10.1.2.3")
        peers.append(peer)
        assert session is not None and not session.local and not session.authenticated
        session.sock.close()

        node.config.set_text("requirepass", "")
        node.config.set_text("protected-mode", "no")
        peer, session = admit(node, "2001:db8::7")
        peers.append(peer)
        assert session is not None and not session.local and session.authenticated
        session.sock.close()
        assert node.stats.rejected_connections == 1
    finally:
        for peer in peers:
            peer.close()


# -- end to end, from another network namespace -----------------------------------------------

#: A private range; these addresses exist only inside the two namespaces below.
NODE_ADDR, CLIENT_ADDR, PREFIX = "10.213.77.1", "10.213.77.2", 30
NODE_PORT = 6379  # nothing else listens in a namespace the test just made
START_TIMEOUT = 30.0

#: The client run inside a namespace: sends the commands (a JSON list of argument
#: lists) in one write, reads until it has that many replies (with none, or when
#: told "eof": until the server closes), and prints what it received as hex and
#: whether the server closed.
CLIENT = r"""
import json, socket, sys
import hiredis
host, port, commands = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
until_eof = not commands or sys.argv[4:] == ["eof"]
payload = b"".join(
    b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode()) for a in c)
    for c in commands
)
raw, closed, count = b"", False, 0
with socket.create_connection((host, port), timeout=10) as sock:
    sock.sendall(payload)
    reader = hiredis.Reader()
    while until_eof or count < len(commands):
        data = sock.recv(65536)
        if not data:
            closed = True
            break
        raw += data
        reader.feed(data)
        while reader.gets() is not False:
            count += 1
print(json.dumps({"raw": raw.hex(), "closed": closed}))
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespaces(tmp_path):
    """Two fresh network namespaces joined by a veth pair: (node's, client's)."""
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = str(os.getpid() % 10**6)
    node_ns, client_ns = f"respkv-t{tag}-node", f"respkv-t{tag}-client"
    made = []
    try:
        for ns in (node_ns, client_ns):
            out = _ip("netns", "add", ns, check=False)
            if out.returncode != 0:
                pytest.skip(f"ip netns add failed: {out.stderr.strip()}")
            made.append(ns)
        # Both ends are created inside the namespaces: the pair never shows in ours.
        out = _ip("link", "add", f"rkv{tag}n", "netns", node_ns, "type", "veth",
                  "peer", "name", f"rkv{tag}c", "netns", client_ns, check=False)
        if out.returncode != 0:
            pytest.skip(f"cannot create a veth pair: {out.stderr.strip()}")
        for ns, dev, addr in ((node_ns, f"rkv{tag}n", NODE_ADDR), (client_ns, f"rkv{tag}c", CLIENT_ADDR)):
            _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        yield node_ns, client_ns
    finally:
        for ns in made:
            _ip("netns", "del", ns, check=False)


def run_client(ns: str, host: str, *commands: list[str], until_eof: bool = False) -> tuple[list, bool, bytes]:
    """Run :data:`CLIENT` inside ``ns``; returns (parsed replies, server closed, raw bytes)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(NODE_PORT), json.dumps(commands),
         *(["eof"] if until_eof else [])],
        capture_output=True, text=True, timeout=30,
    )
    if out.returncode != 0:
        raise ConnectionError(f"client in {ns} failed: {out.stderr.strip()[-500:]}")
    result = json.loads(out.stdout)
    raw = bytes.fromhex(result["raw"])
    reader = hiredis.Reader()
    reader.feed(raw)
    replies = []
    while (reply := reader.gets()) is not False:
        replies.append(str(reply) if isinstance(reply, hiredis.ReplyError) else reply)
    return replies, result["closed"], raw


def poll(call, timeout: float):
    """``call()`` until it stops raising ConnectionError, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ConnectionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def remote_node(namespaces, tmp_path):
    """A respkv node inside the node namespace, bound to 0.0.0.0, default config."""
    node_ns, client_ns = namespaces
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node_ns, sys.executable, "-m", "respkv", "server",
             "--bind", "0.0.0.0", "--port", str(NODE_PORT), "--dir", str(tmp_path / "data")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )
    try:
        def up():
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "node.log").read_text()[-2000:])
            return run_client(node_ns, "127.0.0.1", ["PING"])

        assert poll(up, START_TIMEOUT)[0] == [b"PONG"]
        yield node_ns, client_ns
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_protected_mode_over_a_real_network(remote_node):
    node_ns, client_ns = remote_node

    def local(*commands):
        return run_client(node_ns, "127.0.0.1", *commands)

    def remote(*commands, until_eof=False):
        return poll(lambda: run_client(client_ns, NODE_ADDR, *commands, until_eof=until_eof), START_TIMEOUT)

    # A remote client is told -DENIED before it sends anything, then disconnected.
    replies, closed, raw = remote()
    assert raw == DENIED and closed
    # Also when it sends a command first.
    replies, closed, _ = remote(["PING"], until_eof=True)
    assert replies == [DENIED[1:-2].decode()] and closed
    # Loopback clients are unaffected.
    assert local(["PING"], ["CONFIG", "GET", "protected-mode"])[0] == [b"PONG", [b"protected-mode", b"yes"]]

    # A password lifts it: the remote client is served, after AUTH.
    assert local(["CONFIG", "SET", "requirepass", "s3cret"])[0] == [b"OK"]
    replies, closed, _ = remote(["PING"], ["AUTH", "s3cret"], ["PING"])
    assert replies == ["NOAUTH Authentication required.", b"OK", b"PONG"] and not closed

    # No password again: refused again.
    assert local(["AUTH", "s3cret"], ["CONFIG", "SET", "requirepass", ""])[0] == [b"OK", b"OK"]
    assert remote()[2] == DENIED

    # CONFIG SET protected-mode no, as the error suggests, lifts it.
    assert local(["CONFIG", "SET", "protected-mode", "no"])[0] == [b"OK"]
    replies, closed, _ = remote(["PING"], ["SET", "k", "from-afar"])
    assert replies == [b"PONG", b"OK"] and not closed
    assert local(["GET", "k"])[0] == [b"from-afar"]
    info = local(["INFO", "stats"])[0][0].decode()
    assert "rejected_connections:3" in info.split()
