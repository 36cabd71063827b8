"""Hyperparameter sweeps on Optuna: a sweep spec, one sub-directory per trial, a report.

A sweep file defines `get_sweep() -> Sweep`: a base config, a search space over dotted config
fields, a metric (a dotted key into `results.json`, e.g. "test.nll_5000") and its direction, a
sampler ("grid", "random" or "tpe") and a number of trials. `run(sweep, workdir)` keeps the study
in Optuna storage (by default a journal file in `workdir`; any Optuna RDB or journal URL lets
workers on many machines share it) and trains trial k in `workdir/trials/<k>/`.

Optuna schedules; this module adds what a training sweep needs on top:

- Exactly once. Each trial has a key (its number; a retry keeps the key of the attempt it
  continues) and trains in `trials/<key>/`. A trial is dropped as *surplus* before it trains
  when an earlier live trial holds its key, when (grid) an earlier live trial holds its grid
  point, or (random/TPE) when `num_trials` keys are already taken; surplus trials are marked,
  excluded from the report and left PRUNED.
- Failures. A trial that raises is recorded FAIL with its error; the others go on.
- Kills. While it runs, a trial holds an advisory lock (`fcntl.flock`) on `trials/<key>/.lock`.
  The next run on the same machine finds RUNNING trials whose lock is free (their process died)
  and trials interrupted by Ctrl-C, and enqueues a retry with the same parameters and key, which
  resumes from the trial's checkpoints. With an RDB storage, Optuna's heartbeat also fails
  trials whose worker went silent on any machine, and the same retry is enqueued.
- Rerunning the same command continues the study and runs nothing once every trial is done.
- `write_report` writes `trials.md`, `trials.csv` and `trials.png` (the metric against each
  swept field) into the sweep's workdir, from the storage alone.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import importlib.util
import io
import itertools
import json
import logging
import math
import os
import pathlib
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

SAMPLERS = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
REDUCTIONS = ("mean", "best")
JOURNAL_FILE = "study.journal"
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 600  # longer than any single blocking step (compiles, a long evaluation)

# Trial user attributes written by this module.
_KEY = "key"  # the trial's directory name; a retry keeps it
_RETRY_OF = "retry_of"  # the number of the attempt a retry continues (which it supersedes)
_SURPLUS = "surplus"  # pruned before training: another trial holds its key or grid point
_INTERRUPTED = "interrupted"  # stopped by KeyboardInterrupt: to be retried
_HOST, _PID, _LOCK = "host", "pid", "lock"
_SUMMARY, _MEMBERS, _ERROR = "summary", "members", "error"
_FINGERPRINT = "sweep_fingerprint"

_WORKER_ENV = "VAEJAX_SWEEP_WORKER"


# ---- the search space


@dataclasses.dataclass(frozen=True)
class Choice:
    """A categorical field: one of `values` (None, bool, int, float or str)."""

    values: tuple

    def __post_init__(self):
        if not self.values:
            raise ValueError("Choice needs at least one value.")
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
            raise ValueError("Variants needs at least one option.")


Param = Choice | IntRange | FloatRange | Variants


def choice(*values: Any) -> Choice:
    return Choice(tuple(values))


def uniform(low: float, high: float) -> FloatRange:
    return FloatRange(low, high)


def log_uniform(low: float, high: float) -> FloatRange:
    return FloatRange(low, high, log=True)


def _distribution(param: Param) -> optuna.distributions.BaseDistribution:
    if isinstance(param, Choice):
        return optuna.distributions.CategoricalDistribution(param.values)
    if isinstance(param, Variants):
        return optuna.distributions.CategoricalDistribution(tuple(param.options))
    if isinstance(param, IntRange):
        return optuna.distributions.IntDistribution(
            param.low, param.high, log=param.log, step=param.step
        )
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)


# ---- the sweep


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
    train_fn: Callable[[ml_collections.ConfigDict, str], dict[str, Any]] | None = None
    source: str | None = None  # the file it was loaded from (set by `load_sweep`)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}; got {self.direction!r}.")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}.")
        if self.population_reduce not in REDUCTIONS:
            raise ValueError(
                f"population_reduce must be one of {REDUCTIONS}; got {self.population_reduce!r}."
            )
        if not self.space and self.sampler != "grid":
            raise ValueError("A random or TPE sweep needs a non-empty space.")
        for name, param in self.space.items():
            fields = param.options.values() if isinstance(param, Variants) else [{name: None}]
            for field in itertools.chain.from_iterable(fields):
                _check_field(self.config, field)
        if self.sampler == "grid":
            ranges = [n for n, p in self.space.items() if not isinstance(p, Choice | Variants)]
            if ranges:
                raise ValueError(
                    f"A grid sweep takes Choice or Variants only; {ranges} are ranges. Give "
                    "their values with choice(...), or use sampler='random' or 'tpe'."
                )
            if self.num_trials is None:
                self.num_trials = self.grid_size
            elif self.num_trials != self.grid_size:
                raise ValueError(
                    f"A grid sweep runs each of its {self.grid_size} points once; got "
                    f"num_trials={self.num_trials}. Leave num_trials unset."
                )
        elif self.num_trials is None or self.num_trials < 1:
            raise ValueError(
                f"A {self.sampler} sweep needs num_trials >= 1; got {self.num_trials}."
            )
        if self.population:  # imported only then: it brings in the trainer and its data stack
            from vaejax.population import POPULATION_FIELDS

            unknown = sorted(set(self.population) - set(POPULATION_FIELDS))
        if self.population and unknown:
            raise ValueError(
                f"population fields must be among {list(POPULATION_FIELDS)}; got {unknown}."
            )
        both = sorted(set(self.population) & set(self.space))
        if both:
            raise ValueError(f"{both} are in both space and population; keep each in one.")
        if self.population:
            size = math.prod(len(v) for v in self.population.values())
            if self.population_size not in (1, size):
                raise ValueError(
                    f"population_size={self.population_size} but the population grid has "
                    f"{size} members; leave population_size unset."
                )
            self.population_size = size
        if self.population_size < 1:
            raise ValueError(f"population_size must be >= 1; got {self.population_size}.")

    @property
    def grid_size(self) -> int:
        return math.prod(len(_distribution(p).choices) for p in self.space.values())

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep, in order."""
        names = list(self.space)
        choices = [_distribution(self.space[n]).choices for n in names]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]

    def members(self) -> list[dict[str, Any]]:
        """A population trial's members: population field -> value, one dict per member."""
        if self.population:
            names = list(self.population)
            return [
                dict(zip(names, values, strict=True))
                for values in itertools.product(*self.population.values())
            ]
        return [{"seed": self.config.seed + i} for i in range(self.population_size)]

    def trial_config(self, params: Mapping[str, Any]) -> ml_collections.ConfigDict:
        """The base config with a trial's swept values."""
        config = self.config.copy_and_resolve_references()
        for name, value in params.items():
            param = self.space[name]
            overrides = param.options[value] if isinstance(param, Variants) else {name: value}
            for field, v in overrides.items():
                _set_field(config, field, v)
        return config

    def fingerprint(self) -> str:
        """What must not change while a study runs (num_trials may grow)."""
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


def _check_field(config: ml_collections.ConfigDict, dotted: str) -> None:
    node = config
    *path, leaf = dotted.split(".")
    for p in path:
        if not isinstance(node, ml_collections.ConfigDict) or p not in node:
            raise ValueError(f"Swept field {dotted!r} is not in the base config (no {p!r}).")
        node = node[p]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise ValueError(f"Swept field {dotted!r} is not in the base config (no {leaf!r}).")


def _set_field(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    node = config
    *path, leaf = dotted.split(".")
    for p in path:
        node = node[p]
    if isinstance(value, Mapping):
        value = ml_collections.ConfigDict(dict(value))
    node[leaf] = value


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Calls `get_sweep()` of the sweep file at `path`."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"No sweep file at {path}; see experiments/sweeps/ for examples.")
    module_name = f"_vaejax_sweep_{pathlib.Path(path).stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # lets functions defined in the file be pickled by name
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{path} defines no get_sweep(); it must return a vaejax.sweeps.Sweep.")
    sweep = module.get_sweep()
    if not isinstance(sweep, Sweep):
        raise ValueError(f"{path}: get_sweep() returned {type(sweep).__name__}, not a Sweep.")
    sweep.source = path
    sweep.name = sweep.name or pathlib.Path(path).stem
    return sweep


# ---- storage and study


def make_storage(url: str | None, workdir: str | os.PathLike) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL.

    None: a journal file `<workdir>/study.journal` (many processes on this machine).
    "*.journal" or "journal:PATH": that journal file (on a shared filesystem: many machines).
    "redis://...": a journal on Redis. Anything else is an SQLAlchemy URL (sqlite:///f.db,
    postgresql://user:pw@host/db, mysql://...), stored with Optuna's RDBStorage and its
    heartbeat, so a worker that dies on any machine has its trial failed and retried.
    """
    from optuna.storages import journal

    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = os.path.join(os.fspath(workdir), JOURNAL_FILE) if url is None else url
        path = path.removeprefix("journal:")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(journal.JournalFileBackend(path))
    if url.startswith("redis://") or url.startswith("rediss://"):
        return optuna.storages.JournalStorage(journal.JournalRedisBackend(url))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_S,
            heartbeat_stale_trial_callback=_retry_after_heartbeat,
        )


def open_study(
    sweep: Sweep, storage: optuna.storages.BaseStorage, *, worker_index: int = 0
) -> optuna.Study:
    """Creates the sweep's study, or loads it after checking that the sweep is unchanged."""
    name = sweep.name or "sweep"
    if sweep.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=sweep.seed + worker_index)
    else:  # a grid is enqueued point by point; its sampler never picks a value
        sampler = optuna.samplers.RandomSampler(seed=sweep.seed + worker_index)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=sweep.direction, sampler=sampler
        )
        study.set_user_attr(_FINGERPRINT, sweep.fingerprint())
        study.set_user_attr("metric", sweep.metric)
        return study
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler)
    stored = study.user_attrs.get(_FINGERPRINT)
    if stored is not None and stored != sweep.fingerprint():
        raise ValueError(
            f"The study {name!r} in this storage was made by a different sweep (its base config, "
            "space, metric, sampler or population changed). Continue it with the sweep file as "
            "it was, or start a new study: a new --workdir, or another name in the sweep."
        )
    return study


# ---- bookkeeping over the study's trials


def _key(t: FrozenTrial) -> int:
    return int(t.user_attrs.get(_KEY, t.number))


def _superseded(trials: Sequence[FrozenTrial]) -> set[int]:
    return {int(t.user_attrs[_RETRY_OF]) for t in trials if _RETRY_OF in t.user_attrs}


def live_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that count: not surplus, not continued by a retry, not pruned."""
    gone = _superseded(trials)
    return [
        t
        for t in trials
        if t.number not in gone and not t.user_attrs.get(_SURPLUS) and t.state != TrialState.PRUNED
    ]


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _params(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, including those it was enqueued with but has not suggested yet."""
    return {**t.system_attrs.get("fixed_params", {}), **t.params}


def _is_done(study: optuna.Study, sweep: Sweep) -> bool:
    """Nothing left for a new worker: every trial is claimed and none waits."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    if sweep.sampler == "grid":
        return True  # the grid is enqueued; nothing waits
    return len({_key(t) for t in live_trials(trials)}) >= sweep.num_trials


def _surplus_reason(trial: optuna.Trial, sweep: Sweep, params: Mapping[str, Any]) -> str | None:
    """Why this trial must not train, or None. Deterministic in trial numbers, so two workers
    that check at once agree on which one trains."""
    trials = trial.study.get_trials(deepcopy=False)
    me = next(t for t in trials if t.number == trial.number)
    key = _key(me)
    earlier = [t for t in live_trials(trials) if t.number < trial.number]
    if any(_key(t) == key for t in earlier):
        return f"trial {key} is already run by an earlier attempt"
    if sweep.sampler == "grid":
        mine = _params_key(params)
        if any(_params_key(_params(t)) == mine for t in earlier):
            return "its grid point is already run by an earlier trial"
        return None
    keys = sorted({_key(t) for t in earlier} | {key})
    if keys.index(key) >= sweep.num_trials:
        return f"the study already has its {sweep.num_trials} trials"
    return None


def _suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    """The trial's value of `param` (its enqueued value, or the sampler's)."""
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, param.values)
    if isinstance(param, Variants):
        return trial.suggest_categorical(name, tuple(param.options))
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log)


# ---- recovering killed trials


def _enqueue_retry(study: optuna.Study, trial: FrozenTrial) -> None:
    study.enqueue_trial(_params(trial), user_attrs={_KEY: _key(trial), _RETRY_OF: trial.number})
    log.info("Trial %d will be resumed (was attempt #%d)", _key(trial), trial.number)


def _retry_after_heartbeat(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat failed a trial whose worker went silent: run it again, same key."""
    if not trial.user_attrs.get(_SURPLUS):
        _enqueue_retry(study, trial)


@contextlib.contextmanager
def _flock(path: str, *, blocking: bool) -> Iterator[bool]:
    """An advisory lock on `path`; yields whether it was taken. Released when the process
    holding it dies, however it dies."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def recover(study: optuna.Study) -> int:
    """Enqueues retries of this machine's trials whose process died or was interrupted.

    A RUNNING trial whose lock file is free has lost its process (killed, out of memory, power
    cut); it is told FAIL and a retry with the same key and parameters is enqueued, which
    resumes from the checkpoints in `trials/<key>/`. The check and the retry happen while
    holding the trial's lock, so two workers never retry the same trial twice.

    Returns:
      the number of trials enqueued again.
    """
    host = socket.gethostname()
    count = 0
    for t in live_trials(study.get_trials(deepcopy=False)):
        killed = t.state == TrialState.RUNNING and _LOCK in t.user_attrs
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get(_INTERRUPTED)
        if not (killed or interrupted) or t.user_attrs.get(_HOST) != host:
            continue
        lock = t.user_attrs[_LOCK]
        if not os.path.exists(lock):
            continue
        with _flock(lock, blocking=False) as free:
            if not free:
                continue  # its process is alive
            fresh = {x.number: x for x in study.get_trials(deepcopy=False)}
            if t.number not in {x.number for x in live_trials(list(fresh.values()))}:
                continue  # another worker retried it meanwhile
            if fresh[t.number].state == TrialState.RUNNING:
                _enqueue_retry(study, t)  # first, so the key is never without a live trial
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, ValueError):
                    study.tell(t.number, state=TrialState.FAIL)
            elif fresh[t.number].state == TrialState.FAIL:
                _enqueue_retry(study, t)
            else:
                continue
            count += 1
    return count


def enqueue_grid(study: optuna.Study, sweep: Sweep) -> int:
    """Enqueues the grid points no live trial holds yet; returns how many."""
    held = {_params_key(_params(t)) for t in live_trials(study.get_trials(deepcopy=False))}
    missing = [p for p in sweep.grid() if _params_key(p) not in held]
    for params in missing:
        study.enqueue_trial(params)
    return len(missing)


# ---- running trials


def _lookup(results: Mapping[str, Any], dotted: str) -> float:
    node: Any = results
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            available = sorted(_flatten(results))
            raise KeyError(
                f"Metric {dotted!r} is not in the trial's results; available: {available}. "
                "Fix `metric` in the sweep file."
            )
        node = node[part]
    return float(node)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in ("config", "figures", "devices", "members"):
            continue
        if isinstance(v, Mapping):
            out |= _flatten(v, f"{prefix}{k}.")
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def _summary(results: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """The few numbers of a run the report shows, kept in the storage with the trial."""
    test = results.get("test", {})
    nll = next((k for k in test if k.startswith("nll_")), None)
    out = {
        "metric": _lookup(results, metric),
        "test_elbo": test.get("elbo"),
        "test_nll": test.get(nll) if nll else None,
        "nll_samples": int(nll.removeprefix("nll_")) if nll else None,
        "valid_elbo": results.get("valid", {}).get("elbo"),
        "train_time_s": results.get("train_time_s"),
        "steps": results.get("steps"),
    }
    return {k: v for k, v in out.items() if v is not None}


def _same_config(path: str, config: ml_collections.ConfigDict) -> bool:
    with open(path) as f:
        return json.load(f) == json.loads(config.to_json_best_effort())


class TrialObjective:
    """The Optuna objective: claim the trial, train it in its directory, return its metric."""

    def __init__(self, sweep: Sweep, workdir: str):
        self.sweep = sweep
        self.workdir = os.path.abspath(workdir)

    def __call__(self, trial: optuna.Trial) -> float:
        sweep = self.sweep
        params = {name: _suggest(trial, name, p) for name, p in sweep.space.items()}
        reason = _surplus_reason(trial, sweep, params)
        if reason is not None:
            trial.set_user_attr(_SURPLUS, True)
            if sweep.sampler != "grid":
                trial.study.stop()
            raise optuna.TrialPruned(f"surplus, not run: {reason}.")
        key = int(trial.user_attrs.get(_KEY, trial.number))
        trial.set_user_attr(_KEY, key)
        trial_dir = os.path.join(self.workdir, "trials", str(key))
        lock = os.path.join(trial_dir, ".lock")
        # Blocks only if a previous attempt is somehow still alive (a heartbeat false alarm):
        # the retry then waits for it and reuses its results.
        with _flock(lock, blocking=True):
            trial.set_user_attr(_HOST, socket.gethostname())
            trial.set_user_attr(_PID, os.getpid())
            trial.set_user_attr(_LOCK, lock)
            try:
                return self._train(trial, key, params, trial_dir)
            except KeyboardInterrupt:
                trial.set_user_attr(_INTERRUPTED, True)
                raise
            except Exception as e:
                trial.set_user_attr(_ERROR, f"{type(e).__name__}: {e}"[:1000])
                raise

    def _train(self, trial, key: int, params: dict, trial_dir: str) -> float:
        sweep = self.sweep
        config = sweep.trial_config(params)
        config_path = os.path.join(trial_dir, "config.json")
        if os.path.exists(config_path) and not _same_config(config_path, config):
            raise ValueError(
                f"{trial_dir} holds a different trial's config (a leftover of another study?). "
                "Use a fresh --workdir, or delete that directory."
            )
        with open(config_path, "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        results_path = os.path.join(trial_dir, "results.json")
        if os.path.exists(results_path):  # a finished attempt that was killed before reporting
            log.info("Trial %d: reusing %s", key, results_path)
            with open(results_path) as f:
                results = json.load(f)
        else:
            log.info("Trial %d: %s in %s", key, params, trial_dir)
            if sweep.population_size > 1:
                from vaejax.population import train_and_evaluate_population

                results = train_and_evaluate_population(config, trial_dir, sweep.members())
            else:
                train_fn = sweep.train_fn
                if train_fn is None:
                    from vaejax.experiment import train_and_evaluate as train_fn
                results = train_fn(config, trial_dir)
        if sweep.population_size > 1:
            return self._population_value(trial, results)
        summary = _summary(results, sweep.metric)
        trial.set_user_attr(_SUMMARY, summary)
        return summary["metric"]

    def _population_value(self, trial, results: Mapping[str, Any]) -> float:
        sweep = self.sweep
        rows = []
        for member, res in zip(sweep.members(), results["members"], strict=True):
            row = {"values": member}
            if "error" in res:
                row[_ERROR] = res["error"]
            else:
                row[_SUMMARY] = _summary(res, sweep.metric)
            rows.append(row)
        trial.set_user_attr(_MEMBERS, rows)
        values = [r[_SUMMARY]["metric"] for r in rows if _SUMMARY in r]
        if not values:
            raise FloatingPointError("Every member of the population failed; see trials.md.")
        if sweep.population_reduce == "mean":
            value = float(np.mean(values))
        else:
            value = float(min(values) if sweep.direction == "minimize" else max(values))
        trial.set_user_attr(
            _SUMMARY, {"metric": value, "train_time_s": results.get("train_time_s")}
        )
        return value


def _stop_when_done(sweep: Sweep) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if _is_done(study, sweep):
            study.stop()

    return callback


def run_worker(
    sweep: Sweep,
    workdir: str,
    *,
    storage: str | None = None,
    worker_index: int = 0,
) -> None:
    """One worker: recovers this machine's killed trials, then runs trials until none is left."""
    study = open_study(sweep, make_storage(storage, workdir), worker_index=worker_index)
    recover(study)
    if sweep.sampler == "grid":
        enqueue_grid(study, sweep)
    objective = TrialObjective(sweep, workdir)
    while not _is_done(study, sweep):
        try:
            study.optimize(
                objective,
                catch=(Exception,),
                callbacks=[_stop_when_done(sweep)],
                gc_after_trial=True,
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            # The heartbeat failed this trial while it ran (a false alarm); its retry reuses
            # the results it just wrote.
            log.warning("A trial outlived its heartbeat grace period; its retry takes over.")


def _core_groups(workers: int) -> list[list[int] | None]:
    """This machine's cores split among workers; None (no pinning) when there are too few."""
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        return [None] * workers
    return [[int(c) for c in g] for g in np.array_split(cores, workers)]


def _worker_env(index: int, cores: list[int] | None) -> dict[str, str]:
    env = dict(os.environ)
    if cores is not None:
        threads = str(len(cores))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = threads
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if gpus:  # one GPU per worker, round robin
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def worker_main() -> None:
    """Entry of a worker process started by `run` (reads its arguments from the environment)."""
    spec = json.loads(os.environ[_WORKER_ENV])
    if spec["cores"] is not None:
        os.sched_setaffinity(0, spec["cores"])  # before JAX sizes its thread pools
    # Our progress at INFO; libraries (Orbax logs every save at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(process)d %(message)s")
    logging.getLogger("vaejax").setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = load_sweep(spec["sweep"])
    run_worker(sweep, spec["workdir"], storage=spec["storage"], worker_index=spec["index"])


def run(
    sweep: Sweep | str | os.PathLike,
    workdir: str | os.PathLike,
    *,
    workers: int = 1,
    storage: str | None = None,
    report: bool = True,
) -> list[dict[str, Any]]:
    """Runs (or continues) a sweep until every trial is done; returns the report's rows.

    Args:
      sweep: a `Sweep`, or the path of a sweep file (needed for `workers > 1`: each worker
        process loads the file).
      workdir: the sweep's directory: `trials/<key>/`, the default journal storage, the report.
      workers: trials run at once on this machine, each in its own process pinned to an equal
        share of the cores (or, with CUDA_VISIBLE_DEVICES set, to one GPU each). 1 runs them
        in this process.
      storage: an Optuna storage URL (see `make_storage`); None keeps the study in `workdir`.
      report: write `trials.md`, `trials.csv` and `trials.png` at the end.
    """
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}.")
    if workers == 1:
        run_worker(sweep, workdir, storage=storage)
    else:
        if sweep.source is None:
            raise ValueError(
                "workers > 1 needs the sweep as a file (each worker process loads it); pass "
                "its path, or load it with vaejax.sweeps.load_sweep."
            )
        # Recover and enqueue once here, so the workers start on a ready queue.
        study = open_study(sweep, make_storage(storage, workdir))
        recover(study)
        if sweep.sampler == "grid":
            enqueue_grid(study, sweep)
        procs = []
        for i, cores in enumerate(_core_groups(workers)):
            env = _worker_env(i, cores)
            env[_WORKER_ENV] = json.dumps(
                {
                    "sweep": sweep.source,
                    "workdir": workdir,
                    "storage": storage,
                    "index": i,
                    "cores": cores,
                }
            )
            cmd = [sys.executable, "-c", "from vaejax import sweeps; sweeps.worker_main()"]
            procs.append(subprocess.Popen(cmd, env=env))
            log.info("Started worker %d (pid %d) on cores %s", i, procs[-1].pid, cores or "all")
        try:
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt:
            for p in procs:  # they got the same SIGINT; let them record their trials
                p.wait()
            raise
        if any(codes):
            log.warning("Worker exit codes: %s", codes)
    study = open_study(sweep, make_storage(storage, workdir))
    rows = report_rows(study, sweep)
    if report:
        write_report(rows, sweep, workdir)
    return rows


# ---- the report


def report_rows(study: optuna.Study, sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial (per member, for populations), in key order, from the storage."""
    trials = study.get_trials(deepcopy=False)
    attempts: dict[int, int] = {}
    for t in trials:
        if not t.user_attrs.get(_SURPLUS):
            attempts[_key(t)] = attempts.get(_key(t), 0) + 1
    rows = []
    for t in sorted(live_trials(trials), key=_key):
        end = t.datetime_complete or datetime.datetime.now()
        wall = (end - t.datetime_start).total_seconds() if t.datetime_start and end else None
        base = {
            "trial": _key(t),
            "status": "INTERRUPTED" if t.user_attrs.get(_INTERRUPTED) else t.state.name,
            **{name: t.params.get(name) for name in sweep.space},
        }
        tail = {
            "wall_time_s": None if wall is None else round(wall, 1),
            "attempts": attempts.get(_key(t), 1),
            "error": t.user_attrs.get(_ERROR, ""),
        }
        members = t.user_attrs.get(_MEMBERS)
        if members:
            for i, m in enumerate(members):
                s = m.get(_SUMMARY, {})
                rows.append(
                    base
                    | {"member": i}
                    | {f: m["values"].get(f) for f in sweep.population or ["seed"]}
                    | _metric_columns(s, sweep)
                    | tail
                    | {"error": m.get(_ERROR, tail["error"])}
                )
        else:
            if sweep.population_size > 1:
                base |= {"member": None} | {f: None for f in sweep.population or ["seed"]}
            rows.append(base | _metric_columns(t.user_attrs.get(_SUMMARY, {}), sweep) | tail)
    return rows


def _metric_columns(summary: Mapping[str, Any], sweep: Sweep) -> dict[str, Any]:
    return {
        sweep.metric: summary.get("metric"),
        "test_elbo": summary.get("test_elbo"),
        "test_nll": summary.get("test_nll"),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.2f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no trials yet)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for r in rows:
        cells = [_fmt(r.get(c)).replace("|", "\\|").replace("\n", " ")[:120] for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    rows: Sequence[Mapping[str, Any]], sweep: Sweep, workdir: str | os.PathLike
) -> list[str]:
    """Writes `trials.md`, `trials.csv` and `trials.png` into `workdir`; returns their paths."""
    workdir = os.fspath(workdir)
    done = [r for r in rows if r["status"] == "COMPLETE" and r.get(sweep.metric) is not None]
    best = None
    if done:
        pick = min if sweep.direction == "minimize" else max
        best = pick(done, key=lambda r: r[sweep.metric])
    statuses = list({r["trial"]: r["status"] for r in rows}.values())  # per trial, not member
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    head = [
        f"# Sweep {sweep.name}: {sweep.direction} {sweep.metric}",
        "",
        f"{len({r['trial'] for r in rows})} of {sweep.num_trials} trials; "
        + ", ".join(f"{n} {s}" for s, n in counts.items()),
    ]
    if best is not None:
        members = ["member", *(sweep.population or ["seed"])] if "member" in best else []
        shown = {k: best[k] for k in (*sweep.space, *members)}
        head.append(
            f"Best: trial {best['trial']} {shown}: {sweep.metric} = {_fmt(best[sweep.metric])}"
        )
    paths = []
    md = os.path.join(workdir, "trials.md")
    _atomic_write(md, "\n".join(head) + "\n\n" + markdown_table(rows))
    paths.append(md)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = os.path.join(workdir, "trials.csv")
    _atomic_write(path, buf.getvalue())
    paths.append(path)
    png = plot_metric(rows, sweep, os.path.join(workdir, "trials.png"))
    if png:
        paths.append(png)
    log.info("Sweep %s:\n%s", sweep.name, "\n".join(head) + "\n\n" + markdown_table(rows))
    return paths


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_metric(rows: Sequence[Mapping[str, Any]], sweep: Sweep, path: str) -> str | None:
    """The metric of every finished trial against each swept field, one panel per field."""
    from matplotlib.figure import Figure

    fields = [*sweep.space, *sweep.population]
    if not fields and sweep.population_size > 1:
        fields = ["seed"]
    done = [r for r in rows if r["status"] == "COMPLETE" and r.get(sweep.metric) is not None]
    if not fields or not done:
        return None
    fig = Figure(figsize=(4 * len(fields), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, field in zip(axes, fields, strict=True):
        xs = [r[field] for r in done]
        ys = [r[sweep.metric] for r in done]
        param = sweep.space.get(field)
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
        if numeric and not isinstance(param, Variants):
            ax.scatter(xs, ys, s=24)
            positive = all(x > 0 for x in xs)
            if positive and (
                getattr(param, "log", False) or max(xs) / min(xs) >= 100 or field.endswith("rate")
            ):
                ax.set_xscale("log")
        else:
            labels = list(dict.fromkeys(str(x) for x in xs))
            ax.scatter([labels.index(str(x)) for x in xs], ys, s=24)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(field)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.name}: {sweep.metric} ({sweep.direction})")
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def report(sweep: Sweep | str, workdir: str | os.PathLike, *, storage: str | None = None):
    """Writes the report of a sweep as it stands, running nothing; returns the rows."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    os.makedirs(workdir, exist_ok=True)
    study = open_study(sweep, make_storage(storage, workdir))
    rows = report_rows(study, sweep)
    write_report(rows, sweep, workdir)
    return rows
