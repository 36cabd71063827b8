"""Input pipeline: a prepared TFDS dataset read once into memory, preprocessed, batched on device.

Splits are read with `tfds.data_source` (array_record), which needs neither TensorFlow nor a
network; only preparing a dataset the first time (`prepare`) does. Each split is read whole,
once: the trainer keeps the train array on device and gathers batches with `epoch_permutation`,
so no per-step host work remains.

Shapes: images are `[N, H, W, C]`, labels `[N]`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import warnings
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from vaejax import files
from vaejax.preprocessing import (  # noqa: F401 (the data's preprocessing, as vaejax.data names it)
    DATA_NOISE,
    DEQUANTIZATION_LEVELS,
    NO_PREPROCESSING,
    PREPROCESSINGS,
    Preprocessing,
    add_data_noise,
    binarize,
    dequantize,
)
from vaejax.version import __version__

# Image datasets with a uint8 `image` feature that this pipeline has been written for.
DATASETS = ("mnist", "fashion_mnist", "kmnist", "binarized_mnist", "cifar10", "svhn_cropped")

# Generated in memory, no TFDS: for tests, quick benchmarks and worker processes without data.
SYNTHETIC = "synthetic"
_SYNTHETIC_SIZES = {"train": 240, "test": 80}

# Datasets stored as {0, 1} rather than 0..255.
BINARY_DATASETS = frozenset({"binarized_mnist"})


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not prepared (as array_record) in the data_dir read from."""


@dataclasses.dataclass(frozen=True)
class Data:
    """Preprocessed splits as host arrays, and the `Preprocessing` that made them.

    `preprocessing` None (data made elsewhere): `info["preprocessing"]` names it if present,
    else the training run's `config.data.preprocessing` does.
    """

    train: np.ndarray  # [N_train, H, W, C] float32 (int32 for "integer")
    valid: np.ndarray  # [N_valid, H, W, C]
    test: np.ndarray  # [N_test, H, W, C]
    train_labels: np.ndarray | None = None  # [N_train] int32; None: no labels
    valid_labels: np.ndarray | None = None  # [N_valid] int32
    test_labels: np.ndarray | None = None  # [N_test] int32
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # name, sizes, ...
    preprocessing: Preprocessing | None = None

    def __post_init__(self):
        if self.preprocessing is None and "preprocessing" in self.info:
            object.__setattr__(self, "preprocessing", Preprocessing(self.info["preprocessing"]))


def inputs(data: Data, split: str, conditioned: bool) -> Any:
    """A split as a model takes it: the examples, or a conditional model's `(x, labels)`.

    Args:
      data: the splits.
      split: "train", "valid" or "test".
      conditioned: the model is conditioned on the label (`config.data.conditioning`).

    Returns:
      `[N, *data_shape]`, or the pair of it and the split's labels `[N]`.
    """
    x = getattr(data, split)
    return (x, getattr(data, f"{split}_labels")) if conditioned else x


def num_classes(data: Data) -> int:
    """The classes of a conditional run's labels: one more than the largest label of any split.

    Args:
      data: splits with labels.

    Returns:
      K, so that every label is in `[0, K)`; 0 where there are none.
    """
    labels = [y for y in (data.train_labels, data.valid_labels, data.test_labels) if y is not None]
    return max((int(np.max(y)) + 1 for y in labels if len(y)), default=0)


def resolve_data_dir(data_dir: str | None) -> str | None:
    """The explicit `data_dir`, else `$TFDS_DATA_DIR`, else None (the tfds default).

    Args:
      data_dir: a TFDS data_dir, or None (or empty) to read the environment.

    Returns:
      The directory with `~` expanded, or None.
    """
    # Read the environment now, not when tfds was imported, so a later `export` still counts.
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    return os.path.expanduser(data_dir) if data_dir else None


def _builder(name: str, data_dir: str | None, **kwargs: Any) -> tfds.core.DatasetBuilder:
    if name not in DATASETS:
        raise ValueError(f"Unsupported dataset {name!r}; choose one of {DATASETS}.")
    return tfds.builder(name, data_dir=resolve_data_dir(data_dir), **kwargs)


def not_prepared_message(name: str, data_dir: str | None) -> str:
    """Says where `name` was looked for and the ways to make it readable.

    Args:
      name: a TFDS dataset name from `DATASETS`.
      data_dir: the data_dir looked in (None: `resolve_data_dir`'s default).

    Returns:
      The message, for a `DatasetNotFoundError`.
    """
    builder = _builder(name, data_dir)
    where = f"{name} is not prepared under {builder.data_dir}."
    if builder.is_prepared():
        where = (
            f"{name} is prepared under {builder.data_dir} as {builder.info.file_format.value}, "
            "which tfds.data_source cannot read (it needs array_record)."
        )
    return (
        f"{where} Point at a prepared TFDS data_dir with TFDS_DATA_DIR=/path "
        "(here: TFDS_DATA_DIR=../shared/data/tfds) or --config.data.data_dir=/path, "
        "or run `make prepare` on a machine with internet "
        "(it installs tensorflow-cpu, needed only to download and convert)."
    )


def is_prepared(name: str, data_dir: str | None) -> bool:
    """Whether `name` is prepared under `data_dir` in a format `tfds.data_source` can read.

    Args:
      name: a TFDS dataset name from `DATASETS`.
      data_dir: a TFDS data_dir (None: `resolve_data_dir`'s default).

    Returns:
      True if prepared in a random-access format (array_record).

    Raises:
      ValueError: `name` is not in `DATASETS`.
    """
    builder = _builder(name, data_dir)
    random_access = tfds.core.FileFormat.with_random_access()
    return builder.is_prepared() and bool(builder.info.available_file_formats() & random_access)


def prepare(name: str, data_dir: str | None, *, manual_dir: str | None = None) -> None:
    """Downloads `name` and converts it to array_record under `data_dir` (needs TF).

    Args:
      name: a TFDS dataset name from `DATASETS`.
      data_dir: the TFDS data_dir to write to (None: `resolve_data_dir`'s default).
      manual_dir: a directory holding the dataset's original files (for MNIST the four IDX
        `.gz` files), read instead of downloading them: preparation then needs no network.

    Raises:
      ImportError: TensorFlow (or importlib_resources) is not installed.
      FileNotFoundError: `manual_dir` is not a directory.
    """
    missing = [m for m in ("tensorflow", "importlib_resources") if not importlib.util.find_spec(m)]
    if missing:
        raise ImportError(
            f"Preparing {name} needs {' and '.join(missing)}, which is not installed (reading "
            "does not). Run `pip install -e '.[prepare]'` or `make prepare`, or point at a "
            "prepared TFDS data_dir with TFDS_DATA_DIR=/path."
        )
    config = None
    if manual_dir is not None:
        manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(f"manual_dir {manual_dir} is not a directory.")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder = _builder(name, data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=config)


def read_split(name: str, split: str, *, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Reads a whole split into memory.

    Args:
      name: a TFDS dataset name from `DATASETS`.
      split: a TFDS split, e.g. "train", "test" or "train[:1000]".
      data_dir: a prepared TFDS data_dir; None reads `$TFDS_DATA_DIR`, else the tfds default.

    Returns:
      images uint8 `[N, H, W, C]` and labels int32 `[N]` (zeros if the dataset has none).
    """
    data_dir = resolve_data_dir(data_dir)
    if not is_prepared(name, data_dir):
        raise DatasetNotFoundError(not_prepared_message(name, data_dir))
    cache = _cache_file(name, split, data_dir)
    source = _source(name, split, data_dir) if cache is not None else ""
    if cache is not None and cache.exists():
        cached = _read_cache(cache, source)
        if cached is not None:
            return cached
    # download=False: a missing dataset is reported above, never fetched behind the user's back.
    try:
        records = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        # One batched read of the records; decoding them (PNG, in Python) takes most of the time.
        examples = records.__getitems__(range(len(records)))
    except RuntimeError as e:  # a damaged file: array_record's "Invalid Riegeli/records file"
        where = _builder(name, data_dir).data_dir
        raise DatasetNotFoundError(
            f"The prepared {name} split {split!r} in {where} cannot be read ({str(e)[:160]}): a "
            "file is damaged or truncated (a copy cut short, a full disk). Prepare it again "
            f"(delete {where} and run `make prepare`), or point TFDS_DATA_DIR at a good copy."
        ) from None
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    labels = np.asarray([e.get("label", 0) for e in examples], np.int32)
    if cache is not None:
        # Atomic: concurrent readers see the old state or the whole file.
        try:
            with files.atomic_file(cache, "wb") as f:
                digest = np.asarray(_digest(images, labels))
                np.savez(f, images=images, labels=labels, source=np.asarray(source), digest=digest)
        except OSError as e:  # the cache is optional: a read-only $HOME still trains
            logging.getLogger(__name__).warning(
                "The decode cache %s cannot be written (%s); going on without it. Set "
                "VAEJAX_CACHE_DIR to a writable directory, or to off.",
                cache,
                e.strerror or e,
            )
    return images, labels


def _source(name: str, split: str, data_dir: str | None) -> str:
    """What a cached split was decoded from: the dataset, version and split, the prepared
    directory and each of its files' size and time, and this code's version."""
    builder = _builder(name, data_dir)
    root = pathlib.Path(builder.data_dir)
    prepared = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir() if p.is_file()
    )
    stamp = [name, str(builder.version), split, os.path.realpath(root), prepared, __version__]
    return json.dumps(stamp)


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    content = hashlib.sha256(np.ascontiguousarray(images).data)
    content.update(np.ascontiguousarray(labels).data)
    return content.hexdigest()


def _read_cache(path: pathlib.Path, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached `(images, labels)`, or None (and the file removed) if it cannot be trusted.

    A cache that cannot be read (truncated by a full disk), was decoded from another source
    (another prepared copy, another version), or whose arrays are not the ones written (edited,
    or planted in a shared cache directory) is rebuilt from the dataset, with a warning that
    names it; VAEJAX_CACHE_DIR=off turns the cache off. Nothing in it is ever unpickled.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
            if "source" not in f or str(f["source"]) != source:
                raise ValueError("it was decoded from another source than this dataset's files")
            if str(f["digest"]) != _digest(images, labels):
                raise ValueError("its arrays are not the ones written (changed since)")
            return images, labels
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        logging.getLogger(__name__).warning(
            "The decode cache %s cannot be used (%s: %s); rebuilding it from the dataset. "
            "VAEJAX_CACHE_DIR=off turns the cache off.",
            path,
            type(e).__name__,
            e,
        )
        path.unlink(missing_ok=True)
        return None


def _cache_file(name: str, split: str, data_dir: str | None) -> pathlib.Path | None:
    """Where the decoded split is cached: `$VAEJAX_CACHE_DIR` (default ~/.cache/vaejax).

    Decoding MNIST's PNG records takes 15-20 s on 2 cores; the cached arrays load in well
    under a second. The key names the dataset, version, split and prepared directory, so a
    different or re-prepared dataset never reads a stale cache. VAEJAX_CACHE_DIR=off disables.
    """
    root = os.environ.get("VAEJAX_CACHE_DIR", "~/.cache/vaejax")
    if root.lower() in ("", "off", "none", "0"):
        return None
    builder = _builder(name, data_dir)
    info = pathlib.Path(builder.data_dir) / "dataset_info.json"
    stamp = (
        f"{os.path.realpath(builder.data_dir)}:{info.stat().st_mtime_ns if info.exists() else 0}"
    )
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    safe_split = "".join(c if c.isalnum() else "_" for c in split)
    return pathlib.Path(root).expanduser() / f"{name}-{builder.version}-{safe_split}-{digest}.npz"


def synthetic_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """A small MNIST-shaped dataset made on the fly: one blurred random stroke per image.

    Deterministic per split. Not a benchmark of quality: it exercises the whole pipeline with
    no data on disk.

    Args:
      split: "train" (240 images) or "test" (80).

    Returns:
      `(images, labels)`: uint8 `[N, 28, 28, 1]` and int32 `[N]` labels 0..9 (the stroke's
      direction bucket).

    Raises:
      ValueError: another `split`.
    """
    if split not in _SYNTHETIC_SIZES:
        raise ValueError(f"synthetic has splits {list(_SYNTHETIC_SIZES)}; got {split!r}.")
    n = _SYNTHETIC_SIZES[split]
    rng = np.random.default_rng(list(_SYNTHETIC_SIZES).index(split))
    angle = rng.uniform(0, np.pi, n)
    center = rng.uniform(9, 19, (n, 2))
    t = np.linspace(-8, 8, 33)
    ys = center[:, :1] + np.sin(angle)[:, None] * t[None]  # [N, 33]
    xs = center[:, 1:] + np.cos(angle)[:, None] * t[None]
    grid = np.arange(28)
    dy = grid[None, None, :, None] - ys[:, :, None, None]  # [N, 33, 28, 1]
    dx = grid[None, None, None, :] - xs[:, :, None, None]  # [N, 33, 1, 28]
    ink = np.exp(-(dy**2 + dx**2) / 2.0).max(axis=1)  # [N, 28, 28]
    images = np.clip(ink * 255 * 1.2, 0, 255).astype(np.uint8)[..., None]
    labels = (angle / np.pi * 10).astype(np.int32) % 10
    return images, labels


def epoch_permutation(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Shuffled example indices for one epoch, `[num_batches, batch_size]` int32.

    The last `num_examples % batch_size` shuffled examples are dropped, so every batch is full
    and one compiled step serves the whole epoch.

    Args:
      key: this epoch's PRNG key (the loop folds the epoch into the data-order key).
      num_examples: N, the size of the train split.
      batch_size: B.

    Returns:
      `[N // B, B]` int32 indices into the train split.
    """
    if not 0 < batch_size <= num_examples:
        raise ValueError(
            f"batch_size must be in [1, num_examples={num_examples}]; got {batch_size}. "
            "Use a smaller batch or more data."
        )
    num_batches = num_examples // batch_size
    perm = jax.random.permutation(key, num_examples)[: num_batches * batch_size]
    return perm.reshape(num_batches, batch_size).astype(jnp.int32)


def load(
    name: str = "mnist",
    *,
    preprocessing: str,
    data_dir: str | None = None,
    num_valid: int = 10_000,
    num_train: int = 0,
    seed: int = 0,
) -> Data:
    """Reads a dataset's train, validation and test splits and preprocesses them.

    The validation split is the dataset's own `validation` split if it has one, else the last
    `num_valid` train examples (TFDS stores them shuffled); test is never touched.

    Args:
      name: a TFDS dataset name from `DATASETS`.
      preprocessing: one of `PREPROCESSINGS` (see `Preprocessing`).
      data_dir: a prepared TFDS data_dir; None reads `$TFDS_DATA_DIR`, else the tfds default.
      num_valid: examples held out from the end of train when there is no validation split.
      num_train: train on at most this many examples (the first ones); 0: all of them.
      seed: seeds the binarization of the fixed splits.

    Returns:
      `Data` with its `Preprocessing` (`max_value` 255, or 1 for binary datasets; for
      "standardize", the train split's `mean` and `std` in pixel units); `info` records the
      name, the validation split and the split sizes.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(
            f"Unknown preprocessing {preprocessing!r}; choose one of {PREPROCESSINGS}."
        )
    if name == SYNTHETIC:
        read = synthetic_split
        has_validation, num_stored = False, _SYNTHETIC_SIZES["train"]
    else:
        data_dir = resolve_data_dir(data_dir)
        if not is_prepared(name, data_dir):
            raise DatasetNotFoundError(not_prepared_message(name, data_dir))
        split_infos = _builder(name, data_dir).info.splits
        has_validation = "validation" in split_infos
        num_stored = split_infos["train"].num_examples
        read = lambda split: read_split(name, split, data_dir=data_dir)
    # Checked before reading: a split takes seconds to read.
    if num_train < 0:
        raise ValueError(f"num_train must be >= 0 (0: every train example); got {num_train}.")
    if not has_validation and not 0 <= num_valid < num_stored:
        raise ValueError(
            f"num_valid must be in [0, {num_stored}) for {name}'s {num_stored} train examples; "
            f"got {num_valid}."
        )
    if not has_validation and num_valid > num_stored - num_valid:
        warnings.warn(
            f"num_valid={num_valid} holds out more of {name}'s {num_stored} train examples than "
            f"it leaves to train on ({num_stored - num_valid}); lower config.data.num_valid "
            "unless that is meant.",
            UserWarning,
            stacklevel=2,
        )

    train, train_labels = read("train")
    test, test_labels = read("test")
    if has_validation:
        valid, valid_labels = read("validation")
        validation = "validation split"
    else:
        cut = len(train) - num_valid
        train, valid = train[:cut], train[cut:]
        train_labels, valid_labels = train_labels[:cut], train_labels[cut:]
        validation = f"last {num_valid} train examples"
    if num_train:
        train, train_labels = train[:num_train], train_labels[:num_train]

    prep = Preprocessing(preprocessing, max_value=1 if name in BINARY_DATASETS else 255)
    prep = prep.fit(train)
    info: dict[str, Any] = {
        "name": name,
        "validation": validation,
        "shape": tuple(train.shape[1:]),
        "num_train": len(train),
        "num_valid": len(valid),
        "num_test": len(test),
        "seed": seed,
    }
    splits = prep.apply((train, valid, test), seed)
    return Data(*splits, train_labels, valid_labels, test_labels, info, prep)
