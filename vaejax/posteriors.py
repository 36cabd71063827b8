"""Approximate posteriors q(z | x): what the objectives take as `posterior=`.

A posterior is any object with these methods (the `Posterior` protocol; no registration)::

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax import cpu_fastpaths, fields
from vaejax.likelihoods import softplus
from vaejax.priors import Normal, StandardNormal, standard_normal_log_prob

Params = Mapping[str, jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)

# parameterization -> name of the raw scale head.
_MAX_LOG_INV_STD = 80.0
_SCALE_NAMES = {"log_var": "log_var", "log_sigma": "log_sigma", "softplus": "raw_std"}


__all__ = [
    "POSTERIORS",
    "DiagonalGaussian",
    "IAFWeights",
    "InverseAutoregressiveFlow",
    "Posterior",
    "analytic_kl_per_dim",
    "make",
    "standard_normal_log_prob",
]


@runtime_checkable
class Posterior(Protocol):
    """q(z | x) from the encoder's outputs: the methods the objectives call."""

    def sample_and_log_prob(
        self, key: jax.Array, params: Params, num_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """Reparameterized `z` `[S, B, D]` and their log q(z | x) `[S, B]`.

        Args:
          key: a PRNG key for the draws.
          params: the encoder's outputs for the batch, a dict of `[B, ...]` arrays.
          num_samples: S, the samples per example.

        Returns:
          `(z, log_q)`: the samples `[S, B, D]` and their log q(z | x) `[S, B]`.
        """
        ...

    def log_prob(self, params: Params, z: ArrayLike) -> jax.Array:
        """log q(z | x): `[S, B, D] -> [S, B]`.

        Args:
          params: the encoder's outputs for the batch, a dict of `[B, ...]` arrays.
          z: latents `[S, B, D]`.

        Returns:
          log q(z | x) summed over the latent axis, `[S, B]`.
        """
        ...


def analytic_kl_per_dim(posterior: Any, params: Params, prior: Any) -> jax.Array | None:
    """KL(q || prior) per latent dimension `[B, D]` in closed form; None where none is known.

    Args:
      posterior: any posterior; its optional `kl_per_dim(params, prior)` is called.
      params: the encoder's outputs for the batch, a dict of `[B, ...]` arrays.
      prior: the prior p(z).

    Returns:
      The KL per example and latent dimension, `[B, D]`, or None where the posterior has no
      `kl_per_dim` or no closed form for this prior.
    """
    kl_per_dim = getattr(posterior, "kl_per_dim", None)
    return None if kl_per_dim is None else kl_per_dim(params, prior)


@dataclasses.dataclass(frozen=True)
class DiagonalGaussian:
    """Diagonal Gaussian q(z | x) = N(mean, diag(std^2)), reparameterized.

    The encoder's scale head is raw and linear; `parameterization` says how it maps to std::

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
        """log std, computed without a log(exp(.)) round trip where possible.

        Args:
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.

        Returns:
          log std, `[B, D]`.
        """
        self._check(params)
        raw = params[self.param_names[1]]
        if self.parameterization == "log_var":
            return 0.5 * raw
        if self.parameterization == "log_sigma":
            return raw
        return jnp.log(softplus(raw) + self.softplus_floor)

    def stddev(self, params: Params) -> jax.Array:
        """The standard deviation of q(z | x).

        Args:
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.

        Returns:
          std, `[B, D]`.
        """
        self._check(params)
        raw = params[self.param_names[1]]
        if self.parameterization == "softplus":
            return softplus(raw) + self.softplus_floor
        return jnp.exp(self.log_stddev(params))

    def sample(self, key: jax.Array, params: Params, num_samples: int | None = None) -> jax.Array:
        """z = mean + std * eps: `[B, D]`, or `[S, B, D]` when `num_samples` is given.

        Args:
          key: a JAX PRNG key (typed, or a raw uint32 one).
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.
          num_samples: S, the samples per example; None for one draw with no sample axis.

        Returns:
          The reparameterized samples, `[B, D]`, or `[S, B, D]` when `num_samples` is given.
        """
        check_key(key)
        mean = params["mean"]
        std = self.stddev(params)
        key = cpu_fastpaths.threefry_key(key)  # the same draws, faster on CPU
        if num_samples is None:
            return mean + std * jax.random.normal(key, mean.shape, mean.dtype)
        fields.check_count(num_samples)
        eps = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype)
        return mean[None] + std[None] * eps

    def sample_and_log_prob(
        self, key: jax.Array, params: Params, num_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """`z = mean + std * eps` `[S, B, D]` and log q(z | x) `[S, B]`.

        Args:
          key: a JAX PRNG key.
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.
          num_samples: S, the samples per example.

        Returns:
          `(z, log_q)`: the samples `[S, B, D]` and their log q(z | x) `[S, B]`.
        """
        z = self.sample(key, params, num_samples)
        return z, self.log_prob(params, z)

    def log_prob(self, params: Params, z: ArrayLike) -> jax.Array:
        """log q(z | x): `[B, D] -> [B]`, or `[S, B, D] -> [S, B]`.

        Args:
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.
          z: latents `[B, D]` or `[S, B, D]`.

        Returns:
          log q(z | x) summed over the latent axis, `[B]` or `[S, B]`.
        """
        z = jnp.asarray(z)
        mean, log_std = params["mean"], self.log_stddev(params)
        if z.ndim == mean.ndim + 1:
            mean, log_std = mean[None], log_std[None]
        # A collapsed scale (log std below -80: std underflows, 1 / std overflows) would give
        # 0 * inf at z = mean; its inverse is capped where float32 has no such scales anyway.
        eps = (z - mean) * jnp.exp(jnp.minimum(-log_std, _MAX_LOG_INV_STD))
        return -0.5 * (jnp.square(eps) + _LOG_2PI).sum(-1) - log_std.sum(-1)

    def kl_standard_normal(self, params: Params) -> jax.Array:
        """KL(q || N(0, I)) in closed form: 0.5 sum(mean^2 + var - 1 - log var), `[B]`.

        Args:
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.

        Returns:
          The KL summed over the latent axis, `[B]`.
        """
        return self.kl_per_dim(params).sum(-1)

    def kl_per_dim(self, params: Params, prior: Any = None) -> jax.Array | None:
        """The closed-form KL per latent dimension, `[B, D]`, to a `StandardNormal` (default)
        or a diagonal `Normal` prior; None for any other prior (no closed form here).

        Args:
          params: `{"mean": [B, D], <scale name>: [B, D]}`, the encoder's outputs.
          prior: None or a `StandardNormal` (N(0, I)), a `Normal` (`mean`, `log_scale` `[D]`),
            or any other prior.

        Returns:
          KL(q || prior) per example and dimension, `[B, D]`, or None for another prior.
        """
        mean, log_std = params["mean"], self.log_stddev(params)
        if prior is None or isinstance(prior, StandardNormal):
            log_var = 2.0 * log_std
            return 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)
        if isinstance(prior, Normal):
            # log s_p - log s_q + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2
            # The prior's `[D]` (or a conditional prior's `[B, D]`) broadcasts against `[B, D]`.
            prior_mean, prior_log_scale = (
                jnp.broadcast_to(a, mean.shape) for a in (prior.mean, prior.log_scale)
            )
            log_ratio = log_std - prior_log_scale
            diff = (mean - prior_mean) * jnp.exp(-prior_log_scale)
            return 0.5 * (jnp.exp(2.0 * log_ratio) + jnp.square(diff) - 1.0) - log_ratio
        return None


def made_masks(latent_dim: int, hidden_size: int, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """MADE's masks (Germain et al. 2015): input -> hidden `[D, H]` and hidden -> output `[H, D]`,
    so that output i sees only the inputs before i in the ordering (reversed if `reverse`)."""
    degree = np.arange(1, latent_dim + 1)
    degree = degree[::-1] if reverse else degree
    hidden = np.arange(hidden_size) % max(1, latent_dim - 1) + 1  # in [1, D - 1]
    return (
        (hidden[None, :] >= degree[:, None]).astype(np.float32),
        (degree[None, :] > hidden[:, None]).astype(np.float32),
    )


class IAFWeights(nn.Module):
    """The flow's own weights, one dict per step; created inside the encoder module (by
    `networks.posterior_heads`), so they are trained, saved and loaded with it. The output
    layers start at zero: the flow starts as the identity, the posterior as its base."""

    latent_dim: int
    context_dim: int
    hidden_size: int
    num_steps: int

    @nn.compact
    def __call__(self) -> list[dict[str, jax.Array]]:
        d, h, c = self.latent_dim, self.hidden_size, self.context_dim
        dense, zeros = nn.initializers.lecun_normal(), nn.initializers.zeros
        shapes = {
            "w_in": ((d, h), dense),
            "w_context": ((c, h), dense),
            "b_hidden": ((h,), zeros),
            "w_shift": ((h, d), zeros),
            "b_shift": ((d,), zeros),
            "w_log_scale": ((h, d), zeros),
            "b_log_scale": ((d,), zeros),
        }
        return [
            {k: self.param(f"step_{t}_{k}", init, shape) for k, (shape, init) in shapes.items()}
            for t in range(self.num_steps)
        ]


@dataclasses.dataclass(frozen=True)
class InverseAutoregressiveFlow:
    """q(z | x): a diagonal Gaussian followed by `num_steps` inverse autoregressive steps.

    z_0 = mean + std * eps; step t: [m, s] = MADE_t(z_{t-1}, context), output i depending only
    on the inputs before i (the order reverses from step to step), and
    z_t = m + exp(s) * z_{t-1}, with s soft-bounded to (-max_log_scale, max_log_scale) by tanh.
    Its Jacobian is triangular with diagonal exp(s), so the density is exact:
    log q(z_T | x) = log N(z_0; mean, std) - sum_t sum_i s_t,i.

    Params (the encoder's outputs): the base's `{"mean", <scale>}` `[B, D]`, `"context"`
    `[B, context_dim]`, and `"flow"`, the MADE weights of `IAFWeights` (per model, not per
    example). `log_prob` at a given z inverts the flow, D fixed-point passes per step (exact:
    pass k fixes the k-th input in the order), so the "stl" and "dreg" estimators cost D times
    a step's flow here; sampling costs one pass.

    References:
      Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, Improved variational inference
      with inverse autoregressive flow, NeurIPS 2016, eq. (10)-(11).
      Germain, Gregor, Murray & Larochelle, MADE, ICML 2015.
    """

    num_steps: int = 2
    hidden_size: int = 320
    context_dim: int = 50
    base: DiagonalGaussian = DiagonalGaussian()
    max_log_scale: float = 5.0

    def __post_init__(self):
        for name in ("num_steps", "hidden_size", "context_dim"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"InverseAutoregressiveFlow {name} must be an integer >= 1; got {value!r}."
                )
        if not (isinstance(self.max_log_scale, int | float) and self.max_log_scale > 0):
            raise ValueError(
                f"max_log_scale must be a positive number; got {self.max_log_scale!r}."
            )

    @property
    def param_names(self) -> tuple[str, ...]:
        return (*self.base.param_names, "context")

    def head_sizes(self, latent_dim: int) -> dict[str, int]:
        """Each per-example head's width: the base's `latent_dim`, the context's own.

        Args:
          latent_dim: D, the size of z.

        Returns:
          A dict from head name to width: the base's two heads D each, "context" `context_dim`.
        """
        return {**dict.fromkeys(self.base.param_names, latent_dim), "context": self.context_dim}

    def weights(self, latent_dim: int, name: str) -> IAFWeights:
        """The module of the flow's own weights (the encoder calls it).

        Args:
          latent_dim: D, the size of z.
          name: the module's name inside the encoder.

        Returns:
          An `IAFWeights` module with `num_steps` steps of MADE weights.
        """
        return IAFWeights(latent_dim, self.context_dim, self.hidden_size, self.num_steps, name=name)

    def _check(self, params: Params) -> None:
        missing = [n for n in (*self.param_names, "flow") if n not in params]
        if missing:
            raise ValueError(
                f"InverseAutoregressiveFlow needs encoder outputs {(*self.param_names, 'flow')}; "
                f"missing {missing}, got keys {sorted(params)}. Build the encoder with this "
                "posterior (networks.posterior_heads makes its heads and weights)."
            )
        if len(params["flow"]) != self.num_steps:
            raise ValueError(
                f"InverseAutoregressiveFlow(num_steps={self.num_steps}) got weights for "
                f"{len(params['flow'])} steps; build the encoder with the same posterior."
            )

    def _step(self, t: int, w: Params, z: jax.Array, context: jax.Array):
        """MADE step t on z `[S, B, D]` with context `[B, C]`: the shift m and the log-scale s,
        each like z."""
        mask_in, mask_out = made_masks(z.shape[-1], w["b_hidden"].shape[0], reverse=t % 2 == 1)
        h = z @ (w["w_in"] * mask_in) + (context @ w["w_context"] + w["b_hidden"][None])[None]
        h = jax.nn.elu(h)
        shift = h @ (w["w_shift"] * mask_out) + w["b_shift"][None, None]
        raw = h @ (w["w_log_scale"] * mask_out) + w["b_log_scale"][None, None]
        bound = self.max_log_scale
        return shift, bound * jnp.tanh(raw / bound)

    def _forward(self, params: Params, z0: jax.Array) -> tuple[jax.Array, jax.Array]:
        """z_T and the log-determinant sum_t sum_i s_t,i `[S, B]`."""
        context, log_det = params["context"], 0.0
        for t, w in enumerate(params["flow"]):
            shift, log_scale = self._step(t, w, z0, context)
            z0 = shift + jnp.exp(log_scale) * z0
            log_det = log_det + log_scale.sum(-1)
        return z0, log_det

    def sample(self, key: jax.Array, params: Params, num_samples: int | None = None) -> jax.Array:
        """z_T: `[B, D]`, or `[S, B, D]` when `num_samples` is given.

        Args:
          key: a JAX PRNG key.
          params: the base's `{"mean", <scale>}` `[B, D]`, `"context"` `[B, context_dim]` and
            `"flow"` (the `IAFWeights` per step).
          num_samples: S, the samples per example; None for one draw with no sample axis.

        Returns:
          The flow's output z_T, `[B, D]`, or `[S, B, D]` when `num_samples` is given.
        """
        self._check(params)
        z0 = self.base.sample(key, params, 1 if num_samples is None else num_samples)
        z = self._forward(params, z0)[0]
        return z[0] if num_samples is None else z

    def sample_and_log_prob(
        self, key: jax.Array, params: Params, num_samples: int
    ) -> tuple[jax.Array, jax.Array]:
        """z_T `[S, B, D]` and log q(z_T | x) `[S, B]`, in one pass of the flow.

        Args:
          key: a JAX PRNG key.
          params: the base's `{"mean", <scale>}` `[B, D]`, `"context"` `[B, context_dim]` and
            `"flow"` (the `IAFWeights` per step).
          num_samples: S, the samples per example.

        Returns:
          `(z, log_q)`: z_T `[S, B, D]` and log q(z_T | x) `[S, B]`.
        """
        self._check(params)
        z0 = self.base.sample(key, params, num_samples)
        z, log_det = self._forward(params, z0)
        return z, self.base.log_prob(params, z0) - log_det

    def log_prob(self, params: Params, z: ArrayLike) -> jax.Array:
        """log q(z | x) at given z: `[B, D] -> [B]` or `[S, B, D] -> [S, B]`, by inverting
        each step (D fixed-point passes: pass k makes the k-th input in the order exact).

        Args:
          params: the base's `{"mean", <scale>}` `[B, D]`, `"context"` `[B, context_dim]` and
            `"flow"` (the `IAFWeights` per step).
          z: latents `[B, D]` or `[S, B, D]`.

        Returns:
          log q(z | x), `[B]` or `[S, B]`.
        """
        self._check(params)
        z = jnp.asarray(z)
        lone = z.ndim == params["mean"].ndim
        z = z[None] if lone else z
        context, log_det = params["context"], 0.0
        for t in reversed(range(self.num_steps)):
            w, target = params["flow"][t], z

            def invert(_, y, t=t, w=w, target=target):
                shift, log_scale = self._step(t, w, y, context)
                return (target - shift) * jnp.exp(-log_scale)

            z = jax.lax.fori_loop(0, z.shape[-1], invert, target)
            log_det = log_det + self._step(t, w, z, context)[1].sum(-1)
        log_q = self.base.log_prob(params, z) - log_det
        return log_q[0] if lone else log_q


POSTERIORS = ("log_var", "log_sigma", "softplus", "iaf")


def make(name: str, **kwargs: Any) -> DiagonalGaussian | InverseAutoregressiveFlow:
    """The posterior a config names.

    Args:
      name: a `DiagonalGaussian` parameterization ("log_var", "log_sigma", "softplus"), or "iaf"
        (an `InverseAutoregressiveFlow` on a "log_var" Gaussian).
      **kwargs: the flow's fields (`num_steps`, `hidden_size`, `context_dim`); none otherwise.

    Returns:
      The posterior.
    """
    if name == "iaf":
        return InverseAutoregressiveFlow(**kwargs)
    if name not in POSTERIORS:
        raise ValueError(f"Unknown posterior {name!r}; valid: {list(POSTERIORS)}.")
    if kwargs:
        raise ValueError(
            f"The {name!r} posterior takes no settings; got posterior_kwargs {dict(kwargs)}. "
            "Those are for posterior='iaf'."
        )
    return DiagonalGaussian(name)


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
