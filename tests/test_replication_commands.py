"""SIBLINGS, RESOLVE, CONSISTENCY and BUSFAULT on real nodes, through redis-py.

Two nodes: a standalone one (no replication: one version per key, RESOLVE is a
plain SET/DEL) and a one-member cluster with ``replication-factor 3`` (N is capped
at 1, but every key is versioned) and ``enable-debug-command yes`` for BUSFAULT,
which the standalone node (the default, ``no``) refuses.  On the cluster node, concurrent versions are
made by handing the node a record "from another node" through its ``REPL`` bus
operation, run in the node's own thread, exactly as the bus would deliver it.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import hiredis
import pytest
import redis
import trio

from respkv.commands.table import CommandError
from respkv.keyspace.codec import encode_value
from respkv.replication import vclock
from respkv.replication.commands import busfault, debug_command_refusal
from respkv.replication.coordinator import REPL
from respkv.replication.store import RECONCILE
from respkv.replication.versions import Version, encode_record

from .conftest import NodeThread

OTHER = "f" * 40  # a node id "elsewhere" that wrote concurrently


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory):
    server = NodeThread(
        tmp_path_factory.mktemp("rnode"), **{"cluster-enabled": True, "enable-debug-command": "yes"}
    ).start()
    yield server
    server.stop()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def rc(request, cluster_node):
    client = cluster_node.client(protocol=request.param)
    client.flushall()
    yield client
    client.close()


def as_dict(sibling) -> dict:
    """A sibling as a dict in both protocols (RESP2 gives a flat list)."""
    if isinstance(sibling, dict):
        return sibling
    return dict(zip(sibling[::2], sibling[1::2]))


def deliver(server: NodeThread, key: bytes, value: bytes, stamp: int, clock=None) -> None:
    """Hand the node a version written by OTHER, as its bus would."""
    clock = clock or ((vclock.actor_of(OTHER), 1, stamp),)
    record = (Version(vclock.encode(clock), stamp, vclock.actor_of(OTHER), False, 0, encode_value(value)),)
    coordinator = server.node.replication
    trio.from_thread.run_sync(
        coordinator.handle, OTHER, REPL, [key, RECONCILE, encode_record(record)], trio_token=server._token
    )


# -- standalone ----------------------------------------------------------------------------


def test_standalone_siblings_is_the_one_value(r):
    assert r.execute_command("SIBLINGS", "k") == [b"", []]
    r.set("k", "v", px=100000)
    context, siblings = r.execute_command("SIBLINGS", "k")
    assert context == b""
    (one,) = [as_dict(s) for s in siblings]
    assert one[b"value"] == b"v" and one[b"type"] == b"string" and one[b"winner"] == 1
    assert one[b"tombstone"] == 0 and one[b"clock"] == [] and one[b"expireat"] > 0


def test_standalone_resolve_is_set_or_del(r):
    assert r.execute_command("RESOLVE", "k", "", "v") in (b"OK", True)
    assert r.get("k") == b"v"
    assert r.execute_command("RESOLVE", "k", "") in (b"OK", True)
    assert r.exists("k") == 0


@pytest.mark.parametrize(
    "args, error",
    [
        (("RESOLVE", "k", "zz", "v"), "invalid causal context"),
        (("RESOLVE", "k", "abc", "v"), "invalid causal context"),  # odd hex
        (("RESOLVE", "k", "00" * 35, "v"), "invalid causal context"),  # not 36-byte entries
        (("RESOLVE", "k", "", "v", "extra"), "syntax error"),
        (("RESOLVE", "k"), "wrong number of arguments for 'resolve' command"),
        (("SIBLINGS",), "wrong number of arguments for 'siblings' command"),
        (("SIBLINGS", "a", "b"), "wrong number of arguments for 'siblings' command"),
        (("CONSISTENCY", "R"), "syntax error"),
        (("CONSISTENCY", "Q", "1"), "syntax error"),
        (("CONSISTENCY", "R", "0"), "R and W must be integers between 1 and 16"),
        (("CONSISTENCY", "W", "17"), "R and W must be integers between 1 and 16"),
        (("CONSISTENCY", "W", "x"), "R and W must be integers between 1 and 16"),
        (("BUSFAULT", "CUT", "x"), "BUSFAULT command not allowed"),  # enable-debug-command no
    ],
)
def test_errors(r, args, error):
    with pytest.raises(redis.ResponseError, match=error):
        r.execute_command(*args)


def test_consistency_per_connection(r, node):
    def shown(client):
        reply = client.execute_command("CONSISTENCY")
        if isinstance(reply, list):
            reply = dict(zip(reply[::2], reply[1::2]))
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in reply.items()}

    assert shown(r) == {"n": 3, "r": 2, "w": 2, "sloppy": 1}
    assert r.execute_command("CONSISTENCY", "R", "1", "W", "3") in (b"OK", True)
    assert shown(r) == {"n": 3, "r": 1, "w": 3, "sloppy": 1}
    other = node.client()
    assert shown(other) == {"n": 3, "r": 2, "w": 2, "sloppy": 1}  # only this connection changed
    assert r.execute_command("CONSISTENCY", "W", "2") in (b"OK", True)
    assert shown(r) == {"n": 3, "r": 1, "w": 2, "sloppy": 1}
    assert r.execute_command("CONSISTENCY", "SLOPPY", "no") in (b"OK", True)
    assert shown(r) == {"n": 3, "r": 1, "w": 2, "sloppy": 0}
    assert r.execute_command("CONSISTENCY", "R", "2") in (b"OK", True)  # keeps SLOPPY
    assert shown(r) == {"n": 3, "r": 2, "w": 2, "sloppy": 0}
    with pytest.raises(redis.ResponseError, match="SLOPPY must be yes or no"):
        r.execute_command("CONSISTENCY", "SLOPPY", "maybe")
    assert r.execute_command("CONSISTENCY", "DEFAULT") in (b"OK", True)
    assert shown(r) == {"n": 3, "r": 2, "w": 2, "sloppy": 1}
    assert r.config_set("sloppy-quorum", "no")
    assert shown(r)["sloppy"] == 0 and r.config_get("sloppy-quorum") == {"sloppy-quorum": "no"}
    assert r.config_set("sloppy-quorum", "yes")


def raw_command(port: int, *args: bytes):
    """One request over a plain socket, its reply parsed by hiredis (no client callbacks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args))
        reader = hiredis.Reader()
        while (parsed := reader.gets()) is False:
            reader.feed(sock.recv(65536))
        return parsed


def test_custom_commands_are_in_command_with_their_keys(r, node):
    for name, arity, first in (("siblings", 2, 1), ("resolve", -3, 1), ("consistency", -1, 0), ("busfault", -2, 0)):
        (entry,) = raw_command(node.port, b"COMMAND", b"INFO", name.encode())
        assert entry[0] == name.encode()
        assert (entry[1], entry[3], entry[4]) == (arity, first, first)  # arity, first and last key
    assert raw_command(node.port, b"COMMAND", b"GETKEYS", b"SIBLINGS", b"user:1") == [b"user:1"]
    assert raw_command(node.port, b"COMMAND", b"GETKEYS", b"RESOLVE", b"user:2", b"00", b"v") == [b"user:2"]


# -- versioned (one-member cluster) -----------------------------------------------------------


def test_writes_get_clocks_and_deletes_tombstones(rc, cluster_node):
    rc.set("k", "one")
    context, (first,) = rc.execute_command("SIBLINGS", "k")
    first = as_dict(first)
    # The actor: this node's id (first 16 bytes) and its incarnation.
    actor = cluster_node.node.replication.store.actor
    assert actor.hex()[:32] == cluster_node.node.cluster.myself[:32]
    my_id = actor.hex().encode()
    assert [c[:2] for c in first[b"clock"]] == [[my_id, 1]]
    assert vclock.decode(bytes.fromhex(context.decode())) == ((actor, 1, first[b"timestamp"]),)
    rc.set("k", "two")
    _, (second,) = rc.execute_command("SIBLINGS", "k")
    assert [c[:2] for c in as_dict(second)[b"clock"]] == [[my_id, 2]]
    rc.delete("k")
    _, (tomb,) = rc.execute_command("SIBLINGS", "k")
    tomb = as_dict(tomb)
    assert tomb[b"tombstone"] == 1 and tomb[b"value"] is None and tomb[b"type"] == b"none"
    assert rc.get("k") is None


def test_concurrent_versions_are_siblings_and_resolve_supersedes_what_it_saw(rc, cluster_node):
    rc.set("k", "mine")
    _, (mine,) = rc.execute_command("SIBLINGS", "k")
    deliver(cluster_node, b"k", b"theirs", as_dict(mine)[b"timestamp"] + 1000)
    context, siblings = rc.execute_command("SIBLINGS", "k")
    siblings = [as_dict(s) for s in siblings]
    assert sorted(s[b"value"] for s in siblings) == [b"mine", b"theirs"]
    (winner,) = [s for s in siblings if s[b"winner"] == 1]
    assert winner[b"value"] == b"theirs"  # the newer timestamp
    assert rc.get("k") == b"theirs"

    # A third version arrives after the client read the context: it must survive.
    later = winner[b"timestamp"] + 1000
    deliver(cluster_node, b"k", b"later", later, clock=((vclock.actor_of(OTHER), 2, later),))
    # OTHER:2 descends OTHER:1, so "theirs" is replaced; "mine" stays concurrent.
    _, now = rc.execute_command("SIBLINGS", "k")
    assert sorted(as_dict(s)[b"value"] for s in now) == [b"later", b"mine"]

    assert rc.execute_command("RESOLVE", "k", context, "merged") in (b"OK", True)
    _, after = rc.execute_command("SIBLINGS", "k")
    assert sorted(as_dict(s)[b"value"] for s in after) == [b"later", b"merged"]

    # Resolving with the full context leaves exactly one version.
    context, _ = rc.execute_command("SIBLINGS", "k")
    assert rc.execute_command("RESOLVE", "k", context, "final") in (b"OK", True)
    _, (only,) = rc.execute_command("SIBLINGS", "k")
    assert as_dict(only)[b"value"] == b"final" and rc.get("k") == b"final"


def test_plain_write_supersedes_all_siblings_held(rc, cluster_node):
    rc.set("k", "mine")
    deliver(cluster_node, b"k", b"theirs", 1)
    assert len(rc.execute_command("SIBLINGS", "k")[1]) == 2
    rc.set("k", "plain")
    _, (only,) = rc.execute_command("SIBLINGS", "k")
    assert as_dict(only)[b"value"] == b"plain"


def test_resolve_without_value_deletes_with_a_tombstone(rc, cluster_node):
    rc.set("k", "mine")
    deliver(cluster_node, b"k", b"theirs", 1)
    context, _ = rc.execute_command("SIBLINGS", "k")
    assert rc.execute_command("RESOLVE", "k", context) in (b"OK", True)
    _, (only,) = rc.execute_command("SIBLINGS", "k")
    assert as_dict(only)[b"tombstone"] == 1
    assert rc.exists("k") == 0


def test_siblings_of_other_types_render_as_their_read_commands(rc, cluster_node):
    rc.hset("h", mapping={"f": "v"})
    rc.rpush("l", "a", "b")
    rc.sadd("s", "x")
    rc.zadd("z", {"m": 1.5})
    rc.set("e", "v", px=100000)
    values = {key: as_dict(rc.execute_command("SIBLINGS", key)[1][0]) for key in ("h", "l", "s", "z", "e")}
    assert values["h"][b"type"] == b"hash" and values["h"][b"value"] in ({b"f": b"v"}, [b"f", b"v"])
    assert values["l"][b"value"] == [b"a", b"b"]
    assert values["s"][b"value"] in ({b"x"}, [b"x"])
    assert values["z"][b"value"] in ([[b"m", 1.5]], [[b"m", b"1.5"]])
    assert values["e"][b"expireat"] > 0


def test_info_replication_shows_settings_and_counters(rc):
    rc.set("k", "v")
    info = rc.info("replication")
    assert info["replication_enabled"] == 1
    assert (info["replication_factor"], info["read_quorum"], info["write_quorum"]) == (3, 2, 2)
    assert (info["effective_n"], info["effective_r"], info["effective_w"]) == (1, 1, 1)  # one member
    assert info["versioned_keys"] >= 1 and info["replicated_writes"] >= 1


def test_config_set_quorums_at_run_time(rc):
    try:
        assert rc.config_set("write-quorum", 1)
        assert rc.config_get("write-quorum") == {"write-quorum": "1"} or rc.config_get("write-quorum") == {
            b"write-quorum": b"1"
        }
        with pytest.raises(redis.ResponseError):
            rc.config_set("replication-factor", 2)  # fixed at start-up
    finally:
        rc.config_set("write-quorum", 2)


def test_busfault_cut_heal_list(rc):
    peer = "e" * 40
    assert rc.execute_command("BUSFAULT", "LIST") == []
    assert rc.execute_command("BUSFAULT", "CUT", peer) in (b"OK", True)
    assert rc.execute_command("BUSFAULT", "LIST") in ([peer.encode()], [peer])
    assert rc.execute_command("BUSFAULT", "HEAL") in (b"OK", True)
    assert rc.execute_command("BUSFAULT", "LIST") == []
    with pytest.raises(redis.ResponseError, match="syntax error"):
        rc.execute_command("BUSFAULT", "CUT")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        rc.execute_command("BUSFAULT", "NOPE")


# -- BUSFAULT behind enable-debug-command ------------------------------------------------------

#: Redis 7.0's refusal of DEBUG, with BUSFAULT in its place.
BUSFAULT_REFUSED = (
    'ERR BUSFAULT command not allowed. If the enable-debug-command option is set to "local", you can '
    "run it from a local connection, otherwise you need to set this option in the configuration file, "
    "and then restart the server."
)


def raw_pipeline(port: int, *commands: tuple[bytes, ...]) -> list:
    """Send ``commands`` in one write and return their replies (hiredis-parsed)."""
    payload = b"".join(
        b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in c) for c in commands
    )
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        reader = hiredis.Reader()
        while len(replies) < len(commands):
            parsed = reader.gets()
            if parsed is False:
                reader.feed(sock.recv(65536))
            else:
                replies.append(parsed)
    return replies


def errors_of(replies: list) -> list[str | None]:
    return [str(r) if isinstance(r, hiredis.ReplyError) else None for r in replies]


def test_busfault_is_refused_by_default_with_redis_text(node):
    """enable-debug-command no (the default): refused with Redis's text for DEBUG,
    at queueing time inside MULTI (the transaction aborts), as Redis."""
    (refused,) = errors_of(raw_pipeline(node.port, (b"BUSFAULT", b"LIST")))
    assert refused == BUSFAULT_REFUSED
    replies = errors_of(raw_pipeline(node.port, (b"MULTI",), (b"BUSFAULT", b"LIST"), (b"EXEC",)))
    assert replies == [None, BUSFAULT_REFUSED, "EXECABORT Transaction discarded because of previous errors."]


def test_busfault_refusal_comes_before_authentication(tmp_path):
    server = NodeThread(tmp_path, requirepass="s3cret").start()
    try:
        assert errors_of(raw_pipeline(server.port, (b"BUSFAULT", b"LIST"))) == [BUSFAULT_REFUSED]
    finally:
        server.stop()


def test_busfault_local_allows_loopback_clients(tmp_path):
    server = NodeThread(
        tmp_path, requirepass="s3cret", **{"cluster-enabled": True, "enable-debug-command": "local"}
    ).start()
    try:
        # Allowed for a loopback client, so the next check speaks: authentication.
        assert errors_of(raw_pipeline(server.port, (b"BUSFAULT", b"LIST"))) == ["NOAUTH Authentication required."]
        assert raw_pipeline(server.port, (b"AUTH", b"s3cret"), (b"BUSFAULT", b"LIST"))[1] == []
        client = server.client(password="s3cret")
        assert client.execute_command("BUSFAULT", "CUT", "e" * 40) in (b"OK", True)
        assert client.execute_command("BUSFAULT", "HEAL") in (b"OK", True)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "setting, local, refused",
    [
        ("no", True, True),
        ("no", False, True),
        ("local", True, False),
        ("local", False, True),
        ("yes", True, False),
        ("yes", False, False),
    ],
)
def test_debug_command_refusal_table(setting, local, refused):
    session = SimpleNamespace(node=SimpleNamespace(config={"enable-debug-command": setting}), local=local)
    assert (debug_command_refusal(session) is not None) == refused
    if refused:
        assert debug_command_refusal(session) == BUSFAULT_REFUSED
        with pytest.raises(CommandError, match="BUSFAULT command not allowed"):
            busfault(session, [b"BUSFAULT", b"LIST"])  # the fast path's own check


def test_records_of_expired_keys_are_forgotten_after_the_grace(rc):
    rc.config_set("tombstone-grace", 0)
    try:
        rc.set("short", "v", px=50)
        assert rc.info("replication")["versioned_keys"] == 1
        deadline = time.monotonic() + 10
        while rc.info("replication")["versioned_keys"] and time.monotonic() < deadline:
            rc.exists("short")  # expires it lazily once due
            time.sleep(0.05)
        assert rc.info("replication")["versioned_keys"] == 0
        assert rc.execute_command("SIBLINGS", "short") == [b"", []]
    finally:
        rc.config_set("tombstone-grace", 60000)


def test_siblings_is_a_read_of_the_key_as_get_is(rc, cluster_node):
    """SIBLINGS counts as one access of the key (LFU counter, LRU stamp), as a
    GET does; making its record (shared with snapshots and shipping) does not."""
    rc.config_set("maxmemory-policy", "allkeys-lfu")
    rc.config_set("lfu-log-factor", 0)  # every access counts one
    rc.config_set("lfu-decay-time", 0)  # and no minute ending between them takes one off
    try:
        rc.set("k", "v")
        before = rc.object("freq", "k")
        rc.execute_command("SIBLINGS", "k")
        assert rc.object("freq", "k") == before + 1
        rc.get("k")
        assert rc.object("freq", "k") == before + 2
    finally:
        rc.config_set("maxmemory-policy", "noeviction")
        rc.config_set("lfu-log-factor", 10)
        rc.config_set("lfu-decay-time", 1)
