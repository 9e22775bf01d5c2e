"""Expiry in the keyspace: lazy on access, active in the node's cron (virtual time)."""

from __future__ import annotations

import trio
import trio.testing

from respkv.config import Config
from respkv.keyspace.store import Keyspace
from respkv.node import Node


class FakeClock:
    """Unix milliseconds under the test's control."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_lazy_expiry_on_access():
    clock = FakeClock()
    ks = Keyspace(clock)
    ks.set(b"a", b"1")
    ks.set_deadline(b"a", clock.now + 100)
    assert ks.get(b"a") == b"1"
    clock.now += 100
    assert ks.get(b"a") is None
    assert ks.dbsize() == 0
    assert ks.expired_keys == 1


def test_set_clears_ttl_unless_kept():
    clock = FakeClock()
    ks = Keyspace(clock)
    ks.set(b"a", b"1")
    ks.set_deadline(b"a", clock.now + 100)
    ks.set(b"a", b"2", keep_ttl=True)
    assert ks.deadline(b"a") == clock.now + 100
    ks.set(b"a", b"3")
    assert ks.deadline(b"a") is None


def test_expire_due_removes_only_due_keys_and_skips_stale_deadlines():
    clock = FakeClock()
    ks = Keyspace(clock)
    for i in range(10):
        ks.set(b"k%d" % i, b"v")
        ks.set_deadline(b"k%d" % i, clock.now + 10 * i)
    ks.set_deadline(b"k1", clock.now + 10_000)  # moved later: its old heap entry is stale
    clock.now += 45
    assert ks.expire_due(limit=100) == 4  # k0, k2, k3, k4
    assert ks.get(b"k1") == b"v"
    assert ks.dbsize() == 6


def test_expire_due_respects_its_limit():
    clock = FakeClock()
    ks = Keyspace(clock)
    for i in range(50):
        ks.set(b"k%d" % i, b"v")
        ks.set_deadline(b"k%d" % i, clock.now)
    assert ks.expire_due(limit=20) == 20
    assert ks.dbsize() == 30


def test_stale_heap_entries_are_compacted():
    clock = FakeClock()
    ks = Keyspace(clock)
    ks.set(b"k", b"v")
    for i in range(5000):
        ks.set_deadline(b"k", clock.now + 1_000_000 + i)
    assert len(ks._heap) <= 2 * len(ks.expires) + 1024


async def test_active_expiry_reclaims_keys_nobody_reads(autojump_clock: trio.testing.MockClock):
    # The keyspace's wall clock follows trio's virtual clock.
    ks = Keyspace(lambda: int(trio.current_time() * 1000))
    node = Node(Config(port=0, dir="unused"), keyspace=ks)
    for i in range(1000):
        ks.set(b"key:%d" % i, b"v")
        ks.set_deadline(b"key:%d" % i, ks.clock_ms() + 500 + i)
    ks.set(b"keeper", b"v")
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run_cron)
        await trio.sleep(1.0)  # half of the keys are due
        assert 400 <= ks.dbsize() - 1 <= 600
        await trio.sleep(1.0)
        assert ks.dbsize() == 1  # only the persistent key is left, nobody read any
        nursery.cancel_scope.cancel()
    assert ks.expired_keys == 1000


async def test_idle_clients_are_closed_after_timeout(autojump_clock):
    node = Node(Config(port=0, dir="unused", timeout=5))

    class FakeReader:
        def buffered(self):
            return 0

        def pending_args_bytes(self):
            return 0

    class FakeSession:
        commands_processed = 0
        commands_seen_by_cron = 0
        last_interaction = 0.0
        killed = False
        reader = FakeReader()  # the cron adds up what clients hold (maxmemory-clients)

        def __init__(self, client_id):
            self.id = client_id
            self.node = node

        def kill(self):
            self.killed = True

    busy, idle = FakeSession(1), FakeSession(2)
    node.clients = {1: busy, 2: idle}
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run_cron)
        for _ in range(70):  # 7 s of virtual time; busy keeps sending commands
            busy.commands_processed += 1
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert idle.killed and not busy.killed
