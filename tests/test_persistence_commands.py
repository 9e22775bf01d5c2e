"""SAVE & co., the save schedule, automatic rewrites and INFO persistence.

The decisions of when to rewrite are pure functions, tested as tables; the
:class:`~respkv.persistence.rewrites.Rewrites` holder is driven with a fake journal
and clock; the journal's snapshots are checked directly (a snapshot written while
keys change, without a log, is the exact state of its end; long rewrites log their
progress); the commands and INFO on an in-process node.  Process-level behaviour
(restarts, SHUTDOWN, damaged files, failing disks) is in test_durability_standalone.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis
import trio

from respkv.config import Config, ConfigError, parse_save_schedule
from respkv.keyspace.codec import encode_value
from respkv.keyspace.store import Keyspace
from respkv.persistence.journal import Journal
from respkv.persistence.keyspace_images import keyspace_image, keyspace_replay
from respkv.persistence.rewrites import RETRY_DELAY, Rewrites, growth_due, save_due
from tests.conftest import NodeThread

# -- the save schedule -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "schedule"), [
    ("", ()),
    ("3600 1 300 100 60 10000", ((3600, 1), (300, 100), (60, 10000))),
    ("  10   0 ", ((10, 0),)),
])
def test_save_schedule_parses_as_redis(text, schedule):
    assert parse_save_schedule(text) == schedule


@pytest.mark.parametrize("text", ["1", "0 1", "1 -1", "a b", "1 2 3", "1.5 2", "10 1x"])
def test_bad_save_schedules_are_refused_with_redis_text(text):
    with pytest.raises(ConfigError, match="^Invalid save parameters$"):
        parse_save_schedule(text)


def test_save_lines_of_a_config_file_add_up(tmp_path):
    path = tmp_path / "respkv.conf"
    path.write_text("save 900 1\nsave 300 10\n")
    config = Config()
    config.load_file(str(path))
    assert config.get_text("save") == "900 1 300 10"
    path.write_text('save 900 1\nsave ""\nsave 60 5\n')  # "" clears the lines before it
    config.load_file(str(path))
    assert config["save"] == ((60, 5),)


# -- when a rewrite is due (pure) ------------------------------------------------------------

SCHEDULE = ((3600, 1), (300, 100), (60, 10000))


@pytest.mark.parametrize(("changes", "since_save", "last_ok", "since_try", "due"), [
    (0, 100_000, True, 100_000, None),  # nothing changed
    (1, 3600, True, 3600, None),  # "after 3600 s" means more than 3600
    (1, 3601, True, 3601, (3600, 1)),
    (99, 301, True, 301, None),
    (100, 301, True, 301, (300, 100)),
    (10_000, 61, True, 61, (60, 10000)),
    (10_000, 61, False, RETRY_DELAY, None),  # failed: retried only after the delay
    (10_000, 61, False, RETRY_DELAY + 1, (60, 10000)),
])
def test_save_due(changes, since_save, last_ok, since_try, due):
    assert save_due(SCHEDULE, changes, since_save, last_ok, since_try) == due


def test_save_due_without_a_schedule_never_is():
    assert save_due((), 10**9, 10**9, True, 10**9) is None


@pytest.mark.parametrize(("percentage", "min_size", "current", "base", "due"), [
    (100, 64, 64, 10, None),  # not above the minimum size
    (100, 64, 65, 40, None),  # grew 62%
    (100, 64, 80, 40, 100),
    (100, 64, 200, 40, 400),
    (0, 0, 10**9, 1, None),  # 0 turns it off
    (50, 0, 15, 10, 50),
    (100, 0, 10, 0, 900),  # no base yet counts as 1 byte
])
def test_growth_due(percentage, min_size, current, base, due):
    assert growth_due(percentage, min_size, current, base) == due


class FakeJournal:
    """The numbers Rewrites.tick reads."""

    def __init__(self) -> None:
        self.changes = 0
        self.last_save_time = 1000
        self.last_rewrite_ok = True
        self.log = object()
        self.growth = (0, 0)

    def log_growth(self):
        return self.growth


def test_rewrites_start_on_the_schedule_on_growth_and_when_scheduled():
    journal = FakeJournal()
    config = Config(save=((10, 2),), auto_aof_rewrite_min_size=100)
    now = [1000.0]
    started = []
    rewrites = Rewrites(journal, list, config, lambda fn, reason: started.append(reason), clock=lambda: now[0])
    now[0] = 1011
    journal.changes = 1
    rewrites.tick()
    assert started == []
    journal.changes = 2
    rewrites.tick()
    assert started == ["save schedule"] and rewrites.running
    rewrites.tick()  # one at a time
    rewrites.schedule()
    assert len(started) == 1 and rewrites.scheduled
    rewrites._end()  # the background task ended (what _run_in_background does)
    rewrites.tick()
    assert started[-1] == "scheduled by BGSAVE SCHEDULE" and not rewrites.scheduled
    rewrites._end()
    journal.changes, journal.last_save_time = 0, now[0]
    journal.growth = (250, 100)
    rewrites.tick()
    assert started[-1] == "log grew by 150%"
    rewrites._end()
    journal.last_rewrite_ok = False  # that one failed: no retry for RETRY_DELAY seconds
    rewrites.tick()
    assert len(started) == 3
    now[0] += RETRY_DELAY + 1
    rewrites.tick()
    assert len(started) == 4


# -- the journal's snapshots -----------------------------------------------------------------


def _journal(directory, keyspace: Keyspace, **options) -> Journal:
    journal = Journal(str(directory), keyspace_image(keyspace), **options)
    journal.load(keyspace_replay(keyspace))
    journal.open()
    keyspace.on_modified = journal.mark
    keyspace.on_flush = journal.mark_flushed
    return journal


def _state(keyspace: Keyspace) -> dict:
    return {key: (encode_value(value), keyspace.expires.get(key)) for key, value in keyspace.data.items()}


@pytest.mark.parametrize("flush", [False, True], ids=["changes", "changes-and-flushall"])
async def test_a_snapshot_without_log_is_the_state_at_its_end(tmp_path, flush):
    # While the snapshot is written, values move between keys (as RENAME does):
    # imaged one key at a time, a value could be lost or doubled; the end of the
    # snapshot images the changed keys again, so it holds exactly the final state.
    keyspace = Keyspace()
    journal = _journal(tmp_path, keyspace, appendonly=False)
    count = 10_000
    for i in range(count):
        keyspace.set(b"k%d" % i, b"v%d" % i)
    keyspace.set_deadline(b"k1", int(time.time() * 1000) + 3_600_000)
    journal.commit()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal.rewrite, keyspace.iter_keys)
            await trio.lowlevel.checkpoint()  # the rewrite took its key list and wrote a chunk
            step = 0
            while journal.rewrite_progress[0] < count:
                source, target = b"k%d" % (count - 1 - step), b"k%d" % step
                value = keyspace.get(source)
                keyspace.delete(source)
                if value is not None:
                    keyspace.set(target, value)
                keyspace.set(b"new%d" % step, b"n")
                if flush and step == 2:
                    keyspace.flush()
                journal.commit()  # the end of the event-loop round
                step += 1
                await trio.lowlevel.checkpoint()
    assert step > 2 and journal.last_rewrite_ok
    restored = Keyspace()
    Journal(str(tmp_path), keyspace_image(restored)).load(keyspace_replay(restored))
    assert _state(restored) == _state(keyspace)


async def test_a_long_rewrite_logs_its_progress(tmp_path, caplog):
    keyspace = Keyspace()
    journal = _journal(tmp_path, keyspace)
    for i in range(25_000):
        keyspace.set(b"k%d" % i, b"v")
    journal.commit()
    with caplog.at_level(logging.INFO, logger="respkv.persistence.journal"), trio.fail_after(30):
        await journal.rewrite(keyspace.iter_keys)
    progress = [r.getMessage() for r in caplog.records if "keys written" in r.getMessage()]
    assert len(progress) >= 9, progress  # about every tenth
    assert progress[-1].startswith("snapshot snapshot.2: 25000 of 25000 keys written (100%)")
    assert journal.base_size == journal.current_size == journal.snapshot_size + journal.log.size
    assert journal.snapshot_size > 0 and journal.changes == 0
    journal.close()


# -- commands and INFO on a node -------------------------------------------------------------

#: Redis 7.0.15's INFO persistence fields (with appendonly yes), in its order.
REDIS_PERSISTENCE_FIELDS = """loading async_loading current_cow_peak current_cow_size current_cow_size_age
current_fork_perc current_save_keys_processed current_save_keys_total rdb_changes_since_last_save
rdb_bgsave_in_progress rdb_last_save_time rdb_last_bgsave_status rdb_last_bgsave_time_sec
rdb_current_bgsave_time_sec rdb_saves rdb_last_cow_size rdb_last_load_keys_expired rdb_last_load_keys_loaded
aof_enabled aof_rewrite_in_progress aof_rewrite_scheduled aof_last_rewrite_time_sec
aof_current_rewrite_time_sec aof_last_bgrewrite_status aof_rewrites aof_rewrites_consecutive_failures
aof_last_write_status aof_last_cow_size module_fork_in_progress module_fork_last_cow_size aof_current_size
aof_base_size aof_pending_rewrite aof_buffer_length aof_pending_bio_fsync aof_delayed_fsync""".split()


@pytest.fixture
def server(tmp_path):
    node = NodeThread(tmp_path).start()
    yield node
    node.stop()


def _persistence_fields(r) -> list[str]:
    return list(r.info("persistence"))  # in the order of the reply

def _poll(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)
    return value


def test_info_persistence_fields_are_redis_names_in_redis_order(server):
    r = server.client()
    fields = _persistence_fields(r)
    ours = [name for name in fields if name in REDIS_PERSISTENCE_FIELDS]
    assert ours == [name for name in REDIS_PERSISTENCE_FIELDS if name in ours]
    assert fields[: len(ours)] == ours  # respkv's own fields come after Redis's
    assert set(fields) - set(ours) == {"journal_entries_loaded", "journal_load_seconds",
                                       "journal_load_truncations", "journal_load_skipped_entries",
                                       "journal_snapshot_size", "journal_fsync"}
    assert {"rdb_changes_since_last_save", "current_save_keys_total", "aof_current_size",
            "aof_last_write_status", "aof_pending_bio_fsync", "aof_delayed_fsync"} <= set(ours)


def test_save_and_lastsave(server):
    r = server.client()
    r.set("k", "v")
    assert r.info("persistence")["rdb_changes_since_last_save"] >= 1
    assert r.save() is True
    info = r.info("persistence")
    assert info["rdb_saves"] == 1 and info["aof_rewrites"] == 1 and info["rdb_last_bgsave_status"] == "ok"
    assert info["rdb_changes_since_last_save"] == 0 and info["rdb_bgsave_in_progress"] == 0
    assert int(r.lastsave().timestamp()) == info["rdb_last_save_time"] == server.node.last_save
    assert abs(info["rdb_last_save_time"] - time.time()) < 5
    assert server.node.journal.manifest.snapshot == "snapshot.2"


def test_save_and_shutdown_are_refused_inside_multi(server):
    r = server.client(protocol=2)
    r.execute_command("MULTI")
    for command in ("SAVE", "SHUTDOWN"):
        with pytest.raises(redis.ResponseError, match="^Command not allowed inside a transaction$"):
            r.execute_command(command)
    with pytest.raises(redis.exceptions.ExecAbortError):
        r.execute_command("EXEC")
    assert r.ping()


def test_config_set_appendfsync_applies_to_the_open_log(server):
    r = server.client()
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert r.config_set("appendfsync", "always")
    assert server.node.journal.log.policy.value == "always"
    assert r.info("persistence")["journal_fsync"] == "always"
    with pytest.raises(redis.ResponseError, match="argument.s. must be one of the following: everysec, always, no"):
        r.config_set("appendfsync", "sometimes")
    with pytest.raises(redis.ResponseError, match="can't set immutable config"):
        r.config_set("appendonly", "no")
    assert r.config_get("auto-aof-rewrite-*") == {"auto-aof-rewrite-percentage": "100",
                                                  "auto-aof-rewrite-min-size": "67108864"}


def test_config_set_save_checks_the_schedule(server):
    r = server.client()
    for bad in ("1 2 3", "0 1", "1 -1", "a b"):
        with pytest.raises(redis.ResponseError, match=r"^CONFIG SET failed \(possibly related to argument 'save'\) "
                                                      r"- Invalid save parameters$"):
            r.config_set("save", bad)
    assert r.config_set("save", "900 1 300 10")
    assert r.config_get("save") == {"save": "900 1 300 10"}
    assert r.config_set("save", "")
    assert r.config_get("save") == {"save": ""}


def test_the_save_schedule_starts_a_snapshot(server):
    r = server.client()
    r.config_set("save", "1 1")  # after more than a second, if a key changed
    r.set("k", "v")
    _poll(lambda: r.info("persistence")["rdb_saves"] >= 1)
    assert server.node.journal.manifest.snapshot is not None


def test_log_growth_starts_a_rewrite(server):
    r = server.client()
    base = r.info("persistence")["aof_base_size"]
    r.config_set("auto-aof-rewrite-min-size", "4096")
    r.config_set("auto-aof-rewrite-percentage", "100")
    for i in range(50):  # the same keys over and over: the log grows, the data does not
        r.mset({f"k{j}": f"value {i}" for j in range(20)})
    # A rewrite started while the MSETs went on can leave the log past the
    # threshold again: the next housekeeping tick starts another one.
    def rewritten() -> bool:
        info = r.info("persistence")
        return info["aof_rewrites"] >= 1 and info["aof_current_size"] < 4096 + info["aof_base_size"]

    _poll(rewritten)
    assert r.info("persistence")["aof_base_size"] > base
    assert r.mget([f"k{j}" for j in range(20)]) == [b"value 49"] * 20
