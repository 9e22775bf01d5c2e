"""The tools still work: the in-process benchmark against the current command handlers,
the fault tool against nodes that refuse BUSFAULT or require a password, and a
``kill`` unwinding a tool as Ctrl-C does."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tools.procs import sigterm_interrupts


def test_zsetbench_runs_on_a_small_set(tmp_path):
    out = tmp_path / "zset.json"
    subprocess.run(
        [sys.executable, "-m", "tools.zsetbench", "--members", "2000", "--calls", "50", "--json", str(out)],
        check=True, capture_output=True, timeout=120,
    )
    assert json.loads(out.read_text())


def test_bench_runs_a_test_of_its_own_command_after_the_list_it_rotates(tmp_path):
    """``rpoplpush`` sends its own command (after the extra redis-benchmark
    arguments) and rotates the list the lpush test grew, on both servers."""
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "tools.bench", "--tests", "lpush,rpoplpush", "--pipeline", "16",
         "--requests", "3000", "--repeat", "1", "--no-warmup", "--benchmark-args=-r 1000", "--json", str(out)],
        check=True, capture_output=True, timeout=300,
    )
    results = {cell["test"]: cell for cell in json.loads(out.read_text())["results"]}
    samples = results["rpoplpush"]["samples"]
    assert {sample["role"] for sample in samples} == {"target", "reference"}
    assert all(sample["rps"] > 0 for sample in samples)


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


def test_clusterbench_counts_cpu_per_request():
    """The cluster benchmark's CPU bookkeeping: /proc CPU time of a process grows
    with the work it does, and a cell's CPU per request, its spread and the
    target/reference ratios come out of the samples as documented."""
    import os
    import time

    from tools import bench, clusterbench

    pid = os.getpid()
    before = clusterbench.cpu_seconds(pid)
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert clusterbench.cpu_seconds(pid) - before >= 0.05

    def sample(round_no, role, rps, cpu_seconds):
        return {"round": round_no, "role": role, "rps": rps, "requests": 100_000,
                "cpu_seconds": cpu_seconds, "cpu_window_seconds": 2.0,
                "cpu_us_per_request": cpu_seconds / 100_000 * 1e6}

    cell = {"samples": [
        sample(1, "target", 30_000, 3.0), sample(1, "reference", 100_000, 1.0),
        sample(2, "target", 20_000, 4.0), sample(2, "reference", 80_000, 1.0),
        sample(3, "target", 25_000, 2.0), sample(3, "reference", 90_000, 0.5),
    ]}
    bench.summarize(cell)
    clusterbench.summarize_cpu(cell, {"target": 0.5, "reference": 0.0})
    assert cell["cpu_us_per_request"]["target"] == {"median": 30.0, "min": 20.0, "max": 40.0}
    assert cell["cpu_us_per_request"]["reference"]["median"] == 10.0
    assert cell["cpu_ratio"] == 3.0
    assert cell["cpu_pair_ratios"] == [3.0, 4.0, 4.0]
    assert cell["round_ratios"]["cpu_us_per_request"] == {"median": 4.0, "min": 3.0, "max": 4.0}
    assert cell["round_ratios"]["rps"]["min"] == 0.25
    # Idle use (0.5 cores over a 2 s window = 1 CPU second) comes off the net figure.
    assert cell["net_cpu_us_per_request"]["target"]["median"] == 20.0
    assert cell["net_cpu_ratio"] == 2.0


def test_sigterm_unwinds_a_tool_as_ctrl_c_does():
    """Benchmarks and the fault suite run their main under sigterm_interrupts, so a
    ``kill`` runs their ``finally`` blocks (which stop the nodes they started)."""
    before = signal.getsignal(signal.SIGTERM)
    stopped = []
    with pytest.raises(KeyboardInterrupt):
        with sigterm_interrupts():
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as the call returns
            finally:
                stopped.append(True)
    assert stopped == [True]
    assert signal.getsignal(signal.SIGTERM) is before
