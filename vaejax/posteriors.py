"""Approximate posteriors q(z | x): what the objectives take as `posterior=`.

A posterior is any object with these methods (the `Posterior` protocol; no registration):

  sample_and_log_prob(key, params, num_samples)  reparameterized `z` `[S, B, D]` and
                                                 log q(z | x) `[S, B]`;
  log_prob(params, z)                            log q(z | x) `[S, B]` for given z;
  kl_per_dim(params, prior)  (optional)          the closed-form KL to `prior` per latent
                                                 dimension `[B, D]`, or None where it has none.

`params` are the encoder's outputs for a batch (a dict of `[B, ...]` arrays).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax import cpu_fastpaths
from vaejax.likelihoods import softplus
from vaejax.priors import Normal, StandardNormal, standard_normal_log_prob

Params = Mapping[str, jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)

# parameterization -> name of the raw scale head.
_SCALE_NAMES = {"log_var": "log_var", "log_sigma": "log_sigma", "softplus": "raw_std"}


__all__ = ["DiagonalGaussian", "Posterior", "analytic_kl_per_dim", "standard_normal_log_prob"]


@runtime_checkable
class Posterior(Protocol):
    """q(z | x) from the encoder's outputs: the methods the objectives call."""

    def sample_and_log_prob(
        self, key: jax.Array, params: Params, num_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """Reparameterized `z` `[S, B, D]` and their log q(z | x) `[S, B]`."""
        ...

    def log_prob(self, params: Params, z: ArrayLike) -> jax.Array:
        """log q(z | x): `[S, B, D] -> [S, B]`."""
        ...


def analytic_kl_per_dim(posterior: Any, params: Params, prior: Any) -> jax.Array | None:
    """KL(q || prior) per latent dimension `[B, D]` in closed form; None where none is known."""
    kl_per_dim = getattr(posterior, "kl_per_dim", None)
    return None if kl_per_dim is None else kl_per_dim(params, prior)


@dataclasses.dataclass(frozen=True)
class DiagonalGaussian:
    """Diagonal Gaussian q(z | x) = N(mean, diag(std^2)), reparameterized.

    The encoder's scale head is raw and linear; `parameterization` says how it maps to std:
      "log_var":   std = exp(raw / 2)   (Kingma & Welling 2013, the default)
      "log_sigma": std = exp(raw)
      "softplus":  std = softplus(raw) + softplus_floor
    The exp forms keep std positive for any raw value with no clipping; softplus grows only
    linearly, so a large step cannot blow the scale up, at the cost of a floor.

    Params are `{"mean": [B, D], <scale name>: [B, D]}`.
    """

    parameterization: str = "log_var"
    softplus_floor: float = 1e-4

    def __post_init__(self):
        if self.parameterization not in _SCALE_NAMES:
            raise ValueError(
                f"Unknown posterior parameterization {self.parameterization!r}; valid: "
                f"{sorted(_SCALE_NAMES)}."
            )
        floor = self.softplus_floor
        if not (isinstance(floor, int | float | np.number) and 0 < floor < math.inf):
            raise ValueError(
                f"DiagonalGaussian softplus_floor must be a positive finite number (it keeps std "
                f"above 0); got {floor!r}. The default is 1e-4."
            )

    @property
    def param_names(self) -> tuple[str, str]:
        return ("mean", _SCALE_NAMES[self.parameterization])

    def _check(self, params: Params) -> None:
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise ValueError(
                f"DiagonalGaussian({self.parameterization!r}) needs encoder outputs "
                f"{self.param_names}; missing {missing}, got keys {sorted(params)}. "
                "Build the encoder with this posterior's param_names."
            )
        mean, scale = (params[n] for n in self.param_names)
        if tuple(mean.shape) != tuple(scale.shape):
            raise ValueError(
                f"DiagonalGaussian({self.parameterization!r}): encoder outputs 'mean' of shape "
                f"{tuple(mean.shape)} and {self.param_names[1]!r} of shape {tuple(scale.shape)} "
                "differ; both must be [B, latent_dim]. Give the two heads the same size."
            )

    def log_stddev(self, params: Params) -> jax.Array:
        """log std, computed without a log(exp(.)) round trip where possible."""
        self._check(params)
        raw = params[self.param_names[1]]
        if self.parameterization == "log_var":
            return 0.5 * raw
        if self.parameterization == "log_sigma":
            return raw
        return jnp.log(softplus(raw) + self.softplus_floor)

    def stddev(self, params: Params) -> jax.Array:
        self._check(params)
        raw = params[self.param_names[1]]
        if self.parameterization == "softplus":
            return softplus(raw) + self.softplus_floor
        return jnp.exp(self.log_stddev(params))

    def sample(self, key: jax.Array, params: Params, num_samples: int | None = None) -> jax.Array:
        """z = mean + std * eps: `[B, D]`, or `[S, B, D]` when `num_samples` is given."""
        check_key(key)
        mean = params["mean"]
        std = self.stddev(params)
        key = cpu_fastpaths.threefry_key(key)  # the same draws, faster on CPU
        if num_samples is None:
            return mean + std * jax.random.normal(key, mean.shape, mean.dtype)
        _check_num_samples(num_samples)
        eps = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype)
        return mean[None] + std[None] * eps

    def sample_and_log_prob(
        self, key: jax.Array, params: Params, num_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """`z = mean + std * eps` `[S, B, D]` and log q(z | x) `[S, B]`."""
        z = self.sample(key, params, num_samples)
        return z, self.log_prob(params, z)

    def log_prob(self, params: Params, z: ArrayLike) -> jax.Array:
        """log q(z | x): `[B, D] -> [B]`, or `[S, B, D] -> [S, B]`."""
        z = jnp.asarray(z)
        mean, log_std = params["mean"], self.log_stddev(params)
        if z.ndim == mean.ndim + 1:
            mean, log_std = mean[None], log_std[None]
        eps = (z - mean) * jnp.exp(-log_std)
        return -0.5 * (jnp.square(eps) + _LOG_2PI).sum(-1) - log_std.sum(-1)

    def kl_standard_normal(self, params: Params) -> jax.Array:
        """KL(q || N(0, I)) in closed form: 0.5 sum(mean^2 + var - 1 - log var), `[B]`."""
        return self.kl_per_dim(params).sum(-1)

    def kl_per_dim(self, params: Params, prior: Any = None) -> jax.Array | None:
        """The closed-form KL per latent dimension, `[B, D]`, to a `StandardNormal` (default)
        or a diagonal `Normal` prior; None for any other prior (no closed form here)."""
        mean, log_std = params["mean"], self.log_stddev(params)
        if prior is None or isinstance(prior, StandardNormal):
            log_var = 2.0 * log_std
            return 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)
        if isinstance(prior, Normal):
            # log s_p - log s_q + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2
            log_ratio = log_std - prior.log_scale[None]
            diff = (mean - prior.mean[None]) * jnp.exp(-prior.log_scale[None])
            return 0.5 * (jnp.exp(2.0 * log_ratio) + jnp.square(diff) - 1.0) - log_ratio
        return None


def check_key(key: jax.Array) -> None:
    """Refuses anything but a JAX PRNG key (a typed key, or a raw uint32 one); static, jit-safe."""
    dtype = getattr(key, "dtype", None)
    if dtype is None or not (
        jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) or dtype == np.uint32
    ):
        raise ValueError(
            f"key must be a JAX PRNG key; got {type(key).__name__} {key!r}. Pass "
            "jax.random.key(seed) (or split one), not the seed itself."
        )


def _check_num_samples(num_samples: int) -> None:
    if not isinstance(num_samples, int | np.integer) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1; got {num_samples!r}.")
