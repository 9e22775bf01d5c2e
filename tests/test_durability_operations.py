"""A node logs a collection's change as the command that made it, and replays it
exactly (real processes, kill -9): a standalone node as a ``COMMAND`` entry, a
replicated one as an ``OPERATION`` entry.

One ``SADD`` to a set of thousands of members must not log the set: the log
grows by about what the command holds.  Each test kills the node with SIGKILL
under ``appendfsync always`` and compares every acknowledged change with what
the restarted node serves, for each kind of collection a shipped command
changes, also across a rewrite running while the collections change (a key's
first change since the switch to the new log is imaged, the later ones logged
as commands), and with the kill landing while the rewrite runs.
"""

from __future__ import annotations

import contextlib
import signal

import pytest

from tests.durability_helpers import Client, ServerProcess, failed_start

#: A standalone node; and one node that replicates (its own preference list is
#: all it has): a replicated node's commit log, without a cluster around it.
MODES = {
    "standalone": (),
    "replicated": ("--cluster-enabled", "yes", "--replication-factor", "2", "--write-quorum", "1",
                   "--read-quorum", "1"),
}
#: No automatic rewrite: the log's growth is what the changes logged.
LOGGING = ("--appendfsync", "always", "--auto-aof-rewrite-percentage", "0")


@contextlib.asynccontextmanager
async def node_of(mode: str, directory):
    """A node of ``mode`` on ``directory`` (not started yet), killed at the end."""
    node = ServerProcess(directory, *MODES[mode], *LOGGING)
    try:
        yield node
    finally:
        await node.aclose()


@pytest.fixture(params=sorted(MODES))
async def server(tmp_path, request):
    async with node_of(request.param, tmp_path / "node") as node:
        yield node


async def load_collections(c: Client, size: int) -> None:
    """A set, a hash, a sorted set and a list of ``size`` elements each."""
    for start in range(0, size, 1000):
        members = [f"m{i}" for i in range(start, min(size, start + 1000))]
        replies = await c.pipeline([
            ("SADD", "set", *members),
            ("HSET", "hash", *[word for m in members for word in (m, m.upper())]),
            ("ZADD", "zset", *[word for i, m in enumerate(members) for word in (str(start + i), m)]),
            ("RPUSH", "list", *members),
        ])
        assert all(isinstance(reply, int) for reply in replies), replies


async def contents(c: Client) -> list:
    return await c.pipeline([
        ("SMEMBERS", "set"), ("HGETALL", "hash"), ("ZRANGE", "zset", "0", "-1", "WITHSCORES"),
        ("LRANGE", "list", "0", "-1"),
    ])


def same(before: list, after: list) -> bool:
    """SMEMBERS and HGETALL in any order; the rest as is."""
    return (sorted(before[0]) == sorted(after[0]) and sorted(before[1]) == sorted(after[1])
            and before[2:] == after[2:])


async def change_each(c: Client, tag: str) -> None:
    """One small change of every collection, each acknowledged."""
    replies = await c.pipeline([
        ("SADD", "set", f"new{tag}"), ("SREM", "set", f"m{tag}"),
        ("HSET", "hash", f"f{tag}", tag), ("HINCRBY", "hash", "counter", "1"),
        ("ZINCRBY", "zset", "0.5", f"m{tag}"), ("ZADD", "zset", "-1", f"z{tag}"),
        ("LPUSH", "list", f"head{tag}"), ("RPOP", "list"),
    ])
    assert not any(isinstance(reply, Exception) for reply in replies), replies


async def started_with_strings_then_collections(server: ServerProcess) -> Client:
    """Start ``server`` and write 30,000 strings (enough for a snapshot of many
    chunks), then the collections: a snapshot reaches them last."""
    await server.start()
    c = await server.client()
    for start in range(0, 30_000, 1000):
        await c.pipeline([("SET", f"key:{i}", "x" * 20) for i in range(start, start + 1000)])
    await load_collections(c, 2_000)
    return c


async def restarted(server: ServerProcess) -> Client:
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    await server.start()
    return await server.client()


async def restarted_with_the_same_data(server: ServerProcess, c: Client, keys: int) -> Client:
    """Kill -9 and restart ``server``; check that it serves the collections as
    before and holds ``keys`` keys, with no log entry skipped."""
    expected = await contents(c)
    c = await restarted(server)
    assert same(expected, await contents(c))
    assert await c.call("DBSIZE") == keys
    assert "does not follow" not in server.output()
    assert (await c.info())["journal_load_skipped_entries"] == "0"
    return c


async def test_a_small_change_of_a_big_collection_logs_the_change_not_the_collection(server):
    await server.start()
    c = await server.client()
    await load_collections(c, 20_000)  # each collection is over 100 KB
    size_before = int((await c.info())["aof_current_size"])
    for i in range(100):
        await change_each(c, str(i))
    grown = int((await c.info())["aof_current_size"]) - size_before
    # 800 changes; imaging the collections would log 100 x 4 x over 100 KB.
    assert grown < 800 * 1024, grown
    await restarted_with_the_same_data(server, c, 4)


async def test_changes_while_a_rewrite_runs_and_after_it_replay_exactly(server):
    c = await started_with_strings_then_collections(server)
    assert await c.call("BGREWRITEAOF") is not None
    changed = 0
    while (await c.info())["aof_rewrite_in_progress"] == "1":
        await change_each(c, f"during{changed}")  # the first imaged, the next as commands
        changed += 1
    assert changed >= 2, "the rewrite ended before two rounds of changes: give it more keys"
    for i in range(20):  # logged as operations again
        await change_each(c, f"after{i}")
    c = await restarted_with_the_same_data(server, c, 30_004)
    # And once more from the snapshot the rewrite wrote, with its new log.
    for i in range(5):
        await change_each(c, f"again{i}")
    await restarted_with_the_same_data(server, c, 30_004)


async def test_a_replicated_directory_is_refused_by_a_node_without_replication(tmp_path):
    async with node_of("replicated", tmp_path / "node") as replicated:
        await replicated.start()
        c = await replicated.client()
        assert await c.call("SET", "k", "v") == b"OK"
        await replicated.stop()
    done = await failed_start(tmp_path / "node")
    output = done.stderr.decode()
    assert done.returncode == 1, output
    assert "Cannot load" in output and "replication-factor above 1" in output, output
    assert "Traceback" not in output


async def test_a_kill_while_a_rewrite_runs_loses_no_acknowledged_change(server):
    # The directory then holds the old snapshot and logs, and the new log with
    # each key's first change since the switch as an image, the rest as commands.
    c = await started_with_strings_then_collections(server)
    for i in range(5):  # logged as commands in the old log
        await change_each(c, f"before{i}")
    assert await c.call("BGREWRITEAOF") is not None
    for i in range(3):
        assert (await c.info())["aof_rewrite_in_progress"] == "1", "the rewrite ended early: give it more keys"
        await change_each(c, f"during{i}")
    await restarted_with_the_same_data(server, c, 30_004)


async def test_pops_and_moves_of_a_big_collection_log_the_change_not_the_collection(server):
    # A pop served at once, LMPOP/ZMPOP, SPOP and each side of a move are logged
    # (on a replicated node: shipped and logged) as the LPOP/RPOP/ZPOPMIN/ZPOPMAX/
    # SREM/LPUSH/RPUSH/SADD they equal (SPOP with the members it drew).
    await server.start()
    c = await server.client()
    await load_collections(c, 20_000)
    for start in range(0, 20_000, 1000):  # a big set SPOP does not draw from: SMOVE's members stay there
        await c.call("SADD", "{set}source", *[f"s{i}" for i in range(start, start + 1000)])
    size_before = int((await c.info())["aof_current_size"])
    for i in range(50):
        replies = await c.pipeline([
            ("BLPOP", "list", "0"), ("BRPOP", "list", "0"), ("LMPOP", "1", "list", "LEFT", "COUNT", "2"),
            ("SPOP", "set"), ("SPOP", "set", "2"),
            ("BZPOPMIN", "zset", "0"), ("BZPOPMAX", "zset", "0"), ("ZMPOP", "1", "zset", "MIN", "COUNT", "2"),
            ("RPOPLPUSH", "list", "{list}done"), ("LMOVE", "{list}done", "list", "LEFT", "RIGHT"),
            ("SMOVE", "{set}source", "{set}moved", f"s{i}"),
        ])
        assert all(reply for reply in replies) and not any(isinstance(r, Exception) for r in replies), replies
    grown = int((await c.info())["aof_current_size"]) - size_before
    assert grown < 400 * 1024, grown  # imaging would log 50 x 4 collections of over 100 KB
    moved = await c.call("SMEMBERS", "{set}moved")
    left = await c.call("SCARD", "{set}source")
    c = await restarted_with_the_same_data(server, c, 6)
    assert sorted(await c.call("SMEMBERS", "{set}moved")) == sorted(moved) and len(moved) == 50
    assert await c.call("SCARD", "{set}source") == left == 20_000 - 50
