"""The stock redis-cli against a node: arguments, commands from stdin, --pipe, -x."""

from __future__ import annotations

import shutil
import subprocess

import pytest

REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed (tools/setup.sh installs it)")


def cli(node, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        [REDIS_CLI, "-p", str(node.port), *args], input=stdin, capture_output=True, timeout=30, check=True
    )
    return proc.stdout.decode()


def test_command_from_arguments(node):
    node.client().flushall()
    assert cli(node, "SET", "greeting", "hello world") == "OK\n"
    assert cli(node, "GET", "greeting") == "hello world\n"
    assert cli(node, "INCR", "greeting") == "ERR value is not an integer or out of range\n\n"


def test_commands_read_from_a_file(node, tmp_path):
    script = tmp_path / "commands.txt"
    script.write_text('SET counter 10\nINCRBY counter 5\nGET counter\nSET "spaced key" "a b"\nGET "spaced key"\n')
    with open(script, "rb") as f:
        assert cli(node, stdin=f.read()) == "OK\n15\n15\nOK\na b\n"


def test_pipe_mode_mass_insert(node):
    node.client().flushall()
    lines = []
    for i in range(5000):
        key, value = b"bulk:%d" % i, b"value-%d" % i
        lines.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value))
    out = cli(node, "--pipe", stdin=b"".join(lines))
    assert "errors: 0, replies: 5000" in out
    assert node.client().dbsize() == 5000


def test_last_argument_from_stdin(node):
    cli(node, "-x", "SET", "blob", stdin=b"line one\nline two\n")
    assert node.client().get("blob") == b"line one\nline two\n"


def test_raw_and_inline_style_output(node):
    assert cli(node, "--no-raw", "PING") == "PONG\n"
    assert cli(node, "ECHO", "quoted \"text\"") == 'quoted "text"\n'
