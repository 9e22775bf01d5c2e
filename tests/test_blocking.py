"""Blocked clients: the registry's timing and order logic, and blocking commands live.

The first part drives :class:`~respkv.commands.blocking.BlockingRegistry` directly
under ``trio.testing.MockClock`` (timeouts elapse instantly and exactly) with fake
sessions on socket pairs.  The second part runs the commands against a live node
through redis-py and raw sockets, with one client blocked in a thread while another
one acts; it waits for ``blocked_clients`` in ``INFO`` instead of guessing with sleeps.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis
import trio
import trio.testing

from respkv.commands import blocking_lists
from respkv.commands.blocking import UNBLOCKED_ERROR, BlockingRegistry, parse_timeout
from respkv.commands.table import CommandError
from respkv.keyspace.store import Keyspace
from respkv.keyspace.values import ListValue
from respkv.protocol.reply import RESP2, RESP3

# -- timeout arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, ms",
    [
        (b"0", 0),
        (b"1", 1000),
        (b"1.5", 1500),
        (b"0.0001", 1),  # rounded up: waits 1 ms, not forever
        (b"1e-400", 1),  # a long double holds it
        (b"0.001", 1),
        (b"0.0019", 2),
        (b"-0", 0),
        (b"-0.0009", 0),  # rounds up to -0: forever
        (b"-0.001", 0),  # 0.001 as a long double times 1000 is just below 1
        (b"0x10", 16000),
        (b"1.", 1000),
        (b"+.1", 100),
        (b"9223372036854775.807", 9223372036854775807),
    ],
)
def test_parse_timeout(raw, ms):
    assert parse_timeout(raw) == ms


@pytest.mark.parametrize(
    "raw, error",
    [
        (b"abc", "ERR timeout is not a float or out of range"),
        (b"", "ERR timeout is not a float or out of range"),
        (b" 1", "ERR timeout is not a float or out of range"),
        (b"1 ", "ERR timeout is not a float or out of range"),
        (b"nan", "ERR timeout is not a float or out of range"),
        (b"1e5000", "ERR timeout is not a float or out of range"),
        (b"-1", "ERR timeout is negative"),
        (b"-0.002", "ERR timeout is negative"),
        (b"inf", "ERR timeout is negative"),  # LLONG_MIN after the C conversion
        (b"-inf", "ERR timeout is negative"),
        (b"1e300", "ERR timeout is negative"),
        (b"9223372036854776", "ERR timeout is negative"),
    ],
)
def test_parse_timeout_errors(raw, error):
    with pytest.raises(CommandError) as info:
        parse_timeout(raw)
    assert str(info.value) == error


# -- the registry under a mock clock -------------------------------------------------------


class FakeReader:
    max_query_buffer = 1024

    def __init__(self) -> None:
        self.fed = b""

    def feed(self, data: bytes) -> None:
        self.fed += data


class FakeSession:
    """What the registry and the list cores use of a session, on one end of a socket pair."""

    def __init__(self, ks: Keyspace, registry: BlockingRegistry, proto=RESP2) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.ks = ks
        self.proto = proto
        self.in_exec = False
        self.reader = FakeReader()
        self.node = SimpleNamespace(stats=SimpleNamespace(net_input_bytes=0), blocking=registry)
        self.killed = False
        self.scope: trio.CancelScope | None = None

    def kill(self) -> None:
        self.killed = True
        if self.scope is not None:
            self.scope.cancel()

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture
def world():
    """A keyspace, a registry on it, and a factory of fake sessions."""
    ks = Keyspace()

    def listen(fn):
        ks.on_modified = fn

    def unlisten(fn):
        ks.on_modified = None

    registry = BlockingRegistry(ks, listen, unlisten)
    sessions = []

    def session(proto=RESP2) -> FakeSession:
        sessions.append(FakeSession(ks, registry, proto))
        return sessions[-1]

    yield SimpleNamespace(ks=ks, registry=registry, session=session)
    for s in sessions:
        s.close()


def run(fn):
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def blpop_block(s, *keys: bytes, timeout: bytes = b"0"):
    """The Block a BLPOP on missing keys returns (the core of the command)."""
    block = blocking_lists.blpop(s, [b"BLPOP", *keys, timeout])
    assert block.__class__ is not bytes
    return block


async def start_waiting(nursery, s, block, results: list):
    """Start ``registry.wait`` for ``s`` in its own cancel scope; return once blocked.

    The reply is appended to ``results`` as ``(s, reply)``; callers compare per
    session, since woken tasks resume in no particular order.
    """

    async def waiter():
        with trio.CancelScope() as scope:
            s.scope = scope
            results.append((s, await s.node.blocking.wait(s, block)))

    nursery.start_soon(waiter)
    await trio.testing.wait_all_tasks_blocked()


def test_timeout_replies_null_array_and_leaves_no_trace(world):
    s = world.session(RESP3)

    async def main():
        start = trio.current_time()
        reply = await world.registry.wait(s, blpop_block(s, b"k", timeout=b"1.5"))
        assert reply == b"_\r\n"
        assert trio.current_time() - start == pytest.approx(1.5)

    run(main)
    assert world.registry.blocked_count == 0
    assert world.registry.by_key == {}
    assert world.ks.on_modified is None


def test_no_listener_while_nobody_waits(world):
    assert world.ks.on_modified is None
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k", timeout=b"2"), results)
            assert world.ks.on_modified is not None
            assert world.registry.blocked_count == 1
            assert world.registry.timeout_count == 1
            assert world.registry.is_blocked(s)
        assert results == [(s, b"*-1\r\n")]

    run(main)
    assert world.ks.on_modified is None
    assert world.registry.timeout_count == 0


def test_push_serves_waiters_first_blocked_first(world):
    a, b, c = world.session(), world.session(), world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            for s in (a, b, c):
                await start_waiting(nursery, s, blpop_block(s, b"k"), results)
            world.ks.set(b"k", ListValue([b"x", b"y"]))
            assert world.registry.ready == [b"k"]
            # Nothing is served from inside the change signal itself.
            assert world.registry.blocked_count == 3
            world.registry.serve_ready()
            assert world.registry.blocked_count == 1
            assert world.ks.get(b"k") is None
            world.ks.set(b"k", ListValue([b"z"]))
            world.registry.serve_ready()
        assert dict(results) == {
            a: b"*2\r\n$1\r\nk\r\n$1\r\nx\r\n",
            b: b"*2\r\n$1\r\nk\r\n$1\r\ny\r\n",
            c: b"*2\r\n$1\r\nk\r\n$1\r\nz\r\n",
        }

    run(main)


def test_keys_are_served_in_the_order_they_became_ready(world):
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k1", b"k2"), results)
            world.ks.set(b"k2", ListValue([b"two"]))
            world.ks.set(b"k1", ListValue([b"one"]))
            world.registry.serve_ready()
        assert results == [(s, b"*2\r\n$2\r\nk2\r\n$3\r\ntwo\r\n")]
        assert list(world.ks.get(b"k1")) == [b"one"]

    run(main)


def test_only_values_of_waitable_types_make_a_key_ready(world):
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k"), results)
            world.ks.set(b"k", b"a string")
            world.ks.delete(b"k")
            assert world.registry.ready == []
            world.ks.set(b"k", ListValue([b"v"]))
            world.registry.serve_ready()
        assert results == [(s, b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n")]

    run(main)


def test_blmove_chain_is_served_in_one_step(world):
    mover, popper = world.session(), world.session()

    async def main():
        results = {}

        async def wait(s, block, name):
            results[name] = await world.registry.wait(s, block)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, mover, blocking_lists._blmove(mover, b"src", b"dst", True, True, b"0"), "mover")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait, popper, blpop_block(popper, b"dst"), "popper")
            await trio.testing.wait_all_tasks_blocked()
            world.ks.set(b"src", ListValue([b"e"]))
            world.registry.serve_ready()
            assert world.registry.blocked_count == 0
        assert results == {"mover": b"$1\r\ne\r\n", "popper": b"*2\r\n$3\r\ndst\r\n$1\r\ne\r\n"}
        assert world.ks.get(b"src") is None and world.ks.get(b"dst") is None

    run(main)


def test_cancelled_waiter_leaves_the_queue(world):
    a, b = world.session(), world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, a, blpop_block(a, b"k"), results)
            await start_waiting(nursery, b, blpop_block(b, b"k"), results)
            a.scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert world.registry.blocked_count == 1
            world.ks.set(b"k", ListValue([b"v"]))
            world.registry.serve_ready()
        assert results == [(b, b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n")]

    run(main)
    assert world.ks.on_modified is None


def test_peer_closing_kills_the_blocked_session(world):
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k"), results)
            s.peer.close()
        assert s.killed
        assert results == []

    run(main)
    assert world.registry.blocked_count == 0


def test_requests_sent_while_blocked_are_kept_for_later(world):
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k"), results)
            s.peer.sendall(b"*1\r\n$4\r\nPING\r\n")
            await trio.testing.wait_all_tasks_blocked()
            assert s.reader.fed == b""  # not before the blocking command is answered
            world.ks.set(b"k", ListValue([b"v"]))
            world.registry.serve_ready()
        assert s.reader.fed == b"*1\r\n$4\r\nPING\r\n"
        assert s.node.stats.net_input_bytes == 14
        assert not s.killed

    run(main)


def test_too_much_input_while_blocked_closes_the_client(world):
    s = world.session()

    async def main():
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k"), [])
            s.peer.sendall(b"x" * (FakeReader.max_query_buffer + 1))
        assert s.killed

    run(main)


@pytest.mark.parametrize("error, expected", [(False, b"*-1\r\n"), (True, UNBLOCKED_ERROR)])
def test_unblock(world, error, expected):
    s = world.session()

    async def main():
        results = []
        async with trio.open_nursery() as nursery:
            await start_waiting(nursery, s, blpop_block(s, b"k"), results)
            assert world.registry.unblock(s, error=error)
            assert not world.registry.unblock(s)
        assert results == [(s, expected)]

    run(main)


def test_forget_drops_a_leftover_waiter(world):
    s = world.session()
    from respkv.commands.blocking import Block, Waiter

    async def main():
        world.registry._add(Waiter(s, Block((b"k",), lambda key: None, 0)))
        world.registry.forget(s)

    run(main)
    assert world.registry.blocked_count == 0
    assert world.ks.on_modified is None


# -- live node ------------------------------------------------------------------------------


def wait_blocked(r, n: int, timeout: float = 5.0) -> None:
    """Wait until INFO shows ``n`` blocked clients (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while r.info("clients")["blocked_clients"] != n:
        if time.monotonic() > deadline:
            raise AssertionError(f"blocked_clients never reached {n}")
        time.sleep(0.005)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@pytest.fixture
def clients(node):
    """Extra clients for blocking calls (RESP2 and RESP3 alternating), closed afterwards."""
    made = []

    def make(protocol: int = 2) -> redis.Redis:
        made.append(node.client(protocol=protocol))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_blpop_woken_by_push_from_another_client(r, clients, pool):
    blocked = clients()
    future = pool.submit(blocked.blpop, ["k"], 0)
    wait_blocked(r, 1)
    assert r.rpush("k", "a", "b") == 2
    # The blocked client was served before the push's reply left.
    assert r.lrange("k", 0, -1) == [b"b"]
    assert future.result(5) == (b"k", b"a") or future.result(5) == [b"k", b"a"]
    wait_blocked(r, 0)


def test_clients_are_served_in_blocking_order(r, clients, pool):
    futures = []
    for i, command in enumerate(("blpop", "brpop", "blpop")):
        c = clients(protocol=2 + i % 2)
        futures.append(pool.submit(getattr(c, command), ["k"], 0))
        wait_blocked(r, i + 1)
    r.rpush("k", "x", "y", "z", "tail")
    got = [tuple(f.result(5)) for f in futures]
    assert got == [(b"k", b"x"), (b"k", b"tail"), (b"k", b"y")]
    assert r.lrange("k", 0, -1) == [b"z"]


def test_timeout_and_info_counters(r, clients, pool):
    c = clients()
    future = pool.submit(c.blpop, ["k"], 30)
    wait_blocked(r, 1)
    info = r.info("clients")
    assert info["clients_in_timeout_table"] == 1
    r.lpush("k", "v")
    assert tuple(future.result(5)) == (b"k", b"v")
    start = time.monotonic()
    assert c.blpop(["k"], 0.05) is None
    assert time.monotonic() - start < 2
    assert r.info("clients")["clients_in_timeout_table"] == 0


def test_blocking_commands_inside_multi_do_not_wait(r):
    pipe = r.pipeline(transaction=True)
    pipe.blpop(["k"], 0)
    pipe.blmove("k", "d", 0, "LEFT", "LEFT")
    pipe.bzpopmin(["z"], 0)
    assert pipe.execute() == [None, None, None]


def test_disconnected_blocked_client_leaves_no_trace(r):
    sock = socket.create_connection(("127.0.0.1", r.connection_pool.connection_kwargs["port"]))
    sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$1\r\n0\r\n")
    wait_blocked(r, 1)
    sock.close()
    wait_blocked(r, 0)
    r.rpush("k", "kept")
    assert r.lrange("k", 0, -1) == [b"kept"]


def test_pipelined_requests_after_a_blocking_one(r):
    sock = socket.create_connection(("127.0.0.1", r.connection_pool.connection_kwargs["port"]))
    sock.settimeout(5)
    try:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$1\r\n0\r\n")
        wait_blocked(r, 1)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        r.rpush("k", "v")
        expected = b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n+PONG\r\n"
        data = b""
        while len(data) < len(expected):
            data += sock.recv(1024)
        assert data == expected
    finally:
        sock.close()


def test_client_kill_of_a_blocked_client(r):
    # A raw socket: redis-py would reconnect and block again after the kill.
    sock = socket.create_connection(("127.0.0.1", r.connection_pool.connection_kwargs["port"]))
    sock.settimeout(5)
    try:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$1\r\n0\r\n")
        wait_blocked(r, 1)
        victim = next(x for x in r.client_list() if x["cmd"] == "blpop")
        assert r.client_kill_filter(_id=victim["id"]) == 1
        assert sock.recv(1024) == b""
    finally:
        sock.close()
    wait_blocked(r, 0)
    r.rpush("k", "kept")
    assert r.lrange("k", 0, -1) == [b"kept"]


def test_blmove_served_with_wrongtype(r, clients, pool):
    c = clients()
    future = pool.submit(c.blmove, "src", "dst", 0, "LEFT", "LEFT")
    wait_blocked(r, 1)
    r.set("dst", "string")
    r.rpush("src", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        future.result(5)
    assert r.lrange("src", 0, -1) == [b"v"]


def test_blmpop_served_with_count(r, clients, pool):
    c = clients(protocol=3)
    future = pool.submit(c.blmpop, 0, 2, "a", "b", direction="RIGHT", count=2)
    wait_blocked(r, 1)
    r.rpush("b", "1", "2", "3")
    assert future.result(5) == [b"b", [b"3", b"2"]]


def test_bzpopmin_woken_by_zadd(r, clients, pool):
    c = clients()
    future = pool.submit(c.bzpopmin, ["z"], 0)
    wait_blocked(r, 1)
    r.zadd("z", {"a": 1, "b": 2})
    assert tuple(future.result(5)) == (b"z", b"a", 1.0)
    assert r.zrange("z", 0, -1) == [b"b"]


def test_bzmpop_and_type_separation(r, clients, pool):
    zc, lc = clients(), clients()
    zf = pool.submit(zc.bzmpop, 0, 1, ["k"], min=True, count=5)
    wait_blocked(r, 1)
    lf = pool.submit(lc.blpop, ["k"], 0)
    wait_blocked(r, 2)
    r.rpush("k", "item")
    assert tuple(lf.result(5)) == (b"k", b"item")
    wait_blocked(r, 1)
    r.zadd("k", {"m": 3})
    assert zf.result(5) in ([b"k", [[b"m", 3.0]]], [b"k", [[b"m", b"3"]]])  # RESP3, RESP2


def test_blocked_clients_are_never_idle(tmp_path):
    from respkv.config import Config
    from respkv.commands.blocking import Block, Waiter
    from respkv.node import Node

    node = Node(Config(dir=str(tmp_path), port=0, timeout=10))

    class Idle:
        def __init__(self) -> None:
            self.commands_processed = self.commands_seen_by_cron = 0
            self.last_interaction = 0.0
            self.killed = False

        def kill(self) -> None:
            self.killed = True

    async def main():
        idle, blocked = Idle(), Idle()
        node.clients = {1: idle, 2: blocked}
        node.blocking._add(Waiter(blocked, Block((b"k",), lambda key: None, 0)))
        await trio.sleep(11)
        node._close_idle_clients()
        assert idle.killed and not blocked.killed
        node.blocking.forget(blocked)
        # Leaving the wait counts as interaction: not closed right after.
        node._close_idle_clients()
        assert not blocked.killed

    run(main)


def test_client_unblock_and_blocked_flag(node):
    """CLIENT UNBLOCK ends a wait with the timeout reply (or an error); CLIENT LIST shows b."""
    import threading
    import time as _time

    waiter, admin = node.client(protocol=2), node.client(protocol=2)
    waiter_id = waiter.client_id()
    result = {}

    def block():
        try:
            result["reply"] = waiter.blpop(["never-pushed"], timeout=0)
        except Exception as exc:  # the ERROR form surfaces here
            result["error"] = exc

    for reason, expect_error in (("TIMEOUT", False), ("ERROR", True)):
        result.clear()
        thread = threading.Thread(target=block)
        thread.start()
        deadline = _time.monotonic() + 10
        while f"id={waiter_id} " not in admin.execute_command("CLIENT", "LIST", "ID", waiter_id).decode() or \
                " flags=b " not in admin.execute_command("CLIENT", "LIST", "ID", waiter_id).decode():
            assert _time.monotonic() < deadline
        assert admin.execute_command("CLIENT", "UNBLOCK", waiter_id, reason) == 1
        thread.join(10)
        if expect_error:
            assert "UNBLOCKED" in str(result["error"])
        else:
            assert result["reply"] is None
    assert admin.execute_command("CLIENT", "UNBLOCK", waiter_id) == 0  # not blocked now
