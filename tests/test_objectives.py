"""ELBO, IWAE and the log-likelihood estimate: identities, a closed-form model, stability."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vaejax
from vaejax import likelihoods as L

RNG = np.random.default_rng(0)

# A linear-Gaussian model with an exact marginal: z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_3),
# so x ~ N(b, W W^T + s^2 I). The encoder is the exact posterior's mean with a diagonal, inflated
# variance: a proposal that is good but not exact, so the ELBO is strictly below log p(x).
W = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = RNG.normal(size=3).astype(np.float32)
SCALE = 0.7
X = RNG.normal(size=(6, 3)).astype(np.float32) * 2


POST_COV = np.linalg.inv(np.eye(2) + W.T.astype(np.float64) @ W / SCALE**2)
POST_GAIN = (POST_COV @ W.T / SCALE**2).astype(np.float32)  # mean = gain (x - b)


def lg_encode(x):
    mean = (x - BIAS[None]) @ POST_GAIN.T
    log_var = np.log(1.5 * np.diag(POST_COV)).astype(np.float32)
    return {"mean": mean, "log_var": jnp.broadcast_to(log_var, mean.shape)}


def lg_decode(z):
    return {"mean": z @ W.T + BIAS[None]}


LG = dict(encode=lg_encode, decode=lg_decode, likelihood=L.Gaussian(SCALE))


def exact_log_marginal(x):
    cov = W.astype(np.float64) @ W.T + SCALE**2 * np.eye(3)
    return stats.multivariate_normal(BIAS, cov).logpdf(x)


def test_elbo_terms_shapes_and_identity():
    t = vaejax.elbo(jax.random.key(0), X, **LG, beta=0.3, num_samples=4)
    assert all(a.shape == (len(X),) for a in t)
    np.testing.assert_allclose(t.objective, t.log_likelihood - 0.3 * t.kl, rtol=1e-6)
    np.testing.assert_allclose(t.elbo, t.log_likelihood - t.kl, rtol=1e-6)  # the bound, beta or not
    bound = vaejax.elbo(jax.random.key(0), X, **LG, num_samples=4000).elbo
    assert np.all(bound <= exact_log_marginal(X) + 0.01)


def test_analytic_and_monte_carlo_kl_agree_on_average():
    a = vaejax.elbo(jax.random.key(1), X, **LG, num_samples=20000)
    m = vaejax.elbo(jax.random.key(1), X, **LG, num_samples=20000, analytic_kl=False)
    np.testing.assert_allclose(m.kl, a.kl, atol=0.03)
    np.testing.assert_allclose(m.log_likelihood, a.log_likelihood)


def test_iwae_with_one_sample_is_the_elbo_with_monte_carlo_kl():
    key = jax.random.key(2)
    iw = vaejax.iwae_bound(key, X, **LG, num_samples=1)
    el = vaejax.elbo(key, X, **LG, num_samples=1, analytic_kl=False).elbo
    np.testing.assert_allclose(iw, el, rtol=1e-6)


def test_iwae_bound_rises_with_samples_towards_log_marginal():
    keys = jax.random.split(jax.random.key(3), 200)
    mean_bound = lambda k: jax.vmap(
        lambda key: vaejax.iwae_bound(key, X, **LG, num_samples=k).mean()
    )(keys).mean()
    bounds = [float(mean_bound(k)) for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2] < exact_log_marginal(X).mean() + 1e-3


def test_estimate_log_likelihood_matches_exact_marginal():
    est = vaejax.estimate_log_likelihood(jax.random.key(4), X, **LG, num_samples=5000)
    np.testing.assert_allclose(est, exact_log_marginal(X), atol=0.02)
    gap = exact_log_marginal(X) - vaejax.elbo(jax.random.key(4), X, **LG, num_samples=5000).elbo
    assert np.all(gap > 0.05)  # the ELBO alone would fail this test


def test_estimate_chunking_remainder_and_jit():
    # 1234 = 2 chunks of 500 + 234: the result must still average over all samples.
    f = lambda key: vaejax.estimate_log_likelihood(key, X, **LG, num_samples=1234, chunk_size=500)
    est = jax.jit(f)(jax.random.key(5))
    np.testing.assert_allclose(est, exact_log_marginal(X), atol=0.05)
    np.testing.assert_allclose(est, f(jax.random.key(5)), rtol=1e-5)
    one = vaejax.estimate_log_likelihood(jax.random.key(5), X, **LG, num_samples=3, chunk_size=1)
    three = jnp.stack(
        [
            vaejax.iwae_bound(jax.random.fold_in(jax.random.key(5), i), X, **LG, num_samples=1)
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(one, jax.nn.logsumexp(three, 0) - math.log(3), rtol=1e-5)


def test_jit_equals_eager():
    f = lambda key: vaejax.elbo(key, X, **LG, num_samples=3)
    for a, b in zip(jax.jit(f)(jax.random.key(6)), f(jax.random.key(6)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def _const_model(lik, logit_or_mean, log_var, shape=(2, 5)):
    """encode/decode that return constant params, to probe extremes of each head."""

    def encode(x):
        return {
            "mean": jnp.zeros((x.shape[0], 2)) + 0.0 * x.sum(),
            "log_var": jnp.full((x.shape[0], 2), log_var),
        }

    def decode(z):
        base = jnp.full(shape, logit_or_mean) + 0.0 * z.sum()
        return {n: base for n in lik.param_names}

    return encode, decode


@pytest.mark.parametrize("name", ["bernoulli", "continuous_bernoulli"])
@pytest.mark.parametrize("logit", [-100.0, -20.0, -1e-4, 0.0, 1e-4, 0.05, 20.0, 100.0])
def test_elbo_gradient_finite_at_extreme_logits(name, logit):
    lik = L.get(name)
    x = jnp.asarray(RNG.random((2, 5)) < 0.5, jnp.float32)

    def loss(t):
        enc, dec = _const_model(lik, t, 0.0)
        return -vaejax.elbo(jax.random.key(0), x, encode=enc, decode=dec, likelihood=lik).elbo.sum()

    v, g = jax.value_and_grad(loss)(logit)
    assert np.isfinite(v) and np.isfinite(g)


@pytest.mark.parametrize("log_var", [-50.0, -20.0, 20.0, 50.0])
@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_gradient_finite_at_extreme_log_variance(log_var, analytic_kl):
    lik = L.Bernoulli()
    x = jnp.ones((2, 5))

    def loss(lv):
        enc, dec = _const_model(lik, 0.0, lv)
        t = vaejax.elbo(
            jax.random.key(0), x, encode=enc, decode=dec, likelihood=lik, analytic_kl=analytic_kl
        )
        return -t.elbo.sum()

    v, g = jax.value_and_grad(loss)(log_var)
    assert np.isfinite(v) and np.isfinite(g)


def test_bad_num_samples():
    for fn in (vaejax.elbo, vaejax.iwae_bound, vaejax.estimate_log_likelihood):
        with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1; got 0"):
            fn(jax.random.key(0), X, **LG, num_samples=0)
    with pytest.raises(ValueError, match=r"got 0"):
        vaejax.estimate_log_likelihood(jax.random.key(0), X, **LG, num_samples=10, chunk_size=0)


def test_decoder_output_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"'mean' has shape \(6, 4\).*\(6, 3\)"):
        vaejax.elbo(
            jax.random.key(0),
            X,
            encode=lg_encode,
            decode=lambda z: {"mean": jnp.zeros((z.shape[0], 4))},
            likelihood=L.Gaussian(),
        )
