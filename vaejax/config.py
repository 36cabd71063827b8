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


CONDITIONINGS = ("none", "label")


@dataclasses.dataclass(frozen=True)
class Data:
    name: str = one_of((*data_lib.DATASETS, data_lib.SYNTHETIC), default="mnist")
    data_dir: str | None = None  # None: $TFDS_DATA_DIR
    preprocessing: str = one_of(data_lib.PREPROCESSINGS, default="dynamic_binarize")
    num_valid: int = at_least(0, default=10_000)
    num_train: int = at_least(0, default=0, note=" (0: every train example)")
    # "label": a conditional VAE, q(z | x, y), p(x | z, y), on each example's class label y.
    conditioning: str = one_of(CONDITIONINGS, default="none")

    def __post_init__(self):
        fields.check(self, "config.data")


# ---- the model: the preset's own fields, then what every preset shares


@dataclasses.dataclass(frozen=True)
class OneLayer:
    """Presets "kingma2013", "burda2015", "conv": one stochastic layer of `latent_dim` units."""

    latent_dim: int = at_least(1, default=50)

    def __post_init__(self):
        fields.check(self, "config.model")

    def make(self, preset: str, **common) -> Any:
        """The preset's network, with this section's fields.

        Args:
          preset: a one-layer preset name of `networks.PRESETS`.
          **common: `data_shape`, `likelihood`, `input_scale` and `posterior`.

        Returns:
          The unbound `networks.VAE`.
        """
        return networks.PRESETS[preset](**common, **dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class MLP(OneLayer):
    """Preset "mlp": an MLP encoder and decoder of `hidden_sizes`."""

    hidden_sizes: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    pixel_features: int = at_least(0, default=0, note=" (0: one plain head per param)")

    def __post_init__(self):
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        super().__post_init__()
        for size in self.hidden_sizes:
            if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
                raise ConfigError(
                    f"config.model.hidden_sizes = {self.hidden_sizes} has a width of {size!r}; "
                    "every width must be an integer >= 1."
                )
        _wrapped(lambda: networks.activation(self.activation), "config.model.activation")


@dataclasses.dataclass(frozen=True)
class Layers:
    """Presets "stacked", "ladder": stochastic layers of `latent_sizes` (z_1 first), each over
    deterministic layers of `layer_hidden_sizes` (a tuple of widths per layer); empty: the
    preset's own."""

    latent_sizes: tuple[int, ...] = ()
    layer_hidden_sizes: tuple = ()
    activation: str = "tanh"

    def __post_init__(self):
        object.__setattr__(self, "latent_sizes", tuple(self.latent_sizes))
        hidden = tuple(tuple(h) for h in self.layer_hidden_sizes)
        object.__setattr__(self, "layer_hidden_sizes", hidden)
        fields.check(self, "config.model")

    def make(self, preset: str, *, posterior: Any = None, **common) -> Any:
        """The hierarchy (`hierarchical.build`), with this section's fields.

        Args:
          preset: "stacked", "ladder" or "burda2015_2layer".
          posterior: not used: each layer is a diagonal Gaussian.
          **common: `data_shape`, `likelihood` and `input_scale`.

        Returns:
          The unbound `vaejax.hierarchical` model.
        """
        return hierarchical.build(
            preset,
            activation=self.activation,
            latent_sizes=self.latent_sizes,
            hidden_sizes=self.layer_hidden_sizes,
            **common,
        )


@dataclasses.dataclass(frozen=True)
class Fixed(Layers):
    """Preset "burda2015_2layer": Burda et al.'s two stochastic layers, as published."""

    latent_sizes: tuple[int, ...] = dataclasses.field(default=(), init=False, repr=False)
    layer_hidden_sizes: tuple = dataclasses.field(default=(), init=False, repr=False)
    activation: str = dataclasses.field(default="tanh", init=False, repr=False)


PRESETS: dict[str, type] = {
    "kingma2013": OneLayer,
    "burda2015": OneLayer,
    "conv": OneLayer,
    "mlp": MLP,
    "burda2015_2layer": Fixed,
    "stacked": Layers,
    "ladder": Layers,
}


@dataclasses.dataclass(frozen=True)
class Model:
    """The model: `preset` and its own fields (`net`, one of `PRESETS`' classes), then the
    likelihood, posterior and prior that every preset takes (`build.build_model`)."""

    preset: str = one_of(tuple(PRESETS), default="burda2015")
    net: Any = None  # None: the preset's defaults
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
        set_("likelihood_kwargs", dict(self.likelihood_kwargs))
        set_("posterior_kwargs", dict(self.posterior_kwargs))
        fields.check(self, "config.model")
        kind = PRESETS[self.preset]
        set_("net", kind() if self.net is None else self.net)
        if type(self.net) is not kind:
            raise ConfigError(
                f"config.model: preset {self.preset!r} takes a {kind.__name__}; got {self.net!r}."
            )
        _wrapped(
            lambda: likelihoods.get(self.likelihood, **self.likelihood_kwargs),
            "config.model.likelihood",
        )
        _wrapped(
            lambda: posteriors.make(self.posterior, **self.posterior_kwargs),
            "config.model.posterior",
        )
        if isinstance(self.net, Layers):
            if self.posterior != "log_var" or self.posterior_kwargs:
                raise ConfigError(
                    f"config.model.posterior: the hierarchical preset {self.preset!r} has "
                    f"diagonal Gaussian layers (log_var); got posterior={self.posterior!r} with "
                    f"{self.posterior_kwargs}. Use posterior 'log_var' and no posterior_kwargs."
                )
            # built, not initialized: checks the layers against the preset's own
            _wrapped(
                lambda: self.net.make(self.preset, data_shape=(1,), likelihood=None),
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
    _refuse_unknown(values, _own_fields(cls), f"{name}.")
    return _wrapped(lambda: cls(**values), f"config.{name}")


def _own_fields(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind) if f.init]


SHARED = [f.name for f in dataclasses.fields(Model) if f.name != "net"]


def _model(values: Mapping[str, Any]) -> Model:
    """The model section: `preset`, its own fields (into `net`) and the shared ones."""
    preset = values.get("preset", "burda2015")
    if preset not in PRESETS:
        _section(Model, {"preset": preset}, "model")  # names what is valid
    own = _own_fields(PRESETS[preset])
    foreign = {
        name: [p for p, kind in PRESETS.items() if name in _own_fields(kind)]
        for name in values
        if name not in own and name not in SHARED
    }
    if foreign := {name: owners for name, owners in foreign.items() if owners}:
        named = ", ".join(f"{n} ({' / '.join(o)})" for n, o in foreign.items())
        raise ConfigError(
            f"config.model: preset {preset!r} takes {own} of its own, not {named}: fields of "
            f"other presets. Remove them, or make the section with "
            f"vaejax.config.set_preset(config.model, {preset!r}, ...)."
        )
    _refuse_unknown(values, own + SHARED, "model.")
    net = _section(PRESETS[preset], {k: v for k, v in values.items() if k in own}, "model")
    shared = {k: v for k, v in values.items() if k in SHARED}
    return _section(Model, {"net": net, **shared}, "model")


def set_preset(
    model: ml_collections.ConfigDict, preset: str, **values: Any
) -> ml_collections.ConfigDict:
    """Makes `model` (a config's model section) describe `preset`, in place: the fields of its
    former preset go, this one's come at their defaults, then `values`.

    Args:
      model: a config's model section (`config.model`), changed in place.
      preset: a name of `PRESETS`.
      **values: fields of `preset` to set, overriding their defaults.

    Returns:
      `model` itself.

    Raises:
      ConfigError: an unknown `preset`, or a name in `values` that is not one of its fields.
    """
    if preset not in PRESETS:
        _section(Model, {"preset": preset}, "model")
    for kind in set(PRESETS.values()):
        for name in _own_fields(kind):
            if name in model:
                del model[name]
    model.preset = preset
    defaults = {f.name: f.default for f in dataclasses.fields(PRESETS[preset]) if f.init}
    _refuse_unknown(values, list(defaults), "model.")
    for name, default in defaults.items():
        setattr(model, name, values.get(name, default))
    return model


def unused_fields(preset: str) -> set[str]:
    """The model fields of other presets than `preset`, not of its own.

    Args:
      preset: a preset name.

    Returns:
      The set of field names; empty for an unknown `preset`.
    """
    others = {n for kind in PRESETS.values() for n in _own_fields(kind)}
    return others - set(_own_fields(PRESETS[preset])) if preset in PRESETS else set()


def own_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` (a config as a dict) without the model fields of other presets: records written
    before each preset had its own fields held every preset's, unused.

    Args:
      given: a config as a nested dict (its `"model"` section's `"preset"` defaults to
        "burda2015").

    Returns:
      A new dict, `given` with its `"model"` section filtered (`given` is not changed).
    """
    model = dict(given.get("model") or {})
    unused = unused_fields(model.get("preset", "burda2015"))
    return {**given, "model": {k: v for k, v in model.items() if k not in unused}}


def read(
    config: ml_collections.ConfigDict | Mapping[str, Any],
    *,
    custom_model: bool = False,
    custom_data: bool = False,
) -> Config:
    """`config` as a checked `Config`.

    Args:
      config: an experiment's ConfigDict (`get_config()`), or the same as a dict.
      custom_model: the run trains a given model, so `config.model` (but its `output_bias`)
        does not describe what trains: not read.
      custom_data: the run trains given data, so `config.data.name` is not read.

    Returns:
      The `Config`, each section a frozen dataclass, checked.

    Raises:
      ConfigError: an unknown field (naming the nearest), a value out of range or a name that
        is not valid (naming what is).
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
        sections[name] = _model(values) if name == "model" else _section(cls, values, name)
    top = {k: given[k] for k in ("seed", "distributed") if k in given}
    return Config(**top, **sections, given=given)
