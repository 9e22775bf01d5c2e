"""tools.cachebench: the Zipf key sampler, the key universe, the RSS bound, the
hit-ratio and ratio arithmetic, and one quick run against redis-server."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import Counter

import pytest

from tools import cachebench


@pytest.mark.parametrize("text, expected", [
    ("32mb", 32 * 2**20), ("32MB", 32 * 2**20), ("32m", 32_000_000), ("500kb", 500 * 1024),
    ("1gb", 2**30), ("1000", 1000), ("7b", 7), (" 4mb ", 4 * 2**20),
])
def test_parse_size_follows_redis_units(text, expected):
    assert cachebench.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "mb", "-1mb", "3.5mb", "12tb", "1 2"])
def test_parse_size_refuses_what_redis_refuses(text):
    with pytest.raises(ValueError):
        cachebench.parse_size(text)


@pytest.mark.parametrize("maxmemory, value_size, factor, keys", [
    (32 * 2**20, 100, 10, 3_355_444),  # 335,544,320 / 100, rounded up
    (4 * 2**20, 100, 10, 419_431),
    (1000, 100, 10, 100),
    (1000, 1000, 1, 1),
    (10, 1000, 1, 1),  # never an empty universe
    (32 * 2**20, 1024, 2.5, 81_920),
])
def test_universe_holds_data_factor_times_maxmemory_of_values(maxmemory, value_size, factor, keys):
    assert cachebench.universe_size(maxmemory, value_size, factor) == keys
    assert keys * value_size >= factor * maxmemory


@pytest.mark.parametrize("args", [(0, 100, 10), (1000, 0, 10), (1000, 100, 0)])
def test_universe_size_needs_positive_inputs(args):
    with pytest.raises(ValueError):
        cachebench.universe_size(*args)


@pytest.mark.parametrize("n", [1, 2, 10, 12, 97, 1000, 1024])
def test_affine_permutation_is_a_bijection(n):
    a, b = cachebench.affine_permutation(n, random.Random(n))
    assert sorted((a * r + b) % n for r in range(n)) == list(range(n))


def test_sampler_is_deterministic_for_a_seed():
    first = cachebench.ZipfKeys(10_000, 0.99, seed=7).keys(random.Random("x"), 5_000)
    again = cachebench.ZipfKeys(10_000, 0.99, seed=7).keys(random.Random("x"), 5_000)
    other_stream = cachebench.ZipfKeys(10_000, 0.99, seed=7).keys(random.Random("y"), 5_000)
    other_names = cachebench.ZipfKeys(10_000, 0.99, seed=8).keys(random.Random("x"), 5_000)
    assert first == again
    assert first != other_stream and first != other_names


@pytest.mark.parametrize("n, exponent", [(1, 1.0), (7, 1.0), (1000, 0.99), (50_000, 1.2), (300, 0.0)])
def test_every_key_is_in_the_universe(n, exponent):
    zipf = cachebench.ZipfKeys(n, exponent, seed=3)
    keys = zipf.keys(random.Random(1), 20_000)
    assert all(0 <= k < n for k in keys)
    assert zipf.rank_of(0.0) == 0 and zipf.rank_of(1 - 1e-12) == n - 1
    assert zipf.rank_of(1.0) == n - 1  # rounding at the top never leaves the universe


@pytest.mark.parametrize("exponent", [0.8, 0.99, 1.0, 1.2])
def test_rank_frequencies_follow_the_exponent(exponent):
    """log(frequency) against log(rank) over the top ranks has slope -exponent,
    and the top rank's share is 1 / H(n, s)."""
    n, draws = 1000, 200_000
    zipf = cachebench.ZipfKeys(n, exponent, seed=1)
    counts = Counter(zipf.ranks(random.Random(2), draws))
    xs = [math.log(r + 1) for r in range(20)]
    ys = [math.log(counts[r]) for r in range(20)]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert slope == pytest.approx(-exponent, abs=0.06)
    harmonic = sum(k ** -exponent for k in range(1, n + 1))
    assert counts[0] / draws == pytest.approx(1 / harmonic, rel=0.05)


def test_uniform_when_the_exponent_is_zero():
    counts = Counter(cachebench.ZipfKeys(10, 0.0, seed=1).ranks(random.Random(5), 50_000))
    assert set(counts) == set(range(10))
    assert max(counts.values()) / min(counts.values()) < 1.1


def test_hot_keys_are_scattered_over_the_names():
    zipf = cachebench.ZipfKeys(100_000, 1.0, seed=1)
    hot = [zipf.key_of(r) for r in range(10)]
    assert len(set(hot)) == 10 and hot != list(range(10))
    assert sum(abs(x - y) == 1 for x, y in zip(hot, hot[1:])) == 0


@pytest.mark.parametrize("keys, start, depth, end", [
    ([1, 2, 3, 4], 0, 16, 4),
    ([1, 2, 3, 4], 0, 2, 2),
    ([1, 2, 1, 4], 0, 16, 2),  # stops before the repeated key
    ([1, 2, 1, 4], 2, 16, 4),
    ([5, 5, 5], 0, 16, 1),
    ([5, 5, 5], 3, 16, 3),  # nothing left
])
def test_batches_stop_at_depth_or_at_a_repeated_key(keys, start, depth, end):
    assert cachebench.batch_end(keys, start, depth) == end


@pytest.mark.parametrize("maxmemory, idle, peak, bound, held", [
    (100, 0, 110, 110, True),
    (100, 0, 111, 110, False),
    (32 * 2**20, 10 * 2**20, 46 * 2**20, int(42 * 2**20 * 1.1), True),
    (32 * 2**20, 10 * 2**20, 47 * 2**20, int(42 * 2**20 * 1.1), False),  # 46.2 MiB is the bound
    (1000, 1000, 2200, 2200, True),  # the 10% applies to the sum, idle RSS included
])
def test_rss_bound_is_maxmemory_plus_idle_plus_ten_percent(maxmemory, idle, peak, bound, held):
    assert cachebench.rss_bound(maxmemory, idle) == bound
    assert (peak <= cachebench.rss_bound(maxmemory, idle)) is held


def _run(server, round_no, hits, gets=1000, ops=100.0, peak=10, bound=20, policy="allkeys-lru", **extra):
    run = {"server": server, "round": round_no, "policy": policy,
           "hit_ratio": cachebench.hit_ratio(hits, gets), "ops_per_second": ops,
           "peak_rss": peak, "rss_bound": bound, "rss_held": peak <= bound,
           "client": {"get_errors": 0, "set_errors": extra.pop("set_errors", 0)}}
    run.update(extra)
    return run


def test_hit_ratio_is_hits_over_gets():
    assert cachebench.hit_ratio(730, 1000) == 0.73
    assert cachebench.hit_ratio(0, 0) is None


def test_summary_medians_differences_and_ratios():
    runs = [
        _run("respkv", 1, 700, ops=50.0, peak=15), _run("redis", 1, 730, ops=100.0),
        _run("respkv", 2, 740, ops=60.0, peak=25), _run("redis", 2, 720, ops=100.0),
        _run("respkv", 3, 720, ops=90.0, peak=12), _run("redis", 3, 725, ops=200.0),
        _run("redis", 1, 100, policy="allkeys-lfu"),
    ]
    s = cachebench.summarize(runs, "allkeys-lru")
    assert s["servers"]["respkv"]["hit_ratio"] == {"median": 0.72, "min": 0.70, "max": 0.74}
    assert s["servers"]["redis"]["ops_per_second"] == {"median": 100.0, "min": 100.0, "max": 200.0}
    # per round: -3, +2, -0.5 percentage points
    assert s["hit_diff_pp"]["median"] == pytest.approx(-0.5)
    assert s["hit_diff_pp"]["min"] == pytest.approx(-3.0) and s["hit_diff_pp"]["max"] == pytest.approx(2.0)
    assert s["ops_ratio"] == {"median": 0.5, "min": 0.45, "max": 0.6}
    # the worst run by peak / bound, and one run above its bound spoils "held"
    assert s["servers"]["respkv"]["peak_rss"] == 25 and s["servers"]["respkv"]["rss_held"] is False
    assert cachebench.verdicts(s) == {"hit_ratio": "met", "rss": "missed", "throughput": "reported"}


@pytest.mark.parametrize("respkv_hits, verdict", [(710, "met"), (709, "missed"), (750, "met"), (751, "missed")])
def test_hit_target_is_two_percentage_points_either_way(respkv_hits, verdict):
    runs = [_run("respkv", 1, respkv_hits), _run("redis", 1, 730)]
    assert cachebench.verdicts(cachebench.summarize(runs, "allkeys-lru"))["hit_ratio"] == verdict


def test_failed_runs_are_reported_not_measured():
    refused = {"server": "respkv", "round": 1, "policy": "allkeys-lru",
               "error": "CONFIG SET maxmemory-policy allkeys-lru refused: ERR ..."}
    s = cachebench.summarize([refused, _run("redis", 1, 730)], "allkeys-lru")
    assert s["servers"]["respkv"]["failed"] == [refused["error"]]
    assert s["servers"]["respkv"]["hit_ratio"] is None and s["hit_diff_pp"] is None
    assert cachebench.verdicts(s) == {"hit_ratio": "not measured", "rss": "not measured",
                                      "throughput": "not measured"}
    text = cachebench.report([s], 2**20)
    assert "refused" in text and "not measured" in text


def test_error_replies_are_counted():
    runs = [_run("respkv", 1, 500, set_errors=42, policy="noeviction"), _run("redis", 1, 500, policy="noeviction")]
    s = cachebench.summarize(runs, "noeviction")
    assert s["servers"]["respkv"]["command_errors"] == 42


def test_quick_preset_and_option_checks():
    cfg = cachebench.parse_args(["--quick"])
    assert cfg.maxmemory_bytes == 4 * 2**20 and cfg.repeat == 1 and cfg.warmup == 2 * cfg.requests
    cfg = cachebench.parse_args(["--maxmemory", "1mb", "--value-size", "1000", "--warmup", "0"])
    assert cfg.keys == math.ceil(10 * 2**20 / 1000) and cfg.warmup == 0 and cfg.requests == 1_000_000
    for bad in (["--servers", "memcached"], ["--maxmemory", "lots"], ["--clients", "0"]):
        with pytest.raises(SystemExit):
            cachebench.parse_args(bad)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_quick_run_against_redis_server(tmp_path, capsys):
    """The whole tool, small: fresh redis-servers with two policies; the clients'
    counts agree with the server's keyspace counters, nothing fails, RSS is sampled."""
    out = tmp_path / "cache.json"
    status = cachebench.main(["--quick", "--servers", "redis", "--policies", "allkeys-lru,allkeys-random",
                              "--json", str(out)])
    assert status == 0
    record = json.loads(out.read_text())
    assert [(r["server"], r["policy"]) for r in record["runs"]] == [
        ("redis", "allkeys-lru"), ("redis", "allkeys-random")]
    for run in record["runs"]:
        assert "error" not in run, run["error"]
        client = run["client"]
        assert client["gets"] == 20_000 and client["get_errors"] == client["set_errors"] == 0
        assert client["sets"] == client["misses"] == client["gets"] - client["hits"]
        assert run["server_delta"]["keyspace_hits"] == client["hits"]
        assert run["server_delta"]["keyspace_misses"] == client["misses"]
        assert 0.3 < run["hit_ratio"] < 0.95 and run["rss_samples"] >= 1
        assert run["idle_rss"] < run["peak_rss"] <= run["rss_bound"]
    assert record["verdicts"]["allkeys-lru"]["hit_ratio"] == "not measured"
    text = capsys.readouterr().out
    assert "allkeys-random" in text and "redis hit%" in text
    assert cachebench.main(["--quick", "--servers", "redis", "--policies", "allkeys-lru",
                            "--json", str(out), "--fail-on-target"]) == 2
