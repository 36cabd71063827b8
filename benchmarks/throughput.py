"""Training throughput: vaejax's loop against the upstream peers, with FLOP accounting.

  python -m benchmarks.throughput            # all models and peers, about 15 minutes on 2 cores
  python -m benchmarks.throughput --quick    # seconds: tiny step counts, for the tests
  python -m benchmarks.throughput --fastpaths --models=mlp500,conv   # each CPU fast path on/off
  python -m benchmarks.throughput --hierarchy   # two stochastic layers against the default's one

For each model, in this one process and on the same synthetic binary data of MNIST's shape:

  flax       the upstream flax `examples/vae` (784-500-20, batch 128: model "mlp500" only), its
             own `models.py` and `train_step`, jitted, driven as its loop drives it; read from
             `--flax_vae_dir` or $VAEJAX_FLAX_VAE_DIR (`benchmarks/peers.py` says how to get it),
             and skipped with a line when absent;
  vaejax     the library's loop as `vaejax/experiment.py` runs it: `train.make_train_chunk`
             (a `lax.scan` over `steps_per_dispatch` steps from the experiment config, batches
             gathered on device from the resident training set, state donated), one host read
             of the metrics per chunk;
  reference  not a peer: a simple host-driven loop of this benchmark's own (its own Flax
             modules, `optax.adam`, one jitted step per dispatch, a numpy batch gathered on the
             host and the loss pulled every step), kept as a fixed yardstick for every model;
             the flax example, which pulls nothing, runs about 1.5x faster than it;
  bound      only the step's matmuls (`benchmarks.common.matmul_replay`): this machine's
             float32 matmul speed on the model's own shapes, so `vaejax / bound` is the fraction
             of the hardware's FLOP bound the step reaches.

They are timed in turn, `--repeats` times in alternating order, and each ratio is the median of
its per-repeat ratios, so load from other jobs on the machine moves both sides alike. Then the
PyTorch peers (the upstream `examples/vae`, and vaejax's conv VAE written in PyTorch) run
against vaejax in alternating processes (`benchmarks.peers.compare`; `--peers=` skips them).

With `--fastpaths`, it instead times vaejax's loop (with dynamic binarization, as the default
config trains) with each training fast path of `vaejax.cpu_fastpaths` on and off, alternating,
for the models each path acts on: what each buys. With `--hierarchy`, it times Burda et al.'s
two-stochastic-layer model (`vaejax.hierarchical.burda2015_2layer`) against the one-layer
784-200-200-50 model in vaejax's loop, alternating, each beside its own matmul bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax.training import train_state

from benchmarks import common, peers
from benchmarks.loop import Model, VaejaxLoop, models
from vaejax import cpu_fastpaths, networks

# ----------------------------------------------------------------------------- the reference


class RefMLPEncoder(nn.Module):
    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: Callable

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        for size in self.hidden_sizes:
            h = self.activation(nn.Dense(size)(h))
        return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class RefMLPDecoder(nn.Module):
    hidden_sizes: Sequence[int]
    data_shape: tuple[int, ...]
    activation: Callable

    @nn.compact
    def __call__(self, z):
        h = z
        for size in self.hidden_sizes:
            h = self.activation(nn.Dense(size)(h))
        return nn.Dense(math.prod(self.data_shape))(h).reshape(-1, *self.data_shape)


class RefConvEncoder(nn.Module):
    latent_dim: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(32, (3, 3), strides=(2, 2))(x))
        h = nn.relu(nn.Conv(64, (3, 3), strides=(2, 2))(h))
        h = nn.relu(nn.Dense(256)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class RefConvDecoder(nn.Module):
    data_shape: tuple[int, ...]

    @nn.compact
    def __call__(self, z):
        h, w, c = self.data_shape
        x = nn.relu(nn.Dense(256)(z))
        x = nn.relu(nn.Dense(h // 4 * w // 4 * 64)(x)).reshape(-1, h // 4, w // 4, 64)
        x = nn.relu(nn.ConvTranspose(64, (3, 3), strides=(2, 2))(x))
        x = nn.relu(nn.ConvTranspose(32, (3, 3), strides=(2, 2))(x))
        return nn.Conv(c, (1, 1))(x)


class RefVAE(nn.Module):
    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x, key):
        mean, logvar = self.encoder(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        return self.decoder(z), mean, logvar


def reference_model(m: Model) -> RefVAE:
    if m.kind == "conv":
        return RefVAE(RefConvEncoder(m.latent_dim), RefConvDecoder(common.MNIST_SHAPE))
    act = networks.activation(m.activation)
    return RefVAE(
        RefMLPEncoder(m.hidden_sizes, m.latent_dim, act),
        RefMLPDecoder(m.hidden_sizes[::-1], common.MNIST_SHAPE, act),
    )


def reference_step(model: RefVAE) -> Callable:
    """The typical example's step: jitted, not donated, metrics returned every step."""

    @jax.jit
    def step(state, batch, key):
        def loss_fn(params):
            logits, mean, logvar = model.apply({"params": params}, batch, key)
            bce = optax.sigmoid_binary_cross_entropy(logits, batch).reshape(len(batch), -1)
            bce = bce.sum(-1).mean()
            kl = -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar), -1).mean()
            return bce + kl, {"loss": bce + kl, "bce": bce, "kl": kl}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), metrics

    return step


class ReferenceLoop:
    """Host-driven: numpy batches, host key splits, one dispatch and one host read per step."""

    def __init__(self, m: Model, x: np.ndarray, seed: int = 0):
        self.model = reference_model(m)
        key = jax.random.key(seed)
        params = self.model.init(key, x[: m.batch_size], key)["params"]
        self.state = train_state.TrainState.create(
            apply_fn=self.model.apply, params=params, tx=optax.adam(1e-3)
        )
        self.step_fn = reference_step(self.model)
        self.x, self.batch_size = x, m.batch_size
        self.rng = np.random.default_rng(seed)
        self.key = jax.random.key(seed + 1)
        self.perm, self.position = self._new_epoch(), 0

    def _new_epoch(self) -> np.ndarray:
        n = len(self.x) // self.batch_size
        return self.rng.permutation(len(self.x))[: n * self.batch_size].reshape(n, -1)

    def run(self, num_steps: int) -> float:
        loss = math.nan
        for _ in range(num_steps):
            if self.position == len(self.perm):
                self.perm, self.position = self._new_epoch(), 0
            batch = self.x[self.perm[self.position]]
            self.position += 1
            self.key, key = jax.random.split(self.key)
            self.state, metrics = self.step_fn(self.state, batch, key)
            loss = float(metrics["loss"])
        return loss


# ----------------------------------------------------------------------------- measurement


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark(
    m: Model,
    x: np.ndarray,
    *,
    repeats: int,
    seconds: float,
    quick: bool,
    flax_dir: pathlib.Path | None = None,
) -> dict:
    """Times the reference, vaejax, the matmul bound and, for "mlp500" with `flax_dir`, the
    upstream flax example, alternating in this process; medians of repeats."""
    spd = 4 if quick else m.steps_per_dispatch
    ref = ReferenceLoop(m, x)
    vjx = VaejaxLoop(m, x, steps_per_dispatch=spd)
    flax = None
    if flax_dir is not None and m.name == "mlp500":  # the flax example's own model and batch
        flax = peers.FlaxExampleLoop(flax_dir, x, m.batch_size)
        flax.run(2)

    # Compile everything first.
    ref.run(2)
    vjx.warm_up()
    step_fn, step_args = vjx.single_step()
    ops = common.matmul_ops(step_fn, *step_args)
    matmul_flops = common.total_flops(ops)
    xla_flops = common.xla_flops(jax.jit(step_fn), *step_args)
    ref_ops = common.matmul_ops(ref.step_fn, ref.state, x[: m.batch_size], jax.random.key(0))
    bound = common.matmul_bound(ops)
    bound(1)  # compiles the replay

    # Steps per timed run: about `seconds` of vaejax, in whole chunks.
    t_chunk = _timed(lambda: vjx.run(spd)) / spd
    steps = max(spd, int(seconds / t_chunk) // spd * spd)
    bound_calls = max(1, steps // 4)

    runs = {
        "reference": lambda: steps / _timed(lambda: ref.run(steps)),
        "vaejax": lambda: _vaejax_rate(vjx, steps),
        "bound": lambda: 1.0 / bound(bound_calls),
    }
    if flax is not None:
        runs["flax"] = lambda: steps / _timed(lambda: flax.run(steps))
    rates: dict[str, list[float]] = {name: [] for name in runs}
    memory: dict[str, float] = {"reference": 0.0, "vaejax": 0.0}
    for r in range(repeats):
        order = [n for n in runs if n != "bound"]
        order = (order if r % 2 == 0 else order[::-1]) + ["bound"]
        for name in order:
            with common.peak_rss() as mem:
                rates[name].append(runs[name]())
            if name in memory:
                memory[name] = max(memory[name], mem["peak_mb"])

    ratio = [v / r for v, r in zip(rates["vaejax"], rates["reference"], strict=True)]
    fraction = [v / b for v, b in zip(rates["vaejax"], rates["bound"], strict=True)]
    med = {k: common.median(v) for k, v in rates.items()}
    res = {
        "model": m.name,
        "description": m.description,
        "batch_size": m.batch_size,
        "steps_per_dispatch": spd,
        "steps_per_run": steps,
        "repeats": repeats,
        "reference_steps_per_s": med["reference"],
        "vaejax_steps_per_s": med["vaejax"],
        "bound_steps_per_s": med["bound"],
        "reference_examples_per_s": med["reference"] * m.batch_size,
        "vaejax_examples_per_s": med["vaejax"] * m.batch_size,
        "speedup": common.median(ratio),
        "speedup_range": common.spread(ratio),
        "fraction_of_bound": common.median(fraction),
        "fraction_range": common.spread(fraction),
        "reference_fraction_of_bound": common.median(
            [r / b for r, b in zip(rates["reference"], rates["bound"], strict=True)]
        ),
        "matmul_flops_per_step": matmul_flops,
        "reference_matmul_flops_per_step": common.total_flops(ref_ops),
        "xla_flops_per_step": xla_flops,
        "matmul_gflops_on_model_shapes": matmul_flops * med["bound"] / 1e9,
        "vaejax_gflops": matmul_flops * med["vaejax"] / 1e9,
        "reference_peak_rss_mb": memory["reference"],
        "vaejax_peak_rss_mb": memory["vaejax"],
        "device_peak_mb": common.device_peak_mb(),
        "rates": rates,
        "final_loss": {"reference": ref.run(1), "vaejax": vjx.last_loss},
    }
    if flax is not None:
        over_flax = [v / f for v, f in zip(rates["vaejax"], rates["flax"], strict=True)]
        res.update(
            flax_steps_per_s=med["flax"],
            flax_examples_per_s=med["flax"] * m.batch_size,
            speedup_over_flax=common.median(over_flax),
            speedup_over_flax_range=common.spread(over_flax),
            flax_fraction_of_bound=common.median(
                [f / b for f, b in zip(rates["flax"], rates["bound"], strict=True)]
            ),
        )
    return res


def _vaejax_rate(loop: VaejaxLoop, steps: int) -> float:
    start = time.perf_counter()
    done = loop.run(steps)
    return done / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- two layers


def two_layer_model() -> Model:
    """Burda et al.'s two-stochastic-layer model at the one-layer default's batch and chunk."""
    one = models()["burda_b100"]
    return dataclasses.replace(
        one,
        name="burda2layer_b100",
        description="784-200-200-z100-100-100-z50 tanh, two stochastic layers, batch 100",
        kind="burda2015_2layer",
    )


def run_hierarchy(x: np.ndarray, *, repeats: int, seconds: float, quick: bool) -> list[dict]:
    """The two-stochastic-layer model against the one-layer default, both in vaejax's loop,
    alternating in this process, each beside its own matmul bound."""
    loops, bounds, steps, flops = {}, {}, {}, {}
    for m in (models()["burda_b100"], two_layer_model()):
        spd = 4 if quick else m.steps_per_dispatch
        loop = VaejaxLoop(m, x, steps_per_dispatch=spd)
        loop.warm_up()
        ops = common.matmul_ops(*_flat_step(loop))
        bounds[m.name], flops[m.name] = common.matmul_bound(ops), common.total_flops(ops)
        bounds[m.name](1)  # compiles the replay
        per_step = _timed(lambda loop=loop, spd=spd: loop.run(spd)) / spd
        steps[m.name] = max(spd, int(seconds / per_step) // spd * spd)
        loops[m.name] = loop
    rates: dict[str, dict[str, list[float]]] = {n: {"vaejax": [], "bound": []} for n in loops}
    for r in range(repeats):
        for n in list(loops) if r % 2 == 0 else list(loops)[::-1]:
            rates[n]["vaejax"].append(_vaejax_rate(loops[n], steps[n]))
            rates[n]["bound"].append(1.0 / bounds[n](max(1, steps[n] // 4)))
    results = []
    for n, rate in rates.items():
        fraction = [v / b for v, b in zip(rate["vaejax"], rate["bound"], strict=True)]
        results.append(
            {
                "model": n,
                "vaejax_steps_per_s": common.median(rate["vaejax"]),
                "bound_steps_per_s": common.median(rate["bound"]),
                "fraction_of_bound": common.median(fraction),
                "fraction_range": common.spread(fraction),
                "matmul_flops_per_step": flops[n],
                "rates": rate,
            }
        )
    one, two = (rates[n]["vaejax"] for n in loops)
    ratio = [b / a for a, b in zip(one, two, strict=True)]
    results[1] |= {"over_one_layer": common.median(ratio), "over_range": common.spread(ratio)}
    for res in results:
        print(
            f"{res['model']}: {res['vaejax_steps_per_s']:.1f} steps/s, "
            f"{res['matmul_flops_per_step'] / 1e6:.1f} MFLOP/step in matmuls, "
            f"{100 * res['fraction_of_bound']:.0f}% of its bound [{res['fraction_range']}]"
            + (
                f"; {res['over_one_layer']:.2f}x the one-layer steps/s [{res['over_range']}]"
                if "over_one_layer" in res
                else ""
            ),
            flush=True,
        )
    return results


def _flat_step(loop: VaejaxLoop) -> tuple:
    fn, args = loop.single_step()
    return (fn, *args)


# ----------------------------------------------------------------------------- CPU fast paths

TRAINING_FASTPATHS = ("threefry", "per_step_dispatch")


def fastpath_side(name: str, on: bool) -> contextlib.AbstractContextManager:
    """The context a fast path's side runs in: as the library runs it, or switched off."""
    return contextlib.nullcontext() if on else cpu_fastpaths.disabled(name)


def fastpaths_acting_on(m: Model) -> tuple[str, ...]:
    """The training fast paths that change `m`'s step (per-step dispatch: conv steps only)."""
    return tuple(n for n in TRAINING_FASTPATHS if m.kind == "conv" or n != "per_step_dispatch")


def fastpath_ab(m: Model, x: np.ndarray, name: str, *, repeats: int, seconds: float, quick: bool):
    """Steps/s of vaejax's loop with fast path `name` on and off, alternating, in this process."""
    spd = 4 if quick else m.steps_per_dispatch
    loops = {}
    for on in (True, False):
        with fastpath_side(name, on):
            loops[on] = VaejaxLoop(m, x, steps_per_dispatch=spd, data_noise="binarize")
            loops[on].warm_up()
            loops[on].run(spd)  # and whatever else the loop compiles (the epoch's permutation)
    with fastpath_side(name, True):
        t_step = _timed(lambda: loops[True].run(spd)) / spd
    steps = max(spd, int(seconds / t_step) // spd * spd)

    def run(on: bool) -> int:
        with fastpath_side(name, on):
            return loops[on].run(steps)

    res = common.on_off(run, repeats=repeats)
    res.update(model=m.name, description=m.description, fastpath=name, steps_per_run=steps)
    return res


FASTPATH_HEADERS = (
    "fast path",
    "model",
    "steps/s on",
    "steps/s off",
    "on/off, wall time (range)",
    "on/off, CPU time (range)",
    "repeats",
)


def fastpath_row(res: dict) -> list:
    return [
        res["fastpath"],
        res["description"],
        res["on_per_s"],
        res["off_per_s"],
        f"{res['speedup']:.3f}x ({res['speedup_range']})",
        f"{res['cpu_speedup']:.3f}x ({res['cpu_speedup_range']})",
        res["repeats"],
    ]


def run_fastpaths(specs: Sequence[Model], x: np.ndarray, *, repeats, seconds, quick) -> list:
    results = []
    for m in specs:
        for name in fastpaths_acting_on(m):
            res = fastpath_ab(m, x, name, repeats=repeats, seconds=seconds, quick=quick)
            results.append(res)
            print(
                f"{name} on {m.name}: on {res['on_per_s']:.2f} steps/s, off "
                f"{res['off_per_s']:.2f}, on/off {res['speedup']:.3f}x "
                f"[{res['speedup_range']}], by CPU time {res['cpu_speedup']:.3f}x "
                f"[{res['cpu_speedup_range']}] over {repeats} alternating runs of "
                f"{res['steps_per_run']} steps",
                flush=True,
            )
    print()
    print(common.markdown_table(FASTPATH_HEADERS, [fastpath_row(r) for r in results]))
    return results


HEADERS = (
    "model",
    "batch",
    "ref steps/s",
    "vaejax steps/s",
    "ref ex/s",
    "vaejax ex/s",
    "speedup (range)",
    "vaejax / flax example (range)",
    "matmul GFLOP/step",
    "XLA GFLOP/step",
    "bound steps/s",
    "matmul GFLOP/s",
    "vaejax % of bound (range)",
    "ref % of bound",
    "peak RSS MB ref/vaejax",
)


def row(res: dict) -> list:
    return [
        res["description"],
        res["batch_size"],
        res["reference_steps_per_s"],
        res["vaejax_steps_per_s"],
        res["reference_examples_per_s"],
        res["vaejax_examples_per_s"],
        f"{res['speedup']:.2f}x ({res['speedup_range']})",
        (
            f"{res['speedup_over_flax']:.2f}x ({res['speedup_over_flax_range']})"
            if "speedup_over_flax" in res
            else "-"
        ),
        res["matmul_flops_per_step"] / 1e9,
        (res["xla_flops_per_step"] or math.nan) / 1e9,
        res["bound_steps_per_s"],
        res["matmul_gflops_on_model_shapes"],
        f"{100 * res['fraction_of_bound']:.0f}% ({res['fraction_range']})",
        f"{100 * res['reference_fraction_of_bound']:.0f}%",
        f"{res['reference_peak_rss_mb']:.0f}/{res['vaejax_peak_rss_mb']:.0f}",
    ]


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    """`argv` (program name first) parsed into flags of this script's own `FlagValues` (the
    tests run the benchmarks side by side in one process)."""
    fv = flags.FlagValues()
    flags.DEFINE_bool(
        "quick", False, "Tiny step counts (seconds); no peer processes.", flag_values=fv
    )
    flags.DEFINE_list(
        "models",
        None,
        f"Of {list(models())}; default all (with --quick the first two).",
        flag_values=fv,
    )
    flags.DEFINE_integer("repeats", None, "Alternating repeats (10).", flag_values=fv)
    flags.DEFINE_float("seconds", None, "Seconds per timed run (1.0).", flag_values=fv)
    flags.DEFINE_integer("num_train", None, "Synthetic examples (50000).", flag_values=fv)
    flags.DEFINE_string("json", None, "Also write the results here.", flag_values=fv)
    flags.DEFINE_bool(
        "fastpaths", False, "Time each CPU fast path on against off instead.", flag_values=fv
    )
    flags.DEFINE_bool(
        "hierarchy", False,
        "Time the two-stochastic-layer model against the one-layer default instead.",
        flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_string(
        "flax_vae_dir", None, f"{peers.UPSTREAM[peers.FLAX_ENV]}; default ${peers.FLAX_ENV}.",
        flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_string(
        "pytorch_vae_dir", None,
        f"{peers.UPSTREAM[peers.PYTORCH_ENV]}; default ${peers.PYTORCH_ENV}.", flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_list(
        "peers", list(peers.PAIRS), "PyTorch pairs run in alternating processes (none: '').",
        flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_integer(
        "peer_rounds", 3, "Alternating rounds of each PyTorch pair.", flag_values=fv
    )
    flags.DEFINE_float("peer_seconds", 10.0, "Timed seconds per PyTorch-pair run.", flag_values=fv)
    common.parse_flags(fv, argv)
    unknown = sorted(set(fv.models or []) - set(models()))
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; valid: {sorted(models())}")
    return fv


def main(argv: Sequence[str]) -> list[dict]:
    """Runs the benchmark for the command line `argv` (program name first)."""
    fv = parse_flags(argv)
    specs = models()
    names = fv.models or (list(specs)[:2] if fv.quick else list(specs))
    repeats = fv.repeats or (1 if fv.quick else 10)
    seconds = fv.seconds or (0.0 if fv.quick else 1.0)
    num_train = fv.num_train or (512 if fv.quick else 50_000)

    print(common.describe_machine(), flush=True)
    peak = common.square_matmul_gflops(256 if fv.quick else 2048)
    print(f"float32 square matmul peak: {peak:.0f} GFLOP/s", flush=True)
    x = common.synthetic_binary_images(num_train)
    if fv.hierarchy:
        results = run_hierarchy(x, repeats=repeats, seconds=seconds, quick=fv.quick)
        _write_json(fv.json, results)
        return results
    if fv.fastpaths:
        results = run_fastpaths(
            [specs[n] for n in names], x, repeats=repeats, seconds=seconds, quick=fv.quick
        )
        _write_json(fv.json, results)
        return results
    flax_dir = peers.peer_dir(fv.flax_vae_dir, peers.FLAX_ENV, "train.py")
    if flax_dir is None and "mlp500" in names:
        print(peers.missing_line("flax", peers.FLAX_ENV), flush=True)
    results = []
    for name in names:
        # A conv step takes about a second here: fewer repeats keep the run in minutes.
        n = min(repeats, 3) if specs[name].kind == "conv" else repeats
        res = benchmark(
            specs[name], x, repeats=n, seconds=seconds, quick=fv.quick, flax_dir=flax_dir
        )
        results.append(res)
        print(_line(res), flush=True)
    print()
    print(common.markdown_table(HEADERS, [row(r) for r in results]))
    print(f"\nprocess peak RSS {common.max_rss_mb():.0f} MB; {common.describe_machine()}")
    if fv.peers and not fv.quick:
        print("\nPyTorch peers, alternating processes (benchmarks/peers.py):", flush=True)
        peers.compare(
            fv.peers, rounds=fv.peer_rounds, seconds=fv.peer_seconds,
            pytorch_vae_dir=fv.pytorch_vae_dir,
        )  # fmt: skip
    _write_json(fv.json, results)
    return results


def _line(res: dict) -> str:
    flax = (
        f"flax example {res['flax_steps_per_s']:.1f} steps/s ({res['flax_examples_per_s']:.0f} "
        f"ex/s), vaejax / flax {res['speedup_over_flax']:.2f}x [{res['speedup_over_flax_range']}], "
        f"flax at {100 * res['flax_fraction_of_bound']:.0f}% of the bound; "
        if "flax_steps_per_s" in res
        else ""
    )
    return (
        f"{res['model']}: reference {res['reference_steps_per_s']:.1f} steps/s "
        f"({res['reference_examples_per_s']:.0f} ex/s), vaejax "
        f"{res['vaejax_steps_per_s']:.1f} steps/s ({res['vaejax_examples_per_s']:.0f} ex/s), "
        f"ratio {res['speedup']:.2f}x [{res['speedup_range']}]; {flax}"
        f"{res['matmul_flops_per_step'] / 1e6:.1f} MFLOP/step in matmuls (jaxpr count), "
        f"{(res['xla_flops_per_step'] or math.nan) / 1e6:.1f} (XLA cost_analysis); "
        f"bound {res['bound_steps_per_s']:.1f} steps/s at "
        f"{res['matmul_gflops_on_model_shapes']:.0f} GFLOP/s on the model's shapes; "
        f"vaejax at {100 * res['fraction_of_bound']:.0f}% of it [{res['fraction_range']}], "
        f"reference at {100 * res['reference_fraction_of_bound']:.0f}%; "
        f"peak RSS {res['reference_peak_rss_mb']:.0f} / {res['vaejax_peak_rss_mb']:.0f} MB"
        + (
            f"; device peak {res['device_peak_mb']:.0f} MB"
            if res["device_peak_mb"] is not None
            else ""
        )
    )


def _write_json(path: str | None, results: list[dict]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump({"machine": common.machine(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
