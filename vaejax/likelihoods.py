"""Decoder likelihoods p(x | z): each ties the decoder's raw outputs to one distribution.

A likelihood is a small frozen dataclass. The decoder has one linear head per name in
`param_names` and never applies an activation: the likelihood interprets the raw outputs
(logits, means, log-variances). So the output activation and the loss are one choice.

Shapes: data `x` is `[B, *event]`; every param is `[B, *event]` except `Categorical`'s logits,
`[B, *event, K]`, and a param whose `param_shapes` entry is `()`: one learned scalar, not a head
(the decoder holds it and returns it as `[B]`), e.g. `LearnedGaussian(shared_variance=True)`'s
log-variance. `log_prob` sums over every axis but the first and returns `[B]`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Params = Mapping[str, jax.Array]

_LOG_2PI = math.log(2.0 * math.pi)


class Likelihood(Protocol):
    """What the objectives and networks need of a likelihood."""

    param_names: tuple[str, ...]

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]: ...
    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array: ...
    def mean(self, params: Params) -> jax.Array: ...
    def sample(self, key: jax.Array, params: Params) -> jax.Array: ...
    def check_data(self, x: ArrayLike) -> None: ...
    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]: ...


# ----------------------------------------------------------------------------- helpers


@jax.custom_jvp
def softplus(t: ArrayLike) -> jax.Array:
    """log(1 + e^t), stable for any t; cheaper on CPU than `jax.nn.softplus`."""
    t = jnp.asarray(t)
    return jnp.maximum(t, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(t)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    # The derivative, sigmoid(t), from the same e^-|t| as the value: one exp per element, not two.
    (t,), (dt,) = primals, tangents
    t = jnp.asarray(t)
    e = jnp.exp(-jnp.abs(t))
    value = jnp.maximum(t, 0.0) + jnp.log1p(e)
    sigmoid = jnp.where(t >= 0, 1.0, e) / (1.0 + e)
    return value, sigmoid * dt


def _sum_event(values: jax.Array) -> jax.Array:
    """Sums over every axis but the first: `[B, ...] -> [B]`."""
    # An explicit size, not -1: reshape cannot infer it for an empty batch.
    return values.reshape(values.shape[0], math.prod(values.shape[1:])).sum(axis=1)


def _flat(a: jax.Array, num_trailing: int = 0) -> jax.Array:
    """`[B, *event, *trailing] -> [B, prod(event), *trailing]`, keeping `num_trailing` axes.

    The log-densities compute on flat events because XLA:CPU vectorizes along the last axis,
    and images end in a channel axis of size 1 (MNIST is `[B, 28, 28, 1]`): on
    `[20, 100, 28, 28, 1]` decoder outputs the Bernoulli terms and their sum ran 25x slower here
    than on `[20, 100, 784]`.
    """
    trailing = a.shape[a.ndim - num_trailing :]
    return a.reshape(a.shape[0], math.prod(a.shape[1 : a.ndim - num_trailing]), *trailing)


def _validate(lik: Likelihood, params: Params, x: jax.Array) -> None:
    """Trace-time (static) checks: every head present, with the data's shape."""
    missing = [n for n in lik.param_names if n not in params]
    if missing:
        raise ValueError(
            f"{type(lik).__name__} needs decoder outputs {lik.param_names}; missing {missing}, "
            f"got keys {sorted(params)}. Build the decoder with this likelihood's param_names."
        )
    expected = lik.param_shapes(tuple(x.shape[1:]))
    for name, shape in expected.items():
        got = tuple(params[name].shape)
        if got[1:] != shape or got[0] != x.shape[0]:
            raise ValueError(
                f"{type(lik).__name__}: decoder output {name!r} has shape {got}, but data of shape "
                f"{tuple(x.shape)} needs {(x.shape[0], *shape)}. Give the decoder the data's shape."
            )


def _host(x: ArrayLike) -> np.ndarray:
    return np.asarray(x)


def _check_finite(name: str, x: np.ndarray) -> None:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(
            f"{name} likelihood needs real data (a float or integer dtype); got dtype {x.dtype}. "
            "Pass the real part, or the real and imaginary parts as two channels."
        )
    if not np.all(np.isfinite(x)):
        bad = np.size(x) - int(np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{name} likelihood got {bad} non-finite data values (NaN or inf) out of {np.size(x)}. "
            "Clean or impute the data before training."
        )


def _range(x: np.ndarray) -> str:
    return f"[{float(x.min()):.6g}, {float(x.max()):.6g}]"


def _logit_of_mean(x: ArrayLike) -> np.ndarray:
    """The logit of the per-dimension data mean, clipped away from 0 and 1: `[*event]`."""
    p = np.clip(_host(x).astype(np.float64).mean(0), 1e-3, 1 - 1e-3)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


# ----------------------------------------------------------------------------- likelihoods


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Bernoulli from logits (sigmoid output + binary cross-entropy), for binary data."""

    param_names: ClassVar[tuple[str, ...]] = ("logits",)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        _validate(self, params, x)
        x, logits = _flat(x), _flat(params["logits"])
        # x*l - log(1 + e^l): exact and stable for any logit.
        return _sum_event(x * logits - softplus(logits))

    def mean(self, params: Params) -> jax.Array:
        return jax.nn.sigmoid(params["logits"])

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        logits = params["logits"]
        return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)

    def check_data(self, x: ArrayLike) -> None:
        x = _host(x)
        _check_finite("Bernoulli", x)
        bad = x[(x != 0) & (x != 1)]
        if bad.size:
            raise ValueError(
                f"Bernoulli likelihood needs data in {{0, 1}}; got {bad.size} other values, e.g. "
                f"{np.unique(bad)[:5].tolist()} (data range {_range(x)}). "
                "Binarize the data (preprocessing 'dynamic_binarize' or 'static_binarize') "
                "or use ContinuousBernoulli for intensities in [0, 1]."
            )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Decoder output bias that makes the initial mean the data mean (logit of pixel means)."""
        return {"logits": _logit_of_mean(x)}


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
        _validate(self, params, x)
        r = (_flat(x) - _flat(params["mean"])) / self.scale
        return _sum_event(-0.5 * jnp.square(r) - math.log(self.scale) - 0.5 * _LOG_2PI)

    def mean(self, params: Params) -> jax.Array:
        return params["mean"]

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        m = params["mean"]
        return m + self.scale * jax.random.normal(key, m.shape, m.dtype)

    def check_data(self, x: ArrayLike) -> None:
        _check_finite("Gaussian", _host(x))

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        return {"mean": _host(x).astype(np.float64).mean(0).astype(np.float32)}


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
        _validate(self, params, x)
        log_var = _flat(params["log_var"])  # [B, D], or [B, 1] when shared
        if self.variance_floor > 0:
            log_var = jnp.logaddexp(log_var, math.log(self.variance_floor))
        sq = jnp.square(_flat(x) - _flat(params["mean"])) * jnp.exp(-log_var)
        return _sum_event(-0.5 * (sq + log_var + _LOG_2PI))

    def mean(self, params: Params) -> jax.Array:
        return params["mean"]

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        m = params["mean"]
        std = jnp.sqrt(self.variance(params))
        std = std.reshape(*std.shape, *(1,) * (m.ndim - std.ndim))  # [B] -> [B, 1, ...] if shared
        return m + std * jax.random.normal(key, m.shape, m.dtype)

    def check_data(self, x: ArrayLike) -> None:
        _check_finite("LearnedGaussian", _host(x))

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        x = _host(x).astype(np.float64)
        # Shared: the one variance that fits best around the per-dimension means.
        var = x.var(0).mean() if self.shared_variance else x.var(0)
        var = np.maximum(var - self.variance_floor, 1e-4)
        return {"mean": x.mean(0).astype(np.float32), "log_var": np.log(var).astype(np.float32)}


# Below |logit| < this, log C and the mean use their Taylor series: the closed forms divide 0/0
# at logit 0 (lambda = 0.5). 0.1 is lambda in about [0.475, 0.525]; the series' error there is
# under 1e-10, far below float32 resolution.
_CB_TAYLOR_CUTOFF = 0.1


def cb_log_normalizer(logits: ArrayLike) -> jax.Array:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), elementwise.

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), which in logits is l / tanh(l / 2),
    an even function; so log C = log|l| - log tanh(|l|/2), computed without cancellation as
    log|l| - log1p(-e^-|l|) + log1p(e^-|l|). Near l = 0 (0/0) the Taylor series
    log 2 + u^2/3 - 7u^4/90 + 62u^6/2835 with u = l/2 takes over, through the double-`where`
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

    Uses mean(-l) = 1 - mean(l) to work with |l| only, and the series 1/2 + l/12 - l^3/720 near 0.
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
        _validate(self, params, x)
        x, logits = _flat(x), _flat(params["logits"])
        return _sum_event(x * logits - softplus(logits) + cb_log_normalizer(logits))

    def mean(self, params: Params) -> jax.Array:
        return cb_mean(params["logits"])

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        """Inverse-CDF sampling: x = log1p(u expm1(l)) / l, written in |l| to avoid overflow."""
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
        x = _host(x)
        _check_finite("ContinuousBernoulli", x)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"ContinuousBernoulli likelihood needs data in [0, 1]; got values in {_range(x)}. "
                "Scale intensities to [0, 1] (preprocessing 'dequantize' or 'unit_interval'), "
                "or use a Gaussian "
                "for unbounded data."
            )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        # The logit of the pixel mean: close to, not exactly, the CB mean; a good start either way.
        return {"logits": _logit_of_mean(x)}


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Categorical over `num_classes` intensities per dimension (softmax + cross-entropy).

    Logits are `[B, *event, num_classes]`; data are integers in [0, num_classes).
    """

    num_classes: int = 256
    param_names: ClassVar[tuple[str, ...]] = ("logits",)

    def __post_init__(self):
        if isinstance(self.num_classes, np.integer):  # e.g. read from a NumPy array or a config
            object.__setattr__(self, "num_classes", int(self.num_classes))
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ValueError(
                f"Categorical num_classes must be an int >= 2; got {self.num_classes!r}."
            )

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": (*data_shape, self.num_classes)}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        _validate(self, params, x)
        log_p = jax.nn.log_softmax(_flat(params["logits"], num_trailing=1), axis=-1)
        picked = jnp.take_along_axis(log_p, _flat(x).astype(jnp.int32)[..., None], axis=-1)[..., 0]
        return _sum_event(picked)

    def mean(self, params: Params) -> jax.Array:
        probs = jax.nn.softmax(params["logits"], axis=-1)
        return probs @ jnp.arange(self.num_classes, dtype=probs.dtype)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        return jax.random.categorical(key, params["logits"], axis=-1)

    def check_data(self, x: ArrayLike) -> None:
        x = _host(x)
        _check_finite("Categorical", x)
        bad = x[(x != np.round(x)) | (x < 0) | (x >= self.num_classes)]
        if bad.size:
            raise ValueError(
                f"Categorical likelihood needs integers in [0, {self.num_classes}); got "
                f"{bad.size} other values, e.g. {np.unique(bad)[:5].tolist()} "
                f"(non-integers or out of range; data range {_range(x)}). "
                "Use the raw 8-bit levels (preprocessing 'integer') or set num_classes."
            )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Log of the (smoothed) per-dimension class frequencies."""
        x = _host(x).astype(np.int64)
        counts = np.stack([(x == k).sum(0) for k in range(self.num_classes)], axis=-1)
        return {"logits": np.log((counts + 1.0) / (len(x) + self.num_classes)).astype(np.float32)}


_REGISTRY: dict[str, type] = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "learned_gaussian": LearnedGaussian,
    "continuous_bernoulli": ContinuousBernoulli,
    "categorical": Categorical,
}


def get(name: str, **kwargs) -> Likelihood:
    """Builds a likelihood by name, e.g. `get("gaussian", scale=0.1)`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown likelihood {name!r}; valid names: {sorted(_REGISTRY)}.")
    cls = _REGISTRY[name]
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"Likelihood {name!r} takes no argument {', '.join(map(repr, unknown))}; it takes "
            f"{valid or 'none'}, e.g. get({name!r}{''.join(f', {v}=...' for v in valid[:1])})."
        )
    return cls(**kwargs)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
