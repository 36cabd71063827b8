"""vaejax.priors: log-densities against float64 references, sampling, learned modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vaejax import posteriors, priors

RNG = np.random.default_rng(0)


def _mixture_reference(z, logits, means, log_scales):
    """float64 log sum_k w_k prod_d N(z_d; m_kd, s_kd), term by term."""
    log_w = logits - special.logsumexp(logits)
    comp = stats.norm.logpdf(z[..., None, :], means, np.exp(log_scales)).sum(-1)
    return special.logsumexp(log_w + comp, axis=-1)


def test_standard_normal_and_normal_against_scipy():
    z = RNG.normal(size=(4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(
        priors.StandardNormal().log_prob(z), stats.norm.logpdf(z).sum(-1), rtol=1e-5
    )
    mean, log_scale = RNG.normal(size=5), RNG.normal(size=5) * 0.5
    p = priors.Normal(jnp.asarray(mean, jnp.float32), jnp.asarray(log_scale, jnp.float32))
    want = stats.norm.logpdf(z, mean, np.exp(log_scale)).sum(-1)
    np.testing.assert_allclose(p.log_prob(z), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 0.05], ids=["wide", "narrow"])
def test_mixture_log_prob_against_float64(scale):
    k, d = 7, 6
    logits, means = RNG.normal(size=k), RNG.normal(size=(k, d)) * 2
    log_scales = np.log(scale) + 0.3 * RNG.normal(size=(k, d))
    # Points near the components too, where the expanded squares cancel most.
    z = np.concatenate(
        [RNG.normal(size=(20, d)) * 2, means + 0.1 * scale * RNG.normal(size=(k, d))]
    )
    mog = priors.MixtureOfGaussians(
        *(jnp.asarray(a, jnp.float32) for a in (logits, means, log_scales))
    )
    np.testing.assert_allclose(
        mog.log_prob(z.astype(np.float32)),
        _mixture_reference(z, logits, means, log_scales),
        rtol=2e-5,
        # The expanded squares cancel in float32: about 1e-6 of m^2 / s^2 (1600 here).
        atol=5e-3 if scale < 1 else 2e-4,
    )


def test_mixture_log_prob_of_collapsed_narrow_components_far_from_the_origin():
    # A VampPrior on an unused layer: every component and the posterior share one mean, far
    # from 0, with tiny scales. Expanded about the origin, float32 lost nats here.
    k, d = 5, 16
    means = np.full((k, d), 60.0) + RNG.normal(size=d)
    log_scales = -5.0 + 0.1 * RNG.normal(size=(k, d))
    z = means[:1] + np.exp(log_scales[:1]) * RNG.normal(size=(50, d))
    mog = priors.MixtureOfGaussians(
        *(jnp.asarray(a, jnp.float32) for a in (np.zeros(k), means, log_scales))
    )
    np.testing.assert_allclose(
        mog.log_prob(z.astype(np.float32)),
        _mixture_reference(z.astype(np.float32), np.zeros(k), means, log_scales),
        atol=2e-3,
    )


def test_mixture_samples_follow_the_weights_and_components():
    logits = jnp.log(jnp.asarray([0.2, 0.8]))
    means = jnp.asarray([[-5.0, 0.0], [5.0, 1.0]])
    mog = priors.MixtureOfGaussians(logits, means, jnp.log(jnp.full((2, 2), 0.5)))
    z = np.asarray(mog.sample(jax.random.key(0), (20000,)))
    assert z.shape == (20000, 2)
    right = z[:, 0] > 0
    assert abs(right.mean() - 0.8) < 0.01
    np.testing.assert_allclose(z[right].mean(0), [5.0, 1.0], atol=0.02)
    np.testing.assert_allclose(z[right].std(0), [0.5, 0.5], atol=0.02)


def test_vampprior_is_the_uniform_mixture_of_the_encoders_posteriors():
    posterior = posteriors.DiagonalGaussian("log_var")
    w = RNG.normal(size=(4, 6)).astype(np.float32)

    def encode(x):
        h = x.reshape(len(x), -1) @ w
        return {"mean": h[:, :3], "log_var": h[:, 3:]}

    prior = priors.VampPrior(num_pseudo_inputs=5, data_shape=(2, 2), posterior=posterior)
    params = prior.init(jax.random.key(0), encode)
    u = np.asarray(params["params"]["pseudo_inputs"], np.float64).reshape(5, 4)
    dist = prior.apply(params, encode)
    h = u @ w
    z = RNG.normal(size=(10, 3))
    want = _mixture_reference(z, np.zeros(5), h[:, :3], 0.5 * h[:, 3:])
    np.testing.assert_allclose(dist.log_prob(z.astype(np.float32)), want, rtol=1e-5, atol=1e-4)


def test_learned_priors_start_where_documented():
    normal = priors.LearnedNormal(latent_dim=3)
    dist = normal.apply(normal.init(jax.random.key(0)))
    np.testing.assert_allclose(dist.log_prob(np.zeros((1, 3))), stats.norm.logpdf(0) * 3)
    mix = priors.LearnedMixture(latent_dim=3, num_components=4)
    dist = mix.apply(mix.init(jax.random.key(0)))
    assert dist.means.shape == (4, 3) and np.all(np.asarray(dist.logits) == 0)


def test_bad_prior_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown prior 'vamp'.*'vampprior'"):
        priors.make("vamp", latent_dim=2, data_shape=(4,), posterior=None)
    with pytest.raises(ValueError, match="num_components must be >= 1; got 0"):
        priors.make("mixture", latent_dim=2, data_shape=(4,), posterior=None, num_components=0)
    with pytest.raises(ValueError, match="num_pseudo_inputs must be >= 1; got 0"):
        priors.make("vampprior", latent_dim=2, data_shape=(4,), posterior=None, num_components=0)
    with pytest.raises(ValueError, match="latent_dim to sample"):
        priors.StandardNormal().sample(jax.random.key(0), (2,))
