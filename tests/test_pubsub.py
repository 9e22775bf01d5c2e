"""Pub/sub against a respkv node and a real redis-server, with the same steps: redis-py's
PubSub, raw RESP3 pushes, slow subscribers (the output limit, and no frame torn
when a subscriber's socket fills), and client-side caching redirected to a RESP2
connection subscribed to ``__redis__:invalidate``."""

from __future__ import annotations

import socket
import time

import redis

from .test_tracking import Conn, port  # noqa: F401 (the fixture: a respkv node, then a redis-server)


def until(condition, timeout: float = 10.0):
    """Poll ``condition`` until it holds (for what a server does after a
    connection closed); fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def messages(pubsub, count: int) -> list[dict]:
    got = []
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            got.append(message)
    return got


def test_redis_py_pubsub(port):
    client = redis.Redis(port=port)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe("orders", "alerts")
        pubsub.psubscribe("user.*")
        confirmations = messages(pubsub, 3)
        assert [(m["type"], m["channel"], m["data"]) for m in confirmations] == [
            ("subscribe", b"orders", 1), ("subscribe", b"alerts", 2), ("psubscribe", b"user.*", 3)]
        assert client.publish("orders", "o1") == 1
        assert client.publish("user.42", "u1") == 1
        assert client.publish("elsewhere", "x") == 0
        got = messages(pubsub, 2)
        assert [(m["type"], m["pattern"], m["channel"], m["data"]) for m in got] == [
            ("message", None, b"orders", b"o1"), ("pmessage", b"user.*", b"user.42", b"u1")]
        assert client.pubsub_numsub("orders", "none") == [(b"orders", 1), (b"none", 0)]
        assert client.pubsub_numpat() == 1
        assert sorted(client.pubsub_channels()) == [b"alerts", b"orders"]
        pubsub.unsubscribe("orders")
        assert messages(pubsub, 1)[0]["type"] == "unsubscribe"
        assert client.publish("orders", "o2") == 0
    finally:
        pubsub.close()
    until(lambda: client.pubsub_numsub("alerts") == [(b"alerts", 0)] and client.pubsub_numpat() == 0)
    client.close()


def test_resp3_subscriber_runs_commands_and_hears_itself(port):
    conn = Conn(port)
    try:
        conn.call("SUBSCRIBE", "self")  # the confirmation is a push frame itself
        assert conn.frame() == b">3\r\n$9\r\nsubscribe\r\n$4\r\nself\r\n:1\r\n"
        assert conn.roundtrip("SET", "k", "v") == b"+OK\r\n"
        # its own message comes just before PUBLISH's count
        assert conn.roundtrip("PUBLISH", "self", "hi") == b">3\r\n$7\r\nmessage\r\n$4\r\nself\r\n$2\r\nhi\r\n:1\r\n"
    finally:
        conn.close()


def raw_subscriber(port: int, channel: bytes, receive_buffer: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%b\r\n" % (len(channel), channel))
    expected = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(channel), channel)
    got = b""
    while len(got) < len(expected):
        got += sock.recv(len(expected) - len(got))
    assert got == expected
    return sock


def test_a_subscriber_that_reads_late_gets_every_message_whole(port):
    """Many messages per round for one subscriber whose socket buffer fills: each
    arrives once, in order, no frame torn (the rest of a partly sent payload must not
    be overtaken by the next one)."""
    client = redis.Redis(port=port)
    client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    sock = raw_subscriber(port, b"bulk", 4096)
    try:
        payloads = [b"%06d" % i + b"x" * 8000 for i in range(2000)]  # 16 MB: more than the socket buffers hold
        pipe = client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish("bulk", payload)
        assert pipe.execute() == [1] * len(payloads)
        frame = b"*3\r\n$7\r\nmessage\r\n$4\r\nbulk\r\n$%d\r\n%%b\r\n" % len(payloads[0])
        expected = b"".join(frame % payload for payload in payloads)
        got = bytearray()
        while len(got) < len(expected):
            chunk = sock.recv(1 << 16)
            assert chunk, "the subscriber was disconnected"
            got += chunk
        assert bytes(got) == expected
    finally:
        sock.close()
        client.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        client.close()


def test_a_subscriber_that_does_not_read_is_disconnected_at_the_hard_limit(port):
    client = redis.Redis(port=port)
    client.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    sock = raw_subscriber(port, b"flood", 4096)
    try:
        payload = b"y" * 8192
        receivers = []
        for _ in range(20):  # 20 x 50 x 8 KiB = 8 MiB: far past 256 KiB and any socket buffers
            pipe = client.pipeline(transaction=False)
            for _ in range(50):
                pipe.publish("flood", payload)
            receivers += pipe.execute()
            if receivers[-1] == 0:
                break
        assert receivers[-1] == 0  # it was disconnected, so its subscription is gone
        assert until(lambda: client.pubsub_numsub("flood") == [(b"flood", 0)])
    finally:
        sock.close()
        client.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        client.close()


def test_a_slow_subscriber_cut_off_mid_publish_leaves_the_others_served(port):
    """Two subscribers of one channel, the first never reading: it is disconnected
    while a PUBLISH is delivering, the publisher's connection is untouched (a raw
    one: redis-py would reconnect silently) and the other subscriber keeps
    receiving every message."""
    client = redis.Redis(port=port)
    client.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    slow = raw_subscriber(port, b"shared", 4096)
    fast = client.pubsub()
    fast.subscribe("shared")
    assert fast.get_message(timeout=5)["type"] == "subscribe"
    publisher = Conn(port, resp3=False)
    try:
        payload = b"z" * 8192
        counts = []
        for _ in range(40):
            for _ in range(10):
                publisher.call("PUBLISH", "shared", payload)
            counts = [publisher.frame() for _ in range(10)]
            while (message := fast.get_message(timeout=0.01)) is not None:
                assert message["data"] == payload
            if counts[-1] == b":1\r\n":
                break
        assert counts[-1] == b":1\r\n"  # only the reading subscriber is left
        assert until(lambda: client.pubsub_numsub("shared") == [(b"shared", 1)])
        assert publisher.roundtrip("PUBLISH", "shared", "last") == b":1\r\n"
        assert until(lambda: (m := fast.get_message(timeout=0.1)) is not None and m["data"] == b"last")
    finally:
        publisher.close()
        slow.close()
        fast.close()
        client.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        client.close()


def test_tracking_redirected_to_a_resp2_subscriber(port):
    """Redis's two-connection client-side caching for RESP2: the invalidations are
    messages on ``__redis__:invalidate``; a RESP2 target with no subscription gets nothing."""
    listener = Conn(port, resp3=False)
    reader = Conn(port, resp3=False)
    writer = Conn(port, resp3=False)
    idle = Conn(port, resp3=False)
    try:
        writer.roundtrip("FLUSHALL")
        listener_id = listener.client_id()
        assert listener.roundtrip("SUBSCRIBE", "__redis__:invalidate").endswith(b":1\r\n")
        assert reader.roundtrip("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id) == b"+OK\r\n"
        reader.roundtrip("GET", "cached")
        writer.roundtrip("SET", "cached", "1")
        message = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
        pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        listener.call("PING")
        assert [listener.frame(), listener.frame()] == [message + b"*1\r\n$6\r\ncached\r\n", pong]
        writer.roundtrip("FLUSHALL")
        listener.call("PING")
        assert [listener.frame(), listener.frame()] == [message + b"$-1\r\n", pong]
        # to a RESP2 connection without subscriptions nothing can be sent
        other = Conn(port, resp3=False)
        try:
            assert other.roundtrip("CLIENT", "TRACKING", "ON", "REDIRECT", idle.client_id()) == b"+OK\r\n"
            other.roundtrip("GET", "k2")
            writer.roundtrip("SET", "k2", "x")
            assert idle.roundtrip("PING") == b"+PONG\r\n"
        finally:
            other.close()
    finally:
        for conn in (listener, reader, writer, idle):
            conn.close()
