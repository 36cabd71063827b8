"""Variational objectives, written once: the ELBO, the IWAE bound and the log-likelihood estimate.

Every function is pure and returns per-example values `[B]` (nats); reduce over the batch once,
at the call site (the training loss is `-elbo(...).elbo.mean()`). `encode(x) -> dict` gives the
posterior's params and `decode(z) -> dict` the likelihood's, for `z` of shape `[B, D]`; the
objectives know nothing of Flax, so any functions of that shape plug in.

Inputs are checked where that is free: the key, the batch's shape and dtype always (static, also
under `jit`), and, when `x` is concrete (an eager call), its values with `likelihood.check_data`
(a Categorical given 300 or 0.7, a Bernoulli given grey levels). Under `jit` the values are not
known when the function is traced, and checking them in the step would cost a device-to-host
copy per step, so there `check_data` is the caller's job: call it once on the host before the
loop, as the training loop does for every split it uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax.likelihoods import Likelihood
from vaejax.posteriors import (
    DiagonalGaussian,
    _check_num_samples,
    check_key,
    standard_normal_log_prob,
)

Encode = Callable[[jax.Array], Mapping[str, jax.Array]]
Decode = Callable[[jax.Array], Mapping[str, jax.Array]]


class ElboTerms(NamedTuple):
    """Per-example `[B]` terms.

    `elbo = log_likelihood - kl` is the bound on log p(x) whatever `beta` is;
    `objective = log_likelihood - beta * kl` is what a beta-weighted training maximizes
    (equal to `elbo` for beta = 1).
    """

    elbo: jax.Array
    log_likelihood: jax.Array  # Monte Carlo E_q[log p(x | z)]
    kl: jax.Array  # KL(q(z | x) || p(z)), analytic or Monte Carlo
    objective: jax.Array  # log_likelihood - beta * kl


def _check_inputs(key: jax.Array, x: ArrayLike, likelihood: Likelihood) -> jax.Array:
    """Checks the key, the shape and dtype of `x` (static) and its values when concrete."""
    check_key(key)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must be a batch [B, *event] with at least 2 axes; got shape {tuple(x.shape)}. "
            "For a single example pass x[None]."
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"x is an empty batch (shape {tuple(x.shape)}); pass at least one example."
        )
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(
            f"x must be real numbers (a float or integer dtype); got dtype {x.dtype}. The "
            "likelihoods are densities on real data: pass the real part, or the real and "
            "imaginary parts as two channels."
        )
    try:
        values = np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        values = None  # traced (under jit): the caller checks the values (module docstring)
    if values is not None and hasattr(likelihood, "check_data"):
        likelihood.check_data(values)
    return jnp.asarray(x)


def _log_likelihoods(x: jax.Array, z_SxBxD: jax.Array, decode: Decode, likelihood: Likelihood):
    """log p(x | z_s) for each sample: `[S, B]`.

    The decoder runs once, on all `S * B` samples as one batch: plain 2-D matmuls, which XLA
    runs faster than the same work mapped over samples.
    """
    num_samples, batch = z_SxBxD.shape[:2]
    params = decode(z_SxBxD.reshape(num_samples * batch, *z_SxBxD.shape[2:]))
    for name, p in params.items():
        if p.shape[:1] != (num_samples * batch,):
            raise ValueError(
                f"decode must return one row per latent: for z of shape "
                f"{(num_samples * batch, *z_SxBxD.shape[2:])} it returned {name!r} of shape "
                f"{tuple(p.shape)}. Give the decoder's outputs the batch size of its input."
            )
    params = {n: p.reshape(num_samples, batch, *p.shape[1:]) for n, p in params.items()}
    return jax.vmap(likelihood.log_prob, in_axes=(0, None))(params, x)


def elbo(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: DiagonalGaussian = DiagonalGaussian(),
    num_samples: int = 1,
    beta: float | jax.Array = 1.0,
    analytic_kl: bool = True,
) -> ElboTerms:
    """The evidence lower bound E_q[log p(x | z)] - KL(q(z | x) || p(z)), per example.

    With `beta`, also the weighted objective E_q[log p(x | z)] - beta KL (`ElboTerms.objective`);
    `ElboTerms.elbo` stays the bound.

    Args:
      key: PRNG key for the reparameterized samples.
      x: a batch of data `[B, ...]`.
      encode, decode: the networks, as functions (see module docstring).
      likelihood: the decoder's distribution.
      posterior: the encoder's distribution.
      num_samples: Monte Carlo samples of z per example, averaged.
      beta: KL weight (beta-VAE; warm-up schedules pass a traced value).
      analytic_kl: closed-form KL (lower variance) or the Monte Carlo log q(z|x) - log p(z).

    Returns:
      `ElboTerms` of `[B]` arrays: `elbo`, `log_likelihood`, `kl`, `objective`.

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes, 2013, eq. (10).
    """
    _check_num_samples(num_samples)
    x = _check_inputs(key, x, likelihood)
    q = encode(x)
    z = posterior.sample(key, q, num_samples)  # [S, B, D]
    log_likelihood = _log_likelihoods(x, z, decode, likelihood).mean(0)
    if analytic_kl:
        kl = posterior.kl_standard_normal(q)
    else:
        kl = (posterior.log_prob(q, z) - standard_normal_log_prob(z)).mean(0)
    return ElboTerms(log_likelihood - kl, log_likelihood, kl, log_likelihood - beta * kl)


def _log_weights(key, x, q, *, decode, likelihood, posterior, num_samples) -> jax.Array:
    """Importance log-weights log p(x, z_s) - log q(z_s | x): `[S, B]`."""
    z = posterior.sample(key, q, num_samples)
    log_px_z = _log_likelihoods(x, z, decode, likelihood)
    return log_px_z + standard_normal_log_prob(z) - posterior.log_prob(q, z)


def iwae_bound(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: DiagonalGaussian = DiagonalGaussian(),
    num_samples: int,
) -> jax.Array:
    """The importance-weighted bound log (1/S) sum_s p(x, z_s) / q(z_s | x), per example `[B]`.

    With one sample it is the ELBO with a Monte Carlo KL; it rises towards log p(x) with S.

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2015, eq. (8).
    """
    _check_num_samples(num_samples)
    x = _check_inputs(key, x, likelihood)
    log_w = _log_weights(
        key,
        x,
        encode(x),
        decode=decode,
        likelihood=likelihood,
        posterior=posterior,
        num_samples=num_samples,
    )
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def estimate_log_likelihood(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: DiagonalGaussian = DiagonalGaussian(),
    num_samples: int = 5000,
    chunk_size: int = 500,
) -> jax.Array:
    """Importance-sampled estimate of log p(x) with `num_samples` samples, per example `[B]`.

    The encoder runs once; the decoder runs on `chunk_size` samples at a time (a `lax.scan`), so
    memory is bounded by `chunk_size * B` decoder outputs whatever `num_samples` is. This is
    the IWAE bound with many samples (Burda et al. 2015, Sec. 5: 5000 samples).
    """
    _check_num_samples(num_samples)
    _check_num_samples(chunk_size)
    x = _check_inputs(key, x, likelihood)
    q = encode(x)
    chunk_size = min(chunk_size, num_samples)
    num_chunks, remainder = divmod(num_samples, chunk_size)
    log_weights = lambda k, s: _log_weights(
        k, x, q, decode=decode, likelihood=likelihood, posterior=posterior, num_samples=s
    )

    def body(carry, i):
        # A running logsumexp over chunks: memory does not grow with num_chunks.
        lw = log_weights(jax.random.fold_in(key, i), chunk_size)
        return jnp.logaddexp(carry, jax.nn.logsumexp(lw, axis=0)), None

    # The carry takes the log-weights' dtype: float64 under jax_enable_x64 with float64 inputs.
    dtype = jax.eval_shape(lambda k: log_weights(k, chunk_size), key).dtype
    init = jnp.full(x.shape[:1], -jnp.inf, dtype=dtype)
    total, _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
    if remainder:
        lw = log_weights(jax.random.fold_in(key, num_chunks), remainder)
        total = jnp.logaddexp(total, jax.nn.logsumexp(lw, axis=0))
    return total - math.log(num_samples)
