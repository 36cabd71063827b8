"""The checks of a training run that cross the config's sections: each a `ValueError` that
names the fix (each section checks its own fields, `vaejax.config`).

`check_run` reads the config of the run and of each population member before any data are read,
and pairs the likelihood with the preprocessing; `check_splits` checks every split once it is in
memory. Entry points call `check_overrides` on their `--config.x=...` flags.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from vaejax import build, conditioning, likelihoods, population
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax.fields import ConfigError

# ---- likelihood x preprocessing


# Each library likelihood: the preprocessings whose data it is a distribution of.
FITS: dict[type, tuple[str, ...]] = {
    likelihoods.Bernoulli: ("dynamic_binarize", "static_binarize"),
    likelihoods.ContinuousBernoulli: ("dequantize", "unit_interval"),
    likelihoods.Gaussian: ("standardize", "dequantize", "unit_interval"),
    likelihoods.LearnedGaussian: ("standardize", "dequantize", "unit_interval"),
    likelihoods.Categorical: ("integer",),
    likelihoods.DiscretizedLogistic: ("integer",),
    likelihoods.DiscretizedLogisticMixture: ("integer",),
    likelihoods.Poisson: ("integer",),
    likelihoods.NegativeBinomial: ("integer",),
    likelihoods.ZeroInflatedNegativeBinomial: ("integer",),
}
_NOT_LEVELS = tuple(p for p in data_lib.PREPROCESSINGS if p != "integer")
_NOT_COUNTS = ("standardize", "dequantize", "unit_interval")  # binary data are counts, if odd

# Pairs that are refused: the run would train, at length, a model that cannot be right.
_REFUSED = {
    # 256 classes fitted to {0, 1} or to intensities in [0, 1]: not the 8-bit levels.
    likelihoods.Categorical: _NOT_LEVELS,
    likelihoods.DiscretizedLogistic: _NOT_LEVELS,
    likelihoods.DiscretizedLogisticMixture: _NOT_LEVELS,
    # Counts are integers >= 0; these make reals.
    likelihoods.Poisson: _NOT_COUNTS,
    likelihoods.NegativeBinomial: _NOT_COUNTS,
    likelihoods.ZeroInflatedNegativeBinomial: _NOT_COUNTS,
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

    A likelihood of the user's own class, or `preprocessing` "none", is not checked.

    Args:
      likelihood: the likelihood object (its class is what is checked).
      preprocessing: a preprocessing name of `data.PREPROCESSINGS`, or "none".
      binary: the dataset is stored binary (binarized_mnist), so any scaling keeps it binary.

    Raises:
      ConfigError: a pair that cannot model the data (a `UserWarning` for one that is
        rarely meant).
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
    preprocessing: data_lib.Preprocessing,
    batch_size: int,
) -> None:
    """Every split the run uses, checked on the host once, before any compilation.

    Each split must hold what `preprocessing` makes (`Preprocessing.check_split`); each but a
    train split that the train step binarizes or dequantizes per batch must also be data of
    `likelihood`. Empty splits other than train are skipped.

    Args:
      splits: name -> preprocessed array `[N, *data_shape]` ("train", and e.g. "valid",
        "test").
      likelihood: the likelihood, whose `check_data` each split must pass.
      preprocessing: the `Preprocessing` that made the splits.
      batch_size: the train batch size, at most the train split's size.

    Raises:
      ConfigError: the train split is empty or smaller than `batch_size`.
      ValueError: a split that is not what `preprocessing` makes or `likelihood` models.
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
        preprocessing.check_split(name, x)
        if name != "train" or preprocessing.noise is None:
            likelihood.check_data(x)


# ---- the entry points' overrides


def fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf field of `config`, dotted.

    Args:
      config: a (nested) ConfigDict.
      prefix: put before every name.

    Returns:
      The dotted names, e.g. `"train.batch_size"`; an empty section counts as a leaf.
    """
    out = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict) and len(v):
            out += fields(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def check_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Refuses an unknown dotted field among `overrides`, suggesting the nearest known one.

    Args:
      config: the entry point's default config.
      overrides: the dotted names set on the command line (e.g. `"train.batch_size"`); a
        section's name (e.g. `"train"`) counts as known.

    Raises:
      ConfigError: a name that is neither a field nor a section of `config`.
    """
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
) -> tuple[config_lib.Config, list[config_lib.Config], Any]:
    """What `train_and_evaluate` checks before reading any data: the config (and each
    population member's), and the pair of the likelihood (the model's, else the config's) and
    the preprocessing (the data's, else the config's).

    Args:
      config: the run's ConfigDict.
      model: a model given instead of the config's, or None.
      data: data given instead of the config's dataset, or None.
      members: a population's per-member overrides (`vaejax.population`), or None.

    Returns:
      `(run_cfg, member_cfgs, likelihood)`: the run's read `Config`, each member's (the run's
      alone without `members`) and the likelihood.

    Raises:
      ConfigError: a config field that is not valid, an empty `members`, or a likelihood
        that does not model the preprocessing's data.
    """
    custom = dict(custom_model=model is not None, custom_data=data is not None)
    run_cfg = config_lib.read(config, **custom)
    if members is not None and not members:
        raise ConfigError("A population needs at least one member; got none.")
    given = [config] if members is None else population.member_configs(config, members)
    member_cfgs = [config_lib.read(c, **custom) for c in given]
    likelihood = model.likelihood if model is not None else build.build_likelihood(run_cfg.model)
    if data is not None and (data.preprocessing or "preprocessing" in data.info):
        preprocessing = data.preprocessing or data_lib.Preprocessing(data.info["preprocessing"])
        name, binary = preprocessing.name, preprocessing.max_value == 1
    else:
        name = run_cfg.data.preprocessing
        binary = data is None and run_cfg.data.name in data_lib.BINARY_DATASETS
    check_likelihood_fits(likelihood, name, binary=binary)
    for cfg in member_cfgs:
        check_conditioning(cfg, model)
    return run_cfg, member_cfgs, likelihood


def check_conditioning(cfg: config_lib.Config, model: Any = None) -> None:
    """`config.data.conditioning` against the model: its preset, its prior, a given model's.

    Args:
      cfg: a read config.
      model: a model given instead of the config's, or None.

    Raises:
      ConfigError: a combination that cannot condition (or would ignore the label).
    """
    labelled = cfg.data.conditioning == "label"
    if model is not None:
        conditional = getattr(model, "conditioning", None) is not None
        if labelled != conditional or (
            conditional and not isinstance(model.conditioning, conditioning.Labels)
        ):
            raise ConfigError(
                f"config.data.conditioning={cfg.data.conditioning!r} but the given model "
                f"has conditioning={getattr(model, 'conditioning', None)!r}: the loop conditions "
                "on labels only; give a VAE with conditioning=Labels(num_classes) for 'label', or "
                "none for 'none' (other side inputs: bind the model with y in your own loop)."
            )
        return
    if labelled and isinstance(cfg.model.net, config_lib.Layers):
        raise ConfigError(
            f"config.data.conditioning='label' needs a one-stochastic-layer preset (mlp, conv, "
            f"kingma2013, burda2015); the hierarchical preset {cfg.model.preset!r} takes no label."
        )
    if labelled and cfg.model.prior == "vampprior":
        raise ConfigError(
            "config.model.prior='vampprior' encodes pseudo-inputs, which have no label: with "
            "config.data.conditioning='label' use prior 'conditional_normal' or another one."
        )
    if not labelled and cfg.model.prior == "conditional_normal":
        raise ConfigError(
            "config.model.prior='conditional_normal' is p(z | y), which needs a label: set "
            "config.data.conditioning='label', or choose another prior."
        )


def check_labels(data: data_lib.Data, num_classes: int) -> None:
    """A label-conditioned run's labels: one per example of every split, in `[0, num_classes)`.

    Args:
      data: the run's splits.
      num_classes: K (`data.num_classes`).

    Raises:
      ValueError: a split without labels, or labels of the wrong shape or range, by name.
    """
    splits = [s for s in ("train", "valid", "test") if len(getattr(data, s))]
    for split in splits:
        if getattr(data, f"{split}_labels") is None:
            raise ValueError(
                f"config.data.conditioning='label' needs labels, and the {split} split has none: "
                f"give Data({split}_labels=...) (an int array [N]), or conditioning 'none'."
            )
    labels = conditioning.Labels(num_classes)
    for split in splits:
        try:
            labels.check(getattr(data, f"{split}_labels"), batch=len(getattr(data, split)))
        except ValueError as e:
            raise ValueError(f"The {split} split's labels: {e}") from None
