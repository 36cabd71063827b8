"""Variational objectives, written once: the ELBO, the IWAE bound and the log-likelihood estimate.

Every function is pure and returns per-example values `[B]` (nats); reduce over the batch once,
at the call site (the training loss is `-elbo(...).elbo.mean()`). `encode(x) -> dict` gives the
posterior's params and `decode(z) -> dict` the likelihood's, for `z` of shape `[B, D]`; the
objectives know nothing of Flax, so any functions of that shape plug in. So do any prior
(`log_prob`, `sample`: `vaejax.priors.Prior`) and any posterior (`sample_and_log_prob`,
`log_prob`: `vaejax.posteriors.Posterior`).

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
    Posterior,
    _check_num_samples,
    analytic_kl_per_dim,
    check_key,
)
from vaejax.priors import Prior, StandardNormal

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


GRADIENT_ESTIMATORS = ("reparameterized", "stl", "dreg")


def kl_term(
    posterior: Posterior,
    q: Mapping[str, jax.Array],
    prior: Prior,
    z: jax.Array,
    log_q: jax.Array,
    *,
    analytic_kl: bool | None = None,
) -> jax.Array:
    """KL(q(z | x) || p(z)) per example `[B]`: in closed form or by Monte Carlo over `z`.

    `analytic_kl`: None takes the closed form where the pair has one (`kl_per_dim`), else the
    Monte Carlo mean of log q(z | x) - log p(z); True insists on the closed form (a ValueError
    naming the pair if there is none); False always takes the Monte Carlo estimate.
    """
    _check_prior_dim(prior, z)
    per_dim = None if analytic_kl is False else analytic_kl_per_dim(posterior, q, prior)
    if per_dim is not None:
        return per_dim.sum(-1)
    if analytic_kl:
        raise ValueError(
            f"No closed-form KL between the posterior {type(posterior).__name__} and the prior "
            f"{type(prior).__name__}; set analytic_kl=False (Monte Carlo) or None (closed form "
            "where one exists)."
        )
    return (log_q - prior.log_prob(z)).mean(0)


def _check_prior_dim(prior: Prior, z: jax.Array) -> None:
    prior_dim = getattr(prior, "latent_dim", None)
    if prior_dim is not None and prior_dim != z.shape[-1]:
        raise ValueError(
            f"The prior {type(prior).__name__} has latent_dim={prior_dim} but the posterior's "
            f"samples have {z.shape[-1]}; give the prior the encoder's latent size."
        )


def _check_estimator(gradient_estimator: str, allowed: tuple[str, ...]) -> None:
    if gradient_estimator not in allowed:
        raise ValueError(
            f"Unknown gradient_estimator {gradient_estimator!r} here; valid: {list(allowed)}."
        )


def _sample(key, q, posterior, num_samples, gradient_estimator):
    """z `[S, B, D]` and log q(z | x) `[S, B]`; "stl"/"dreg" stop the gradient through q's
    parameters in log q (Roeder et al. 2017), keeping only the path through z."""
    if gradient_estimator == "reparameterized":
        return posterior.sample_and_log_prob(key, q, num_samples)
    z = posterior.sample(key, q, num_samples)
    return z, posterior.log_prob(jax.lax.stop_gradient(q), z)


def elbo(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: Posterior = DiagonalGaussian(),
    prior: Prior = StandardNormal(),
    num_samples: int = 1,
    beta: float | jax.Array = 1.0,
    analytic_kl: bool | None = None,
    gradient_estimator: str = "reparameterized",
) -> ElboTerms:
    """The evidence lower bound E_q[log p(x | z)] - KL(q(z | x) || p(z)), per example.

    With `beta`, also the weighted objective E_q[log p(x | z)] - beta KL (`ElboTerms.objective`);
    `ElboTerms.elbo` stays the bound.

    Args:
      key: PRNG key for the reparameterized samples.
      x: a batch of data `[B, ...]`.
      encode, decode: the networks, as functions (see module docstring).
      likelihood: the decoder's distribution.
      posterior: the encoder's distribution (any `posteriors.Posterior`).
      prior: p(z) (any `priors.Prior`).
      num_samples: Monte Carlo samples of z per example, averaged.
      beta: KL weight (beta-VAE; warm-up schedules pass a traced value).
      analytic_kl: the closed-form KL where the pair has one (None, the default), insist on it
        (True), or the Monte Carlo log q(z|x) - log p(z) (False); see `kl_term`.
      gradient_estimator: "reparameterized", or "stl" (sticking the landing: the Monte Carlo
        KL's gradient through z only; with an analytic KL there is nothing to change).

    Returns:
      `ElboTerms` of `[B]` arrays: `elbo`, `log_likelihood`, `kl`, `objective`.

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes, 2013, eq. (10).
      Roeder, Wu & Duvenaud, Sticking the Landing, 2017.
    """
    _check_num_samples(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS[:2])
    x = _check_inputs(key, x, likelihood)
    q = encode(x)
    z, log_q = _sample(key, q, posterior, num_samples, gradient_estimator)  # [S, B, D], [S, B]
    log_likelihood = _log_likelihoods(x, z, decode, likelihood).mean(0)
    kl = kl_term(posterior, q, prior, z, log_q, analytic_kl=analytic_kl)
    return ElboTerms(log_likelihood - kl, log_likelihood, kl, log_likelihood - beta * kl)


def _log_weights(key, x, q, *, decode, likelihood, posterior, prior, num_samples, estimator):
    """Importance log-weights log p(x, z_s) - log q(z_s | x) `[S, B]`, and the samples."""
    z, log_q = _sample(key, q, posterior, num_samples, estimator)
    _check_prior_dim(prior, z)
    log_px_z = _log_likelihoods(x, z, decode, likelihood)
    return log_px_z + prior.log_prob(z) - log_q, z


def _dreg_surrogate(log_w_of, z: jax.Array) -> jax.Array:
    """logsumexp of the log-weights, with DReG's gradients (Tucker et al. 2018, eq. 7).

    Its value is logsumexp(log w). The decoder's and the prior's parameters get the IWAE
    gradient sum_s w~_s grad log w_s; the encoder's, through z only (log q's parameters are
    stopped), sum_s w~_s^2 grad_z log w_s dz/dphi. The z path is scaled by w~_s with an
    identity whose derivative is w~_s, after a forward pass that finds w~ (one extra decode).
    """
    log_w = jax.lax.stop_gradient(log_w_of(z))
    w = jax.nn.softmax(log_w, axis=0)  # w~_s, [S, B]
    z_scaled = jax.lax.stop_gradient(z) + w[..., None] * (z - jax.lax.stop_gradient(z))
    surrogate = (w * log_w_of(z_scaled)).sum(0)
    total = jax.nn.logsumexp(log_w, axis=0)
    return total + surrogate - jax.lax.stop_gradient(surrogate)


def iwae_bound(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: Posterior = DiagonalGaussian(),
    prior: Prior = StandardNormal(),
    num_samples: int,
    gradient_estimator: str = "reparameterized",
) -> jax.Array:
    """The importance-weighted bound log (1/S) sum_s p(x, z_s) / q(z_s | x), per example `[B]`.

    With one sample it is the ELBO with a Monte Carlo KL; it rises towards log p(x) with S.
    `gradient_estimator` changes the gradient, never the value: "reparameterized" (the plain
    IWAE gradient), "stl" (sticking the landing: log q's parameters stopped; for S > 1 its
    encoder gradient is biased, Tucker et al. 2018 section 3, though its variance is lowest) or
    "dreg" (doubly reparameterized: the encoder's gradient with squared normalized weights,
    unbiased, lower variance as S grows; the decoder's unchanged).

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2015, eq. (8).
      Roeder, Wu & Duvenaud, Sticking the Landing, 2017.
      Tucker, Lawson, Gu & Maddison, Doubly Reparameterized Gradient Estimators, 2018.
    """
    _check_num_samples(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS)
    x = _check_inputs(key, x, likelihood)
    q = encode(x)
    common = dict(decode=decode, likelihood=likelihood, posterior=posterior, prior=prior)
    if gradient_estimator == "dreg":
        q_stopped = jax.lax.stop_gradient(q)

        def log_w_of(z):  # log p(x, z) - log q(z | x) with q's parameters stopped
            log_q = posterior.log_prob(q_stopped, z)
            return _log_likelihoods(x, z, decode, likelihood) + prior.log_prob(z) - log_q

        z = posterior.sample(key, q, num_samples)
        return _dreg_surrogate(log_w_of, z) - math.log(num_samples)
    log_w, _ = _log_weights(
        key, x, q, num_samples=num_samples, estimator=gradient_estimator, **common
    )
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def estimate_log_likelihood(
    key: jax.Array,
    x: ArrayLike,
    *,
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    posterior: Posterior = DiagonalGaussian(),
    prior: Prior = StandardNormal(),
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
    common = dict(decode=decode, likelihood=likelihood, posterior=posterior, prior=prior)
    log_weights = lambda k, s: _log_weights(
        k, x, q, num_samples=s, estimator="reparameterized", **common
    )[0]

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
