"""INFO's instantaneous figures: the mean of the last 16 samples of a counter's growth."""

from __future__ import annotations

import time

import pytest

from respkv.net.rates import SAMPLES, CpuPressure, InstantaneousMetrics, InstantaneousRate, stall_microseconds
from respkv.node import Stats


def test_no_sample_no_rate():
    rate = InstantaneousRate()
    assert rate.per_second() == 0.0
    rate.sample(10.0, 500)  # the first reading only sets the start
    assert rate.per_second() == 0.0


@pytest.mark.parametrize("readings, expected", [
    ([(0.0, 0), (0.1, 100)], 1000.0),                  # 100 in 100 ms
    ([(0.0, 0), (0.1, 100), (0.2, 100)], 500.0),       # mean of 1000 and 0
    ([(0.0, 0), (1.0, 300)], 300.0),                   # a slower cron: a longer sample
    ([(0.0, 0), (0.1, 100), (0.1, 900)], 1000.0),      # no time passed: ignored
    ([(0.0, 50), (0.1, 150), (0.2, 10), (0.3, 30)], 200.0),  # reset (RESETSTAT): a new series
])
def test_rates_of_readings(readings, expected):
    rate = InstantaneousRate()
    for now, total in readings:
        rate.sample(now, total)
    assert rate.per_second() == pytest.approx(expected)


def test_only_the_last_samples_count():
    rate = InstantaneousRate()
    total = 0
    rate.sample(0.0, 0)
    for step in range(1, 101):
        total += 10_000  # a burst long ago
        rate.sample(step / 10, total)
    for step in range(101, 101 + SAMPLES):
        total += 10  # then a steady 100 per second
        rate.sample(step / 10, total)
    assert rate.per_second() == pytest.approx(100.0)


def test_metrics_format_as_redis_does():
    metrics = InstantaneousMetrics()
    stats = Stats()
    metrics.sample(0.0, stats)
    stats.commands_processed, stats.net_input_bytes, stats.net_output_bytes = 25, 2048, 512
    metrics.sample(0.5, stats)
    assert metrics.info_fields() == [("instantaneous_ops_per_sec", 50), ("instantaneous_input_kbps", "4.00"),
                                     ("instantaneous_output_kbps", "1.00")]


def test_info_reports_the_load_of_a_busy_node(r):
    deadline = time.monotonic() + 20
    while True:
        pipe = r.pipeline(transaction=False)
        for _ in range(200):
            pipe.ping()
        pipe.execute()
        stats = r.info("stats")
        if stats["instantaneous_ops_per_sec"] > 0:
            break
        assert time.monotonic() < deadline, "instantaneous_ops_per_sec stayed 0 under load"
    assert stats["instantaneous_input_kbps"] > 0 and stats["instantaneous_output_kbps"] > 0


def test_the_recent_peak_rises_at_once_and_falls_after_a_quiet_window():
    rate = InstantaneousRate()
    assert rate.recent_peak() == 0.0
    rate.sample(0.0, 0)
    rate.sample(0.1, 5000)  # one busy tick: 50,000 per second
    assert rate.recent_peak() == pytest.approx(50_000)
    assert rate.per_second() == pytest.approx(50_000)
    for step in range(2, 2 + SAMPLES - 1):
        rate.sample(step / 10, 5000)  # quiet ticks, the busy one still in the window
    assert rate.recent_peak() == pytest.approx(50_000)
    assert rate.per_second() == pytest.approx(50_000 / SAMPLES)
    rate.sample((2 + SAMPLES) / 10, 5000)  # the busy tick leaves the window
    assert rate.recent_peak() == 0.0


@pytest.mark.parametrize("text, expected", [
    ("some avg10=1.50 avg60=2.29 avg300=13.09 total=5289178984\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
     5289178984),
    ("full avg10=0.00 avg60=0.00 avg300=0.00 total=7\nsome avg10=0.00 total=12\n", 12),  # the some line, wherever
    ("some avg10=0.00 avg60=0.00 avg300=0.00\n", None),   # no total
    ("some total=12x\n", None),                          # not a number
    ("", None),
])
def test_the_stall_counter_is_the_some_lines_total(text, expected):
    assert stall_microseconds(text) == expected


def test_cpu_pressure_is_the_recent_peak_of_stall_per_second(tmp_path):
    path = tmp_path / "cpu.pressure"
    pressure = CpuPressure((str(tmp_path / "missing"), str(path)))  # the first readable file is used
    for now, total in [(0.0, 0), (0.1, 50_000), (0.2, 60_000)]:
        path.write_text(f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total}\n")
        pressure.sample(now)
    assert pressure.available
    assert pressure.recent_peak() == pytest.approx(50.0)  # 50 ms of stall in 100 ms, then 10 %


def test_without_a_pressure_file_the_pressure_is_zero_and_never_read_again(tmp_path):
    pressure = CpuPressure((str(tmp_path / "missing"),))
    pressure.sample(0.0)
    pressure.sample(1.0)
    assert not pressure.available and pressure.recent_peak() == 0.0
