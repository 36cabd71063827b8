"""`train_and_evaluate(config, workdir)`: the one training loop, for a lone run or a population.

`setup` (data, model, state, resume), then chunks of compiled steps (`run_chunk`) with
validation and checkpoints (`train_loop`), then the test numbers and figures (`finish`). A
population is the same loop over a state with a leading member axis (`vaejax.population`).
Rerunning in a workdir resumes where an uninterrupted run would be (`build.RESUMABLE`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vaejax import (
    budget,
    build,
    checks,
    distributed,
    evaluate,
    networks,
    population,
    results,
    train,
    writers,
)
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax import workdir as workdir_lib
from vaejax.checkpoints import Checkpointer
from vaejax.distributed import is_primary
from vaejax.train import NonFiniteLossError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """What `setup` prepared: the loop's parts read and update it."""

    config: config_lib.Config
    workdir: str
    model: networks.VAE
    members: list[population.Member]  # a lone run: one
    state: train.TrainState  # a population's: stacked along a leading member axis
    member_tree: Callable[[Any, int], Any]  # member i's part of a pytree of the state
    chunk: Callable[[train.TrainState, np.ndarray], tuple[train.TrainState, dict]]
    checkpointer: Checkpointer
    steps_per_epoch: int
    total_steps: int
    budget: budget.Budget
    trained_s: float  # training time the restored checkpoint holds
    preprocessing: data_lib.Preprocessing
    is_population: bool = False
    custom_model: bool = False
    custom_data: bool = False
    num_classes: int = 0  # a label-conditioned model's classes


def setup(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
) -> Run:
    """Data, model, train state (restored when the workdir holds a checkpoint) and the chunk.

    Args:
      config: the experiment's config.
      workdir: the run's directory; created if missing.
      model: a VAE to train instead of `config.model`'s.
      data: splits to train on instead of `config.data`'s.
      members: a population's members: per member, values of `population.POPULATION_FIELDS`;
        None for a lone run.

    Returns:
      The `Run`, its state replicated over the device mesh.
    """
    config, configs, likelihood = checks.check_run(config, model=model, data=data, members=members)
    os.makedirs(workdir, exist_ok=True)  # (the checks above read no data)
    time_budget = budget.Budget.from_config(config.train)
    batch_size = config.train.batch_size  # shared by every member
    stacked = members is not None
    run_members = population.make_members(configs, workdir, data, stacked=stacked)
    first = run_members[0].data
    preprocessing = first.preprocessing or data_lib.Preprocessing(config.data.preprocessing)
    custom_model = model is not None
    for m in run_members:  # every split, on the host, before any compilation
        splits = {"train": m.data.train, "valid": m.data.valid, "test": m.data.test}
        checks.check_splits(splits, likelihood, preprocessing=preprocessing, batch_size=batch_size)
    num_classes = 0
    if config.data.conditioning == "label":
        num_classes = model.conditioning.num_classes if model else data_lib.num_classes(first)
        for m in run_members:
            checks.check_labels(m.data, num_classes)
    if model is None:
        model = build.build_model(config.model, first.train.shape[1:], likelihood, num_classes)

    mesh = train.data_mesh(jax.devices())
    train.check_batch_size(batch_size, mesh)
    steps_per_epoch = len(first.train) // batch_size
    total_steps = config.train.num_epochs * steps_per_epoch
    steps = dict(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    for m in run_members:
        m.schedule = build.build_schedule(m.config.optim, **steps)
    tx = population.optimizer(config, run_members, **steps, fit_to_budget=time_budget.fit_schedule)
    state = population.init_state(config, model, run_members, tx, stacked=stacked)
    checkpointer = Checkpointer(workdir, keep_every_steps=config.train.keep_checkpoint_every_steps)
    settings = config.given | ({} if members is None else {"members": list(map(dict, members))})
    state, trained_s = workdir_lib.resume(
        checkpointer, state, workdir, settings, [c.given for c in configs]
    )
    return Run(
        config=config,
        workdir=workdir,
        model=model,
        members=run_members,
        state=distributed.to_global(state, NamedSharding(mesh, PartitionSpec())),
        member_tree=population.unstack if stacked else lambda tree, i: tree,
        chunk=population.make_chunk(
            config, model, run_members, mesh, preprocessing, stacked=stacked
        ),
        checkpointer=checkpointer,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        budget=time_budget,
        trained_s=trained_s,
        preprocessing=preprocessing,
        is_population=stacked,
        custom_model=custom_model,
        custom_data=data is not None,
        num_classes=num_classes,
    )


def _step(state: train.TrainState) -> int:
    return int(np.asarray(state.step).reshape(-1)[0])


# ---- the loop's parts


def run_chunk(run: Run, step: int, elapsed: float, perms: np.ndarray) -> tuple[int, dict, list]:
    """Trains the chunk of steps starting at `step`; returns its size, metrics and rates.

    Args:
      run: the run; `run.state` becomes the state after the chunk.
      step: the chunk's first step.
      elapsed: training time so far in seconds (sets the rate on a schedule fitted to the budget).
      perms: every member's permutation of the current epoch, `[P, steps_per_epoch, B]`.

    Returns:
      `(n, metrics, rates)`: the chunk's number of steps, its metrics on the host
      (`{name: [P, n]}`) and each member's learning rate for the chunk.
    """
    if run.budget.fit_schedule:  # the rate of the schedule's step the time spent reaches
        at = run.budget.schedule_step(elapsed, run.total_steps)
        rates = [float(m.schedule(at)) for m in run.members]
        run.state = train.set_learning_rate(run.state, rates)
    else:
        rates = [float(m.schedule(step)) for m in run.members]
    offset = step % run.steps_per_epoch
    n = train.chunk_size(offset, run.steps_per_epoch, run.config.train.steps_per_dispatch)
    run.state, metrics = run.chunk(run.state, perms[:, offset : offset + n])
    return n, jax.device_get(metrics), rates  # the one host read per chunk: {name: [P, n]}


def epoch_perms(run: Run, epoch: int) -> np.ndarray:
    """Each member's shuffled batches of `epoch`, `[P, steps_per_epoch, B]`.

    Args:
      run: the run.
      epoch: the epoch, folded into each member's data-order key.

    Returns:
      `[P, steps_per_epoch, B]` indices into each member's train split.
    """
    perm = lambda m: data_lib.epoch_permutation(
        jax.random.fold_in(m.keys[2], epoch), len(m.data.train), run.config.train.batch_size
    )
    return np.stack([perm(m) for m in run.members])


def record_chunk(run: Run, step: int, n: int, metrics: dict, rates: list) -> None:
    """Logs each member's chunk (`population.record`).

    Args:
      run: the run.
      step: the step the chunk ends at.
      n: the chunk's number of steps.
      metrics: the chunk's metrics on the host, `{name: [P, n]}`.
      rates: each member's learning rate for the chunk.

    Raises:
      NonFiniteLossError: no member is left (for a lone run: at its first non-finite loss).
    """
    population.record(run.members, step, n, metrics, rates, run.steps_per_epoch)
    if all(m.error is not None for m in run.members):
        raise NonFiniteLossError(
            f"{'; '.join(m.error for m in run.members)}; training stopped. "
            f"{run.checkpointer.kept()} "
            "Lower the learning rate or check the data.",
            step=min(m.error_step for m in run.members),
        )


def validate(run: Run, step: int) -> None:
    """The validation ELBO of every member still counting, logged at `step`.

    Args:
      run: the run.
      step: the step the numbers are logged at.
    """
    for i, m in enumerate(run.members):
        if m.error is None and len(m.data.valid):
            params = run.member_tree(run.state.eval_params, i)
            inputs = data_lib.inputs(m.data, "valid", networks.is_conditional(run.model))
            valid = evaluate.elbo_summary(run.model, params, inputs, m.key_eval)
            m.writer.write_scalars(step, {f"valid/{k}": v for k, v in valid.items()})
            log.info("epoch %d step %d: %s", step // run.steps_per_epoch, step, valid)


def save(run: Run, step: int, train_time_s: float) -> None:
    """A checkpoint, with the format version and what `vaejax.load` rebuilds each model from.

    Args:
      run: the run; its state is saved.
      step: the checkpoint's step.
      train_time_s: training time so far in seconds, kept in the checkpoint's metadata.
    """
    metadata = {
        "train_time_s": train_time_s,
        "format_version": build.FORMAT_VERSION,
        "members": [
            build.describe(
                m.config,
                m.data.train,
                m.data.preprocessing or run.preprocessing,
                custom_model=run.model if run.custom_model else None,
                num_classes=run.num_classes,
            )
            for m in run.members
        ],
    }
    run.checkpointer.save(step, run.state, metadata=metadata)


def _is_eval_step(run: Run, step: int) -> bool:
    epoch, offset = divmod(step, run.steps_per_epoch)
    every = run.config.train.eval_every_epochs
    return offset == 0 and (epoch % every == 0 or step == run.total_steps)


def train_loop(run: Run) -> tuple[int, float]:
    """Trains until the last step or the time budget; returns the step and the training time.

    Opens each member's writer, validates every `eval_every_epochs` and checkpoints every
    `checkpoint_every_steps`, at the last step and when the time budget stops it.

    Args:
      run: the run from `setup`; `run.state` becomes the trained state.

    Returns:
      `(step, train_time)`: the last step trained and the training time in seconds, the restored
      checkpoint's included.

    Raises:
      NonFiniteLossError: every member's loss turned non-finite (`record_chunk`).
    """
    cfg = run.config.train
    step = _step(run.state)
    for m in run.members:
        m.writer = writers.open_writer(m.workdir, purge_step=step + 1, primary=is_primary())
    last_checkpoint, perms, perm_epoch = step, None, -1
    total = None if run.budget.fit_schedule else run.total_steps
    bar = writers.progress_bar(total, step, enabled=cfg.progress_bar)
    train_start = budget.now() - run.trained_s
    elapsed = lambda: budget.now() - train_start
    while (run.budget.fit_schedule or step < run.total_steps) and elapsed() < run.budget.seconds:
        epoch = step // run.steps_per_epoch
        if epoch != perm_epoch:
            perms, perm_epoch = epoch_perms(run, epoch), epoch
        n, metrics, rates = run_chunk(run, step, elapsed(), perms)
        step += n
        record_chunk(run, step, n, metrics, rates)
        bar.update(n)
        bar.set_postfix(epoch=epoch, loss=f"{np.mean(metrics['loss']):.2f}", refresh=False)
        if _is_eval_step(run, step):
            validate(run, step)
        if step - last_checkpoint >= cfg.checkpoint_every_steps or step == run.total_steps:
            save(run, step, elapsed())
            last_checkpoint = step
    bar.close()
    train_time = elapsed()
    if step != last_checkpoint:  # stopped by the time budget
        save(run, step, train_time)
    return step, train_time


# ---- finish: test evaluation, figures, results


def finish_member(run: Run, i: int, step: int, train_time: float, start_time: float) -> dict:
    """Member i's test numbers, figures and results.json (in its own directory).

    Args:
      run: the run.
      i: the member's index.
      step: the last step trained.
      train_time: training time in seconds.
      start_time: when the run started, as `time.time()`.

    Returns:
      The member's results (`results.member`), or ``{"error": ..., "config": ...}`` for a member
      that stopped at a non-finite loss (its writer is then only closed).
    """
    m = run.members[i]
    m.writer.flush()
    if m.error is not None:
        m.writer.close()
        return {"error": m.error, "config": m.config.given}
    info = results.run_info(step, train_time, start_time) | {"epochs": step / run.steps_per_epoch}
    return results.member(
        run.model,
        jax.device_get(run.member_tree(run.state.eval_params, i)),
        m,
        ev=run.config.eval,
        preprocessing=run.preprocessing,
        info=info,
        custom_model=run.custom_model,
        custom_data=run.custom_data,
    )


def finish(run: Run, step: int, train_time: float, start_time: float) -> dict[str, Any]:
    """Evaluates every member on test and writes the results; a population's in `members/`.

    Args:
      run: the run; its checkpointer is closed.
      step: the last step trained.
      train_time: training time in seconds.
      start_time: when the run started, as `time.time()`.

    Returns:
      A lone run's results.json contents; a population's (`population.results` with the run's
      steps, times and devices), also written to `<workdir>/results.json`.

    Raises:
      NonFiniteLossError: every member failed, one of them with non-finite test numbers.
    """
    run.checkpointer.close()
    per_member = [
        finish_member(run, i, step, train_time, start_time) for i in range(len(run.members))
    ]
    if all(m.error is not None for m in run.members) and any("test" in r for r in per_member):
        raise NonFiniteLossError(
            "; ".join(m.error for m in run.members)
            + ". Lower the learning rate or check the data.",
            step=step,
        )
    if not run.is_population:
        return per_member[0]
    out = population.results(per_member, run.config) | results.run_info(
        step, train_time, start_time
    )
    results.write(os.path.join(run.workdir, "results.json"), out)
    return out


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[train.TrainState, dict[str, Any]]:
    """Trains the configured VAE in `workdir` (rerunning resumes), evaluates it, writes results.

    Args:
      config: the experiment's config (see experiments/configs/mnist.py).
      workdir: checkpoints, metrics, figures, config.json and results.json go here.
      model: a VAE to train instead of `config.model`'s (its likelihood replaces
        `config.model.likelihood`); the other sections still apply.
      data: splits to train on instead of `config.data`'s (e.g. tabular `[N, D]`);
        `data.preprocessing`, if set, says how they were made, else `config.data.preprocessing`.
      members: train a population: per member, values of `population.POPULATION_FIELDS` that
        override `config`; member i's files go to `<workdir>/members/<i>/`.

    Returns:
      `(state, results)`: the trained state (a population's stacked along a leading member
      axis) and results.json's contents (a population's: `{"members": [each member's results,
      or {"error": ...} for one whose loss turned non-finite], ...}`).
    """
    start_time = time.time()
    if config.get("distributed"):
        distributed.initialize()
    log.info("JAX devices: %s", jax.devices())
    # One run per workdir: a second is refused at once (on multi-host, process 0 holds it).
    lock = workdir_lib.hold(workdir) if is_primary() else contextlib.nullcontext()
    with distributed.guard(), lock:
        run = setup(config, workdir, model=model, data=data, members=members)
        for m in run.members:
            results.write(os.path.join(m.workdir, "config.json"), m.config.given)
        step, train_time = train_loop(run)
        return run.state, finish(run, step, train_time, start_time)


def train_and_evaluate_population(
    config: ml_collections.ConfigDict, workdir: str, members: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Trains one population (`train_and_evaluate(..., members=members)`); its results.

    Args:
      config: the experiment's config.
      workdir: the population's directory; member i's files go to `<workdir>/members/<i>/`.
      members: per member, values of `population.POPULATION_FIELDS` that override `config`.

    Returns:
      ``{"members": [member i's results, or {"error": ...}], ...}``; the trained, stacked state is
      `train_and_evaluate`'s first return value.
    """
    return train_and_evaluate(config, workdir, members=members)[1]
