"""A member's results: its test numbers, results.json, then its figures.

results.json is written before the figures, so a figure that fails never loses the numbers;
non-finite test numbers (a diverged model) are recorded as an error, never as a result.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import numpy as np

from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax import evaluate, figures, networks
from vaejax.distributed import is_primary
from vaejax.files import DiskFullError, write_json
from vaejax.population import Member

log = logging.getLogger(__name__)


def write(path: str, results: dict[str, Any]) -> None:
    """results.json (or config.json), by the primary process only.

    Args:
      path: the JSON file to write, atomically (non-finite numbers as null).
      results: what to write.
    """
    if is_primary():
        write_json(path, results)


def run_info(step: int, train_time: float, start_time: float) -> dict[str, Any]:
    """The run's numbers for results.json: steps, training and wall time, devices.

    Args:
      step: the last step trained.
      train_time: training time in seconds.
      start_time: when the run started, as `time.time()`.

    Returns:
      ``{"steps": ..., "train_time_s": ..., "wall_time_s": ..., "devices": [...]}``.
    """
    return {
        "steps": step,
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "devices": [str(dev) for dev in jax.devices()],
    }


def test_numbers(
    model: Any,
    params: Any,
    d: data_lib.Data,
    key: jax.Array,
    ev: config_lib.Eval,
    preprocessing: data_lib.Preprocessing,
) -> dict[str, Any]:
    """The test split's numbers (`evaluate.evaluate_test`) under the config's eval settings.

    Args:
      model: the trained VAE.
      params: its parameters.
      d: the data; its test split (the first `ev.num_test` examples, if set) is evaluated.
      key: the member's evaluation key.
      ev: the config's eval settings.
      preprocessing: how the data were made.

    Returns:
      `evaluate.evaluate_test`'s dict of test numbers.
    """
    test = data_lib.inputs(d, "test", networks.is_conditional(model))
    return evaluate.evaluate_test(
        model,
        params,
        jax.tree.map(lambda a: a[: ev.num_test], test) if ev.num_test else test,
        jax.random.fold_in(key, 10**6),
        iwae_samples=ev.iwae_samples,
        nll_samples=ev.nll_samples,
        nll_chunk_size=ev.nll_chunk_size,
        batch_size=ev.batch_size,
        preprocessing=preprocessing,
    )


def nonfinite(test: dict[str, Any]) -> list[str]:
    """The names of the test numbers that are not finite.

    Args:
      test: test numbers by name (non-scalar values are skipped).

    Returns:
      The names of the scalar values that are NaN or infinite, sorted.
    """
    return sorted(k for k, v in test.items() if np.isscalar(v) and not np.isfinite(v))


def member(
    model: Any,
    params: Any,
    m: Member,
    *,
    ev: config_lib.Eval,
    preprocessing: data_lib.Preprocessing,
    info: dict[str, Any],
    custom_model: bool = False,
    custom_data: bool = False,
) -> dict[str, Any]:
    """Member `m`'s test numbers, results.json and figures, in its own directory.

    results.json is written before the figures and again after them; a figure that fails is
    logged and recorded as `figures_error`. Member `m`'s writer is closed.

    Args:
      model: the trained VAE.
      params: its parameters, on the host.
      m: the member; with non-finite test numbers its `error` and `error_step` are set.
      ev: the config's eval settings.
      preprocessing: how the data were made.
      info: the run's numbers for results.json (steps, epochs, times).
      custom_model: record the model's repr (`config.model` did not describe it).
      custom_data: record the data's info (`config.data` did not describe them).

    Returns:
      The contents of results.json, with keys "test", "valid", those of `info`, "figures" and
      "config" (and "model", "data_info" or "figures_error" where they apply); or "error",
      "test" and "config" when a test number is not finite.
    """
    d, path, step = m.data, os.path.join(m.workdir, "results.json"), info["steps"]
    test = test_numbers(model, params, d, m.key_eval, ev, preprocessing)
    if bad := nonfinite(test):  # a collapsed or diverged model: its numbers are no result
        m.error = f"Non-finite test numbers {bad} at step {step} (the model diverged)"
        m.error_step = step
        m.writer.close()
        out = {"error": m.error, "test": test, "config": m.config.given}
        write(path, out)
        log.error("%s; results.json records it.", m.error)
        return out
    m.writer.write_scalars(step, {f"test/{k}": v for k, v in test.items() if np.isscalar(v)})
    m.writer.close()
    conditioned = networks.is_conditional(model)
    valid = data_lib.inputs(d, "valid", conditioned)
    valid = evaluate.elbo_summary(model, params, valid, m.key_eval) if len(d.valid) else None
    out = {"test": test, "valid": valid, **info, "figures": [], "config": m.config.given}
    if custom_model:  # config.model did not describe it
        out["model"] = repr(model)
    if custom_data:
        out["data_info"] = d.info | {"preprocessing": preprocessing.name}
    write(path, out)  # first: a failing figure never loses the numbers
    try:
        key = jax.random.fold_in(m.key_eval, 2)
        out["figures"] = figures.write_figures(model, params, d, m.workdir, key, preprocessing)
    except Exception as e:  # reported and recorded: the numbers stand
        out["figures_error"] = f"{type(e).__name__}: {e}"
        report = log.error if isinstance(e, DiskFullError) else log.exception  # said once
        report("Writing the figures failed (%s); the test numbers are in %s", e, path)
    write(path, out)
    log.info("Test: %s", {k: v for k, v in test.items() if k != "kl_per_dim"})
    return out
