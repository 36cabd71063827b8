"""Bad runs refused up front: a held workdir, config values, likelihood/preprocessing pairs,
splits the run would silently misuse, a damaged decode cache, a misspelled config field."""

import errno
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


def test_a_workdir_that_is_a_file_is_refused_in_one_line(tmp_path):
    """Was: FileExistsError from os.makedirs."""
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(workdir.WorkdirError, match=r"run is a file, not a directory"):
        experiment.train_and_evaluate(_config(str(tmp_path)), str(tmp_path / "run"))


def test_a_read_only_workdir_is_refused_in_one_line(tmp_path, monkeypatch):
    """Was: OSError [Errno 30] on .lock. Root writes through chmod, so the read-only mount is
    what the operating system says for it: EROFS when the lock file is opened."""
    opened = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(workdir.LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(workdir.os, "open", read_only)
    with pytest.raises(workdir.WorkdirError, match=r"cannot be written \(Read-only file system\)"):
        experiment.train_and_evaluate(_config(str(tmp_path)), str(tmp_path / "run"))


def test_an_unusable_cache_directory_falls_back_to_no_cache(
    fake_dir, tmp_path, monkeypatch, caplog
):
    """Was: NotADirectoryError after the whole split was decoded."""
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    monkeypatch.setenv("VAEJAX_CACHE_DIR", str(tmp_path / "cache"))
    images, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    assert len(images) and "going on without it" in caplog.text


def test_a_damaged_metrics_line_is_named_when_resuming(fake_dir, tmp_path):
    """Was: reported only after training and the test evaluation, with no results.json."""
    run_dir = tmp_path / "run"
    experiment.train_and_evaluate(_config(fake_dir), str(run_dir))
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], '{"step": 3, "train/lo', *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not valid JSON"):
        experiment.train_and_evaluate(_config(fake_dir, **{"eval.nll_samples": 7}), str(run_dir))


def test_files_left_by_a_writer_killed_mid_write_are_cleaned(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "members" / "0").mkdir(parents=True)
    left = [run_dir / ".results.json.4242.tmp", run_dir / "members/0/.metrics.jsonl.7.tmp"]
    kept = [run_dir / "notes.tmp", run_dir / ".hidden.tmp"]  # not of that pattern: the user's
    for p in left + kept:
        p.write_text("x")
    with workdir.hold(run_dir):
        assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


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
        ("model.prior_components", 0),  # was checked only after the data were read
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


def test_an_unknown_prior_is_refused_before_any_data_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data were read"))
    config = _config(str(tmp_path), **{"model.prior": "vamp"})
    with pytest.raises(checks.ConfigError, match=r"config\.model\.prior = 'vamp'.*'vampprior'"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))


def test_data_without_labels_keep_their_results(tmp_path):
    """Was: trained to the end, then the latent-scatter figure died and no results.json."""
    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(40, 28, 28, 1)) > 0.5).astype(np.float32)
    d = data.Data(images, images[:8], images[:8], info={"preprocessing": "static_binarize"})
    config = _config(str(tmp_path), **{"data.num_valid": 8})
    _, results = experiment.train_and_evaluate(config, str(tmp_path / "run"), data=d)
    assert os.path.exists(tmp_path / "run" / "results.json") and "figures_error" not in results
    assert "latent_manifold.png" in results["figures"]
    assert "latent_codes.png" not in results["figures"]  # nothing to colour by


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


def test_16_bit_images_declared_unit_interval_are_refused(tmp_path):
    """Was: uint16 levels given as "unit_interval" trained to an ELBO of -1.4e11, exit 0."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 65536, (40, 28, 28, 1)).astype(np.uint16)
    d = data.Data(images, images[:8], images[:8], info={"preprocessing": "unit_interval"})
    config = _config(str(tmp_path), **{"model.likelihood": "gaussian"})
    with pytest.raises(ValueError, match=r"training split holds values in \[\d+, 6553\d\].*65535"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"), data=d)


def test_a_truncated_decode_cache_is_rebuilt(fake_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VAEJAX_CACHE_DIR", str(tmp_path / "cache"))
    images, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    (cache,) = (tmp_path / "cache").iterdir()
    os.truncate(cache, os.path.getsize(cache) // 2)  # was BadZipFile, without the path
    again, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    np.testing.assert_array_equal(again, images)
    assert str(cache) in caplog.text and "VAEJAX_CACHE_DIR=off" in caplog.text


@pytest.mark.parametrize("planted", ["black_images", "object_array", "edited"])
def test_a_planted_decode_cache_is_not_trusted(fake_dir, tmp_path, monkeypatch, caplog, planted):
    """Was: a cache file of the right name, shape and dtype but other images trained silently."""
    monkeypatch.setenv("VAEJAX_CACHE_DIR", str(tmp_path / "cache"))
    images, labels = data.read_split("mnist", "test", data_dir=fake_dir)
    (cache,) = (tmp_path / "cache").iterdir()
    with np.load(cache) as f:
        kept = {k: f[k] for k in f.files if k not in ("images", "labels")}
    with open(cache, "wb") as f:  # what another user of a shared cache directory left there
        if planted == "edited":  # its record of the source kept, its images changed
            np.savez(f, images=np.zeros_like(images), labels=labels, **kept)
        elif planted == "black_images":
            np.savez(f, images=np.zeros_like(images), labels=labels)
        else:
            np.savez(f, images=np.array([{"x": 1}], dtype=object), labels=labels)
    again, _ = data.read_split("mnist", "test", data_dir=fake_dir)
    np.testing.assert_array_equal(again, images)
    assert str(cache) in caplog.text and "rebuilding it" in caplog.text


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


def test_a_config_given_twice_is_one_line(tmp_path):
    """Was: absl kept the last --config without a word."""
    cmd = [
        sys.executable, "-m", "experiments.mnist", "--config=experiments/configs/test.py",
        "--config=experiments/configs/mnist.py", f"--workdir={tmp_path}",
    ]  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 1 and "--config is given 2 times" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_validation_split_larger_than_what_it_leaves_warns():
    with pytest.warns(UserWarning, match=r"num_valid=200 holds out more .* leaves .*\(40\)"):
        data.load("synthetic", preprocessing="unit_interval", num_valid=200)


def test_a_truncated_prepared_file_names_the_dataset_and_the_fix(fake_dir, monkeypatch):
    """Was: RuntimeError: Invalid Riegeli/records file: chunk boundary ... (nothing more)."""
    monkeypatch.setenv("VAEJAX_CACHE_DIR", "off")

    def truncated(*args, **kwargs):  # what array_record raises on a file cut short
        raise RuntimeError("Invalid Riegeli/records file: chunk boundary is 1900544 but ...")

    monkeypatch.setattr(data.tfds, "data_source", truncated)
    with pytest.raises(data.DatasetNotFoundError, match=r"mnist split 'test' .* damaged or trunc"):
        data.read_split("mnist", "test", data_dir=fake_dir)


def test_a_full_disk_while_writing_figures_keeps_the_numbers_and_says_it_once(
    fake_dir, tmp_path, monkeypatch, caplog
):
    """Was: a raw OSError [Errno 28] from the figure, and no results.json."""
    from vaejax import plots

    def full_disk(self, fname, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots.Figure, "savefig", full_disk)
    _, results = experiment.train_and_evaluate(_config(fake_dir), str(tmp_path / "run"))
    assert results["figures_error"].startswith("DiskFullError: No space left on device: ")
    assert np.isfinite(results["test"]["nll_20"]) and (tmp_path / "run" / "results.json").exists()
    text = caplog.text
    assert text.count("No space left on device") == 1 and "Traceback" not in text
