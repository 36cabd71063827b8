"""Train state, the pure train step, and its compiled, data-parallel, multi-step form.

`train_step(state, batch, key) -> (state, metrics)` is pure. `make_train_chunk` wraps it in a
`lax.scan` over a chunk of batches gathered on device from the resident training set, jitted
once with the state donated, and sharded over a 1-D device mesh along the batch axis: the same
code runs on one CPU or eight GPUs. Noise is drawn for the global batch from the step's key and
partitioned with it (threefry is partitionable), so each device draws different noise for its
shard and the trajectory does not depend on the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaejax import conditioning, cpu_fastpaths, fields, networks
from vaejax.objectives import GRADIENT_ESTIMATORS, ElboTerms, elbo, iwae_bound
from vaejax.preprocessing import add_data_noise

OBJECTIVES = ("elbo", "iwae")
SCHEDULES = ("constant", "cosine", "exponential", "burda")


class TrainState(train_state.TrainState):
    """Flax TrainState; `step` counts optimizer updates.

    With `ema_decay > 0` it also keeps `ema_params`, an exponential moving (Polyak) average of
    the parameters after each update, for evaluation (`eval_params`): an average over the last
    ~1 / (1 - decay) iterates carries less of the optimizer's noise than any one of them.
    """

    ema_params: Any = None
    ema_decay: float = struct.field(pytree_node=False, default=0.0)

    def apply_gradients(self, *, grads: Any, **kwargs) -> TrainState:
        new = super().apply_gradients(grads=grads, **kwargs)
        if not self.ema_decay:
            return new
        ema = optax.incremental_update(new.params, self.ema_params, 1.0 - self.ema_decay)
        return new.replace(ema_params=ema)

    @property
    def eval_params(self) -> Any:
        """The parameters to evaluate: the moving average where one is kept."""
        return self.params if self.ema_params is None else self.ema_params


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept.

    `step` is the first step whose loss was not finite, where known.
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the train step maximizes.

    Every field takes effect or is refused: settings that an objective cannot honour raise.

    Attributes:
      name: "elbo" (with `beta`, a linear KL warm-up over `warmup_steps` and `free_bits` nats
        per latent dimension, Kingma et al. 2016; `analytic_kl` as in `objectives.elbo`) or
        "iwae" (the bound with `num_samples` samples, which has no KL term to weight, warm up
        or floor).
      gradient_estimator: see `objectives.iwae_bound`; "stl" also for the ELBO, "dreg" for IWAE.
    """

    name: str = "elbo"
    num_samples: int = fields.at_least(1, default=1)
    beta: float = fields.real(lambda v: v >= 0, "a finite number >= 0", default=1.0)
    warmup_steps: int = fields.at_least(0, default=0)
    free_bits: float = fields.real(lambda v: v >= 0, "a finite number >= 0", default=0.0)
    analytic_kl: bool | None = None
    gradient_estimator: str = "reparameterized"

    def __post_init__(self):
        if self.name not in OBJECTIVES:
            raise ValueError(f"Unknown objective {self.name!r}; valid: {list(OBJECTIVES)}.")
        fields.check(self, "config.objective")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS or (
            self.name == "elbo" and self.gradient_estimator == "dreg"
        ):
            raise ValueError(
                f"Unknown gradient_estimator {self.gradient_estimator!r} for objective "
                f"{self.name!r}; valid: {list(GRADIENT_ESTIMATORS)} ('dreg' with 'iwae' only)."
            )
        kl_settings = {
            "beta": (self.beta, 1.0),
            "warmup_steps": (self.warmup_steps, 0),
            "free_bits": (self.free_bits, 0.0),
            "analytic_kl": (self.analytic_kl, None),
        }
        ignored = {k: v for k, (v, default) in kl_settings.items() if v != default}
        if self.name == "iwae" and ignored:
            raise ValueError(
                f"The IWAE bound has no separate KL term, so {ignored} would be ignored. Use "
                "objective.name='elbo' for these, or their defaults with 'iwae' "
                f"({ {k: d for k, (_, d) in kl_settings.items()} })."
            )
        if self.free_bits > 0 and self.analytic_kl is False:
            raise ValueError(
                f"free_bits={self.free_bits} floors each latent dimension's KL, which needs the "
                "analytic per-dimension KL; got analytic_kl=False. Set analytic_kl=None (or "
                "True) or free_bits=0."
            )

    def beta_at(self, step: jax.Array) -> jax.Array:
        """The KL weight at a step: `beta`, ramped up linearly over `warmup_steps`.

        Args:
          step: the optimizer steps taken before this update (`TrainState.step`), a scalar.

        Returns:
          A scalar: `beta * min(1, (step + 1) / warmup_steps)`, or `beta` with no warm-up.
        """
        if self.warmup_steps == 0:
            return jnp.asarray(self.beta, jnp.float32)
        return self.beta * jnp.minimum(1.0, (step + 1) / self.warmup_steps)


@dataclasses.dataclass(frozen=True)
class _TracedBetaObjective(Objective):
    """`Objective` whose `beta` is a traced per-member value (a population's, under vmap).

    The checks of `Objective.__post_init__` compare numbers on the host, which a tracer cannot
    do; every member's beta was checked with a host-side `Objective` before tracing.
    """

    def __post_init__(self):
        pass


def with_beta(objective: Objective, beta: jax.Array) -> Objective:
    """`objective` with a traced `beta` (one member's, inside the vmapped step).

    Args:
      objective: an `Objective`, checked on the host.
      beta: the member's KL weight, a traced scalar.

    Returns:
      An `Objective` with `objective`'s fields but `beta`, whose host-side checks are skipped.
    """
    return _TracedBetaObjective(**(dataclasses.asdict(objective) | {"beta": beta}))


def learning_rate_schedule(
    name: str,
    *,
    learning_rate: float,
    total_steps: int,
    steps_per_epoch: int,
    end_learning_rate: float | None = None,
) -> optax.Schedule:
    """Learning-rate schedules by name.

    "burda" is Burda et al. (2015)'s: stage i = 0..7 lasts 3^i epochs at
    learning_rate * 10^(-i/7) (3280 epochs in all); past the last stage it stays there.
    "cosine" and "exponential" decay from `learning_rate` to `end_learning_rate` over training.

    Args:
      name: one of `SCHEDULES`.
      learning_rate: the peak (the start).
      total_steps: the steps the decay spans.
      steps_per_epoch: for "burda"'s stages.
      end_learning_rate: the rate at the end (None: a tenth of the peak).

    Returns:
      An optax schedule: step -> rate.
    """
    end = learning_rate * 0.1 if end_learning_rate is None else end_learning_rate
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps, alpha=end / learning_rate)
    if name == "exponential":
        return optax.exponential_decay(learning_rate, total_steps, end / learning_rate)
    if name == "burda":
        boundaries = np.cumsum([3**i * steps_per_epoch for i in range(7)])
        values = [learning_rate * 10 ** (-i / 7) for i in range(8)]
        return optax.piecewise_constant_schedule(
            values[0], {int(b): values[i + 1] / values[i] for i, b in enumerate(boundaries)}
        )
    raise ValueError(f"Unknown learning-rate schedule {name!r}; valid: {list(SCHEDULES)}.")


def _memory_bytes(device: Any) -> int | None:
    """The memory a device's arrays may take: an accelerator's limit, the host's RAM on CPU."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _check_fits_in_memory(params: Any) -> None:
    """Refuses, before allocating, a model whose parameters, gradients and Adam's two moments
    (4x the parameters) cannot fit: a latent size of 2e8 gets its sizes, not RESOURCE_EXHAUSTED."""
    size = sum(math.prod(p.shape) * p.dtype.itemsize for p in jax.tree.leaves(params))
    limit = _memory_bytes(jax.devices()[0])
    if limit is not None and 4 * size > limit:
        largest = max(jax.tree.leaves_with_path(params), key=lambda kv: math.prod(kv[1].shape))
        raise ValueError(
            f"The model has {size / 2**30:.1f} GiB of parameters (largest: "
            f"{jax.tree_util.keystr(largest[0])} of shape {largest[1].shape}); with gradients and "
            f"Adam's moments that is {4 * size / 2**30:.1f} GiB, more than this device's "
            f"{limit / 2**30:.1f} GiB. Use smaller config.model sizes (latent_dim, hidden_sizes)."
        )


def create_train_state(
    key: jax.Array,
    model: networks.VAE,
    example_batch: np.ndarray,
    tx: optax.GradientTransformation,
    *,
    output_bias: dict[str, np.ndarray] | None = None,
    ema_decay: float = 0.0,
) -> TrainState:
    """Initial state; the decoder's output bias optionally starts from the data.

    Args:
      key: a PRNG key for the initializers.
      model: the VAE.
      example_batch: `[B, *data_shape]`, or `(x, y)` for a conditional model; only the
        shapes and dtypes matter.
      tx: the optimizer (`build.build_optimizer`).
      output_bias: the decoder heads' starting biases (`likelihood.output_bias(train_x)`).
      ema_decay: in (0, 1): also keep a moving average of the parameters; 0: none.

    Returns:
      A `TrainState` at step 0.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(
            f"ema_decay must be in [0, 1) (0: no moving average, e.g. 0.999: about the last "
            f"1000 steps); got {ema_decay}."
        )
    x, y = jax.tree.map(lambda a: jnp.asarray(a[:1]), conditioning.split(example_batch))
    _check_fits_in_memory(jax.eval_shape(lambda k: networks.init(model, k, x, y), key))
    params = networks.init(model, key, x, y)
    if output_bias is not None:
        params = networks.set_output_bias(params, output_bias)
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        ema_params=params if ema_decay else None,
        ema_decay=ema_decay,
    )


def loss_fn(
    params: Any,
    batch: jax.Array,
    key: jax.Array,
    step: jax.Array,
    *,
    model: networks.VAE,
    objective: Objective,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The negative objective, averaged over the batch (its one reduction), and metrics.

    With several stochastic layers the metrics also hold each layer's KL (`kl_z1`, ...).

    Args:
      params: the model's parameters (differentiated).
      batch: the model's data `[B, *data_shape]`, with any data noise already drawn; for a
        conditional model `(x, y)` with its side inputs `[B, ...]` (`conditioning.split`).
      key: a PRNG key for the samples of z.
      step: the optimizer step, a scalar (for the KL warm-up, `Objective.beta_at`).
      model: the VAE (or hierarchical model).
      objective: what to maximize (`Objective`).

    Returns:
      `(loss, metrics)`: the scalar loss, `-mean log p(x | z) + beta * KL` (the KL's batch
      mean, or with `free_bits` the sum of each dimension's floored batch mean) or the negated
      mean IWAE bound; and a dict of scalars: `"loss"` and `"elbo"`, `"log_likelihood"`,
      `"kl"`, `"beta"` (ELBO) or `"iwae"` (IWAE).
    """
    batch, y = conditioning.split(batch)
    bound = networks.bind(model, params, y=y)
    common = dict(model=bound, gradient_estimator=objective.gradient_estimator)
    if objective.name == "iwae":
        value = iwae_bound(key, batch, num_samples=objective.num_samples, **common)
        loss = -value.mean()
        return loss, {"loss": loss, "iwae": value.mean()}
    terms = elbo(
        key, batch, num_samples=objective.num_samples, analytic_kl=objective.analytic_kl, **common
    )
    beta = objective.beta_at(step)
    kl_penalty = terms.kl.mean()
    if objective.free_bits > 0:
        kl_penalty = _free_bits_penalty(terms, objective.free_bits)
    loss = -terms.log_likelihood.mean() + beta * kl_penalty
    metrics = {
        "loss": loss,
        "elbo": terms.elbo.mean(),
        "log_likelihood": terms.log_likelihood.mean(),
        "kl": terms.kl.mean(),
        "beta": beta,
    }
    if len(terms.kl_per_layer) > 1:
        metrics |= {f"kl_z{i + 1}": kl.mean() for i, kl in enumerate(terms.kl_per_layer)}
    return loss, metrics


def _free_bits_penalty(terms: ElboTerms, free_bits: float) -> jax.Array:
    """Free bits (Kingma et al. 2016): no pressure on a latent dimension of any layer whose
    batch-mean KL is under the floor."""
    if any(kl_dims is None for kl_dims in terms.kl_per_dim):
        raise ValueError(
            f"free_bits={free_bits} needs each layer's per-dimension KL in closed form, and this "
            "model's posterior and prior have none for some layer. Use free_bits=0 (or KL "
            "warm-up) with this model and prior."
        )
    floored = [jnp.maximum(kl_dims.mean(0), free_bits).sum() for kl_dims in terms.kl_per_dim]
    return functools.reduce(operator.add, floored)


def train_step(
    state: TrainState,
    batch: jax.Array,
    key: jax.Array,
    *,
    model: networks.VAE,
    objective: Objective,
    data_noise: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update on `batch` with noise from `key`. Pure.

    Args:
      state: the train state (`create_train_state`).
      batch: `[B, *data_shape]` as stored (intensities, where `data_noise` draws the data), or
        `(x, y)` for a conditional model (the noise is drawn for x only).
      key: this step's PRNG key (the loop folds the step in).
      model: the VAE.
      objective: what to maximize (`Objective`).
      data_noise: "binarize", "dequantize" or None (`data.DATA_NOISE`): draws the batch's data
        from the stored intensities first, from its own fold of `key`.

    Returns:
      `(state, metrics)`: the updated state and this step's scalars (loss, elbo, kl, ...).
    """
    noise_key, data_key = jax.random.split(key)
    x, y = conditioning.split(batch)
    x = add_data_noise(data_noise, data_key, x)
    batch = x if y is None else (x, y)
    grad_fn = jax.grad(loss_fn, has_aux=True)
    grads, metrics = grad_fn(
        state.params, batch, noise_key, state.step, model=model, objective=objective
    )
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.apply_gradients(grads=grads), metrics


def set_learning_rate(state: TrainState, rate: float | Sequence[float]) -> TrainState:
    """`state` with the learning rate of an optimizer built with `rate_from_host=True`.

    Args:
      state: a train state whose optimizer holds its rate (`build.build_optimizer`).
      rate: a scalar, or one rate per member `[P]` of a stacked population state.

    Returns:
      A new `TrainState`: the rate set in `opt_state`, with the dtype and sharding of the one
      it replaces.
    """
    current = optax.tree_utils.tree_get(state.opt_state, "learning_rate")
    rate = np.asarray(rate, current.dtype)
    rate = rate.reshape(current.shape) if rate.size == current.size else rate
    rate = jax.device_put(np.broadcast_to(rate, current.shape), current.sharding)
    return state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=rate))


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named "data" over the given (default: all local) devices.

    Args:
      devices: the devices; None or empty: `jax.local_devices()`.

    Returns:
      A `Mesh` of one axis, "data", over the devices.
    """
    return Mesh(np.array(devices or jax.local_devices()), ("data",))


def make_train_chunk(
    *,
    model: networks.VAE,
    objective: Objective,
    mesh: Mesh,
    data_noise: str | None = None,
    stacked: bool = False,
    shared_data: bool = True,
) -> Callable[..., tuple[TrainState, dict]]:
    """The compiled multi-step update.

    A lone state: `(state, train_x, idx [N, B], key) -> (state, metrics [N])`.
    `stacked`, a population (`vaejax.population`): `(states [P], train_x, idx [P, N, B],
    keys [P], betas [P]) -> (states, metrics [P, N])`, where `train_x` is `[D, ...]` shared by
    all members (`shared_data`) or `[P, D, ...]`; member i's steps are the lone chunk's for its
    state, indices and key, with its own `beta` in the objective. For a conditional model
    `train_x` is the pair `(x, y)` of the training set and its side inputs, gathered alike.

    Step s of the run uses `fold_in(key, s)`, so a chunk's result depends only on the state and
    the indices, not on how steps are grouped into chunks or devices.

    The steps run in one `lax.scan`, one dispatch per chunk, except where
    `cpu_fastpaths.prefer_per_step_dispatch` says otherwise (on CPU, a step with convolutions):
    there the same steps run as one jitted step per dispatch.

    Args:
      model: the VAE (or hierarchical model).
      objective: what to maximize (`Objective`).
      mesh: the devices; the batch axis `B` of `idx` is sharded over its "data" axis.
      data_noise: "binarize", "dequantize" or None, drawn per batch (`train_step`).
      stacked: the state is a population's, stacked on a leading member axis `[P]`.
      shared_data: with `stacked`, all members read one `train_x` `[D, ...]`; else each its
        own `[P, D, ...]`.

    Returns:
      The chunk function above; it donates the state passed in, and each metric comes back
      `[N]` (`[P, N]` stacked), one value per step.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    member_axes = (None,) if stacked else ()  # idx: ([P,] N, B)

    def one_step(state, train_x, idx_b, key, beta=None):
        batch = jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a[idx_b], batch_sharding), train_x
        )
        obj = objective if beta is None else with_beta(objective, beta)
        step_key = jax.random.fold_in(key, state.step)
        return train_step(state, batch, step_key, model=model, objective=obj, data_noise=data_noise)

    if stacked:
        one_step = jax.vmap(one_step, in_axes=(0, None if shared_data else 0, 0, 0, 0))

    def chunk(state, train_x, idx, *key_beta):
        steps = jnp.moveaxis(idx, len(member_axes), 0)  # [N, (P,) B]
        state, metrics = jax.lax.scan(lambda s, i: one_step(s, train_x, i, *key_beta), state, steps)
        return state, jax.tree.map(lambda m: jnp.moveaxis(m, 0, -1), metrics)  # [(P,) N]

    per_member = (replicated,) * (2 if stacked else 1)  # keys (and betas)
    compile_fn = lambda fn, idx_spec: jax.jit(
        fn,
        in_shardings=(replicated, replicated, NamedSharding(mesh, idx_spec), *per_member),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    scanned = compile_fn(chunk, PartitionSpec(*member_axes, None, "data"))
    platform = mesh.devices.flat[0].platform
    if platform != "cpu":
        return scanned
    stepped = compile_fn(one_step, PartitionSpec(*member_axes, "data"))
    per_step: list[bool] = []  # decided on the first call, from the step's operations

    def run(state, train_x, idx, *key_beta):
        # A device-side move: `idx` may span several processes' devices (multi-host).
        steps = jnp.moveaxis(idx, len(member_axes), 0)
        if not per_step:
            step_jaxpr = jax.make_jaxpr(one_step)(state, train_x, steps[0], *key_beta).jaxpr
            per_step.append(cpu_fastpaths.prefer_per_step_dispatch(step_jaxpr, platform))
        if not per_step[0]:
            return scanned(state, train_x, idx, *key_beta)
        metrics = []
        for i in range(steps.shape[0]):
            state, m = stepped(state, train_x, steps[i], *key_beta)
            metrics.append(m)
        return state, jax.tree.map(lambda *ms: jnp.stack(ms, axis=-1), *metrics)

    return run


def chunk_size(offset: int, steps_per_epoch: int, steps_per_dispatch: int) -> int:
    """Steps in the chunk starting at `offset` within an epoch; chunks are epoch-aligned.

    Args:
      offset: the chunk's first step within the epoch, in `[0, steps_per_epoch)`.
      steps_per_epoch: the steps of one epoch.
      steps_per_dispatch: the most steps of one chunk.

    Returns:
      The steps up to the next multiple of `steps_per_dispatch`, but not past the epoch's end.
    """
    return min(steps_per_dispatch - offset % steps_per_dispatch, steps_per_epoch - offset)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Refuses a batch size that the mesh's devices cannot split evenly.

    Args:
      batch_size: the global batch size B.
      mesh: the mesh the batch is sharded over.

    Raises:
      ValueError: `batch_size` is not a multiple of `mesh.size`.
    """
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {mesh.size} devices of the mesh; "
            f"use a multiple of {mesh.size}."
        )
