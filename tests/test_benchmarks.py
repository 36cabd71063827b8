"""The benchmarks' --quick modes run and print their numbers, so the benchmarks never rot."""

import re

import pytest

from benchmarks import evaluate as evaluate_benchmark
from benchmarks import population as population_benchmark
from benchmarks import quality, throughput


def test_throughput_quick_prints_rates_ratio_flops_bound_and_memory(capsys):
    (res,) = throughput.main(["--quick", "--models", "burda_b20"])
    out = capsys.readouterr().out
    assert "float32 square matmul peak" in out
    line = next(line for line in out.splitlines() if line.startswith("burda_b20:"))
    for pattern in (
        r"reference [\d.]+ steps/s \(\d+ ex/s\)",
        r"vaejax [\d.]+ steps/s \(\d+ ex/s\)",
        r"ratio [\d.]+x",
        r"[\d.]+ MFLOP/step in matmuls",
        r"bound [\d.]+ steps/s at \d+ GFLOP/s",
        r"vaejax at \d+% of it",
        r"peak RSS \d+ / \d+ MB",
    ):
        assert re.search(pattern, line), (pattern, line)
    assert "| 784-200-200-50 tanh, batch 20 | 20 |" in out  # the markdown table
    # Forward 2 * 20 * 423,600 = 16.9 MFLOP; backward twice that but the input's gradient.
    assert abs(res["matmul_flops_per_step"] - 3 * 16_944_000 + 2 * 20 * 156_800) < 1e3
    assert res["reference_matmul_flops_per_step"] == res["matmul_flops_per_step"]
    assert res["vaejax_steps_per_s"] > 0 and res["bound_steps_per_s"] > 0


def test_evaluate_quick_prints_time_rate_bound_and_memory(capsys):
    res = evaluate_benchmark.main(["--quick", "--data", "synthetic"])
    out = capsys.readouterr().out
    assert re.search(r"vaejax: [\d.]+ s, [\d.]+ images/s, \d+ GFLOP/s; bound [\d.]+ s", out)
    assert re.search(r"straightforward .* [\d.]+ images/s", out)
    assert "| matmul bound |" in out
    assert res["num_test"] == 200 and res["samples"] == 100
    assert res["times_bound"] > 0 and res["peak_rss_mb"] > 0
    assert res["nll"] > 0


def test_quality_quick_prints_the_table_for_a_budget(capsys, tmp_path):
    (row,) = quality.main(["--quick", f"--workdir={tmp_path}"])
    out = capsys.readouterr().out
    assert "| budget (min) | trained (min) | epochs | steps | test NLL |" in out
    assert re.search(r"\| 0.02 \| [\d.]+ \| \d+ \| \d+ \| [\d.]+ \| -[\d.]+ \|", out)
    assert row["steps"] > 0 and row["test_nll"] > 0 and (tmp_path / "quality.png").exists()
    # The schedule ran on the clock: the budget, compilation included, ended training.
    assert 0.02 * 60 <= row["train_min"] * 60 < 0.02 * 60 + 30


@pytest.fixture
def population_flags():
    yield population_benchmark.FLAGS
    population_benchmark.FLAGS.unparse_flags()


def test_population_quick_prints_speed_ups(capsys, population_flags):
    population_flags(["population", "--quick", "--members=1,2", "--model=small", "--examples=500"])
    rows = population_benchmark.main([])
    out = capsys.readouterr().out
    assert [r["P"] for r in rows] == [1, 2] and all(r["pop_steps_per_s"] > 0 for r in rows)
    assert re.search(r"\| 2 \| \d+ \| [\d.]+ \| [\d.]+ \| \d+ \| .* \| [\d.]+x \| [\d.]+x \|", out)
