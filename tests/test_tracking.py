"""CLIENT TRACKING: invalidation messages on raw RESP3 connections, checked against a
real redis-server with the same steps (the bytes must match), and redis-py's
client-side cache kept correct when another connection writes."""

from __future__ import annotations

import shutil
import socket

import pytest
import redis
from redis.cache import CacheConfig

from respkv.cluster.proxy import ReplyFramer
from tools.procs import start_redis_server

from .conftest import NodeThread

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


class Conn:
    """A raw connection: send a command, read the frames up to its reply.

    Pushes that arrive before the reply come first in what :meth:`roundtrip`
    returns.  A push due to another connection's write is always there before the
    reply of this connection's next command (both servers send it when the write
    is processed), so a PING shows whether one was sent, with no waiting.
    """

    def __init__(self, port: int, resp3: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.framer = ReplyFramer()
        if resp3:
            self.roundtrip("HELLO", "3")

    def call(self, *args) -> None:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        self.sock.sendall(b"".join(parts))

    def frame(self) -> bytes:
        """The next whole frame (waits for it, at most the socket's 5 s)."""
        while True:
            frame = self.framer.next_reply()
            if frame is not None:
                return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.framer.feed(chunk)

    def roundtrip(self, *args) -> bytes:
        self.call(*args)
        seen = b""
        while True:
            frame = self.frame()
            seen += frame
            if not frame.startswith(b">"):
                return seen

    def client_id(self) -> int:
        return int(self.roundtrip("CLIENT", "ID")[1:-2])

    def close(self) -> None:
        self.sock.close()


def invalidation(*keys: bytes) -> bytes:
    return b">2\r\n$10\r\ninvalidate\r\n*%d\r\n" % len(keys) + b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)


@pytest.fixture(scope="module", params=["respkv", "redis"])
def port(request, tmp_path_factory):
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server not installed")
        with start_redis_server() as server:
            yield server.port
    else:
        node = NodeThread(tmp_path_factory.mktemp("tracking"), appendonly=False).start()
        yield node.port
        node.stop()


def scenario(port: int, steps) -> list[bytes]:
    """Run ``steps`` (connection name, command...) and return what each produced."""
    conns: dict[str, Conn] = {}
    seen = []
    try:
        for name, *command in steps:
            if name not in conns:
                conns[name] = Conn(port, resp3=not name.startswith("resp2"))
            seen.append(conns[name].roundtrip(*command))
    finally:
        for conn in conns.values():
            conn.close()
    return seen


def test_default_mode_invalidates_each_read_key_once(port):
    seen = scenario(port, [
        ("writer", "FLUSHALL"),
        ("reader", "CLIENT", "TRACKING", "ON"),
        ("reader", "GET", "k"),
        ("writer", "SET", "k", "1"),
        ("reader", "PING"),
        ("writer", "SET", "k", "2"),   # not read since: nothing more
        ("reader", "PING"),
        ("reader", "GET", "k"),
        ("reader", "SET", "k", "3"),   # its own write invalidates too (no NOLOOP)
        ("reader", "CLIENT", "TRACKING", "OFF"),
    ])
    assert seen[1] == b"+OK\r\n" and seen[2] == b"_\r\n"
    assert seen[4] == invalidation(b"k") + b"+PONG\r\n"
    assert seen[6] == b"+PONG\r\n"
    assert seen[8] == b"+OK\r\n"  # the invalidation follows its reply
    assert seen[9] == invalidation(b"k") + b"+OK\r\n"


def test_noloop_bcast_prefixes(port):
    seen = scenario(port, [
        ("writer", "FLUSHALL"),
        ("reader", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "cart:", "NOLOOP"),
        ("writer", "SET", "user:1", "x"),
        ("writer", "SET", "other", "x"),
        ("reader", "PING"),
        ("reader", "SET", "cart:9", "x"),  # its own change: NOLOOP
        ("reader", "PING"),
        ("reader", "CLIENT", "TRACKINGINFO"),
    ])
    assert seen[4] == invalidation(b"user:1") + b"+PONG\r\n"
    assert seen[6] == b"+PONG\r\n"
    assert b"bcast" in seen[7] and b"noloop" in seen[7] and b"user:" in seen[7]


def test_optin_tracks_only_after_caching_yes(port):
    seen = scenario(port, [
        ("writer", "FLUSHALL"),
        ("reader", "CLIENT", "TRACKING", "ON", "OPTIN"),
        ("reader", "GET", "a"),
        ("reader", "CLIENT", "CACHING", "YES"),
        ("reader", "GET", "b"),
        ("writer", "MSET", "a", "1", "b", "2"),
        ("reader", "PING"),
        ("reader", "CLIENT", "CACHING", "NO"),
    ])
    assert seen[6] == invalidation(b"b") + b"+PONG\r\n"
    assert seen[7].startswith(b"-ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")


def test_reads_inside_a_transaction_are_tracked(port):
    """As in Redis, a read queued in MULTI is remembered when EXEC runs it (after
    the transaction's own earlier writes), and CLIENT CACHING YES before MULTI
    covers the whole transaction, then no more."""
    seen = scenario(port, [
        ("writer", "FLUSHALL"),
        ("reader", "CLIENT", "TRACKING", "ON"),
        ("reader", "MULTI"), ("reader", "GET", "a"), ("reader", "SET", "b", "x"), ("reader", "GET", "b"),
        ("reader", "EXEC"),
        ("writer", "SET", "a", "1"),
        ("reader", "PING"),
        ("writer", "SET", "b", "2"),
        ("reader", "PING"),
        ("optin", "CLIENT", "TRACKING", "ON", "OPTIN"),
        ("optin", "CLIENT", "CACHING", "YES"),
        ("optin", "MULTI"), ("optin", "GET", "c"), ("optin", "GET", "d"), ("optin", "EXEC"),
        ("optin", "GET", "e"),  # the transaction used CACHING YES up
        ("writer", "SET", "c", "1"),
        ("writer", "SET", "d", "1"),
        ("writer", "SET", "e", "1"),
        ("optin", "PING"),
    ])
    assert seen[6] == b"*3\r\n_\r\n+OK\r\n$1\r\nx\r\n"
    assert seen[8] == invalidation(b"a") + b"+PONG\r\n"
    assert seen[10] == invalidation(b"b") + b"+PONG\r\n"
    assert seen[-1] == invalidation(b"c") + invalidation(b"d") + b"+PONG\r\n"


def test_flushall_invalidates_everything_in_one_message(port):
    """FLUSHALL and FLUSHDB send every tracking client one message with a null
    key list (invalidate everything), whatever it read, and forget the table."""
    flush_all = b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    seen = scenario(port, [
        ("writer", "FLUSHALL"),
        ("writer", "MSET", "a", "1", "b", "2"),
        ("reader", "CLIENT", "TRACKING", "ON"),
        ("reader", "MGET", "a", "b"),
        ("idle", "CLIENT", "TRACKING", "ON"),
        ("bcast", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "x"),
        ("writer", "FLUSHALL"),
        ("reader", "PING"), ("idle", "PING"), ("bcast", "PING"),
        ("writer", "SET", "a", "again"),  # the table was forgotten: nothing more
        ("reader", "PING"),
        ("reader", "GET", "a"),
        ("writer", "FLUSHDB"),
        ("reader", "PING"),
    ])
    assert seen[7] == seen[8] == seen[9] == flush_all + b"+PONG\r\n"
    assert seen[11] == b"+PONG\r\n"
    assert seen[14] == flush_all + b"+PONG\r\n"


def test_redirect_to_another_connection(port):
    target = Conn(port)
    reader = Conn(port, resp3=False)
    writer = Conn(port)
    try:
        target_id = target.client_id()
        assert reader.roundtrip("CLIENT", "TRACKING", "ON", "REDIRECT", target_id) == b"+OK\r\n"
        assert reader.roundtrip("CLIENT", "GETREDIR") == b":%d\r\n" % target_id
        reader.roundtrip("GET", "r")
        writer.roundtrip("SET", "r", "1")
        assert target.frame() == invalidation(b"r")
    finally:
        for conn in (target, reader, writer):
            conn.close()


def test_errors_as_redis(port):
    steps = [
        ("a", "CLIENT", "TRACKING", "ON", "PREFIX", "x"),
        ("a", "CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"),
        ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "999999"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "abc"),
        ("a", "CLIENT", "TRACKING", "MAYBE"),
        ("a", "CLIENT", "CACHING", "YES"),
        ("a", "CLIENT", "GETREDIR"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab"),
        ("a", "CLIENT", "TRACKING", "ON"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "abc"),
        ("a", "CLIENT", "GETREDIR"),
    ]
    seen = scenario(port, steps)
    assert seen[0] == b"-ERR PREFIX option requires BCAST mode to be enabled\r\n"
    assert seen[1] == b"-ERR You can't specify both OPTIN mode and OPTOUT mode\r\n"
    assert seen[2] == b"-ERR OPTIN and OPTOUT are not compatible with BCAST\r\n"
    assert seen[3] == b"-ERR The client ID you want redirect to does not exist\r\n"
    assert seen[4].startswith(b"-ERR Prefix 'ab' overlaps with another provided prefix 'abc'.")
    assert seen[5] == b"-ERR syntax error\r\n"
    assert seen[6].startswith(b"-ERR CLIENT CACHING can be called only when the client is in tracking mode")
    assert seen[7] == b":-1\r\n"
    assert seen[8] == b"+OK\r\n"
    assert seen[9].startswith(b"-ERR You can't switch BCAST mode on/off")
    assert seen[10].startswith(b"-ERR Prefix 'abc' overlaps with an existing prefix 'ab'.")
    assert seen[11] == b":0\r\n"


@needs_redis
def test_same_bytes_as_redis_server(tmp_path):
    """The scenarios above, byte for byte on both servers."""
    steps = [
        ("w", "FLUSHALL"),
        ("r", "CLIENT", "TRACKING", "ON"),
        ("r", "MGET", "a", "b"),
        ("w", "DEL", "a"),          # a does not exist: nothing changed, nothing sent
        ("w", "SET", "b", "1"),
        ("r", "PING"),
        ("r", "CLIENT", "TRACKINGINFO"),
        ("r", "CLIENT", "TRACKING", "OFF"),
        ("w", "SET", "b", "2"),
        ("r", "PING"),
    ]
    node = NodeThread(tmp_path, appendonly=False).start()
    try:
        with start_redis_server() as server:
            assert scenario(node.port, steps) == scenario(server.port, steps)
    finally:
        node.stop()


def test_expired_and_evicted_keys_are_invalidated(tmp_path):
    node = NodeThread(tmp_path, appendonly=False).start()
    try:
        reader = Conn(node.port)
        writer = Conn(node.port)
        reader.roundtrip("CLIENT", "TRACKING", "ON")
        writer.roundtrip("SET", "soon", "x", "PX", "200")
        assert reader.roundtrip("GET", "soon") == b"$1\r\nx\r\n"
        assert reader.frame() == invalidation(b"soon")  # active expiry, no command needed
        writer.roundtrip("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
        reader.roundtrip("GET", "big")
        writer.roundtrip("SET", "big", "x" * 1000)
        assert reader.roundtrip("GET", "big") == invalidation(b"big") + b"$1000\r\n" + b"x" * 1000 + b"\r\n"
        writer.roundtrip("CONFIG", "SET", "maxmemory", "1")  # evicts at once
        assert reader.frame() == invalidation(b"big")
        writer.roundtrip("CONFIG", "SET", "maxmemory", "0")
        writer.roundtrip("SET", "f", "1")
        reader.roundtrip("GET", "f")
        writer.roundtrip("FLUSHALL")  # one message with a null list, as Redis
        assert reader.roundtrip("PING") == b">2\r\n$10\r\ninvalidate\r\n_\r\n+PONG\r\n"
        reader.close()
        writer.close()
    finally:
        node.stop()


def test_redis_py_client_side_cache_stays_correct(tmp_path):
    """redis-py's own cache (RESP3, CLIENT TRACKING on its connection): a read after
    another connection's write sees the new value, with no wait in between.
    redis-py enables its cache only for servers reporting Redis 7.4 or later."""
    node = NodeThread(tmp_path, appendonly=False, **{"advertised-redis-version": "7.4.0"}).start()
    try:
        cached = redis.Redis(port=node.port, protocol=3, cache_config=CacheConfig())
        other = redis.Redis(port=node.port)
        cached.set("k", "v1")
        assert cached.get("k") == b"v1"
        assert cached.get("k") == b"v1"  # served from the cache
        assert node.node.tracking.table  # the node remembers the read
        other.set("k", "v2")
        assert cached.get("k") == b"v2"
        other.delete("k")
        assert cached.get("k") is None
        cached.close()
        other.close()
    finally:
        node.stop()


@pytest.mark.cluster
def test_redis_py_cluster_cache_stays_correct(tmp_path):
    """The same with RedisCluster on a 3-node RF=3 cluster of real processes: the
    key's coordinator remembers the cached read and invalidates it when another
    client's write (coordinated there) or a replica's copy changes the key."""
    from redis.cluster import RedisCluster

    from .test_cluster_e2e import HOST, start_cluster

    cluster = start_cluster(tmp_path / "c", server_args=["--advertised-redis-version", "7.4.0"])
    try:
        port = cluster.nodes[0].port
        cached = RedisCluster(host=HOST, port=port, protocol=3, cache_config=CacheConfig(), socket_timeout=10)
        other = RedisCluster(host=HOST, port=cluster.nodes[1].port, socket_timeout=10)
        keys = [f"cached:{i}" for i in range(20)]  # spread over the three coordinators
        for key in keys:
            other.set(key, "v1")
            assert cached.get(key) == b"v1"
            assert cached.get(key) == b"v1"
        for key in keys:
            other.set(key, "v2")
            assert cached.get(key) == b"v2"
        cached.close()
        other.close()
    finally:
        cluster.stop()


def test_a_table_over_tracking_table_max_keys_invalidates_keys_to_fit(port):
    """``tracking-table-max-keys``: past it the node forgets keys (respkv the
    oldest, Redis random ones) and tells their readers, as if they had changed."""
    admin = Conn(port, resp3=False)
    try:
        assert admin.roundtrip("CONFIG", "SET", "tracking-table-max-keys", "2") == b"+OK\r\n"
        seen = scenario(port, [
            ("writer", "FLUSHALL"),
            ("reader", "CLIENT", "TRACKING", "ON"),
            ("reader", "GET", "a"),
            ("reader", "GET", "b"),
            ("reader", "GET", "c"),
            ("reader", "PING"),
            ("reader", "INFO", "stats"),
        ])
        assert seen[5] in [invalidation(key) + b"+PONG\r\n" for key in (b"a", b"b", b"c")]
        assert b"tracking_total_keys:2\r\n" in seen[6]
    finally:
        admin.roundtrip("CONFIG", "SET", "tracking-table-max-keys", "1000000")
        admin.close()
