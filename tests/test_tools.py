"""The tools still work: the in-process benchmark against the current command handlers,
and the fault tool against nodes that refuse BUSFAULT or require a password."""

import json
import subprocess
import sys


def test_zsetbench_runs_on_a_small_set(tmp_path):
    out = tmp_path / "zset.json"
    subprocess.run(
        [sys.executable, "-m", "tools.zsetbench", "--members", "2000", "--calls", "50", "--json", str(out)],
        check=True, capture_output=True, timeout=120,
    )
    assert json.loads(out.read_text())


def test_faults_says_how_to_allow_busfault(tmp_path, capsys):
    """A node started without enable-debug-command refuses BUSFAULT; the tool says
    how to start the nodes instead of only echoing the error."""
    from tools import faults

    from .conftest import NodeThread

    server = NodeThread(tmp_path, **{"cluster-enabled": True}).start()
    try:
        assert faults.main(["status", "--cluster", f"127.0.0.1:{server.port}"]) == 1
        err = capsys.readouterr().err
        assert "BUSFAULT command not allowed" in err
        assert "--enable-debug-command yes" in err and "respkv cluster up --enable-debug-command" in err
    finally:
        server.stop()


def test_faults_authenticates_with_the_password(tmp_path, capsys, monkeypatch):
    from tools import faults

    from .conftest import NodeThread

    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    server = NodeThread(
        tmp_path, requirepass="s3cret", **{"cluster-enabled": True, "enable-debug-command": "yes"}
    ).start()
    address = f"127.0.0.1:{server.port}"
    try:
        assert faults.main(["status", "--cluster", address]) == 1
        assert "pass --password" in capsys.readouterr().err
        assert faults.main(["status", "--cluster", address, "--password", "s3cret"]) == 0
        assert capsys.readouterr().out == f"{address}: -\n"
        monkeypatch.setenv("REDISCLI_AUTH", "s3cret")
        assert faults.main(["status", "--cluster", address]) == 0
        assert faults.status([address], password="s3cret") == {address: []}
    finally:
        server.stop()
