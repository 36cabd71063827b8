"""How a dataset's stored levels become the model's data: `Preprocessing`, and the noise the
train step draws per batch (`binarize`, `dequantize`)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaejax import cpu_fastpaths

PREPROCESSINGS = (
    "dynamic_binarize",
    "static_binarize",
    "dequantize",
    "unit_interval",
    "standardize",
    "integer",
)
# Data made by the user (e.g. tabular features): no per-batch noise, no pixels, no bits/dim.
NO_PREPROCESSING = "none"

# What the train step draws per batch for each preprocessing that leaves noise to it.
DATA_NOISE = {"dynamic_binarize": "binarize", "dequantize": "dequantize"}

# "dequantize" pixel levels: y = (k + u) / 256 for k in 0..255 and u ~ U(0, 1).
DEQUANTIZATION_LEVELS = 256

# 16 bits of noise per pixel, two pixels per 32-bit word (see `binarize`).
_NOISE_LEVELS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a dataset's stored levels 0..max_value become the model's data, and back.

    The one place a scaling is defined: what it does to the splits (`apply`), the noise the
    train step draws per batch (`noise`), the map back to [0, 1] for figures (`to_pixels`) and
    the log-width of a pixel's bin in the data's units, for bits/dim (`log_bin_width`).

    Attributes:
      name: one of `PREPROCESSINGS`, or "none" for data made elsewhere. "dynamic_binarize":
        train holds intensities in [0, 1] for `binarize` to draw a fresh sample per batch;
        valid and test are binarized once, with a key from the seed, so evaluation is
        deterministic. "static_binarize": every split binarized once with a key from the seed.
        "dequantize": `(pixel + u) / 256` with `u ~ U(0, 1)`: train holds `pixel / 256` for
        `dequantize` to draw fresh noise per batch; valid and test are dequantized once, with
        a key from the seed. "unit_interval": intensities in [0, 1]. "standardize":
        `(pixel - mean) / std`, one scalar mean and std over the train split. "integer": int32
        pixel values `0..max_value`.
      max_value: the top stored level (255, or 1 for binary datasets).
      mean: "standardize"'s mean, over the train split in pixel units (`fit` sets it).
      std: "standardize"'s standard deviation, likewise.
    """

    name: str
    max_value: int = 255
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if self.name not in (*PREPROCESSINGS, NO_PREPROCESSING):
            raise ValueError(
                f"Unknown preprocessing {self.name!r}; choose one of {PREPROCESSINGS}, or "
                f"{NO_PREPROCESSING!r} for data prepared elsewhere."
            )

    @property
    def noise(self) -> str | None:
        """What the train step draws per batch: "binarize", "dequantize" or None."""
        return DATA_NOISE.get(self.name)

    @property
    def train_varies_with_seed(self) -> bool:
        """Whether `apply` makes a different train split for each seed."""
        return self.name == "static_binarize"

    def fit(self, train: np.ndarray) -> Preprocessing:
        """This preprocessing with the statistics it takes from the raw train split.

        Args:
          train: the raw train split `[N, ...]`, stored levels.

        Returns:
          "standardize": a copy with `mean` and `std` over every value of `train` (pixel
          units); any other name: `self`.
        """
        if self.name != "standardize":
            return self
        # float64 sums: tens of millions of pixels lose digits in a float32 accumulator.
        mean, std = float(train.mean(dtype=np.float64)), float(train.std(dtype=np.float64))
        return dataclasses.replace(self, mean=mean, std=std)

    def apply(self, splits: tuple[np.ndarray, ...], seed: int) -> tuple[np.ndarray, ...]:
        """Raw `(train, valid, test)` levels -> the model's data (see `load` for each name).

        Valid and test get their noise once, from `seed`, so evaluation is deterministic;
        train keeps what `noise` draws anew per batch.

        Args:
          splits: the raw `(train, valid, test)` levels, each `[N_split, ...]`.
          seed: seeds the noise of the splits made once.

        Returns:
          `(train, valid, test)`, each of its raw split's shape: float32, or int32 for
          "integer".

        Raises:
          ValueError: "dequantize" of data whose levels are not 0..255.
        """
        name = self.name
        if name == "integer":
            return tuple(s.astype(np.int32) for s in splits)
        if name == "standardize":
            return tuple(((s - self.mean) / self.std).astype(np.float32) for s in splits)
        if name == "dequantize" and self.max_value + 1 != DEQUANTIZATION_LEVELS:
            raise ValueError(
                f"'dequantize' is for 8-bit images (levels 0..255); these have levels "
                f"0..{self.max_value}. Use a binarize preprocessing with a Bernoulli likelihood."
            )
        levels = DEQUANTIZATION_LEVELS if name == "dequantize" else self.max_value
        train, valid, test = ((s / np.float32(levels)).astype(np.float32) for s in splits)
        if name == "dequantize":
            key_valid, key_test = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1))
            valid, test = np.asarray(dequantize(key_valid, valid)), dequantize(key_test, test)
        # Already-binary data stay as they are: binarizing them would be the identity.
        if name.endswith("binarize") and self.max_value > 1:
            key_train, key_valid, key_test = jax.random.split(jax.random.key(seed), 3)
            valid, test = np.asarray(binarize(key_valid, valid)), binarize(key_test, test)
            if name == "static_binarize":
                train = np.asarray(binarize(key_train, train))
        return train, np.asarray(valid), np.asarray(test)

    def check_split(self, split: str, x: np.ndarray) -> None:
        """Refuses a split that does not hold what this preprocessing makes: intensities in
        [0, 1], or for "integer" integer levels 0..`max_value`.

        "standardize" and "none" are not checked.

        Args:
          split: the split's name ("train", "valid", ...), for the message.
          x: the split, `[N, ...]`, as preprocessed.

        Raises:
          ValueError: values (or a dtype) this preprocessing does not make.
        """
        if self.name in ("standardize", NO_PREPROCESSING):
            return
        finite = x.size == 0 or bool(np.isfinite(x).all())
        lo, hi = (float(x.min()), float(x.max())) if finite and x.size else (math.nan, math.nan)
        if self.name == "integer":
            integral = np.issubdtype(x.dtype, np.integer)
            if not (integral and 0 <= lo and hi <= self.max_value):
                raise ValueError(
                    f"The {split} split ({x.dtype}, values in [{lo:.6g}, {hi:.6g}]) is not what "
                    f"'integer' makes: integer levels 0..{self.max_value}. Pass the levels as "
                    "integers, or set the preprocessing that made these data."
                )
            return
        if not (0 <= lo and hi <= 1):
            noise = self.noise if split == "train" else None
            what = f"draws each batch's {noise}d data from" if noise else "makes"
            raise ValueError(
                f"The {'training' if split == 'train' else split} split holds values in "
                f"[{lo:.6g}, {hi:.6g}], but {self.name!r} {what} intensities in [0, 1]. Scale "
                "the images to [0, 1] (e.g. divide 8-bit levels by 255, 16-bit ones by 65535; "
                "`vaejax.data.load` does this), or set the preprocessing that made these data."
            )

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """The model's data -> intensities in [0, 1], for figures.

        Args:
          x: the model's data, any shape.

        Returns:
          An array of `x`'s shape: "standardize" undone and clipped to [0, 1], "integer"
          divided by `max_value`, any other name `x` itself.
        """
        if self.name == "standardize":
            return np.clip((x * self.std + self.mean) / self.max_value, 0, 1)
        if self.name == "integer":
            return x / self.max_value
        return x

    @property
    def log_bin_width(self) -> float | None:
        """log of one level's width in the data's units; None where bits/dim mean nothing.

        Adding `D * log_bin_width` to a density's NLL in nats gives the 8-bit NLL: exactly for
        "integer" (a probability of the level: width 1), as a bound for "dequantize" (Theis et
        al., 2016), as an approximation for "unit_interval" and "standardize" (density times
        width, meaningless where the density can spike). Binary data have no 8-bit meaning.
        """
        return {
            "integer": 0.0,
            "dequantize": math.log(DEQUANTIZATION_LEVELS),
            "unit_interval": math.log(self.max_value),
            "standardize": math.log(self.std),
        }.get(self.name)


# Jitted so `load`'s one-off calls compile once per shape rather than dispatching op by op.
@jax.jit
def binarize(key: jax.Array, x: ArrayLike) -> jax.Array:
    """Draws {0, 1} pixels with P(1) = x, from 16 bits of noise per pixel.

    Two pixels share each 32-bit word of `jax.random.bits`, which halves the cost of
    `jax.random.uniform` on CPU. A pixel is 1 when its 16-bit draw u has u + 1/2 < 2^16 x, so
    x = 0 gives 0, x = 1 gives 1, and P(1) is off from x by at most 2^-17 (under 1e-5).

    Args:
      key: a PRNG key.
      x: intensities in [0, 1] of any shape.

    Returns:
      float32 array of x's shape with values in {0, 1}.
    """
    x = jnp.asarray(x, jnp.float32)
    size, half = x.size, (x.size + 1) // 2
    # Pixel i takes the high half of word i, pixel half + i the low half; odd sizes pad one.
    pairs = jnp.pad(x.reshape(-1), (0, 2 * half - size)).reshape(2, half)
    key = cpu_fastpaths.threefry_key(key)  # the same draws, faster on CPU
    words = jax.random.bits(key, (half,), jnp.uint32)
    noise = jnp.stack([words >> 16, words & 0xFFFF]).astype(jnp.float32)  # [2, half]
    # Exact in float32 (17-bit integers, a power-of-two scale). Slicing and stacking the noise
    # this way fuses; `jax.random.bits(..., jnp.uint16)` splits words too but ran no faster here.
    sample = noise + 0.5 < pairs * _NOISE_LEVELS
    return sample.astype(jnp.float32).reshape(-1)[:size].reshape(x.shape)


@jax.jit
def dequantize(key: jax.Array, x: ArrayLike) -> jax.Array:
    """Uniform dequantization: pixel levels `k / 256` -> `(k + u) / 256`, u ~ U(0, 1) per pixel.

    A continuous density on y is then a bound on the 8-bit data's probabilities:
    log P(k) >= E_u log p((k + u) / 256) - log 256 per dimension (Theis et al., 2016), and no
    pixel sits exactly at 0 or 1, where densities such as the continuous Bernoulli's are
    unbounded.
    """
    x = jnp.asarray(x, jnp.float32)
    key = cpu_fastpaths.threefry_key(key)  # the same draws, faster on CPU
    return x + jax.random.uniform(key, x.shape) / DEQUANTIZATION_LEVELS


def add_data_noise(kind: str | None, key: jax.Array, x: jax.Array) -> jax.Array:
    """The per-batch draw of `DATA_NOISE[preprocessing]`: "binarize", "dequantize" or None.

    Args:
      kind: "binarize" (`binarize`), "dequantize" (`dequantize`) or None (no noise).
      key: a PRNG key for the noise.
      x: the stored data of a batch, e.g. `[B, *data_shape]` intensities.

    Returns:
      float32 data of `x`'s shape with the noise drawn; `x` itself for None.

    Raises:
      ValueError: another `kind`.
    """
    if kind is None:
        return x
    if kind not in ("binarize", "dequantize"):
        raise ValueError(f"Unknown data noise {kind!r}; valid: 'binarize', 'dequantize', None.")
    return binarize(key, x) if kind == "binarize" else dequantize(key, x)
