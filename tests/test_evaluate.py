"""vaejax.evaluate: closed-form checks of bits/dim, active units and the IWAE estimate."""

import math

import chex
import jax
import numpy as np
import pytest

from vaejax import evaluate, likelihoods, networks, objectives
from vaejax.data import Preprocessing


def test_bits_per_dim_of_uniform_models():
    d = 784
    # A uniform distribution over 256 levels is 8 bits per dimension in every representation.
    uniform_levels = d * math.log(256)
    assert evaluate.bits_per_dim(uniform_levels, d, Preprocessing("integer")) == pytest.approx(8.0)
    # The uniform density on [0, 1) has log-density 0: dequantized, that is 8 bits exactly.
    assert evaluate.bits_per_dim(0.0, d, Preprocessing("dequantize")) == pytest.approx(8.0)
    # Density times bin width: the uniform density on [0, 1] with bins of width 1/255.
    bpd = evaluate.bits_per_dim(0.0, d, Preprocessing("unit_interval", max_value=255))
    assert bpd == pytest.approx(math.log2(255))
    # Standardized pixels: a density on (pixel - mean) / std is std times the pixel density.
    bpd = evaluate.bits_per_dim(-d * math.log(4.0), d, Preprocessing("standardize", std=4.0))
    assert bpd == pytest.approx(0.0, abs=1e-12)
    assert evaluate.bits_per_dim(50.0, d, Preprocessing("dynamic_binarize")) is None
    assert evaluate.bits_per_dim(50.0, d, Preprocessing("none")) is None


def test_active_units_counts_dimensions_with_varying_means():
    rng = np.random.default_rng(0)
    means = np.concatenate([rng.normal(0, 1, (1000, 3)), rng.normal(0, 0.05, (1000, 2))], 1)
    assert evaluate.active_units(means) == 3


def test_iwae_and_nll_share_one_estimator():
    """IWAE-k and the NLL-k estimate are one estimator, `log_px`, with the decoder run in chunks
    or not; with one sample it is the single-sample ELBO with a Monte Carlo KL."""
    n = 1000
    x = (np.random.default_rng(0).random((n, 4, 4, 1)) > 0.5).astype(np.float32)
    model = networks.mlp_vae(
        data_shape=x.shape[1:], likelihood=likelihoods.Bernoulli(), latent_dim=2, hidden_sizes=(8,)
    )
    params = networks.init(model, jax.random.key(0), x)
    encode, decode = networks.bind(model, params)
    key = jax.random.key(1)

    # The same key: exactly the single-sample ELBO with a Monte Carlo KL (chunk i of the
    # estimate draws its samples with fold_in(key, i)).
    one = evaluate.log_px(model, params, key, x, num_samples=1, chunk_size=1)
    chex.assert_shape(one, (n,))
    mc_elbo = objectives.elbo(
        jax.random.fold_in(key, 0),
        x,
        encode=encode,
        decode=decode,
        likelihood=model.likelihood,
        posterior=model.posterior,
        analytic_kl=False,
    ).elbo
    np.testing.assert_allclose(one, mc_elbo, rtol=1e-6)

    # Other keys: equal on average, to within 4 standard errors of the mean over the n examples.
    analytic = evaluate.elbo_terms(model, params, x, jax.random.key(2))["elbo"]
    se_1 = np.std(np.asarray(one) - analytic) / math.sqrt(n)
    out = evaluate.evaluate_test(
        model, params, x, key, iwae_samples=1, nll_samples=1, batch_size=500
    )
    assert abs(out["iwae_1"] - out["elbo"]) < 4 * se_1
    assert abs(out["iwae_1"] + out["nll_1"]) < 4 * se_1

    # 200 samples, the NLL's in chunks of 50: a tighter bound, and the two estimates agree to
    # within 4 standard errors of their difference (about 0.005 nats here).
    draws = [
        evaluate.log_px(model, params, jax.random.key(s), x, num_samples=200, chunk_size=c)
        for s, c in ((3, 200), (4, 50))
    ]
    se_200 = np.std(np.asarray(draws[0] - draws[1])) / math.sqrt(n)
    more = evaluate.evaluate_test(
        model, params, x, key, iwae_samples=200, nll_samples=200, nll_chunk_size=50, batch_size=500
    )
    assert more["iwae_200"] > out["iwae_1"] + 4 * se_1 and more["iwae_200"] > more["elbo"]
    assert abs(more["iwae_200"] + more["nll_200"]) < 4 * se_200
