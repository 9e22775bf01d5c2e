"""Sessions over real sockets: pipelining, protocol errors, limits, auth, HELLO."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from .conftest import NodeThread


def raw_client(node: NodeThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the node sends until it closes (a reset counts as a close)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_pipelined_requests_answered_in_order(node):
    with raw_client(node) as sock:
        sock.sendall(b"SET a 1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n*2\r\n$4\r\nECHO\r\n")
        sock.sendall(b"$2\r\nhi\r\n*1\r\n$4\r\nECHO\r\n")  # a request split across two writes
        expected = b"+OK\r\n$1\r\n1\r\n+PONG\r\n$2\r\nhi\r\n-ERR wrong number of arguments for 'echo' command\r\n"
        assert read_exactly(sock, len(expected)) == expected


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"*abc\r\n", b"invalid multibulk length"),
        (b"*1\r\n$abc\r\n", b"invalid bulk length"),
        (b"*1\r\n$2147483648\r\n", b"invalid bulk length"),
        (b"*1\r\nfoo\r\n", b"expected '$', got 'f'"),
        (b'SET "abc\r\n', b"unbalanced quotes in request"),
        (b"x" * (70 * 1024), b"too big inline request"),
    ],
)
def test_protocol_error_replies_once_and_closes(node, frame, reason):
    other = node.client()
    with raw_client(node) as sock:
        sock.sendall(b"PING\r\n" + frame)
        assert read_until_closed(sock) == b"+PONG\r\n-ERR Protocol error: " + reason + b"\r\n"
    assert other.ping() is True  # other clients are unaffected
    other.close()


def test_huge_announced_sizes_do_not_grow_memory(node):
    """A client announcing 2 GB or 2 billion elements must not make the node allocate."""
    rss_before = _rss()
    socks = []
    for _ in range(20):
        sock = raw_client(node)
        sock.sendall(b"*2000000000\r\n$3\r\nSET\r\n")
        socks.append(sock)
    node.client().ping()  # the node still answers, and has read the headers
    assert _rss() - rss_before < 50 * 1024 * 1024
    for sock in socks:
        sock.close()


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_quit_replies_ok_and_closes(node):
    with raw_client(node) as sock:
        sock.sendall(b"QUIT\r\nPING\r\n")
        assert read_until_closed(sock) == b"+OK\r\n"


def test_unknown_command_and_arity_errors(r):
    with pytest.raises(redis.ResponseError, match=r"unknown command 'NOPE', with args beginning with: 'a' 'b'"):
        r.execute_command("NOPE", "a", "b")
    with pytest.raises(redis.ResponseError, match=r"wrong number of arguments for 'get' command"):
        r.execute_command("GET")


def test_hello_switches_protocol(node):
    with raw_client(node) as sock:
        sock.sendall(b"HELLO 3\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n")
        sock.sendall(b"GET missing\r\n")
        assert read_exactly(sock, 3) == b"_\r\n"
        sock.sendall(b"HELLO 4\r\n")
        expected = b"-NOPROTO unsupported protocol version\r\n"
        assert read_exactly(sock, len(expected)) == expected


def test_requirepass_noauth_and_wrongpass(tmp_path):
    node = NodeThread(tmp_path, requirepass="s3cret").start()
    try:
        anonymous = node.client(protocol=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            node.client(protocol=3, password="wrong").ping()
        client = node.client(protocol=3, password="s3cret")
        assert client.set("k", "v") is True
        with raw_client(node) as sock:
            sock.sendall(b"GET k\r\nAUTH wrong\r\nAUTH s3cret\r\nGET k\r\n")
            expected = (
                b"-NOAUTH Authentication required.\r\n"
                b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                b"+OK\r\n$1\r\nv\r\n"
            )
            assert read_exactly(sock, len(expected)) == expected
        with raw_client(node) as sock:
            # Before AUTH, at most 10 arguments and 16 KiB per bulk.
            sock.sendall(b"*11\r\n")
            assert read_until_closed(sock) == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    finally:
        node.stop()


def test_maxclients(tmp_path):
    node = NodeThread(tmp_path, maxclients=2).start()
    try:
        a, b = node.client(), node.client()
        a.ping()
        b.ping()
        with raw_client(node) as sock:
            assert read_until_closed(sock) == b"-ERR max number of clients reached\r\n"
        a.close()
        deadline = time.monotonic() + 10
        while True:  # the freed slot becomes usable once the node saw the close
            c = node.client()
            try:
                assert c.ping() is True
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
            finally:
                c.close()
    finally:
        node.stop()


def test_query_buffer_limit_closes_client(tmp_path):
    node = NodeThread(tmp_path, **{"client-query-buffer-limit": 1024 * 1024}).start()
    try:
        with raw_client(node) as sock:
            sock.sendall(b"*1\r\n$10000000\r\n")
            try:
                for _ in range(40):
                    sock.sendall(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert read_until_closed(sock) == b""
        assert node.client().ping() is True
    finally:
        node.stop()


def test_maxmemory_refuses_writes_but_not_reads(tmp_path):
    node = NodeThread(tmp_path).start()
    try:
        client = node.client(protocol=2)
        client.set("kept", "1")
        client.config_set("maxmemory", "1mb")  # far below any Python process's RSS
        deadline = time.monotonic() + 10
        while True:  # the node notices at its next cron tick
            try:
                client.set("k", "v")
            except redis.exceptions.OutOfMemoryError as exc:  # redis-py strips the "OOM " code
                assert str(exc) == "command not allowed when used memory > 'maxmemory'."
                break
            assert time.monotonic() < deadline
        assert client.get("kept") == b"1"
        assert client.delete("kept") == 1  # DEL frees memory, so it is allowed
        with pytest.raises(redis.ResponseError, match="must be one of the following: noeviction"):
            client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("maxmemory", "0")
        while True:
            try:
                assert client.set("k", "v") is True
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline
    finally:
        node.stop()
