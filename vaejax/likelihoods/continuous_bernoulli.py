"""The continuous Bernoulli: intensities in [0, 1], from logits, with its exact normaliser."""

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
    check_finite,
    flat,
    host,
    logit_of_mean,
    softplus,
    sum_event,
    validate,
    value_range,
)

# Below |logit| < this, log C and the mean use their Taylor series: the closed forms divide 0/0
# at logit 0 (lambda = 0.5). 0.1 is lambda in about [0.475, 0.525]; the series' error there is
# under 1e-10, far below float32 resolution.
_CB_TAYLOR_CUTOFF = 0.1


def cb_log_normalizer(logits: ArrayLike) -> jax.Array:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), elementwise.

    `C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)`, which in logits is `l / tanh(l / 2)`,
    an even function; so `log C = log|l| - log tanh(|l|/2)`, computed without cancellation as
    `log|l| - log1p(-e^-|l|) + log1p(e^-|l|)`. Near `l = 0` (0/0) the Taylor series
    `log 2 + u^2/3 - 7u^4/90 + 62u^6/2835` with `u = l/2` takes over, through the double-`where`
    pattern so that neither branch leaks a NaN value or gradient.

    References:
      Loaiza-Ganem & Cunningham, The continuous Bernoulli, NeurIPS 2019, eq. (7).
    """
    a = jnp.abs(jnp.asarray(logits))
    small = a < _CB_TAYLOR_CUTOFF
    a_safe = jnp.where(small, 1.0, a)
    e = jnp.exp(-a_safe)
    exact = jnp.log(a_safe) - jnp.log1p(-e) + jnp.log1p(e)
    u2 = jnp.square(jnp.where(small, a, 0.0) / 2)
    taylor = math.log(2.0) + u2 * (1 / 3 + u2 * (-7 / 90 + u2 * 62 / 2835))
    return jnp.where(small, taylor, exact)


def cb_mean(logits: ArrayLike) -> jax.Array:
    """Mean of the continuous Bernoulli: 1 / (1 - e^-l) - 1 / l (not lambda), elementwise.

    Uses `mean(-l) = 1 - mean(l)` to work with `|l|` only, and `1/2 + l/12 - l^3/720` near 0.
    """
    logits = jnp.asarray(logits)
    a = jnp.abs(logits)
    small = a < _CB_TAYLOR_CUTOFF
    a_safe = jnp.where(small, 1.0, a)
    exact = -1.0 / jnp.expm1(-a_safe) - 1.0 / a_safe
    a_small = jnp.where(small, a, 0.0)
    taylor = 0.5 + a_small / 12 - a_small**3 / 720
    m = jnp.where(small, taylor, exact)
    return jnp.where(logits >= 0, m, 1.0 - m)


@dataclasses.dataclass(frozen=True)
class ContinuousBernoulli:
    """Continuous Bernoulli from logits, for intensities in [0, 1].

    log p(x) = x l - log(1 + e^l) + log C(sigmoid(l)): the Bernoulli cross-entropy plus the exact
    log normaliser that makes it a density on [0, 1]. `mean` is the CB mean, not sigmoid(l).

    References:
      Loaiza-Ganem & Cunningham, The continuous Bernoulli: fixing a pervasive error in
      variational autoencoders, NeurIPS 2019.
    """

    param_names: ClassVar[tuple[str, ...]] = ("logits",)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        x, logits = flat(x), flat(params["logits"])
        return sum_event(x * logits - softplus(logits) + cb_log_normalizer(logits))

    def mean(self, params: Params) -> jax.Array:
        return cb_mean(params["logits"])

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        """Inverse-CDF sampling: x = log1p(u expm1(l)) / l, written in `|l|` against overflow."""
        logits = params["logits"]
        u = jax.random.uniform(key, logits.shape, logits.dtype)
        a = jnp.abs(logits)
        small = a < 1e-4  # there the distribution is uniform to float32 precision
        a_safe = jnp.where(small, 1.0, a)
        # log1p(u (e^a - 1)) / a = 1 + log(u + (1 - u) e^-a) / a, which cannot overflow.
        x_pos = 1.0 + jnp.log(u + (1.0 - u) * jnp.exp(-a_safe)) / a_safe
        x_pos = jnp.clip(jnp.where(small, u, x_pos), 0.0, 1.0)
        return jnp.where(logits >= 0, x_pos, 1.0 - x_pos)

    def check_data(self, x: ArrayLike) -> None:
        x = host(x)
        check_finite("ContinuousBernoulli", x)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                "ContinuousBernoulli likelihood needs data in [0, 1]; got values in "
                f"{value_range(x)}. Scale intensities to [0, 1] (preprocessing 'dequantize' or "
                "'unit_interval'), or use a Gaussian for unbounded data."
            )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        # The logit of the pixel mean: close to, not exactly, the CB mean; a good start either way.
        return {"logits": logit_of_mean(x)}
