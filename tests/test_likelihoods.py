"""Likelihoods against scipy.stats / float64 closed forms, stability and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vaejax import likelihoods as L

RNG = np.random.default_rng(0)
B, SHAPE = 3, (4, 5)


def _logits():
    return RNG.normal(0, 3, (B, *SHAPE)).astype(np.float32)


def test_bernoulli_matches_scipy():
    logits = _logits()
    x = (RNG.random((B, *SHAPE)) < 0.5).astype(np.float32)
    got = L.Bernoulli().log_prob({"logits": jnp.asarray(logits)}, x)
    p = special.expit(logits.astype(np.float64))
    want = stats.bernoulli.logpmf(x, p).reshape(B, -1).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.shape == (B,)


@pytest.mark.parametrize("logit", [-100.0, -30.0, 0.0, 30.0, 100.0])
def test_bernoulli_stable_at_extreme_logits(logit):
    lik = L.Bernoulli()
    for xv in (0.0, 1.0):
        x = jnp.full((1, 2), xv)
        f = lambda t, x=x: lik.log_prob({"logits": jnp.full((1, 2), t)}, x).sum()
        v, g = jax.value_and_grad(f)(logit)
        want = 2 * (xv * logit - np.logaddexp(0, logit))
        np.testing.assert_allclose(v, want, rtol=1e-6, atol=1e-6)
        assert np.isfinite(g)


def test_softplus_gradient_is_sigmoid_everywhere():
    t = jnp.array([-50.0, -1.0, 0.0, 1.0, 50.0])
    g = jax.vmap(jax.grad(L.softplus))(t)
    np.testing.assert_allclose(g, jax.nn.sigmoid(t), rtol=1e-6)
    np.testing.assert_allclose(L.softplus(t), jax.nn.softplus(t), rtol=1e-6)


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_gaussian_matches_scipy(scale):
    mean = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    x = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    got = L.Gaussian(scale).log_prob({"mean": jnp.asarray(mean)}, x)
    want = stats.norm.logpdf(x, mean, scale).reshape(B, -1).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("floor", [0.0, 1e-3, 0.5])
def test_learned_gaussian_matches_scipy(floor):
    mean = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    log_var = RNG.normal(0, 2, (B, *SHAPE)).astype(np.float32)
    x = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    lik = L.LearnedGaussian(variance_floor=floor)
    got = lik.log_prob({"mean": jnp.asarray(mean), "log_var": jnp.asarray(log_var)}, x)
    var = floor + np.exp(log_var.astype(np.float64))
    want = stats.norm.logpdf(x, mean, np.sqrt(var)).reshape(B, -1).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_learned_gaussian_floor_bounds_the_density():
    """Without a floor the density of a constant pixel grows without bound; with it, it stops."""
    x = jnp.zeros((1, 1))
    for floor, bounded in ((0.0, False), (1e-3, True)):
        lik = L.LearnedGaussian(variance_floor=floor)
        lp = [lik.log_prob({"mean": x, "log_var": jnp.full((1, 1), v)}, x)[0] for v in (-20, -60)]
        limit = -0.5 * (math.log(floor) + math.log(2 * math.pi)) if floor else None
        if bounded:
            assert lp[1] <= limit + 1e-4
        else:
            assert lp[1] > lp[0] + 15


@pytest.mark.parametrize("floor", [0.0, 1e-3])
def test_shared_variance_is_one_learned_scalar_and_matches_scipy(floor):
    lik = L.LearnedGaussian(variance_floor=floor, shared_variance=True)
    assert lik.param_shapes(SHAPE) == {"mean": SHAPE, "log_var": ()}
    mean = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    log_var = RNG.normal(0, 2, (B,)).astype(np.float32)  # one value per example: [B]
    x = RNG.normal(size=(B, *SHAPE)).astype(np.float32)
    params = {"mean": jnp.asarray(mean), "log_var": jnp.asarray(log_var)}
    got = lik.log_prob(params, x)
    std = np.sqrt(floor + np.exp(log_var.astype(np.float64)))[:, None, None]
    want = stats.norm.logpdf(x, mean, std).reshape(B, -1).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    draws = lik.sample(jax.random.key(0), {**params, "mean": jnp.zeros((B, 2000))})
    np.testing.assert_allclose(np.std(np.asarray(draws), axis=1), std[:, 0, 0], rtol=0.1)


def test_shared_variance_output_bias_is_the_mean_variance():
    x = RNG.normal(size=(500, 6)) * np.arange(1, 7)
    bias = L.LearnedGaussian(variance_floor=0.0, shared_variance=True).output_bias(x)
    assert bias["log_var"].shape == () and bias["mean"].shape == (6,)
    np.testing.assert_allclose(np.exp(bias["log_var"]), x.var(0).mean(), rtol=1e-5)


def _cb_log_norm_f64(logits):
    """log C(lambda) in float64 from its definition in lambda (eq. 7 of the CB paper).

    Where lambda rounds to 0 or 1 in float64 (|logit| > 30) the definition cannot be evaluated;
    there C = |l| / tanh(|l| / 2) with tanh = 1 to 1e-26.
    """
    logits = np.asarray(logits, np.float64)
    lam = special.expit(logits)
    out = np.full_like(lam, math.log(2.0))
    far = (np.abs(lam - 0.5) > 1e-12) & (np.abs(logits) <= 30)
    t = 1 - 2 * lam[far]
    out[far] = np.log(2 * np.arctanh(t) / t)
    huge = np.abs(logits) > 30
    out[huge] = np.log(np.abs(logits[huge]))
    return out


def test_cb_normalizer_against_float64():
    lam = np.concatenate([np.linspace(0.49, 0.51, 201), np.linspace(0.01, 0.99, 99)])
    logits = special.logit(lam)
    logits = np.concatenate([logits, [-50.0, -20.0, -1e-3, 0.0, 1e-7, 0.0999, 0.1001, 20.0, 50.0]])
    got = L.cb_log_normalizer(jnp.asarray(logits, jnp.float32))
    want = _cb_log_norm_f64(logits.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_cb_log_prob_is_a_normalized_density():
    """Integrate exp(log p) over [0, 1] numerically: 1 for every lambda, including 0.5."""
    xs = np.linspace(0, 1, 20001)
    lik = L.ContinuousBernoulli()
    for logit in (-50.0, -3.0, -0.01, 0.0, 0.05, 2.0, 50.0):
        logits = jnp.full((xs.size, 1), logit)
        dens = np.exp(np.asarray(lik.log_prob({"logits": logits}, xs[:, None]), np.float64))
        np.testing.assert_allclose(np.trapezoid(dens, xs), 1.0, rtol=2e-4)


@pytest.mark.parametrize("logit", [-100.0, -50.0, -1e-3, 0.0, 1e-3, 0.05, 50.0, 100.0])
def test_cb_value_and_gradient_finite(logit):
    lik = L.ContinuousBernoulli()
    x = jnp.array([[0.0, 0.3, 1.0]])
    f = lambda t: lik.log_prob({"logits": jnp.full((1, 3), t)}, x).sum()
    v, g = jax.value_and_grad(f)(logit)
    assert np.isfinite(v) and np.isfinite(g)
    gm = jax.grad(lambda t: L.cb_mean(t))(logit)
    assert np.isfinite(gm)


def test_cb_mean_and_sampler_match_numerical_integration():
    xs = np.linspace(0, 1, 200001)
    lik = L.ContinuousBernoulli()
    for logit in (-60.0, -4.0, -0.02, 0.0, 0.07, 1.5, 60.0):
        log_c = _cb_log_norm_f64(np.array([logit]))[0]
        dens = np.exp(xs * logit - np.logaddexp(0.0, logit) + log_c)
        want = np.trapezoid(xs * dens, xs)
        params = {"logits": jnp.full((1, 1), logit)}
        np.testing.assert_allclose(lik.mean(params)[0, 0], want, rtol=1e-4, atol=1e-5)
        draws = lik.sample(jax.random.key(3), {"logits": jnp.full((20000, 1), logit)})
        assert float(draws.min()) >= 0 and float(draws.max()) <= 1
        np.testing.assert_allclose(draws.mean(), want, atol=0.01)


def test_categorical_matches_hand_log_softmax():
    logits = RNG.normal(size=(B, 6, 256)).astype(np.float32)
    x = RNG.integers(0, 256, (B, 6))
    got = L.Categorical(256).log_prob({"logits": jnp.asarray(logits)}, x)
    lg = logits.astype(np.float64)
    log_soft = lg - special.logsumexp(lg, axis=-1, keepdims=True)
    want = np.take_along_axis(log_soft, x[..., None], -1)[..., 0].sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    probs = np.exp(log_soft)
    np.testing.assert_allclose(
        L.Categorical(256).mean({"logits": jnp.asarray(logits)}), probs @ np.arange(256), rtol=1e-4
    )


@pytest.mark.parametrize("name", L.names())
def test_sample_and_mean_shapes_and_support(name):
    lik = L.get(name)
    data_shape = (3, 2)
    params = {
        n: jnp.asarray(RNG.normal(size=(B, *s)), jnp.float32)
        for n, s in lik.param_shapes(data_shape).items()
    }
    s = lik.sample(jax.random.key(0), params)
    assert s.shape == (B, *data_shape)
    assert lik.mean(params).shape == (B, *data_shape)
    lik.check_data(np.asarray(s))  # samples are in the support
    assert lik.log_prob(params, s).shape == (B,)


@pytest.mark.parametrize("name", L.names())
def test_jit_equals_eager(name):
    lik = L.get(name)
    params = {
        n: jnp.asarray(RNG.normal(size=(B, *s)), jnp.float32)
        for n, s in lik.param_shapes((4,)).items()
    }
    x = lik.sample(jax.random.key(1), params)
    np.testing.assert_allclose(
        jax.jit(lik.log_prob)(params, x), lik.log_prob(params, x), rtol=1e-6, atol=1e-4
    )


# ---------------------------------------------------------------------------- bad input


def test_bernoulli_rejects_grayscale_with_the_fix():
    with pytest.raises(ValueError, match=r"\{0, 1\}.*0.5.*Binarize.*ContinuousBernoulli"):
        L.Bernoulli().check_data(np.array([[0.0, 0.5, 1.0]]))


def test_continuous_bernoulli_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        L.ContinuousBernoulli().check_data(np.array([[0.0, 255.0]]))


def test_categorical_rejects_non_integers_and_large_values():
    with pytest.raises(ValueError, match="non-integers"):
        L.Categorical().check_data(np.array([[0.5, 3.0]]))
    with pytest.raises(ValueError, match=r"\[0, 256\).*256"):
        L.Categorical().check_data(np.array([[0, 256]]))


@pytest.mark.parametrize("name", L.names())
def test_non_finite_data_rejected(name):
    with pytest.raises(ValueError, match="non-finite"):
        L.get(name).check_data(np.array([[0.0, np.nan]]))


def test_missing_param_and_wrong_shape():
    lik = L.LearnedGaussian()
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"missing \['log_var'\]"):
        lik.log_prob({"mean": x}, x)
    with pytest.raises(ValueError, match=r"'logits' has shape \(2, 4\).*\(2, 3\)"):
        L.Bernoulli().log_prob({"logits": jnp.zeros((2, 4))}, x)
    with pytest.raises(ValueError, match=r"\(2, 3, 256\)"):
        L.Categorical().log_prob({"logits": jnp.zeros((2, 3, 10))}, x)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="bernoulli.*categorical.*continuous_bernoulli"):
        L.get("laplace")


@pytest.mark.parametrize(
    "make", [lambda: L.Gaussian(0.0), lambda: L.LearnedGaussian(-1.0), lambda: L.Categorical(1)]
)
def test_bad_hyperparameters(make):
    with pytest.raises(ValueError):
        make()
