"""The discretized logistic and its mixture: exact bin masses against float64 closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vaejax import likelihoods as L
from vaejax import networks
from vaejax.likelihoods import discretized_logistic as dl

RNG = np.random.default_rng(0)
LEVELS = np.arange(256)


def _masses_float64(mean, scale, num_bins=256):
    """P(k) from the logistic's CDF in float64: open first and last bins."""
    h = 1.0 / (num_bins - 1)
    edges = 2.0 * h * np.arange(num_bins + 1) - 1.0 - h
    cdf = stats.logistic.cdf(edges, loc=mean, scale=scale)
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


# Mid-range, near the edges, far outside [-1, 1], tiny and huge scales.
CASES = [(0.0, 0.1), (-1.0, 0.01), (1.0, 0.003), (0.3, 1e-4), (-0.999, 1e-6), (5.0, 0.5), (0, 30)]


@pytest.mark.parametrize("mean,scale", CASES)
def test_the_256_bins_sum_to_one_and_match_float64(mean, scale):
    m = jnp.full((256,), mean, jnp.float32)
    log_s = jnp.full((256,), np.log(scale), jnp.float32)
    log_p = np.asarray(dl.log_bin_prob(jnp.asarray(LEVELS), m, log_s, 256), np.float64)
    assert np.all(np.isfinite(log_p)) and np.all(log_p <= 0)
    assert abs(np.exp(log_p).sum() - 1.0) < 1e-6
    want = _masses_float64(mean, scale)
    big = want > 1e-30  # where float64 itself still resolves the mass
    np.testing.assert_allclose(np.exp(log_p[big]), want[big], rtol=2e-4, atol=1e-7)


def test_log_masses_of_far_tail_bins_stay_finite_and_ordered():
    """Where the mass underflows float32, its log does not (no density fallback needed)."""
    log_p = np.asarray(
        dl.log_bin_prob(jnp.asarray(LEVELS), jnp.float32(-1.0), jnp.float32(-6), 256)
    )
    assert np.all(np.isfinite(log_p)) and np.all(np.diff(log_p[1:]) < 0)
    # e^-805 is no float32 number (they end near e^-103); its log is exact.
    want = stats.logistic.logsf(1 - 1 / 255, loc=-1.0, scale=np.exp(-6.0))
    assert want < -800 and abs(log_p[-1] - want) < 1e-3 * abs(want)


@pytest.mark.parametrize("k", [0, 1, 128, 254, 255])
@pytest.mark.parametrize(
    "mean,log_scale", [(0.0, -3.0), (-1.0, -12.0), (1.0, -12.0), (3.0, 2.0), (-4.0, 12.7), (0, -16)]
)
def test_gradients_are_finite_at_every_bin_and_the_edges(k, mean, log_scale):
    grad = jax.grad(lambda m, s: dl.log_bin_prob(jnp.asarray(k), m, s, 256), argnums=(0, 1))
    g = grad(jnp.float32(mean), jnp.float32(log_scale))
    assert all(np.isfinite(np.asarray(v)) for v in g)


def test_log1mexp_and_its_gradient_from_tiny_to_huge_arguments():
    """Was: a NaN gradient below d = 6e-8 (a scale of e^12 and more), from the unused branch."""
    d = jnp.logspace(-12, 2, 200, dtype=jnp.float32)
    value, grad = jax.vmap(jax.value_and_grad(dl._log1mexp))(d)
    want = np.log(-np.expm1(-np.asarray(d, np.float64)))
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-7)
    want_grad = 1 / np.expm1(np.asarray(d, np.float64))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-37)  # float32 denormals


def _params(shape, k=None):
    extra = () if k is None else (k,)
    names = ("mean", "log_scale") if k is None else ("logits", "means", "log_scales")
    sizes = {"mean": 0.5, "log_scale": 0.5, "logits": 1.0, "means": 0.5, "log_scales": 0.5}
    shift = {"log_scale": -2.5, "log_scales": -2.5}
    return {
        n: jnp.asarray(RNG.normal(shift.get(n, 0), sizes[n], (*shape, *extra)), jnp.float32)
        for n in names
    }


def test_a_mixture_of_one_component_is_the_plain_one():
    single = _params((3, 4, 5))
    mix = {"logits": jnp.zeros((3, 4, 5, 1))}
    mix |= {"means": single["mean"][..., None], "log_scales": single["log_scale"][..., None]}
    x = RNG.integers(0, 256, (3, 4, 5))
    want = L.DiscretizedLogistic().log_prob(single, x)
    np.testing.assert_allclose(L.DiscretizedLogisticMixture(1).log_prob(mix, x), want, rtol=1e-6)
    np.testing.assert_allclose(
        L.DiscretizedLogisticMixture(1).mean(mix), L.DiscretizedLogistic().mean(single), rtol=1e-5
    )


def test_mixture_log_prob_and_mean_match_float64():
    p = {n: np.asarray(v, np.float64) for n, v in _params((2, 6), k=4).items()}
    x = RNG.integers(0, 256, (2, 6))
    masses = np.stack(
        [
            [
                [
                    _masses_float64(p["means"][b, d, j], np.exp(p["log_scales"][b, d, j]))
                    for j in range(4)
                ]
                for d in range(6)
            ]
            for b in range(2)
        ]
    )  # [B, D, K, 256]
    w = special.softmax(p["logits"], axis=-1)
    mixture = (w[..., None] * masses).sum(2)  # [B, D, 256]
    want = np.log(np.take_along_axis(mixture, x[..., None], -1)[..., 0]).sum(1)
    lik = L.DiscretizedLogisticMixture(4)
    params = {n: jnp.asarray(v, jnp.float32) for n, v in p.items()}
    np.testing.assert_allclose(lik.log_prob(params, x), want, rtol=1e-5)
    np.testing.assert_allclose(lik.mean(params), mixture @ LEVELS, rtol=1e-4)


def test_samples_follow_the_bin_masses():
    lik = L.DiscretizedLogisticMixture(2)
    one = {"logits": [0.3, -0.3], "means": [-0.2, 0.6], "log_scales": [-3.0, -2.0]}
    params = {
        n: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (40_000, 1, 2)) for n, v in one.items()
    }
    draws = np.asarray(lik.sample(jax.random.key(0), params))[:, 0]
    w = special.softmax(one["logits"])
    masses = sum(
        w[j] * _masses_float64(one["means"][j], np.exp(one["log_scales"][j])) for j in range(2)
    )
    freq = np.bincount(draws, minlength=256) / len(draws)
    assert np.abs(np.cumsum(freq) - np.cumsum(masses)).max() < 0.01  # Kolmogorov distance
    assert draws.dtype == np.int32 and draws.min() >= 0 and draws.max() <= 255


def test_output_bias_starts_at_the_data_marginal():
    x = RNG.integers(0, 256, (500, 3)).astype(np.float32)
    x[:, 0] = 0  # a constant pixel: its scale is floored at half a bin, not log(0)
    bias = L.DiscretizedLogistic().output_bias(x)
    np.testing.assert_allclose(bias["mean"], (2 * x / 255 - 1).mean(0), rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(bias["log_scale"]))
    mix = L.DiscretizedLogisticMixture(3).output_bias(x)
    assert mix["means"].shape == (3, 3) and np.all(np.diff(mix["means"][1:], axis=-1) >= 0)


def test_a_decoder_builds_the_mixture_heads():
    lik = L.DiscretizedLogisticMixture(5)
    for decoder in (
        networks.MLPDecoder((16,), (8, 8, 1), lik),
        networks.MLPDecoder((16,), (8, 8, 1), lik, pixel_features=4),
        networks.ConvDecoder((8, 8, 1), lik, channels=(8, 4), hidden_size=16),
    ):
        z = jnp.zeros((2, 3))
        out, _ = decoder.init_with_output(jax.random.key(0), z)
        assert {k: v.shape for k, v in out.items()} == dict.fromkeys(
            lik.param_names, (2, 8, 8, 1, 5)
        )
        assert lik.log_prob(out, jnp.zeros((2, 8, 8, 1), jnp.int32)).shape == (2,)


def test_bad_data_and_hyperparameters_are_refused():
    with pytest.raises(ValueError, match=r"DiscretizedLogistic.*integers in \[0, 256\).*0\.5"):
        L.DiscretizedLogistic().check_data(np.array([[0.5, 3.0]]))
    with pytest.raises(ValueError, match=r"\[0, 16\).*16.*num_bins"):
        L.DiscretizedLogisticMixture(num_bins=16).check_data(np.array([[0, 16]]))
    with pytest.raises(ValueError, match="num_components must be an int >= 1; got 0"):
        L.DiscretizedLogisticMixture(0)
    with pytest.raises(ValueError, match="num_bins must be an int >= 2; got 1"):
        L.DiscretizedLogistic(num_bins=1)
