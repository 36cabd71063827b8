"""Bad runs refused up front: a held workdir, config values, likelihood/preprocessing pairs,
splits the run would silently misuse, a damaged decode cache, a misspelled config field."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import test as test_config
from vaejax import checks, data, experiment, likelihoods, workdir
from vaejax import config as config_lib


def _config(fake_dir, **overrides):
    config = test_config.get_config()
    config.data.data_dir = fake_dir
    config.update_from_flattened_dict(overrides)
    return config


def test_a_second_run_on_a_held_workdir_is_refused_at_once(fake_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    with workdir.hold(run_dir):
        with pytest.raises(
            workdir.WorkdirLockedError, match=rf"pid {os.getpid()} on host .*delete"
        ):
            experiment.train_and_evaluate(_config(fake_dir), run_dir)
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))  # nothing was written
    with workdir.hold(run_dir):  # released when the holder is done
        pass


def test_the_lock_goes_with_a_killed_holder(tmp_path):
    code = (
        f"from vaejax import workdir; import os\nwith workdir.hold({str(tmp_path)!r}): os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with workdir.hold(tmp_path):
        pass


@pytest.mark.parametrize(
    "field, value",
    [
        ("optim.learning_rate", -1e-3),  # was gradient ascent, exit 0
        ("optim.learning_rate", 0.0),
        ("train.batch_size", 0),
        ("model.latent_dim", 0),
        ("train.num_epochs", 0),
        ("train.steps_per_dispatch", 0),
        ("train.eval_every_epochs", 0),  # was ZeroDivisionError after the first epoch
        ("eval.batch_size", 0),
        ("objective.num_samples", 0),
        ("eval.nll_chunk_size", 0),
        ("train.checkpoint_every_steps", 0),
        ("train.keep_checkpoint_every_steps", -1),
        ("model.pixel_features", -1),
    ],
)
def test_config_values_are_checked_before_any_data_are_read(tmp_path, field, value, monkeypatch):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data were read"))
    config = _config(str(tmp_path), **{field: value})
    with pytest.raises(checks.ConfigError, match=rf"config\.{field} = {value!r} .*must be"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))


def test_unknown_names_are_refused_up_front():
    config = test_config.get_config()
    config.optim.schedule = "cosin"
    with pytest.raises(checks.ConfigError, match=r"config\.optim\.schedule = 'cosin'.*'cosine'"):
        config_lib.read(config)


def test_batch_size_larger_than_the_train_split(fake_dir, tmp_path):
    """Was: trained, evaluated everything, then crashed before results.json."""
    with pytest.raises(checks.ConfigError, match=r"batch_size = 64 is larger .* \(40 examples\)"):
        experiment.train_and_evaluate(_config(fake_dir, **{"train.batch_size": 64}), str(tmp_path))


def test_categorical_with_binarized_data_is_refused(tmp_path):
    config = _config(str(tmp_path), **{"model.likelihood": "categorical"})
    with pytest.raises(
        checks.ConfigError, match=r"Categorical.*'dynamic_binarize'.*fit: Bernoulli"
    ):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))


def test_a_gaussian_on_binary_data_trains_with_a_warning():
    with pytest.warns(UserWarning, match=r"Gaussian likelihood with preprocessing 'dynamic_bin"):
        checks.check_likelihood_fits(likelihoods.Gaussian(), "dynamic_binarize")
    for lik, p in [
        (likelihoods.Bernoulli(), "dynamic_binarize"),
        (likelihoods.Categorical(), "integer"),
    ]:
        checks.check_likelihood_fits(lik, p)  # fits: silent


def test_raw_train_images_passed_as_data_are_refused(tmp_path):
    """Was: dynamic_binarize of 0..255 gave all-ones images, trained without a word."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 28, 28, 1)).astype(np.float32)  # 0..255, not [0, 1]
    binary = (train[:8] > 127).astype(np.float32)  # valid and test are fine
    labels = np.zeros(40, np.int32)
    d = data.Data(train, binary, binary, labels, labels[:8], labels[:8])
    with pytest.raises(ValueError, match=r"training split holds values in \[0, 255\].*divide"):
        experiment.train_and_evaluate(_config(str(tmp_path)), str(tmp_path / "run"), data=d)


def test_a_truncated_decode_cache_is_rebuilt(fake_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VAEJAX_CACHE_DIR", str(tmp_path / "cache"))
    images, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    (cache,) = (tmp_path / "cache").iterdir()
    os.truncate(cache, os.path.getsize(cache) // 2)  # was BadZipFile, without the path
    again, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    np.testing.assert_array_equal(again, images)
    assert str(cache) in caplog.text and "VAEJAX_CACHE_DIR=off" in caplog.text


def test_a_misspelled_config_field_is_one_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.mnist",
        "--config=experiments/configs/test.py",
        f"--workdir={tmp_path}",
        "--config.train.batchsize=5",
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if "batchsize" in line]
    assert lines == [
        "FATAL Flags parsing error: unknown config field train.batchsize; "
        "did you mean train.batch_size?"
    ]
    assert "Traceback" not in out.stderr
