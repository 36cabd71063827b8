"""Bernoulli: binary data, from logits."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax.likelihoods.base import (
    Params,
    check_finite,
    flat,
    host,
    logit_of_mean,
    softplus,
    sum_event,
    validate,
    value_range,
)


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Bernoulli from logits (sigmoid output + binary cross-entropy), for binary data."""

    param_names: ClassVar[tuple[str, ...]] = ("logits",)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": data_shape}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        x, logits = flat(x), flat(params["logits"])
        # x*l - log(1 + e^l): exact and stable for any logit.
        return sum_event(x * logits - softplus(logits))

    def mean(self, params: Params) -> jax.Array:
        return jax.nn.sigmoid(params["logits"])

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        logits = params["logits"]
        return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)

    def check_data(self, x: ArrayLike) -> None:
        x = host(x)
        check_finite("Bernoulli", x)
        bad = x[(x != 0) & (x != 1)]
        if bad.size:
            raise ValueError(
                f"Bernoulli likelihood needs data in {{0, 1}}; got {bad.size} other values, e.g. "
                f"{np.unique(bad)[:5].tolist()} (data range {value_range(x)}). "
                "Binarize the data (preprocessing 'dynamic_binarize' or 'static_binarize') "
                "or use ContinuousBernoulli for intensities in [0, 1]."
            )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Decoder output bias that makes the initial mean the data mean (logit of pixel means)."""
        return {"logits": logit_of_mean(x)}
