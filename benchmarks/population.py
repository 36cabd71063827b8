"""Wall time of training P VAEs as one population (one compiled program) vs P separate runs.

  python -m benchmarks.population [--quick] [--model=mnist|small] [--members=1,4,16] [--steps=300]

The default MNIST model (Burda et al.'s 784-200-200-50 tanh VAE, Bernoulli, dynamic binarization,
batch 100, Adam with a cosine schedule; --model=small: a 784-16-3 MLP) on synthetic [0, 1] images
of MNIST's shape (training speed does not depend on the pixel values; no dataset is needed).
Members differ in seed and learning rate, as a population sweep's do. For each P it reports:

  population   compile: the first call of the vmapped chunk; train: `--steps` steps of every
               member, in chunks of `steps_per_dispatch`, after that first call;
  separate     the same steps run member after member, each with its own compiled chunk as
               `train_and_evaluate` builds one per run (compile: the sum of first calls);

and the speed-up of the population on train time and on compile + train. A lone run already
scans `steps_per_dispatch` steps per call, so on a CPU, which one such model keeps busy, the
population's gain is its single compilation; on a GPU, which one small model leaves mostly idle,
the P members also share the device's width.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec

from experiments.configs import mnist
from vaejax import experiment, likelihoods, population, train

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "A few steps per member: checks the script, not the speed.")
flags.DEFINE_list("members", ["1", "4", "16"], "Population sizes P to time.")
flags.DEFINE_integer("steps", 300, "Steps per member (--quick: 20).")
flags.DEFINE_integer("examples", 10_000, "Synthetic training images held on device.")
flags.DEFINE_enum(
    "model",
    "mnist",
    ["mnist", "small"],
    "mnist: the default config's 784-200-200-50 VAE; small: a 784-16-3 MLP VAE (the tests' "
    "model), where per-step overhead, not arithmetic, bounds a lone run.",
)


def _block(tree):
    return jax.block_until_ready(tree)


def _timed_chunks(fn, state, chunks, args_for):
    """Runs `fn` over `chunks`; returns (state, first-call seconds, rest seconds)."""
    t0 = time.perf_counter()
    state, m = fn(state, *args_for(chunks[0]))
    _block(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in chunks[1:]:
        state, m = fn(state, *args_for(c))
    _block(m)
    return state, first, time.perf_counter() - t0


def benchmark(size: int, *, steps: int, examples: int) -> dict[str, float]:
    config = mnist.get_config()
    config.train.batch_size = 100  # the batch the recorded tables were measured at
    if FLAGS.model == "small":
        config.model.preset, config.model.hidden_sizes, config.model.latent_dim = "mlp", (16,), 3
    batch, per_dispatch = config.train.batch_size, config.train.steps_per_dispatch
    if FLAGS.quick:
        per_dispatch = 10
    # One extra chunk: the first call (compile + run) is timed apart from the rest.
    num_chunks = 1 + max(1, steps // per_dispatch)
    total_steps = num_chunks * per_dispatch
    rng = np.random.default_rng(0)
    train_x = rng.uniform(size=(examples, 28, 28, 1)).astype(np.float32)
    lik = likelihoods.get(config.model.likelihood)
    model = experiment.build_model(config.model, train_x.shape[1:], lik)
    mesh = train.data_mesh(jax.devices())
    replicated = NamedSharding(mesh, PartitionSpec())
    objective = train.Objective(**config.objective)
    lrs = [config.optim.learning_rate * (1 + i / size) for i in range(size)]
    idx = rng.integers(0, examples, (size, num_chunks, per_dispatch, batch), dtype=np.int32)
    keys = [jax.random.key(i) for i in range(size)]
    bias = lik.output_bias(train_x)
    x = jax.device_put(train_x, replicated)

    # Together.
    make_tx = population.optimizer_factory(
        config.optim, total_steps=total_steps, steps_per_epoch=examples // batch
    )
    states = population.init_states(
        [jax.random.fold_in(k, 0) for k in keys],
        model,
        train_x,
        population.population_optimizer(make_tx, lrs),
        learning_rates=lrs,
        output_biases=[bias] * size,
    )
    states = jax.device_put(states, replicated)
    chunk = population.make_population_chunk(model=model, objective=objective, mesh=mesh)
    betas = jnp.ones(size)
    stacked_keys = jnp.stack(keys)
    _, pop_compile, pop_train = _timed_chunks(
        chunk,
        states,
        list(range(num_chunks)),
        lambda c: (x, jnp.asarray(idx[:, c]), stacked_keys, betas),
    )

    # Alone, member after member.
    sep_compile = sep_train = 0.0
    for i in range(size):
        optim = config.optim.copy_and_resolve_references()
        optim.learning_rate = lrs[i]
        tx = experiment.build_optimizer(
            optim, total_steps=total_steps, steps_per_epoch=examples // batch
        )
        state = train.create_train_state(
            jax.random.fold_in(keys[i], 0), model, train_x, tx, output_bias=bias
        )
        state = jax.device_put(state, replicated)
        fn = train.make_train_chunk(model=model, objective=objective, mesh=mesh)
        _, first, rest = _timed_chunks(
            fn, state, list(range(num_chunks)), lambda c, i=i: (x, jnp.asarray(idx[i, c]), keys[i])
        )
        sep_compile += first
        sep_train += rest
    member_steps = size * (num_chunks - 1) * per_dispatch
    return {
        "P": size,
        "member_steps": member_steps,
        "pop_compile_s": pop_compile,
        "pop_train_s": pop_train,
        "sep_compile_s": sep_compile,
        "sep_train_s": sep_train,
        "pop_steps_per_s": member_steps / pop_train,
        "sep_steps_per_s": member_steps / sep_train,
        "speedup_train": sep_train / pop_train,
        "speedup_total": (sep_compile + sep_train) / (pop_compile + pop_train),
    }


def main(argv) -> list[dict[str, float]]:
    del argv
    steps = 20 if FLAGS.quick else FLAGS.steps
    rows = [benchmark(int(p), steps=steps, examples=FLAGS.examples) for p in FLAGS.members]
    device = jax.devices()[0]
    # The table is this script's output, so it goes to stdout.
    print(
        f"\nPopulation vs separate runs, {FLAGS.model} model: {device.platform} "
        f"({device.device_kind}), "
        f"{len(jax.devices())} device(s); {steps} steps per member after the first chunk\n"
    )
    print(
        "| P | member-steps | population: compile s | train s | member-steps/s "
        "| separate: compile s | train s | member-steps/s | speed-up (train) "
        "| speed-up (compile + train) |"
    )
    print("| ---: " * 10 + "|")
    for r in rows:
        print(
            f"| {r['P']} | {r['member_steps']} | {r['pop_compile_s']:.1f} | "
            f"{r['pop_train_s']:.2f} | {r['pop_steps_per_s']:.0f} | {r['sep_compile_s']:.1f} | "
            f"{r['sep_train_s']:.2f} | {r['sep_steps_per_s']:.0f} | {r['speedup_train']:.2f}x | "
            f"{r['speedup_total']:.2f}x |"
        )
    return rows


if __name__ == "__main__":
    app.run(main)
