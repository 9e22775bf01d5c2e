"""Local clusters whose nodes require a password.

``respkv cluster up --requirepass`` (or ``--requirepass`` among the server
arguments) starts nodes that answer ``NOAUTH`` to unauthenticated clients; the
launcher learns the password, records it in ``cluster.json`` and authenticates on
every connection, so the cluster still becomes ready and ``status``/``down`` work
later from the record.  End to end as a user would do it: the command line, then
redis-py's ``RedisCluster(password=...)``; proxy routing with a password still
forwards.  The launcher's pieces (learning the password, AUTH, the record) are
checked without a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

import pytest
import redis
from redis.cluster import RedisCluster

from respkv import launcher
from tools import faults

from .conftest import NodeThread
from .test_cluster_e2e import HOST, NODE_TIMEOUT_MS, UP_TIMEOUT, coordinators, key_slot, run_tool, start_cluster

PASSWORD = "s3cret-pw"


def cli(*args: str):
    return run_tool(sys.executable, "-m", "respkv", "cluster", *args, timeout=UP_TIMEOUT + 60)


def cli_up(directory: str, *options: str):
    """``respkv cluster up`` on free ports, retried only when a port was taken meanwhile."""
    for attempt in range(3):
        out = cli("up", "--dir", directory, "--port", "0", "--node-timeout", str(NODE_TIMEOUT_MS),
                  "--timeout", str(UP_TIMEOUT), *options)
        if out.returncode == 0 or "is in use" not in out.stderr or attempt == 2:
            return out


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.cluster
def test_cluster_up_with_a_password_is_ready_and_clients_authenticate(tmp_path):
    directory = str(tmp_path / "pw")
    out = cli_up(directory, "--requirepass", PASSWORD, "--enable-debug-command")
    try:
        assert out.returncode == 0, out.stderr
        assert PASSWORD not in out.stdout  # the hint asks for it instead
        assert "--askpass" in out.stdout

        record_path = os.path.join(directory, launcher.STATE_FILE)
        assert stat.S_IMODE(os.stat(record_path).st_mode) == 0o600
        with open(record_path) as f:
            assert json.load(f)["options"]["password"] == PASSWORD
        cluster = launcher.LocalCluster.load(directory)
        assert cluster.password == PASSWORD
        seed = cluster.seed.port
        # The nodes read it from a private file: it is on no command line (the
        # process list, the record's argv, the node logs).
        password_file = os.path.join(directory, "requirepass")
        assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
        for node in cluster.nodes:
            assert not any(PASSWORD in arg for arg in node.argv)
            with open(f"/proc/{node.pid}/cmdline", "rb") as f:
                assert PASSWORD.encode() not in f.read()
            with open(os.path.join(node.dir, "node.log"), "rb") as f:
                assert PASSWORD.encode() not in f.read()

        # A stock cluster client with the password reads and writes on every node.
        for protocol in (3, 2):
            rc = RedisCluster(host=HOST, port=seed, password=PASSWORD, protocol=protocol,
                              socket_timeout=10, socket_connect_timeout=10)
            try:
                keys = [f"pw:{protocol}:{i}" for i in range(300)]
                for key in keys:
                    assert rc.set(key, key.upper())
                assert [rc.get(key) for key in keys] == [key.upper().encode() for key in keys]
            finally:
                rc.close()
        owner = coordinators_with_password(seed)
        assert len(set(owner.values())) == len(cluster.nodes)  # every node coordinates slots

        # Without it: NOAUTH, from every node.
        for node in cluster.nodes:
            with pytest.raises(launcher.ReplyError, match="^NOAUTH Authentication required"):
                launcher.command(HOST, node.port, "GET", "pw:3:0", timeout=10)
            plain = redis.Redis(host=HOST, port=node.port, protocol=2, socket_timeout=10)
            with pytest.raises(redis.AuthenticationError):
                plain.get("pw:3:0")
            plain.close()

        # --enable-debug-command reached the nodes: the fault tool may cut links.
        addresses = [f"{HOST}:{n.port}" for n in cluster.nodes]
        assert faults.status(addresses, password=PASSWORD) == {a: [] for a in addresses}

        # status and down work later, from the record alone.
        st = launcher.status(directory)
        assert st is not None and st.ok, launcher.format_status(st)
        out = cli("status", "--dir", directory)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.splitlines()[0].endswith("3 of 3 nodes running, ok")
        out = cli("down", "--dir", directory)
        assert out.returncode == 0 and out.stdout.count("stopped node-") == 3, out
        assert launcher.LocalCluster.load(directory).running() == []
    finally:
        launcher.down(directory)


def coordinators_with_password(port: int) -> dict[int, int]:
    """slot -> client port of its master, asking with the password."""
    owner = {}
    for entry in launcher.command(HOST, port, "CLUSTER", "SLOTS", timeout=10, password=PASSWORD):
        for slot in range(int(entry[0]), int(entry[1]) + 1):
            owner[slot] = int(entry[2][1])
    return owner


@pytest.mark.cluster
def test_proxy_routing_with_a_password_still_forwards(tmp_path):
    """The password given as a server argument: learned by the launcher, and the
    proxying node authenticates to the coordinator it forwards to."""
    cluster = start_cluster(tmp_path / "proxy-pw", rf=1, routing="proxy",
                            server_args=[f"--requirepass={PASSWORD}"])
    try:
        assert cluster.password == PASSWORD
        ports = cluster.ports
        owner = coordinators_with_password(ports[0])
        for port in ports:
            client = redis.Redis(host=HOST, port=port, password=PASSWORD, socket_timeout=10)
            try:
                elsewhere = [k for k in (f"fw:{port}:{i}" for i in range(200)) if owner[key_slot(k)] != port]
                assert elsewhere
                for key in elsewhere[:50]:
                    assert client.set(key, key) is True
                    assert client.get(key) == key.encode()
            finally:
                client.close()
        with pytest.raises(launcher.ReplyError, match="^NOAUTH"):
            coordinators(ports[0])  # the test suite's helper has no password
    finally:
        cluster.stop()


# -- the launcher's pieces ----------------------------------------------------------------------


@pytest.mark.parametrize("args, password", [
    ([], None),
    (["--requirepass", "a"], "a"),
    (["--requirepass=b"], "b"),
    (["--requirepass=-dash"], "-dash"),
    (["--requirepass=with=equals"], "with=equals"),
    (["--requirepass", "a", "--maxclients", "5", "--requirepass=c"], "c"),  # the last one counts
    (["--requirepass="], None),
    (["--requirepass", ""], None),
    (["--requirepass"], None),  # no value: the node would refuse to start
    (["--requirepassword", "x", "--other=--requirepass=x"], None),
])
def test_requirepass_of_server_args(args, password):
    assert launcher.requirepass_of(args) == password


def test_command_authenticates_first(tmp_path):
    server = NodeThread(tmp_path, requirepass=PASSWORD).start()
    try:
        with pytest.raises(launcher.ReplyError, match="^NOAUTH"):
            launcher.command(HOST, server.port, "PING", timeout=10)
        assert launcher.command(HOST, server.port, "PING", timeout=10, password=PASSWORD) == b"PONG"
        with pytest.raises(launcher.ReplyError, match="^WRONGPASS"):
            launcher.command(HOST, server.port, "PING", timeout=10, password="wrong")
        report = launcher.probe(HOST, server.port, timeout=10, password=PASSWORD)
        assert report.error is not None and "cluster support disabled" in report.error  # past AUTH
    finally:
        server.stop()


def test_the_record_keeps_the_password_for_its_owner_only(tmp_path):
    directory = str(tmp_path / "c")
    cluster = launcher.plan(directory, 2, 7000, server_args=["--requirepass", "Pw!fr0m-args"])
    assert cluster.password == "Pw!fr0m-args"  # what up() would record
    cluster.options["password"] = "Pw!rec0rded"
    cluster.save()
    assert stat.S_IMODE(os.stat(cluster.state_path).st_mode) == 0o600
    assert launcher.LocalCluster.load(directory).password == "Pw!rec0rded"
    hint = launcher.connect_hint(cluster)
    assert "--askpass" in hint and "Pw!" not in hint
    plain = launcher.plan(str(tmp_path / "plain"), 1, 7000)
    assert plain.password is None and "--askpass" not in launcher.connect_hint(plain)


def test_requirepass_file_gives_the_node_its_password(tmp_path):
    """``--requirepass-file``: the first line is the password; a missing or empty
    file stops the node at start with a message saying what to do."""
    from respkv import cli
    from respkv.config import ConfigError

    def parse_server_args(*argv):  # as respkv's main: directives are the unknown options
        parser = argparse.ArgumentParser()
        cli._server_parser(parser.add_subparsers(dest="command"))
        ns, ns.directives = parser.parse_known_args(["server", *argv])
        return ns

    secret = tmp_path / "pw"
    secret.write_text(f"{PASSWORD}\nignored\n")
    assert cli.build_config(parse_server_args("--requirepass-file", str(secret)))["requirepass"] == PASSWORD
    # an explicit password wins, as cluster-secret over cluster-secret-file
    config = cli.build_config(parse_server_args("--requirepass-file", str(secret), "--requirepass", "other"))
    assert config["requirepass"] == "other"
    with pytest.raises(ConfigError, match="cannot read requirepass-file"):
        cli.build_config(parse_server_args("--requirepass-file", str(tmp_path / "missing")))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty: write the password on its first line"):
        cli.build_config(parse_server_args("--requirepass-file", str(tmp_path / "empty")))
