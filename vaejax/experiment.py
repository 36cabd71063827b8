"""`train_and_evaluate(config, workdir)`: the training loop, logs, checkpoints, figures, results.

The one place that reads a config: it turns the ConfigDict into typed calls of the library.
Rerunning with the same workdir resumes from the latest checkpoint; the data order and keys
are functions of (seed, step), so a resumed run ends where an uninterrupted one would. Only the
evaluation and monitoring settings may change on resume; other training settings are refused.

`train.time_budget_s` bounds the run's training time, counted across resumes (each checkpoint
records it). With `train.fit_schedule_to_budget` the learning-rate schedule runs on that clock
instead of on steps: it ends when the budget does, however fast the machine turns out to be.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.sharding import NamedSharding, PartitionSpec

from vaejax import data as data_lib
from vaejax import evaluate, likelihoods, networks, plots, train
from vaejax.checkpoints import Checkpointer
from vaejax.posteriors import DiagonalGaussian
from vaejax.writers import MetricWriter, read_metrics

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept.

    `step` is the first step whose loss was not finite, where known.
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


def build_model(cfg: ml_collections.ConfigDict, data_shape, likelihood) -> networks.VAE:
    """The VAE named by `cfg.preset`, with the config's latent size, widths and posterior."""
    if cfg.preset not in networks.PRESETS:
        raise ValueError(f"Unknown model preset {cfg.preset!r}; valid: {sorted(networks.PRESETS)}.")
    kwargs: dict[str, Any] = dict(
        data_shape=tuple(data_shape),
        likelihood=likelihood,
        latent_dim=cfg.latent_dim,
        posterior=DiagonalGaussian(cfg.posterior),
        input_scale=cfg.get("input_scale", 1.0),
    )
    if cfg.preset == "mlp":
        kwargs |= dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation)
    return networks.PRESETS[cfg.preset](**kwargs)


def build_schedule(
    cfg: ml_collections.ConfigDict, *, total_steps: int, steps_per_epoch: int
) -> optax.Schedule:
    return train.learning_rate_schedule(
        cfg.schedule,
        learning_rate=cfg.learning_rate,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        end_learning_rate=cfg.get("end_learning_rate"),
    )


def build_optimizer(
    cfg: ml_collections.ConfigDict,
    *,
    total_steps: int,
    steps_per_epoch: int,
    rate_from_host: bool = False,
) -> optax.GradientTransformation:
    """Adam on the configured schedule, optionally after gradient clipping.

    `rate_from_host`: the state holds the learning rate, set by the training loop
    (`set_learning_rate`), instead of a schedule of the step count.
    """
    schedule = build_schedule(cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    if rate_from_host:
        adam = optax.inject_hyperparams(optax.adam)(
            learning_rate=schedule(0), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps
        )
    else:
        adam = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.get("grad_clip_norm"):
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adam)
    return adam


# What may change when a run resumes: how it is watched, evaluated and stopped, not what it trains.
_RESUMABLE = (
    "eval.",
    "train.progress_bar",
    "train.time_budget_s",
    "train.checkpoint_every_steps",
    "train.eval_every_epochs",
    "data.data_dir",
    "distributed",
)


def set_learning_rate(state: train.TrainState, rate: float) -> train.TrainState:
    """`state` with the learning rate of an optimizer built with `rate_from_host=True`."""
    current = optax.tree_utils.tree_get(state.opt_state, "learning_rate")
    rate = jax.device_put(np.asarray(rate, current.dtype), current.sharding)
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
        for k, v in _flatten(json.loads(json.dumps(settings, default=str))).items()
        if not k.startswith(_RESUMABLE)
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
    with open(path, "w") as f:
        json.dump(flat, f, indent=2)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def to_global(x: Any, sharding: NamedSharding) -> Any:
    """Host arrays -> global jax Arrays; works on one host and across hosts alike."""
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        x,
    )


def display_images(x: np.ndarray, info: dict) -> np.ndarray:
    """Preprocessed images (as `data.load` made them, described by `info`) -> [0, 1] for figures."""
    if info.get("preprocessing") == "standardize":
        return np.clip((x * info["std"] + info["mean"]) / info["max_value"], 0, 1)
    if info.get("preprocessing") == "integer":
        return x / info["max_value"]
    return x


def chunk_size(offset: int, steps_per_epoch: int, steps_per_dispatch: int) -> int:
    """Steps in the chunk starting at `offset` within an epoch; chunks are epoch-aligned."""
    return min(steps_per_dispatch - offset % steps_per_dispatch, steps_per_epoch - offset)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
) -> dict[str, Any]:
    """Trains the configured VAE in `workdir`, evaluates it on test, writes results.json.

    Args:
      config: the experiment's config (see experiments/configs/mnist.py).
      workdir: checkpoints, metrics, figures and results.json go here; rerunning resumes.
      model: a VAE to train instead of the one `config.model` describes (e.g. an encoder of
        your own); its likelihood replaces `config.model.likelihood`. The other config
        sections (objective, optimizer, training, evaluation) still apply.
      data: splits to train on instead of loading `config.data` (e.g. tabular features
        `[N, D]`); `data.info["preprocessing"]`, if present, says how they were made (it
        decides the per-batch data noise and bits/dim), else `config.data.preprocessing`.
        Image figures are drawn only for image-shaped data.
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    if config.get("distributed"):
        jax.distributed.initialize()  # multi-host: coordinator and ranks from the environment
    log.info("JAX devices: %s", jax.devices())

    # ---- data and model
    custom_model, custom_data = model is not None, data is not None
    if data is None:
        data = data_lib.load(
            config.data.name,
            preprocessing=config.data.preprocessing,
            data_dir=config.data.get("data_dir"),
            num_valid=config.data.num_valid,
            seed=config.seed,
        )
    d = data
    preprocessing = d.info.get("preprocessing", config.data.preprocessing)
    if model is None:
        likelihood = likelihoods.get(config.model.likelihood, **config.model.likelihood_kwargs)
    else:
        likelihood = model.likelihood
    data_noise = data_lib.DATA_NOISE.get(preprocessing)  # drawn per batch by the train step
    # Checked once on the host, before any compilation: a mismatch fails here, clearly.
    # Train data to be binarized per batch hold intensities, which a Bernoulli would reject.
    for split in (d.valid, d.test) if data_noise == "binarize" else d[:3]:
        if len(split):  # num_valid=0 trains on all train examples and validates on none
            likelihood.check_data(split)
    if model is None:
        model = build_model(config.model, d.train.shape[1:], likelihood)

    # ---- state, steps, sharding
    mesh = train.data_mesh(jax.devices())
    batch_size = config.train.batch_size
    train.check_batch_size(batch_size, mesh)
    steps_per_epoch = len(d.train) // batch_size
    total_steps = config.train.num_epochs * steps_per_epoch
    budget, fit_to_budget = check_time_budget(config.train)
    schedule = build_schedule(
        config.optim, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    tx = build_optimizer(
        config.optim,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        rate_from_host=fit_to_budget,
    )
    root = jax.random.key(config.seed)
    k_init, k_train, k_data, k_eval = (jax.random.fold_in(root, i) for i in range(4))
    bias = likelihood.output_bias(d.train) if config.model.output_bias else None
    state = train.create_train_state(
        k_init, model, d.train, tx, output_bias=bias, ema_decay=config.optim.get("ema_decay", 0.0)
    )
    checkpointer = Checkpointer(workdir)
    resuming = checkpointer.latest_step() is not None
    check_same_training(config.to_dict(), workdir, resuming=resuming)
    trained_s = 0.0  # training time the checkpoint holds
    if resuming:
        state = checkpointer.restore(state)
        trained_s = checkpointer.metadata().get("train_time_s", 0.0)
        log.info("Resumed from step %d in %s", int(state.step), checkpointer.directory)
    replicated = NamedSharding(mesh, PartitionSpec())
    state = to_global(state, replicated)
    train_x = to_global(d.train, replicated)
    idx_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    objective = train.Objective(**config.objective)
    train_chunk = train.make_train_chunk(
        model=model,
        objective=objective,
        mesh=mesh,
        data_noise=data_noise,
    )

    # ---- the loop
    step = int(state.step)
    writer = MetricWriter(workdir, purge_step=step + 1)
    last_checkpoint, perm, perm_epoch = step, None, -1
    bar = tqdm.tqdm(
        total=None if fit_to_budget else total_steps,
        initial=step,
        unit="step",
        dynamic_ncols=True,
        disable=not config.train.progress_bar,
        mininterval=1.0,
    )
    train_start = now() - trained_s
    elapsed = lambda: now() - train_start
    while (fit_to_budget or step < total_steps) and elapsed() < budget:
        if fit_to_budget:  # the schedule's step that the time spent so far corresponds to
            rate = float(schedule(elapsed() / budget * total_steps))
            state = set_learning_rate(state, rate)
        else:
            rate = float(schedule(step))
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm = np.asarray(
                data_lib.epoch_permutation(
                    jax.random.fold_in(k_data, epoch), len(d.train), batch_size
                )
            )
            perm_epoch = epoch
        n = chunk_size(offset, steps_per_epoch, config.train.steps_per_dispatch)
        state, metrics = train_chunk(
            state, train_x, to_global(perm[offset : offset + n], idx_sharding), k_train
        )
        metrics = jax.device_get(metrics)  # the one host read per chunk
        bad = np.flatnonzero(~np.isfinite(metrics["loss"]))
        if bad.size:
            raise NonFiniteLossError(
                f"Non-finite loss {metrics['loss'][bad[0]]} at step {step + bad[0] + 1}; "
                f"training stopped. The last good checkpoint (step {checkpointer.latest_step()}) "
                f"is kept in {checkpointer.directory}. Lower the learning rate or check the data.",
                step=step + int(bad[0]) + 1,
            )
        step += n
        summary = {f"train/{k}": float(np.mean(v)) for k, v in metrics.items()}
        summary["train/epoch"] = step / steps_per_epoch
        summary["train/learning_rate"] = rate  # at the chunk's first step
        writer.write_scalars(step, summary)
        bar.update(n)
        bar.set_postfix(epoch=epoch, loss=f"{summary['train/loss']:.2f}", refresh=False)
        epoch_done = step % steps_per_epoch == 0
        if (
            len(d.valid)
            and epoch_done
            and ((epoch + 1) % config.train.eval_every_epochs == 0 or step == total_steps)
        ):
            valid = evaluate.elbo_summary(model, state.eval_params, d.valid, k_eval)
            writer.write_scalars(step, {f"valid/{k}": v for k, v in valid.items()})
            log.info("epoch %d step %d: %s", epoch + 1, step, valid)
        if step - last_checkpoint >= config.train.checkpoint_every_steps or step == total_steps:
            checkpointer.save(step, state, metadata={"train_time_s": elapsed()})
            last_checkpoint = step
    bar.close()
    train_time = elapsed()
    if step != last_checkpoint:  # stopped by the time budget
        checkpointer.save(step, state, metadata={"train_time_s": train_time})
    writer.flush()

    # ---- final evaluation on test, figures, results
    params = jax.device_get(state.eval_params)
    ev = config.eval
    test_x = d.test[: ev.num_test] if ev.get("num_test") else d.test
    test = evaluate.evaluate_test(
        model,
        params,
        test_x,
        jax.random.fold_in(k_eval, 10**6),
        iwae_samples=ev.iwae_samples,
        nll_samples=ev.nll_samples,
        nll_chunk_size=ev.nll_chunk_size,
        batch_size=ev.batch_size,
    )
    num_dims = int(np.prod(d.train.shape[1:]))
    if ev.nll_samples:
        bpd = evaluate.bits_per_dim(
            test[f"nll_{ev.nll_samples}"], num_dims, preprocessing=preprocessing, info=d.info
        )
        if bpd is not None:
            test["bits_per_dim"] = bpd
    valid = evaluate.elbo_summary(model, params, d.valid, k_eval) if len(d.valid) else None
    writer.write_scalars(step, {f"test/{k}": v for k, v in test.items() if np.isscalar(v)})
    figures = write_figures(model, params, d, workdir, jax.random.fold_in(k_eval, 2))
    writer.close()
    checkpointer.close()
    results = {
        "test": test,
        "valid": valid,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "devices": [str(dev) for dev in jax.devices()],
        "figures": figures,
        "config": config.to_dict(),
    }
    if custom_model:  # config.model did not describe it
        results["model"] = repr(model)
    if custom_data:
        results["data_info"] = d.info
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    log.info("Test: %s", {k: v for k, v in test.items() if k != "kl_per_dim"})
    return results


def write_figures(model, params, d: data_lib.Data, workdir: str, key: jax.Array) -> list[str]:
    """Prior samples, reconstructions, curves and, for 2-D latents, manifold and code scatter.

    Samples, reconstructions and the manifold are drawn for image data (`[N, H, W(, C)]`) only.
    """
    encode, decode = networks.bind(model, params)
    mean_image = jax.jit(lambda z: model.likelihood.mean(decode(z)))
    latent_dim = model.encoder.latent_dim
    shown = lambda x: display_images(np.asarray(x), d.info)
    images = d.test.ndim in (3, 4)
    paths = []
    if images:
        paths += [
            plots.save_samples(
                os.path.join(workdir, "samples.png"),
                shown(mean_image(jax.random.normal(key, (100, latent_dim)))),
                value_range=(0, 1),
            ),
            plots.save_reconstructions(
                os.path.join(workdir, "reconstructions.png"),
                shown(d.test[:20]),
                shown(mean_image(encode(jnp.asarray(d.test[:20]))["mean"])),
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
    if latent_dim == 2 and images:
        paths.append(
            plots.save_latent_manifold(
                os.path.join(workdir, "latent_manifold.png"),
                lambda z: shown(mean_image(jnp.asarray(z, jnp.float32))),
                value_range=(0, 1),
            )
        )
    if latent_dim == 2:
        codes = evaluate.elbo_terms(model, params, d.test, key)["posterior_mean"]
        paths.append(
            plots.save_latent_scatter(
                os.path.join(workdir, "latent_codes.png"), codes, d.test_labels
            )
        )
    return [os.path.basename(str(p)) for p in paths]
