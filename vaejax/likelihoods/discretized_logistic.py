"""Discretized logistic, and its mixture, for N-level data (8-bit images): exact bin probabilities.

The levels k = 0..N-1 sit at centres c_k = 2k / (N - 1) - 1 in [-1, 1], each bin 2h = 2 / (N - 1)
wide; the first and last bins are open to -inf and +inf, so the N probabilities sum to 1. A
logistic with mean mu and scale s gives bin k the mass sigma(a) - sigma(b), a = (c_k + h - mu) / s,
b = (c_k - h - mu) / s, computed as

    log sigma(a) + log sigma(-b) + log(1 - exp(-2h / s))

(the identity sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b - a))): no difference of two
probabilities, so no cancellation and no log(0) in float32, in the tails or for tiny scales, and
no density approximation (PixelCNN++ falls back to one when a bin's mass is below 1e-5). The
NLL is that of the discrete data, so bits/dim are exact.

References:
  Salimans, Karpathy, Chen & Kingma, PixelCNN++, 2017 (the mixture; here each channel has its
  own, without the autoregressive coupling of RGB channels).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax.likelihoods.base import (
    Params,
    check_integers,
    flat,
    host,
    log_sigmoid,
    set_int_field,
    sum_event,
    validate,
)

# exp(-log_scale) stays finite below this (s = 3e-7, far inside a bin of an 8-bit level).
_MIN_LOG_SCALE = -15.0


def _log1mexp(d: jax.Array) -> jax.Array:
    """log(1 - e^-d) for d > 0, accurate for small and large d (Maechler 2012)."""
    small = d < math.log(2.0)
    # Each branch sees only its own d: the other's -inf (e^-d rounds to 1 for d < 6e-8) would
    # make the gradient through `where` NaN.
    near = jnp.log(-jnp.expm1(-jnp.where(small, d, 1.0)))
    far = jnp.log1p(-jnp.exp(-jnp.where(small, 1.0, d)))
    return jnp.where(small, near, far)


def _lower_edge(k: jax.Array, num_bins: int, dtype) -> jax.Array:
    """c_k - h = (2k - N) / (N - 1): one rounding, the same for bin k's lower edge and bin
    k - 1's upper edge."""
    return (2.0 * jnp.asarray(k).astype(dtype) - num_bins) / (num_bins - 1)


def log_bin_prob(k: jax.Array, mean: jax.Array, log_scale: jax.Array, num_bins: int) -> jax.Array:
    """log P(level k) under the discretized logistic(mean, exp(log_scale)), elementwise.

    Args:
      k: integer levels in [0, num_bins), broadcastable with `mean`.
      mean: the logistic's mean on the [-1, 1] scale of the bin centres.
      log_scale: the log of its scale s.
      num_bins: N, the number of levels.

    Returns:
      The log-probabilities, the broadcast shape.
    """
    inv_s = jnp.exp(-jnp.maximum(log_scale, _MIN_LOG_SCALE))
    a = (_lower_edge(k + 1, num_bins, mean.dtype) - mean) * inv_s  # the bin's upper edge
    b = (_lower_edge(k, num_bins, mean.dtype) - mean) * inv_s
    log_cdf_upper = log_sigmoid(a)  # log P(X <= upper edge)
    log_sf_lower = log_sigmoid(-b)  # log P(X > lower edge)
    # a - b, not 2h / s: exact (Sterbenz), so the masses of neighbouring bins share their edge
    # to the last bit and the N masses sum to 1 within float32 rounding, at any scale.
    inner = log_cdf_upper + log_sf_lower + _log1mexp(a - b)
    return jnp.where(k == 0, log_cdf_upper, jnp.where(k == num_bins - 1, log_sf_lower, inner))


def _mean_level(mean: jax.Array, log_scale: jax.Array, num_bins: int) -> jax.Array:
    """E[k] = sum over k = 1..N-1 of P(level >= k), elementwise: exact, one bin edge at a time."""
    inv_s = jnp.exp(-jnp.maximum(log_scale, _MIN_LOG_SCALE))

    def add(k, total):
        return total + jax.nn.sigmoid((mean - _lower_edge(k, num_bins, mean.dtype)) * inv_s)

    return jax.lax.fori_loop(1, num_bins, add, jnp.zeros_like(mean))


def _sample_level(key: jax.Array, mean: jax.Array, log_scale: jax.Array, num_bins: int):
    """A logistic draw, rounded to its level (the bins are the rounding's cells): int32."""
    u = jax.random.uniform(key, mean.shape, mean.dtype, minval=1e-6, maxval=1.0 - 1e-6)
    y = mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u))
    level = jnp.round((y + 1.0) * (num_bins - 1) / 2.0)
    return jnp.clip(level, 0, num_bins - 1).astype(jnp.int32)


def _check_levels(name: str, x: ArrayLike, num_bins: int) -> None:
    hint = "Use the raw 8-bit levels (preprocessing 'integer') or set num_bins."
    check_integers(name, host(x), 0, num_bins, hint)


def _scaled(x: ArrayLike, num_bins: int) -> np.ndarray:
    """Levels -> the [-1, 1] scale of the bin centres, float64 `[N, *event]`."""
    return 2.0 * host(x).astype(np.float64) / (num_bins - 1) - 1.0


def _marginal_log_scale(scaled: np.ndarray, num_bins: int) -> np.ndarray:
    """The log-scale of the logistic with each dimension's standard deviation (>= half a bin)."""
    std = np.maximum(scaled.std(0), 1.0 / (num_bins - 1))
    return np.log(std * math.sqrt(3.0) / math.pi).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class DiscretizedLogistic:
    """A discretized logistic per dimension over `num_bins` integer levels (Salimans et al. 2017).

    Heads: `mean` and `log_scale`, `[B, *event]`, on the [-1, 1] scale of the bin centres; data
    are integers in [0, num_bins) (preprocessing "integer"). `mean` and `sample` are levels.
    """

    num_bins: int = 256
    param_names: ClassVar[tuple[str, ...]] = ("mean", "log_scale")

    def __post_init__(self):
        set_int_field(self, "num_bins", 2)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"mean": data_shape, "log_scale": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        mean, log_scale = flat(params["mean"]), flat(params["log_scale"])
        return sum_event(log_bin_prob(flat(x), mean, log_scale, self.num_bins))

    def mean(self, params: Params) -> jax.Array:
        return _mean_level(params["mean"], params["log_scale"], self.num_bins)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        return _sample_level(key, params["mean"], params["log_scale"], self.num_bins)

    def check_data(self, x: ArrayLike) -> None:
        _check_levels("DiscretizedLogistic", x, self.num_bins)

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Each dimension's mean, and the scale of its standard deviation."""
        scaled = _scaled(x, self.num_bins)
        log_scale = _marginal_log_scale(scaled, self.num_bins)
        return {"mean": scaled.mean(0).astype(np.float32), "log_scale": log_scale}


@dataclasses.dataclass(frozen=True)
class DiscretizedLogisticMixture:
    """A mixture of `num_components` discretized logistics per dimension (PixelCNN++'s output).

    Heads, each `[B, *event, K]`: `logits` (the mixture weights, softmax over K), `means` and
    `log_scales` (on the [-1, 1] scale of the bin centres). log p(k) = logsumexp_j(log w_j +
    log p_j(k)), exact. With K = 1 it is `DiscretizedLogistic`.
    """

    num_components: int = 10
    num_bins: int = 256
    param_names: ClassVar[tuple[str, ...]] = ("logits", "means", "log_scales")

    def __post_init__(self):
        set_int_field(self, "num_bins", 2)
        set_int_field(self, "num_components", 1)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shape = (*data_shape, self.num_components)
        return {"logits": shape, "means": shape, "log_scales": shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        means, log_scales = flat(params["means"], 1), flat(params["log_scales"], 1)
        per_component = log_bin_prob(flat(x)[..., None], means, log_scales, self.num_bins)
        log_w = jax.nn.log_softmax(flat(params["logits"], 1), axis=-1)
        return sum_event(jax.nn.logsumexp(log_w + per_component, axis=-1))

    def mean(self, params: Params) -> jax.Array:
        w = jax.nn.softmax(params["logits"], axis=-1)
        return (w * _mean_level(params["means"], params["log_scales"], self.num_bins)).sum(-1)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        k_component, k_level = jax.random.split(key)
        j = jax.random.categorical(k_component, params["logits"], axis=-1)[..., None]
        mean = jnp.take_along_axis(params["means"], j, axis=-1)[..., 0]
        log_scale = jnp.take_along_axis(params["log_scales"], j, axis=-1)[..., 0]
        return _sample_level(k_level, mean, log_scale, self.num_bins)

    def check_data(self, x: ArrayLike) -> None:
        _check_levels("DiscretizedLogisticMixture", x, self.num_bins)

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Equal weights; component j's mean at each dimension's (j + 1/2) / K quantile; the
        scale of each dimension's standard deviation."""
        scaled = _scaled(x, self.num_bins)
        k = self.num_components
        means = np.moveaxis(np.quantile(scaled, (np.arange(k) + 0.5) / k, axis=0), 0, -1)
        log_scale = _marginal_log_scale(scaled, self.num_bins)[..., None]
        return {
            "logits": np.zeros(means.shape, np.float32),
            "means": means.astype(np.float32),
            "log_scales": np.broadcast_to(log_scale, means.shape).astype(np.float32),
        }
