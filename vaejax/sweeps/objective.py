"""The Optuna objective: claim a trial, train it in its directory, return its metric."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
import optuna

from vaejax import experiment, files
from vaejax.sweeps import space, trials
from vaejax.sweeps.signals import Stop
from vaejax.sweeps.spec import Sweep

log = logging.getLogger(__name__)


def lookup(results: Mapping[str, Any], dotted: str) -> float:
    """The number at a dotted key of a results dict, e.g. "test.nll_5000".

    Args:
      results: a trial's results.json contents.
      dotted: the dotted key.

    Returns:
      The value, as a float.

    Raises:
      KeyError: the key is not in `results`; the message lists the numbers that are.
    """
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


def summary(results: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """The few numbers of a run the report shows, kept in the storage with the trial.

    Args:
      results: a trial's (or member's) results.json contents.
      metric: the sweep's metric, a dotted key into `results`.

    Returns:
      ``{"metric": ...}`` and, where `results` has them, "test_elbo", "test_nll", "nll_samples",
      "valid_elbo", "train_time_s" and "steps".

    Raises:
      KeyError: `metric` is not in `results`.
    """
    test = results.get("test", {})
    nll = next((k for k in test if k.startswith("nll_")), None)
    out = {
        "metric": lookup(results, metric),
        "test_elbo": test.get("elbo"),
        "test_nll": test.get(nll) if nll else None,
        "nll_samples": int(nll.removeprefix("nll_")) if nll else None,
        "valid_elbo": results.get("valid", {}).get("elbo"),
        "train_time_s": results.get("train_time_s"),
        "steps": results.get("steps"),
    }
    return {k: v for k, v in out.items() if v is not None}


def _results(out: Any) -> Mapping[str, Any]:
    # train_and_evaluate returns (state, results) in newer versions and results in older ones.
    return out[1] if isinstance(out, tuple) else out


def _same_config(path: str, config: ml_collections.ConfigDict) -> bool:
    fix = "It is the trial's config: restore it, or delete the trial's directory to rerun it."
    return files.read_json(path, fix) == json.loads(config.to_json_best_effort())


class TrialObjective:
    """The Optuna objective: claim the trial, train it in its directory, return its metric."""

    def __init__(self, sweep: Sweep, workdir: str, stop: Stop | None = None):
        self.sweep = sweep
        self.workdir = os.path.abspath(workdir)
        self.stop = stop or Stop()

    def __call__(self, trial: optuna.Trial) -> float:
        params = {name: space.suggest(trial, name, p) for name, p in self.sweep.space.items()}
        reason = trials.surplus_reason(trial, self.sweep)
        if reason is not None:
            trial.set_user_attr(trials.SURPLUS, True)
            raise optuna.TrialPruned(f"surplus, not run: {reason}.")
        key = trials.key(trial)
        trial_dir = os.path.join(self.workdir, "trials", str(key))
        lock = os.path.join(trial_dir, ".trial.lock")  # not the run's own workdir lock
        # Blocks only if a previous attempt is somehow still alive (a heartbeat false alarm):
        # the retry then waits for it and reuses its results.
        with trials.flock(lock, blocking=True):
            for attr in trials.PER_ATTEMPT:
                if trial.user_attrs.get(attr) is not None:
                    trial.set_user_attr(attr, None)
            trial.set_user_attr(trials.HOST, socket.gethostname())
            trial.set_user_attr(trials.PID, os.getpid())
            trial.set_user_attr(trials.LOCK, lock)
            trial.set_user_attr(trials.ATTEMPT, trial.number)
            try:
                with self.stop.while_training():
                    results = self._train(key, params, trial_dir)
                return self._value(trial, results)
            except KeyboardInterrupt:
                trial.set_user_attr(trials.INTERRUPTED, True)
                raise
            except Exception as e:
                trial.set_user_attr(trials.ERROR, f"{type(e).__name__}: {e}"[:1000])
                raise

    def _train(self, key: int, params: dict, trial_dir: str) -> Mapping[str, Any]:
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
                return json.load(f)
        log.info("Trial %d: %s in %s", key, params, trial_dir)
        if sweep.population_size > 1:
            members = sweep.members()
            return _results(experiment.train_and_evaluate_population(config, trial_dir, members))
        train_fn = sweep.train_fn
        if train_fn is None:
            train_fn = experiment.train_and_evaluate
        return _results(train_fn(config, trial_dir))

    def _value(self, trial: optuna.Trial, results: Mapping[str, Any]) -> float:
        if self.sweep.population_size > 1:
            value = self._population_value(trial, results)
        else:
            trial.set_user_attr(trials.SUMMARY, summary(results, self.sweep.metric))
            value = trial.user_attrs[trials.SUMMARY]["metric"]
        if not math.isfinite(value):
            raise FloatingPointError(f"The metric {self.sweep.metric} is {value}.")
        return value

    def _population_value(self, trial: optuna.Trial, results: Mapping[str, Any]) -> float:
        sweep = self.sweep
        rows = []
        for member, res in zip(sweep.members(), results["members"], strict=True):
            row = {"values": member}
            if "error" in res:
                row[trials.ERROR] = res["error"]
            else:
                row[trials.SUMMARY] = summary(res, sweep.metric)
            rows.append(row)
        trial.set_user_attr(trials.MEMBERS, rows)
        values = [r[trials.SUMMARY]["metric"] for r in rows if trials.SUMMARY in r]
        if not values:
            raise FloatingPointError("Every member of the population failed; see trials.md.")
        if sweep.population_reduce == "mean":
            value = float(np.mean(values))
        else:
            value = float(min(values) if sweep.direction == "minimize" else max(values))
        trial.set_user_attr(
            trials.SUMMARY, {"metric": value, "train_time_s": results.get("train_time_s")}
        )
        return value
