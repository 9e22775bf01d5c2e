"""The membership a cluster node keeps on disk, so that a restart rejoins its cluster.

Theory of operation
-------------------
Redis Cluster nodes keep ``nodes.conf``; respkv nodes keep the same kind of file
(``cluster-config-file``, default ``nodes.conf`` in ``dir``).  Without it a node
restarted with the command line it was first started with (no ``--join``) would
know only itself: a one-node ring that claims all 16384 slots and takes writes
the rest of the cluster never sees.  With it the node starts from the membership
it last knew, so its ring, and therefore its slots, are the cluster's, and it has
addresses to reconnect to (:func:`rejoin`).

The file holds everything the ring needs: every member record the node knows
(tombstones included, so a removed node stays removed) and ``cluster-vnodes``.
It is a short text file, one line per record::

    # respkv cluster membership (cluster-config-file) ...
    respkv-nodes 1
    myself <node id>
    vnodes <cluster-vnodes>
    member <node id> <ip> <port> <bus port> <weight> <epoch> <left: 0|1>
    ...
    checksum <crc32 of every byte above this line, 8 hex digits>

The ``member`` fields are exactly a record's cluster-bus encoding
(:meth:`~respkv.cluster.membership.Member.to_wire`), parsed and checked by the same
code.  The node rewrites the file whenever its membership changes (a join, a
MEET, a member or a new address learned by gossip), through
:func:`~respkv.cluster.identity.write_file_atomically` (temporary file, fsync,
rename, fsync of the directory), so a crash leaves the old or the new file, never
a mix.  Anything unexpected when reading it (unreadable, not this format, a
checksum that does not match, another node's file, other members but a different
``cluster-vnodes``) stops the start with a :class:`MembershipFileError` naming the file: starting
alone instead would be exactly the split this file exists to prevent.

:class:`MembershipRecorder` is the small stateful part: it follows the node's
:class:`~respkv.cluster.state.ClusterState` and writes each new membership.
The write is synchronous (a few milliseconds, and membership changes are rare),
so once a node shows a member in ``CLUSTER NODES`` that member is on disk.
:func:`rejoin` is the task that reconnects a restarted node to the members the
file listed.

A restarted node that reaches nobody is not a new cluster: it keeps the saved
ring, so it coordinates only its own share of the slots; the failure detector
flags the silent members ``fail?`` after ``cluster-node-timeout`` as it would any
member, their slots stay theirs (``MOVED`` points there, as the live cluster
would answer) and ``CLUSTER INFO`` counts them in ``cluster_slots_pfail``.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass

import trio

from .gossip import JOIN_RETRY_MAX, JOIN_RETRY_MIN, Gossip, MeetError
from .identity import write_file_atomically
from .membership import WIRE_FIELDS, Member, Membership, is_node_id
from .state import ClusterState
from .topology import Topology

log = logging.getLogger(__name__)

#: First directive of the file: its format and version.
FORMAT = "respkv-nodes"
VERSION = 1

#: Seconds between attempts to write the file after a failed write.
RETRY_INTERVAL = 1.0

_HEADER = (
    "# respkv cluster membership (cluster-config-file): the members this node knows.\n"
    "# Rewritten by the node whenever membership changes; do not edit. See docs/cluster.md.\n"
)
_REMEDY = (
    "fix or restore the file, or remove it to start this node knowing only itself, as on "
    "its first start (then give it --join to add it to its cluster again)"
)


class MembershipFileError(RuntimeError):
    """The membership file cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class SavedMembership:
    """What the file holds: whose file it is, the ring parameter, the records."""

    myself: str
    vnodes: int
    membership: Membership

    def others(self) -> tuple[Member, ...]:
        """The active members other than this node: the ones to reconnect to."""
        return tuple(m for m in self.membership.active() if m.node_id != self.myself)


def config_file_path(directory: str, name: str) -> str:
    """Where the file lives: ``name`` inside ``directory`` unless ``name`` is absolute."""
    return os.path.join(directory, name)


# -- the format ----------------------------------------------------------------------


def encode(saved: SavedMembership) -> bytes:
    """The file's bytes for ``saved`` (see the module doc)."""
    lines = [_HEADER, f"{FORMAT} {VERSION}\n", f"myself {saved.myself}\n", f"vnodes {saved.vnodes}\n"]
    for member in saved.membership:
        lines.append("member " + " ".join(field.decode("ascii") for field in member.to_wire()) + "\n")
    body = "".join(lines).encode("ascii")
    return body + b"checksum %08x\n" % zlib.crc32(body)


def decode(data: bytes, path: str) -> SavedMembership:
    """Parse the file's bytes; :class:`MembershipFileError` naming ``path`` if malformed."""

    def fail(reason: str, line: int | None = None) -> MembershipFileError:
        where = path if line is None else f"{path}, line {line}"
        return MembershipFileError(f"cluster membership file {where}: {reason}; {_REMEDY}")

    body, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    if not sep or not last.startswith(b"checksum "):
        raise fail("no checksum line at the end (the file is truncated or not a membership file)")
    body += b"\n"
    if last != b"checksum %08x" % zlib.crc32(body):
        raise fail("the checksum does not match the contents (the file was damaged or edited)")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise fail("not ASCII text") from None

    fields: dict[str, tuple[int, list[str]]] = {}
    members: list[Member] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        keyword, args = words[0], words[1:]
        if not fields and keyword != FORMAT:
            raise fail(f"expected '{FORMAT} {VERSION}' first, found {keyword!r}", number)
        if keyword == "member":
            if len(args) != WIRE_FIELDS:
                raise fail(f"a member line has {WIRE_FIELDS} fields, not {len(args)}", number)
            try:
                members.append(Member.from_wire([arg.encode("ascii") for arg in args]))
            except ValueError as exc:
                raise fail(f"bad member record: {exc}", number) from None
        elif keyword in (FORMAT, "myself", "vnodes"):
            if keyword in fields:
                raise fail(f"{keyword!r} appears twice", number)
            if len(args) != 1:
                raise fail(f"{keyword!r} takes one value", number)
            fields[keyword] = (number, args)
        else:
            raise fail(f"unknown line {keyword!r}", number)

    if FORMAT not in fields:
        raise fail("empty membership file")
    number, (version,) = fields[FORMAT]
    if version != str(VERSION):
        raise fail(f"format version {version!r}, this respkv reads version {VERSION}", number)
    for keyword in ("myself", "vnodes"):
        if keyword not in fields:
            raise fail(f"no {keyword!r} line")
    number, (myself,) = fields["myself"]
    if not is_node_id(myself):
        raise fail(f"{myself!r} is not a node id", number)
    number, (vnodes_text,) = fields["vnodes"]
    if not vnodes_text.isdigit() or not 0 < int(vnodes_text) <= 16384:
        raise fail(f"bad vnodes {vnodes_text!r}", number)
    if len({member.node_id for member in members}) != len(members):
        raise fail("a node id appears in two member lines")
    membership = Membership(members)
    if myself not in membership:
        raise fail(f"no member line for this node ({myself})")
    return SavedMembership(myself, int(vnodes_text), membership)


# -- reading and writing ---------------------------------------------------------------


def load(path: str) -> SavedMembership | None:
    """The membership saved in ``path``; None if there is no such file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MembershipFileError(
            f"cannot read the cluster membership file {path}: {exc.strerror or exc}") from None
    return decode(data, path)


def save(path: str, saved: SavedMembership) -> None:
    """Write ``saved`` to ``path`` atomically; :class:`MembershipFileError` on failure."""
    try:
        write_file_atomically(path, encode(saved), 0o644)
    except OSError as exc:
        raise MembershipFileError(
            f"cannot write the cluster membership file {path}: {exc.strerror or exc}") from None


def restore(path: str, node_id: str, vnodes: int) -> Membership | None:
    """The membership this node starts with, from ``path``; None when there is none.

    The start-up decision: no file means a node that never belonged to a
    cluster (it starts alone or joins its ``--join`` seeds).  A file is used only
    if it is this node's (``myself`` is ``node_id``) and, when it lists other
    members, its ``vnodes`` equals the configured ``cluster-vnodes`` (members
    with different values would compute different rings).  Anything else is a
    :class:`MembershipFileError` naming the file.
    """
    saved = load(path)
    if saved is None:
        return None
    if saved.myself != node_id:
        raise MembershipFileError(
            f"cluster membership file {path} belongs to node {saved.myself}, but this node's id "
            f"is {node_id}: it was copied from another node's directory; {_REMEDY}")
    if saved.others() and saved.vnodes != vnodes:
        raise MembershipFileError(
            f"cluster membership file {path}: this node's cluster uses cluster-vnodes {saved.vnodes}, "
            f"but it is configured with {vnodes}; start it with cluster-vnodes {saved.vnodes}")
    return saved.membership


class MembershipRecorder:
    """Keeps the membership file in step with a node's :class:`ClusterState`.

    :meth:`attach` writes the current membership at once (a failure there is a
    :class:`MembershipFileError`: a node that cannot record its membership must
    not start) and then every new one, from the state's ``on_change`` hook.  A
    write that fails later is logged and retried by :meth:`run` every
    :data:`RETRY_INTERVAL` seconds until one succeeds.
    """

    def __init__(self, path: str, state: ClusterState) -> None:
        self.path = path
        self.state = state
        self.saved: Membership | None = None
        self.failures = 0
        self._failed = trio.Event()

    def attach(self) -> None:
        """Write the membership now and after every change (see the class doc)."""
        self._write(self.state.membership)
        self.state.on_change.append(self._on_change)

    def _on_change(self, topology: Topology) -> None:
        membership = topology.membership
        if membership is self.saved or membership == self.saved:
            return
        try:
            self._write(membership)
        except MembershipFileError as exc:
            self.failures += 1
            if self.failures == 1:
                log.error("%s (retrying every %.0fs)", exc, RETRY_INTERVAL)
            self._failed.set()

    def _write(self, membership: Membership) -> None:
        save(self.path, SavedMembership(self.state.myself, self.state.vnodes, membership))
        self.saved = membership
        if self.failures:
            log.warning("cluster membership file %s written again", self.path)
            self.failures = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Retry failed writes until cancelled."""
        task_status.started()
        while True:
            await self._failed.wait()
            self._failed = trio.Event()
            await trio.sleep(RETRY_INTERVAL)
            self._on_change(self.state.topology)


async def rejoin(gossip: Gossip, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Reconnect a restarted node to the cluster it knew.

    The node started with the membership it saved, whose other members are its
    seeds: each is met at its current recorded address, and only if that member
    still answers there, retrying with backoff (as ``--join`` does) until one
    meeting succeeds or any member has been heard from meanwhile.  The bus also
    redials members by itself, but only from the side with the smaller id, so
    meeting brings back the other half as quickly.  Gossip does the rest: the
    meeting merges both memberships and pings then reach every member.
    """
    task_status.started()
    delay = JOIN_RETRY_MIN
    attempt = 0
    while not gossip.in_contact:
        attempt += 1
        for member in gossip.state.membership.active():
            if gossip.in_contact:
                return
            if member.node_id == gossip.myself:
                continue
            try:
                await gossip.meet(member.host, member.port, member.bus_port, expect=member.node_id)
            except MeetError as exc:
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG, "rejoin: %s", exc)
                continue
            log.info("rejoined the cluster through %s:%d (%s)", member.host, member.port, member.node_id)
            return
        await trio.sleep(delay)
        delay = min(JOIN_RETRY_MAX, delay * 2)
