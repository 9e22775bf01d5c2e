"""The pure helpers of tools.durabench: ratios, /proc parsing, latency summaries and
the MSET filler's encoding (no servers, no benchmarks)."""

from __future__ import annotations

import hiredis
import pytest

from tools import durabench


def test_mode_ratios_medians_and_per_round_ratios():
    samples = [
        {"round": 1, "mode": "off", "rps": 100.0},
        {"round": 1, "mode": "everysec", "rps": 90.0},
        {"round": 1, "mode": "always", "rps": 50.0},
        {"round": 2, "mode": "off", "rps": 200.0},
        {"round": 2, "mode": "everysec", "rps": 160.0},
        {"round": 2, "mode": "always", "rps": 60.0},
        {"round": 3, "mode": "off", "rps": 120.0},
        {"round": 3, "mode": "everysec", "rps": 120.0},
        {"round": 3, "mode": "always", "rps": 40.0},
    ]
    out = durabench.mode_ratios(samples)
    assert list(out) == ["off", "everysec", "always"]
    assert out["off"]["median_rps"] == 120.0 and out["off"]["ratio"] == 1.0
    assert out["everysec"] == {"median_rps": 120.0, "min_rps": 90.0, "max_rps": 160.0,
                               "ratio": 1.0, "round_ratios": [0.9, 0.8, 1.0]}
    assert out["always"]["ratio"] == pytest.approx(50 / 120)
    assert out["always"]["round_ratios"] == pytest.approx([0.5, 0.3, 40 / 120])


def test_mode_ratios_without_baseline_or_with_a_missing_round():
    assert "ratio" not in durabench.mode_ratios([{"round": 1, "mode": "always", "rps": 5.0}])["always"]
    out = durabench.mode_ratios([
        {"round": 1, "mode": "off", "rps": 10.0},
        {"round": 2, "mode": "off", "rps": 10.0},
        {"round": 2, "mode": "always", "rps": 5.0},
    ])
    assert out["always"]["round_ratios"] == [0.5]


def test_format_ratio_shows_the_range_only_for_several_rounds():
    assert durabench.format_ratio({"ratio": 0.9123, "round_ratios": [0.9123]}) == "0.912"
    assert durabench.format_ratio({"ratio": 0.9123, "round_ratios": [0.88, 0.951, 0.91]}) == "0.912 (0.88-0.95)"


def test_proc_status_reads_rss_and_high_water_mark_in_bytes():
    text = "Name:\tpython\nVmPeak:\t  999 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n"
    assert durabench.proc_status(text) == {"VmHWM": 2048 * 1024, "VmRSS": 1024 * 1024}


def test_latency_summary_over_runs():
    rows = [
        {"test": "SET", "rps": 10.0, "p50_latency_ms": 0.5, "p99_latency_ms": 2.0},
        {"test": "GET", "rps": 30.0, "p50_latency_ms": 0.1, "p99_latency_ms": 1.0},
        {"test": "SET", "rps": 20.0, "p50_latency_ms": 0.7, "p99_latency_ms": 9.0},
        {"test": "SET", "rps": 40.0, "p50_latency_ms": 0.6, "p99_latency_ms": 3.0},
    ]
    assert durabench.latency_summary(rows, "SET") == {
        "runs": 3, "p99_median_ms": 3.0, "p99_max_ms": 9.0, "p50_median_ms": 0.6, "rps_median": 20.0}
    assert durabench.latency_summary(rows, "INCR") == {}


def test_mset_command_is_valid_resp_with_benchmark_key_names():
    reader = hiredis.Reader()
    reader.feed(durabench.mset_command(41, 2, b"x" * 100))
    assert reader.gets() == [b"MSET", b"key:000000000041", b"x" * 100, b"key:000000000042", b"x" * 100]
    assert reader.gets() is False


def test_quick_preset_and_sections(tmp_path):
    cfg = durabench.parse_args(["--quick", "--only", "restart", "--json", str(tmp_path / "r.json")])
    assert cfg.keys == durabench.QUICK["keys"] and cfg.repeat == 1 and cfg.sections == ["restart"]
    cfg = durabench.parse_args(["--repeat", "5", "--pipeline", "1,64", "--json", str(tmp_path / "r.json")])
    assert cfg.keys == 1_000_000 and cfg.repeat == 5 and cfg.pipelines == [1, 64]
    assert cfg.requests[64] == durabench.FULL["requests"][16]
    with pytest.raises(SystemExit):
        durabench.parse_args(["--only", "nope"])


def test_rewrites_touching_counts_finished_and_running():
    assert durabench.rewrites_touching((2, 0), (2, 0)) == 0
    assert durabench.rewrites_touching((2, 1), (3, 0)) == 1  # one running at the start ended
    assert durabench.rewrites_touching((2, 0), (3, 1)) == 2  # one ran, another still runs
    assert durabench.rewrites_touching((2, 1), (2, 1)) == 1  # one ran all along


def test_rotated_starts_each_round_with_the_next_mode():
    assert durabench.rotated(["off", "everysec", "always"], 0) == ["off", "everysec", "always"]
    assert durabench.rotated(["off", "everysec", "always"], 1) == ["everysec", "always", "off"]
    assert durabench.rotated(["off", "everysec", "always"], 5) == ["always", "off", "everysec"]
