"""CLIENT subcommands through redis-py (RESP2 and RESP3) and raw sockets.

Error texts and the CLIENT LIST line layout were checked against Redis 7.0.15;
CLIENT SETINFO and the lib-name/lib-ver fields follow Redis 7.2.
"""

from __future__ import annotations

import socket

import pytest
import redis

from .test_server_commands import raw_call

#: CLIENT LIST fields of Redis 7.0.15, in order, plus 7.2's lib-name and lib-ver.
FIELDS = [
    "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub", "multi",
    "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem", "tot-mem", "events",
    "cmd", "user", "redir", "resp", "lib-name", "lib-ver",
]


def parse_line(line: str) -> dict[str, str]:
    return dict(field.split("=", 1) for field in line.split(" "))


def open_raw(node) -> tuple[socket.socket, int]:
    """A plain connection to the node and its client id."""
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    sock.sendall(b"CLIENT ID\r\n")
    data = b""
    while not data.endswith(b"\r\n"):
        data += sock.recv(100)
    return sock, int(data[1:-2])


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_client_id_is_unique_per_connection(r, node):
    other = node.client(protocol=2)
    try:
        assert isinstance(r.client_id(), int)
        assert r.client_id() != other.client_id()
        assert r.client_info()["id"] == r.client_id()
    finally:
        other.close()


def test_setname_getname(r):
    assert r.client_getname() is None
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in ("worker-1", b"worker-1")
    assert r.client_info()["name"] == "worker-1"
    assert r.client_setname("") is True
    assert r.client_getname() is None


@pytest.mark.parametrize("name", ["has space", "new\nline", "caf\u00e9"])
def test_setname_rejects_special_characters(r, name):
    with pytest.raises(redis.ResponseError, match="Client names cannot contain spaces, newlines or special"):
        r.client_setname(name)


def test_setinfo_is_what_redis_py_sends_at_connect(r):
    info = r.client_info()
    assert info["lib-name"] == "redis-py" and info["lib-ver"] == redis.__version__
    r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "mylib")
    r.execute_command("CLIENT", "SETINFO", "lib-ver", "1.2.3")
    info = r.client_info()
    assert info["lib-name"] == "mylib" and info["lib-ver"] == "1.2.3"


@pytest.mark.parametrize("args, reply", [
    (["lib-foo", "x"], b"-ERR Unrecognized option 'lib-foo'\r\n"),
    (["LIB-NAME", "a b"], b"-ERR LIB-NAME cannot contain spaces, newlines or special characters.\r\n"),
    (["lib-ver", "1\n2"], b"-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n"),
    (["lib-name"], b"-ERR wrong number of arguments for 'client|setinfo' command\r\n"),
])
def test_setinfo_errors(node, args, reply):
    assert raw_call(node, ["CLIENT", "SETINFO", *args]) == [reply]


def test_client_info_line_has_redis_fields_in_order(r):
    (line,) = r.execute_command("CLIENT", "INFO").decode().splitlines()
    fields = parse_line(line)
    assert list(fields) == FIELDS
    assert fields["cmd"] == "client|info"
    assert fields["flags"] == "N" and fields["db"] == "0" and fields["user"] == "default"
    assert fields["resp"] == str(r.connection_pool.connection_kwargs.get("protocol", 3))
    assert fields["idle"] == "0" and fields["multi"] == "-1" and fields["redir"] == "-1"


def test_client_info_reply_types(node):
    (resp2,) = raw_call(node, ["CLIENT", "INFO"])
    assert resp2.startswith(b"$") and resp2.endswith(b"\n\r\n")
    (resp3,) = raw_call(node, ["CLIENT", "INFO"], proto=3)
    assert resp3.startswith(b"=") and b"\r\ntxt:id=" in resp3 and b" resp=3 " in resp3


def test_client_list(r, node):
    other = node.client(protocol=2, client_name="listed")
    try:
        other.ping()
        clients = r.client_list()
        by_name = {c["name"]: c for c in clients}
        assert "listed" in by_name
        assert by_name["listed"]["cmd"] == "ping"
        assert all(list(c) == FIELDS for c in clients)
        mine = [c for c in clients if int(c["id"]) == r.client_id()]
        assert mine and mine[0]["cmd"] == "client|list"
        assert len(r.client_list(_type="normal")) == len(clients)
        assert r.client_list(_type="pubsub") == []
        assert r.client_list(_type="replica") == []
        assert [c["name"] for c in r.client_list(client_id=[other.client_id()])] == ["listed"]
    finally:
        other.close()


@pytest.mark.parametrize("args, reply", [
    (["TYPE", "bad"], b"-ERR Unknown client type 'bad'\r\n"),
    (["TYPE"], b"-ERR syntax error\r\n"),
    (["ID"], b"-ERR syntax error\r\n"),
    (["ID", "abc"], b"-ERR Invalid client ID\r\n"),
    (["ID", "1", "abc"], b"-ERR Invalid client ID\r\n"),
    (["ID", "0"], b"$0\r\n\r\n"),
    (["ID", "-5", "999999"], b"$0\r\n\r\n"),
    (["TYPE", "master"], b"$0\r\n\r\n"),
    (["TYPE", "slave"], b"$0\r\n\r\n"),
    (["foo"], b"-ERR syntax error\r\n"),
    (["TYPE", "normal", "ID", "1"], b"-ERR syntax error\r\n"),
])
def test_client_list_arguments(node, args, reply):
    assert raw_call(node, ["CLIENT", "LIST", *args]) == [reply]


def test_kill_another_connection_by_id(r, node):
    victim, victim_id = open_raw(node)
    with victim:
        assert r.client_kill_filter(_id=victim_id) == 1
        assert is_closed(victim)
    assert r.client_kill_filter(_id=victim_id) == 0
    assert victim_id not in node.node.clients


def test_kill_by_addr_and_old_form(r, node):
    (first, first_id), (second, second_id) = open_raw(node), open_raw(node)
    with first, second:
        addr_of = {int(c["id"]): c["addr"] for c in r.client_list()}
        assert r.client_kill_filter(addr=addr_of[first_id]) == 1
        assert is_closed(first)
        assert r.client_kill(addr_of[second_id]) is True
        assert is_closed(second)
    with pytest.raises(redis.ResponseError, match="No such client"):
        r.client_kill("1.2.3.4:5")


def test_kill_by_laddr_skips_the_caller(r, node):
    victim, _ = open_raw(node)
    with victim:
        laddr = r.client_info()["laddr"]
        killed = r.client_kill_filter(laddr=laddr)
        assert killed >= 1
        assert is_closed(victim)
        assert r.ping()  # SKIPME yes by default


def test_kill_self_with_skipme_no_replies_then_closes(node):
    sock, client_id = open_raw(node)
    with sock:
        sock.sendall(b"CLIENT KILL ID %d SKIPME no\r\nPING\r\n" % client_id)
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        assert data == b":1\r\n"  # the PING after it is never run


def test_old_form_kill_of_self(node):
    sock, _ = open_raw(node)
    with sock:
        sock.sendall(b"CLIENT INFO\r\n")
        data = b""
        while not data.endswith(b"\n\r\n"):
            data += sock.recv(4096)
        addr = parse_line(data.split(b"\r\n", 1)[1].decode().strip())["addr"]
        sock.sendall(b"CLIENT KILL " + addr.encode() + b"\r\n")
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        assert data == b"+OK\r\n"


@pytest.mark.parametrize("args, reply", [
    (["1.2.3.4:5"], b"-ERR No such client\r\n"),
    (["ID"], b"-ERR No such client\r\n"),
    (["ID", "abc"], b"-ERR client-id should be greater than 0\r\n"),
    (["ID", "0"], b"-ERR client-id should be greater than 0\r\n"),
    (["ID", "999999"], b":0\r\n"),
    (["ADDR", "1.2.3.4:5"], b":0\r\n"),
    (["TYPE", "foo"], b"-ERR Unknown client type 'foo'\r\n"),
    (["TYPE", "normal", "SKIPME", "maybe"], b"-ERR syntax error\r\n"),
    (["USER", "nobody"], b"-ERR No such user 'nobody'\r\n"),
    (["USER", "default", "TYPE", "pubsub"], b":0\r\n"),
    (["FOO", "bar"], b"-ERR syntax error\r\n"),
    (["a", "b", "c"], b"-ERR syntax error\r\n"),
    (["ID", "1", "TYPE"], b"-ERR syntax error\r\n"),
])
def test_kill_arguments(node, args, reply):
    assert raw_call(node, ["CLIENT", "KILL", *args]) == [reply]


def test_no_evict(r, node):
    assert r.client_no_evict("on") in (b"OK", "OK", True)
    assert "e" in r.client_info()["flags"]  # shown as Redis shows it (no client eviction exists)
    assert r.client_no_evict("OFF") in (b"OK", "OK", True)
    assert raw_call(node, ["CLIENT", "NO-EVICT", "maybe"]) == [b"-ERR syntax error\r\n"]


def test_tracking_is_off(r, node):
    assert r.client_getredir() == -1
    assert raw_call(node, ["CLIENT", "TRACKINGINFO"], proto=3) == [
        b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"]


def test_help_and_unknown_subcommands(node):
    (help_reply,) = raw_call(node, ["CLIENT", "HELP"])
    assert help_reply.startswith(b"*") and b"+SETINFO <option> <value>\r\n" in help_reply
    assert raw_call(node, ["CLIENT", "MAINT_NOTIFICATIONS", "on"]) == [
        b"-ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.\r\n"]
    assert raw_call(node, ["CLIENT"]) == [b"-ERR wrong number of arguments for 'client' command\r\n"]
    assert raw_call(node, ["CLIENT", "HELP", "x"]) == [b"-ERR wrong number of arguments for 'client|help' command\r\n"]


def test_client_list_shows_a_transaction_in_progress(r, node):
    sock, client_id = open_raw(node)
    with sock:
        sock.sendall(b"MULTI\r\nSET a b\r\nGET a\r\n")
        data = b""
        while data.count(b"\r\n") < 3:
            data += sock.recv(100)
        (line,) = r.client_list(client_id=[client_id])
        assert line["flags"] == "x" and line["multi"] == "2" and line["cmd"] == "get"
        assert int(line["multi-mem"]) > 0
