"""The benchmarks' --quick modes run and print their numbers, so the benchmarks never rot."""

import re

import numpy as np
import optax
import pytest

from benchmarks import commits, quality, throughput
from benchmarks import evaluate as evaluate_benchmark
from benchmarks import population as population_benchmark
from vaejax import budget, experiment
from vaejax.writers import read_metrics


def test_throughput_quick_prints_rates_ratio_flops_bound_and_memory(capsys):
    (res,) = throughput.main(["throughput", "--quick", "--models=burda_b20"])
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
    res = evaluate_benchmark.main(["evaluate", "--quick", "--data=synthetic"])
    out = capsys.readouterr().out
    assert re.search(r"vaejax: [\d.]+ s, [\d.]+ images/s, \d+ GFLOP/s; bound [\d.]+ s", out)
    assert re.search(r"straightforward .* [\d.]+ images/s", out)
    assert "| matmul bound |" in out
    assert res["num_test"] == 200 and res["samples"] == 100
    assert res["times_bound"] > 0 and res["peak_rss_mb"] > 0
    assert res["nll"] > 0


def test_throughput_fastpaths_quick_times_each_path_on_and_off(capsys):
    results = throughput.main(["throughput", "--quick", "--fastpaths", "--models=burda_b20"])
    out = capsys.readouterr().out
    assert [r["fastpath"] for r in results] == ["threefry"]  # no convolutions
    assert re.search(r"threefry on burda_b20: on [\d.]+ steps/s, off [\d.]+, on/off [\d.]+x", out)
    assert "| fast path | model | steps/s on | steps/s off | on/off, wall time (range) |" in out
    assert all(r["on_per_s"] > 0 and r["off_per_s"] > 0 and r["cpu_speedup"] > 0 for r in results)


def test_throughput_hierarchy_quick_times_two_layers_against_one(capsys):
    one, two = throughput.main(["throughput", "--quick", "--hierarchy"])
    out = capsys.readouterr().out
    assert (one["model"], two["model"]) == ("burda_b100", "burda2layer_b100")
    # The second stochastic layer adds q(z2 | z1) and p(z1 | z2): more matmul FLOPs per step.
    assert two["matmul_flops_per_step"] > one["matmul_flops_per_step"]
    assert re.search(r"burda2layer_b100: [\d.]+ steps/s, .*x the one-layer steps/s", out)
    assert all(r["vaejax_steps_per_s"] > 0 and 0 < r["fraction_of_bound"] for r in (one, two))


def test_evaluate_fastpaths_quick_times_each_path_on_and_off(capsys):
    res = evaluate_benchmark.main(["evaluate", "--quick", "--fastpaths", "--data=synthetic"])
    out = capsys.readouterr().out
    assert [r["fastpath"] for r in res["fastpaths"]] == ["evaluation_fusion", "threefry"]
    assert re.search(r"evaluation_fusion: on [\d.]+ images/s, off [\d.]+, on/off [\d.]+x", out)
    assert "| fast path | model | images/s on | images/s off | on/off, wall time (range) |" in out


def test_quality_quick_trains_on_the_clock_until_the_budget(capsys, tmp_path, monkeypatch):
    # A clock that each chunk of 4 steps moves on by 0.5 s: the 0.02-minute (1.2 s) budget is
    # spent after the third chunk, whatever this machine's speed.
    clock = [0.0]
    monkeypatch.setattr(budget, "now", lambda: clock[0])
    run_chunk = experiment.run_chunk

    def half_a_second(*args, **kwargs):
        clock[0] += 0.5
        return run_chunk(*args, **kwargs)

    monkeypatch.setattr(experiment, "run_chunk", half_a_second)
    (row,) = quality.main(["quality", "--quick", f"--workdir={tmp_path}"])
    out = capsys.readouterr().out
    assert "| budget (min) | trained (min) | epochs | steps | test NLL |" in out
    assert re.search(r"\| 0.02 \| 0.0 \| \d+ \| 12 \| [\d.]+ \| -[\d.]+ \|", out)
    assert row["train_min"] * 60 == 1.5 and row["steps"] == 12
    assert row["test_nll"] > 0 and (tmp_path / "quality.png").exists()
    # The learning rate ran on that clock: cosine from 3e-3 at 0 s, read at each chunk's start.
    rates = [r["train/learning_rate"] for r in read_metrics(tmp_path / "budget_0.02min")]
    cosine = optax.cosine_decay_schedule(3e-3, 1.2, alpha=1e-4 / 3e-3)
    np.testing.assert_allclose(rates, [cosine(t) for t in (0.0, 0.5, 1.0)], rtol=1e-5)


def test_quality_flags_override_the_config(tmp_path):
    fv = quality.parse_flags(
        ["quality", "--budgets=2,3", "--config.train.batch_size=50", "--config.seed=4"]
    )
    assert fv.budgets == ["2", "3"] and not fv.quick
    assert fv.config.train.batch_size == 50 and fv.config.seed == 4
    with pytest.raises(AttributeError):  # locked: a typo is an error, not a new field
        fv.config.train.batch_sise = 50


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


def test_gradient_snr_quick_prints_each_estimators_snr(capsys):
    from benchmarks import gradient_snr

    rows = gradient_snr.main(["gradient_snr", "--quick"])
    assert [(r["k"], r["estimator"]) for r in rows] == [
        (1, "reparameterized"), (1, "stl"), (5, "reparameterized"), (5, "stl"), (5, "dreg"),
    ]  # fmt: skip
    by = {(r["k"], r["estimator"]): r for r in rows}
    # The estimators change the encoder's gradient only: the decoder's draws are the same.
    assert by[(5, "dreg")]["decoder_snr"] == pytest.approx(
        by[(5, "reparameterized")]["decoder_snr"], rel=1e-4
    )
    assert by[(5, "dreg")]["encoder_snr"] > by[(5, "reparameterized")]["encoder_snr"]
    assert "| 5 | dreg |" in capsys.readouterr().out


def test_commits_alternates_the_sides_and_takes_the_median_ratio(monkeypatch):
    order = []

    def run_side(root, module, args):
        side = "base" if root == commits.pathlib.Path("/base") else "this"
        order.append(side)
        rate = {"base": 100.0, "this": 110.0}[side] + len(order)  # drifts between processes
        return [{"model": "mlp", "vaejax_steps_per_s": rate}]

    monkeypatch.setattr(commits, "run_side", run_side)
    rows = commits.compare(
        commits.pathlib.Path("/base"), "m", [], rounds=3, metric="vaejax_steps_per_s"
    )
    assert order == ["base", "this", "this", "base", "base", "this"]
    ((model, base, this, ratio),) = rows
    assert (model, base, this) == ("mlp", "104.0", "113.0") and ratio.startswith("1.105 ")
