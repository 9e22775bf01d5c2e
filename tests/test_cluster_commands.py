"""Cluster commands and request routing on real nodes, through redis-py and raw sockets.

The cluster views are built by hand (no gossip): a :class:`ClusterState` holding
fixed members is installed as ``node.cluster`` inside the node's own thread.  One
real node with a three-member view checks the replies a node gives (``MOVED``
texts, ``CROSSSLOT``, ``ASKING``/``READONLY``, the ``CLUSTER`` subcommands against
the topology's renderings); two real nodes that know each other check what stock
clients do with them: ``RedisCluster`` and ``redis-cli -c`` following ``MOVED``,
and, with proxy routing, plain clients reading and writing keys the other node
coordinates.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis
import trio

from respkv.cluster.commands import shard_id
from respkv.cluster.failure import NodeState
from respkv.cluster.membership import Member, Membership
from respkv.cluster.proxy import ReplyFramer, encode_request
from respkv.cluster.state import ClusterState
from respkv.keyspace.slots import key_slot
from respkv.protocol.reply import RESP2, RESP3
from tools.procs import free_port

from .conftest import NodeThread
from .test_routing import SLOT_VECTORS

N1, N2, N3 = "1" * 40, "2" * 40, "3" * 40
REDIS_CLI = shutil.which("redis-cli")


def in_node(server: NodeThread, fn):
    """Run ``fn()`` in the node's trio thread (cluster state is the node's to change)."""
    return trio.from_thread.run_sync(fn, trio_token=server._token)


def install(server: NodeThread, state: ClusterState | None) -> None:
    def apply():
        server.node.cluster = state
        server.node.mode = "standalone" if state is None else "cluster"

    in_node(server, apply)


def cluster_state(members: list[Member], myself: int, rf: int = 1, routing: str = "redirect") -> ClusterState:
    state = ClusterState(members[myself], rf=rf, routing=routing)
    state.merge(Membership(members))
    return state


def key_where(predicate, prefix: str = "k") -> bytes:
    """The first key ``<prefix><n>`` whose slot satisfies ``predicate(slot)``."""
    for n in range(100_000):
        key = f"{prefix}{n}".encode()
        if predicate(key_slot(key)):
            return key
    raise AssertionError("no such key")


class Raw:
    """A bare RESP connection: exact reply bytes, no client library in between."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.framer = ReplyFramer()

    def send(self, *requests: list) -> None:
        self.sock.sendall(b"".join(encode_request([_b(a) for a in args]) for args in requests))

    def reply(self) -> bytes:
        while (reply := self.framer.next_reply()) is None:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.framer.feed(data)
        return reply

    def call(self, *args) -> bytes:
        self.send(list(args))
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


# -- one node, a three-member view ---------------------------------------------------


@pytest.fixture(scope="module")
def cnode(tmp_path_factory):
    """A real node (N1) whose view holds two more members that are not running; RF 2."""
    server = NodeThread(tmp_path_factory.mktemp("cnode")).start()
    members = [
        Member(N1, "127.0.0.1", server.port, free_port()),
        Member(N2, "127.0.0.1", free_port(), free_port()),
        Member(N3, "127.0.0.1", free_port(), free_port()),
    ]
    state = cluster_state(members, 0, rf=2)
    install(server, state)
    server.state = state
    yield server
    server.stop()


@pytest.fixture
def raw(cnode):
    conn = Raw(cnode.port)
    conn.call("FLUSHALL")
    yield conn
    conn.close()


def local_key(state, prefix="k"):
    return key_where(lambda slot: state.topology.coordinator(slot) == N1, prefix)


def replica_key(state, prefix="k"):
    """A key of a slot N2 coordinates and N1 holds a replica of."""
    return key_where(lambda slot: state.topology.nodes_for(slot) == (N2, N1), prefix)


def foreign_key(state, prefix="k"):
    """A key of a slot N1 holds nothing of."""
    return key_where(lambda slot: N1 not in state.topology.nodes_for(slot), prefix)


def moved_text(state, key: bytes) -> bytes:
    slot = key_slot(key)
    host, port = state.address_of(state.topology.coordinator(slot))
    return b"-MOVED %d %s:%d\r\n" % (slot, host.encode(), port)


def test_keys_of_this_node_are_served(cnode, raw):
    key = local_key(cnode.state)
    assert raw.call("SET", key, "v") == b"+OK\r\n"
    assert raw.call("GET", key) == b"$1\r\nv\r\n"
    assert raw.call("INCR", b"{%s}n" % key) == b":1\r\n"
    assert raw.call("HSET", b"{%s}h" % key, "f", "v") == b":1\r\n"


@pytest.mark.parametrize("request_words", [["GET"], ["SET", "x", "v"], ["HGET", "f"], ["STRLEN"], ["EXPIRE", "10"]])
def test_keys_of_other_nodes_are_moved(cnode, raw, request_words):
    key = foreign_key(cnode.state)
    reply = raw.call(request_words[0], key, *request_words[1:])
    assert reply == moved_text(cnode.state, key)
    assert re.fullmatch(rb"-MOVED \d+ 127\.0\.0\.1:\d+\r\n", reply)  # exactly two tokens after the code


def test_pipelined_requests_are_routed_one_by_one(cnode, raw):
    mine, other = local_key(cnode.state), foreign_key(cnode.state)
    raw.send(["SET", mine, "1"], ["GET", mine], ["GET", other], ["GET", mine], ["SET", other, "2"], ["GET", mine])
    replies = [raw.reply() for _ in range(6)]
    moved = moved_text(cnode.state, other)
    assert replies == [b"+OK\r\n", b"$1\r\n1\r\n", moved, b"$1\r\n1\r\n", moved, b"$1\r\n1\r\n"]


def test_redis_py_raises_moved(cnode):
    client = cnode.client(protocol=3)
    key = foreign_key(cnode.state)
    with pytest.raises(redis.exceptions.MovedError) as info:
        client.get(key)
    assert str(info.value) == moved_text(cnode.state, key)[len("-MOVED ") : -2].decode()


def test_cross_slot_requests(cnode, raw):
    a = local_key(cnode.state, "a")
    b = key_where(lambda slot: slot != key_slot(a) and cnode.state.topology.coordinator(slot) == N1, "b")
    crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    assert raw.call("MSET", a, "1", b, "2") == crossslot
    assert raw.call("MGET", a, b) == crossslot
    assert raw.call("DEL", a, b) == crossslot
    assert raw.call("ZUNIONSTORE", a, "2", a, b) == crossslot
    assert raw.call("LMPOP", "2", a, b, "LEFT") == crossslot
    foreign = foreign_key(cnode.state)
    assert raw.call("MGET", foreign, a) == crossslot  # CROSSSLOT before MOVED


def test_multi_key_requests_in_one_slot(cnode, raw):
    tag = local_key(cnode.state, "tag")
    k1, k2 = b"{%s}.1" % tag, b"{%s}.2" % tag
    assert raw.call("MSET", k1, "a", k2, "b") == b"+OK\r\n"
    assert raw.call("MGET", k1, k2) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert raw.call("DEL", k1, k2) == b":2\r\n"
    other = foreign_key(cnode.state, "tag")
    assert raw.call("MGET", b"{%s}.1" % other, b"{%s}.2" % other) == moved_text(cnode.state, other)


@pytest.mark.parametrize(
    "request_words, start",
    [
        (["PING"], b"+PONG"),
        (["DBSIZE"], b":"),
        (["KEYS", "*"], b"*"),
        (["SCAN", "0"], b"*2"),
        (["INFO", "server"], b"$"),
        (["ECHO", "x"], b"$1"),
        (["RANDOMKEY"], b"$"),
        (["FLUSHALL"], b"+OK"),
        (["COMMAND", "GETKEYS", "GET", "somekey"], b"*1"),
    ],
)
def test_keyless_commands_run_locally(cnode, raw, request_words, start):
    assert raw.call(*request_words).startswith(start)


def test_moved_inside_multi_dooms_the_transaction(cnode, raw):
    mine, other = local_key(cnode.state), foreign_key(cnode.state)
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", mine, "1") == b"+QUEUED\r\n"
    assert raw.call("SET", other, "1") == moved_text(cnode.state, other)
    assert raw.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert raw.call("GET", mine) == b"$-1\r\n"


def test_exec_checks_all_queued_keys_together(cnode, raw):
    a = local_key(cnode.state, "a")
    b = key_where(lambda slot: slot != key_slot(a) and cnode.state.topology.coordinator(slot) == N1, "b")
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", a, "1") == b"+QUEUED\r\n"
    assert raw.call("SET", b, "1") == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    # The transaction is gone and nothing ran.
    assert raw.call("GET", a) == b"$-1\r\n"
    assert raw.call("EXEC") == b"-ERR EXEC without MULTI\r\n"


def test_transaction_on_one_local_slot(cnode, raw):
    tag = local_key(cnode.state, "t")
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", b"{%s}a" % tag, "1") == b"+QUEUED\r\n"
    assert raw.call("INCR", b"{%s}a" % tag) == b"+QUEUED\r\n"
    assert raw.call("PING") == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*3\r\n+OK\r\n:2\r\n+PONG\r\n"


def test_asking_serves_one_request_on_a_replica(cnode, raw):
    key = replica_key(cnode.state)
    moved = moved_text(cnode.state, key)
    assert raw.call("GET", key) == moved
    assert raw.call("ASKING") == b"+OK\r\n"
    assert raw.call("SET", key, "v") == b"+OK\r\n"  # served: N1 is in the slot's list
    assert raw.call("GET", key) == moved  # one-shot
    raw.send(["ASKING"], ["GET", key], ["GET", key])  # the same, pipelined
    assert [raw.reply() for _ in range(3)] == [b"+OK\r\n", b"$1\r\nv\r\n", moved]


def test_asking_does_not_serve_slots_this_node_holds_nothing_of(cnode, raw):
    key = foreign_key(cnode.state)
    assert raw.call("ASKING") == b"+OK\r\n"
    assert raw.call("GET", key) == moved_text(cnode.state, key)


def test_asking_holds_through_a_transaction(cnode, raw):
    key = replica_key(cnode.state)
    assert raw.call("ASKING") == b"+OK\r\n"
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", key, "1") == b"+QUEUED\r\n"
    assert raw.call("GET", key) == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*2\r\n+OK\r\n$1\r\n1\r\n"
    assert raw.call("GET", key) == moved_text(cnode.state, key)


def test_a_refused_request_spends_asking(cnode, raw):
    key = replica_key(cnode.state)
    assert raw.call("ASKING") == b"+OK\r\n"
    assert raw.call("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert raw.call("GET", key) == moved_text(cnode.state, key)


def test_readonly_connections_read_replica_slots(cnode, raw):
    key = replica_key(cnode.state)
    moved = moved_text(cnode.state, key)
    assert raw.call("GET", key) == moved
    assert raw.call("READONLY") == b"+OK\r\n"
    assert raw.call("GET", key) == b"$-1\r\n"
    assert raw.call("EXISTS", key) == b":0\r\n"
    assert raw.call("SET", key, "v") == moved  # writes still go to the coordinator
    foreign = foreign_key(cnode.state)
    assert raw.call("GET", foreign) == moved_text(cnode.state, foreign)
    # A read-only transaction may run here too; one that writes may not.
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("GET", key) == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*1\r\n$-1\r\n"
    assert raw.call("READWRITE") == b"+OK\r\n"
    assert raw.call("GET", key) == moved


def test_reset_ends_readonly(cnode, raw):
    key = replica_key(cnode.state)
    assert raw.call("READONLY") == b"+OK\r\n"
    assert raw.call("RESET") == b"+RESET\r\n"
    assert raw.call("GET", key) == moved_text(cnode.state, key)


def test_cluster_down(cnode, raw):
    state = cnode.state
    mine = local_key(state)
    unserved = key_where(lambda slot: state.topology.nodes_for(slot) == (N2, N3))
    in_node(cnode, lambda: state.set_states({N2: NodeState.FAIL, N3: NodeState.FAIL}))
    try:
        assert raw.call("GET", unserved) == b"-CLUSTERDOWN Hash slot not served\r\n"
        assert raw.call("GET", mine) == b"-CLUSTERDOWN The cluster is down\r\n"
        assert raw.call("SET", mine, "v") == b"-CLUSTERDOWN The cluster is down\r\n"
        raw.send(["GET", mine], ["GET", mine])  # the fast path says the same
        assert [raw.reply() for _ in range(2)] == [b"-CLUSTERDOWN The cluster is down\r\n"] * 2
        assert raw.call("PING") == b"+PONG\r\n"
        assert raw.call("CLUSTER", "INFO").split(b"\r\n")[1] == b"cluster_state:fail"
    finally:
        in_node(cnode, lambda: state.set_states({}))
    assert raw.call("GET", mine) == b"$-1\r\n"


def test_suspected_node_keeps_its_slots(cnode, raw):
    state = cnode.state
    key = key_where(lambda slot: state.topology.coordinator(slot) == N2)
    in_node(cnode, lambda: state.set_states({N2: NodeState.PFAIL}))
    try:
        assert raw.call("GET", key) == moved_text(state, key)
    finally:
        in_node(cnode, lambda: state.set_states({}))


# -- CLUSTER subcommands -------------------------------------------------------------


@pytest.mark.parametrize("key, slot", SLOT_VECTORS)
def test_cluster_keyslot(cnode, raw, key, slot):
    assert raw.call("CLUSTER", "KEYSLOT", key) == b":%d\r\n" % slot


def test_cluster_slots_nodes_shards_info_render_the_topology(cnode, raw):
    topology = cnode.state.topology
    assert raw.call("CLUSTER", "SLOTS") == topology.encode_cluster_slots(RESP2)
    assert raw.call("CLUSTER", "SHARDS") == topology.encode_cluster_shards(RESP2)
    assert raw.call("CLUSTER", "NODES") == topology.encode_cluster_nodes(RESP2)
    assert raw.call("CLUSTER", "INFO") == topology.encode_cluster_info(RESP2)
    raw.call("HELLO", "3")
    assert raw.call("CLUSTER", "SLOTS") == topology.encode_cluster_slots(RESP3)
    assert raw.call("cluster", "shards") == topology.encode_cluster_shards(RESP3)
    assert raw.call("CLUSTER", "NODES") == topology.encode_cluster_nodes(RESP3)
    assert raw.call("CLUSTER", "INFO").startswith(b"=")


def test_cluster_topology_through_redis_py(cnode):
    client = cnode.client(protocol=2)
    slots = client.execute_command("CLUSTER SLOTS")
    assert sum(end - start + 1 for start, end, *_ in slots) == 16384
    assert {node[2] for _, _, *nodes in slots for node in nodes} == {N1.encode(), N2.encode(), N3.encode()}
    nodes = client.execute_command("CLUSTER NODES")
    mine = nodes[f"127.0.0.1:{cnode.port}"]
    assert mine["node_id"] == N1 and mine["flags"] == "myself,master" and mine["connected"]
    info = client.execute_command("CLUSTER INFO")
    assert info["cluster_state"] == "ok" and info["cluster_known_nodes"] == "3"
    assert client.info("cluster") == {"cluster_enabled": 1}
    assert client.info("server")["redis_mode"] == "cluster"


def test_cluster_nodes_lines(cnode, raw):
    text = raw.call("CLUSTER", "NODES").split(b"\r\n", 1)[1][:-2].decode()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4  # every line ends in \n
    mine = next(line for line in lines if line.startswith(N1))
    fields = mine.split(" ")
    assert fields[1] == f"127.0.0.1:{cnode.port}@{cnode.state.membership[N1].bus_port}"
    assert fields[2:4] == ["myself,master", "-"]
    assert fields[7] == "connected"
    assert fields[8:] == [
        f"{start}-{end}" if start != end else str(start)
        for start, end in cnode.state.topology.coordinated_ranges(N1)
    ]


def test_cluster_myid_and_myshardid(cnode, raw):
    assert raw.call("CLUSTER", "MYID") == b"$40\r\n" + N1.encode() + b"\r\n"
    shard = raw.call("CLUSTER", "MYSHARDID")
    assert shard == b"$40\r\n" + shard_id(N1).encode() + b"\r\n"
    assert re.fullmatch(rb"\$40\r\n[0-9a-f]{40}\r\n", shard)
    assert shard_id(N1) != N1 and shard_id(N1) != shard_id(N2)


def test_cluster_countkeysinslot_and_getkeysinslot(cnode, raw):
    tag = local_key(cnode.state, "s")
    slot = key_slot(tag)
    keys = sorted(b"{%s}%d" % (tag, i) for i in range(5))
    for key in keys:
        raw.call("SET", key, "v")
    assert raw.call("CLUSTER", "COUNTKEYSINSLOT", slot) == b":5\r\n"
    assert raw.call("CLUSTER", "COUNTKEYSINSLOT", (slot + 1) % 16384) == b":0\r\n"
    client = cnode.client(protocol=3)
    assert sorted(client.execute_command("CLUSTER GETKEYSINSLOT", slot, 10)) == keys
    assert len(client.execute_command("CLUSTER GETKEYSINSLOT", slot, 2)) == 2
    assert raw.call("CLUSTER", "GETKEYSINSLOT", slot, 0) == b"*0\r\n"


@pytest.mark.parametrize(
    "request_words, error",
    [
        (["CLUSTER", "COUNTKEYSINSLOT", "16384"], "ERR Invalid slot"),
        (["CLUSTER", "COUNTKEYSINSLOT", "-1"], "ERR Invalid slot"),
        (["CLUSTER", "COUNTKEYSINSLOT", "abc"], "ERR value is not an integer or out of range"),
        (["CLUSTER", "GETKEYSINSLOT", "1", "-1"], "ERR Invalid slot or number of keys"),
        (["CLUSTER", "GETKEYSINSLOT", "99999", "1"], "ERR Invalid slot or number of keys"),
        (["CLUSTER", "GETKEYSINSLOT", "1", "abc"], "ERR value is not an integer or out of range"),
        (["CLUSTER", "COUNT-FAILURE-REPORTS", "abc"], "ERR Unknown node abc"),
        (["CLUSTER", "MEET", "1.2.3.4", "abc"], "ERR Invalid TCP base port specified: abc"),
        (["CLUSTER", "MEET", "1.2.3.4", "7000", "x"], "ERR Invalid TCP bus port specified: x"),
        (["CLUSTER", "MEET", "abc", "5"], "ERR Invalid node address specified: abc:5"),
        (["CLUSTER", "MEET", "127.0.0.1", "70000"], "ERR Invalid node address specified: 127.0.0.1:70000"),
        (["CLUSTER", "MEET", "127.0.0.1", "1", "2", "3"],
         "ERR unknown subcommand or wrong number of arguments for 'meet'. Try CLUSTER HELP."),
        (["CLUSTER", "MEET", "127.0.0.1", "7000"], "ERR The cluster bus is not running"),
        (["CLUSTER", "KEYSLOT"], "ERR wrong number of arguments for 'cluster|keyslot' command"),
        (["CLUSTER", "INFO", "extra"], "ERR wrong number of arguments for 'cluster|info' command"),
        (["CLUSTER", "LINKS", "extra"], "ERR wrong number of arguments for 'cluster|links' command"),
        (["CLUSTER", "FOO"], "ERR unknown subcommand 'FOO'. Try CLUSTER HELP."),
        (["CLUSTER"], "ERR wrong number of arguments for 'cluster' command"),
        (["READONLY", "x"], "ERR wrong number of arguments for 'readonly' command"),
    ],
)
def test_cluster_argument_errors(cnode, raw, request_words, error):
    assert raw.call(*request_words) == b"-" + error.encode() + b"\r\n"


def test_cluster_count_failure_reports_and_links_without_a_bus(cnode, raw):
    assert raw.call("CLUSTER", "COUNT-FAILURE-REPORTS", N2) == b":0\r\n"
    assert raw.call("CLUSTER", "LINKS") == b"*0\r\n"


def test_cluster_help(cnode):
    lines = cnode.client(protocol=2).execute_command("CLUSTER HELP")
    assert lines[0] == b"CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"HELP", b"    Prints this help."]
    documented = {line.split()[0] for line in lines[1:] if not line.startswith(b" ")}
    table = {sub.upper() for sub in cnode.node.table.specs["cluster"].subcommands}
    assert documented == table


def test_cluster_commands_appear_in_command(cnode):
    client = cnode.client(protocol=2)
    info = client.execute_command("COMMAND INFO", "cluster", "asking", "readonly", "readwrite")
    assert [entry[0] for entry in info] == [b"cluster", b"asking", b"readonly", b"readwrite"]
    subcommands = {entry[0] for entry in info[0][9]}
    assert {b"cluster|slots", b"cluster|nodes", b"cluster|myshardid", b"cluster|meet"} <= subcommands


# -- standalone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_words",
    [
        ["CLUSTER", "INFO"],
        ["CLUSTER", "SLOTS"],
        ["CLUSTER", "NODES"],
        ["CLUSTER", "KEYSLOT", "foo"],
        ["CLUSTER", "HELP"],
        ["CLUSTER", "MYID"],
        ["CLUSTER", "MEET", "127.0.0.1", "7000"],
        ["ASKING"],
        ["READONLY"],
        ["READWRITE"],
    ],
)
def test_standalone_node_has_cluster_support_disabled(node, request_words):
    conn = Raw(node.port)
    try:
        assert conn.call(*request_words) == b"-ERR This instance has cluster support disabled\r\n"
        assert conn.call("CLUSTER", "FOO") == b"-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n"
        assert conn.call("GET", "foo") == b"$-1\r\n"
    finally:
        conn.close()


def test_standalone_info_cluster(r):
    assert r.info("cluster") == {"cluster_enabled": 0}


# -- two nodes, redirect routing --------------------------------------------------------


def two_nodes(tmp_path_factory, routing: str):
    a = NodeThread(tmp_path_factory.mktemp("a")).start()
    b = NodeThread(tmp_path_factory.mktemp("b")).start()
    members = [
        Member(N1, "127.0.0.1", a.port, free_port()),
        Member(N2, "127.0.0.1", b.port, free_port()),
    ]
    a.state = cluster_state(members, 0, routing=routing)
    b.state = cluster_state(members, 1, routing=routing)
    install(a, a.state)
    install(b, b.state)
    return a, b


@pytest.fixture(scope="module")
def redirect_pair(tmp_path_factory):
    a, b = two_nodes(tmp_path_factory, "redirect")
    yield a, b
    a.stop()
    b.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_cluster_client_follows_the_slots(redirect_pair, protocol):
    a, b = redirect_pair
    client = redis.RedisCluster(host="127.0.0.1", port=a.port, protocol=protocol, socket_timeout=10)
    try:
        keys = [f"user:{n}".encode() for n in range(200)]
        for key in keys:
            client.set(key, key[::-1])
        assert all(client.get(key) == key[::-1] for key in keys)
        assert client.mget_nonatomic(keys) == [key[::-1] for key in keys]
        on_a = sum(1 for key in keys if a.state.served[key_slot(key)])
        assert 0 < on_a < len(keys)
        assert a.client(protocol=2).dbsize() == on_a
        assert b.client(protocol=2).dbsize() == len(keys) - on_a
        pipe = client.pipeline()
        for key in keys[:20]:
            pipe.incr(key + b":n")
        assert pipe.execute() == [1] * 20
        assert client.delete(*keys) == len(keys)
    finally:
        client.close()
        for server in (a, b):
            server.client(protocol=2).flushall()


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed")
def test_redis_cli_follows_moved(redirect_pair):
    a, b = redirect_pair
    key = key_where(lambda slot: b.state.served[slot]).decode()

    def cli(*args):
        done = subprocess.run([REDIS_CLI, "-p", str(a.port), *args], capture_output=True, text=True, timeout=20)
        return done.stdout.strip()

    assert cli("-c", "SET", key, "hello") == "OK"
    assert cli("-c", "GET", key) == "hello"
    assert cli("GET", key) == f"MOVED {key_slot(key.encode())} 127.0.0.1:{b.port}"  # without -c
    assert b.client(protocol=2).get(key) == b"hello"
    b.client(protocol=2).delete(key)


# -- two nodes, proxy routing ------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_pair(tmp_path_factory):
    a, b = two_nodes(tmp_path_factory, "proxy")
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def proxied(proxy_pair):
    """Keys of ``a`` and of ``b``; both nodes flushed afterwards."""
    a, b = proxy_pair
    yield a, b, key_where(lambda slot: a.state.served[slot], "pa"), key_where(lambda slot: b.state.served[slot], "pb")
    for server in (a, b):
        server.client(protocol=2).flushall()


@pytest.mark.parametrize("protocol", [2, 3])
def test_plain_client_reads_and_writes_keys_of_the_other_node(proxied, protocol):
    a, b, key_a, key_b = proxied
    client = a.client(protocol=protocol)
    assert client.set(key_b, "remote") is True
    assert client.get(key_b) == b"remote"
    assert client.set(key_a, "local") is True
    assert b.client(protocol=2).get(key_b) == b"remote"  # stored by its coordinator
    assert a.client(protocol=2).dbsize() == 1
    tag = key_b.decode()
    client.rpush(f"{{{tag}}}list", "x", "y", "z")
    assert client.lrange(f"{{{tag}}}list", 0, -1) == [b"x", b"y", b"z"]
    assert client.hgetall(f"{{{tag}}}hash") == {}
    client.hset(f"{{{tag}}}hash", "f", "v")
    assert client.hgetall(f"{{{tag}}}hash") == {b"f": b"v"}  # a RESP3 map when protocol 3
    client.zadd(f"{{{tag}}}z", {"m": 1.5})
    assert client.zscore(f"{{{tag}}}z", "m") == 1.5


def test_errors_of_the_coordinator_are_relayed(proxied):
    a, b, key_a, key_b = proxied
    conn = Raw(a.port)
    try:
        assert conn.call("LPUSH", key_b, "x") == b":1\r\n"
        assert conn.call("GET", key_b) == b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        assert conn.call("INCRBY", key_b + b"x", "nope") == b"-ERR value is not an integer or out of range\r\n"
    finally:
        conn.close()


def test_pipelines_mix_local_and_proxied_requests(proxied):
    a, b, key_a, key_b = proxied
    client = a.client(protocol=3)
    pipe = client.pipeline(transaction=False)
    for n in range(30):
        pipe.set(b"%s:%d" % (key_a if n % 2 else key_b, n), n)
        pipe.get(b"%s:%d" % (key_a if n % 2 else key_b, n))
    replies = pipe.execute()
    assert replies == [x for n in range(30) for x in (True, str(n).encode())]


def test_transaction_on_keys_of_the_other_node(proxied):
    a, b, key_a, key_b = proxied
    tag = key_b.decode()
    client = a.client(protocol=2)
    pipe = client.pipeline(transaction=True)
    pipe.set(f"{{{tag}}}1", "a")
    pipe.incr(f"{{{tag}}}n")
    pipe.get(f"{{{tag}}}1")
    assert pipe.execute() == [True, 1, b"a"]
    assert b.client(protocol=2).get(f"{{{tag}}}n") == b"1"
    conn = Raw(a.port)
    try:
        conn.call("MULTI")
        conn.call("SET", key_b, "1")
        assert conn.call("SET", key_a, "2") == b"+QUEUED\r\n"
        assert conn.call("EXEC") == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        conn.call("MULTI")
        assert conn.call("SET", key_b) == b"-ERR wrong number of arguments for 'set' command\r\n"
        assert conn.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        assert conn.call("WATCH", key_b) == moved_text(a.state, key_b)  # a watch cannot be proxied
    finally:
        conn.close()


def test_blocking_commands_are_proxied(proxied):
    a, b, key_a, key_b = proxied
    client = a.client(protocol=2)
    assert client.blpop([key_b], timeout=0.1) is None
    b.client(protocol=2).rpush(key_b, "v")
    assert client.blpop([key_b], timeout=1) == (key_b, b"v")


def test_large_replies_are_relayed(proxied):
    a, b, key_a, key_b = proxied
    client = a.client(protocol=2)
    value = bytes(range(256)) * 4096  # 1 MiB, with CR and LF inside
    client.set(key_b, value)
    assert client.get(key_b) == value
    tag = key_b.decode()
    client.rpush(f"{{{tag}}}l", *range(5000))
    assert client.lrange(f"{{{tag}}}l", 0, -1) == [str(n).encode() for n in range(5000)]


def test_clients_share_one_connection_per_coordinator(proxied):
    a, b, key_a, key_b = proxied
    a.client(protocol=2).get(key_b)
    pool = a.node.cluster_proxy
    opened = pool.opened
    tag = key_b.decode()
    errors = []

    def work(n):
        try:
            client = redis.Redis(port=a.port, protocol=2, socket_timeout=10)
            with client:
                for i in range(30):
                    key = f"{{{tag}}}:{n}:{i}"
                    client.set(key, f"{n}.{i}")
                    assert client.get(key) == f"{n}.{i}".encode()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert pool.opened == opened  # all of them through the connection already open
    assert b.client(protocol=2).dbsize() == 12 * 30


def test_blocking_commands_get_connections_of_their_own(proxied):
    a, b, key_a, key_b = proxied
    waiting = a.client(protocol=2)
    other = a.client(protocol=2)
    result = []
    thread = threading.Thread(target=lambda: result.append(waiting.blpop([key_b], timeout=5)))
    thread.start()
    time.sleep(0.2)
    assert other.get(key_b + b"x") is None  # not stuck behind the blocked BLPOP
    other.rpush(key_b, "v")
    thread.join(10)
    assert result == [(key_b, b"v")]
    assert a.node.cluster_proxy.idle_count() >= 1


def test_forwarded_requests_are_not_forwarded_again(proxied):
    a, b, key_a, key_b = proxied
    # The proxy marks what it forwards with ASKING; a node given such a request for
    # a slot it holds nothing of answers MOVED instead of forwarding it once more.
    conn = Raw(b.port)
    try:
        assert conn.call("ASKING") == b"+OK\r\n"
        assert conn.call("GET", key_a) == moved_text(b.state, key_a)
    finally:
        conn.close()


def test_unreachable_coordinator(proxy_pair, tmp_path_factory):
    a, b = proxy_pair
    members = [
        Member(N1, "127.0.0.1", a.port, free_port()),
        Member(N2, "127.0.0.1", b.port, free_port()),
        Member(N3, "127.0.0.1", free_port(), free_port()),
    ]
    state = cluster_state(members, 0, routing="proxy")
    install(a, state)
    try:
        key = key_where(lambda slot: state.topology.coordinator(slot) == N3)
        slot = key_slot(key)
        host, port = state.address_of(N3)
        conn = Raw(a.port)
        try:
            assert conn.call("GET", key) == b"-TRYAGAIN Cannot reach the coordinator of slot %d at %s:%d\r\n" % (
                slot, host.encode(), port)
            assert conn.call("PING") == b"+PONG\r\n"
        finally:
            conn.close()
    finally:
        install(a, a.state)


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed")
def test_redis_cli_without_cluster_support_uses_any_node(proxied):
    a, b, key_a, key_b = proxied

    def cli(port, *args):
        done = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=20)
        return done.stdout.strip()

    assert cli(a.port, "SET", key_b, "via-a") == "OK"
    assert cli(b.port, "GET", key_b) == "via-a"
    assert cli(b.port, "SET", key_a, "via-b") == "OK"
    assert cli(a.port, "GET", key_a) == "via-b"


# -- real cluster members (gossip on the cluster bus) --------------------------------------


def test_cluster_meet_links_and_routing_between_cluster_members(tmp_path_factory):
    # A long node timeout: on a busy machine a member late to answer a ping would
    # be flagged and its slots coordinated by the other, which is not this test's.
    options = {"cluster-enabled": True, "cluster-node-timeout": 5000, "cluster-secret": "shared"}
    a = NodeThread(tmp_path_factory.mktemp("ma"), **options).start()
    b = NodeThread(tmp_path_factory.mktemp("mb"), **options, **{"cluster-routing": "proxy"}).start()
    try:
        ra, rb = a.client(protocol=2), b.client(protocol=3)
        state_a, state_b = a.node.cluster, b.node.cluster
        bus_b = state_b.membership[state_b.myself].bus_port
        assert ra.execute_command("CLUSTER MEET", "127.0.0.1", b.port, bus_b) is True
        assert state_a.membership.is_active(state_b.myself)
        assert len(ra.execute_command("CLUSTER NODES")) == 2

        links_a = ra.execute_command("CLUSTER LINKS")
        assert len(links_a) == 1
        fields = dict(zip(links_a[0][::2], links_a[0][1::2]))
        assert fields[b"node"] == state_b.myself.encode() and fields[b"direction"] in (b"to", b"from")
        assert set(fields) == {b"direction", b"node", b"create-time", b"events",
                               b"send-buffer-allocated", b"send-buffer-used"}
        assert ra.execute_command("CLUSTER COUNT-FAILURE-REPORTS", state_b.myself) == 0
        pipe = ra.pipeline(transaction=True)
        pipe.execute_command("CLUSTER MEET", "127.0.0.1", b.port, bus_b)
        pipe.ping()
        meet_reply, pong = pipe.execute(raise_on_error=False)
        assert str(meet_reply) == "CLUSTER MEET cannot run inside a transaction" and pong is True

        deadline = time.monotonic() + 10
        # a met b at weight 0 (it was alone) and took its weight after: wait until
        # gossip gave b that record too, so each slot is served by exactly one.
        while state_a.membership.digest() != state_b.membership.digest() or any(
                mine == theirs for mine, theirs in zip(state_a.served, state_b.served)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        key = key_where(lambda slot: state_a.served[slot])
        foreign = key_where(lambda slot: state_b.served[slot])
        with pytest.raises(redis.exceptions.MovedError):
            ra.get(foreign)  # a redirects
        assert rb.set(key, "through b") is True  # b proxies to a
        assert ra.get(key) == b"through b"
        assert rb.get(key) == b"through b"
    finally:
        a.stop()
        b.stop()

