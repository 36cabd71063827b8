"""Variational objectives, written once: the ELBO, the IWAE bound and the log-likelihood estimate.

Each is pure and returns per-example values `[B]` (nats), reduced once by the caller (the
training loss is `-elbo(...).elbo.mean()`). They reduce a model's per-sample `vaejax.terms.Terms`:
the ELBO by the mean over samples, IWAE by logsumexp, the estimate by a chunked logsumexp. A model
is `model=` (anything with `infer(x)`) or a one-layer model as functions (`encode=`, `decode=`,
`likelihood=`, `posterior=`, `prior=`). The key and the batch's shape are checked always, the
values only in an eager call: under `jit`, `likelihood.check_data` is the caller's job, once on
the host, as the training loop does.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax import fields
from vaejax.posteriors import check_key
from vaejax.terms import Inference, Model, Terms, as_model

GRADIENT_ESTIMATORS = ("reparameterized", "stl", "dreg")


class ElboTerms(NamedTuple):
    """Per-example `[B]` terms.

    `elbo = log_likelihood - kl` is the bound on log p(x) whatever `beta` is;
    `objective = log_likelihood - beta * kl` is what a beta-weighted training maximizes
    (equal to `elbo` for beta = 1). `kl` sums the stochastic layers' `kl_per_layer`.
    """

    elbo: jax.Array
    log_likelihood: jax.Array  # Monte Carlo E_q[log p(x | z)]
    kl: jax.Array  # KL(q(z | x) || p(z)), analytic or Monte Carlo
    objective: jax.Array  # log_likelihood - beta * kl
    kl_per_layer: tuple[jax.Array, ...] = ()  # [B] per stochastic layer, z_1 first
    kl_per_dim: tuple[jax.Array | None, ...] = ()  # [B, D_l] where in closed form, else None


def _check_inputs(key: jax.Array, x: ArrayLike, likelihood: Any) -> jax.Array:
    """Checks the key, the shape and dtype of `x` (static) and its values when concrete."""
    check_key(key)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must be a batch [B, *event] with at least 2 axes; got shape {tuple(x.shape)}. "
            "For one example of D values pass x[None]; for B examples of one value, x[:, None]."
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"x is an empty batch (shape {tuple(x.shape)}); pass at least one example."
        )
    if x.dtype == bool:
        raise ValueError(
            "x is boolean; the likelihoods are densities on numbers: pass "
            "x.astype(np.float32) (True as 1.0)."
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


def _check_estimator(gradient_estimator: str, allowed: tuple[str, ...]) -> None:
    if gradient_estimator not in allowed:
        raise ValueError(
            f"Unknown gradient_estimator {gradient_estimator!r} here; valid: {list(allowed)}."
        )


def _infer(key: jax.Array, x: ArrayLike, model: Model | None, one_layer) -> Inference:
    """The batch's `Inference`, from `model` or the one-layer keywords; checks the inputs."""
    model = as_model(model, one_layer)
    return model.infer(_check_inputs(key, x, getattr(model, "likelihood", None)))


def _sum(values) -> jax.Array:
    return functools.reduce(operator.add, values)


def log_weights(terms: Terms) -> jax.Array:
    """Importance log-weights log p(x, z_s) - log q(z_s | x), `[S, B]`.

    Args:
      terms: a batch's `Terms`, every entry `[S, B]`.

    Returns:
      log p(x | z_1) plus the layers' log p minus their log q, `[S, B]`.
    """
    return terms.log_px_z + _sum(terms.log_p) - _sum(terms.log_q)


def _layer_kls(inference, terms: Terms, analytic_kl: bool | None):
    """Per layer: KL `[B]` and its closed form per dimension `[B, D]` (or None)."""
    kls, per_dims = [], []
    for layer, (log_q, log_p, per_dim) in enumerate(
        zip(terms.log_q, terms.log_p, terms.kl_per_dim, strict=True)
    ):
        if per_dim is not None and per_dim.ndim == log_q.ndim + 1:  # [S, B, D]: mean over S
            per_dim = per_dim.mean(0)
        if per_dim is not None and analytic_kl is not False:
            kls.append(per_dim.sum(-1))
        elif analytic_kl:
            describe = getattr(inference, "describe", lambda i: f"stochastic layer {i + 1}")
            raise ValueError(
                f"No closed-form KL between {describe(layer)}; set analytic_kl=False (Monte "
                "Carlo) or None (closed form where one exists)."
            )
        else:
            kls.append((log_q - log_p).mean(0))
        per_dims.append(per_dim)
    return tuple(kls), tuple(per_dims)


def elbo(
    key: jax.Array,
    x: ArrayLike,
    *,
    model: Model | None = None,
    num_samples: int = 1,
    beta: float | jax.Array = 1.0,
    analytic_kl: bool | None = None,
    gradient_estimator: str = "reparameterized",
    **one_layer: Any,
) -> ElboTerms:
    """The evidence lower bound E_q[log p(x | z)] - KL(q(z | x) || p(z)), per example.

    With `beta`, also the weighted objective E_q[log p(x | z)] - beta KL (`ElboTerms.objective`);
    `ElboTerms.elbo` stays the bound. With several stochastic layers the KL is the sum of the
    layers' (`ElboTerms.kl_per_layer`), each E_q[log q(z_l | ..) - log p(z_l | ..)].

    Args:
      key: PRNG key for the reparameterized samples.
      x: a batch of data `[B, ...]`.
      model: any `Model` (`infer(x)`, `vaejax.terms`).
      **one_layer: or, for one stochastic layer given as functions, `encode=`, `decode=`,
        `likelihood=` and optionally `posterior=` and `prior=` (`terms.Functions`).
      num_samples: Monte Carlo samples of z per example, averaged.
      beta: KL weight (beta-VAE; warm-up schedules pass a traced value).
      analytic_kl: the closed-form KL where a layer has one (None, the default), insist on it
        (True: a ValueError naming the pair if there is none), or the Monte Carlo
        log q - log p (False).
      gradient_estimator: "reparameterized", or "stl" (sticking the landing: the Monte Carlo
        KL's gradient through z only; with an analytic KL there is nothing to change).

    Returns:
      `ElboTerms` of `[B]` arrays: `elbo`, `log_likelihood`, `kl`, `objective`, and per layer.

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes, 2013, eq. (10).
      Roeder, Wu & Duvenaud, Sticking the Landing, 2017.
    """
    fields.check_count(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS[:2])
    inference = _infer(key, x, model, one_layer)
    terms = inference.sample_terms(key, num_samples, gradient_estimator)
    log_likelihood = terms.log_px_z.mean(0)
    kls, per_dims = _layer_kls(inference, terms, analytic_kl)
    kl = _sum(kls)
    return ElboTerms(
        log_likelihood - kl, log_likelihood, kl, log_likelihood - beta * kl, kls, per_dims
    )


def _dreg_surrogate(log_w_of, zs: tuple[jax.Array, ...]) -> jax.Array:
    """logsumexp of the log-weights, with DReG's gradients (Tucker et al. 2018, eq. 7).

    Its value is logsumexp(log w). The decoder's and the prior's parameters get the IWAE
    gradient sum_s w~_s grad log w_s; the encoder's, through the samples only (q's parameters
    are held fixed in log q), sum_s w~_s^2 grad_z log w_s dz/dphi. Each layer's sample path is
    scaled by w~_s with an identity whose derivative is w~_s, after a forward pass that finds
    w~ (one extra decode).
    """
    log_w = jax.lax.stop_gradient(log_w_of(zs))
    w = jax.nn.softmax(log_w, axis=0)  # w~_s, [S, B]

    def scaled(z):
        z_stopped = jax.lax.stop_gradient(z)
        return z_stopped + w.reshape(w.shape + (1,) * (z.ndim - 2)) * (z - z_stopped)

    surrogate = (w * log_w_of(tuple(map(scaled, zs)))).sum(0)
    total = jax.nn.logsumexp(log_w, axis=0)
    return total + surrogate - jax.lax.stop_gradient(surrogate)


def iwae_bound(
    key: jax.Array,
    x: ArrayLike,
    *,
    model: Model | None = None,
    num_samples: int,
    gradient_estimator: str = "reparameterized",
    **one_layer: Any,
) -> jax.Array:
    """The importance-weighted bound log (1/S) sum_s p(x, z_s) / q(z_s | x), per example `[B]`.

    With one sample it is the ELBO with a Monte Carlo KL; it rises towards log p(x) with S.
    `gradient_estimator` changes the gradient, never the value: "reparameterized" (the plain
    IWAE gradient), "stl" (sticking the landing: log q's parameters stopped; for S > 1 its
    encoder gradient is biased, Tucker et al. 2018 section 3, though its variance is lowest) or
    "dreg" (doubly reparameterized: the encoder's gradient with squared normalized weights,
    unbiased, lower variance as S grows; the decoder's unchanged). "dreg" needs the model's
    `Inference` to have `sample` and `terms_at`, and q's parameters apart from p's.

    Args:
      key: a PRNG key for the samples.
      x: a batch `[B, *event]`.
      model: anything with `infer(x)` (`vaejax.terms.Model`), e.g. `networks.bind(model, params)`;
        or give a one-layer model as `encode=`, `decode=`, `likelihood=` (and `posterior=`,
        `prior=`) instead.
      num_samples: S >= 1 importance samples per example.
      gradient_estimator: "reparameterized", "stl" or "dreg".

    Returns:
      The bound per example, `[B]`, in nats.

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2015, eq. (8).
      Roeder, Wu & Duvenaud, Sticking the Landing, 2017.
      Tucker, Lawson, Gu & Maddison, Doubly Reparameterized Gradient Estimators, 2018.
    """
    fields.check_count(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS)
    inference = _infer(key, x, model, one_layer)
    if gradient_estimator == "dreg":
        if not hasattr(inference, "terms_at"):
            raise ValueError(
                f"gradient_estimator='dreg' needs the model's inference to evaluate the terms at "
                f"given samples with q's parameters held fixed (terms_at); "
                f"{type(inference).__name__} has none. Use 'reparameterized' or 'stl'."
            )
        zs = inference.sample(key, num_samples)
        log_w_of = lambda zs: log_weights(inference.terms_at(zs))
        return _dreg_surrogate(log_w_of, zs) - math.log(num_samples)
    log_w = log_weights(inference.sample_terms(key, num_samples, gradient_estimator))
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def estimate_log_likelihood(
    key: jax.Array,
    x: ArrayLike,
    *,
    model: Model | None = None,
    num_samples: int = 5000,
    chunk_size: int = 500,
    **one_layer: Any,
) -> jax.Array:
    """Importance-sampled estimate of log p(x) with `num_samples` samples, per example `[B]`.

    The model is conditioned on `x` once (the encoder runs once); the samples are drawn and
    decoded `chunk_size` at a time (a `lax.scan`), so memory is bounded by `chunk_size * B`
    decoder outputs whatever `num_samples` is. This is the IWAE bound with many samples
    (Burda et al. 2015, Sec. 5: 5000 samples).

    Args:
      key: a PRNG key; chunk i draws with `fold_in(key, i)`.
      x: a batch `[B, *event]`.
      model: as in `iwae_bound` (or `encode=`, `decode=`, `likelihood=`, ...).
      num_samples: importance samples per example.
      chunk_size: samples drawn and decoded at a time.

    Returns:
      The estimate of log p(x) per example, `[B]`, in nats.
    """
    fields.check_count(num_samples)
    fields.check_count(chunk_size, "chunk_size")
    inference = _infer(key, x, model, one_layer)
    chunk_size = min(chunk_size, num_samples)
    num_chunks, remainder = divmod(num_samples, chunk_size)
    chunk = lambda k, s: log_weights(inference.sample_terms(k, s))

    def body(carry, i):
        # A running logsumexp over chunks: memory does not grow with num_chunks.
        lw = chunk(jax.random.fold_in(key, i), chunk_size)
        return jnp.logaddexp(carry, jax.nn.logsumexp(lw, axis=0)), None

    # The carry takes the log-weights' dtype: float64 under jax_enable_x64 with float64 inputs.
    shape = jax.eval_shape(lambda k: chunk(k, chunk_size), key)
    init = jnp.full(shape.shape[1:], -jnp.inf, dtype=shape.dtype)
    total, _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
    if remainder:
        lw = chunk(jax.random.fold_in(key, num_chunks), remainder)
        total = jnp.logaddexp(total, jax.nn.logsumexp(lw, axis=0))
    return total - math.log(num_samples)
