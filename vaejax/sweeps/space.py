"""The search space: what a sweep varies, as Optuna distributions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import optuna


@dataclasses.dataclass(frozen=True)
class Choice:
    """A categorical field: one of `values` (None, bool, int, float or str)."""

    values: tuple

    def __post_init__(self):
        if not self.values:
            raise ValueError("Choice needs at least one value; got none. Give choice(v1, v2, ...).")
        bad = [
            v for v in self.values if v is not None and not isinstance(v, bool | int | float | str)
        ]
        if bad:
            raise ValueError(
                f"Choice values must be None, bool, int, float or str; got {bad}. For tuples "
                "or several fields at once use Variants({'name': {'field': value, ...}})."
            )


@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer field in [low, high] (inclusive), optionally log-spaced."""

    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclasses.dataclass(frozen=True)
class FloatRange:
    """A float field in [low, high], optionally log-spaced (for learning rates, betas)."""

    low: float
    high: float
    log: bool = False


@dataclasses.dataclass(frozen=True)
class Variants:
    """A categorical choice among named bundles of field values, set together.

    E.g. a likelihood with its matching preprocessing:
    `Variants({"gaussian": {"model.likelihood": "gaussian", "data.preprocessing": "standardize"}})`.
    The swept parameter's value (what Optuna and the report see) is the bundle's name.
    """

    options: Mapping[str, Mapping[str, Any]]

    def __post_init__(self):
        if not self.options:
            raise ValueError(
                "Variants needs at least one option; got none. Give {'name': {'field': value}}."
            )


Param = Choice | IntRange | FloatRange | Variants


def choice(*values: Any) -> Choice:
    """A categorical parameter: one of `values`.

    Args:
      *values: the values it may take: None, bool, int, float or str.

    Returns:
      A `Choice`.
    """
    return Choice(tuple(values))


def uniform(low: float, high: float) -> FloatRange:
    """A float parameter drawn uniformly from [low, high].

    Args:
      low: the lower end.
      high: the upper end.

    Returns:
      A `FloatRange`.
    """
    return FloatRange(low, high)


def log_uniform(low: float, high: float) -> FloatRange:
    """A float parameter drawn log-uniformly from [low, high] (for learning rates, betas).

    Args:
      low: the lower end, > 0.
      high: the upper end.

    Returns:
      A `FloatRange` with `log=True`.
    """
    return FloatRange(low, high, log=True)


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution Optuna's samplers draw `param` from.

    Args:
      param: a `Choice`, `IntRange`, `FloatRange` or `Variants`.

    Returns:
      A categorical distribution over a `Choice`'s values or a `Variants`' option names, else
      an int or float distribution over the range.
    """
    if isinstance(param, Choice):
        return optuna.distributions.CategoricalDistribution(param.values)
    if isinstance(param, Variants):
        return optuna.distributions.CategoricalDistribution(tuple(param.options))
    if isinstance(param, IntRange):
        return optuna.distributions.IntDistribution(
            param.low, param.high, log=param.log, step=param.step
        )
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)


def suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    """The trial's value of `param`: its enqueued or retried value, or the sampler's.

    Args:
      trial: the trial being run.
      name: the parameter's name in the trial.
      param: the parameter.

    Returns:
      The value; for `Variants`, the option's name.
    """
    if isinstance(param, Choice | Variants):
        return trial.suggest_categorical(name, distribution(param).choices)
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log)


def overrides(name: str, param: Param, value: Any) -> dict[str, Any]:
    """The dotted config fields a parameter's value sets: one, or a Variants' bundle.

    Args:
      name: the parameter's name, the dotted field it sets (a `Variants`' name is free).
      param: the parameter.
      value: its value; for `Variants`, an option's name.

    Returns:
      Dotted config field -> value.
    """
    return dict(param.options[value]) if isinstance(param, Variants) else {name: value}


def examples(name: str, param: Param) -> Iterator[dict[str, Any]]:
    """Every field a parameter may set, with each value it may take (ranges: both ends).

    Args:
      name: the parameter's name.
      param: the parameter.

    Yields:
      `overrides(name, param, value)` for each such value.
    """
    values = (param.low, param.high) if isinstance(param, IntRange | FloatRange) else None
    for value in values or distribution(param).choices:
        yield overrides(name, param, value)
