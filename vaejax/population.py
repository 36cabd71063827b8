"""Members of a run, and populations: P VAEs trained at once, vmapped over a member axis.

A lone run has one member. A population stacks P train states along a leading member axis and
the chunk vmaps `train.train_step` over it (`train.make_train_chunk(stacked=True)`), so one
dispatch trains every member. Members differ only in what keeps the program's shapes:

  seed                 initialisation, data order, binarization noise and evaluation keys;
  optim.learning_rate  via `optax.inject_hyperparams`: each member's optimizer state holds its rate;
  objective.beta       a traced per-member value in the objective.

Each member follows the trajectory it follows alone with the same values, up to float rounding
(tests/test_population.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaejax import build, distributed, networks, train
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax.writers import MetricWriter

log = logging.getLogger(__name__)

# Config fields that may differ between the members of one population.
POPULATION_FIELDS = ("seed", "optim.learning_rate", "objective.beta")
# Schedules whose construction is traceable in the learning rate (per-member rates need that).
TRACEABLE_SCHEDULES = ("constant", "cosine")


def stack(trees: Sequence[Any]) -> Any:
    """Stacks equal-structure pytrees along a new leading member axis.

    Args:
      trees: pytrees of one structure, one per member.

    Returns:
      The pytree of their leaves stacked, each `[P, ...]`.
    """
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Member `i` of a stacked pytree.

    Args:
      tree: a pytree whose leaves have a leading member axis.
      i: the member's index.

    Returns:
      The pytree of each leaf's `[i]`.
    """
    return jax.tree.map(lambda x: x[i], tree)


def member_configs(
    config: ml_collections.ConfigDict, members: Sequence[Mapping[str, Any]]
) -> list[ml_collections.ConfigDict]:
    """One config per member: `config` with the member's values of `POPULATION_FIELDS`.

    Args:
      config: the base config.
      members: per member, dotted field -> value, for fields of `POPULATION_FIELDS`.

    Returns:
      A resolved copy of `config` per member ("seed" set as an int, the others as floats).

    Raises:
      ValueError: a member sets a field outside `POPULATION_FIELDS`.
    """
    out = []
    for member in members:
        unknown = sorted(set(member) - set(POPULATION_FIELDS))
        if unknown:
            raise ValueError(
                f"Population members may differ only in {list(POPULATION_FIELDS)}; got {unknown}. "
                "Sweep other fields across trials instead."
            )
        cfg = config.copy_and_resolve_references()
        cfg.update_from_flattened_dict(
            {k: int(v) if k == "seed" else float(v) for k, v in member.items()}
        )
        out.append(cfg)
    return out


@dataclasses.dataclass
class Member:
    """One trained model of a run: its config, data, keys and output directory."""

    config: config_lib.Config
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


def make_members(
    configs: Sequence[config_lib.Config],
    workdir: str,
    data: data_lib.Data | None,
    *,
    stacked: bool,
) -> list[Member]:
    """One `Member` per config (a lone run: one); the data are loaded once per distinct seed.

    Args:
      configs: one config per member.
      workdir: the run's directory.
      data: the splits every member trains on; None loads each config's `data`.
      stacked: a population, whose members write to `<workdir>/members/<i>/`; else the one
        member writes to `workdir`.

    Returns:
      The members, each with its keys (init, train, data order, eval) derived from its seed.
    """
    datas: dict[int, data_lib.Data] = {}
    out = []
    for i, cfg in enumerate(configs):
        if data is None and cfg.seed not in datas:
            d = cfg.data
            datas[cfg.seed] = data_lib.load(
                d.name,
                preprocessing=d.preprocessing,
                data_dir=d.data_dir,
                num_valid=d.num_valid,
                num_train=d.num_train,
                seed=cfg.seed,
            )
        root = jax.random.key(cfg.seed)
        out.append(
            Member(
                config=cfg,
                data=data if data is not None else datas[cfg.seed],
                workdir=os.path.join(workdir, "members", str(i)) if stacked else workdir,
                keys=tuple(jax.random.fold_in(root, k) for k in range(4)),
            )
        )
    return out


def optimizer(config, members: list[Member], *, total_steps, steps_per_epoch, fit_to_budget):
    """The optimizer every member shares; per-member rates, where they differ, live in its state.

    Args:
      config: the run's config; its `optim` section builds the optimizer for per-member rates.
      members: the run's members.
      total_steps: steps of the whole run.
      steps_per_epoch: steps per epoch.
      fit_to_budget: the schedule is fitted to the time budget (the rate is set from the host).

    Returns:
      An optax `GradientTransformation`; with per-member rates, an `optax.inject_hyperparams` one.

    Raises:
      ValueError: the members' rates differ and the schedule is not in `TRACEABLE_SCHEDULES`.
    """
    rates = [float(m.config.optim.learning_rate) for m in members]
    if fit_to_budget or len(set(rates)) == 1:
        return build.build_optimizer(
            members[0].config.optim,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            rate_from_host=fit_to_budget,
        )
    optim = config.optim
    if optim.schedule not in TRACEABLE_SCHEDULES:
        raise ValueError(
            f"Per-member learning rates need a schedule in {TRACEABLE_SCHEDULES}; got "
            f"{optim.schedule!r} with rates {sorted(set(rates))}. Sweep the rate across "
            "trials instead, use one rate per population, or fit_schedule_to_budget=True."
        )

    def make(learning_rate):  # traced: `build_optimizer` only does arithmetic on it
        return build.build_optimizer(
            optim,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            learning_rate=learning_rate,
        )

    return optax.inject_hyperparams(make)(learning_rate=rates[0])


def init_state(config, model, members: list[Member], tx, *, stacked: bool) -> train.TrainState:
    """Member i's state initialised from its own key, as a lone run would be; stacked if needed.

    Args:
      config: the run's config (`model.output_bias`, `optim.ema_decay`).
      model: the VAE.
      members: the run's members.
      tx: the optimizer they share (`optimizer`).
      stacked: stack the states along a leading member axis (a population).

    Returns:
      The lone member's train state, or every member's stacked, each with its own learning rate
      where the optimizer's state holds one.
    """
    states = []
    for m in members:
        train_x = m.data.train
        bias = model.likelihood.output_bias(train_x) if config.model.output_bias else None
        train_x = data_lib.inputs(m.data, "train", networks.is_conditional(model))
        ema = config.optim.ema_decay
        state = train.create_train_state(
            m.keys[0], model, train_x, tx, output_bias=bias, ema_decay=ema
        )
        if stacked and isinstance(state.opt_state, optax.InjectStatefulHyperparamsState):
            state = train.set_learning_rate(state, m.config.optim.learning_rate)
        states.append(state)
    return stack(states) if stacked else states[0]


def make_chunk(
    config,
    model: networks.VAE,
    members: list[Member],
    mesh: Mesh,
    preprocessing: data_lib.Preprocessing,
    *,
    stacked: bool,
) -> Callable[[train.TrainState, np.ndarray], tuple[train.TrainState, dict]]:
    """The compiled chunk of a lone run (P = 1) or the vmapped chunk of a population.

    Args:
      config: the run's config; its `objective` section sets the loss.
      model: the VAE.
      members: the run's members (their train keys, betas and, if it differs, train split).
      mesh: the device mesh; batches are sharded along its "data" axis.
      preprocessing: the data's; its per-batch noise, and whether the train split varies by seed.
      stacked: vmap over a leading member axis of the state (a population).

    Returns:
      ``(state, idx [P, n, B]) -> (state, metrics {name: [P, n]})``.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    # The train split differs between seeds only when it was binarized once per seed.
    shared = not preprocessing.train_varies_with_seed or len({id(m.data) for m in members}) == 1
    inputs = lambda m: data_lib.inputs(m.data, "train", networks.is_conditional(model))
    train_x = (
        inputs(members[0])
        if shared
        else jax.tree.map(lambda *a: np.stack(a), *map(inputs, members))
    )
    train_x = jax.tree.map(lambda a: distributed.to_global(a, replicated), train_x)
    objective = config.objective
    keys = [m.keys[1] for m in members]
    fn = train.make_train_chunk(
        model=model,
        objective=objective,
        mesh=mesh,
        data_noise=preprocessing.noise,  # drawn per batch by the train step
        stacked=stacked,
        shared_data=shared,
    )
    if not stacked:
        idx_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))

        def lone(state, idx):
            state, metrics = fn(
                state, train_x, distributed.to_global(idx[0], idx_sharding), keys[0]
            )
            return state, jax.tree.map(lambda a: a[None], metrics)

        return lone
    idx_sharding = NamedSharding(mesh, PartitionSpec(None, None, "data"))
    betas = jnp.asarray([m.config.objective.beta for m in members], jnp.float32)
    keys = jnp.stack(keys)
    return lambda state, idx: fn(
        state, train_x, distributed.to_global(idx, idx_sharding), keys, betas
    )


def record(
    members: Sequence[Member], step: int, n: int, metrics: dict, rates: list, steps_per_epoch: int
) -> None:
    """Writes each member's part of a chunk's metrics ending at `step`.

    A member whose loss turned non-finite stops counting: its `Member.error` and
    `Member.error_step` are set, and nothing more is written for it.

    Args:
      members: the run's members.
      step: the step the chunk ends at.
      n: the chunk's number of steps.
      metrics: the chunk's metrics on the host, `{name: [P, n]}`.
      rates: each member's learning rate at the chunk's first step.
      steps_per_epoch: steps per epoch, for the logged epoch.
    """
    for i, m in enumerate(members):
        if m.error is not None:
            continue
        loss = metrics["loss"][i]
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            m.error_step = step - n + int(bad[0]) + 1
            m.error = f"Non-finite loss {loss[bad[0]]} at step {m.error_step}"
            if len(members) > 1:
                log.warning("Population member %d stopped counting: %s", i, m.error)
            continue
        summary = {f"train/{k}": float(np.mean(v[i])) for k, v in metrics.items()}
        summary["train/epoch"] = step / steps_per_epoch
        summary["train/learning_rate"] = rates[i]  # at the chunk's first step
        m.writer.write_scalars(step, summary)


def results(per_member: list[dict[str, Any]], config: config_lib.Config) -> dict[str, Any]:
    """A population's results: each member's (or `{"error": ...}` for one that stopped).

    Args:
      per_member: each member's results, in member order.
      config: the run's config.

    Returns:
      ``{"members": per_member, "population_size": P, "config": config.given}``.
    """
    return {"members": per_member, "population_size": len(per_member), "config": config.given}
