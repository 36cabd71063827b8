"""Up-front checks of a training run, in one place: each a `ValueError` that names the fix.

`vaejax.experiment.setup` calls `check_config` first, before any data are read (every config
value against its valid range, every name against the valid names, the likelihood against the
preprocessing), and `check_splits` once the splits are in memory (every split the run uses,
including a train split that the train step binarizes or dequantizes per batch). Entry points
call `check_overrides` on their `--config.x=...` flags, so a misspelled field is one line.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from vaejax import build, hierarchical, likelihoods, networks, population, posteriors, train
from vaejax import data as data_lib


class ConfigError(ValueError):
    """A config value out of its valid range, an unknown name or an unknown field."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _int_at_least(low: int, note: str = "") -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}{note}"


def _real(test: Callable[[float], bool], text: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_real(v) and math.isfinite(v) and test(v)), text


# field -> (is it valid, the valid range in words). Fields a config lacks are not checked.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int_at_least(0),
    "data.num_valid": _int_at_least(0),
    "data.num_train": _int_at_least(0, " (0: every train example)"),
    "model.latent_dim": _int_at_least(1),
    "model.pixel_features": _int_at_least(0, " (0: one plain head per param)"),
    "model.input_scale": _real(lambda v: v > 0, "a finite number > 0"),
    "objective.num_samples": _int_at_least(1),
    "objective.beta": _real(lambda v: v >= 0, "a finite number >= 0"),
    "objective.warmup_steps": _int_at_least(0),
    "objective.free_bits": _real(lambda v: v >= 0, "a finite number >= 0"),
    "optim.learning_rate": _real(lambda v: v > 0, "a finite number > 0"),
    "optim.end_learning_rate": _real(lambda v: v >= 0, "a finite number >= 0"),
    "optim.b1": _real(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optim.b2": _real(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optim.eps": _real(lambda v: v > 0, "a finite number > 0"),
    "optim.grad_clip_norm": _real(lambda v: v >= 0, "a finite number >= 0 (0: off)"),
    "optim.ema_decay": _real(lambda v: 0 <= v < 1, "a number in [0, 1) (0: off)"),
    "train.batch_size": _int_at_least(1),
    "train.num_epochs": _int_at_least(1),
    "train.steps_per_dispatch": _int_at_least(1),
    "train.eval_every_epochs": _int_at_least(1),
    "train.checkpoint_every_steps": _int_at_least(1),
    "train.keep_checkpoint_every_steps": _int_at_least(0, " (0: only the latest two)"),
    "train.time_budget_s": _real(lambda v: v >= 0, "a finite number >= 0 (0: no budget)"),
    "eval.batch_size": _int_at_least(1),
    "eval.iwae_samples": _int_at_least(0, " (0: skip the IWAE bound)"),
    "eval.nll_samples": _int_at_least(0, " (0: skip the log-likelihood estimate)"),
    "eval.nll_chunk_size": _int_at_least(1),
    "eval.num_test": _int_at_least(0, " (0: the whole test split)"),
}

# field -> the valid names.
NAMES: dict[str, Sequence[str]] = {
    "data.name": (*data_lib.DATASETS, data_lib.SYNTHETIC),
    "data.preprocessing": data_lib.PREPROCESSINGS,
    "model.preset": (*networks.PRESETS, *hierarchical.PRESETS),
    "model.likelihood": likelihoods.names(),
    "model.posterior": posteriors.POSTERIORS,
    "optim.schedule": train.SCHEDULES,
    "objective.name": train.OBJECTIVES,
}

_MISSING = object()


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    node: Any = config
    for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict | Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def check_config(
    config: ml_collections.ConfigDict,
    *,
    members: Sequence[Mapping[str, Any]] | None = None,
    custom_model: bool = False,
    custom_data: bool = False,
) -> None:
    """Every value of `config` (and of each population member's) in its valid range.

    `custom_model` / `custom_data`: the run trains a given model / data, so `config.model` /
    `config.data.name` do not describe what trains and are not checked.
    Raises `ConfigError` naming the field, the value and the valid range.
    """
    configs = [config]
    if members is not None:
        if not members:
            raise ConfigError("A population needs at least one member; got none.")
        configs = population.member_configs(config, members)
    for cfg in configs:
        _check_ranges(cfg, skip=("model.",) if custom_model else ())
    skip = ("data.name",) if custom_data else ()
    skip += ("model.",) if custom_model else ()
    for field, valid in NAMES.items():
        value = _get(config, field)
        if value is not _MISSING and not field.startswith(skip) and value not in valid:
            raise ConfigError(
                f"config.{field} = {value!r} is not a valid name; valid: {sorted(valid)}."
            )
    if not custom_model:
        for size in _get(config, "model.hidden_sizes") or ():
            if not (_is_int(size) and size >= 1):
                raise ConfigError(
                    f"config.model.hidden_sizes = {tuple(config.model.hidden_sizes)} has a "
                    f"width of {size!r}; every width must be an integer >= 1."
                )
        _build(lambda: networks.activation(config.model.activation), "model.activation")
        if _get(config, "model.preset") in hierarchical.PRESETS:
            _build(lambda: _hierarchy(config.model), "model.latent_sizes")
        kwargs = _get(config, "model.likelihood_kwargs")
        kwargs = {} if kwargs is _MISSING else dict(kwargs)
        _build(lambda: likelihoods.get(config.model.likelihood, **kwargs), "model.likelihood")
        kwargs = _get(config, "model.posterior_kwargs")
        kwargs = {} if kwargs is _MISSING else dict(kwargs)
        _build(lambda: posteriors.make(config.model.posterior, **kwargs), "model.posterior")
    for cfg in configs:
        _build(lambda: train.Objective(**cfg.objective), "objective")  # noqa: B023


def _hierarchy(cfg: ml_collections.ConfigDict) -> Any:
    """Builds (does not initialize) the hierarchical model: checks its layers up front."""
    return hierarchical.build(
        cfg.preset,
        data_shape=(1,),
        likelihood=None,
        activation=cfg.get("activation", "tanh"),
        latent_sizes=cfg.get("latent_sizes", ()),
        hidden_sizes=cfg.get("layer_hidden_sizes", ()),
        posterior=cfg.get("posterior", "log_var"),
        posterior_kwargs=cfg.get("posterior_kwargs"),
    )


def _check_ranges(config: ml_collections.ConfigDict, *, skip: tuple[str, ...]) -> None:
    for field, (ok, valid) in RANGES.items():
        value = _get(config, field)
        if field == "optim.end_learning_rate" and value is None:
            continue  # the schedule's default
        if value is not _MISSING and not field.startswith(skip or ("\0",)) and not ok(value):
            raise ConfigError(f"config.{field} = {value!r} is out of range: it must be {valid}.")


def _build(make: Callable[[], Any], field: str) -> None:
    """Runs a constructor that validates `field`, naming the field in its error."""
    try:
        make()
    except ValueError as e:
        raise ConfigError(f"config.{field}: {e}") from None


# ---- likelihood x preprocessing


# Each library likelihood: the preprocessings whose data it is a distribution of.
FITS: dict[type, tuple[str, ...]] = {
    likelihoods.Bernoulli: ("dynamic_binarize", "static_binarize"),
    likelihoods.ContinuousBernoulli: ("dequantize", "unit_interval"),
    likelihoods.Gaussian: ("standardize", "dequantize", "unit_interval"),
    likelihoods.LearnedGaussian: ("standardize", "dequantize", "unit_interval"),
    likelihoods.Categorical: ("integer",),
}

# Pairs that are refused: the run would train, at length, a model that cannot be right.
_REFUSED = {
    # 256 classes fitted to {0, 1} or to intensities in [0, 1]: not the 8-bit levels.
    likelihoods.Categorical: tuple(p for p in data_lib.PREPROCESSINGS if p != "integer"),
    # On {0, 1} the CB density grows without bound with the logits; the others are not in [0, 1].
    likelihoods.ContinuousBernoulli: (
        "dynamic_binarize",
        "static_binarize",
        "integer",
        "standardize",
    ),
    # Never binary data; unit_interval is, for binary images, so its data check decides.
    likelihoods.Bernoulli: ("integer", "standardize", "dequantize"),
}


def check_likelihood_fits(likelihood: Any, preprocessing: str, *, binary: bool = False) -> None:
    """Refuses a library likelihood paired with a preprocessing whose data it does not model;
    warns for pairs that train but are rarely meant (e.g. a Gaussian on binary data).

    `binary`: the dataset is stored binary (binarized_mnist), so any scaling keeps it binary.
    A likelihood of the user's own class, or `preprocessing` "none", is not checked.
    """
    kind = type(likelihood)
    if kind not in FITS or preprocessing == data_lib.NO_PREPROCESSING:
        return
    if kind is likelihoods.Bernoulli and (binary or preprocessing == "unit_interval"):
        return  # binary images stay binary in [0, 1]: the data check decides
    fits = FITS[kind]
    if preprocessing in fits:
        return
    table = "; ".join(f"{k.__name__}: {', '.join(v)}" for k, v in FITS.items())
    message = (
        f"{kind.__name__} likelihood with preprocessing {preprocessing!r}: the preprocessing "
        f"does not make data that {kind.__name__} models (it fits {', '.join(fits)}). "
        f"Pairs that fit: {table}."
    )
    if preprocessing in _REFUSED.get(kind, ()):
        raise ConfigError(message + " Change config.model.likelihood or config.data.preprocessing.")
    warnings.warn(message, UserWarning, stacklevel=2)


# ---- the splits


def check_splits(
    splits: Mapping[str, np.ndarray],
    likelihood: Any,
    *,
    noise: str | None,
    batch_size: int,
) -> None:
    """Every split the run uses, checked on the host once, before any compilation.

    `splits`: name -> array (train, valid, test). A train split that the train step binarizes
    or dequantizes per batch (`noise`) must hold intensities in [0, 1] (the noise makes the
    likelihood's data from them); every other split must be data of `likelihood`.
    """
    train_x = splits["train"]
    if len(train_x) == 0:
        raise ConfigError("The training split is empty; nothing to train on.")
    if batch_size > len(train_x):
        raise ConfigError(
            f"config.train.batch_size = {batch_size} is larger than the training split "
            f"({len(train_x)} examples). Use a batch size <= {len(train_x)}, or more data "
            "(config.data.num_train, config.data.num_valid)."
        )
    for name, x in splits.items():
        if not len(x):  # num_valid=0 trains on all train examples and validates on none
            continue
        if name == "train" and noise is not None:
            _check_intensities(x, noise)
        else:
            likelihood.check_data(x)


def _check_intensities(x: np.ndarray, noise: str) -> None:
    lo, hi = (float(x.min()), float(x.max())) if np.isfinite(x).all() else (math.nan, math.nan)
    if not (0 <= lo and hi <= 1):
        preprocessing = {"binarize": "dynamic_binarize", "dequantize": "dequantize"}[noise]
        raise ValueError(
            f"The training split holds values in [{lo:.6g}, {hi:.6g}], but {preprocessing!r} "
            f"draws each batch's {noise}d data from intensities in [0, 1]. Scale the images to "
            "[0, 1] (e.g. divide 8-bit levels by 255; `vaejax.data.load` does this), or set "
            "the preprocessing that made these data."
        )


# ---- the entry points' overrides


def fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf field of `config`, dotted."""
    out = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict) and len(v):
            out += fields(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def check_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Refuses an unknown dotted field among `overrides`, suggesting the nearest known one."""
    known = fields(config)
    prefixes = {f.rsplit(".", i)[0] for f in known for i in range(f.count(".") + 1)}
    for field in overrides:
        if field in prefixes:
            continue
        near = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
        sections = sorted({f.split(".")[0] for f in known})
        hint = f"; did you mean {near[0]}?" if near else f"; the sections are {sections}."
        raise ConfigError(f"unknown config field {field}{hint}")


def check_run(
    config: ml_collections.ConfigDict,
    *,
    model: Any = None,
    data: data_lib.Data | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """What `train_and_evaluate` checks before reading any data: the config, and the pair of
    the likelihood (the model's, else the config's) and the preprocessing (the data's, else
    the config's)."""
    check_config(
        config, members=members, custom_model=model is not None, custom_data=data is not None
    )
    likelihood = model.likelihood if model is not None else build.build_likelihood(config.model)
    if data is not None and (data.preprocessing or "preprocessing" in data.info):
        preprocessing = data.preprocessing or data_lib.Preprocessing(data.info["preprocessing"])
        name, binary = preprocessing.name, preprocessing.max_value == 1
    else:
        name = config.data.preprocessing
        binary = data is None and config.data.name in data_lib.BINARY_DATASETS
    check_likelihood_fits(likelihood, name, binary=binary)
