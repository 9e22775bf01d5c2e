"""Durability of a standalone node, with real ``respkv server`` processes.

A node is started on a data directory, written to, stopped (SIGTERM, SIGKILL,
SHUTDOWN) and started again on the same directory; what it serves then is compared
with what it acknowledged.  Files are damaged between runs to check recovery: a
torn last entry is cut off (unless ``aof-load-truncated no``), a corrupt entry in
the middle stops the start with the file and offset (unless
``aof-load-corrupt-truncate yes``).  Write and fsync failures are injected with
libfiu (``fiu-run``/``fiu-ctrl``, Debian's fiu-utils) into a running node.
Every wait has a deadline; see tests/durability_helpers.py.
"""

from __future__ import annotations

import shutil
import signal
import time

import hiredis
import pytest
import trio

from respkv.persistence.entries import BATCH, VALUE
from tests.durability_helpers import (
    PROCESS_TIMEOUT,
    Client,
    ConnectionClosed,
    ServerProcess,
    active_log,
    failed_start,
    log_entries,
    manifest_parts,
)

#: Milliseconds a "near" key lives: it must still be alive when the node stops,
#: and dead before it starts again (the test waits for the deadline to pass).
NEAR_TTL_MS = 1500


def _now_ms() -> int:
    return int(time.time() * 1000)


async def write_dataset(c: Client) -> tuple[int, int]:
    """Keys of every type, TTLs, a delete and a FLUSHALL; returns the deadlines
    ``(far, near)`` given to ``ttl:far`` and ``ttl:near``."""
    far = _now_ms() + 3_600_000
    near = _now_ms() + NEAR_TTL_MS
    replies = await c.pipeline([
        ("SET", "before-flush", "x"), ("RPUSH", "list-before-flush", "a"),
        ("FLUSHALL",),
        ("SET", "string", "hello"), ("APPEND", "string", " world"),
        ("RPUSH", "list", "a", "b", "c"), ("LPOP", "list"),
        ("HSET", "hash", "f1", "v1", "f2", "v2"),
        ("SADD", "set", "m1", "m2", "m3"), ("SREM", "set", "m2"),
        ("ZADD", "zset", "1", "one", "2.5", "two-and-a-half"),
        ("SET", "deleted", "soon gone"), ("DEL", "deleted"),
        ("SET", "ttl:far", "stays"), ("PEXPIREAT", "ttl:far", far),
        ("SET", "ttl:near", "dies while down", "PXAT", near),
        ("SET", "ttl:removed", "persisted", "EX", "100"), ("PERSIST", "ttl:removed"),
    ])
    assert not any(isinstance(r, hiredis.ReplyError) for r in replies), replies
    return far, near


async def check_dataset(c: Client, far: int) -> None:
    """What :func:`write_dataset` left, after ``ttl:near`` expired."""
    assert sorted(await c.call("KEYS", "*")) == sorted(
        [b"string", b"list", b"hash", b"set", b"zset", b"ttl:far", b"ttl:removed"])
    assert await c.call("GET", "string") == b"hello world"
    assert await c.call("LRANGE", "list", 0, -1) == [b"b", b"c"]
    assert await c.call("HGETALL", "hash") == [b"f1", b"v1", b"f2", b"v2"]
    assert sorted(await c.call("SMEMBERS", "set")) == [b"m1", b"m3"]
    assert await c.call("ZRANGE", "zset", 0, -1, "WITHSCORES") == [b"one", b"1", b"two-and-a-half", b"2.5"]
    assert await c.call("PEXPIRETIME", "ttl:far") == far  # exactly the deadline given
    assert await c.call("GET", "ttl:far") == b"stays"
    assert await c.call("PTTL", "ttl:removed") == -1
    assert await c.call("GET", "ttl:near") is None
    assert await c.call("EXISTS", "deleted", "before-flush", "list-before-flush") == 0
    assert await c.call("DBSIZE") == 7


@pytest.fixture
async def servers():
    """Collects the test's server processes; kills any left running, closes clients."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        await server.aclose()


def new_server(servers, tmp_path, *args, name="data", **kwargs) -> ServerProcess:
    server = ServerProcess(tmp_path / name, *args, **kwargs)
    servers.append(server)
    return server


@pytest.mark.parametrize(("fsync", "how"), [
    ("always", signal.SIGTERM), ("always", signal.SIGKILL),
    ("everysec", signal.SIGTERM), ("everysec", signal.SIGKILL),
    ("no", signal.SIGKILL),
], ids=["always-sigterm", "always-kill9", "everysec-sigterm", "everysec-kill9", "no-kill9"])
async def test_every_acknowledged_write_survives_a_restart(servers, tmp_path, fsync, how):
    # Acknowledged writes are in the operating system before the reply leaves, so
    # even kill -9 under everysec or no loses none of them (only power loss can).
    server = await new_server(servers, tmp_path, "--appendfsync", fsync).start()
    c = await server.client()
    far, near = await write_dataset(c)
    assert await c.call("PTTL", "ttl:near") > 0  # alive when the node goes down
    assert await server.stop(how) == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    await trio.sleep(max(0.0, (near - _now_ms() + 1) / 1000))  # the near deadline passes while down
    await server.start()
    c = await server.client()
    await check_dataset(c, far)
    info = await c.info()
    assert int(info["journal_entries_loaded"]) > 0 and info["rdb_last_load_keys_loaded"] == "7"
    assert await server.stop() == 0


@pytest.mark.parametrize("start_command", ["BGSAVE", "BGREWRITEAOF"])
async def test_background_rewrite_while_writes_go_on_compacts_the_log(servers, tmp_path, start_command):
    server = await new_server(servers, tmp_path).start()
    c = await server.client()
    writer = await server.client()
    expected: dict[bytes, bytes] = {}
    for batch in range(10):  # 100k keys: a snapshot of many chunks, so writes interleave
        await c.pipeline([("MSET", *(x for i in range(batch * 10_000, (batch + 1) * 10_000)
                                     for x in (f"k{i}", f"v{i}")))])
    expected.update((f"k{i}".encode(), f"v{i}".encode()) for i in range(100_000))
    before = set(manifest_parts(server.directory))

    started = "Background saving started" if start_command == "BGSAVE" else \
        "Background append only file rewriting started"
    assert await c.call(start_command) == started.encode()
    # Write while the snapshot is written: overwrite, delete, add; INFO after each
    # batch tells whether the rewrite was still running then.
    interleaved = 0
    round_ = 0
    while True:
        replies = await writer.pipeline([
            ("SET", f"k{round_}", f"new{round_}"), ("DEL", f"k{50_000 + round_}"),
            ("SET", f"added{round_}", "x"), ("INFO", "persistence"),
        ])
        expected[f"k{round_}".encode()] = f"new{round_}".encode()
        expected.pop(f"k{50_000 + round_}".encode(), None)
        expected[f"added{round_}".encode()] = b"x"
        round_ += 1
        if b"rdb_bgsave_in_progress:1" in replies[3]:
            interleaved += 1
        else:
            break
    assert interleaved > 0, "the rewrite ended before any write could interleave"
    info = await c.info()
    assert info["rdb_last_bgsave_status"] == "ok" and info["aof_rewrites"] == "1"
    assert info["rdb_saves"] == "1" and int(info["rdb_last_save_time"]) == await c.call("LASTSAVE")
    # Compacted: a new snapshot and a new log, the old files gone.
    parts = manifest_parts(server.directory)
    assert len(parts) == 2 and parts[0].startswith("snapshot.") and parts[1].startswith("log.")
    assert not before & set(parts)
    on_disk = {p.name for p in server.directory.iterdir()}
    assert on_disk == {"manifest", *parts}

    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    await server.start()
    c = await server.client()
    assert await c.call("DBSIZE") == len(expected)
    keys = sorted(expected)
    for start in range(0, len(keys), 10_000):
        chunk = keys[start : start + 10_000]
        assert await c.call("MGET", *chunk) == [expected[k] for k in chunk]
    assert await server.stop() == 0


async def test_rewrite_commands_while_one_runs_and_bgsave_schedule(servers, tmp_path):
    server = await new_server(servers, tmp_path).start()
    c = await server.client()
    await c.pipeline([("MSET", *(x for i in range(20_000) for x in (f"k{i}", "v")))])
    # One batch: the first starts the rewrite, the others find it running.
    replies = await c.pipeline([("BGSAVE",), ("BGSAVE",), ("BGREWRITEAOF",), ("BGSAVE", "SCHEDULE"),
                                ("BGSAVE", "NOW")])
    assert replies[0] == b"Background saving started"
    assert str(replies[1]) == "ERR Background save already in progress"
    assert str(replies[2]) == "ERR Background append only file rewriting already in progress"
    assert replies[3] == b"Background saving scheduled"
    assert str(replies[4]) == "ERR syntax error"
    # The scheduled one runs after the first: two rewrites in the end.
    with trio.fail_after(PROCESS_TIMEOUT):
        while (info := await c.info())["rdb_saves"] != "2" or info["rdb_bgsave_in_progress"] != "0":
            await trio.sleep(0.02)
    assert info["aof_rewrite_scheduled"] == "0" and info["rdb_last_bgsave_status"] == "ok"
    assert await server.stop() == 0


async def test_shutdown_writes_the_log_and_stops_the_process(servers, tmp_path):
    # appendfsync no: SHUTDOWN still writes and fsyncs the log before exiting.
    server = await new_server(servers, tmp_path, "--appendfsync", "no").start()
    c = await server.client()
    assert await c.call("SET", "k", "v") == b"OK"
    generation = manifest_parts(server.directory)
    assert str(await c.call("SHUTDOWN", "ABORT")) == "ERR No shutdown in progress."
    assert str(await c.call("SHUTDOWN", "SAVE", "NOSAVE")) == "ERR syntax error"
    with pytest.raises(ConnectionClosed):  # no reply, as in Redis: the connection closes
        await c.call("SHUTDOWN", "NOW")
    assert await server.wait() == 0
    assert manifest_parts(server.directory) == generation  # no snapshot without a save schedule
    assert "ready to exit" in server.output()

    await server.start()
    c = await server.client()
    assert await c.call("GET", "k") == b"v"
    with pytest.raises(ConnectionClosed):
        await c.call("SHUTDOWN", "SAVE")  # a snapshot first
    assert await server.wait() == 0
    parts = manifest_parts(server.directory)
    assert parts[0].startswith("snapshot.") and parts != generation
    await server.start()
    c = await server.client()
    assert await c.call("GET", "k") == b"v"
    assert await server.stop() == 0


async def test_sigterm_takes_a_snapshot_when_a_save_schedule_is_set(servers, tmp_path):
    # As Redis: SIGTERM is SHUTDOWN without arguments, which saves when save points are set.
    server = await new_server(servers, tmp_path, "--save", "3600 1").start()
    c = await server.client()
    assert await c.call("CONFIG", "GET", "save") == [b"save", b"3600 1"]
    assert await c.call("SET", "k", "v") == b"OK"
    assert await server.stop(signal.SIGTERM) == 0
    assert manifest_parts(server.directory)[0].startswith("snapshot.")
    assert "saving a snapshot before shutting down" in server.output()


async def test_appendonly_no_keeps_what_the_last_snapshot_holds(servers, tmp_path):
    server = await new_server(servers, tmp_path, "--appendonly", "no").start()
    c = await server.client()
    await c.pipeline([("SET", "a", "1"), ("SET", "b", "2"), ("RPUSH", "l", "x")])
    assert await c.call("BGSAVE") == b"Background saving started"
    with trio.fail_after(PROCESS_TIMEOUT):
        while (await c.info())["rdb_bgsave_in_progress"] != "0":
            await trio.sleep(0.02)
    info = await c.info()
    assert info["aof_enabled"] == "0" and info["rdb_changes_since_last_save"] == "0"
    assert "aof_current_size" not in info
    await c.pipeline([("SET", "a", "changed"), ("SET", "c", "3")])  # after the snapshot: lost
    assert (await c.info())["rdb_changes_since_last_save"] == "2"
    assert manifest_parts(server.directory)[0].startswith("snapshot.")
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    await server.start()
    c = await server.client()
    assert await c.call("MGET", "a", "b", "c") == [b"1", b"2", None]
    assert await c.call("LRANGE", "l", 0, -1) == [b"x"]
    assert await server.stop() == 0


# -- damaged files ----------------------------------------------------------------------


async def _log_with_last_key(servers, tmp_path) -> ServerProcess:
    """A stopped node whose log holds four batches of five keys (one pipeline each),
    then the entry of ``last``, alone in its round."""
    server = await new_server(servers, tmp_path, "--appendfsync", "always").start()
    c = await server.client()
    for start in range(0, 20, 5):
        await c.pipeline([("SET", f"k{i}", f"v{i}") for i in range(start, start + 5)])
    await c.call("SET", "last", "written last")
    assert await server.stop() == 0
    return server


async def test_a_torn_last_entry_is_cut_off_at_start(servers, tmp_path):
    server = await _log_with_last_key(servers, tmp_path)
    path = active_log(server.directory)
    entries = log_entries(path)
    assert [kind for _, _, kind, _ in entries] == [BATCH] * 4 + [VALUE]
    offset, size, kind, keys = entries[-1]
    assert keys == [b"last"]
    pristine = tmp_path / "pristine"
    shutil.copytree(server.directory, pristine)
    for cut in (offset + 1, offset + 7, offset + 8, offset + size - 1):
        shutil.rmtree(server.directory)
        shutil.copytree(pristine, server.directory)
        with open(path, "r+b") as f:
            f.truncate(cut)
        await server.start()
        c = await server.client()
        assert await c.call("GET", "last") is None, cut
        assert await c.call("MGET", "k0", "k19") == [b"v0", b"v19"]
        assert await c.call("DBSIZE") == 20
        assert (await c.info())["journal_load_truncations"] == "1"
        assert await server.stop() == 0
        assert f"Truncated the commit log {path} at byte offset {offset}" in server.output()
        assert path.stat().st_size == offset  # cut at the last good entry

    # aof-load-truncated no: the start is refused, naming the file and the offset.
    shutil.rmtree(server.directory)
    shutil.copytree(pristine, server.directory)
    with open(path, "r+b") as f:
        f.truncate(offset + 5)
    result = await failed_start(server.directory, "--aof-load-truncated", "no")
    assert result.returncode != 0
    message = result.stderr.decode()
    assert f"reading the commit log {path}: the last entry, at byte offset {offset}, is torn" in message
    assert "Traceback" not in message


async def test_a_corrupt_entry_in_the_middle_stops_the_start(servers, tmp_path):
    server = await _log_with_last_key(servers, tmp_path)
    path = active_log(server.directory)
    entries = log_entries(path)
    index = len(entries) // 2  # a batch: none of its keys survives
    offset, size, _, keys = entries[index]
    survivors = [key for _, _, _, earlier in entries[:index] for key in earlier]
    data = bytearray(path.read_bytes())
    data[offset + size - 1] ^= 0x40  # one bit of the payload's last byte
    path.write_bytes(bytes(data))

    result = await failed_start(server.directory)
    assert result.returncode != 0
    message = result.stderr.decode()
    assert f"the commit log {path}: corrupt entry at byte offset {offset}" in message
    assert "aof-load-corrupt-truncate yes" in message and "Traceback" not in message
    assert path.read_bytes() == bytes(data)  # nothing was cut

    await server.start("--aof-load-corrupt-truncate", "yes")
    c = await server.client()
    assert sorted(await c.call("KEYS", "*")) == sorted(survivors)
    assert len(keys) == 5 and not set(keys) & set(survivors) and await c.call("GET", "last") is None
    assert await server.stop() == 0
    assert f"Truncated the commit log {path} at byte offset {offset}" in server.output()


# -- write failures (libfiu) -------------------------------------------------------------


async def _fiu(server: ServerProcess, command: str) -> None:
    argv = ["fiu-ctrl", "-f", server.fiu_fifo, "-c", command, str(server.pid)]
    with trio.fail_after(PROCESS_TIMEOUT):
        await trio.run_process(argv, capture_stdout=True, capture_stderr=True)


@pytest.mark.parametrize(("fsync", "point"), [
    ("everysec", "posix/io/rw/write"), ("always", "posix/io/sync/fsync"),
], ids=["write-everysec", "fsync-always"])
async def test_a_failing_log_refuses_writes_and_acknowledges_nothing_it_lost(servers, tmp_path, fsync, point):
    if shutil.which("fiu-run") is None or shutil.which("fiu-ctrl") is None:
        pytest.skip("fiu-run/fiu-ctrl not installed (Debian package fiu-utils; tools/setup.sh installs it)")
    server = new_server(servers, tmp_path, "--appendfsync", fsync, fiu_fifo=str(tmp_path / "fiu"))
    await server.start()
    c = await server.client()
    acknowledged = {}
    assert await c.call("SET", "before", "1") == b"OK"
    acknowledged[b"before"] = b"1"

    await _fiu(server, f"enable name={point},failinfo=5")  # EIO
    try:
        first = await c.call("SET", "during", "2")
    except ConnectionClosed:
        first = None  # the round's replies were dropped and its connection closed
    assert first != b"OK"
    c = await server.client()
    misconf = "MISCONF Errors writing to the AOF file: Input/output error"
    assert str(await c.call("SET", "refused", "3")) == misconf
    assert str(await c.call("PING")) == misconf
    assert await c.call("GET", "before") == b"1"  # reads go on
    info = await c.info()
    assert info["aof_last_write_status"] == "err"

    await _fiu(server, f"disable name={point}")
    with trio.fail_after(PROCESS_TIMEOUT):  # the log is retried every second
        while (reply := await c.call("SET", "after", "4")) != b"OK":
            assert str(reply) == misconf
            await trio.sleep(0.05)
    acknowledged[b"after"] = b"4"
    assert (await c.info())["aof_last_write_status"] == "ok"
    assert await c.call("PING") == b"PONG"
    assert await server.stop() == 0

    server.fiu_fifo = None
    await server.start()
    c = await server.client()
    assert await c.call("MGET", *acknowledged) == list(acknowledged.values())
    assert await c.call("EXISTS", "refused") == 0
    assert await server.stop() == 0
