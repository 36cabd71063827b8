"""Categorical: K integer levels per dimension (e.g. 8-bit pixels), softmax over logits."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax.likelihoods.base import (
    Params,
    check_integers,
    flat,
    host,
    set_int_field,
    sum_event,
    validate,
)


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Categorical over `num_classes` intensities per dimension (softmax + cross-entropy).

    Logits are `[B, *event, num_classes]`; data are integers in [0, num_classes).
    """

    num_classes: int = 256
    param_names: ClassVar[tuple[str, ...]] = ("logits",)

    def __post_init__(self):
        set_int_field(self, "num_classes", 2)

    def param_shapes(self, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": (*data_shape, self.num_classes)}

    def log_prob(self, params: Params, x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        validate(self, params, x)
        log_p = jax.nn.log_softmax(flat(params["logits"], num_trailing=1), axis=-1)
        picked = jnp.take_along_axis(log_p, flat(x).astype(jnp.int32)[..., None], axis=-1)[..., 0]
        return sum_event(picked)

    def mean(self, params: Params) -> jax.Array:
        probs = jax.nn.softmax(params["logits"], axis=-1)
        return probs @ jnp.arange(self.num_classes, dtype=probs.dtype)

    def sample(self, key: jax.Array, params: Params) -> jax.Array:
        return jax.random.categorical(key, params["logits"], axis=-1)

    def check_data(self, x: ArrayLike) -> None:
        check_integers(
            "Categorical",
            host(x),
            0,
            self.num_classes,
            "Use the raw 8-bit levels (preprocessing 'integer') or set num_classes.",
        )

    def output_bias(self, x: ArrayLike) -> dict[str, np.ndarray]:
        """Log of the (smoothed) per-dimension class frequencies."""
        x = host(x).astype(np.int64)
        counts = np.stack([(x == k).sum(0) for k in range(self.num_classes)], axis=-1)
        return {"logits": np.log((counts + 1.0) / (len(x) + self.num_classes)).astype(np.float32)}
