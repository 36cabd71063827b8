"""A label-conditioned VAE through the loop, the figures and `vaejax.load` (fake MNIST)."""

import json
import os

import jax
import numpy as np
import pytest

import vaejax
from experiments import encode
from experiments.configs import ladder
from experiments.configs import test as test_config
from vaejax import data as data_lib
from vaejax import experiment
from vaejax.fields import ConfigError


def _config(fake_dir, **overrides):
    config = test_config.get_config()
    config.data.data_dir = fake_dir
    config.data.conditioning = "label"
    config.model.prior = "conditional_normal"
    config.update_from_flattened_dict(overrides)
    return config


def test_a_conditional_vae_trains_evaluates_and_loads_back_per_class(fake_dir, tmp_path):
    workdir = str(tmp_path / "run")
    _, results = experiment.train_and_evaluate(_config(fake_dir), workdir)
    test = results["test"]
    assert all(np.isfinite(test[k]) for k in ("elbo", "iwae_5", "nll_20"))
    assert {"class_samples.png", "reconstructions.png", "latent_codes.png"} <= set(
        os.listdir(workdir)
    )
    assert "samples.png" not in os.listdir(workdir)  # one row per class instead
    model = vaejax.load(workdir)
    k = model.model.conditioning.num_classes
    assert k == 60  # the fake train labels are 0..59: one class more than the largest
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["conditioning"]
    x, labels = model.read_split("test")
    x, labels = x[:6], labels[:6]
    key = jax.random.key(0)
    assert model.sample(key, 4, y=np.array([0, 1, 2, 3])).shape == (4, 28, 28, 1)
    assert model.sample(key, 3, y=5).shape == (3, 28, 28, 1)  # one label for all
    assert model.encode(x, y=labels)["mean"].shape == (6, 2)
    assert model.reconstruct(x, y=labels).shape == x.shape
    assert model.interpolate(x[0], x[1], 4, y=labels[0]).shape == (4, 28, 28, 1)
    score = model.log_likelihood(key, x, y=labels, num_samples=10)
    other = model.log_likelihood(key, x, y=(labels + 1) % k, num_samples=10)
    assert score.shape == (6,) and np.all(np.isfinite(score)) and np.any(score != other)
    codes = encode.encode(model, x, 4, labels)  # the CLI's batches, each given its labels
    np.testing.assert_allclose(codes, model.posterior_mean(x, y=labels), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"conditioned on a class label y in \[0, 60\)"):
        encode.encode(model, x, 4)
    with pytest.raises(ValueError, match=r"class labels in \[0, 60\); got \[60\]"):
        model.elbo(key, x, y=np.full(6, 60))
    with pytest.raises(ValueError, match=r"shape \[6\]; got \(5,\)"):
        model.codes(x, y=labels[:5])


def test_an_unconditional_model_takes_no_y(fake_dir, tmp_path):
    workdir = str(tmp_path / "run")
    experiment.train_and_evaluate(
        _config(fake_dir, **{"data.conditioning": "none", "model.prior": "standard_normal"}),
        workdir,
    )
    model = vaejax.load(workdir)
    with pytest.raises(ValueError, match="not conditioned on anything, so it takes no y"):
        model.sample(jax.random.key(0), 2, y=np.array([0, 1]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.prior": "vampprior"}, "vampprior' encodes pseudo-inputs, which have no label"),
        (
            {"data.conditioning": "none"},
            "conditional_normal' is p\\(z \\| y\\), which needs a label",
        ),
        ({"data.conditioning": "labels"}, "config.data.conditioning"),
    ],
)
def test_conditioning_that_cannot_work_is_refused_before_any_data(tmp_path, overrides, message):
    config = _config(str(tmp_path / "no_data_here"), **overrides)
    with pytest.raises(ConfigError, match=message):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))


def test_a_hierarchy_is_refused_by_name(tmp_path):
    config = ladder.get_config()
    config.data.conditioning = "label"
    with pytest.raises(ConfigError, match="one-stochastic-layer preset.*'ladder' takes no label"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))


def test_given_data_without_labels_is_refused_by_split(tmp_path):
    rng = np.random.default_rng(0)
    split = lambda n: (rng.random((n, 4)) > 0.5).astype(np.float32)
    data = data_lib.Data(
        train=split(40),
        valid=split(8),
        test=split(8),
        train_labels=np.arange(40) % 3,
        preprocessing=data_lib.Preprocessing("static_binarize"),
    )
    config = _config("unused")
    with pytest.raises(ValueError, match="the valid split has none: give Data\\(valid_labels"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"), data=data)


def test_a_given_model_conditioned_on_features_is_refused_by_the_loop(fake_dir, tmp_path):
    """The loop feeds labels: a Features model would be given labels as its features."""
    model = vaejax.networks.mlp_vae(
        data_shape=(28, 28, 1), likelihood=vaejax.Bernoulli(), latent_dim=2, hidden_sizes=(8,)
    ).clone(conditioning=vaejax.Features((3,)))
    for conditioning in ("none", "label"):
        config = _config(fake_dir, **{"data.conditioning": conditioning})
        config.model.prior = "standard_normal"
        with pytest.raises(ConfigError, match="the loop conditions on labels only"):
            experiment.train_and_evaluate(config, str(tmp_path / "run"), model=model)
