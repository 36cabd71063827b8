"""What every likelihood shares: the `Likelihood` protocol and the helpers of its classes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Params = Mapping[str, jax.Array]

LOG_2PI = math.log(2.0 * math.pi)


class Likelihood(Protocol):
    """What the objectives and networks need of a likelihood."""

    param_names: tuple[str, ...]

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]: ...
    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array: ...
    def mean(self, params: Params) -> jax.Array: ...
    def sample(self, key: jax.Array, params: Params) -> jax.Array: ...
    def check_data(self, x: ArrayLike) -> None: ...
    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]: ...


# Optional: `free_params`, names of params learned as free parameters of the decoder (the same
# for every example, returned broadcast to `[B, *shape]`), not as heads; see `is_free` below.


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


def log_sigmoid(t: ArrayLike) -> jax.Array:
    """log sigmoid(t) = -softplus(-t), stable for any t."""
    return -softplus(-jnp.asarray(t))


def sum_event(values: jax.Array) -> jax.Array:
    """Sums over every axis but the first: `[B, ...] -> [B]`."""
    # An explicit size, not -1: reshape cannot infer it for an empty batch.
    return values.reshape(values.shape[0], math.prod(values.shape[1:])).sum(axis=1)


def flat(a: jax.Array, num_trailing: int = 0) -> jax.Array:
    """`[B, *event, *trailing] -> [B, prod(event), *trailing]`, keeping `num_trailing` axes.

    The log-densities compute on flat events because XLA:CPU vectorizes along the last axis,
    and images end in a channel axis of size 1 (MNIST is `[B, 28, 28, 1]`): on
    `[20, 100, 28, 28, 1]` decoder outputs the Bernoulli terms and their sum ran 25x slower here
    than on `[20, 100, 784]`.
    """
    trailing = a.shape[a.ndim - num_trailing :]
    return a.reshape(a.shape[0], math.prod(a.shape[1 : a.ndim - num_trailing]), *trailing)


def validate(lik: Likelihood, params: Params, x: jax.Array) -> None:
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


def host(x: ArrayLike) -> np.ndarray:
    return np.asarray(x)


def check_finite(name: str, x: np.ndarray) -> None:
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


def set_int_field(lik: object, field: str, minimum: int) -> None:
    """Refuses `lik.field` unless an int >= `minimum`; a NumPy integer (read from an array or a
    config) becomes a Python int."""
    value = getattr(lik, field)
    if isinstance(value, np.integer):
        object.__setattr__(lik, field, value := int(value))
    if not (isinstance(value, int) and value >= minimum):
        raise ValueError(
            f"{type(lik).__name__} {field} must be an int >= {minimum}; got {value!r}."
        )


def check_integers(name: str, x: np.ndarray, low: int, high: float, hint: str) -> None:
    """Refuses values that are not integers in `[low, high)`, naming a few and the range."""
    check_finite(name, x)
    bad = x[(x != np.round(x)) | (x < low) | (x >= high)]
    if bad.size:
        raise ValueError(
            f"{name} likelihood needs integers in [{low}, {high}); got {bad.size} other values, "
            f"e.g. {np.unique(bad)[:5].tolist()} (non-integers or out of range; data range "
            f"{value_range(x)}). {hint}"
        )


def is_free(lik: Likelihood, name: str, shape: tuple[int, ...]) -> bool:
    """Whether the decoder learns param `name` as a free parameter, the same for every example,
    not as a head: one of shape `()`, or one the likelihood names in its `free_params`."""
    return shape == () or name in getattr(lik, "free_params", ())


def value_range(x: np.ndarray) -> str:
    return f"[{float(x.min()):.6g}, {float(x.max()):.6g}]"


def logit_of_mean(x: ArrayLike) -> np.ndarray:
    """The logit of the per-dimension data mean, clipped away from 0 and 1: `[*event]`."""
    p = np.clip(host(x).astype(np.float64).mean(0), 1e-3, 1 - 1e-3)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)
