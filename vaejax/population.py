"""Populations: P VAEs trained at once in one compiled program, vmapped over a member axis.

Small models leave a big device idle. A population stacks P train states along a leading member
axis and runs `jax.vmap` of the scanned `train.train_step` over it inside one jitted chunk, so one
dispatch trains every member. Members differ in what does not change the program's shapes:

  seed                 initialisation, data order, binarization noise and evaluation keys;
  optim.learning_rate  via `optax.inject_hyperparams`: each member's optimizer state holds its rate;
  objective.beta       a traced per-member value in the objective.

Everything else (model, likelihood, batch size, schedule shape) is shared. Each member follows
exactly the trajectory that `experiment.train_and_evaluate` gives it alone with the same seed and
values, up to float rounding (tests/test_population.py checks this).

`make_population_chunk` and `stack`/`unstack` are the pure pieces;
`train_and_evaluate_population(config, workdir, members)` is the config-reading loop that the sweep
runner calls for a population trial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaejax import data as data_lib
from vaejax import evaluate, experiment, likelihoods, networks, train
from vaejax.checkpoints import Checkpointer
from vaejax.writers import MetricWriter

log = logging.getLogger(__name__)

# Config fields that may differ between the members of one population.
POPULATION_FIELDS = ("seed", "optim.learning_rate", "objective.beta")
# Schedules whose construction is traceable in the learning rate (per-member rates need that).
TRACEABLE_SCHEDULES = ("constant", "cosine")


def stack(trees: Sequence[Any]) -> Any:
    """Stacks equal-structure pytrees along a new leading member axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Member `i` of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


@dataclasses.dataclass(frozen=True)
class _TracedBetaObjective(train.Objective):
    """`train.Objective` whose `beta` is a traced per-member value.

    The checks of `Objective.__post_init__` compare numbers on the host, which a tracer cannot
    do; every member's beta was checked with a host-side `Objective` before tracing.
    """

    def __post_init__(self):
        pass


def with_beta(objective: train.Objective, beta: jax.Array) -> train.Objective:
    """`objective` with a traced `beta` (one member's, inside the vmapped step)."""
    fields = {f.name: getattr(objective, f.name) for f in dataclasses.fields(objective)}
    return _TracedBetaObjective(**(fields | {"beta": beta}))


def population_optimizer(
    make_optimizer: Callable[[Any], optax.GradientTransformation], learning_rates: Sequence[float]
) -> optax.GradientTransformation:
    """The optimizer shared by all members; per-member rates live in its state.

    With one distinct rate it is `make_optimizer(rate)` itself. Otherwise it is
    `optax.inject_hyperparams(make_optimizer)`, rebuilt each step from the learning rate held in
    the (per-member) optimizer state, which `init_states` sets; `make_optimizer` must then accept
    a traced rate.
    """
    if len(set(learning_rates)) == 1:
        return make_optimizer(learning_rates[0])
    return optax.inject_hyperparams(make_optimizer)(learning_rate=learning_rates[0])


def init_states(
    keys: jax.Array,
    model: networks.VAE,
    example_batch: np.ndarray,
    tx: optax.GradientTransformation,
    *,
    learning_rates: Sequence[float],
    output_biases: Sequence[dict[str, np.ndarray] | None],
) -> train.TrainState:
    """Stacked initial states, member i initialised from `keys[i]` as a lone run would be."""
    states = []
    for key, lr, bias in zip(keys, learning_rates, output_biases, strict=True):
        state = train.create_train_state(key, model, example_batch, tx, output_bias=bias)
        if isinstance(state.opt_state, optax.InjectStatefulHyperparamsState):
            state.opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        states.append(state)
    return stack(states)


def make_population_chunk(
    *,
    model: networks.VAE,
    objective: train.Objective,
    mesh: Mesh,
    data_noise: str | None = None,
    shared_data: bool = True,
) -> Callable[..., tuple[train.TrainState, dict]]:
    """The compiled population update.

    `(states [P], train_x, idx [P, N, B], keys [P], betas [P]) -> (states, metrics [P, N])`,
    where `train_x` is `[D, ...]` shared by all members (`shared_data`) or `[P, D, ...]`.
    Member i's chunk is exactly `train.make_train_chunk`'s for its state, indices, key and beta:
    step s uses `fold_in(keys[i], s)`.
    """
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

    def member_chunk(state, train_x, idx, key, beta):
        step_fn = lambda s, batch, k: train.train_step(
            s,
            batch,
            k,
            model=model,
            objective=with_beta(objective, beta),
            data_noise=data_noise,
        )

        def body(state, idx_b):
            batch = jax.lax.with_sharding_constraint(train_x[idx_b], batch_sharding)
            return step_fn(state, batch, jax.random.fold_in(key, state.step))

        return jax.lax.scan(body, state, idx)

    chunk = jax.vmap(member_chunk, in_axes=(0, None if shared_data else 0, 0, 0, 0))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        chunk,
        in_shardings=(
            replicated,
            replicated,
            NamedSharding(mesh, PartitionSpec(None, None, "data")),
            replicated,
            replicated,
        ),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


# ---- the config-reading loop (the population analogue of experiment.train_and_evaluate)


def member_configs(
    config: ml_collections.ConfigDict, members: Sequence[Mapping[str, Any]]
) -> list[ml_collections.ConfigDict]:
    """One config per member: `config` with the member's values of `POPULATION_FIELDS`."""
    out = []
    for member in members:
        unknown = sorted(set(member) - set(POPULATION_FIELDS))
        if unknown:
            raise ValueError(
                f"Population members may differ only in {list(POPULATION_FIELDS)}; got {unknown}. "
                "Sweep other fields across trials instead."
            )
        cfg = config.copy_and_resolve_references()
        for dotted, value in member.items():
            node = cfg
            *path, leaf = dotted.split(".")
            for p in path:
                node = node[p]
            node[leaf] = int(value) if leaf == "seed" else float(value)
        out.append(cfg)
    return out


def optimizer_factory(optim: ml_collections.ConfigDict, *, total_steps, steps_per_epoch):
    def make(learning_rate):
        # A fresh ConfigDict may hold a traced rate; `build_optimizer` only does arithmetic on it.
        cfg = ml_collections.ConfigDict(optim.to_dict() | {"learning_rate": learning_rate})
        return experiment.build_optimizer(
            cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch
        )

    return make


def train_and_evaluate_population(
    config: ml_collections.ConfigDict, workdir: str, members: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Trains one population in one compiled program; evaluates and reports every member.

    Args:
      config: the shared config (as for `experiment.train_and_evaluate`).
      workdir: the population's directory: its stacked checkpoints and `results.json`;
        member i's figures, metrics, `config.json` and `results.json` go to `members/<i>/`.
      members: per member, values of `POPULATION_FIELDS` that override `config`.

    Returns:
      `{"members": [results of member i, as train_and_evaluate's, or {"error": ...}], ...}`.
      A member whose loss turns non-finite stops counting (its error says where) while the
      others train on; rerunning with the same workdir resumes from the latest checkpoint.
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    if not members:
        raise ValueError("A population needs at least one member; got none.")
    configs = member_configs(config, members)
    size = len(configs)
    seeds = [int(c.seed) for c in configs]
    lrs = [float(c.optim.learning_rate) for c in configs]
    objectives = [train.Objective(**c.objective) for c in configs]  # checks each beta
    if len(set(lrs)) > 1 and config.optim.schedule not in TRACEABLE_SCHEDULES:
        raise ValueError(
            f"Per-member learning rates need a schedule in {TRACEABLE_SCHEDULES}; got "
            f"{config.optim.schedule!r} with rates {sorted(set(lrs))}. Sweep the rate across "
            "trials instead, or use one rate per population."
        )
    ema_decay = config.optim.get("ema_decay", 0.0)
    if ema_decay or config.data.num_valid == 0:
        raise ValueError(
            "A population evaluates each member's own parameters on a validation split; got "
            f"optim.ema_decay={ema_decay}, data.num_valid={config.data.num_valid}. Set "
            "ema_decay=0 and num_valid > 0, or run these configs as separate trials."
        )
    if config.train.get("fit_schedule_to_budget"):
        raise ValueError(
            "A population's members follow their schedules by steps; got "
            "train.fit_schedule_to_budget=True. Set it False (time_budget_s still stops "
            "training), or run these configs as separate trials."
        )
    budget, _ = experiment.check_time_budget(config.train)
    member_dirs = [os.path.join(workdir, "members", str(i)) for i in range(size)]
    for cfg, d in zip(configs, member_dirs, strict=True):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(cfg.to_json_best_effort(indent=2))

    # ---- data: train is shared unless it is binarized once per seed
    datas = {
        seed: data_lib.load(
            config.data.name,
            preprocessing=config.data.preprocessing,
            data_dir=config.data.get("data_dir"),
            num_valid=config.data.num_valid,
            seed=seed,
        )
        for seed in dict.fromkeys(seeds)
    }
    member_data = [datas[s] for s in seeds]
    shared = config.data.preprocessing != "static_binarize" or len(datas) == 1
    likelihood = likelihoods.get(config.model.likelihood, **config.model.likelihood_kwargs)
    data_noise = data_lib.DATA_NOISE.get(config.data.preprocessing)
    for d in datas.values():
        for split in (d.valid, d.test) if data_noise == "binarize" else d[:3]:
            likelihood.check_data(split)
    first = member_data[0]
    model = experiment.build_model(config.model, first.train.shape[1:], likelihood)

    # ---- states, steps, sharding
    mesh = train.data_mesh(jax.devices())
    batch_size = config.train.batch_size
    train.check_batch_size(batch_size, mesh)
    steps_per_epoch = len(first.train) // batch_size
    total_steps = config.train.num_epochs * steps_per_epoch
    make_tx = optimizer_factory(
        config.optim, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    tx = population_optimizer(make_tx, lrs)
    roots = [jax.random.key(s) for s in seeds]
    k_init, k_train, k_data, k_eval = ([jax.random.fold_in(r, i) for r in roots] for i in range(4))
    biases = [
        likelihood.output_bias(d.train) if config.model.output_bias else None for d in member_data
    ]
    states = init_states(k_init, model, first.train, tx, learning_rates=lrs, output_biases=biases)
    checkpointer = Checkpointer(workdir)
    resuming = checkpointer.latest_step() is not None
    settings = config.to_dict() | {"members": [dict(m) for m in members]}
    experiment.check_same_training(settings, workdir, resuming=resuming)
    trained_s = 0.0  # training time the checkpoint holds
    if resuming:
        states = checkpointer.restore(states)
        trained_s = checkpointer.metadata().get("train_time_s", 0.0)
        log.info("Resumed population from step %d", int(states.step[0]))
    replicated = NamedSharding(mesh, PartitionSpec())
    states = experiment.to_global(states, replicated)
    train_x = first.train if shared else np.stack([d.train for d in member_data])
    train_x = experiment.to_global(train_x, replicated)
    idx_sharding = NamedSharding(mesh, PartitionSpec(None, None, "data"))
    keys = jnp.stack(k_train)
    betas = jnp.asarray([o.beta for o in objectives], jnp.float32)
    chunk_fn = make_population_chunk(
        model=model,
        objective=objectives[0],
        mesh=mesh,
        data_noise=data_noise,
        shared_data=shared,
    )

    # ---- the loop
    step = int(states.step[0])
    writers = [MetricWriter(d, purge_step=step + 1) for d in member_dirs]
    errors: list[str | None] = [None] * size
    last_checkpoint, perms, perm_epoch = step, None, -1
    train_start = experiment.now() - trained_s
    elapsed = lambda: experiment.now() - train_start
    while step < total_steps and elapsed() < budget:
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perms = np.stack(
                [
                    np.asarray(
                        data_lib.epoch_permutation(
                            jax.random.fold_in(k, epoch), len(first.train), batch_size
                        )
                    )
                    for k in k_data
                ]
            )
            perm_epoch = epoch
        n = experiment.chunk_size(offset, steps_per_epoch, config.train.steps_per_dispatch)
        idx = experiment.to_global(perms[:, offset : offset + n], idx_sharding)
        states, metrics = chunk_fn(states, train_x, idx, keys, betas)
        metrics = jax.device_get(metrics)  # the one host read per chunk: {name: [P, n]}
        step += n
        for i in range(size):
            if errors[i] is not None:
                continue
            bad = np.flatnonzero(~np.isfinite(metrics["loss"][i]))
            if bad.size:
                errors[i] = (
                    f"Non-finite loss {metrics['loss'][i][bad[0]]} at step "
                    f"{step - n + bad[0] + 1}; member {i} stopped counting. Lower its learning "
                    "rate or check the data."
                )
                log.warning("Population member %d: %s", i, errors[i])
                continue
            summary = {f"train/{k}": float(np.mean(v[i])) for k, v in metrics.items()}
            summary["train/epoch"] = step / steps_per_epoch
            writers[i].write_scalars(step, summary)
        if all(e is not None for e in errors):
            raise experiment.NonFiniteLossError(f"Every member diverged: {errors}")
        epoch_done = step % steps_per_epoch == 0
        if epoch_done and (
            (epoch + 1) % config.train.eval_every_epochs == 0 or step == total_steps
        ):
            for i in range(size):
                if errors[i] is None:
                    params_i = unstack(states.params, i)
                    valid = evaluate.elbo_summary(model, params_i, member_data[i].valid, k_eval[i])
                    writers[i].write_scalars(step, {f"valid/{k}": v for k, v in valid.items()})
            log.info("population: epoch %d step %d", epoch + 1, step)
        if step - last_checkpoint >= config.train.checkpoint_every_steps or step == total_steps:
            checkpointer.save(step, states, metadata={"train_time_s": elapsed()})
            last_checkpoint = step
    train_time = elapsed()
    if step != last_checkpoint:  # stopped by the time budget
        checkpointer.save(step, states, metadata={"train_time_s": train_time})
    checkpointer.close()

    # ---- per-member evaluation, figures and results, as a lone run writes them
    all_params = jax.device_get(states.params)
    ev = config.eval
    results_members = []
    for i in range(size):
        writers[i].flush()
        if errors[i] is not None:
            writers[i].close()
            results_members.append({"error": errors[i], "config": configs[i].to_dict()})
            continue
        d, params = member_data[i], unstack(all_params, i)
        test_x = d.test[: ev.num_test] if ev.get("num_test") else d.test
        test = evaluate.evaluate_test(
            model,
            params,
            test_x,
            jax.random.fold_in(k_eval[i], 10**6),
            iwae_samples=ev.iwae_samples,
            nll_samples=ev.nll_samples,
            nll_chunk_size=ev.nll_chunk_size,
            batch_size=ev.batch_size,
        )
        if ev.nll_samples:
            bpd = evaluate.bits_per_dim(
                test[f"nll_{ev.nll_samples}"],
                int(np.prod(d.train.shape[1:])),
                preprocessing=config.data.preprocessing,
                info=d.info,
            )
            if bpd is not None:
                test["bits_per_dim"] = bpd
        valid = evaluate.elbo_summary(model, params, d.valid, k_eval[i])
        writers[i].write_scalars(step, {f"test/{k}": v for k, v in test.items() if np.isscalar(v)})
        figures = experiment.write_figures(
            model, params, d, member_dirs[i], jax.random.fold_in(k_eval[i], 2)
        )
        writers[i].close()
        res = {
            "test": test,
            "valid": valid,
            "steps": step,
            "epochs": step / steps_per_epoch,
            "train_time_s": train_time,
            "wall_time_s": time.time() - start_time,
            "devices": [str(dev) for dev in jax.devices()],
            "figures": figures,
            "config": configs[i].to_dict(),
        }
        _write_json(os.path.join(member_dirs[i], "results.json"), res)
        results_members.append(res)
    results = {
        "members": results_members,
        "population_size": size,
        "steps": step,
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "devices": [str(dev) for dev in jax.devices()],
        "config": config.to_dict(),
    }
    _write_json(os.path.join(workdir, "results.json"), results)
    return results


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
