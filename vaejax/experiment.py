"""`train_and_evaluate(config, workdir)`: the one training loop, for a lone run or a population.

The one place that reads a config: it turns the ConfigDict into typed calls of the library.
A lone run is trained as it is; a population (`members=[...]`, see `vaejax.population`) is the
same loop over train states stacked along a leading member axis, trained by one vmapped,
compiled chunk. Every feature below works for both.

The loop is five named parts: `setup` (data, model, state, resume), `run_chunk` (one compiled
dispatch of steps), `validate`, `save` (a checkpoint) and `finish` (test evaluation, figures,
results.json).

Rerunning with the same workdir resumes from the latest checkpoint; the data order and keys
are functions of (seed, step), so a resumed run ends where an uninterrupted one would. Only the
evaluation and monitoring settings may change on resume; other training settings are refused.

`train.time_budget_s` bounds the run's training time, counted across resumes (each checkpoint
records it). With `train.fit_schedule_to_budget` the learning-rate schedule runs on that clock
instead of on steps: it ends when the budget does, however fast the machine turns out to be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.sharding import NamedSharding, PartitionSpec

from vaejax import (
    build,
    checks,
    evaluate,
    likelihoods,
    networks,
    plots,
    population,
    train,
)
from vaejax import data as data_lib
from vaejax import workdir as workdir_lib
from vaejax.checkpoints import Checkpointer
from vaejax.files import write_json
from vaejax.writers import MetricWriter, NullWriter, read_metrics

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept.

    `step` is the first step whose loss was not finite, where known.
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


def set_learning_rate(state: train.TrainState, rate: float | np.ndarray) -> train.TrainState:
    """`state` with the learning rate of an optimizer built with `rate_from_host=True`.

    `rate`: a scalar, or one rate per member of a stacked population state.
    """
    current = optax.tree_utils.tree_get(state.opt_state, "learning_rate")
    rate = np.broadcast_to(np.asarray(rate, current.dtype), current.shape)
    rate = jax.device_put(rate, current.sharding)
    return state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=rate))


def check_time_budget(train_cfg: ml_collections.ConfigDict) -> tuple[float, bool]:
    """`(budget in seconds or inf, whether the schedule is fitted to it)`, checked."""
    budget = train_cfg.get("time_budget_s") or math.inf
    fit = bool(train_cfg.get("fit_schedule_to_budget"))
    if budget <= 0 or (fit and budget == math.inf):
        raise ValueError(
            f"train.time_budget_s must be positive (0: no budget), and set when "
            f"train.fit_schedule_to_budget is True; got time_budget_s="
            f"{train_cfg.get('time_budget_s')}, fit_schedule_to_budget={fit}."
        )
    return budget, fit


def now() -> float:
    """The training clock, in seconds (a function of its own, so that tests can drive it)."""
    return time.monotonic()


def check_same_training(settings: dict[str, Any], workdir: str, *, resuming: bool) -> None:
    """Records the training settings in `workdir`; refuses to resume a run made with others.

    `settings`: the config as a dict (`config.to_dict()`, plus a population's members).
    Resuming restores the latest checkpoint, so a changed batch size, schedule or model would
    silently continue (or, with fewer steps, skip) another run's training.
    """
    path = os.path.join(workdir, "train_config.json")
    flat = {
        k: v
        for k, v in build.flatten(json.loads(json.dumps(settings, default=str))).items()
        if not k.startswith(build.RESUMABLE)
    }
    if resuming and os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = {k: (saved.get(k), flat.get(k)) for k in saved.keys() | flat.keys()}
        changed = {k: v for k, v in sorted(changed.items()) if v[0] != v[1]}
        if changed:
            raise ValueError(
                f"{workdir} holds checkpoints of a run with other training settings "
                f"(setting: (checkpointed run, this config)): {changed}. Use a new --workdir, "
                f"or the checkpointed run's settings to resume it."
            )
    _write_json(path, flat)  # atomically: the other processes of the run read it meanwhile


def to_global(x: Any, sharding: NamedSharding) -> Any:
    """Host arrays -> global jax Arrays; works on one host and across hosts alike."""
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        x,
    )


def chunk_size(offset: int, steps_per_epoch: int, steps_per_dispatch: int) -> int:
    """Steps in the chunk starting at `offset` within an epoch; chunks are epoch-aligned."""
    return min(steps_per_dispatch - offset % steps_per_dispatch, steps_per_epoch - offset)


# ---- set-up: members, data, model, state, resume


@dataclasses.dataclass
class Member:
    """One trained model of a run: its config, data, keys and output directory."""

    config: ml_collections.ConfigDict
    data: data_lib.Data
    workdir: str
    keys: tuple[jax.Array, jax.Array, jax.Array, jax.Array]  # init, train, data order, eval
    schedule: optax.Schedule | None = None
    writer: MetricWriter | None = None
    error: str | None = None  # why the member stopped counting (a non-finite loss)
    error_step: int | None = None

    @property
    def key_eval(self) -> jax.Array:
        return self.keys[3]


@dataclasses.dataclass
class Run:
    """What `setup` prepared: the loop's parts read and update it."""

    config: ml_collections.ConfigDict
    workdir: str
    model: networks.VAE
    members: list[Member]
    stacked: bool  # a population: states stacked along a leading member axis
    state: train.TrainState
    chunk: Callable[[train.TrainState, np.ndarray], tuple[train.TrainState, dict]]
    checkpointer: Checkpointer
    steps_per_epoch: int
    total_steps: int
    budget: float
    fit_to_budget: bool
    trained_s: float  # training time the restored checkpoint holds
    preprocessing: data_lib.Preprocessing
    custom_model: bool = False
    custom_data: bool = False

    def member_tree(self, tree: Any, i: int) -> Any:
        """Member `i`'s part of a (possibly stacked) pytree of the run."""
        return population.unstack(tree, i) if self.stacked else tree


def _load_data(config: ml_collections.ConfigDict, seed: int) -> data_lib.Data:
    return data_lib.load(
        config.data.name,
        preprocessing=config.data.preprocessing,
        data_dir=config.data.get("data_dir"),
        num_valid=config.data.num_valid,
        num_train=config.data.get("num_train", 0),
        seed=seed,
    )


def _make_members(
    config: ml_collections.ConfigDict,
    workdir: str,
    members: Sequence[Mapping[str, Any]] | None,
    data: data_lib.Data | None,
) -> list[Member]:
    """One `Member` per config; the data are loaded once per distinct seed."""
    configs = [config] if members is None else population.member_configs(config, members)
    datas: dict[int, data_lib.Data] = {}
    out = []
    for i, cfg in enumerate(configs):
        if data is None and cfg.seed not in datas:
            datas[cfg.seed] = _load_data(config, cfg.seed)
        root = jax.random.key(cfg.seed)
        out.append(
            Member(
                config=cfg,
                data=data if data is not None else datas[cfg.seed],
                workdir=workdir if members is None else os.path.join(workdir, "members", str(i)),
                keys=tuple(jax.random.fold_in(root, k) for k in range(4)),
            )
        )
    return out


def _check_data(members: list[Member], likelihood, data_noise: str | None) -> None:
    """Every split of every member, checked once on the host, before any compilation."""
    for m in members:
        d = m.data
        checks.check_splits(
            {"train": d.train, "valid": d.valid, "test": d.test},
            likelihood,
            noise=data_noise,
            batch_size=m.config.train.batch_size,
        )


def _optimizer(run_cfg, members: list[Member], *, total_steps, steps_per_epoch, fit_to_budget):
    """The optimizer every member shares; per-member rates, where they differ, live in its state."""
    optim = run_cfg.optim
    rates = [float(m.config.optim.learning_rate) for m in members]
    if fit_to_budget or len(set(rates)) == 1:
        return build.build_optimizer(
            members[0].config.optim,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            rate_from_host=fit_to_budget,
        )
    if optim.schedule not in population.TRACEABLE_SCHEDULES:
        raise ValueError(
            f"Per-member learning rates need a schedule in {population.TRACEABLE_SCHEDULES}; got "
            f"{optim.schedule!r} with rates {sorted(set(rates))}. Sweep the rate across "
            "trials instead, use one rate per population, or fit_schedule_to_budget=True."
        )

    def make(learning_rate):
        # A fresh ConfigDict may hold a traced rate; `build_optimizer` only does arithmetic on it.
        cfg = ml_collections.ConfigDict(optim.to_dict() | {"learning_rate": learning_rate})
        return build.build_optimizer(cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)

    return optax.inject_hyperparams(make)(learning_rate=rates[0])


def _init_state(run_cfg, model, members, tx, stacked: bool) -> train.TrainState:
    """Member i's state initialised from its own key, as a lone run would be; stacked if needed."""
    states = []
    for m in members:
        train_x = m.data.train
        bias = model.likelihood.output_bias(train_x) if run_cfg.model.output_bias else None
        state = train.create_train_state(
            m.keys[0],
            model,
            train_x,
            tx,
            output_bias=bias,
            ema_decay=run_cfg.optim.get("ema_decay", 0.0),
        )
        if isinstance(state.opt_state, optax.InjectStatefulHyperparamsState) and stacked:
            rate = jnp.asarray(m.config.optim.learning_rate, jnp.float32)
            state = state.replace(
                opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=rate)
            )
        states.append(state)
    return population.stack(states) if stacked else states[0]


def _compile_chunk(run_cfg, model, members, mesh, preprocessing, stacked: bool):
    """`(state, idx [P, n, B]) -> (state, metrics {name: [P, n]})`, compiled once."""
    replicated = NamedSharding(mesh, PartitionSpec())
    # The train split differs between seeds only when it was binarized once per seed.
    shared = not preprocessing.train_varies_with_seed or len({id(m.data) for m in members}) == 1
    train_x = members[0].data.train if shared else np.stack([m.data.train for m in members])
    train_x = to_global(train_x, replicated)
    objective = train.Objective(**run_cfg.objective)
    data_noise = preprocessing.noise  # drawn per batch by the train step
    keys = [m.keys[1] for m in members]
    if not stacked:
        fn = train.make_train_chunk(
            model=model, objective=objective, mesh=mesh, data_noise=data_noise
        )
        idx_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))

        def lone(state, idx):
            state, metrics = fn(state, train_x, to_global(idx[0], idx_sharding), keys[0])
            return state, jax.tree.map(lambda a: a[None], metrics)

        return lone
    fn = train.make_train_chunk(
        model=model,
        objective=objective,
        mesh=mesh,
        data_noise=data_noise,
        stacked=True,
        shared_data=shared,
    )
    idx_sharding = NamedSharding(mesh, PartitionSpec(None, None, "data"))
    betas = jnp.asarray([train.Objective(**m.config.objective).beta for m in members], jnp.float32)
    keys = jnp.stack(keys)
    return lambda state, idx: fn(state, train_x, to_global(idx, idx_sharding), keys, betas)


def setup(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
) -> Run:
    """Data, model, train state (restored when the workdir holds a checkpoint) and the chunk."""
    checks.check_run(config, model=model, data=data, members=members)  # before any data are read
    os.makedirs(workdir, exist_ok=True)
    budget, fit_to_budget = check_time_budget(config.train)
    run_members = _make_members(config, workdir, members, data)
    first = run_members[0].data
    preprocessing = first.preprocessing or data_lib.Preprocessing(config.data.preprocessing)
    if model is None:
        likelihood = likelihoods.get(config.model.likelihood, **config.model.likelihood_kwargs)
    else:
        likelihood = model.likelihood
    _check_data(run_members, likelihood, preprocessing.noise)
    custom_model = model is not None
    if model is None:
        model = build.build_model(config.model, first.train.shape[1:], likelihood)

    mesh = train.data_mesh(jax.devices())
    train.check_batch_size(config.train.batch_size, mesh)
    steps_per_epoch = len(first.train) // config.train.batch_size
    total_steps = config.train.num_epochs * steps_per_epoch
    for m in run_members:
        m.schedule = build.build_schedule(
            m.config.optim, total_steps=total_steps, steps_per_epoch=steps_per_epoch
        )
    stacked = members is not None
    tx = _optimizer(
        config,
        run_members,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        fit_to_budget=fit_to_budget,
    )
    state = _init_state(config, model, run_members, tx, stacked)
    checkpointer = Checkpointer(
        workdir, keep_every_steps=config.train.get("keep_checkpoint_every_steps", 0)
    )
    resuming = checkpointer.latest_step() is not None
    settings = config.to_dict() | ({} if members is None else {"members": list(map(dict, members))})
    check_same_training(settings, workdir, resuming=resuming)
    trained_s = 0.0
    if resuming:
        state = checkpointer.restore(state)
        trained_s = checkpointer.metadata().get("train_time_s", 0.0)
        log.info("Resumed from step %d in %s", _step(state), checkpointer.directory)
    state = to_global(state, NamedSharding(mesh, PartitionSpec()))
    return Run(
        config=config,
        workdir=workdir,
        model=model,
        members=run_members,
        stacked=stacked,
        state=state,
        chunk=_compile_chunk(config, model, run_members, mesh, preprocessing, stacked),
        checkpointer=checkpointer,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        budget=budget,
        fit_to_budget=fit_to_budget,
        trained_s=trained_s,
        preprocessing=preprocessing,
        custom_model=custom_model,
        custom_data=data is not None,
    )


def _step(state: train.TrainState) -> int:
    return int(np.asarray(state.step).reshape(-1)[0])


# ---- the loop's parts


def run_chunk(run: Run, step: int, elapsed: float, perms: np.ndarray) -> tuple[int, dict, list]:
    """Trains the chunk of steps starting at `step`; returns its size, metrics and rates.

    `perms`: every member's permutation of the current epoch, `[P, steps_per_epoch, B]`.
    """
    if run.fit_to_budget:  # the schedule's step that the time spent so far corresponds to
        at = elapsed / run.budget * run.total_steps
        rates = [float(m.schedule(at)) for m in run.members]
        run.state = set_learning_rate(run.state, rates if run.stacked else rates[0])
    else:
        rates = [float(m.schedule(step)) for m in run.members]
    offset = step % run.steps_per_epoch
    n = chunk_size(offset, run.steps_per_epoch, run.config.train.steps_per_dispatch)
    run.state, metrics = run.chunk(run.state, perms[:, offset : offset + n])
    return n, jax.device_get(metrics), rates  # the one host read per chunk: {name: [P, n]}


def epoch_perms(run: Run, epoch: int) -> np.ndarray:
    """Each member's shuffled batches of `epoch`, `[P, steps_per_epoch, B]`."""
    return np.stack(
        [
            np.asarray(
                data_lib.epoch_permutation(
                    jax.random.fold_in(m.keys[2], epoch),
                    len(m.data.train),
                    run.config.train.batch_size,
                )
            )
            for m in run.members
        ]
    )


def record_chunk(run: Run, step: int, n: int, metrics: dict, rates: list) -> None:
    """Logs each member's chunk; a member whose loss turned non-finite stops counting.

    Raises `NonFiniteLossError` when no member is left (for a lone run: at its first NaN).
    """
    for i, m in enumerate(run.members):
        if m.error is not None:
            continue
        loss = metrics["loss"][i]
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            m.error_step = step - n + int(bad[0]) + 1
            m.error = f"Non-finite loss {loss[bad[0]]} at step {m.error_step}"
            if run.stacked:
                log.warning("Population member %d stopped counting: %s", i, m.error)
            continue
        summary = {f"train/{k}": float(np.mean(v[i])) for k, v in metrics.items()}
        summary["train/epoch"] = step / run.steps_per_epoch
        summary["train/learning_rate"] = rates[i]  # at the chunk's first step
        m.writer.write_scalars(step, summary)
    if all(m.error is not None for m in run.members):
        good = run.checkpointer.latest_good_step()
        if good is None:
            kept = f"No checkpoint was saved yet in {run.checkpointer.directory}."
        else:
            kept = (
                f"The last good checkpoint (step {good}), read back and verified, "
                f"is kept in {run.checkpointer.directory}."
            )
        raise NonFiniteLossError(
            f"{'; '.join(m.error for m in run.members)}; training stopped. {kept} "
            "Lower the learning rate or check the data.",
            step=min(m.error_step for m in run.members),
        )


def validate(run: Run, step: int) -> None:
    """The validation ELBO of every member still counting, logged at `step`."""
    for i, m in enumerate(run.members):
        if m.error is None and len(m.data.valid):
            params = run.member_tree(run.state.eval_params, i)
            valid = evaluate.elbo_summary(run.model, params, m.data.valid, m.key_eval)
            m.writer.write_scalars(step, {f"valid/{k}": v for k, v in valid.items()})
            log.info("epoch %d step %d: %s", step // run.steps_per_epoch, step, valid)


def describe_member(run: Run, m: Member) -> dict[str, Any]:
    """What member `m`'s model was built from, as JSON: config, data shape and preprocessing."""
    description = {
        "config": m.config.to_dict(),
        "data_shape": list(m.data.train.shape[1:]),
        "data_dtype": str(m.data.train.dtype),  # the model's data, after preprocessing
        "preprocessing": dataclasses.asdict(m.data.preprocessing or run.preprocessing),
        "custom_model": repr(run.model) if run.custom_model else None,
    }
    return json.loads(json.dumps(description, default=str))


def save(run: Run, step: int, train_time_s: float) -> None:
    """A checkpoint, with the format version and what `vaejax.load` rebuilds each model from."""
    metadata = {
        "train_time_s": train_time_s,
        "format_version": build.FORMAT_VERSION,
        "members": [describe_member(run, m) for m in run.members],
    }
    run.checkpointer.save(step, run.state, metadata=metadata)


def _is_eval_step(run: Run, step: int) -> bool:
    epoch, offset = divmod(step, run.steps_per_epoch)
    every = run.config.train.eval_every_epochs
    return offset == 0 and (epoch % every == 0 or step == run.total_steps)


def train_loop(run: Run) -> tuple[int, float]:
    """Trains until the last step or the time budget; returns the step and the training time."""
    cfg = run.config.train
    step = _step(run.state)
    for m in run.members:
        m.writer = MetricWriter(m.workdir, purge_step=step + 1) if is_primary() else NullWriter()
    last_checkpoint, perms, perm_epoch = step, None, -1
    bar = tqdm.tqdm(
        total=None if run.fit_to_budget else run.total_steps,
        initial=step,
        unit="step",
        dynamic_ncols=True,
        disable=not cfg.progress_bar,
        mininterval=1.0,
    )
    train_start = now() - run.trained_s
    elapsed = lambda: now() - train_start
    while (run.fit_to_budget or step < run.total_steps) and elapsed() < run.budget:
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


def _test_numbers(run: Run, m: Member, params: Any) -> dict[str, Any]:
    ev, d = run.config.eval, m.data
    test_x = d.test[: ev.num_test] if ev.get("num_test") else d.test
    test = evaluate.evaluate_test(
        run.model,
        params,
        test_x,
        jax.random.fold_in(m.key_eval, 10**6),
        iwae_samples=ev.iwae_samples,
        nll_samples=ev.nll_samples,
        nll_chunk_size=ev.nll_chunk_size,
        batch_size=ev.batch_size,
    )
    if ev.nll_samples:
        num_dims = int(np.prod(d.train.shape[1:]))
        nll = test[f"nll_{ev.nll_samples}"]
        bpd = evaluate.bits_per_dim(nll, num_dims, run.preprocessing)
        if bpd is not None:
            test["bits_per_dim"] = bpd
    return test


def finish_member(run: Run, i: int, step: int, train_time: float, start_time: float) -> dict:
    """Member i's test numbers, figures and results.json (in its own directory)."""
    m = run.members[i]
    m.writer.flush()
    if m.error is not None:
        m.writer.close()
        return {"error": m.error, "config": m.config.to_dict()}
    params = jax.device_get(run.member_tree(run.state.eval_params, i))
    test = _test_numbers(run, m, params)
    d = m.data
    valid = evaluate.elbo_summary(run.model, params, d.valid, m.key_eval) if len(d.valid) else None
    m.writer.write_scalars(step, {f"test/{k}": v for k, v in test.items() if np.isscalar(v)})
    figures = write_figures(
        run.model, params, d, m.workdir, jax.random.fold_in(m.key_eval, 2), run.preprocessing
    )
    m.writer.close()
    results = {
        "test": test,
        "valid": valid,
        "steps": step,
        "epochs": step / run.steps_per_epoch,
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "devices": [str(dev) for dev in jax.devices()],
        "figures": figures,
        "config": m.config.to_dict(),
    }
    if run.custom_model:  # config.model did not describe it
        results["model"] = repr(run.model)
    if run.custom_data:
        results["data_info"] = d.info | {"preprocessing": run.preprocessing.name}
    _write_json(os.path.join(m.workdir, "results.json"), results)
    log.info("Test: %s", {k: v for k, v in test.items() if k != "kl_per_dim"})
    return results


def finish(run: Run, step: int, train_time: float, start_time: float) -> dict[str, Any]:
    """Evaluates every member on test and writes the results; a population's in `members/`."""
    run.checkpointer.close()
    per_member = [
        finish_member(run, i, step, train_time, start_time) for i in range(len(run.members))
    ]
    if not run.stacked:
        return per_member[0]
    results = {
        "members": per_member,
        "population_size": len(run.members),
        "steps": step,
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "devices": [str(dev) for dev in jax.devices()],
        "config": run.config.to_dict(),
    }
    _write_json(os.path.join(run.workdir, "results.json"), results)
    return results


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0 of a multi-process run (every
    process computes the same values; one writes them)."""
    return jax.process_index() == 0


def _write_json(path: str, obj: Any) -> None:
    if is_primary():
        write_json(path, obj)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[train.TrainState, dict[str, Any]]:
    """Trains the configured VAE in `workdir`, evaluates it on test, writes results.json.

    Args:
      config: the experiment's config (see experiments/configs/mnist.py).
      workdir: checkpoints, metrics, figures and results.json go here; rerunning resumes.
      model: a VAE to train instead of the one `config.model` describes (e.g. an encoder of
        your own); its likelihood replaces `config.model.likelihood`. The other config
        sections (objective, optimizer, training, evaluation) still apply.
      data: splits to train on instead of loading `config.data` (e.g. tabular features
        `[N, D]`); `data.preprocessing`, if set, says how they were made (it decides the
        per-batch data noise, figures and bits/dim), else `config.data.preprocessing`.
        Image figures are drawn only for image-shaped data.
      members: train a population instead (`vaejax.population`): per member, values of
        `population.POPULATION_FIELDS` that override `config`. Member i's metrics, figures,
        config.json and results.json go to `<workdir>/members/<i>/`.

    Returns:
      `(state, results)`: the trained `TrainState` (for a population, stacked along a leading
      member axis: `population.unstack(state, i)` is member i's) and the results as written to
      results.json (for a population `{"members": [each member's results, or {"error": ...}],
      ...}`; a member whose loss turns non-finite stops counting while the others train on).
    """
    start_time = time.time()
    if config.get("distributed"):
        initialize_distributed()
    log.info("JAX devices: %s", jax.devices())
    # One run per workdir: a second is refused at once (on multi-host, process 0 holds it).
    lock = workdir_lib.hold(workdir) if is_primary() else contextlib.nullcontext()
    with lock:
        run = setup(config, workdir, model=model, data=data, members=members)
        for m in run.members:
            _write_json(os.path.join(m.workdir, "config.json"), m.config.to_dict())
        step, train_time = train_loop(run)
        return run.state, finish(run, step, train_time, start_time)


def train_and_evaluate_population(
    config: ml_collections.ConfigDict, workdir: str, members: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Trains one population (`train_and_evaluate(..., members=members)`); its results.

    Returns `{"members": [member i's results, or {"error": ...}], ...}`; the trained, stacked
    state is `train_and_evaluate`'s first return value.
    """
    return train_and_evaluate(config, workdir, members=members)[1]


def initialize_distributed() -> None:
    """`jax.distributed.initialize` for one process of a multi-process run (once per process).

    The coordinator and ranks come from the environment: `JAX_COORDINATOR_ADDRESS` (host:port of
    process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, or, where those two are unset, from a
    cluster manager JAX detects (SLURM, Open MPI, ...). On CPU the cross-process collectives
    are gloo's unless `jax_cpu_collectives_implementation` says otherwise.
    """
    if jax.distributed.is_initialized():
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    ranks = {}
    for name, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        value = os.environ.get(env)
        if value is not None:
            if not value.isdigit():
                raise ValueError(f"{env}={value!r} must be a non-negative integer.")
            ranks[name] = int(value)
    jax.distributed.initialize(**ranks)


def write_figures(
    model: networks.VAE,
    params: Any,
    d: data_lib.Data,
    workdir: str,
    key: jax.Array,
    preprocessing: data_lib.Preprocessing,
) -> list[str]:
    """Prior samples, reconstructions, curves and, for 2-D latents, manifold and code scatter.

    Samples, reconstructions and the manifold are drawn for image data (`[N, H, W(, C)]`) only.
    """
    bound = networks.bind(model, params)
    mean_image = jax.jit(lambda z: model.likelihood.mean(bound.decode(z)))
    shown_mean = lambda params: shown(model.likelihood.mean(params))
    shown = lambda x: preprocessing.to_pixels(np.asarray(x))
    images = d.test.ndim in (3, 4)
    paths = []
    if images:
        paths += [
            plots.save_samples(
                os.path.join(workdir, "samples.png"),
                shown_mean(bound.sample_prior(key, 100)),  # from the model's prior, top down
                value_range=(0, 1),
            ),
            plots.save_reconstructions(
                os.path.join(workdir, "reconstructions.png"),
                shown(d.test[:20]),
                shown_mean(bound.reconstruct(jnp.asarray(d.test[:20]))),
                value_range=(0, 1),
            ),
        ]
    curves = {
        f"{split}/{m}"
        for split in ("train", "valid")
        for m in ("loss", "elbo", "iwae", "log_likelihood", "kl")
    }
    records = [
        {k: v for k, v in r.items() if k == "step" or k in curves} for r in read_metrics(workdir)
    ]
    records = [r for r in records if len(r) > 1]
    if records:
        paths.append(plots.save_curves(os.path.join(workdir, "curves.png"), records))
    if bound.latent_sizes != (2,):  # one stochastic layer of two dimensions only
        return [os.path.basename(str(p)) for p in paths]
    codes = evaluate.elbo_terms(model, params, d.test, key)["posterior_mean"]
    if images:
        paths.append(
            plots.save_latent_manifold(
                os.path.join(workdir, "latent_manifold.png"),
                lambda z: shown(mean_image(jnp.asarray(z, jnp.float32))),
                value_range=(0, 1),
                axes=_manifold_axes(bound.prior, codes),
            )
        )
    paths.append(
        plots.save_latent_scatter(os.path.join(workdir, "latent_codes.png"), codes, d.test_labels)
    )
    return [os.path.basename(str(p)) for p in paths]


def _manifold_axes(prior: Any, codes: np.ndarray, n: int = 20) -> np.ndarray:
    """The 2-D manifold's grid `[n, 2]`: the prior's quantiles where it has them (equal prior
    mass per tile), else evenly over the 1st-99th percentiles of the test codes."""
    u = (np.arange(n) + 0.5) / n
    if hasattr(prior, "quantile"):
        return np.asarray(prior.quantile(np.stack([u, u], axis=-1)), np.float32)
    low, high = np.percentile(codes, [1, 99], axis=0)
    return (low + u[:, None] * (high - low)).astype(np.float32)
