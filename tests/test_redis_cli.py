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


def test_interactive_session_on_a_terminal(node):
    """redis-cli in interactive mode (on a pseudo-terminal), as a person uses it."""
    import os
    import pty
    import select
    import time

    node.client().flushall()
    leader, follower = pty.openpty()
    # TERM=dumb: line editing off, so the prompt and replies are plain text.
    env = dict(os.environ, TERM="dumb")
    proc = subprocess.Popen(
        [REDIS_CLI, "-p", str(node.port)], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    prompt = f"127.0.0.1:{node.port}> ".encode()
    seen = b""

    def read_until(marker: bytes, timeout: float = 10.0) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in {seen!r}"
            if select.select([leader], [], [], remaining)[0]:
                seen += os.read(leader, 4096)
        before, _, seen = seen.partition(marker)
        return before

    try:
        read_until(prompt)
        for line, expected in [
            (b"SET greeting hi", b"OK"),
            (b"GET greeting", b'"hi"'),
            (b"HELLO 3", b'"proto" => (integer) 3'),
            (b"GET missing", b"(nil)"),
            (b"INCR greeting", b"(error) ERR value is not an integer or out of range"),
        ]:
            os.write(leader, line + b"\r")
            assert expected in read_until(prompt)
        os.write(leader, b"QUIT\r")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
