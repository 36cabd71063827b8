"""benchmarks/curve.py: a run's kept checkpoints, each evaluated on the same test images."""

import json

import numpy as np
import pytest

from benchmarks import curve
from experiments.configs import test as test_config
from vaejax import data, experiment
from vaejax.checkpoints import Checkpointer


def test_curve_evaluates_each_kept_checkpoint_and_the_model_improves(tmp_path, capsys):
    config = test_config.get_config()
    config.data.name = "synthetic"  # 220 train images at batch 8: 27 steps an epoch, 54 in all
    config.train.checkpoint_every_steps = 4
    config.train.keep_checkpoint_every_steps = 8
    config.eval.nll_samples = 0
    config.eval.iwae_samples = 0
    experiment.train_and_evaluate(config, str(tmp_path))
    with Checkpointer(tmp_path) as c:
        kept = c.all_steps()
    assert kept[-1] == 54 and len(kept) >= 7
    assert {s // 8 for s in kept} == set(range(54 // 8 + 1))  # one first step per interval
    assert len({s // 8 for s in kept[:-2]}) == len(kept[:-2])

    rows = curve.main(["curve", f"--workdir={tmp_path}", "--num_test=20", "--nll_samples=16"])
    assert [r["step"] for r in rows] == kept
    minutes = [r["train_min"] for r in rows]
    assert minutes == sorted(minutes) and all(r["epoch"] is not None for r in rows)
    assert rows[-1]["nll"] < rows[0]["nll"] - 0.5 and rows[-1]["elbo"] > rows[0]["elbo"] + 2.0
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["rows"] == rows and (tmp_path / "curve.png").exists()
    columns = ["step", "epoch", "training (min)", "learning rate", "train ELBO", "test ELBO"]
    assert "| " + " | ".join([*columns, "test NLL-16"]) + " |" in capsys.readouterr().out
    # From metrics.jsonl: the rate logged at each step (the cosine falls), and the mean train
    # ELBO of the records since the previous kept step.
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "train/elbo" in r]
    rate = {r["step"]: r["train/learning_rate"] for r in records}
    assert [r["learning_rate"] for r in rows] == [rate[s] for s in kept]
    assert np.all(np.diff([r["learning_rate"] for r in rows]) < 0)
    spans = list(zip([-1, *kept[:-1]], kept, strict=True))
    since = [[r["train/elbo"] for r in records if a < r["step"] <= b] for a, b in spans]
    assert max(map(len, since)) >= 2
    assert [r["train_elbo"] for r in rows] == pytest.approx([np.mean(e) for e in since])
    # The same images and noise at every step: evaluating a step again gives the same numbers.
    x = data.synthetic_split("test")[0][:20]
    again = curve.evaluate_step(tmp_path, 54, x, nll_samples=16, batch_size=100, chunk_size=500)
    np.testing.assert_allclose([again["elbo"], again["nll"]], [rows[-1]["elbo"], rows[-1]["nll"]])


def test_logged_reads_a_resumed_runs_records_once(tmp_path):
    # Steps 10-35 logged, then a resume from step 20 (purge_step 21) that logs 30 and 40: the
    # first run's records after step 20 (30 and 35) are dropped, not averaged in.
    lines = [
        {"step": s, "train/epoch": s / 10, "train/learning_rate": 1.0 / s, "train/elbo": -s}
        for s in (10, 20, 30, 35)
    ]
    lines += [{"purge_step": 21}]
    lines += [
        {"step": s, "train/epoch": s / 10, "train/learning_rate": 2.0 / s, "train/elbo": -2 * s}
        for s in (30, 40)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    logged = curve._logged(str(tmp_path), [40, 20])
    assert logged[20] == {"epoch": 2.0, "learning_rate": 1.0 / 20, "train_elbo": -15.0}
    assert logged[40] == {"epoch": 4.0, "learning_rate": 2.0 / 40, "train_elbo": -70.0}
