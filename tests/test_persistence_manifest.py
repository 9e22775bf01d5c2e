"""The manifest: its text format, and a rewrite whose every step leaves a loadable
directory."""

from __future__ import annotations

import shutil

import pytest

from respkv.persistence.exceptions import CorruptManifest
from respkv.persistence.log import CommitLog, read_log
from respkv.persistence.manifest import Layout, Manifest, generation_of, plan_first_log, plan_rewrite
from respkv.persistence.snapshot import SnapshotWriter, read_snapshot


def test_render_and_parse_round_trip():
    manifest = Manifest("snapshot.7", ("log.7", "log.8"))
    text = manifest.render()
    assert text == "respkv-manifest 1\nsnapshot snapshot.7\nlog log.7\nlog log.8\n"
    assert Manifest.parse(text) == manifest
    assert Manifest.parse(Manifest().render()) == Manifest()
    assert manifest.active_log == "log.8" and manifest.next_generation == 9
    assert manifest.files == ("snapshot.7", "log.7", "log.8")
    assert Manifest().next_generation == 1 and Manifest().active_log is None


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "expected 'respkv-manifest 1'"),
        ("respkv-manifest 2\n", 1, "expected"),
        ("respkv-manifest 1\nlog log.1", 2, "newline"),
        ("respkv-manifest 1\nlog log.1\nlog ../etc/passwd\n", 3, "got 'log ../etc/passwd'"),
        ("respkv-manifest 1\nsnapshot log.1\n", 2, "expected"),
        ("respkv-manifest 1\nlog log.1\nsnapshot snapshot.1\n", 3, "snapshot after a log"),
        ("respkv-manifest 1\nsnapshot snapshot.1\nsnapshot snapshot.2\n", 3, "second snapshot"),
        ("respkv-manifest 1\nlog log.1\nlog log.1\n", 3, "listed twice"),
        ("respkv-manifest 1\nlog  log.1\n", 2, "expected"),
    ],
)
def test_malformed_manifests_name_the_line(text, line, reason):
    with pytest.raises(CorruptManifest) as caught:
        Manifest.parse(text, source="/data/manifest")
    assert caught.value.line == line and reason in str(caught.value)
    assert "/data/manifest" in str(caught.value)


def test_names_are_checked():
    assert generation_of("log.12") == 12 and generation_of("snapshot.3") == 3
    for bad in ("log.0", "log.01", "log.x", "log.1.tmp", "manifest", "../log.1"):
        with pytest.raises(ValueError):
            generation_of(bad)
    with pytest.raises(ValueError):
        Manifest("log.1")
    with pytest.raises(ValueError):
        Manifest(None, ("log.1", "log.1"))


def test_a_missing_manifest_is_a_fresh_directory(tmp_path):
    layout = Layout(str(tmp_path / "data"))
    assert layout.load() == Manifest()
    assert layout.stray_files(Manifest()) == []
    assert plan_first_log(Manifest()) == Manifest(None, ("log.1",))
    assert plan_first_log(Manifest(None, ("log.4",))) is None


def test_store_replaces_the_manifest(tmp_path):
    layout = Layout(str(tmp_path / "data"))
    layout.store(Manifest(None, ("log.1",)))
    layout.store(Manifest("snapshot.2", ("log.2",)))
    assert layout.load() == Manifest("snapshot.2", ("log.2",))
    assert not (tmp_path / "data" / "manifest.tmp").exists()


def test_non_ascii_manifest_is_corrupt(tmp_path):
    layout = Layout(str(tmp_path))
    (tmp_path / "manifest").write_bytes(b"respkv-manifest 1\n\xff\n")
    with pytest.raises(CorruptManifest, match="not ASCII"):
        layout.load()


def test_plan_rewrite():
    plan = plan_rewrite(Manifest("snapshot.7", ("log.7",)))
    assert plan.during == Manifest("snapshot.7", ("log.7", "log.8"))
    assert plan.after == Manifest("snapshot.8", ("log.8",))
    assert plan.obsolete == ("snapshot.7", "log.7")
    # From an interrupted rewrite: everything listed folds into the next snapshot.
    again = plan_rewrite(plan.during)
    assert again.during == Manifest("snapshot.7", ("log.7", "log.8", "log.9"))
    assert again.after == Manifest("snapshot.9", ("log.9",))
    assert again.obsolete == ("snapshot.7", "log.7", "log.8")
    assert plan_rewrite(Manifest()).after == Manifest("snapshot.1", ("log.1",))


def test_stray_files_are_the_unlisted_parts_and_temporaries(tmp_path):
    layout = Layout(str(tmp_path))
    names = ("snapshot.7", "log.7", "log.8", "snapshot.8.tmp", "snapshot.8", "manifest.tmp", "manifest", "notes.txt")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    manifest = Manifest("snapshot.7", ("log.7",))
    assert layout.stray_files(manifest) == ["log.8", "manifest.tmp", "snapshot.8", "snapshot.8.tmp"]
    assert layout.remove_stray_files(manifest) == ["log.8", "manifest.tmp", "snapshot.8", "snapshot.8.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.7", "manifest", "notes.txt", "snapshot.7"]


# -- a whole rewrite, crashing after every step ------------------------------------------


def recover(directory) -> list[bytes]:
    """What a node would load from ``directory`` after a crash."""
    layout = Layout(str(directory))
    manifest = layout.load()
    layout.remove_stray_files(manifest)
    records: list[bytes] = []
    for part in layout.parts(manifest):
        if part.kind == "snapshot":
            records.extend(read_snapshot(part.path))
        else:
            records.extend(read_log(part.path, last=part.last))
    return records


class CrashChecks:
    def __init__(self, tmp_path, data):
        self.tmp_path = tmp_path
        self.data = data
        self.crashes = 0

    def check(self, expected):
        """Copy the directory as a crash would leave it and recover the copy."""
        self.crashes += 1
        copy = self.tmp_path / f"crash{self.crashes}"
        shutil.copytree(self.data, copy)
        assert recover(copy) == expected, f"crash {self.crashes}"


def test_every_step_of_a_rewrite_leaves_a_loadable_state(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    layout = Layout(str(data))
    crash = CrashChecks(tmp_path, data)
    crash.check([])

    # Start-up in a fresh directory: create the first log, then list it.
    manifest = plan_first_log(layout.load())
    log = CommitLog.create(layout.path(manifest.active_log), "always")
    crash.check([])  # unlisted log.1: a stray
    layout.store(manifest)
    crash.check([])
    records = [b"r1", b"r2", b"r3"]
    for record in records:
        log.append(record)
    log.commit()
    crash.check(records)

    # Rewrite, step by step.
    plan = plan_rewrite(layout.load())
    new_log = CommitLog.create(layout.path(plan.new_log), "always")  # 1
    crash.check(records)
    layout.store(plan.during)  # 2, then appends switch to the new log
    crash.check(records)
    log.close()
    new_log.append(b"r4")
    new_log.commit()
    crash.check(records + [b"r4"])
    writer = SnapshotWriter(layout.path(plan.new_snapshot))  # 3: state as of the switch
    for record in records:
        writer.add(record)
    writer.flush()
    crash.check(records + [b"r4"])  # only snapshot.2.tmp exists
    writer.finish()
    crash.check(records + [b"r4"])  # snapshot.2 exists but is not listed
    layout.store(plan.after)  # 4
    crash.check(records + [b"r4"])
    layout.remove_obsolete(plan)  # 5
    crash.check(records + [b"r4"])
    new_log.append(b"r5")
    new_log.close()
    crash.check(records + [b"r4", b"r5"])
    assert sorted(p.name for p in data.iterdir()) == ["log.2", "manifest", "snapshot.2"]
    assert layout.load() == Manifest("snapshot.2", ("log.2",))
