"""The in-process benchmark still runs against the current command handlers."""

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
