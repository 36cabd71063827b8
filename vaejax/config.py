"""The experiment config, read once: a frozen dataclass per section, each checked where defined.

`read(config)` turns an experiment file's ConfigDict (`get_config()`) into a `Config` whose
sections (`Data`, `Model`, `train.Objective`, `Optim`, `Train`, `Eval`) are built 1:1 from its
sections. An unknown field is refused with the nearest known one; a value out of range, or an
unknown name, with what is valid. A field the ConfigDict lacks takes the default below.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

import ml_collections

from vaejax import data as data_lib
from vaejax import fields, hierarchical, likelihoods, networks, posteriors, priors, train
from vaejax.fields import ConfigError, at_least, one_of, real

POSITIVE, NON_NEGATIVE = "a finite number > 0", "a finite number >= 0"
UNIT = "a number in [0, 1)"


def _wrapped(make, where: str) -> Any:
    """Runs a constructor that validates `where`, naming it in its error."""
    try:
        return make()
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Data:
    name: str = one_of((*data_lib.DATASETS, data_lib.SYNTHETIC), default="mnist")
    data_dir: str | None = None  # None: $TFDS_DATA_DIR
    preprocessing: str = one_of(data_lib.PREPROCESSINGS, default="dynamic_binarize")
    num_valid: int = at_least(0, default=10_000)
    num_train: int = at_least(0, default=0, note=" (0: every train example)")

    def __post_init__(self):
        fields.check(self, "config.data")


@dataclasses.dataclass(frozen=True)
class Model:
    """The model a preset builds (`build.build_model`); fields a preset does not use are ignored."""

    preset: str = one_of((*networks.PRESETS, *hierarchical.PRESETS), default="burda2015")
    latent_dim: int = at_least(1, default=50)
    latent_sizes: tuple[int, ...] = ()  # stacked / ladder: z_1 first; () the preset's own
    layer_hidden_sizes: tuple = ()  # stacked / ladder: a tuple of widths per layer
    hidden_sizes: tuple[int, ...] = (200, 200)  # "mlp"
    pixel_features: int = at_least(0, default=0, note=" (0: one plain head per param)")
    activation: str = "tanh"
    likelihood: str = one_of(likelihoods.names(), default="bernoulli")
    likelihood_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    posterior: str = one_of(posteriors.POSTERIORS, default="log_var")
    posterior_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    prior: str = one_of(priors.PRIORS, default="standard_normal")
    prior_components: int = at_least(1, default=1, note=" (mixture components, pseudo-inputs)")
    output_bias: bool = True  # start the decoder's output at the data mean
    input_scale: float = real(lambda v: v > 0, POSITIVE, default=1.0)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("latent_sizes", tuple(self.latent_sizes))
        set_("layer_hidden_sizes", tuple(tuple(h) for h in self.layer_hidden_sizes))
        set_("hidden_sizes", tuple(self.hidden_sizes))
        set_("likelihood_kwargs", dict(self.likelihood_kwargs))
        set_("posterior_kwargs", dict(self.posterior_kwargs))
        fields.check(self, "config.model")
        for size in self.hidden_sizes:
            if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
                raise ConfigError(
                    f"config.model.hidden_sizes = {self.hidden_sizes} has a width of {size!r}; "
                    "every width must be an integer >= 1."
                )
        _wrapped(lambda: networks.activation(self.activation), "config.model.activation")
        _wrapped(
            lambda: likelihoods.get(self.likelihood, **self.likelihood_kwargs),
            "config.model.likelihood",
        )
        _wrapped(
            lambda: posteriors.make(self.posterior, **self.posterior_kwargs),
            "config.model.posterior",
        )
        if self.preset in hierarchical.PRESETS:  # built, not initialized: checks its layers
            _wrapped(
                lambda: hierarchical.build(
                    self.preset,
                    data_shape=(1,),
                    likelihood=None,
                    activation=self.activation,
                    latent_sizes=self.latent_sizes,
                    hidden_sizes=self.layer_hidden_sizes,
                    posterior=self.posterior,
                    posterior_kwargs=self.posterior_kwargs,
                ),
                "config.model.latent_sizes",
            )


@dataclasses.dataclass(frozen=True)
class Optim:
    """Adam on a schedule (`build.build_optimizer`)."""

    learning_rate: float = real(lambda v: v > 0, POSITIVE, default=3e-3)  # the peak
    schedule: str = one_of(train.SCHEDULES, default="cosine")
    end_learning_rate: float | None = real(lambda v: v >= 0, NON_NEGATIVE, default=None)
    b1: float = real(lambda v: 0 <= v < 1, UNIT, default=0.9)
    b2: float = real(lambda v: 0 <= v < 1, UNIT, default=0.999)
    eps: float = real(lambda v: v > 0, POSITIVE, default=1e-4)
    grad_clip_norm: float = real(lambda v: v >= 0, NON_NEGATIVE + " (0: off)", default=0.0)
    ema_decay: float = real(lambda v: 0 <= v < 1, UNIT + " (0: off)", default=0.0)

    def __post_init__(self):
        fields.check(self, "config.optim")


@dataclasses.dataclass(frozen=True)
class Train:
    batch_size: int = at_least(1, default=200)
    num_epochs: int = at_least(1, default=200)
    steps_per_dispatch: int = at_least(1, default=100)  # steps fused in one compiled call
    eval_every_epochs: int = at_least(1, default=1)
    checkpoint_every_steps: int = at_least(1, default=10_000)
    keep_checkpoint_every_steps: int = at_least(0, default=0, note=" (0: only the latest two)")
    time_budget_s: float = real(lambda v: v >= 0, NON_NEGATIVE + " (0: no budget)", default=0.0)
    fit_schedule_to_budget: bool = False  # the schedule runs on training time (`vaejax.budget`)
    progress_bar: bool = True

    def __post_init__(self):
        fields.check(self, "config.train")


@dataclasses.dataclass(frozen=True)
class Eval:
    batch_size: int = at_least(1, default=100)
    iwae_samples: int = at_least(0, default=50, note=" (0: skip the IWAE bound)")
    nll_samples: int = at_least(0, default=5000, note=" (0: skip the log-likelihood estimate)")
    nll_chunk_size: int = at_least(1, default=500)
    num_test: int = at_least(0, default=0, note=" (0: the whole test split)")

    def __post_init__(self):
        fields.check(self, "config.eval")


SECTIONS = {
    "data": Data,
    "model": Model,
    "objective": train.Objective,
    "optim": Optim,
    "train": Train,
    "eval": Eval,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """An experiment: its sections, and `given`, the config as given (for the run's records)."""

    seed: int = at_least(0, default=0)
    distributed: bool = False  # jax.distributed.initialize() for a multi-process run
    data: Data = dataclasses.field(default_factory=Data)
    model: Model = dataclasses.field(default_factory=Model)
    objective: train.Objective = dataclasses.field(default_factory=train.Objective)
    optim: Optim = dataclasses.field(default_factory=Optim)
    train: Train = dataclasses.field(default_factory=Train)
    eval: Eval = dataclasses.field(default_factory=Eval)
    given: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        fields.check(self, "config")


def _refuse_unknown(values: Mapping[str, Any], known: list[str], where: str) -> None:
    for name in values:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {where}{near[0]}?" if near else f"; known: {sorted(known)}."
            raise ConfigError(f"unknown config field {where}{name}{hint}")


def _section(cls: type, values: Mapping[str, Any], name: str) -> Any:
    _refuse_unknown(values, [f.name for f in dataclasses.fields(cls)], f"{name}.")
    return _wrapped(lambda: cls(**values), f"config.{name}")


def read(
    config: ml_collections.ConfigDict | Mapping[str, Any],
    *,
    custom_model: bool = False,
    custom_data: bool = False,
) -> Config:
    """`config` as a checked `Config`.

    `custom_model` / `custom_data`: the run trains a given model / data, so `config.model`
    (but its `output_bias`) and `config.data.name` do not describe what trains: not read.
    """
    given = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    _refuse_unknown(given, ["seed", "distributed", *SECTIONS], "")
    sections = {}
    for name, cls in SECTIONS.items():
        values = dict(given.get(name) or {})
        if custom_model and name == "model":
            values = {k: v for k, v in values.items() if k == "output_bias"}
        if custom_data and name == "data":
            values.pop("name", None)
        sections[name] = _section(cls, values, name)
    top = {k: given[k] for k in ("seed", "distributed") if k in given}
    return Config(**top, **sections, given=given)
