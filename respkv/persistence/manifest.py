"""The manifest: which snapshot and which logs make up a data directory's state.

Theory of operation
-------------------
A data directory holds at most one live snapshot and one or more logs; the state is
the snapshot's records followed by the logs' records, in the manifest's order.  The
manifest (``DIR/manifest``) is a small text file::

    respkv-manifest 1
    snapshot snapshot.7
    log log.7
    log log.8

A first line with the format version, then at most one ``snapshot NAME`` line,
then ``log NAME`` lines in order; the last log is the one appended to.  Names are
``snapshot.N`` / ``log.N``, plain files in the directory; ``N`` is a generation, and
``snapshot.N`` holds the state up to the start of ``log.N``.  A missing manifest
means a fresh directory: no snapshot, no logs.  The manifest is only ever replaced
atomically (``manifest.tmp``, fsync, rename, fsync of the directory), so a crash
leaves the old or the new one.

A rewrite (compaction) goes from ``{snapshot.7, log.7}`` to ``{snapshot.8, log.8}``
in steps, each of which leaves a loadable directory (:func:`plan_rewrite`):

1. create ``log.8`` (empty; a crash now leaves it unlisted: a stray);
2. store the *during* manifest: old snapshot, old logs, then ``log.8``; only now
   switch appends to ``log.8`` (a record appended to a log the manifest does not
   list would be lost in a crash);
3. write ``snapshot.8`` with the state as of the switch, atomically (a crash
   leaves ``snapshot.8.tmp`` or an unlisted ``snapshot.8``: strays);
4. store the *after* manifest: ``snapshot.8``, ``log.8``;
5. delete the obsolete ``snapshot.7`` and ``log.7`` (a crash leaves strays).

Strays never hold anything the manifest needs, so :meth:`Layout.remove_stray_files`
deletes them at start-up.  A rewrite interrupted after step 2 restarts from the
*during* manifest; planning a rewrite from it folds all its logs into the next
snapshot.  Everything here is pure except the :class:`Layout` methods that read,
write or delete files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .exceptions import CorruptManifest
from .files import replace_file

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "RewritePlan",
    "plan_rewrite",
    "plan_first_log",
    "generation_of",
    "log_name",
    "snapshot_name",
    "Part",
    "Layout",
]

#: The manifest's file name in the data directory.
MANIFEST_NAME = "manifest"

_FIRST_LINE = "respkv-manifest 1"
_PART_NAME = re.compile(r"(snapshot|log)\.([1-9][0-9]{0,17})")
_STRAY_NAME = re.compile(r"(?:(?:snapshot|log)\.[0-9]+(?:\.tmp)?|manifest\.tmp)")


def log_name(generation: int) -> str:
    return f"log.{generation}"


def snapshot_name(generation: int) -> str:
    return f"snapshot.{generation}"


def generation_of(name: str) -> int:
    """The ``N`` of ``snapshot.N`` or ``log.N``; ``ValueError`` for any other name."""
    match = _PART_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not a snapshot or log name: {name!r}")
    return int(match.group(2))


@dataclass(frozen=True)
class Manifest:
    """The parts of the state, in load order; ``Manifest()`` is a fresh directory."""

    snapshot: str | None = None
    logs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.snapshot is not None and not self.snapshot.startswith("snapshot."):
            raise ValueError(f"not a snapshot name: {self.snapshot!r}")
        if self.snapshot is not None:
            generation_of(self.snapshot)
        for name in self.logs:
            if not name.startswith("log."):
                raise ValueError(f"not a log name: {name!r}")
            generation_of(name)
        if len(set(self.logs)) != len(self.logs):
            raise ValueError(f"a log is listed twice: {self.logs}")

    @property
    def active_log(self) -> str | None:
        """The log appended to: the last one listed."""
        return self.logs[-1] if self.logs else None

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the state needs."""
        return ((self.snapshot,) if self.snapshot else ()) + self.logs

    @property
    def next_generation(self) -> int:
        """One more than the highest generation listed (1 for a fresh directory)."""
        return max((generation_of(name) for name in self.files), default=0) + 1

    def render(self) -> str:
        """The manifest's text."""
        lines = [_FIRST_LINE]
        if self.snapshot is not None:
            lines.append(f"snapshot {self.snapshot}")
        lines.extend(f"log {name}" for name in self.logs)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, *, source: str = MANIFEST_NAME) -> Manifest:
        """The manifest in ``text``; :class:`CorruptManifest` naming ``source`` and the
        line when it is malformed."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        else:
            raise CorruptManifest(source, len(lines), "the last line does not end with a newline")
        if not lines or lines[0] != _FIRST_LINE:
            raise CorruptManifest(source, 1, f"expected {_FIRST_LINE!r}")
        snapshot = None
        logs: list[str] = []
        for number, line in enumerate(lines[1:], start=2):
            kind, _, name = line.partition(" ")
            match = _PART_NAME.fullmatch(name)
            if match is None or match.group(1) != kind:
                raise CorruptManifest(source, number, f"expected 'snapshot snapshot.N' or 'log log.N', got {line!r}")
            if kind == "snapshot":
                if snapshot is not None or logs:
                    raise CorruptManifest(source, number, "a second snapshot, or a snapshot after a log")
                snapshot = name
            elif name in logs:
                raise CorruptManifest(source, number, f"{name} is listed twice")
            else:
                logs.append(name)
        return cls(snapshot, tuple(logs))


@dataclass(frozen=True)
class RewritePlan:
    """The manifests and files of one rewrite (see the module docstring)."""

    before: Manifest
    during: Manifest  # step 2: the old parts, then the new log
    after: Manifest  # step 4: the new snapshot and the new log
    new_log: str
    new_snapshot: str
    obsolete: tuple[str, ...]  # step 5: files of ``before``


def plan_rewrite(current: Manifest) -> RewritePlan:
    """The steps that fold ``current`` into a new snapshot and start a new log."""
    generation = current.next_generation
    new_log = log_name(generation)
    new_snapshot = snapshot_name(generation)
    return RewritePlan(
        before=current,
        during=Manifest(current.snapshot, current.logs + (new_log,)),
        after=Manifest(new_snapshot, (new_log,)),
        new_log=new_log,
        new_snapshot=new_snapshot,
        obsolete=current.files,
    )


def plan_first_log(current: Manifest) -> Manifest | None:
    """For a directory without a log (fresh, or a manifest of a snapshot alone): the
    manifest that adds one (create the log, then store this).  ``None`` when
    ``current`` already has a log to append to."""
    if current.logs:
        return None
    return Manifest(current.snapshot, (log_name(current.next_generation),))


@dataclass(frozen=True)
class Part:
    """One file to load, in order: ``kind`` is ``"snapshot"`` or ``"log"``; ``last``
    marks the last log (the only one whose torn tail may be truncated)."""

    kind: str
    name: str
    path: str
    last: bool


class Layout:
    """The files of one data directory: paths, and the manifest's I/O."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.directory, MANIFEST_NAME)

    def path(self, name: str) -> str:
        """The path of the part ``name`` (a name the manifest may list)."""
        generation_of(name)
        return os.path.join(self.directory, name)

    def parts(self, manifest: Manifest) -> list[Part]:
        """The files of ``manifest`` in load order: the snapshot, then the logs."""
        parts = []
        if manifest.snapshot is not None:
            parts.append(Part("snapshot", manifest.snapshot, self.path(manifest.snapshot), False))
        for index, name in enumerate(manifest.logs):
            parts.append(Part("log", name, self.path(name), index == len(manifest.logs) - 1))
        return parts

    def load(self) -> Manifest:
        """The stored manifest; ``Manifest()`` when there is none (fresh directory)."""
        try:
            with open(self.manifest_path, encoding="ascii", errors="strict") as file:
                text = file.read(1 << 20)
        except FileNotFoundError:
            return Manifest()
        except UnicodeDecodeError as exc:
            raise CorruptManifest(self.manifest_path, 1, f"not ASCII text ({exc.reason})") from None
        return Manifest.parse(text, source=self.manifest_path)

    def store(self, manifest: Manifest) -> None:
        """Replace the stored manifest atomically and durably."""
        os.makedirs(self.directory, exist_ok=True)
        replace_file(self.manifest_path, manifest.render().encode("ascii"))

    def stray_files(self, manifest: Manifest) -> list[str]:
        """Names of snapshot, log and temporary files in the directory that
        ``manifest`` does not list: leftovers of interrupted rewrites."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        listed = set(manifest.files)
        return sorted(name for name in names if _STRAY_NAME.fullmatch(name) and name not in listed)

    def remove_stray_files(self, manifest: Manifest) -> list[str]:
        """Delete :meth:`stray_files` (at start-up, with no rewrite running); return
        their names."""
        strays = self.stray_files(manifest)
        for name in strays:
            os.unlink(os.path.join(self.directory, name))
        return strays

    def remove_obsolete(self, plan: RewritePlan) -> None:
        """Step 5 of a rewrite: delete the files of ``plan.before`` (already absent ones
        are fine)."""
        for name in plan.obsolete:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
