"""Side inputs y of a conditional model: what y may be, and the vector the networks see.

A conditional VAE (Sohn et al. 2015) models q(z | x, y), p(x | z, y) and optionally p(z | y).
`Labels(num_classes)` takes y as integer class labels `[B]` and gives the networks their one-hot
vectors `[B, K]`; `Features(shape)` takes any real array per example `[B, *shape]` (attributes,
measurements) and gives it flattened, `[B, prod(shape)]`. Both check y on the host first
(`check`), so a missing, misshapen or out-of-range y is a `ValueError` naming it, never a silent
wrong answer (`jax.nn.one_hot` of an out-of-range label is all zeros).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


@dataclasses.dataclass(frozen=True)
class Labels:
    """y: an integer class label per example, in `[0, num_classes)`; embedded one-hot."""

    num_classes: int

    def __post_init__(self):
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"Labels needs num_classes >= 1; got {self.num_classes!r}.")

    @property
    def size(self) -> int:
        """Returns the width of the embedded vector, K."""
        return self.num_classes

    def embed(self, y: ArrayLike) -> jax.Array:
        """The networks' input for `y`.

        Args:
          y: integer labels `[B]`.

        Returns:
          One-hot vectors `[B, num_classes]`, float32.
        """
        return jax.nn.one_hot(jnp.asarray(y), self.num_classes, dtype=jnp.float32)

    def check(self, y: Any, batch: int | None = None) -> np.ndarray:
        """Refuses labels that are not `batch` integers in `[0, num_classes)`.

        Args:
          y: the labels given, `[B]`.
          batch: the number of examples they go with (None: any).

        Returns:
          `y` as an int32 array `[B]`.

        Raises:
          ValueError: naming the offending shape, dtype or values.
        """
        if y is None:
            raise ValueError(
                f"This model is conditioned on a class label y in [0, {self.num_classes}) per "
                "example; pass y=labels (an integer array [B])."
            )
        y = np.asarray(y)
        if y.ndim != 1 or (batch is not None and len(y) != batch):
            want = f"[{batch}]" if batch is not None else "[B]"
            raise ValueError(f"y must be one label per example, shape {want}; got {y.shape}.")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
                raise ValueError(f"y must be integer class labels; got dtype {y.dtype}.")
        bad = (y < 0) | (y >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"y must be class labels in [0, {self.num_classes}); got "
                f"{np.unique(y[bad])[:5].tolist()} (at indices {np.flatnonzero(bad)[:5].tolist()})."
            )
        return y.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Features:
    """y: a real array of `shape` per example; the networks see it flattened."""

    shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Features needs a non-empty shape of sizes >= 1; got {self.shape}.")

    @property
    def size(self) -> int:
        """Returns the width of the embedded vector, prod(shape)."""
        return math.prod(self.shape)

    def embed(self, y: ArrayLike) -> jax.Array:
        """The networks' input for `y`.

        Args:
          y: features `[B, *shape]`.

        Returns:
          `[B, prod(shape)]`, float32.
        """
        y = jnp.asarray(y, jnp.float32)
        return y.reshape(y.shape[0], -1)

    def check(self, y: Any, batch: int | None = None) -> np.ndarray:
        """Refuses features that are not `batch` finite real arrays of `shape`.

        Args:
          y: the features given, `[B, *shape]`.
          batch: the number of examples they go with (None: any).

        Returns:
          `y` as a float32 array.

        Raises:
          ValueError: naming the offending shape, dtype or values.
        """
        if y is None:
            raise ValueError(
                f"This model is conditioned on features y of shape {self.shape} per example; "
                f"pass y=features (an array [B, {', '.join(map(str, self.shape))}])."
            )
        y = np.asarray(y)
        if y.shape[1:] != self.shape or (batch is not None and len(y) != batch):
            want = (batch if batch is not None else "B", *self.shape)
            raise ValueError(f"y must have shape {want}; got {y.shape}.")
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"y must be real numbers; got dtype {y.dtype}.")
        if not np.isfinite(y).all():
            raise ValueError(f"y holds {int((~np.isfinite(y)).sum())} non-finite values.")
        return y.astype(np.float32)


Conditioning = Labels | Features


def repeat_rows(c: jax.Array, rows: int) -> jax.Array:
    """`c` `[B, C]` for `rows` = S * B inputs laid out sample-major (`[S, B]` flattened).

    Args:
      c: the embedded side inputs of a batch, `[B, C]`.
      rows: the number of rows they must match, a multiple of B.

    Returns:
      `[rows, C]`: row s * B + b is `c[b]`.
    """
    if rows % c.shape[0]:
        raise ValueError(
            f"{rows} inputs cannot share the side inputs of a batch of {c.shape[0]}: give as "
            "many y as examples (or samples of each)."
        )
    return jnp.tile(c, (rows // c.shape[0], 1))


def split(batch: Any) -> tuple[Any, Any]:
    """A batch as the pipeline passes it: `x`, or `(x, y)` for a conditional model.

    Args:
      batch: an array `x` `[B, *event]`, or a pair `(x, y)` of it and its side inputs `[B, ...]`.

    Returns:
      `(x, y)`, with y None for a plain batch.
    """
    if isinstance(batch, tuple):
        x, y = batch
        return x, y
    return batch, None
