"""Input pipeline on fake prepared datasets (no network, no shared data), batching, CLI."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from fakes import SHAPE, fake_images

from vaejax import data

REPO = pathlib.Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- reading


def test_read_split_returns_whole_split(fake_dir):
    assert data.is_prepared("mnist", fake_dir)
    images, labels = data.read_split("mnist", "test", data_dir=fake_dir)
    assert images.dtype == np.uint8 and images.shape == (20, *SHAPE)
    np.testing.assert_array_equal(images, fake_images("mnist", "test"))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.arange(20))


def test_read_split_without_labels_gives_zeros(fake_dir):
    _, labels = data.read_split("binarized_mnist", "train", data_dir=fake_dir)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.zeros(30))


def test_resolve_data_dir(monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", "/from/env")
    assert data.resolve_data_dir("/explicit") == "/explicit"
    assert data.resolve_data_dir(None) == "/from/env"
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert data.resolve_data_dir(None) is None


def test_missing_dataset_says_how_to_fix(tmp_path):
    assert not data.is_prepared("mnist", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="TFDS_DATA_DIR") as error:
        data.load("mnist", preprocessing="unit_interval", data_dir=str(tmp_path))
    assert isinstance(error.value, FileNotFoundError)
    assert str(tmp_path) in str(error.value) and "--config.data.data_dir" in str(error.value)


def test_unknown_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="dynamic_binarize.*integer"):
        data.load("mnist", preprocessing="binary", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Unsupported dataset 'imagenet2012'.*mnist"):
        data.load("imagenet2012", preprocessing="integer", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- load


def test_validation_is_held_out_from_end_of_train(fake_dir):
    d = data.load("mnist", preprocessing="integer", data_dir=fake_dir, num_valid=15)
    # Labels are record indices: train and valid partition the train split, in order.
    np.testing.assert_array_equal(d.train_labels, np.arange(45))
    np.testing.assert_array_equal(d.valid_labels, np.arange(45, 60))
    np.testing.assert_array_equal(d.test_labels, np.arange(20))
    raw = fake_images("mnist", "train")
    np.testing.assert_array_equal(d.train, raw[:45])
    np.testing.assert_array_equal(d.valid, raw[45:])
    np.testing.assert_array_equal(d.test, fake_images("mnist", "test"))
    assert (d.info["num_train"], d.info["num_valid"], d.info["num_test"]) == (45, 15, 20)


def test_num_valid_must_leave_train_examples(fake_dir):
    with pytest.raises(ValueError, match="num_valid must be in"):
        data.load("mnist", preprocessing="integer", data_dir=fake_dir, num_valid=60)


def test_own_validation_split_is_used(fake_dir):
    d = data.load("binarized_mnist", preprocessing="static_binarize", data_dir=fake_dir)
    assert (len(d.train), len(d.valid), len(d.test)) == (30, 10, 10)
    # Already binary: static binarization is just a cast.
    np.testing.assert_array_equal(d.valid, fake_images("binarized_mnist", "validation"))
    assert d.preprocessing.max_value == 1


@pytest.mark.parametrize("preprocessing", data.PREPROCESSINGS)
def test_preprocessing_shapes_dtypes_ranges(fake_dir, preprocessing):
    d = data.load("mnist", preprocessing=preprocessing, data_dir=fake_dir, num_valid=10)
    assert [s.shape[0] for s in (d.train, d.valid, d.test)] == [50, 10, 20]
    assert d.train.shape[1:] == d.valid.shape[1:] == d.test.shape[1:] == SHAPE
    assert d.info["name"] == "mnist" and d.preprocessing.name == preprocessing
    assert d.preprocessing.noise == data.DATA_NOISE.get(preprocessing)
    raw = fake_images("mnist", "train")[:50]
    splits = (d.train, d.valid, d.test)
    if preprocessing == "integer":
        assert all(s.dtype == np.int32 for s in splits)
        np.testing.assert_array_equal(d.train, raw)
        return
    assert all(s.dtype == np.float32 for s in splits)
    binary = lambda s: set(np.unique(s)) <= {0.0, 1.0}
    if preprocessing == "unit_interval":
        np.testing.assert_allclose(d.train, raw / 255.0, rtol=1e-6)
    elif preprocessing == "dynamic_binarize":
        np.testing.assert_allclose(d.train, raw / 255.0, rtol=1e-6)
        assert binary(d.valid) and binary(d.test)
    elif preprocessing == "dequantize":
        np.testing.assert_allclose(d.train, raw / 256.0, rtol=1e-6)
        # Valid and test: each pixel somewhere in its own bin, (k + u) / 256, never on its edge.
        for split, k in ((d.valid, fake_images("mnist", "train")[50:]), (d.test, None)):
            if k is not None:
                u = split * 256.0 - k
                assert u.min() > 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
            assert 0 < split.min() and split.max() < 1
    elif preprocessing == "static_binarize":
        assert all(binary(s) for s in splits)
        # The binarized pixels follow the intensities.
        assert abs(d.train.mean() - raw.mean() / 255.0) < 0.02
    elif preprocessing == "standardize":
        # Statistics of the 50 train examples only, not the held-out 10 or the test split.
        assert d.preprocessing.mean == pytest.approx(raw.mean())
        assert d.preprocessing.std == pytest.approx(raw.std())
        assert abs(d.train.mean()) < 1e-5 and d.train.std() == pytest.approx(1.0, abs=1e-5)
        back = d.valid * d.preprocessing.std + d.preprocessing.mean
        np.testing.assert_allclose(back, fake_images("mnist", "train")[50:], atol=1e-3)
    # Figures: every preprocessing maps back to the stored intensities in [0, 1].
    pixels = d.preprocessing.to_pixels(d.train)
    assert pixels.min() >= 0 and pixels.max() <= 1
    if preprocessing in ("unit_interval", "dynamic_binarize", "standardize", "integer"):
        np.testing.assert_allclose(pixels, raw / 255.0, atol=1e-5)


def test_unknown_preprocessing_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown preprocessing 'binarise'.*dynamic_binarize"):
        data.Preprocessing("binarise")


def test_dequantize_is_uniform_within_each_bin():
    x = jnp.full((200_000,), 7 / 256.0)
    y = np.asarray(data.dequantize(jax.random.key(0), x))
    u = y * 256.0 - 7
    assert 0 <= u.min() and u.max() < 1
    # U(0, 1): mean 1/2, variance 1/12, within a few standard errors.
    assert abs(u.mean() - 0.5) < 3 * (1 / 12 / len(u)) ** 0.5 * 2
    assert abs(u.var() - 1 / 12) < 0.002


def test_dequantize_rejects_binary_datasets(fake_dir):
    with pytest.raises(ValueError, match="8-bit images.*binarize"):
        data.load("binarized_mnist", preprocessing="dequantize", data_dir=fake_dir, num_valid=10)


@pytest.mark.parametrize("preprocessing", ["static_binarize", "dynamic_binarize", "dequantize"])
def test_binarized_splits_depend_only_on_seed(fake_dir, preprocessing):
    load = lambda seed: data.load(
        "mnist", preprocessing=preprocessing, data_dir=fake_dir, num_valid=10, seed=seed
    )
    a, b, c = load(0), load(0), load(1)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.valid, b.valid)
    assert not np.array_equal(a.test, c.test)


# ----------------------------------------------------------------------------- binarize


def test_binarize_mean_matches_probability():
    x = jax.random.uniform(jax.random.key(0), (2000, 1000))
    sample = data.binarize(jax.random.key(1), x)
    assert sample.dtype == jnp.float32
    assert set(np.unique(sample)) <= {0.0, 1.0}
    # Bernoulli noise on 2e6 draws has std 3e-4; the 16-bit grid adds at most 8e-6 of bias.
    assert abs(float(sample.mean()) - float(x.mean())) < 1e-3
    for p in (0.01, 0.5, 0.99):
        mean = float(data.binarize(jax.random.key(2), jnp.full((1_000_000,), p)).mean())
        assert abs(mean - p) < 5 * np.sqrt(p * (1 - p) / 1e6) + 1e-5


def test_binarize_edges_are_exact():
    key = jax.random.key(3)
    np.testing.assert_array_equal(data.binarize(key, jnp.zeros((1001,))), np.zeros(1001))
    np.testing.assert_array_equal(data.binarize(key, jnp.ones((1001,))), np.ones(1001))


@pytest.mark.parametrize("shape", [(), (1,), (3, 5, 7), (2, 28, 28, 1), (0, 3)])
def test_binarize_any_shape_and_jit(shape):
    key = jax.random.key(4)
    x = jax.random.uniform(jax.random.key(5), shape)
    sample = data.binarize(key, x)
    assert sample.shape == shape
    assert set(np.unique(sample)) <= {0.0, 1.0}
    with jax.disable_jit():  # `binarize` is jitted; op-by-op must agree.
        np.testing.assert_array_equal(data.binarize(key, x), sample)


def test_binarize_odd_size_uses_fresh_noise_for_every_pixel():
    # With 5 pixels at P=0.5 over many keys, each pixel is 1 about half the time, independently.
    keys = jax.random.split(jax.random.key(6), 4000)
    samples = jax.vmap(data.binarize, in_axes=(0, None))(keys, jnp.full((5,), 0.5))
    np.testing.assert_allclose(samples.mean(0), 0.5, atol=0.04)
    corr = np.corrcoef(np.asarray(samples).T)
    np.testing.assert_allclose(corr - np.eye(5), 0.0, atol=0.08)


# ----------------------------------------------------------------------------- batching


def test_epoch_permutation_is_a_shuffled_subset():
    idx = data.epoch_permutation(jax.random.key(0), 103, 10)
    assert idx.shape == (10, 10) and idx.dtype == jnp.int32
    flat = np.asarray(idx).ravel()
    assert len(np.unique(flat)) == 100 and flat.min() >= 0 and flat.max() < 103
    assert not np.array_equal(flat, np.arange(100))
    jitted = jax.jit(data.epoch_permutation, static_argnums=(1, 2))(jax.random.key(0), 103, 10)
    np.testing.assert_array_equal(jitted, idx)
    whole = data.epoch_permutation(jax.random.key(1), 12, 4)
    np.testing.assert_array_equal(np.sort(np.asarray(whole).ravel()), np.arange(12))


def test_epoch_permutation_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be in"):
        data.epoch_permutation(jax.random.key(0), 5, 6)


# ----------------------------------------------------------------------------- experiments.prepare

_CONFIG = """
import ml_collections
from ml_collections import config_dict


def get_config():
    return ml_collections.ConfigDict(
        {"data": {"name": "mnist", "data_dir": config_dict.placeholder(str)}}
    )
"""


def _run_prepare(tmp_path, *args, env=None):
    config = tmp_path / "config.py"
    config.write_text(_CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "experiments.prepare", f"--config={config}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepare_exits_1_with_instructions_for_an_empty_dir(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    # data_dir is a None placeholder in the config, so TFDS_DATA_DIR decides.
    result = _run_prepare(tmp_path, env={"TFDS_DATA_DIR": str(empty)})
    assert result.returncode == 1, result.stderr
    assert str(empty) in result.stderr
    assert "TFDS_DATA_DIR=" in result.stderr and "--config.data.data_dir" in result.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None,
    reason="with TensorFlow installed, --download would really try the network",
)
def test_prepare_download_without_tensorflow_exits_2(tmp_path):
    result = _run_prepare(tmp_path, f"--config.data.data_dir={tmp_path}", "--download")
    assert result.returncode == 2, result.stderr
    assert "pip install -e '.[prepare]'" in result.stderr and "TFDS_DATA_DIR=" in result.stderr


def test_read_split_caches_decoded_arrays(fake_dir, tmp_path, monkeypatch):
    first = data.read_split("mnist", "test", data_dir=fake_dir)
    cached = list((tmp_path / "vaejax_cache").glob("mnist-*-test-*.npz"))
    assert len(cached) == 1

    def no_reads(*args, **kwargs):
        raise AssertionError("read the records again instead of the cache")

    monkeypatch.setattr(tfds, "data_source", no_reads)
    second = data.read_split("mnist", "test", data_dir=fake_dir)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("VAEJAX_CACHE_DIR", "off")
    with pytest.raises(AssertionError, match="instead of the cache"):
        data.read_split("mnist", "test", data_dir=fake_dir)


def test_synthetic_dataset_needs_no_files():
    d = data.load("synthetic", preprocessing="unit_interval", num_valid=40)
    assert d.train.shape == (200, *SHAPE) and d.valid.shape == (40, *SHAPE)
    assert 0 <= d.train.min() and d.train.max() <= 1 and d.train.max() > 0.5
    again = data.load("synthetic", preprocessing="unit_interval", num_valid=40)
    np.testing.assert_array_equal(d.test, again.test)


def test_num_train_caps_the_train_split_only(fake_dir):
    d = data.load("mnist", preprocessing="unit_interval", data_dir=fake_dir, num_valid=10)
    capped = data.load(
        "mnist", preprocessing="unit_interval", data_dir=fake_dir, num_valid=10, num_train=7
    )
    assert (len(capped.train), len(capped.valid), len(capped.test)) == (7, 10, 20)
    np.testing.assert_array_equal(capped.train, d.train[:7])
    np.testing.assert_array_equal(capped.valid, d.valid)  # the held-out split is unchanged
    with pytest.raises(ValueError, match="num_train must be >= 0.*got -1"):
        data.load("mnist", preprocessing="unit_interval", data_dir=fake_dir, num_train=-1)
