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

import sys
import tempfile
import time

import jax
import numpy as np
from absl import flags

from experiments.configs import mnist
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax import experiment, population

# Its own flags, not absl's global ones: other entry points imported in the same process (the
# tests) mark their own flags (e.g. --workdir) as required there.
FLAGS = flags.FlagValues()
flags.DEFINE_bool(
    "quick", False, "A few steps per member: checks the script, not the speed.", flag_values=FLAGS
)
flags.DEFINE_list("members", ["1", "4", "16"], "Population sizes P to time.", flag_values=FLAGS)
flags.DEFINE_integer("steps", 300, "Steps per member (--quick: 20).", flag_values=FLAGS)
flags.DEFINE_integer(
    "examples", 10_000, "Synthetic training images held on device.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "model",
    "mnist",
    ["mnist", "small"],
    "mnist: the default config's 784-200-200-50 VAE; small: a 784-16-3 MLP VAE (the tests' "
    "model), where per-step overhead, not arithmetic, bounds a lone run.",
    flag_values=FLAGS,
)


def _block(tree):
    return jax.block_until_ready(tree)


def _timed_chunks(fn, state, chunks, idx_for):
    """Runs `fn` over `chunks`; returns (state, first-call seconds, rest seconds)."""
    t0 = time.perf_counter()
    state, m = fn(state, idx_for(chunks[0]))
    _block(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in chunks[1:]:
        state, m = fn(state, idx_for(c))
    _block(m)
    return state, first, time.perf_counter() - t0


def _data(examples: int) -> data_lib.Data:
    """Synthetic [0, 1] training images of MNIST's shape; a few binary test images."""
    rng = np.random.default_rng(0)
    train_x = rng.uniform(size=(examples, 28, 28, 1)).astype(np.float32)
    test_x = (rng.uniform(size=(8, 28, 28, 1)) > 0.5).astype(np.float32)
    empty = np.zeros((0, 28, 28, 1), np.float32)
    labels = [np.zeros(len(a), np.int32) for a in (train_x, empty, test_x)]
    info = {"name": "synthetic_uniform", "preprocessing": "dynamic_binarize"}
    return data_lib.Data(train_x, empty, test_x, *labels, info)


def benchmark(size: int, *, steps: int, examples: int) -> dict[str, float]:
    """Times the training loop's own set-up and compiled chunk, for a population and alone."""
    config = mnist.get_config()
    config.data.num_valid = 0
    config.train.batch_size = 100  # the batch the recorded tables were measured at
    if FLAGS.model == "small":
        config_lib.set_preset(config.model, "mlp", hidden_sizes=(16,), latent_dim=3)
    if FLAGS.quick:
        config.train.steps_per_dispatch = 10
    batch, per_dispatch = config.train.batch_size, config.train.steps_per_dispatch
    # One extra chunk: the first call (compile + run) is timed apart from the rest.
    num_chunks = 1 + max(1, steps // per_dispatch)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, examples, (size, num_chunks, per_dispatch, batch), dtype=np.int32)
    lr = config.optim.learning_rate
    members = [{"seed": i, "optim.learning_rate": lr * (1 + i / size)} for i in range(size)]
    data = _data(examples)
    chunks = list(range(num_chunks))
    with tempfile.TemporaryDirectory() as workdir:
        # Together.
        run = experiment.setup(config, f"{workdir}/pop", data=data, members=members)
        _, pop_compile, pop_train = _timed_chunks(run.chunk, run.state, chunks, lambda c: idx[:, c])
        # Alone, member after member, each with its own compiled chunk as a lone run builds it.
        sep_compile = sep_train = 0.0
        for i, cfg in enumerate(population.member_configs(config, members)):
            run = experiment.setup(cfg, f"{workdir}/{i}", data=data)
            args = lambda c, i=i: idx[i : i + 1, c]
            _, first, rest = _timed_chunks(run.chunk, run.state, chunks, args)
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
    main(FLAGS(sys.argv))
