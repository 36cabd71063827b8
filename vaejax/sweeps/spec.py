"""The sweep spec: what a sweep file's `get_sweep()` returns, and loading one."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import os
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from vaejax.population import POPULATION_FIELDS
from vaejax.sweeps import space as space_lib
from vaejax.sweeps.space import Choice, Param, Variants

SAMPLERS = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
REDUCTIONS = ("mean", "best")


@dataclasses.dataclass
class Sweep:
    """What a sweep file's `get_sweep()` returns.

    Attributes:
      config: the base config; each trial overrides the swept fields.
      space: swept parameter -> Choice | IntRange | FloatRange | Variants. A parameter's name is
        the dotted config field it sets (e.g. "optim.learning_rate"); a Variants' name is free.
      metric: dotted key into a trial's results.json, e.g. "test.nll_5000" or "valid.elbo".
      direction: "minimize" or "maximize" the metric.
      sampler: "grid" (every combination of Choice/Variants values, once each), "random" or
        "tpe" (Optuna's Bayesian TPE sampler).
      num_trials: trials to finish; a grid's defaults to (and may not exceed) its size.
      seed: the sampler's seed.
      population: a grid over `population.POPULATION_FIELDS` ("seed", "optim.learning_rate",
        "objective.beta") trained as one population in one compiled program per trial, e.g.
        {"seed": [0, 1, 2, 3]}.
      population_size: with `population` empty, > 1 trains that many seeds (config.seed + i).
      population_reduce: how a population trial's metric combines its members': "mean" (over
        seeds) or "best".
      name: the Optuna study name; defaults to the sweep file's name.
      train_fn: `(config, workdir) -> results dict`; defaults to
        `vaejax.experiment.train_and_evaluate`. Tests inject cheap ones.
    """

    config: ml_collections.ConfigDict
    space: Mapping[str, Param]
    metric: str
    direction: str = "minimize"
    sampler: str = "grid"
    num_trials: int | None = None
    seed: int = 0
    population: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    population_size: int = 1
    population_reduce: str = "mean"
    name: str | None = None
    train_fn: Callable[[ml_collections.ConfigDict, str], Any] | None = None
    source: str | None = None  # the file it was loaded from (set by `load_sweep`)

    def __post_init__(self):
        _check_choices(self)
        for name, param in self.space.items():
            for fields in space_lib.examples(name, param):
                _check_fields(self.config, fields)
        _check_trials(self)
        _check_population(self)

    @property
    def grid_size(self) -> int:
        return math.prod(len(space_lib.distribution(p).choices) for p in self.space.values())

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep, in order.

        Returns:
          Parameter name -> value, one dict per point, in `itertools.product` order of the space's
          values (an empty space: one empty point).
        """
        names = list(self.space)
        choices = [space_lib.distribution(self.space[n]).choices for n in names]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]

    def members(self) -> list[dict[str, Any]]:
        """A population trial's members: population field -> value, one dict per member.

        Returns:
          The `population` grid's points in `itertools.product` order, or, without one,
          `{"seed": config.seed + i}` for each of the `population_size` members.
        """
        if self.population:
            names = list(self.population)
            return [
                dict(zip(names, values, strict=True))
                for values in itertools.product(*self.population.values())
            ]
        return [{"seed": self.config.seed + i} for i in range(self.population_size)]

    def trial_config(self, params: Mapping[str, Any]) -> ml_collections.ConfigDict:
        """The base config with a trial's swept values.

        Args:
          params: swept parameter -> the trial's value.

        Returns:
          A resolved copy of `config` with each value's fields set (`space.overrides`).
        """
        config = self.config.copy_and_resolve_references()
        for name, value in params.items():
            config.update_from_flattened_dict(space_lib.overrides(name, self.space[name], value))
        return config

    def fingerprint(self) -> str:
        """What must not change while a study runs (num_trials may grow).

        Returns:
          A SHA-1 hex digest of the base config, space, metric, direction, sampler and population.
        """
        spec = {
            "config": json.loads(self.config.to_json_best_effort()),
            "space": {k: repr(v) for k, v in self.space.items()},
            "metric": self.metric,
            "direction": self.direction,
            "sampler": self.sampler,
            "population": {k: list(v) for k, v in self.population.items()},
            "population_size": self.population_size,
        }
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _check_choices(sweep: Sweep) -> None:
    for field, allowed in (
        ("direction", DIRECTIONS),
        ("sampler", SAMPLERS),
        ("population_reduce", REDUCTIONS),
    ):
        if getattr(sweep, field) not in allowed:
            raise ValueError(f"{field} must be one of {allowed}; got {getattr(sweep, field)!r}.")
    if not sweep.space and sweep.sampler != "grid":
        raise ValueError(
            f"A {sweep.sampler} sweep needs a non-empty space; got space={{}}. Add a field to "
            "space, or use sampler='grid' for a single trial."
        )


def _check_fields(config: ml_collections.ConfigDict, fields: Mapping[str, Any]) -> None:
    """Sets `fields` on a locked copy of `config`: a misspelled field or a value of the wrong
    type fails here, before any trial trains."""
    probe = config.copy_and_resolve_references()
    probe.lock()
    for field, value in fields.items():
        try:
            probe.update_from_flattened_dict({field: value})
        except (KeyError, AttributeError) as e:
            raise ValueError(
                f"Swept field {field!r} is not in the base config ({e}). Fix its name in the "
                "sweep's space, or add the field to the base config."
            ) from None
        except TypeError as e:
            raise ValueError(f"Swept field {field!r} cannot take {value!r}: {e}.") from None


def _check_trials(sweep: Sweep) -> None:
    if sweep.sampler != "grid":
        if sweep.num_trials is None or sweep.num_trials < 1:
            raise ValueError(
                f"A {sweep.sampler} sweep needs num_trials >= 1; got {sweep.num_trials}."
            )
        return
    ranges = [n for n, p in sweep.space.items() if not isinstance(p, Choice | Variants)]
    if ranges:
        raise ValueError(
            f"A grid sweep takes Choice or Variants only; {ranges} are ranges. Give "
            "their values with choice(...), or use sampler='random' or 'tpe'."
        )
    if sweep.num_trials is None:
        sweep.num_trials = sweep.grid_size
    elif sweep.num_trials != sweep.grid_size:
        raise ValueError(
            f"A grid sweep runs each of its {sweep.grid_size} points once; got "
            f"num_trials={sweep.num_trials}. Leave num_trials unset."
        )


def _check_population(sweep: Sweep) -> None:
    if sweep.population:
        unknown = sorted(set(sweep.population) - set(POPULATION_FIELDS))
        if unknown:
            raise ValueError(
                f"population fields must be among {list(POPULATION_FIELDS)}; got {unknown}."
            )
    both = sorted(set(sweep.population) & set(sweep.space))
    if both:
        raise ValueError(f"{both} are in both space and population; keep each in one.")
    if sweep.population:
        size = math.prod(len(v) for v in sweep.population.values())
        if sweep.population_size not in (1, size):
            raise ValueError(
                f"population_size={sweep.population_size} but the population grid has "
                f"{size} members; leave population_size unset."
            )
        sweep.population_size = size
    if sweep.population_size < 1:
        raise ValueError(f"population_size must be >= 1; got {sweep.population_size}.")


class SweepFileError(ValueError):
    """A sweep file that is missing, does not run (a syntax error, an exception) or does not
    define `get_sweep()` returning a `Sweep`."""


class MissingSweepFileError(SweepFileError, FileNotFoundError):
    """No file at the sweep file's path."""


def _where_in(path: str, e: BaseException) -> str:
    """`path, line N` of the innermost frame of `e`'s traceback in the file at `path`."""
    if isinstance(e, SyntaxError) and e.lineno is not None:
        return f"{path}, line {e.lineno}"
    line = None
    tb = e.__traceback__
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return path if line is None else f"{path}, line {line}"


def _problem(e: BaseException) -> str:
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__}: {e.msg}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Calls `get_sweep()` of the sweep file at `path`.

    Args:
      path: the sweep file, a Python file defining `get_sweep()`.

    Returns:
      The `Sweep`, its `source` the file's absolute path and its `name`, if unset, the file's
      name without `.py`.

    Raises:
      SweepFileError: (a ValueError) naming the file and its problem, when the file is missing
        (then also a FileNotFoundError), does not run, or its `get_sweep()` fails or returns
        no `Sweep`.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise MissingSweepFileError(
            f"No sweep file at {path}; pass the path of a Python file defining get_sweep() "
            "(see experiments/sweeps/ for examples)."
        )
    module_name = f"_vaejax_sweep_{pathlib.Path(path).stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # lets functions defined in the file be pickled by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise SweepFileError(
            f"The sweep file {_where_in(path, e)} does not run: {_problem(e)}. Fix the file "
            f"(python {path} shows the full traceback)."
        ) from e
    if not hasattr(module, "get_sweep"):
        raise SweepFileError(
            f"{path} defines no get_sweep(); it must return a vaejax.sweeps.Sweep."
        )
    try:
        sweep = module.get_sweep()
    except Exception as e:
        raise SweepFileError(
            f"get_sweep() of the sweep file {_where_in(path, e)} failed: {_problem(e)}"
        ) from e
    if not isinstance(sweep, Sweep):
        raise SweepFileError(f"{path}: get_sweep() returned {type(sweep).__name__}, not a Sweep.")
    sweep.source = path
    sweep.name = sweep.name or pathlib.Path(path).stem
    return sweep
