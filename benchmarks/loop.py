"""vaejax's training loop as the benchmarks drive it: the loop's own set-up and chunks.

`VaejaxLoop` is `experiment.setup` on synthetic data and a benchmarked model, then
`experiment.epoch_perms` and `experiment.run_chunk` as `experiment.train_loop` calls them
(without its validation, checkpoints and metric files), so a benchmark times the loop users run.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from experiments.configs import burda2015 as burda_config
from experiments.configs import mnist as mnist_config
from vaejax import data, experiment, hierarchical, likelihoods, networks, train


@dataclasses.dataclass(frozen=True)
class Model:
    """One benchmarked model; `steps_per_dispatch` is what its experiment config uses."""

    name: str
    description: str
    batch_size: int
    kind: str  # "mlp" | "conv"
    latent_dim: int
    hidden_sizes: tuple[int, ...] = ()
    activation: str = "relu"
    steps_per_dispatch: int = 100


def models() -> dict[str, Model]:
    default = mnist_config.get_config().train.steps_per_dispatch
    burda = burda_config.get_config().train.steps_per_dispatch
    specs = [
        Model("mlp500", "784-500-20 ReLU MLP, batch 128", 128, "mlp", 20, (500,), "relu", default),
        Model(  # the upstream PyTorch example's model (benchmarks.peers, pair "mlp")
            "mlp400", "784-400-20 ReLU MLP, batch 128", 128, "mlp", 20, (400,), "relu", default
        ),
        Model(
            "burda_b20", "784-200-200-50 tanh, batch 20", 20, "mlp", 50, (200, 200), "tanh", burda
        ),
        Model(
            "burda_b100",
            "784-200-200-50 tanh, batch 100",
            100,
            "mlp",
            50,
            (200, 200),
            "tanh",
            default,
        ),
        # A conv step takes 0.1-1 s on a 2-core CPU: chunks of 5 keep the timed runs short. (Its
        # convolutions are matmuls on CPU, `vaejax.conv`, so the chunk is a `lax.scan` again.)
        Model("conv", "conv_vae, latent 32, batch 100", 100, "conv", 32, steps_per_dispatch=5),
    ]
    return {m.name: m for m in specs}


def vaejax_model(m: Model) -> Any:
    likelihood = likelihoods.Bernoulli()
    if m.kind == "burda2015_2layer":
        return hierarchical.burda2015_2layer(data_shape=common.MNIST_SHAPE, likelihood=likelihood)
    if m.kind == "conv":
        return networks.conv_vae(
            data_shape=common.MNIST_SHAPE, likelihood=likelihood, latent_dim=m.latent_dim
        )
    return networks.mlp_vae(
        data_shape=common.MNIST_SHAPE,
        likelihood=likelihood,
        latent_dim=m.latent_dim,
        hidden_sizes=m.hidden_sizes,
        activation=m.activation,
    )


class VaejaxLoop:
    """The training loop's set-up and chunks on `x` (binary images), model `m`, adam at 1e-3.

    `data_noise` "binarize": each batch is binarized afresh (dynamic binarization, as the
    default config trains); None: `x` is trained as it is.
    """

    def __init__(
        self,
        m: Model,
        x: np.ndarray,
        *,
        steps_per_dispatch: int,
        data_noise: str | None = None,
        seed: int = 0,
    ):
        config = mnist_config.get_config()
        config.seed = seed
        config.data.num_valid = 0
        config.optim.schedule, config.optim.learning_rate = "constant", 1e-3
        config.train.batch_size, config.train.steps_per_dispatch = m.batch_size, steps_per_dispatch
        config.train.progress_bar = False
        preprocessing = "dynamic_binarize" if data_noise == "binarize" else "static_binarize"
        none = np.zeros((0, *x.shape[1:]), x.dtype)
        labels = [np.zeros(len(a), np.int32) for a in (x, none, none)]
        splits = data.Data(x, none, none, *labels, {"preprocessing": preprocessing})
        self._workdir = tempfile.TemporaryDirectory()  # the run's checkpointer needs one
        self.run_ = experiment.setup(config, self._workdir.name, model=vaejax_model(m), data=splits)
        self.model, self.data_noise = self.run_.model, data_noise
        self.objective = train.Objective(**config.objective)
        self.train_x, self.batch_size = x, m.batch_size
        self.steps_per_epoch = self.run_.steps_per_epoch
        self.steps_per_dispatch = steps_per_dispatch
        self.step, self.perms, self.perm_epoch, self.last_loss = 0, None, -1, math.nan

    @property
    def state(self) -> train.TrainState:
        return self.run_.state

    def chunk_lengths(self) -> set[int]:
        """The distinct chunk lengths an epoch uses (each compiles once)."""
        spd, spe = self.steps_per_dispatch, self.steps_per_epoch
        return {min(spd, spe - o) for o in range(0, spe, spd)}

    def run(self, num_steps: int) -> int:
        """Runs whole chunks until at least `num_steps` steps are done; returns the steps run."""
        done = 0
        while done < num_steps:
            epoch = self.step // self.steps_per_epoch
            if epoch != self.perm_epoch:
                self.perms, self.perm_epoch = experiment.epoch_perms(self.run_, epoch), epoch
            n, metrics, _ = experiment.run_chunk(self.run_, self.step, 0.0, self.perms)
            if not np.all(np.isfinite(metrics["loss"])):
                raise FloatingPointError(f"non-finite loss at step {self.step}")
            self.last_loss = float(np.mean(metrics["loss"]))
            self.step += n
            done += n
        return done

    def warm_up(self) -> None:
        """Compiles every chunk length the timed runs will meet, without training."""
        for n in sorted(self.chunk_lengths()):
            state = jax.tree.map(jnp.copy, self.state)  # the chunk donates its state
            jax.block_until_ready(self.run_.chunk(state, np.zeros((1, n, self.batch_size), int)))

    def single_step(self) -> tuple[Callable, tuple]:
        """vaejax's train step on one batch, unjitted, and its arguments (for FLOP counting)."""
        fn = lambda state, batch, key: train.train_step(
            state,
            batch,
            key,
            model=self.model,
            objective=self.objective,
            data_noise=self.data_noise,
        )
        return fn, (self.state, jnp.asarray(self.train_x[: self.batch_size]), jax.random.key(0))
