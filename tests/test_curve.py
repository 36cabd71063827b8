"""benchmarks/curve.py: a run's kept checkpoints, each evaluated on the same test images."""

import json

import numpy as np

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
    assert "| step | epoch | training (min) | test ELBO | test NLL-16 |" in capsys.readouterr().out
    # The same images and noise at every step: evaluating a step again gives the same numbers.
    x = data.synthetic_split("test")[0][:20]
    again = curve.evaluate_step(tmp_path, 54, x, nll_samples=16, batch_size=100, chunk_size=500)
    np.testing.assert_allclose([again["elbo"], again["nll"]], [rows[-1]["elbo"], rows[-1]["nll"]])
