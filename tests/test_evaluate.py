"""vaejax.evaluate: closed-form checks of bits/dim, active units and the IWAE estimate."""

import math

import jax
import numpy as np
import pytest

from vaejax import evaluate, likelihoods, networks


def test_bits_per_dim_of_uniform_models():
    d = 784
    # A uniform distribution over 256 levels is 8 bits per dimension in every representation.
    uniform_levels = d * math.log(256)
    assert evaluate.bits_per_dim(uniform_levels, d, preprocessing="integer", info={}) == (
        pytest.approx(8.0)
    )
    # The uniform density on [0, 1) has log-density 0: dequantized, that is 8 bits exactly.
    assert evaluate.bits_per_dim(0.0, d, preprocessing="dequantize", info={}) == (
        pytest.approx(8.0)
    )
    # Density times bin width: the uniform density on [0, 1] with bins of width 1/255.
    bpd = evaluate.bits_per_dim(0.0, d, preprocessing="unit_interval", info={"max_value": 255})
    assert bpd == pytest.approx(math.log2(255))
    # Standardized pixels: a density on (pixel - mean) / std is std times the pixel density.
    bpd = evaluate.bits_per_dim(-d * math.log(4.0), d, preprocessing="standardize", info={"std": 4})
    assert bpd == pytest.approx(0.0, abs=1e-12)
    assert evaluate.bits_per_dim(50.0, d, preprocessing="dynamic_binarize", info={}) is None


def test_active_units_counts_dimensions_with_varying_means():
    rng = np.random.default_rng(0)
    means = np.concatenate([rng.normal(0, 1, (1000, 3)), rng.normal(0, 0.05, (1000, 2))], 1)
    assert evaluate.active_units(means) == 3


def test_iwae_and_nll_share_one_estimator():
    x = (np.random.default_rng(0).random((8, 4, 4, 1)) > 0.5).astype(np.float32)
    model = networks.mlp_vae(
        data_shape=x.shape[1:], likelihood=likelihoods.Bernoulli(), latent_dim=2, hidden_sizes=(8,)
    )
    params = networks.init(model, jax.random.key(0), x)
    out = evaluate.evaluate_test(
        model, params, x, jax.random.key(1), iwae_samples=1, nll_samples=1, batch_size=4
    )
    # With one sample both are the single-sample ELBO with Monte Carlo KL: close to, and on
    # average equal to, the analytic-KL ELBO; exactly equal to each other up to the key.
    assert np.isfinite(out["iwae_1"]) and np.isfinite(out["nll_1"])
    assert abs(out["iwae_1"] - out["elbo"]) < 5 and abs(-out["nll_1"] - out["elbo"]) < 5
    more = evaluate.evaluate_test(
        model, params, x, jax.random.key(1), iwae_samples=200, nll_samples=200, batch_size=4
    )
    # More samples: a tighter bound, and the two estimates agree closely.
    assert more["iwae_200"] >= more["elbo"] - 0.1
    assert abs(more["iwae_200"] + more["nll_200"]) < 0.3
