"""Variational objectives, written once: the ELBO, the IWAE bound and the log-likelihood estimate.

Every function is pure and returns per-example values `[B]` (nats); reduce over the batch once,
at the call site (the training loss is `-elbo(...).elbo.mean()`).

The objectives reduce per-sample log-densities (`Terms`): log p(x | z) and, per stochastic
layer, log p(z_l | ...) and log q(z_l | ...) `[S, B]`, with the closed-form KL where one exists.
A model gives them through `model.infer(x) -> Inference` (the `Model` protocol: any object with
that method, e.g. `networks.bind(model, params)` for the one-layer VAE and the hierarchical
models of `vaejax.hierarchical`); the ELBO takes their mean over samples, IWAE their logsumexp,
the log-likelihood estimate a chunked running logsumexp. The one-layer case can also be given
as functions: `encode(x) -> dict` gives the posterior's params and `decode(z) -> dict` the
likelihood's, for `z` of shape `[B, D]`, with any prior (`log_prob`, `sample`:
`vaejax.priors.Prior`) and any posterior (`sample_and_log_prob`, `log_prob`:
`vaejax.posteriors.Posterior`). The objectives know nothing of Flax.

Inputs are checked where that is free: the key, the batch's shape and dtype always (static, also
under `jit`), and, when `x` is concrete (an eager call), its values with `likelihood.check_data`
(a Categorical given 300 or 0.7, a Bernoulli given grey levels). Under `jit` the values are not
known when the function is traced, and checking them in the step would cost a device-to-host
copy per step, so there `check_data` is the caller's job: call it once on the host before the
loop, as the training loop does for every split it uses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

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

GRADIENT_ESTIMATORS = ("reparameterized", "stl", "dreg")


class Terms(NamedTuple):
    """One batch's per-sample log-densities: what the objectives reduce.

    Stochastic layers are listed from the data up: z_1 first, the top layer z_L last. A model
    with one stochastic layer has one entry in each tuple.
    """

    log_px_z: jax.Array  # log p(x | z_1), [S, B]
    log_p: tuple[jax.Array, ...]  # log p(z_l | z_{l+1}); the top layer's log p(z_L); [S, B]
    log_q: tuple[jax.Array, ...]  # log q(z_l | x, ...), [S, B]
    # KL(q(z_l | ..) || p(z_l | ..)) per dimension in closed form, [B, D_l], or [S, B, D_l]
    # where it depends on the samples of other layers; None where there is no closed form.
    kl_per_dim: tuple[jax.Array | None, ...]


class Inference(Protocol):
    """A model conditioned on one batch `x` (what `Model.infer(x)` returns).

    `sample(key, num_samples)` (reparameterized samples of every layer, `[S, B, ...]` each) and
    `terms_at(zs)` (the `Terms` at given samples with q's parameters, not the samples, held
    fixed) are optional: the "dreg" estimator needs them.
    """

    def sample_terms(
        self, key: jax.Array, num_samples: int, gradient_estimator: str = "reparameterized"
    ) -> Terms:
        """Draws `num_samples` reparameterized samples per example and returns their terms;
        "stl" holds q's parameters fixed in log q (the gradient flows through z only)."""
        ...


class Model(Protocol):
    """What the objectives take as `model=`: `infer(x) -> Inference`. An optional
    `likelihood` attribute lets eager calls check the data's values."""

    def infer(self, x: jax.Array) -> Inference: ...


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


def log_likelihoods(x: jax.Array, z_SxBxD: jax.Array, decode: Decode, likelihood: Likelihood):
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


def check_prior_dim(prior: Prior, z: jax.Array) -> None:
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


def sample_and_log_prob(key, q, posterior, num_samples, gradient_estimator):
    """z `[S, B, D]` and log q(z | x) `[S, B]`; "stl"/"dreg" stop the gradient through q's
    parameters in log q (Roeder et al. 2017), keeping only the path through z."""
    if gradient_estimator == "reparameterized":
        return posterior.sample_and_log_prob(key, q, num_samples)
    z = posterior.sample(key, q, num_samples)
    return z, posterior.log_prob(jax.lax.stop_gradient(q), z)


@dataclasses.dataclass(frozen=True)
class OneLayer:
    """The `Inference` of a one-stochastic-layer model: z ~ q(z | x) given by the encoder's
    params `q`, p(z) = `prior`, p(x | z) = `likelihood` at `decode(z)`."""

    x: jax.Array
    q: Mapping[str, Any]
    decode: Decode
    likelihood: Likelihood
    posterior: Posterior
    prior: Prior

    def describe(self, layer: int) -> str:
        del layer
        return (
            f"the posterior {type(self.posterior).__name__} and the prior "
            + type(self.prior).__name__
        )

    def sample_terms(self, key, num_samples, gradient_estimator="reparameterized") -> Terms:
        z, log_q = sample_and_log_prob(key, self.q, self.posterior, num_samples, gradient_estimator)
        return self._terms(z, log_q)

    def sample(self, key: jax.Array, num_samples: int) -> tuple[jax.Array]:
        return (self.posterior.sample(key, self.q, num_samples),)

    def terms_at(self, zs: tuple[jax.Array]) -> Terms:
        (z,) = zs
        return self._terms(z, self.posterior.log_prob(jax.lax.stop_gradient(self.q), z))

    def _terms(self, z: jax.Array, log_q: jax.Array) -> Terms:
        check_prior_dim(self.prior, z)
        return Terms(
            log_px_z=log_likelihoods(self.x, z, self.decode, self.likelihood),
            log_p=(self.prior.log_prob(z),),
            log_q=(log_q,),
            kl_per_dim=(analytic_kl_per_dim(self.posterior, self.q, self.prior),),
        )


def _infer(key, x, model, encode, decode, likelihood, posterior, prior) -> Inference:
    """The batch's `Inference`, from `model` or from the one-layer functions; checks inputs."""
    if model is not None:
        if encode is not None or decode is not None:
            raise ValueError(
                "Pass either model= (a model with infer(x)) or encode=/decode= (one stochastic "
                "layer), not both."
            )
        return model.infer(_check_inputs(key, x, getattr(model, "likelihood", likelihood)))
    missing = [
        n
        for n, v in (("encode", encode), ("decode", decode), ("likelihood", likelihood))
        if v is None
    ]
    if missing:
        raise ValueError(
            f"Missing {missing}: pass encode=, decode= and likelihood= (one stochastic layer), "
            "or model= (any model with infer(x), e.g. networks.bind(model, params))."
        )
    x = _check_inputs(key, x, likelihood)
    return OneLayer(x, encode(x), decode, likelihood, posterior, prior)


def _sum(values) -> jax.Array:
    return functools.reduce(operator.add, values)


def log_weights(terms: Terms) -> jax.Array:
    """Importance log-weights log p(x, z_s) - log q(z_s | x), `[S, B]`."""
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
    encode: Encode | None = None,
    decode: Decode | None = None,
    likelihood: Likelihood | None = None,
    posterior: Posterior = DiagonalGaussian(),
    prior: Prior = StandardNormal(),
    num_samples: int = 1,
    beta: float | jax.Array = 1.0,
    analytic_kl: bool | None = None,
    gradient_estimator: str = "reparameterized",
) -> ElboTerms:
    """The evidence lower bound E_q[log p(x | z)] - KL(q(z | x) || p(z)), per example.

    With `beta`, also the weighted objective E_q[log p(x | z)] - beta KL (`ElboTerms.objective`);
    `ElboTerms.elbo` stays the bound. With several stochastic layers the KL is the sum of the
    layers' (`ElboTerms.kl_per_layer`), each E_q[log q(z_l | ..) - log p(z_l | ..)].

    Args:
      key: PRNG key for the reparameterized samples.
      x: a batch of data `[B, ...]`.
      model: any `Model` (`infer(x)`); or, for one stochastic layer, `encode`, `decode`,
        `likelihood`, `posterior` and `prior` (see the module docstring).
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
    _check_num_samples(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS[:2])
    inference = _infer(key, x, model, encode, decode, likelihood, posterior, prior)
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
    encode: Encode | None = None,
    decode: Decode | None = None,
    likelihood: Likelihood | None = None,
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
    unbiased, lower variance as S grows; the decoder's unchanged). "dreg" needs the model's
    `Inference` to have `sample` and `terms_at`, and q's parameters apart from p's.

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2015, eq. (8).
      Roeder, Wu & Duvenaud, Sticking the Landing, 2017.
      Tucker, Lawson, Gu & Maddison, Doubly Reparameterized Gradient Estimators, 2018.
    """
    _check_num_samples(num_samples)
    _check_estimator(gradient_estimator, GRADIENT_ESTIMATORS)
    inference = _infer(key, x, model, encode, decode, likelihood, posterior, prior)
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
    encode: Encode | None = None,
    decode: Decode | None = None,
    likelihood: Likelihood | None = None,
    posterior: Posterior = DiagonalGaussian(),
    prior: Prior = StandardNormal(),
    num_samples: int = 5000,
    chunk_size: int = 500,
) -> jax.Array:
    """Importance-sampled estimate of log p(x) with `num_samples` samples, per example `[B]`.

    The model is conditioned on `x` once (the encoder runs once); the samples are drawn and
    decoded `chunk_size` at a time (a `lax.scan`), so memory is bounded by `chunk_size * B`
    decoder outputs whatever `num_samples` is. This is the IWAE bound with many samples
    (Burda et al. 2015, Sec. 5: 5000 samples).
    """
    _check_num_samples(num_samples)
    _check_num_samples(chunk_size, "chunk_size")
    inference = _infer(key, x, model, encode, decode, likelihood, posterior, prior)
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
