"""Server commands through redis-py (RESP2 and RESP3) and raw sockets.

INFO, CONFIG, COMMAND, DBSIZE, FLUSHDB/FLUSHALL, TIME, LASTSAVE and SWAPDB.  Exact
byte strings below were taken from a Redis 7.0.15 server.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis

from respkv.commands.info import ProcessSample, build_info, bytes_to_human, select_sections
from respkv.commands.keyspecs import command_keys
from respkv.commands.table import CommandSpec

from .conftest import NodeThread


def raw_call(node: NodeThread, *commands: list[bytes | str], proto: int = 2) -> list[bytes]:
    """Send each command on one new connection; return each raw reply."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        if proto == 3:
            sock.sendall(b"HELLO 3\r\n")
            _read_reply(sock, b"")
        replies = []
        rest = b""
        for args in commands:
            parts = [a.encode() if isinstance(a, str) else a for a in args]
            sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts))
            reply, rest = _read_reply(sock, rest)
            replies.append(reply)
        return replies


def _reply_end(data: bytes, i: int) -> int | None:
    """Index just past the complete reply starting at ``data[i]``, or None."""
    j = data.find(b"\r\n", i)
    if j < 0:
        return None
    kind, head, i = data[i:i + 1], data[i + 1:j], j + 2
    if kind in b"$=!":
        n = int(head)
        if n < 0:
            return i
        return i + n + 2 if len(data) >= i + n + 2 else None
    if kind in b"*~%>":
        n = int(head)
        for _ in range(max(n, 0) * (2 if kind == b"%" else 1)):
            i = _reply_end(data, i)
            if i is None:
                return None
        return i
    return i


def _read_reply(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    while True:
        end = _reply_end(data, 0) if data else None
        if end is not None:
            return data[:end], data[end:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk


# ---------------------------------------------------------------------- INFO

TOOL_FIELDS = [
    "redis_version", "respkv_version", "redis_mode", "os", "arch_bits", "process_id", "run_id",
    "tcp_port", "uptime_in_seconds", "uptime_in_days", "hz", "executable", "config_file",
    "connected_clients", "maxclients", "used_memory", "used_memory_human", "used_memory_rss",
    "maxmemory", "mem_allocator", "loading", "rdb_bgsave_in_progress", "aof_enabled",
    "aof_rewrite_in_progress", "total_connections_received", "total_commands_processed",
    "keyspace_hits", "keyspace_misses", "expired_keys", "role", "connected_slaves",
    "used_cpu_sys", "used_cpu_user", "cluster_enabled",
]


def test_info_has_the_fields_tools_read(r, node):
    info = r.info()
    for name in TOOL_FIELDS:
        assert name in info, name
    assert info["redis_version"] == "7.0.15"
    assert str(info["respkv_version"]) == node.node.version
    assert info["redis_mode"] == "standalone"
    assert info["process_id"] == os.getpid()
    assert info["tcp_port"] == node.port
    assert info["arch_bits"] == 64
    assert len(info["run_id"]) == 40 and int(info["run_id"], 16) >= 0
    assert info["used_memory"] > 0 and info["used_memory_rss"] > info["used_memory"]  # the interpreter is not counted
    assert info["maxmemory"] == 0
    assert info["role"] == "master" and info["connected_slaves"] == 0
    assert info["cluster_enabled"] == 0
    assert info["connected_clients"] >= 1
    assert info["uptime_in_days"] == info["uptime_in_seconds"] // 86400


def test_info_memory_reports_maxmemory(r):
    try:
        r.config_set("maxmemory", "2gb")
        memory = r.info("memory")
        assert memory["maxmemory"] == 2 * 1024**3 and memory["maxmemory_human"] == "2.00G"
        assert memory["maxmemory_policy"] == "noeviction"
    finally:
        r.config_set("maxmemory", 0)


def test_info_keyspace(r):
    assert r.info("keyspace") == {}
    r.set("a", "1")
    r.set("b", "2", ex=100)
    assert r.info("keyspace") == {"db0": {"keys": 2, "expires": 1, "avg_ttl": 0}}


def test_info_counts_commands_and_connections(r):
    before = r.info("stats")
    r.ping()
    after = r.info("stats")
    assert after["total_commands_processed"] >= before["total_commands_processed"] + 2
    assert after["total_net_input_bytes"] > before["total_net_input_bytes"]


def test_info_sections_in_canonical_order(node):
    (reply,) = raw_call(node, ["INFO", "keyspace", "CPU", "server", "server", "nosuch"])
    text = reply.split(b"\r\n", 1)[1]
    headers = [line for line in text.split(b"\r\n") if line.startswith(b"#")]
    assert headers == [b"# Server", b"# CPU", b"# Keyspace"]
    assert b"\r\n\r\n# CPU\r\n" in text and text.endswith(b"# Keyspace\r\n\r\n")


@pytest.mark.parametrize("group", ["", "default", "all", "everything"])
def test_info_groups_show_every_section(node, group):
    (reply,) = raw_call(node, ["INFO", group] if group else ["INFO"])
    headers = [line for line in reply.split(b"\r\n") if line.startswith(b"# ")]
    assert headers == [b"# Server", b"# Clients", b"# Memory", b"# Persistence", b"# Stats",
                       b"# Replication", b"# CPU", b"# Modules", b"# Cluster", b"# Keyspace"]


def test_info_reply_types(node):
    assert raw_call(node, ["INFO", "nosuch"]) == [b"$0\r\n\r\n"]
    assert raw_call(node, ["INFO", "cluster"]) == [b"$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n"]
    assert raw_call(node, ["INFO", "cluster"], proto=3) == [b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n"]
    assert raw_call(node, ["INFO", "modules"]) == [b"$11\r\n# Modules\r\n\r\n"]


def test_build_info_is_a_function_of_its_inputs(node):
    sample = ProcessSample(pid=42, rss=5 * 1024 * 1024, peak_rss=10 * 1024 * 1024, total_system_memory=0,
                           cpu_sys=1.5, cpu_user=0.25, cpu_sys_children=0.0, cpu_user_children=0.0,
                           executable="respkv-under-test")
    text = build_info(node.node, ["memory", "cpu"], sample, now=node.node.started_at + 10).decode()
    assert "used_memory_rss:5242880\r\nused_memory_rss_human:5.00M\r\n" in text
    used = node.node.used_memory()
    assert f"used_memory:{used}\r\n" in text and f"mem_fragmentation_ratio:{5242880 / used:.2f}\r\n" in text
    assert "used_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\n" in text
    server = build_info(node.node, ["server"], sample, now=node.node.started_at + 90000).decode()
    assert "process_id:42\r\n" in server and "uptime_in_days:1\r\n" in server


@pytest.mark.parametrize("n, text", [(0, "0B"), (1023, "1023B"), (1024, "1.00K"), (941160, "919.10K"),
                                     (12410880, "11.84M"), (25276063744, "23.54G")])
def test_bytes_to_human(n, text):
    assert bytes_to_human(n) == text


def test_select_sections():
    assert select_sections([]) == select_sections([b"default"]) == select_sections([b"ALL"])
    assert select_sections([b"Keyspace", b"server"]) == ["server", "keyspace"]
    assert select_sections([b"bogus"]) == []


# ---------------------------------------------------------------------- CONFIG

def test_config_get_what_redis_benchmark_asks(r):
    assert r.config_get("save") == {"save": ""}
    assert r.config_get("appendonly") == {"appendonly": "yes"}


def test_config_get_patterns(r):
    everything = r.config_get("*")
    assert {"maxclients", "timeout", "hz", "save", "appendonly", "bind", "port"} <= set(everything)
    assert r.config_get("maxclients", "timeout") == {"maxclients": "10000", "timeout": "0"}
    assert set(r.config_get("max*")) == {n for n in everything if n.startswith("max")}
    assert r.config_get("no-such-directive") == {}


def test_config_get_reply_shapes(node):
    assert raw_call(node, ["CONFIG", "GET", "MaxClients"]) == [b"*2\r\n$10\r\nMaxClients\r\n$5\r\n10000\r\n"]
    assert raw_call(node, ["CONFIG", "GET", "maxclients", "MAXCLIENTS", "max?lients"], proto=3) == [
        b"%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"]
    assert raw_call(node, ["CONFIG", "GET", "nosuch"], proto=3) == [b"%0\r\n"]
    assert raw_call(node, ["CONFIG", "GET"]) == [b"-ERR wrong number of arguments for 'config|get' command\r\n"]


def test_config_set_applies_every_pair(r):
    try:
        assert r.config_set("timeout", 30) is True
        assert r.execute_command("CONFIG", "SET", "hz", "20", "maxclients", "500") in (True, b"OK", "OK")
        assert r.config_get("timeout", "hz", "maxclients") == {"timeout": "30", "hz": "20", "maxclients": "500"}
    finally:
        r.execute_command("CONFIG", "SET", "timeout", "0", "hz", "10", "maxclients", "10000")


@pytest.mark.parametrize("args, error", [
    (["nosuch", "1"], "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"),
    (["maxclients", "abc"],
     "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"),
    (["MAXCLIENTS", "abc"],
     "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"),
    (["timeout", "-1"],
     "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive"),
    (["databases", "3"], "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"),
    (["maxclients", "100", "MAXCLIENTS", "200"],
     "ERR CONFIG SET failed (possibly related to argument 'MAXCLIENTS') - duplicate parameter"),
    (["maxclients", "100", "nosuch", "1"], "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"),
    (["maxclients", "abc", "databases", "3"],
     "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"),
    (["maxclients", "100", "timeout"], "ERR syntax error"),
    (["proto-max-bulk-len", "10x"],
     "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be a memory value"),
])
def test_config_set_errors(node, args, error):
    assert raw_call(node, ["CONFIG", "SET", *args]) == [b"-" + error.encode() + b"\r\n"]


def test_config_set_is_all_or_nothing(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("CONFIG", "SET", "timeout", "7", "hz", "notanumber")
    assert r.config_get("timeout") == {"timeout": "0"}


def test_config_resetstat(r, node):
    r.set("k", "v")
    r.get("k")
    r.get("missing")
    assert r.config_resetstat() is True
    stats = r.info("stats")
    assert stats["keyspace_hits"] == 0 and stats["keyspace_misses"] == 0
    assert stats["total_connections_received"] == 0
    assert stats["total_commands_processed"] <= 2  # the INFO itself, at most


def test_config_rewrite_without_file(r):
    with pytest.raises(redis.ResponseError, match="^The server is running without a config file$"):
        r.config_rewrite()


def test_config_rewrite_updates_the_file(r, node, tmp_path):
    path = tmp_path / "respkv.conf"
    path.write_text("# my node\nport 0\ntimeout 5\n\ntimeout 6\nhz 10\n")
    config = node.node.config
    saved = getattr(config, "path", None)
    config.path = str(path)
    try:
        r.config_set("timeout", 42)
        r.config_set("maxclients", 77)
        assert r.config_rewrite() in (True, b"OK", "OK")
        text = path.read_text()
        assert text.startswith("# my node\nport 0\ntimeout 42\n\nhz 10\n# Generated by CONFIG REWRITE\n")
        assert "\nmaxclients 77\n" in text
        assert f"\ndir {config['dir']}\n" in text  # differs from the default
        assert "bind" not in text and "save" not in text  # still the defaults
        assert r.info("server")["config_file"] == str(path)
    finally:
        config.path = saved
        r.execute_command("CONFIG", "SET", "timeout", "0", "maxclients", "10000")


def test_config_help_and_unknown_subcommand(node):
    (help_reply,) = raw_call(node, ["CONFIG", "HELP"])
    assert help_reply.startswith(b"*11\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n")
    assert raw_call(node, ["CONFIG", "nosuch"]) == [b"-ERR unknown subcommand 'nosuch'. Try CONFIG HELP.\r\n"]
    assert raw_call(node, ["CONFIG"]) == [b"-ERR wrong number of arguments for 'config' command\r\n"]


# ---------------------------------------------------------------------- COMMAND

GET_INFO_RESP2 = (
    b"*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n"
    b"+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\n"
    b"type\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n"
    b"$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
)
GET_INFO_RESP3 = (
    b"*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n"
    b"+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\n"
    b"type\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n"
    b"$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n"
)
CONFIG_GET_INFO_RESP2 = (
    b"*10\r\n$10\r\nconfig|get\r\n:-3\r\n*4\r\n+admin\r\n+noscript\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n"
    b"*3\r\n+@admin\r\n+@slow\r\n+@dangerous\r\n*0\r\n*0\r\n*0\r\n"
)


def test_command_info_matches_redis_bytes(node):
    assert raw_call(node, ["COMMAND", "INFO", "get", "nosuch", "CONFIG|GET", "get|x", "a|b|c"]) == [
        b"*5\r\n" + GET_INFO_RESP2 + b"$-1\r\n" + CONFIG_GET_INFO_RESP2 + b"$-1\r\n$-1\r\n"]
    assert raw_call(node, ["COMMAND", "INFO", "GET", "nosuch"], proto=3) == [b"*2\r\n" + GET_INFO_RESP3 + b"_\r\n"]


def test_command_info_of_a_container_lists_its_subcommands(node):
    (reply,) = raw_call(node, ["COMMAND", "INFO", "config"], proto=3)
    assert reply.startswith(b"*1\r\n*10\r\n$6\r\nconfig\r\n:-2\r\n~0\r\n:0\r\n:0\r\n:0\r\n~1\r\n+@slow\r\n~0\r\n~0\r\n*5\r\n")
    for sub in (b"config|get", b"config|set", b"config|resetstat", b"config|rewrite", b"config|help"):
        assert b"$%d\r\n%b\r\n" % (len(sub), sub) in reply


def test_command_lists_every_command(r, node):
    table = node.node.table
    commands = r.command()
    assert len(commands) == r.command_count() == len(table)
    for name in ("get", "set", "info", "config", "command", "client", "ping"):
        assert name in commands
    assert commands["get"]["arity"] == 2
    assert commands["mset"]["first_key_pos"] == 1 and commands["mset"]["step_count"] == 2
    assert commands["command"]["arity"] == -1


def test_command_subcommand_errors(node):
    assert raw_call(node, ["COMMAND", "x"]) == [b"-ERR unknown subcommand 'x'. Try COMMAND HELP.\r\n"]
    assert raw_call(node, ["COMMAND", "COUNT", "x"]) == [
        b"-ERR wrong number of arguments for 'command|count' command\r\n"]
    (help_reply,) = raw_call(node, ["COMMAND", "HELP"])
    assert help_reply.startswith(b"*21\r\n+COMMAND <subcommand>")


def test_command_docs(node):
    (both,) = raw_call(node, ["COMMAND", "DOCS", "get", "nosuch", "client"])
    assert both.startswith(b"*4\r\n$3\r\nget\r\n*6\r\n$7\r\nsummary\r\n")
    assert b"$6\r\nclient\r\n*8\r\n" in both and b"$11\r\nsubcommands\r\n" in both
    assert raw_call(node, ["COMMAND", "DOCS", "nosuch"]) == [b"*0\r\n"]
    assert raw_call(node, ["COMMAND", "DOCS", "nosuch"], proto=3) == [b"%0\r\n"]
    (info_docs,) = raw_call(node, ["COMMAND", "DOCS", "info"], proto=3)
    assert info_docs == (
        b"%1\r\n$4\r\ninfo\r\n%3\r\n$7\r\nsummary\r\n$52\r\nReturns information and statistics "
        b"about the server.\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nserver\r\n"
    )
    (everything,) = raw_call(node, ["COMMAND", "DOCS"])
    assert everything.startswith(b"*%d\r\n" % (2 * len(node.node.table)))


def test_command_getkeys(r):
    assert r.command_getkeys("mset", "a", "1", "b", "2") in ([b"a", b"b"], ["a", "b"])
    assert r.command_getkeys("get", "k") in ([b"k"], ["k"])


@pytest.mark.parametrize("args, reply", [
    (["get", "a"], b"*1\r\n$1\r\na\r\n"),
    (["SET", "a", "b"], b"*1\r\n$1\r\na\r\n"),
    (["mset", "a", "b", "c"], b"*2\r\n$1\r\na\r\n$1\r\nc\r\n"),
    (["del", "a", "b", "c"], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
    (["object", "encoding", "k"], b"*1\r\n$1\r\nk\r\n"),
    (["nosuch", "a"], b"-ERR Invalid command specified\r\n"),
    (["client", "nosuch"], b"-ERR Invalid command specified\r\n"),
    (["ping", "x"], b"-ERR The command has no key arguments\r\n"),
    (["config", "get", "a"], b"-ERR The command has no key arguments\r\n"),
    (["keys", "*"], b"-ERR The command has no key arguments\r\n"),
    (["get", "a", "b"], b"-ERR Invalid number of arguments specified for command\r\n"),
    (["get"], b"-ERR wrong number of arguments for 'command|getkeys' command\r\n"),
])
def test_command_getkeys_replies(node, args, reply):
    assert raw_call(node, ["COMMAND", "GETKEYS", *args]) == [reply]


def test_command_getkeysandflags(node):
    assert raw_call(node, ["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"]) == [
        b"*1\r\n*2\r\n$1\r\na\r\n*2\r\n+OW\r\n+update\r\n"]
    assert raw_call(node, ["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b", "get"], proto=3) == [
        b"*1\r\n*2\r\n$1\r\na\r\n~3\r\n+RW\r\n+access\r\n+update\r\n"]
    assert raw_call(node, ["COMMAND", "GETKEYSANDFLAGS", "copy", "a", "b"]) == [
        b"*2\r\n*2\r\n$1\r\na\r\n*2\r\n+RO\r\n+access\r\n*2\r\n$1\r\nb\r\n*2\r\n+OW\r\n+update\r\n"]


def _spec(name, key_specs, arity=-2, flags=()):
    return CommandSpec(name=name, handler=None, arity=arity, flags=flags, key_specs=tuple(key_specs))


def _ks(flags, begin, find):
    return {"flags": list(flags), "begin_search": begin, "find_keys": find}


RANGE_ONE = {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}}
XREAD_SPEC = _spec("xread", [_ks(["RO", "access"], {"type": "keyword", "spec": {"keyword": "STREAMS", "startfrom": 1}},
                               {"type": "range", "spec": {"lastkey": -1, "keystep": 1, "limit": 2}})], arity=-4)
ZUNIONSTORE_SPEC = _spec("zunionstore", [
    _ks(["OW", "update"], {"type": "index", "spec": {"index": 1}}, RANGE_ONE),
    _ks(["RO", "access"], {"type": "index", "spec": {"index": 2}},
        {"type": "keynum", "spec": {"keynumidx": 0, "firstkey": 1, "keystep": 1}}),
], arity=-4)
EVAL_SPEC = _spec("eval", [_ks(["RW", "access", "update"], {"type": "index", "spec": {"index": 2}},
                              {"type": "keynum", "spec": {"keynumidx": 0, "firstkey": 1, "keystep": 1}})],
                  arity=-3, flags=("no_mandatory_keys", "movablekeys"))
UNKNOWN = {"type": "unknown", "spec": {}}
SORT_SPEC = _spec("sort", [_ks(["RO", "access"], {"type": "index", "spec": {"index": 1}}, RANGE_ONE),
                           _ks(["RO", "access"], UNKNOWN, UNKNOWN), _ks(["OW", "update"], UNKNOWN, UNKNOWN)])


def _positions(spec, line):
    return [i for i, _ in command_keys(spec, line.split())]


@pytest.mark.parametrize("spec, line, positions", [
    (XREAD_SPEC, b"xread count 1 streams a b 0 0", [4, 5]),
    (XREAD_SPEC, b"xread count 1 streams a b 0", [4]),
    (XREAD_SPEC, b"xread count 1 block 0", []),
    (ZUNIONSTORE_SPEC, b"zunionstore d 2 a b weights 1 2", [1, 3, 4]),
    (ZUNIONSTORE_SPEC, b"zunionstore d 5 a b", []),
    (ZUNIONSTORE_SPEC, b"zunionstore d x a b", []),
    (EVAL_SPEC, b"eval s 2 a b c", [3, 4]),
    (EVAL_SPEC, b"eval s 0", []),
    (SORT_SPEC, b"sort k by x store d get y limit 0 1", [1, 5]),
    (SORT_SPEC, b"sort k store d1 store d2", [1, 5]),
    (SORT_SPEC, b"sort k", [1]),
])
def test_key_finding_by_spec_and_finder(spec, line, positions):
    assert _positions(spec, line) == positions


def test_command_list(r, node):
    names = r.command_list()
    names = {n.decode() if isinstance(n, bytes) else n for n in names}
    assert {"get", "config", "config|get", "client|list", "command|docs"} <= names
    assert r.command_list(pattern="config|g*") in ([b"config|get"], ["config|get"])
    keyspace = {n.decode() if isinstance(n, bytes) else n for n in r.command_list(category="keyspace")}
    assert {"del", "dbsize", "flushall", "swapdb"} <= keyspace and "get" not in keyspace
    assert raw_call(node, ["COMMAND", "LIST", "FILTERBY", "module", "foo"]) == [b"*0\r\n"]
    assert raw_call(node, ["COMMAND", "LIST", "FILTERBY", "aclcat", "@keyspace"]) == [b"*0\r\n"]
    for bad in (["FILTERBY"], ["x"], ["FILTERBY", "pattern"], ["FILTERBY", "bad", "x"],
                ["FILTERBY", "pattern", "a", "b"]):
        assert raw_call(node, ["COMMAND", "LIST", *bad]) == [b"-ERR syntax error\r\n"]


# ---------------------------------------------------------------------- keyspace-wide commands

def test_dbsize_and_flushes(r):
    assert r.dbsize() == 0
    r.mset({"a": 1, "b": 2, "c": 3})
    assert r.dbsize() == 3
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.mset({"a": 1, "b": 2})
    assert r.flushdb(asynchronous=True) is True
    assert r.dbsize() == 0
    r.set("a", 1)
    assert r.flushall() is True and r.get("a") is None
    r.set("a", 1)
    assert r.execute_command("FLUSHALL", "sync") in (True, b"OK", "OK")
    assert r.dbsize() == 0


@pytest.mark.parametrize("args", [["FLUSHALL", "NOW"], ["FLUSHALL", "SYNC", "ASYNC"], ["FLUSHDB", "a", "b"]])
def test_flush_syntax_errors(node, args):
    assert raw_call(node, args) == [b"-ERR syntax error\r\n"]


def test_time_and_lastsave(r, node):
    seconds, micros = r.time()
    assert abs(seconds - time.time()) < 5 and 0 <= micros < 1_000_000
    assert raw_call(node, ["LASTSAVE"]) == [b":%d\r\n" % node.node.last_save]
    assert raw_call(node, ["TIME", "x"]) == [b"-ERR wrong number of arguments for 'time' command\r\n"]


@pytest.mark.parametrize("args, reply", [
    (["0", "0"], b"+OK\r\n"),
    (["0", "1"], b"-ERR DB index is out of range\r\n"),
    (["0", "16"], b"-ERR DB index is out of range\r\n"),
    (["-1", "0"], b"-ERR DB index is out of range\r\n"),
    (["a", "0"], b"-ERR invalid first DB index\r\n"),
    (["0", "a"], b"-ERR invalid second DB index\r\n"),
    (["0", "99999999999999999999"], b"-ERR invalid second DB index\r\n"),
])
def test_swapdb_has_only_database_zero(node, args, reply):
    assert raw_call(node, ["SWAPDB", *args]) == [reply]
