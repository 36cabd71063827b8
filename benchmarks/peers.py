"""vaejax's loop against the VAE code researchers run, on CPU, in alternating processes.

  python -m benchmarks.peers                        # 3 rounds of every pair
  python -m benchmarks.peers --pairs=conv --rounds=1 --seconds=5

Each side runs in a process of its own and the sides alternate round by round, so load from
other jobs moves them alike. The pairs:

  mlp   torch_mlp      the upstream PyTorch `examples/vae` (784-400-20 ReLU, batch 128): its own
                       `VAE` class and `loss_function`, read from its directory, in its train
                       loop's step (zero_grad, forward, loss, backward, Adam, `loss.item()`); its
                       DataLoader is replaced by slices of a resident tensor (in its favour);
        vaejax_mlp400  the same architecture in vaejax's loop (`benchmarks.loop.VaejaxLoop`).
  conv  torch_conv     vaejax's conv VAE written in PyTorch (NCHW, `nn.Conv2d` /
                       `nn.ConvTranspose2d` with padding 1 and output padding 1, which is
                       `padding="SAME"` here), one optimizer step per Python iteration;
        vaejax_conv    `networks.conv_vae` in vaejax's loop with the `conv_as_matmul` CPU path
                       (`vaejax.conv`), and in the same process the matmul bound of its own step;
        vaejax_conv_lax  the same loop with XLA's own convolutions (`conv_as_matmul` off).

The upstream flax `examples/vae` is JAX too: `benchmarks.throughput` times it in one process with
vaejax's loop (`FlaxExampleLoop` here).

Upstream code is never copied into this repository; the benchmark reads it from where you put it:

  git clone https://github.com/google/flax
  git -C flax checkout 18f8f311c275d57f46d95e41b15aa97b454754c0
  export VAEJAX_FLAX_VAE_DIR=$PWD/flax/examples/vae                 # or --flax_vae_dir
  git clone https://github.com/pytorch/examples
  git -C examples checkout 77f55b912142e11fcfdf5b530231fb9c52f181e8
  export VAEJAX_PYTORCH_VAE_DIR=$PWD/examples/vae                    # or --pytorch_vae_dir
  pip install torch --index-url https://download.pytorch.org/whl/cpu

A side whose code or package is absent is skipped with a line that says what is missing. The
upstream scripts parse flags and read data when imported, so only the named definitions are taken
from their source (`load_definitions`: parsed, and executed in a namespace of their own), as
upstream wrote them.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from benchmarks import common
from benchmarks import loop as loop_lib

BATCH, LATENT = 100, 32  # the conv pair
FLAX_ENV, PYTORCH_ENV = "VAEJAX_FLAX_VAE_DIR", "VAEJAX_PYTORCH_VAE_DIR"
UPSTREAM = {
    FLAX_ENV: "google/flax examples/vae at 18f8f311c275d57f46d95e41b15aa97b454754c0",
    PYTORCH_ENV: "pytorch/examples vae at 77f55b912142e11fcfdf5b530231fb9c52f181e8",
}
PAIRS = {
    "mlp": ("torch_mlp", "vaejax_mlp400"),
    "conv": ("torch_conv", "vaejax_conv", "vaejax_conv_lax"),
}


# ----------------------------------------------------------------------------- upstream code


def peer_dir(given: str | None, env: str, marker: str) -> pathlib.Path | None:
    """The upstream example's directory: `given`, else `$env`; None when neither is set."""
    path = given or os.environ.get(env)
    if not path:
        return None
    directory = pathlib.Path(path).expanduser()
    if not (directory / marker).is_file():
        raise ValueError(
            f"{directory} has no {marker}: point {env} (or its flag) at the directory of "
            f"{UPSTREAM[env]}."
        )
    return directory


def missing_line(side: str, env: str) -> str:
    return (
        f"{side}: no upstream code ({env} or its flag unset), column skipped; it is "
        f"{UPSTREAM[env]} (benchmarks/peers.py says how to get it)"
    )


def load_definitions(path: pathlib.Path, names: Sequence[str], namespace: dict) -> dict:
    """Executes only the top-level functions and classes `names` of the file `path` in
    `namespace` (which must hold what they refer to), and returns the namespace."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [
        n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names
    ]
    missing = sorted(set(names) - {n.name for n in nodes})
    if missing:
        raise ValueError(
            f"{path} does not define {missing}: not the upstream revision this benchmark reads "
            f"({'; '.join(UPSTREAM.values())})."
        )
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


class FlaxExampleLoop:
    """google/flax `examples/vae`: its `models.py` and its `train_step`, wrapped in `jax.jit`
    (upstream no longer jits it; `latents` static), driven as its `train_and_evaluate` drives
    them: a numpy batch and a host key split per step, the state not donated."""

    def __init__(self, directory: pathlib.Path, x: np.ndarray, batch_size: int, seed: int = 0):
        import flax.linen as nn
        import jax
        import jax.numpy as jnp
        import optax
        from flax.training import train_state

        spec = importlib.util.spec_from_file_location("flax_vae_models", directory / "models.py")
        models = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(models)
        names = ("kl_divergence", "binary_cross_entropy_with_logits", "train_step")
        ns = {"jax": jax, "jnp": jnp, "nn": nn, "models": models}
        self.step_fn = jax.jit(load_definitions(directory / "train.py", names, ns)["train_step"],
                               static_argnums=3)  # fmt: skip
        self.latents = 20  # the example's default config
        rng, key = jax.random.split(jax.random.key(seed))
        init_data = jnp.ones((batch_size, 784), jnp.float32)
        params = models.model(self.latents).init(key, init_data, rng)["params"]
        self.state = train_state.TrainState.create(
            apply_fn=models.model(self.latents).apply, params=params, tx=optax.adam(1e-3)
        )
        self.x, self.batch_size = x.reshape(len(x), 784), batch_size
        self.np_rng, self.rng = np.random.default_rng(seed), jax.random.key(seed + 1)
        self.batches: list[np.ndarray] = []

    def run(self, num_steps: int) -> int:
        import jax

        for _ in range(num_steps):
            if not self.batches:
                n = len(self.x) // self.batch_size
                perm = self.np_rng.permutation(len(self.x))[: n * self.batch_size]
                self.batches = list(perm.reshape(n, -1))
            batch = self.x[self.batches.pop()]
            self.rng, key = jax.random.split(self.rng)
            self.state = self.step_fn(self.state, batch, key, self.latents)
        jax.block_until_ready(self.state)
        return num_steps


# ----------------------------------------------------------------------------- the sides


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_timed(step, seconds: float) -> dict:
    import torch

    for i in range(3):
        step(i)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        loss = step(steps)
        steps += 1
    return {
        "steps_per_s": steps / (time.perf_counter() - start),
        "loss": loss,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def torch_mlp_rate(directory: pathlib.Path, x: np.ndarray, seconds: float) -> dict:
    """Steps/s of the upstream PyTorch example's model, loss and step, batch 128."""
    import torch
    from torch import nn, optim
    from torch.nn import functional as F

    ns = load_definitions(
        directory / "main.py", ("VAE", "loss_function"), {"torch": torch, "nn": nn, "F": F}
    )
    torch.manual_seed(1)
    model = ns["VAE"]()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    data = torch.from_numpy(x.reshape(len(x), 784).copy())
    batch, per_epoch = 128, len(x) // 128
    perm = None  # drawn at the start of each epoch, step 0 included

    def step(i: int) -> float:
        nonlocal perm
        if i % per_epoch == 0:
            perm = torch.randperm(len(x))
        xb = data[perm[(i % per_epoch) * batch :][:batch]]
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(xb)
        loss = ns["loss_function"](recon_batch, xb, mu, logvar)
        loss.backward()
        optimizer.step()
        return loss.item() / batch

    return _torch_timed(step, seconds)


def torch_conv_rate(x: np.ndarray, seconds: float) -> dict:
    """Steps/s of the PyTorch conv VAE (the same layers as `networks.conv_vae`)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    enc = nn.Sequential(
        nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 256), nn.ReLU(), nn.Linear(256, 2 * LATENT),
    )  # fmt: skip
    dec = nn.Sequential(
        nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 7 * 7 * 64), nn.ReLU(),
        nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 64, 3, 2, 1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1),
    )  # fmt: skip
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    data = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())
    bce = nn.BCEWithLogitsLoss(reduction="sum")

    def step(i: int) -> float:
        xb = data[(i * BATCH) % (len(data) - BATCH) :][:BATCH]
        mean, log_var = enc(xb).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        kl = -0.5 * torch.sum(1 + log_var - mean**2 - log_var.exp())
        loss = (bce(dec(z), xb) + kl) / BATCH
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    return _torch_timed(step, seconds)


def vaejax_rate(model: str, x: np.ndarray, seconds: float, *, matmul: bool = True) -> dict:
    """Steps/s of vaejax's loop on `benchmarks.loop_lib.models()[model]` and its matmul bound,
    alternating; `matmul=False`: XLA's own convolutions, no bound."""
    from vaejax import cpu_fastpaths

    spec = loop_lib.models()[model]
    spd = 10 if spec.kind == "conv" else spec.steps_per_dispatch
    side = contextlib.nullcontext if matmul else lambda: cpu_fastpaths.disabled("conv_as_matmul")
    with side():
        loop = loop_lib.VaejaxLoop(spec, x, steps_per_dispatch=spd)
        loop.warm_up()
        step_fn, step_args = loop.single_step()
        ops = common.matmul_ops(step_fn, *step_args)
        steps = max(spd, int(seconds / (_timed_run(loop, spd) / spd)) // spd * spd)
        rates, bounds = [], []
        bound = common.matmul_bound(ops) if matmul else None
        for _ in range(2):
            rates.append(_timed_run(loop, steps))
            if bound is not None:
                bounds.append(1.0 / bound(max(1, steps // 4)))
    out = {"steps_per_s": max(rates), "loss": loop.last_loss, "flops": common.total_flops(ops)}
    if bounds:
        out["bound_steps_per_s"] = max(bounds)
        out["fraction_of_bound"] = max(r / b for r, b in zip(rates, bounds, strict=True))
    return out


def _timed_run(loop, steps: int) -> float:
    start = time.perf_counter()
    done = loop.run(steps)
    return done / (time.perf_counter() - start)


def run_side(side: str, seconds: float, pytorch_vae_dir: str | None) -> dict:
    """One side's rate, measured in this process."""
    x = common.synthetic_binary_images(5000)
    if side == "torch_mlp":
        return torch_mlp_rate(peer_dir(pytorch_vae_dir, PYTORCH_ENV, "main.py"), x, seconds)
    if side == "torch_conv":
        return torch_conv_rate(x, seconds)
    if side == "vaejax_mlp400":
        return vaejax_rate("mlp400", x, seconds)
    return vaejax_rate("conv", x, seconds, matmul=side == "vaejax_conv")


def available(sides: Sequence[str], pytorch_vae_dir: str | None) -> list[str]:
    """The sides that can run here; prints a line for each that cannot, and why."""
    kept = []
    for side in sides:
        if side.startswith("torch") and not torch_available():
            print(f"{side}: torch not installed, column skipped (pip install torch, CPU wheel)")
        elif side == "torch_mlp" and peer_dir(pytorch_vae_dir, PYTORCH_ENV, "main.py") is None:
            print(missing_line(side, PYTORCH_ENV))
        else:
            kept.append(side)
    return kept


def compare(
    pairs: Sequence[str], *, rounds: int, seconds: float, pytorch_vae_dir: str | None = None
) -> dict[str, list[dict]]:
    """Runs each side of `pairs` in a process of its own, alternating, `rounds` times."""
    sides = available([s for p in pairs for s in PAIRS[p]], pytorch_vae_dir)
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            cmd = [sys.executable, "-m", "benchmarks.peers", f"--side={side}"]
            cmd += [f"--seconds={seconds}", f"--pytorch_vae_dir={pytorch_vae_dir or ''}"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} {side}: {results[side][-1]}", flush=True)
    report(results)
    return results


def _ratios(results: dict[str, list[dict]], a: str, b: str) -> list[float]:
    return [
        x["steps_per_s"] / y["steps_per_s"] for x, y in zip(results[a], results[b], strict=True)
    ]


def report(results: dict[str, list[dict]]) -> None:
    print(common.describe_machine())
    for side, runs in results.items():
        if not runs:
            continue
        rates = [run["steps_per_s"] for run in runs]
        print(f"{side:15s} {common.spread(rates)} steps/s (median {common.median(rates):.2f})")
        if "fraction_of_bound" in runs[0]:
            fractions = [run["fraction_of_bound"] for run in runs]
            print(f"{side:15s} / its matmul bound: {common.spread(fractions)}")
    for a, b in (
        ("vaejax_mlp400", "torch_mlp"),
        ("vaejax_conv", "torch_conv"),
        ("vaejax_conv", "vaejax_conv_lax"),
    ):
        if results.get(a) and results.get(b):
            ratios = _ratios(results, a, b)
            print(f"{a} / {b}: {common.spread(ratios)} (median {common.median(ratios):.2f}x)")


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    """`argv` (program name first) parsed into flags of this script's own `FlagValues`."""
    fv = flags.FlagValues()
    sides = [s for p in PAIRS.values() for s in p]
    flags.DEFINE_enum("side", None, sides, "Run one side here and print its JSON.", flag_values=fv)
    flags.DEFINE_integer("rounds", 3, "Alternating rounds.", flag_values=fv)
    flags.DEFINE_float("seconds", 20.0, "Timed seconds per run.", flag_values=fv)
    flags.DEFINE_list("pairs", list(PAIRS), f"Of {list(PAIRS)}.", flag_values=fv)
    flags.DEFINE_string(
        "pytorch_vae_dir", None, f"{UPSTREAM[PYTORCH_ENV]}; default ${PYTORCH_ENV}.", flag_values=fv
    )
    common.parse_flags(fv, argv)
    unknown = sorted(set(fv.pairs) - set(PAIRS))
    if unknown:
        raise app.UsageError(f"unknown pairs {unknown}; valid: {list(PAIRS)}")
    return fv


def main(argv: Sequence[str]) -> dict:
    fv = parse_flags(argv)
    if fv.side:
        result = run_side(fv.side, fv.seconds, fv.pytorch_vae_dir or None)
        print(json.dumps(result))
        return result
    return compare(
        fv.pairs, rounds=fv.rounds, seconds=fv.seconds, pytorch_vae_dir=fv.pytorch_vae_dir or None
    )


if __name__ == "__main__":
    main(sys.argv)
