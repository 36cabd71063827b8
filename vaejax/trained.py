"""`TrainedModel`: a trained VAE (`vaejax.load`) used on raw data, for downstream work.

It takes data as the dataset stores it (uint8 images), applies the model's preprocessing
itself, and refuses data of another shape, dtype or range.

Every method is a host-side check of its inputs followed by one jitted, pure function of the
parameters; each new batch size compiles once. Shapes: data `[B, *data_shape]`, codes
`[B, latent_dim]`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.typing import ArrayLike

from vaejax import cpu_fastpaths, evaluate, fields, networks
from vaejax import data as data_lib
from vaejax.objectives import ElboTerms, elbo


def _check_key(key: Any, method: str) -> None:
    """Refuses anything but one JAX random key, before JAX fails on it deep inside."""
    if isinstance(key, jax.Array | np.ndarray):
        dtype, shape = key.dtype, tuple(key.shape)
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return
        if dtype == np.uint32 and shape in ((2,), (4,)):  # a raw PRNGKey (threefry, rbg)
            return
        got = f"a {dtype} array of shape {shape}"
    else:
        got = f"{type(key).__name__} {key!r}"
    raise ValueError(
        f"{method}: key must be a jax.random.key(...) or PRNGKey array (one key, not a batch); "
        f"got {got}. Pass e.g. jax.random.key(0)."
    )


# ---- the jitted cores: pure functions of the parameters


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(params, x, y, *, model: networks.VAE) -> dict[str, jax.Array]:
    return networks.bind(model, params, y)[0](x)


@functools.partial(jax.jit, static_argnames=("model",))
def _decode_mean(params, z, y, *, model: networks.VAE) -> jax.Array:
    return model.likelihood.mean(networks.bind(model, params, y)[1](z))


@functools.partial(jax.jit, static_argnames=("model",))
def _reconstruct(params, x, y, *, model) -> jax.Array:
    return model.likelihood.mean(networks.bind(model, params, y).reconstruct(x))


@functools.partial(jax.jit, static_argnames=("model",))
def _codes(params, x, y, *, model) -> tuple[jax.Array, ...]:
    return networks.bind(model, params, y).codes(x)


@functools.partial(jax.jit, static_argnames=("model", "num"))
def _sample(params, key, y, *, model, num: int) -> jax.Array:
    return model.likelihood.mean(networks.bind(model, params, y).sample_prior(key, num))


@functools.partial(jax.jit, static_argnames=("model", "num_steps"))
def _interpolate(params, x_a, x_b, y, *, model: networks.VAE, num_steps: int) -> jax.Array:
    encode, decode = networks.bind(model, params, y)
    z_a, z_b = encode(x_a)["mean"], encode(x_b)["mean"]  # [B, D] each
    t = jnp.linspace(0.0, 1.0, num_steps)[:, None, None]  # [T, 1, 1]
    z = (1.0 - t) * z_a[None] + t * z_b[None]  # [T, B, D]
    means = model.likelihood.mean(decode(z.reshape(-1, z.shape[-1])))
    return jnp.swapaxes(means.reshape(num_steps, *x_a.shape), 0, 1)  # [B, T, *data_shape]


@functools.partial(cpu_fastpaths.evaluation_jit, static_argnames=("model", "num_samples"))
def _elbo(params, key, x, y, *, model, num_samples: int) -> ElboTerms:
    return elbo(key, x, model=networks.bind(model, params, y), num_samples=num_samples)


# The evaluation's own estimator, compiled as the evaluation compiles it: the same numbers.
@functools.partial(
    cpu_fastpaths.evaluation_jit, static_argnames=("model", "num_samples", "chunk_size")
)
def _log_px(params, key, x, y, *, model: networks.VAE, num_samples: int, chunk_size: int):
    x = x if y is None else (x, y)
    return evaluate.log_px(model, params, key, x, num_samples=num_samples, chunk_size=chunk_size)


# ---- the trained model


@dataclasses.dataclass(frozen=True, repr=False)
class TrainedModel:
    """A trained VAE with pure, jitted, batched methods on raw data; made by `vaejax.load`.

    Attributes:
      model: the Flax VAE (`model.likelihood`, `model.posterior`).
      params: its parameters (the moving average where the run kept one: see `ema`).
      config: the config it trained with.
      preprocessing: how raw data become the model's data (fitted on the train split).
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      data_dtype: the dtype of the model's data (after preprocessing).
      step: the training step of the checkpoint.
      ema: whether `params` are the run's moving average.
      workdir: where it was loaded from.
    """

    model: Any  # a networks.VAE or a vaejax.hierarchical model
    params: Any
    config: ml_collections.ConfigDict
    preprocessing: data_lib.Preprocessing
    data_shape: tuple[int, ...]
    data_dtype: str
    step: int
    ema: bool
    workdir: str

    def __repr__(self) -> str:
        return (
            f"TrainedModel(workdir={self.workdir!r}, step={self.step}, "
            f"preset={self.config.model.get('preset')!r}, latent_sizes={self.latent_sizes}, "
            f"likelihood={self.model.likelihood}, preprocessing={self.preprocessing.name!r}, "
            f"data_shape={self.data_shape}, ema={self.ema})"
        )

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        """Each stochastic layer's size, z_1 first (one entry for a one-layer VAE)."""
        return tuple(self.model.latent_sizes)

    @property
    def latent_dim(self) -> int:
        """The one stochastic layer's size (a hierarchical model: the top layer's)."""
        return self.latent_sizes[-1]

    def _one_layer(self, method: str) -> None:
        if len(self.latent_sizes) > 1:
            raise ValueError(
                f"{method} works on one stochastic layer's codes; this model has "
                f"{len(self.latent_sizes)} (sizes {self.latent_sizes}). Use codes(x) (each "
                "layer's posterior means), reconstruct, sample, elbo or log_likelihood."
            )

    # ---- raw data in, the model's data out

    def check(self, x: ArrayLike) -> np.ndarray:
        """Checks raw data against what this model takes, on the host.

        Args:
          x: raw data `[B, *data_shape]`: integer (or bool) levels 0..`preprocessing.max_value`
            as the dataset stores them; for a model of data made by the user (preprocessing
            "none"), data of the dtype kind it trained on (integers too for float data).

        Returns:
          `x` as a NumPy array `[B, *data_shape]`, values unchanged.

        Raises:
          ValueError: `x` has another shape (e.g. no batch axis), dtype or range of levels.
        """
        x = np.asarray(x)
        if x.shape[1:] != self.data_shape or x.ndim != len(self.data_shape) + 1:
            hint = " Add a batch axis: x[None]." if x.shape == self.data_shape else ""
            raise ValueError(
                f"This model takes batches of shape [B, {', '.join(map(str, self.data_shape))}]; "
                f"got an array of shape {x.shape}.{hint}"
            )
        prep = self.preprocessing
        if prep.name == data_lib.NO_PREPROCESSING:  # data made by the user: as it trained on
            trained_kind = np.dtype(self.data_dtype).kind
            if x.dtype.kind != trained_kind and not (trained_kind == "f" and x.dtype.kind in "iu"):
                raise ValueError(
                    f"This model trained on {self.data_dtype} data; got {x.dtype}. Pass the data "
                    "as it was given to train_and_evaluate."
                )
            return x
        if x.dtype.kind not in "iub":
            raise ValueError(
                f"This model takes raw data as the dataset stores it: integer levels "
                f"0..{prep.max_value} (uint8); got {x.dtype} values in "
                f"[{float(np.min(x)):.6g}, {float(np.max(x)):.6g}]. Pass the stored images "
                f"(e.g. TrainedModel.read_split), not preprocessed data; the model applies its "
                f"{prep.name!r} preprocessing itself."
            )
        if x.size and (x.min() < 0 or x.max() > prep.max_value):
            raise ValueError(
                f"This model's data have levels 0..{prep.max_value}; got values in "
                f"[{x.min()}, {x.max()}]. Clip or rescale them to 0..{prep.max_value}."
            )
        return x

    def preprocess(
        self, x: ArrayLike, key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array | None]:
        """Raw data -> the model's data, as the train split was made; checked first.

        With `key`, the data's noise (binarization or dequantization) is drawn as the train step
        draws it, from a part split off `key`, and the rest is returned for the model's own
        sampling; without, no noise is drawn (binarized models see intensities in [0, 1],
        dequantized ones the levels' lower edges k / 256). A statically binarized model gets a
        fresh binarization, as its train split got one.

        Args:
          x: raw data `[B, *data_shape]` (see `check`).
          key: a PRNG key for the data's noise, or None (the default) for no noise.

        Returns:
          `(data, key)`: the model's data `[B, *data_shape]` and the key left for the model
          (`key` itself where no noise is drawn; None without `key`).

        Raises:
          ValueError: `key` is not one PRNG key, or `x` fails `check`.
        """
        if key is not None:
            _check_key(key, "preprocess")
        x = self.check(x)
        prep = self.preprocessing
        if prep.name == data_lib.NO_PREPROCESSING:
            return jnp.asarray(x, self.data_dtype), key
        if prep.name == "static_binarize":  # one fixed binarization at training: draw one here
            prep = dataclasses.replace(prep, name="dynamic_binarize")
        empty = x[:0]
        (y, _, _) = prep.apply((x, empty, empty), seed=0)  # x as the train split
        y = jnp.asarray(y)
        if prep.noise is None or key is None:
            return y, key
        if prep.noise == "binarize" and prep.max_value == 1:  # binary already
            return y, key
        key_noise, key = jax.random.split(key)
        return data_lib.add_data_noise(prep.noise, key_noise, y), key

    def to_pixels(self, x: ArrayLike) -> np.ndarray:
        """The model's data (e.g. `decode`'s means) -> intensities in [0, 1], for figures.

        Args:
          x: the model's data of any shape, e.g. `[B, *data_shape]`.

        Returns:
          A NumPy array of `x`'s shape in [0, 1] ("standardize" is clipped to it); data of
          preprocessing "none" come back unchanged.
        """
        return self.preprocessing.to_pixels(np.asarray(x))

    def read_split(
        self, split: str = "test", *, data_dir: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw images and labels of a split of the dataset the model trained on.

        The run's validation examples are the last `config.data.num_valid` train examples
        (unless the dataset has a "validation" split).

        Args:
          split: a TFDS split ("train", "test", "train[-10000:]", ...); for the "synthetic"
            dataset, "train" or "test".
          data_dir: a prepared TFDS data_dir; default the run's, else `$TFDS_DATA_DIR`
            (not used for "synthetic").

        Returns:
          `(images, labels)`: uint8 `[N, *data_shape]` and int32 `[N]`.

        Raises:
          DatasetNotFoundError: the dataset is not prepared under `data_dir`.
        """
        name = self.config.data.name
        if name == data_lib.SYNTHETIC:
            return data_lib.synthetic_split(split)
        data_dir = data_dir or self.config.data.get("data_dir")
        return data_lib.read_split(name, split, data_dir=data_dir)

    def side_input(self, y: ArrayLike | None, batch: int) -> np.ndarray | None:
        """`y` checked for a conditional model's batch of `batch` examples.

        Args:
          y: the side inputs: a label per example `[B]` (`config.data.conditioning="label"`)
            or features `[B, *shape]`; None for a model that takes none.
          batch: B, the examples they go with.

        Returns:
          `y` as an array (None for an unconditional model).

        Raises:
          ValueError: a conditional model without `y`, an unconditional one with it, or a `y`
            of the wrong shape, dtype or range.
        """
        if not networks.is_conditional(self.model):
            if y is not None:
                raise ValueError("This model is not conditioned on anything, so it takes no y.")
            return None
        return self.model.conditioning.check(y, batch)

    # ---- the methods

    def encode(self, x: ArrayLike, *, y: ArrayLike | None = None) -> dict[str, jax.Array]:
        """The posterior's parameters q(z | x) for raw data (a one-layer model).

        Args:
          x: raw data `[B, *data_shape]` (see `check`).
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          A dict with `"mean"` and the posterior's scale (e.g. `"log_var"`), each
          `[B, latent_dim]`; an IAF posterior adds `"context"` `[B, context_dim]` and `"flow"`
          (its weights, not per example).

        Raises:
          ValueError: the model has several stochastic layers (use `codes`), or `x` fails
            `check`.
        """
        self._one_layer("encode")
        data, _ = self.preprocess(x)
        return _encode(self.params, data, self.side_input(y, len(data)), model=self.model)

    def posterior_mean(self, x: ArrayLike, *, y: ArrayLike | None = None) -> jax.Array:
        """The posterior means E_q[z | x]: the codes for downstream use (a one-layer model).

        Args:
          x: raw data `[B, *data_shape]` (see `check`).
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          `[B, latent_dim]` posterior means.
        """
        return self.encode(x, y=y)["mean"]

    def decode(self, z: ArrayLike, *, y: ArrayLike | None = None) -> jax.Array:
        """The likelihood's mean E[x | z] for codes `z` (a one-layer model).

        Args:
          z: codes `[B, latent_dim]`, cast to float32.
          y: a conditional model's side inputs for `z` (`side_input`); None otherwise.

        Returns:
          `[B, *data_shape]` means in the model's data units (`to_pixels` maps them to [0, 1]).

        Raises:
          ValueError: `z` is not `[B, latent_dim]`, or the model has several stochastic layers.
        """
        self._one_layer("decode")
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"decode takes codes of shape [B, {self.latent_dim}]; got {z.shape}. "
                "Add a batch axis (z[None]) for one code."
            )
        return _decode_mean(self.params, z, self.side_input(y, len(z)), model=self.model)

    def codes(self, x: ArrayLike, *, y: ArrayLike | None = None) -> tuple[jax.Array, ...]:
        """Each stochastic layer's posterior mean, z_1 first, along the path of means.

        Args:
          x: raw data `[B, *data_shape]` (see `check`).
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          A tuple of `[B, D_l]` means, one per layer, `D_l = latent_sizes[l]` (a one-layer
          VAE: `(posterior_mean(x),)`).
        """
        data, _ = self.preprocess(x)
        return _codes(self.params, data, self.side_input(y, len(data)), model=self.model)

    def reconstruct(self, x: ArrayLike, *, y: ArrayLike | None = None) -> jax.Array:
        """`decode(posterior_mean(x))`: the likelihood's mean at the posterior mean (several
        layers: at the bottom layer's code on the path of means).

        Args:
          x: raw data `[B, *data_shape]` (see `check`).
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          `[B, *data_shape]` means in the model's data units.
        """
        data, _ = self.preprocess(x)
        return _reconstruct(self.params, data, self.side_input(y, len(data)), model=self.model)

    def sample(self, key: jax.Array, num: int, *, y: ArrayLike | None = None) -> jax.Array:
        """The likelihood's means at codes drawn from the prior (top down through every layer).

        Args:
          key: a PRNG key for the prior's draws.
          num: how many samples, an integer >= 1 (each new `num` compiles once).
          y: a conditional model's side inputs, one per sample `[num, ...]` (or one label for
            all); None otherwise.

        Returns:
          `[num, *data_shape]` means in the model's data units.

        Raises:
          ValueError: `key` is not one PRNG key, or `num` is not an integer >= 1.
        """
        _check_key(key, "sample")
        if not isinstance(num, int | np.integer) or num < 1:
            raise ValueError(f"sample needs a number of samples >= 1; got {num!r}.")
        if y is not None and np.ndim(y) == 0:  # one label for every sample
            y = np.full(int(num), y)
        cond = self.side_input(y, int(num))
        return _sample(self.params, key, cond, model=self.model, num=int(num))

    def interpolate(
        self, x_a: ArrayLike, x_b: ArrayLike, num_steps: int = 8, *, y: ArrayLike | None = None
    ) -> jax.Array:
        """Decoded means along the line between the posterior means of `x_a` and `x_b`.

        A one-layer model only; the codes are `(1 - t) z_a + t z_b` for `num_steps` values of
        t evenly spaced from 0 to 1, both ends included.

        Args:
          x_a: raw data, one example `[*data_shape]` or a batch `[B, *data_shape]`.
          x_b: raw data of `x_a`'s shape.
          num_steps: points on the line, an integer >= 2.
          y: a conditional model's side inputs for `x_a` (both ends share them).

        Returns:
          `[num_steps, *data_shape]` means for one example each, else
          `[B, num_steps, *data_shape]`.

        Raises:
          ValueError: `x_a` and `x_b` differ in shape, `num_steps < 2`, or the model has
            several stochastic layers.
        """
        self._one_layer("interpolate")
        single = np.shape(x_a) == self.data_shape
        x_a, x_b = (np.asarray(v)[None] if single else v for v in (x_a, x_b))
        if np.shape(x_a) != np.shape(x_b):
            raise ValueError(
                f"interpolate needs x_a and x_b of one shape; got {np.shape(x_a)} and "
                f"{np.shape(x_b)}."
            )
        if not isinstance(num_steps, int | np.integer) or num_steps < 2:
            raise ValueError(f"interpolate needs num_steps >= 2; got {num_steps!r}.")
        (d_a, _), (d_b, _) = self.preprocess(x_a), self.preprocess(x_b)
        if y is not None and single:  # the one example's side input
            y = np.asarray(y)[None]
        cond = self.side_input(y, len(d_a))
        out = _interpolate(self.params, d_a, d_b, cond, model=self.model, num_steps=int(num_steps))
        return out[0] if single else out

    def elbo(
        self, key: jax.Array, x: ArrayLike, *, num_samples: int = 1, y: ArrayLike | None = None
    ) -> ElboTerms:
        """The ELBO and its terms per example, in nats (`vaejax.objectives.elbo`).

        Args:
          key: a PRNG key: the data's noise (binarization or dequantization, as in training)
            is drawn from one part of it, the posterior's samples from the rest.
          x: raw data `[B, *data_shape]` (see `check`).
          num_samples: Monte Carlo samples of z per example, averaged.
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          `ElboTerms` of `[B]` arrays: `elbo`, `log_likelihood`, `kl`, `objective`, and per
          layer.
        """
        _check_key(key, "elbo")
        fields.check_count(num_samples, "num_samples", "elbo")
        data, key = self.preprocess(x, key)
        cond = self.side_input(y, len(data))
        return _elbo(self.params, key, data, cond, model=self.model, num_samples=num_samples)

    def log_likelihood(
        self,
        key: jax.Array,
        x: ArrayLike,
        *,
        num_samples: int = 1000,
        chunk_size: int = 100,
        binarize: str = "draw",
        y: ArrayLike | None = None,
    ) -> jax.Array:
        """Importance-sampled log p(x) per example, in nats, e.g. as an anomaly score.

        The estimate the evaluation reports as `nll_k` (negated). A model of binarized data
        scores a binary image: for grayscale `x`, `binarize="draw"` (the default, as training
        saw its data) draws one binarization from `key`, so the score of a grayscale image
        changes with the key; `binarize="threshold"` scores the image thresholded at one half,
        the same for every key but for the importance samples' noise.

        Args:
          key: a PRNG key: the data's noise (as in training) from one part of it, the
            importance samples from the rest.
          x: raw data `[B, *data_shape]` (see `check`).
          num_samples: importance samples per example.
          chunk_size: samples decoded at a time (at most `num_samples`); memory grows with
            `chunk_size * B`.
          binarize: "draw" or "threshold" (the latter for a model of binarized data only).
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          `[B]` log p(x) estimates, nats.

        Raises:
          ValueError: a bad `key`, count or `binarize`, or `x` fails `check`.
        """
        _check_key(key, "log_likelihood")
        fields.check_count(num_samples, "num_samples", "log_likelihood")
        fields.check_count(chunk_size, "chunk_size", "log_likelihood")
        if binarize not in ("draw", "threshold"):
            raise ValueError(f"binarize must be 'draw' or 'threshold'; got {binarize!r}.")
        if binarize == "threshold":
            if not self.preprocessing.name.endswith("binarize"):
                raise ValueError(
                    f"binarize='threshold' is for a model of binarized data; this one's "
                    f"preprocessing is {self.preprocessing.name!r}."
                )
            x = (self.preprocess(x)[0] >= 0.5) * self.preprocessing.max_value
        data, key = self.preprocess(x, key)
        cond = self.side_input(y, len(data))
        chunk_size = min(int(chunk_size), int(num_samples))
        return _log_px(
            self.params,
            key,
            data,
            cond,
            model=self.model,
            num_samples=num_samples,
            chunk_size=chunk_size,
        )

    def active_units(
        self,
        x: ArrayLike,
        *,
        threshold: float = evaluate.ACTIVE_UNIT_THRESHOLD,
        y: ArrayLike | None = None,
    ) -> np.ndarray:
        """Which latent dimensions are active over `x` (Burda et al. 2015).

        A dimension is active when its posterior mean varies over the data: Var_x E_q[z_d] >
        `threshold`. `x` should be a dataset (e.g. the test split), not a few examples.

        Args:
          x: raw data `[N, *data_shape]` (see `check`).
          threshold: the variance over `x` above which a dimension is active.
          y: a conditional model's side inputs for `x` (`side_input`); None otherwise.

        Returns:
          bool `[latent_dim]`; with several layers, every layer's dimensions, z_1's first,
          `[sum(latent_sizes)]`.
        """
        means = np.concatenate([np.asarray(c) for c in self.codes(x, y=y)], axis=1)
        # The evaluation's count, one dimension at a time: one definition of "active".
        return np.array(
            [
                evaluate.active_units(means[:, d : d + 1], threshold) == 1
                for d in range(means.shape[1])
            ]
        )
