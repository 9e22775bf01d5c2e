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


# -- malformed requests inside pipelined runs ---------------------------------------------
#
# The reader's fast path hands the session hiredis's view of a chunk without checking
# every argument; the session and the run handlers check what they use and let the
# exact path take over at the first malformed request.  These pipelines put one in
# the middle of a run, on each kind of node whose run handlers differ.

NODE_KINDS = {
    "standalone": {},
    "cluster": {"cluster-enabled": True, "replication-factor": 1},
    "replicated": {"cluster-enabled": True},  # one member: N is capped at 1
}


@pytest.fixture(scope="module", params=list(NODE_KINDS), ids=list(NODE_KINDS))
def any_node(request, tmp_path_factory):
    server = NodeThread(tmp_path_factory.mktemp(request.param), **NODE_KINDS[request.param]).start()
    yield server
    server.stop()


def _set(key: bytes, value: bytes) -> bytes:
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)


def _get(key: bytes) -> bytes:
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"*3\r\n$3\r\nSET\r\n$4\r\n{k}1\r\n:5\r\n", b"expected '$', got ':'"),
        (b"*3\r\n$3\r\nSET\r\n*1\r\n$1\r\nx\r\n$1\r\nv\r\n", b"expected '$', got '*'"),
        (b"*3\r\n$3\r\nSET\r\n$4\r\n{k}1\r\n$-1\r\n", b"invalid bulk length"),
    ],
    ids=["integer", "nested", "null"],
)
def test_malformed_set_in_a_run_stores_nothing_of_it(any_node, bad, reason):
    other = any_node.client()
    other.delete("{k}1", "{k}2")
    with raw_client(any_node) as sock:
        sock.sendall(_set(b"{k}1", b"a") + _set(b"{k}2", b"b") + bad + _set(b"{k}1", b"after"))
        expected = b"+OK\r\n+OK\r\n-ERR Protocol error: " + reason + b"\r\n"
        assert read_until_closed(sock) == expected
    assert other.mget("{k}1", "{k}2") == [b"a", b"b"]  # nothing stored from or after it
    assert other.ping() is True
    other.close()


def test_malformed_get_in_a_run_answers_the_requests_before_it(any_node):
    other = any_node.client()
    other.set("{k}1", "v")
    bad = b"*2\r\n$3\r\nGET\r\n*1\r\n$4\r\n{k}1\r\n"
    with raw_client(any_node) as sock:
        sock.sendall(_get(b"{k}1") + _get(b"{k}1") + bad + _get(b"{k}1"))
        expected = b"$1\r\nv\r\n$1\r\nv\r\n-ERR Protocol error: expected '$', got '*'\r\n"
        assert read_until_closed(sock) == expected
    other.close()


def test_a_line_between_pipelined_requests_is_an_inline_command(any_node):
    """``:5`` after a request is, for Redis, an inline command (hiredis: an integer)."""
    other = any_node.client()
    other.set("{k}1", "v")
    with raw_client(any_node) as sock:
        sock.sendall(_get(b"{k}1") + b":5\r\n" + _get(b"{k}1") + b"PING\r\n")
        expected = b"$1\r\nv\r\n-ERR unknown command ':5', with args beginning with: \r\n$1\r\nv\r\n+PONG\r\n"
        assert read_exactly(sock, len(expected)) == expected
        sock.sendall(b"PING\r\n")  # the connection stays open and back on the fast path
        assert read_exactly(sock, 7) == b"+PONG\r\n"
    other.close()


def test_replies_larger_than_the_socket_buffer_reach_a_slow_reader_in_order(node):
    """A round's replies are sent at its end; one the socket cannot take whole is
    finished by a task while the node keeps serving others."""
    other = node.client()
    value = bytes(range(256)) * 16384  # 4 MiB: more than a socket buffer holds
    other.set("big", value)
    reply = b"$%d\r\n%b\r\n" % (len(value), value)
    with raw_client(node) as sock:
        sock.sendall(_get(b"big") * 3 + b"*1\r\n$4\r\nPING\r\n")
        assert other.ping() is True  # served while the slow reader's replies wait
        assert read_exactly(sock, 3 * len(reply) + 7) == reply * 3 + b"+PONG\r\n"
        sock.sendall(b"PING\r\n")  # back with the poller afterwards
        assert read_exactly(sock, 7) == b"+PONG\r\n"
    other.close()
