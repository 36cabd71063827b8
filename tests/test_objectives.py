"""ELBO, IWAE and the log-likelihood estimate: identities, a closed-form model, stability."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vaejax
from vaejax import likelihoods as L
from vaejax import priors

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
    assert all(a.shape == (len(X),) for a in t[:4])
    (kl,), (kl_per_dim,) = t.kl_per_layer, t.kl_per_dim  # one stochastic layer
    np.testing.assert_array_equal(kl, t.kl)
    np.testing.assert_allclose(kl_per_dim.sum(-1), t.kl, rtol=1e-6)
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


# ---- pluggable priors: linear-Gaussian models with closed-form marginals


def _lg_model_with_prior(prior_means, prior_log_scales, logits):
    """x | z ~ N(W z + b, s^2 I) under a mixture-of-Gaussians prior (one component: a Gaussian).

    Returns the prior, the exact log p(X) (float64) and an encoder whose proposal is the
    moment-matched posterior with its variance doubled: good, not exact.
    """
    m, ls, lg = (np.asarray(a, np.float64) for a in (prior_means, prior_log_scales, logits))
    w_k = np.exp(lg - np.logaddexp.reduce(lg))
    cov_x = [W @ np.diag(np.exp(2 * s)) @ W.T + SCALE**2 * np.eye(3) for s in ls]
    comp = [
        stats.multivariate_normal(W @ mk + BIAS, c).logpdf(X)
        for mk, c in zip(m, cov_x, strict=True)
    ]
    exact = np.logaddexp.reduce(np.log(w_k)[:, None] + np.stack(comp), axis=0)
    # Each component's exact posterior, then the mixture's moments.
    resp = np.exp(np.log(w_k)[:, None] + np.stack(comp) - exact)  # [K, B]
    means, second = 0.0, 0.0
    for k in range(len(w_k)):
        cov = np.linalg.inv(np.diag(np.exp(-2 * ls[k])) + W.T @ W / SCALE**2)
        mu = (cov @ (W.T @ (X - BIAS).T / SCALE**2 + (m[k] / np.exp(2 * ls[k]))[:, None])).T
        means = means + resp[k][:, None] * mu
        second = second + resp[k][:, None] * (mu**2 + np.diag(cov))
    log_var = np.log(2.0 * (second - means**2)).astype(np.float32)
    q = {"mean": jnp.asarray(means, jnp.float32), "log_var": jnp.asarray(log_var)}
    if len(w_k) == 1:
        prior = priors.Normal(jnp.asarray(m[0], jnp.float32), jnp.asarray(ls[0], jnp.float32))
    else:
        prior = priors.MixtureOfGaussians(*(jnp.asarray(a, jnp.float32) for a in (lg, m, ls)))
    model = dict(encode=lambda x: q, decode=lg_decode, likelihood=L.Gaussian(SCALE), prior=prior)
    return model, exact


PRIOR_CASES = {
    "normal": ([[1.0, -0.5]], [[np.log(0.6), np.log(1.4)]], [0.0]),
    "mixture": ([[-1.0, 0.5], [1.0, -0.5]], [[np.log(0.7)] * 2, [np.log(0.5)] * 2], [0.3, -0.3]),
}


@pytest.mark.parametrize("case", sorted(PRIOR_CASES))
def test_log_likelihood_with_a_learned_prior_matches_the_exact_marginal(case):
    model, exact = _lg_model_with_prior(*PRIOR_CASES[case])
    key = jax.random.key(7)
    est = vaejax.estimate_log_likelihood(key, X, **model, num_samples=5000, chunk_size=1000)
    np.testing.assert_allclose(est, exact, atol=0.02)
    # Expectations over 200 keys: the bounds sit below log p(x) and rise with k.
    keys = jax.random.split(key, 200)
    mean_over_keys = lambda f: float(jax.vmap(f)(keys).mean())
    bounds = [
        mean_over_keys(lambda k, s=s: vaejax.iwae_bound(k, X, **model, num_samples=s))
        for s in (1, 10, 100)
    ]
    elbo = mean_over_keys(lambda k: vaejax.elbo(k, X, **model).elbo)
    assert elbo < bounds[1] < bounds[2] < exact.mean() + 0.01
    assert abs(bounds[0] - elbo) < 0.05  # IWAE-1 is the ELBO up to Monte Carlo noise


def test_analytic_kl_to_a_diagonal_normal_prior_matches_monte_carlo():
    model, _ = _lg_model_with_prior(*PRIOR_CASES["normal"])
    key = jax.random.key(3)
    analytic = vaejax.elbo(key, X, **model, analytic_kl=True).kl
    q, post, prior = model["encode"](X), vaejax.DiagonalGaussian(), model["prior"]
    z, log_q = post.sample_and_log_prob(key, q, 200_000)
    diff = np.asarray(log_q - prior.log_prob(z), np.float64)  # [S, B]
    stderr = diff.std(0) / np.sqrt(len(diff))
    assert np.all(np.abs(analytic - diff.mean(0)) < 4 * stderr), (analytic, diff.mean(0), stderr)
    mc = vaejax.elbo(key, X, **model, analytic_kl=False, num_samples=1000).kl
    np.testing.assert_allclose(mc, analytic, atol=6 * stderr.max() * np.sqrt(200))
    # The default takes the closed form where the pair has one.
    np.testing.assert_array_equal(vaejax.elbo(key, X, **model).kl, analytic)


def test_no_closed_form_kl_is_refused_by_name_and_monte_carlo_is_the_default():
    model, exact = _lg_model_with_prior(*PRIOR_CASES["mixture"])
    with pytest.raises(ValueError, match="No closed-form KL.*DiagonalGaussian.*MixtureOfGaussians"):
        vaejax.elbo(jax.random.key(0), X, **model, analytic_kl=True)
    bound = vaejax.elbo(jax.random.key(0), X, **model, num_samples=4000).elbo
    assert np.all(bound < exact + 0.01)


def test_a_users_own_prior_plugs_in_without_registration():
    class Laplace:  # any object with log_prob and sample
        def log_prob(self, z):
            return (-jnp.abs(z) - math.log(2.0)).sum(-1)

        def sample(self, key, shape):
            return jax.random.laplace(key, (*shape, 2))

    terms = vaejax.elbo(jax.random.key(0), X, **LG, prior=Laplace(), num_samples=3)
    want_kl = vaejax.elbo(jax.random.key(0), X, **LG, num_samples=3, analytic_kl=False).kl
    assert terms.kl.shape == (len(X),) and not np.allclose(terms.kl, want_kl)


# ---- gradient estimators: same expectation, lower variance


def _grads(estimator, num_samples, keys, objective="iwae"):
    """Per-key gradients of the bound's batch mean w.r.t. a linear encoder and decoder."""
    rng = np.random.default_rng(1)
    params = {
        "enc": jnp.asarray(POST_GAIN + 0.1 * rng.normal(size=POST_GAIN.shape), jnp.float32),
        "log_var": jnp.asarray(np.log(np.diag(POST_COV)) + 0.3, jnp.float32),
        "dec": jnp.asarray(W + 0.1 * rng.normal(size=W.shape), jnp.float32),
    }

    def bound(p, key):
        encode = lambda x: {
            "mean": (x - BIAS[None]) @ p["enc"].T,
            "log_var": jnp.broadcast_to(p["log_var"], (x.shape[0], 2)),
        }
        decode = lambda z: {"mean": z @ p["dec"].T + BIAS[None]}
        common = dict(encode=encode, decode=decode, likelihood=L.Gaussian(SCALE))
        if objective == "elbo":
            return vaejax.elbo(
                key, X, **common, analytic_kl=False, gradient_estimator=estimator
            ).elbo.mean()
        return vaejax.iwae_bound(
            key, X, **common, num_samples=num_samples, gradient_estimator=estimator
        ).mean()

    return jax.vmap(jax.grad(bound), in_axes=(None, 0))(params, keys)


def _snr(g):
    return float(np.mean(np.abs(g.mean(0)) / (g.std(0) + 1e-12)))


def test_dreg_same_expected_encoder_gradient_lower_variance_decoder_unchanged():
    keys = jax.random.split(jax.random.key(0), 4000)
    plain, dreg = _grads("reparameterized", 10, keys), _grads("dreg", 10, keys)
    # The decoder's gradient is the IWAE gradient itself, key by key.
    np.testing.assert_allclose(dreg["dec"], plain["dec"], rtol=1e-4, atol=1e-5)
    for name in ("enc", "log_var"):
        a, b = np.asarray(plain[name]), np.asarray(dreg[name])
        stderr = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * stderr + 1e-6), name
        assert _snr(b) > _snr(a), name  # DReG's signal-to-noise ratio is higher


def test_stl_elbo_same_expected_gradient_lower_variance():
    keys = jax.random.split(jax.random.key(1), 4000)
    plain = _grads("reparameterized", 1, keys, objective="elbo")
    stl = _grads("stl", 1, keys, objective="elbo")
    np.testing.assert_allclose(stl["dec"], plain["dec"], rtol=1e-4, atol=1e-5)
    for name in ("enc", "log_var"):
        a, b = np.asarray(plain[name]), np.asarray(stl[name])
        stderr = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * stderr + 1e-6), name
        assert b.var(0).sum() < a.var(0).sum(), name


def test_gradient_estimators_keep_the_value_and_refuse_unknown_names():
    key = jax.random.key(2)
    values = [
        vaejax.iwae_bound(key, X, **LG, num_samples=8, gradient_estimator=e)
        for e in ("reparameterized", "stl", "dreg")
    ]
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6)
    np.testing.assert_allclose(values[2], values[0], rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown gradient_estimator 'drg'.*'dreg'"):
        vaejax.iwae_bound(key, X, **LG, num_samples=2, gradient_estimator="drg")
    with pytest.raises(ValueError, match="Unknown gradient_estimator 'dreg'.*'stl'"):
        vaejax.elbo(key, X, **LG, gradient_estimator="dreg")
