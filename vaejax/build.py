"""The models and optimizers a config describes: what the loop trains and `vaejax.load` rebuilds.

Both the training loop (`vaejax.experiment`) and the trained-model loader (`vaejax.trained`)
build from a config through this module, so a loaded model is the model that was trained.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import optax

from vaejax import conditioning, hierarchical, likelihoods, posteriors, priors, train
from vaejax import config as config_lib

# The format of what a run saves (the checkpoint's tree and metadata, config.json): `vaejax.load`
# refuses a work directory of another format. Bump it when older checkpoints no longer restore.
FORMAT_VERSION = 1


def build_model(cfg: config_lib.Model, data_shape, likelihood, num_classes: int = 0) -> Any:
    """The VAE of `cfg.preset`, built from its own fields (`cfg.net`), with the config's
    posterior and prior (`cfg.prior`, one of `priors.PRIORS`, with `cfg.prior_components`
    components or pseudo-inputs); a hierarchy's prior is on its top layer.

    Args:
      cfg: the model section of a read config (`config.Model`).
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: p(x | z) (`build_likelihood`).
      num_classes: > 0: a VAE conditioned on a class label in `[0, num_classes)`
        (`conditioning.Labels`, `config.data.conditioning = "label"`); 0: none.

    Returns:
      An unbound Flax model: a `networks.VAE`, or a `vaejax.hierarchical` model for the
      presets of several stochastic layers.
    """
    hierarchy = isinstance(cfg.net, config_lib.Layers)
    if hierarchy:
        posterior = hierarchical.GAUSSIAN
    else:
        posterior = posteriors.make(cfg.posterior, **cfg.posterior_kwargs)
    common = dict(data_shape=tuple(data_shape), likelihood=likelihood, input_scale=cfg.input_scale)
    model = cfg.net.make(cfg.preset, posterior=posterior, **common)
    prior = priors.make(
        cfg.prior,
        latent_dim=model.latent_sizes[-1] if hierarchy else cfg.net.latent_dim,
        data_shape=tuple(data_shape),
        posterior=posterior,
        num_components=cfg.prior_components,
    )
    labels = {"conditioning": conditioning.Labels(num_classes)} if num_classes else {}
    if cfg.prior != "standard_normal":
        labels["prior"] = prior
    return model.clone(**labels) if labels else model


def build_likelihood(cfg: config_lib.Model) -> Any:
    """`cfg.likelihood` (a name of `likelihoods.names()`) with `cfg.likelihood_kwargs`.

    Args:
      cfg: the model section of a read config (`config.Model`).

    Returns:
      The likelihood object (`likelihoods.get`).
    """
    return likelihoods.get(cfg.likelihood, **cfg.likelihood_kwargs)


def build_schedule(
    cfg: config_lib.Optim,
    *,
    total_steps: int,
    steps_per_epoch: int,
    learning_rate: Any = None,
) -> optax.Schedule:
    """`cfg`'s learning-rate schedule (`train.learning_rate_schedule`).

    Args:
      cfg: the optimizer section of a read config (`config.Optim`).
      total_steps: the steps the decay spans.
      steps_per_epoch: for "burda"'s stages.
      learning_rate: replaces `cfg.learning_rate` as the peak (e.g. a traced per-member
        rate); None: `cfg`'s.

    Returns:
      An optax schedule: step -> rate.
    """
    return train.learning_rate_schedule(
        cfg.schedule,
        learning_rate=cfg.learning_rate if learning_rate is None else learning_rate,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        end_learning_rate=cfg.end_learning_rate,
    )


def build_optimizer(
    cfg: config_lib.Optim,
    *,
    total_steps: int,
    steps_per_epoch: int,
    rate_from_host: bool = False,
    learning_rate: Any = None,
) -> optax.GradientTransformation:
    """Adam on the configured schedule, optionally after gradient clipping.

    Args:
      cfg: the optimizer section of a read config (`config.Optim`): schedule, Adam's
        `b1`, `b2`, `eps`, and `grad_clip_norm` (0: no clipping).
      total_steps: the steps the schedule's decay spans.
      steps_per_epoch: for "burda"'s stages.
      rate_from_host: the state holds the learning rate, set by the training loop
        (`train.set_learning_rate`), instead of a schedule of the step count.
      learning_rate: replaces `cfg.learning_rate` as the peak; None: `cfg`'s.

    Returns:
      An optax `GradientTransformation`.
    """
    schedule = build_schedule(
        cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch, learning_rate=learning_rate
    )
    if rate_from_host:
        adam = optax.inject_hyperparams(optax.adam)(
            learning_rate=schedule(0), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps
        )
    else:
        adam = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.grad_clip_norm:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adam)
    return adam


def describe(
    config: config_lib.Config,
    train_x: np.ndarray,
    preprocessing: Any,
    *,
    custom_model: Any = None,
    num_classes: int = 0,
) -> dict[str, Any]:
    """What a trained model was built from, as JSON (a checkpoint's metadata, for `vaejax.load`):
    the config, the shape and dtype of its data after `preprocessing`, a custom model's repr,
    and a label-conditioned model's number of classes.

    Args:
      config: the run's read config (its `given` dict is recorded).
      train_x: the preprocessed train split `[N, *data_shape]`; only its shape and dtype matter.
      preprocessing: the `Preprocessing` that made the data (a dataclass).
      custom_model: a model given instead of the config's, or None.
      num_classes: a model conditioned on the label's classes (0: not conditioned).

    Returns:
      A JSON-compatible dict: `"config"`, `"data_shape"`, `"data_dtype"`, `"preprocessing"`,
      `"custom_model"` (a repr, or None) and `"num_classes"`; values JSON cannot hold become
      strings.
    """
    description = {
        "config": config.given,
        "data_shape": list(train_x.shape[1:]),
        "data_dtype": str(train_x.dtype),
        "preprocessing": dataclasses.asdict(preprocessing),
        "custom_model": None if custom_model is None else repr(custom_model),
        "num_classes": num_classes,
    }
    return json.loads(json.dumps(description, default=str))


# What may change when a run resumes: how it is watched, evaluated and stopped, not what it trains.
RESUMABLE = (
    "eval.",
    "train.progress_bar",
    "train.time_budget_s",
    "train.checkpoint_every_steps",
    "train.keep_checkpoint_every_steps",
    "train.eval_every_epochs",
    "data.data_dir",
    "distributed",
)


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: a nested config dict, flattened to dotted names.

    Args:
      tree: a nested dict.
      prefix: put before every name.

    Returns:
      A flat dict of dotted name -> leaf value.
    """
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out
