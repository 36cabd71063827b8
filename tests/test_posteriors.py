"""DiagonalGaussian against scipy, the three parameterizations, analytic KL against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vaejax.posteriors import DiagonalGaussian, standard_normal_log_prob

RNG = np.random.default_rng(0)
B, D = 4, 3
MEAN = RNG.normal(size=(B, D)).astype(np.float32)
STD = np.exp(RNG.normal(0, 0.5, (B, D))).astype(np.float32)


def _params(parameterization):
    """Raw head values that all mean std = STD."""
    floor = DiagonalGaussian().softplus_floor
    raw = {
        "log_var": 2 * np.log(STD),
        "log_sigma": np.log(STD),
        "softplus": np.log(np.expm1(STD.astype(np.float64) - floor)),
    }[parameterization]
    q = DiagonalGaussian(parameterization)
    return q, {"mean": jnp.asarray(MEAN), q.param_names[1]: jnp.asarray(raw, jnp.float32)}


@pytest.mark.parametrize("parameterization", ["log_var", "log_sigma", "softplus"])
def test_equivalent_raw_values_give_the_same_distribution(parameterization):
    q, params = _params(parameterization)
    np.testing.assert_allclose(q.stddev(params), STD, rtol=1e-5)
    z = RNG.normal(size=(5, B, D)).astype(np.float32)
    want = stats.norm.logpdf(z, MEAN, STD).sum(-1)
    np.testing.assert_allclose(q.log_prob(params, z), want, rtol=1e-5)
    np.testing.assert_allclose(q.log_prob(params, z[0]), want[0], rtol=1e-5)
    want_kl = (np.log(1 / STD) + (STD**2 + MEAN**2) / 2 - 0.5).sum(-1)
    np.testing.assert_allclose(q.kl_standard_normal(params), want_kl, rtol=1e-5)


def test_param_names():
    assert DiagonalGaussian().param_names == ("mean", "log_var")
    assert DiagonalGaussian("log_sigma").param_names == ("mean", "log_sigma")
    assert DiagonalGaussian("softplus").param_names == ("mean", "raw_std")


def test_sample_shapes_and_moments():
    q, params = _params("log_var")
    assert q.sample(jax.random.key(0), params).shape == (B, D)
    z = q.sample(jax.random.key(0), params, num_samples=20000)
    assert z.shape == (20000, B, D)
    np.testing.assert_allclose(z.mean(0), MEAN, atol=0.05)
    np.testing.assert_allclose(z.std(0), STD, rtol=0.03)


def test_analytic_kl_matches_monte_carlo():
    q, params = _params("log_var")
    z = q.sample(jax.random.key(1), params, num_samples=200000)
    mc = (q.log_prob(params, z) - standard_normal_log_prob(z)).mean(0)
    np.testing.assert_allclose(q.kl_standard_normal(params), mc, rtol=0.02, atol=0.01)
    np.testing.assert_allclose(q.kl_per_dim(params).sum(-1), q.kl_standard_normal(params))


def test_standard_normal_log_prob():
    z = RNG.normal(size=(B, D))
    np.testing.assert_allclose(standard_normal_log_prob(z), stats.norm.logpdf(z).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("log_var", [-60.0, -30.0, 30.0, 60.0])
def test_gradients_finite_at_extreme_log_variance(log_var):
    q = DiagonalGaussian()

    def f(lv):
        params = {"mean": jnp.zeros((1, 2)), "log_var": jnp.full((1, 2), lv)}
        z = q.sample(jax.random.key(0), params)
        return (q.log_prob(params, jax.lax.stop_gradient(z)) + q.kl_standard_normal(params)).sum()

    v, g = jax.value_and_grad(f)(log_var)
    assert np.isfinite(v) and np.isfinite(g)


def test_bad_input():
    with pytest.raises(ValueError, match=r"'log_std'.*valid.*log_sigma.*log_var.*softplus"):
        DiagonalGaussian("log_std")
    q, params = _params("log_var")
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
            q.sample(jax.random.key(0), params, num_samples=bad)
    with pytest.raises(ValueError, match=r"missing \['log_sigma'\]"):
        DiagonalGaussian("log_sigma").stddev(params)


def test_a_collapsed_scale_keeps_the_density_finite():
    """Was: a diverged run's log_var of -859 gave exp(429.5) = inf times z - mean = 0: NaN."""
    q = {"mean": jnp.ones((2, 3)), "log_var": jnp.full((2, 3), -859.0)}
    z = DiagonalGaussian("log_var").sample(jax.random.key(0), q, 4)  # std underflows: z = mean
    log_q = DiagonalGaussian("log_var").log_prob(q, z)
    np.testing.assert_allclose(log_q, 3 * (429.5 - 0.5 * np.log(2 * np.pi)), rtol=1e-6)
    ordinary = {"mean": jnp.zeros((1, 1)), "log_var": jnp.zeros((1, 1))}  # unchanged there
    np.testing.assert_allclose(
        DiagonalGaussian().log_prob(ordinary, jnp.ones((1, 1))), stats.norm.logpdf(1.0), rtol=1e-6
    )
