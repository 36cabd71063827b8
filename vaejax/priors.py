"""Priors p(z): what the objectives take as `prior=`, and the Flax modules that learn them.

A prior is any object with two methods (the `Prior` protocol; no registration needed):

  log_prob(z)         `[..., D] -> [...]`, nats;
  sample(key, shape)  `-> [*shape, D]`.

The distributions here are pytrees of arrays, so they cross `jit` and `vmap` like any value:
`StandardNormal`, `Normal` (a diagonal Gaussian with its own means and scales) and
`MixtureOfGaussians` (diagonal components). Learned priors are Flax modules that live in the
VAE beside the encoder and decoder and return one of these distributions when the model is
bound (`networks.bind`): `LearnedNormal`, `LearnedMixture(num_components)` and
`VampPrior(num_pseudo_inputs)`, the uniform mixture of the encoder's own posteriors at learned
pseudo-inputs (Tomczak & Welling 2018). The objectives never see Flax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)


@runtime_checkable
class Prior(Protocol):
    """p(z): the two methods the objectives and figures call."""

    def log_prob(self, z: ArrayLike) -> jax.Array:
        """log p(z) summed over the latent axis: `[..., D] -> [...]`.

        Args:
          z: latents `[..., D]`.

        Returns:
          log p(z) in nats, `[...]`.
        """
        ...

    def sample(self, key: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Draws `[*shape, D]`.

        Args:
          key: a PRNG key.
          shape: the leading shape of the draws, e.g. `(S, B)`.

        Returns:
          Samples of z, `[*shape, D]`.
        """
        ...


def _lead(a: jax.Array, like: jax.Array) -> jax.Array:
    """`a` with leading axes of size 1 to match `like`'s rank (explicit broadcasting)."""
    return a.reshape((1,) * (like.ndim - a.ndim) + a.shape)


def standard_normal_log_prob(z: ArrayLike) -> jax.Array:
    """log N(z; 0, I) summed over the last axis: `[..., D] -> [...]`.

    Args:
      z: latents `[..., D]`.

    Returns:
      The log-densities in nats, `[...]`.
    """
    z = jnp.asarray(z)
    return -0.5 * (jnp.square(z) + _LOG_2PI).sum(-1)


class StandardNormal(struct.PyTreeNode):
    """N(0, I). `latent_dim` is needed only to `sample` (log_prob takes D from z)."""

    latent_dim: int | None = struct.field(pytree_node=False, default=None)

    def log_prob(self, z: ArrayLike) -> jax.Array:
        """log N(z; 0, I) summed over the latent axis.

        Args:
          z: latents `[..., D]`.

        Returns:
          log p(z) in nats, `[...]`.
        """
        return standard_normal_log_prob(z)

    def sample(self, key: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Draws from N(0, I); needs `latent_dim` (a ValueError otherwise).

        Args:
          key: a PRNG key.
          shape: the leading shape of the draws, e.g. `(S, B)`.

        Returns:
          Samples `[*shape, latent_dim]`.
        """
        if self.latent_dim is None:
            raise ValueError(
                "StandardNormal() has no latent_dim to sample; use StandardNormal(latent_dim=D)."
            )
        return jax.random.normal(key, (*shape, self.latent_dim))

    def quantile(self, u: ArrayLike) -> jax.Array:
        """The inverse CDF per dimension (a grid in quantiles covers the prior evenly).

        Args:
          u: probabilities in (0, 1), any shape, e.g. `[..., D]`.

        Returns:
          The standard normal quantiles, elementwise, `u`'s shape.
        """
        return jax.scipy.stats.norm.ppf(jnp.asarray(u))


class Normal(struct.PyTreeNode):
    """N(mean, diag(exp(log_scale)^2)): a diagonal Gaussian with its own parameters, `[D]` each
    (or `[B, D]`: one per example, a conditional prior p(z | y)'s)."""

    mean: jax.Array
    log_scale: jax.Array

    @property
    def latent_dim(self) -> int:
        return self.mean.shape[-1]

    def log_prob(self, z: ArrayLike) -> jax.Array:
        """log N(z; mean, diag(scale^2)) summed over the latent axis.

        Args:
          z: latents `[..., D]`.

        Returns:
          log p(z) in nats, `[...]`.
        """
        z = jnp.asarray(z)
        eps = (z - _lead(self.mean, z)) * _lead(jnp.exp(-self.log_scale), z)
        log_norm = self.log_scale.sum(-1)  # [] or, for a conditional prior, [B]
        return -0.5 * (jnp.square(eps) + _LOG_2PI).sum(-1) - _lead(log_norm, eps[..., 0])

    def sample(self, key: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Draws mean + scale * eps.

        Args:
          key: a PRNG key.
          shape: the leading shape of the draws, e.g. `(S, B)`.

        Returns:
          Samples `[*shape, D]`.
        """
        eps = jax.random.normal(key, (*shape, self.latent_dim))
        return _lead(self.mean, eps) + _lead(jnp.exp(self.log_scale), eps) * eps

    def quantile(self, u: ArrayLike) -> jax.Array:
        """The inverse CDF per dimension, for `u` `[..., D]` in (0, 1).

        Args:
          u: probabilities in (0, 1), `[..., D]`.

        Returns:
          mean + scale * the standard normal quantile of `u`, `[..., D]`.
        """
        q = jax.scipy.stats.norm.ppf(jnp.asarray(u))
        return _lead(self.mean, q) + _lead(jnp.exp(self.log_scale), q) * q


class MixtureOfGaussians(struct.PyTreeNode):
    """sum_k softmax(logits)_k N(means_k, diag(exp(log_scales_k)^2)); `[K]`, `[K, D]`, `[K, D]`.

    `log_prob` expands the squares into matmuls, so memory is `[..., K]` rather than
    `[..., K, D]`: a VampPrior with hundreds of components stays cheap at evaluation's thousands
    of samples. The expansion is taken about the precision-weighted mean of the components'
    means, so it cancels only the components' distances from that centre: in float32 it loses
    about 1e-6 of sum_d (m - centre)^2 / s^2 near a narrow component (a few thousandths of a nat
    for means of 2 and scales of 0.05). Where the components share one mean, as a collapsed
    VampPrior's do (far from 0, with tiny scales), that term is 0; about the origin it was about
    1e8 there, and log p came out nats too high.
    """

    logits: jax.Array
    means: jax.Array
    log_scales: jax.Array

    @property
    def latent_dim(self) -> int:
        return self.means.shape[-1]

    def component_log_probs(self, z: ArrayLike) -> jax.Array:
        """log N(z; means_k, scales_k) for every component: `[..., D] -> [..., K]`.

        Args:
          z: latents `[..., D]`.

        Returns:
          Each component's log-density (without its weight) in nats, `[..., K]`.
        """
        precision = jnp.exp(-2.0 * self.log_scales)  # [K, D]
        centre = (self.means * precision).sum(0) / precision.sum(0)  # [D]
        z = jnp.asarray(z)
        z, means = z - _lead(centre, z), self.means - centre[None]
        # sum_d (z_d - m_kd)^2 p_kd = z^2 . p_k - 2 z . (m p)_k + m^2 . p_k
        cross = jnp.square(z) @ precision.T - 2.0 * z @ (means * precision).T  # [..., K]
        const = (jnp.square(means) * precision).sum(-1)  # [K]
        log_norm = self.log_scales.sum(-1) + 0.5 * self.latent_dim * _LOG_2PI  # [K]
        return -0.5 * jnp.maximum(cross + _lead(const, cross), 0.0) - _lead(log_norm, cross)

    def log_prob(self, z: ArrayLike) -> jax.Array:
        """log sum_k softmax(logits)_k N(z; means_k, scales_k).

        Args:
          z: latents `[..., D]`.

        Returns:
          log p(z) in nats, `[...]`.
        """
        components = self.component_log_probs(z)
        log_weights = _lead(jax.nn.log_softmax(self.logits), components)
        return jax.nn.logsumexp(log_weights + components, axis=-1)

    def sample(self, key: jax.Array, shape: Sequence[int]) -> jax.Array:
        """Draws a component per sample by its weight, then z from that component.

        Args:
          key: a PRNG key.
          shape: the leading shape of the draws, e.g. `(S, B)`.

        Returns:
          Samples `[*shape, D]`.
        """
        k_component, k_eps = jax.random.split(key)
        k = jax.random.categorical(k_component, self.logits, shape=tuple(shape))
        eps = jax.random.normal(k_eps, (*shape, self.latent_dim))
        return self.means[k] + jnp.exp(self.log_scales[k]) * eps


# ---- learned priors: Flax modules that return a distribution when the model is bound


class LearnedNormal(nn.Module):
    """A diagonal Gaussian prior with learned means and scales, starting at N(0, I)."""

    latent_dim: int

    @nn.compact
    def __call__(self, encode: Callable | None = None) -> Normal:
        del encode
        zeros = nn.initializers.zeros
        mean = self.param("mean", zeros, (self.latent_dim,))
        return Normal(mean, self.param("log_scale", zeros, (self.latent_dim,)))


class ConditionalNormal(nn.Module):
    """p(z | y) = N(mean(y), diag(exp(log_scale(y))^2)) of a conditional VAE: a plain `nn.Dense`
    head each from the embedded side input (`VAE.condition`), zero-initialized, so it starts
    at N(0, I). Its `Normal` has `[B, D]` means and scales, one per example."""

    latent_dim: int

    @nn.compact
    def __call__(self, c: jax.Array) -> Normal:
        zeros = nn.initializers.zeros
        dense = lambda name: nn.Dense(self.latent_dim, kernel_init=zeros, name=name)(c)
        return Normal(dense("mean"), dense("log_scale"))


class LearnedMixture(nn.Module):
    """A mixture of `num_components` diagonal Gaussians: learned weights, means and scales.

    Means start spread as N(0, I) draws so the components differ; weights uniform; scales 1.
    """

    latent_dim: int
    num_components: int

    def __post_init__(self):
        if self.num_components < 1:
            raise ValueError(f"num_components must be >= 1; got {self.num_components}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, encode: Callable | None = None) -> MixtureOfGaussians:
        del encode
        k, d = self.num_components, self.latent_dim
        return MixtureOfGaussians(
            logits=self.param("logits", nn.initializers.zeros, (k,)),
            means=self.param("means", nn.initializers.normal(1.0), (k, d)),
            log_scales=self.param("log_scales", nn.initializers.zeros, (k, d)),
        )


class VampPrior(nn.Module):
    """The uniform mixture of q(z | u_k) over `num_pseudo_inputs` learned inputs u_k.

    Calls the encoder (passed as `encode`, a function returning a diagonal Gaussian's params)
    on its pseudo-inputs, so the prior moves with the encoder. Pseudo-inputs start as small
    noise around 0.5 in the data's shape.

    References:
      Tomczak & Welling, VAE with a VampPrior, AISTATS 2018, eq. (9).
    """

    num_pseudo_inputs: int
    data_shape: tuple[int, ...]
    posterior: Any  # the encoder's posterior: maps its params to mean and log std

    def __post_init__(self):
        if self.num_pseudo_inputs < 1:
            raise ValueError(f"num_pseudo_inputs must be >= 1; got {self.num_pseudo_inputs}.")
        if not hasattr(self.posterior, "log_stddev"):
            raise ValueError(
                "The VampPrior is a mixture of the posterior's densities at its pseudo-inputs and "
                "needs them as diagonal Gaussians; the posterior "
                f"{type(self.posterior).__name__} is not one. Use a DiagonalGaussian posterior "
                "with it, or another prior."
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, encode: Callable) -> MixtureOfGaussians:
        init = lambda key, shape: 0.5 + 0.01 * jax.random.normal(key, shape)
        u = self.param("pseudo_inputs", init, (self.num_pseudo_inputs, *self.data_shape))
        q = encode(u)
        return MixtureOfGaussians(
            logits=jnp.zeros(self.num_pseudo_inputs),
            means=q["mean"],
            log_scales=self.posterior.log_stddev(q),
        )


PRIORS = ("standard_normal", "normal", "mixture", "vampprior", "conditional_normal")


def make(
    name: str,
    *,
    latent_dim: int,
    data_shape: tuple[int, ...],
    posterior: Any,
    num_components: int = 1,
) -> nn.Module | StandardNormal:
    """The prior named in a config: a fixed distribution or a module with its parameters.

    Args:
      name: one of `PRIORS`: "standard_normal", "normal" (learned), "mixture" (learned),
        "vampprior", or "conditional_normal" (learned p(z | y), for a conditional model).
      latent_dim: D, the size of z (a hierarchy's top layer).
      data_shape: one example's shape (the VampPrior's pseudo-inputs have it).
      posterior: the encoder's posterior (the VampPrior's mixture is of it).
      num_components: the mixture's components or the VampPrior's pseudo-inputs.

    Returns:
      A `StandardNormal`, or a Flax module that gives its distribution once bound.
    """
    if name == "standard_normal":
        return StandardNormal(latent_dim)
    if name == "normal":
        return LearnedNormal(latent_dim)
    if name == "mixture":
        return LearnedMixture(latent_dim, num_components)
    if name == "vampprior":
        return VampPrior(num_components, tuple(data_shape), posterior)
    if name == "conditional_normal":
        return ConditionalNormal(latent_dim)
    raise ValueError(f"Unknown prior {name!r}; valid: {list(PRIORS)}.")
