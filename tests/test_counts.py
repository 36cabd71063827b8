"""Count likelihoods against scipy.stats in float64; dispersion heads; the observed library size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vaejax import likelihoods as L
from vaejax import networks

RNG = np.random.default_rng(0)
B, D = 4, 7


def _x():
    x = RNG.negative_binomial(2.0, 0.2, (B, D))
    x[:, 0] = 0  # zeros, where the inflation acts
    return x


def _params(*names):
    return {n: RNG.normal(0.5, 1.0, (B, D)) for n in names}  # NumPy float64


def test_poisson_matches_scipy():
    x, p = _x(), _params("log_mean")
    with jax.enable_x64(True):
        got = L.Poisson().log_prob(p, x)
    want = stats.poisson.logpmf(x, np.exp(np.asarray(p["log_mean"]))).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("dispersion", ["feature", "example"])
def test_negative_binomial_matches_scipy(dispersion):
    x, p = _x(), _params("log_mean", "log_inv_dispersion")
    with jax.enable_x64(True):
        got = L.NegativeBinomial(dispersion).log_prob(p, x)
    mu, theta = np.exp(np.asarray(p["log_mean"])), np.exp(np.asarray(p["log_inv_dispersion"]))
    want = stats.nbinom.logpmf(x, theta, theta / (theta + mu)).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_zero_inflated_negative_binomial_by_hand():
    x, p = _x(), _params("log_mean", "log_inv_dispersion", "dropout_logits")
    with jax.enable_x64(True):
        got = L.ZeroInflatedNegativeBinomial().log_prob(p, x)
    mu, theta = np.exp(np.asarray(p["log_mean"])), np.exp(np.asarray(p["log_inv_dispersion"]))
    pi = special.expit(np.asarray(p["dropout_logits"]))
    pmf = (x == 0) * pi + (1 - pi) * stats.nbinom.pmf(x, theta, theta / (theta + mu))
    np.testing.assert_allclose(got, np.log(pmf).sum(1), rtol=1e-10)


def test_float32_stays_finite_for_extreme_means_and_dispersions():
    x = np.array([[0, 1, 50, 10_000]] * 3)
    p = {
        "log_mean": jnp.asarray([[-30.0, 0.0, 4.0, 9.0]] * 3, jnp.float32),
        "log_inv_dispersion": jnp.asarray([[-10.0], [0.0], [12.0]] * np.ones((1, 4)), jnp.float32),
        "dropout_logits": jnp.full((3, 4), 30.0, jnp.float32),
    }
    for lik in (L.NegativeBinomial(), L.ZeroInflatedNegativeBinomial()):
        value, grad = jax.value_and_grad(lambda q, lik=lik: lik.log_prob(q, x).sum())(p)
        assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grad.values())


def test_samples_have_the_models_mean_and_variance():
    n, mu, theta, pi = 200_000, 6.0, 1.5, 0.3
    p = {
        "log_mean": jnp.full((n, 1), np.log(mu)),
        "log_inv_dispersion": jnp.full((n, 1), np.log(theta)),
        "dropout_logits": jnp.full((n, 1), special.logit(pi)),
    }
    nb = np.asarray(L.NegativeBinomial().sample(jax.random.key(0), p), np.float64)
    assert abs(nb.mean() - mu) < 0.05 and abs(nb.var() / (mu + mu**2 / theta) - 1) < 0.03
    zinb = np.asarray(L.ZeroInflatedNegativeBinomial().sample(jax.random.key(1), p), np.float64)
    assert abs(zinb.mean() - (1 - pi) * mu) < 0.05
    np.testing.assert_allclose(L.ZeroInflatedNegativeBinomial().mean(p)[0, 0], (1 - pi) * mu)


def test_feature_dispersion_is_a_free_parameter_and_example_dispersion_a_head():
    z = jnp.zeros((3, 2))
    for dispersion, head in (("feature", False), ("example", True)):
        lik = L.NegativeBinomial(dispersion)
        out, variables = networks.MLPDecoder((8,), (D,), lik).init_with_output(jax.random.key(0), z)
        param = variables["params"]["log_inv_dispersion"]
        assert isinstance(param, dict) == head
        assert out["log_inv_dispersion"].shape == (3, D)
        if not head:
            assert param.shape == (D,)
            bias = lik.output_bias(_x())
            set_params = networks.set_output_bias({"decoder": variables["params"]}, bias)
            got = set_params["decoder"]["log_inv_dispersion"]
            np.testing.assert_allclose(got, bias["log_inv_dispersion"])


def test_method_of_moments_bias_recovers_the_dispersion():
    x = RNG.negative_binomial(3.0, 3.0 / (3.0 + 20.0), (20_000, 2))  # theta 3, mean 20
    bias = L.ZeroInflatedNegativeBinomial().output_bias(x)
    np.testing.assert_allclose(np.exp(bias["log_mean"]), 20.0, rtol=0.03)
    np.testing.assert_allclose(np.exp(bias["log_inv_dispersion"]), 3.0, rtol=0.1)
    assert np.all(special.expit(bias["dropout_logits"]) < 0.01)  # no zeros beyond the NB's


def test_observed_library_size_scales_the_composition():
    x, p = _x(), _params("log_mean", "log_inv_dispersion")
    total = x.sum(1, keepdims=True)
    with jax.enable_x64(True):
        log_mean = jnp.log(total) + jax.nn.log_softmax(p["log_mean"], axis=-1)
        absolute = {**p, "log_mean": log_mean}
        got = L.NegativeBinomial(library_size="observed").log_prob(p, x)
        want = L.NegativeBinomial().log_prob(absolute, x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    lik = L.Poisson(library_size="observed")
    with pytest.raises(ValueError, match="library size.*with_library_size"):
        lik.mean(p)
    np.testing.assert_allclose(lik.mean(L.with_library_size(p, x)).sum(1), total[:, 0], rtol=1e-5)


def test_bad_counts_and_options_are_refused():
    for lik in (L.Poisson(), L.NegativeBinomial(), L.ZeroInflatedNegativeBinomial()):
        with pytest.raises(ValueError, match=r"integers in \[0, inf\).*-1.*0\.5"):
            lik.check_data(np.array([[0.0, -1.0, 0.5, 3.0]]))
    with pytest.raises(ValueError, match="dispersion must be one of.*'gene'"):
        L.NegativeBinomial("gene")
    with pytest.raises(ValueError, match="library_size must be one of.*'learned'"):
        L.Poisson(library_size="learned")
