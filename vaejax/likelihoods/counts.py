"""Count likelihoods for integer data >= 0: Poisson, negative binomial and zero-inflated NB.

All in log space: the decoder gives log-means (and the NB's log inverse dispersion, and the
zero inflation's logits), so no rate is ever exponentiated and logged again. The negative
binomial has mean mu and inverse dispersion theta (variance mu + mu^2 / theta), as in scVI:

    log NB(x; mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                           + theta (log theta - log(theta + mu)) + x (log mu - log(theta + mu))

with log(theta + mu) a logaddexp of the two logs. theta is per feature (`dispersion="feature"`: a
free parameter of the decoder, scVI's "gene") or per feature and example (`"example"`: a head,
scVI's "gene-cell").

`library_size="observed"` makes the decoder's log-means relative: mu = l * softmax(log-means)
over the features, with l the example's observed total count (scVI's observed size factor), so
the latent code models the composition, not the depth. `mean` and `sample` then need the library
size in the params (`with_library_size`).

References:
  Lopez, Regier, Cole, Jordan & Yosef, Deep generative modeling for single-cell transcriptomics
  (scVI), Nature Methods 2018.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jax.typing import ArrayLike

from vaejax.likelihoods.base import (
    Params,
    check_integers,
    flat,
    host,
    log_sigmoid,
    sum_event,
    validate,
)

LIBRARY_SIZES = ("none", "observed")
DISPERSIONS = ("feature", "example")
_HINT = "Count likelihoods take integer data >= 0 (e.g. preprocessing 'integer' or 'none')."


def with_library_size(params: Params, x: ArrayLike) -> dict[str, jax.Array]:
    """params with `library_size` `[B]` set to each example's total count of `x` `[B, ...]`."""
    x = jnp.asarray(x)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32, or float64 under x64
    return {**params, "library_size": x.reshape(x.shape[0], -1).sum(1).astype(dtype)}


def _log_mean(lik, params: Params, x: jax.Array | None) -> jax.Array:
    """log mu, flat `[B, D]`: the head, or log l + log_softmax(head) with an observed library."""
    log_mean = flat(jnp.asarray(params["log_mean"]))
    if lik.library_size == "none":
        return log_mean
    if x is not None:
        total = x.reshape(x.shape[0], -1).sum(1)
    elif "library_size" in params:
        total = params["library_size"]
    else:
        raise ValueError(
            f"{type(lik).__name__}(library_size='observed') needs each example's library size "
            "for its mean and samples: pass likelihoods.with_library_size(params, x)."
        )
    log_total = jnp.log(jnp.maximum(jnp.asarray(total, log_mean.dtype), 1.0))[:, None]
    return log_total + jax.nn.log_softmax(log_mean, axis=-1)


def _rate(lik, params: Params) -> jax.Array:
    """mu, `[B, *event]`."""
    return jnp.exp(_log_mean(lik, params, None)).reshape(params["log_mean"].shape)


def _nb_log_prob(x: jax.Array, log_mean: jax.Array, log_theta: jax.Array) -> jax.Array:
    theta = jnp.exp(log_theta)
    log_total = jnp.logaddexp(log_mean, log_theta)  # log(theta + mu)
    return (
        gammaln(x + theta)
        - gammaln(theta)
        - gammaln(x + 1.0)
        + theta * (log_theta - log_total)
        + x * (log_mean - log_total)
    )


def _check_option(name: str, field: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} {field} must be one of {valid}; got {value!r}.")


def _moments(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = host(x).astype(np.float64)
    return x.mean(0), x.var(0)


def _log_theta_of_moments(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """theta from var = mu + mu^2 / theta (method of moments), in [1e-2, 1e4]."""
    excess = np.maximum(var - mean, 1e-8)
    return np.log(np.clip(np.square(mean) / excess, 1e-2, 1e4)).astype(np.float32)


def _log_mean_bias(lik, mean: np.ndarray) -> np.ndarray:
    log_mean = np.log(np.maximum(mean, 1e-3))
    if lik.library_size == "observed":  # relative: the log of each feature's share
        log_mean = log_mean - math.log(np.maximum(mean, 1e-3).sum())
    return log_mean.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Poisson:
    """Poisson counts from a log-rate head `log_mean` `[B, *event]`."""

    library_size: str = "none"
    param_names: ClassVar[tuple[str, ...]] = ("log_mean",)

    def __post_init__(self):
        _check_option("Poisson", "library_size", self.library_size, LIBRARY_SIZES)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"log_mean": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        log_rate = _log_mean(self, params, x)
        x = flat(x).astype(log_rate.dtype)
        return sum_event(x * log_rate - jnp.exp(log_rate) - gammaln(x + 1.0))

    def mean(self, params: Params) -> jax.Array:
        return _rate(self, params)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        rate = _rate(self, params)
        return jax.random.poisson(key, rate, rate.shape).astype(jnp.int32)

    def check_data(self, x: ArrayLike) -> None:
        check_integers("Poisson", host(x), 0, np.inf, _HINT)

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        return {"log_mean": _log_mean_bias(self, _moments(x)[0])}


@dataclasses.dataclass(frozen=True)
class NegativeBinomial:
    """Negative binomial counts: heads `log_mean` and, per `dispersion`, `log_inv_dispersion`
    (log theta; a free parameter per feature, or a head)."""

    dispersion: str = "feature"
    library_size: str = "none"
    param_names: ClassVar[tuple[str, ...]] = ("log_mean", "log_inv_dispersion")

    def __post_init__(self):
        name = type(self).__name__
        _check_option(name, "dispersion", self.dispersion, DISPERSIONS)
        _check_option(name, "library_size", self.library_size, LIBRARY_SIZES)

    @property
    def free_params(self) -> tuple[str, ...]:
        return ("log_inv_dispersion",) if self.dispersion == "feature" else ()

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"log_mean": data_shape, "log_inv_dispersion": data_shape}

    def _terms(self, params: Params, x: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = jnp.asarray(x)
        validate(self, params, x)
        log_mean, log_theta = _log_mean(self, params, x), flat(params["log_inv_dispersion"])
        return flat(x).astype(log_mean.dtype), log_mean, log_theta

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        return sum_event(_nb_log_prob(*self._terms(params, x)))

    def mean(self, params: Params) -> jax.Array:
        return _rate(self, params)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        """Gamma-Poisson: a rate ~ Gamma(theta, mu / theta), then Poisson(rate)."""
        k_rate, k_count = jax.random.split(key)
        mean, theta = _rate(self, params), jnp.exp(params["log_inv_dispersion"])
        rate = jax.random.gamma(k_rate, theta, theta.shape) * mean / theta
        return jax.random.poisson(k_count, rate, rate.shape).astype(jnp.int32)

    def check_data(self, x: ArrayLike) -> None:
        check_integers(type(self).__name__, host(x), 0, np.inf, _HINT)

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        mean, var = _moments(x)
        return {
            "log_mean": _log_mean_bias(self, mean),
            "log_inv_dispersion": _log_theta_of_moments(mean, var),
        }


@dataclasses.dataclass(frozen=True)
class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """A negative binomial whose zeros are inflated: with probability pi = sigmoid(`dropout_logits`)
    a zero, else NB. log p(0) = logaddexp(log pi, log(1 - pi) + log NB(0)); log p(x > 0) =
    log(1 - pi) + log NB(x)."""

    param_names: ClassVar[tuple[str, ...]] = ("log_mean", "log_inv_dispersion", "dropout_logits")

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {**super().param_shapes(data_shape), "dropout_logits": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x, log_mean, log_theta = self._terms(params, x)
        logits = flat(params["dropout_logits"])
        log_keep = log_sigmoid(-logits)  # log(1 - pi)
        nb = _nb_log_prob(x, log_mean, log_theta)
        nb_zero = jnp.exp(log_theta) * (log_theta - jnp.logaddexp(log_mean, log_theta))
        zero = jnp.logaddexp(log_sigmoid(logits), log_keep + nb_zero)
        return sum_event(jnp.where(x == 0, zero, log_keep + nb))

    def mean(self, params: Params) -> jax.Array:
        return jax.nn.sigmoid(-params["dropout_logits"]) * _rate(self, params)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        k_zero, k_nb = jax.random.split(key)
        counts = super().sample(k_nb, params)
        logits = params["dropout_logits"]
        return jnp.where(jax.random.bernoulli(k_zero, jax.nn.sigmoid(logits)), 0, counts)

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """The NB's, and the zeros beyond the NB's own (from its moments), as the dropout rate."""
        bias = super().output_bias(x)
        mean, _ = _moments(x)
        theta = np.exp(bias["log_inv_dispersion"].astype(np.float64))
        nb_zero = (theta / (theta + np.maximum(mean, 1e-3))) ** theta
        observed_zero = (host(x) == 0).mean(0)
        pi = np.clip((observed_zero - nb_zero) / np.maximum(1.0 - nb_zero, 1e-6), 1e-3, 0.5)
        return {**bias, "dropout_logits": np.log(pi / (1.0 - pi)).astype(np.float32)}
