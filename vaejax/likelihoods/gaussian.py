"""Gaussians: a fixed scale, or a learned variance per dimension or shared."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax.likelihoods.base import (
    LOG_2PI,
    Params,
    check_finite,
    flat,
    host,
    sum_event,
    validate,
)


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Gaussian with a fixed standard deviation `scale` (identity output + squared error).

    log p = -||x - mean||^2 / (2 scale^2) - D log(scale) - D/2 log(2 pi): the MSE with its constant.
    """

    scale: float = 1.0
    param_names: ClassVar[tuple[str, ...]] = ("mean",)

    def __post_init__(self):
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"Gaussian scale must be positive and finite; got {self.scale}.")

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"mean": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        r = (flat(x) - flat(params["mean"])) / self.scale
        return sum_event(-0.5 * jnp.square(r) - math.log(self.scale) - 0.5 * LOG_2PI)

    def mean(self, params: Params) -> jax.Array:
        return params["mean"]

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        m = params["mean"]
        return m + self.scale * jax.random.normal(key, m.shape, m.dtype)

    def check_data(self, x: ArrayLike) -> None:
        check_finite("Gaussian", host(x))

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        return {"mean": host(x).astype(np.float64).mean(0).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class LearnedGaussian:
    """Gaussian with a learned variance: a mean head and a log-variance head, or one scalar.

    Kingma & Welling (2013), App. C.2: a log-variance per dimension, a head of the decoder. The
    density is unbounded as the variance goes to zero (a decoder can put a spike on a constant
    pixel, e.g. MNIST's borders), so the variance is `variance_floor + exp(log_var)`: a smooth
    floor that keeps the gradient. `variance_floor=0` gives the raw, collapsible model.

    `shared_variance=True` learns one log-variance for every dimension and example instead: a
    parameter of the decoder, not a head (`param_shapes` gives it shape `()`; decoders return it
    broadcast to `[B]`). That is the squared error with its weight 1 / (2 sigma^2) learned: the
    maximum-likelihood sigma^2 is the mean squared residual, so it cannot collapse unless every
    residual does.

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes, 2013, App. C.2.
    """

    variance_floor: float = 1e-3
    shared_variance: bool = False
    param_names: ClassVar[tuple[str, ...]] = ("mean", "log_var")

    def __post_init__(self):
        if not (self.variance_floor >= 0 and math.isfinite(self.variance_floor)):
            raise ValueError(
                "LearnedGaussian variance_floor must be >= 0 and finite; "
                f"got {self.variance_floor}."
            )

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"mean": data_shape, "log_var": () if self.shared_variance else data_shape}

    def variance(self, params: Params) -> jax.Array:
        """`[B, *event]`, or `[B]` with `shared_variance`."""
        return self.variance_floor + jnp.exp(params["log_var"])

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        log_var = flat(params["log_var"])  # [B, D], or [B, 1] when shared
        if self.variance_floor > 0:
            log_var = jnp.logaddexp(log_var, math.log(self.variance_floor))
        sq = jnp.square(flat(x) - flat(params["mean"])) * jnp.exp(-log_var)
        return sum_event(-0.5 * (sq + log_var + LOG_2PI))

    def mean(self, params: Params) -> jax.Array:
        return params["mean"]

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        m = params["mean"]
        std = jnp.sqrt(self.variance(params))
        std = std.reshape(*std.shape, *(1,) * (m.ndim - std.ndim))  # [B] -> [B, 1, ...] if shared
        return m + std * jax.random.normal(key, m.shape, m.dtype)

    def check_data(self, x: ArrayLike) -> None:
        check_finite("LearnedGaussian", host(x))

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        x = host(x).astype(np.float64)
        # Shared: the one variance that fits best around the per-dimension means.
        var = x.var(0).mean() if self.shared_variance else x.var(0)
        var = np.maximum(var - self.variance_floor, 1e-4)
        return {"mean": x.mean(0).astype(np.float32), "log_var": np.log(var).astype(np.float32)}
