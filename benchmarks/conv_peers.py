"""The conv VAE's training step: vaejax against PyTorch on the same architecture, on CPU.

  python -m benchmarks.conv_peers                 # 3 rounds of alternating processes
  python -m benchmarks.conv_peers --rounds 1 --seconds 5

The model is `networks.conv_vae` (conv 32/64 3x3 stride 2, dense 256, latent 32, the mirrored
transposed convs, a 1x1 conv head, Bernoulli), batch 100, Adam, on synthetic binary 28x28
images. Each side runs in its own process, the sides alternating round by round, so load from
other jobs moves them alike:

  torch        the same architecture in PyTorch (NCHW, `nn.Conv2d` / `nn.ConvTranspose2d` with
               padding 1 and output padding 1, which is `padding="SAME"` here), one optimizer
               step per Python iteration; skipped with a line when torch is not installed
               (`pip install torch --index-url https://download.pytorch.org/whl/cpu`);
  vaejax       the library's loop (`benchmarks.throughput.VaejaxLoop`, a `lax.scan` of steps),
               with the `conv_as_matmul` CPU path (`vaejax.conv`), and in the same process the
               matmul bound of its own step (its dot_generals replayed on random inputs);
  vaejax_lax   the same loop with XLA's own convolutions (`conv_as_matmul` off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common

BATCH, LATENT = 100, 32
SIDES = ("torch", "vaejax", "vaejax_lax")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_rate(x: np.ndarray, seconds: float) -> dict:
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


def vaejax_rate(x: np.ndarray, seconds: float, *, matmul: bool) -> dict:
    """Steps/s of vaejax's loop on `conv_vae`, and (path on) its matmul bound alternating."""
    from benchmarks import throughput
    from vaejax import cpu_fastpaths

    side = contextlib.nullcontext if matmul else lambda: cpu_fastpaths.disabled("conv_as_matmul")
    with side():
        loop = throughput.VaejaxLoop(throughput.models()["conv"], x, steps_per_dispatch=10)
        loop.warm_up()
        step_fn, step_args = loop.single_step()
        ops = common.matmul_ops(step_fn, *step_args)
        steps = max(10, int(seconds / (_timed_run(loop, 10) / 10)) // 10 * 10)
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


def run_side(side: str, seconds: float) -> dict:
    x = common.synthetic_binary_images(5000)
    if side == "torch":
        return torch_rate(x, seconds)
    return vaejax_rate(x, seconds, matmul=side == "vaejax")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", choices=SIDES, help="run one side here and print its JSON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per run")
    parser.add_argument("--sides", default=",".join(SIDES))
    args = parser.parse_args(argv)
    if args.side:
        result = run_side(args.side, args.seconds)
        print(json.dumps(result))
        return result
    sides = [s for s in args.sides.split(",") if s]
    if "torch" in sides and not torch_available():
        print("torch: not installed, column skipped (pip install torch, CPU wheel)")
        sides.remove("torch")
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            cmd = [sys.executable, "-m", "benchmarks.conv_peers", "--side", side]
            out = subprocess.run(
                [*cmd, "--seconds", str(args.seconds)], capture_output=True, text=True, check=True
            )
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} {side}: {results[side][-1]}", flush=True)
    _report(results)
    return results


def _report(results: dict[str, list[dict]]) -> None:
    print(common.describe_machine())
    for side, runs in results.items():
        rates = [run["steps_per_s"] for run in runs]
        print(f"{side:11s} {common.spread(rates)} steps/s (median {common.median(rates):.2f})")
    if "torch" in results and "vaejax" in results:
        ratios = [
            v["steps_per_s"] / t["steps_per_s"]
            for v, t in zip(results["vaejax"], results["torch"], strict=True)
        ]
        print(f"vaejax / torch: {common.spread(ratios)} (median {common.median(ratios):.2f}x)")
    if "vaejax" in results:
        fractions = [run["fraction_of_bound"] for run in results["vaejax"]]
        print(f"vaejax / matmul bound: {common.spread(fractions)}")
    if "vaejax_lax" in results and "vaejax" in results:
        ratios = [
            v["steps_per_s"] / t["steps_per_s"]
            for v, t in zip(results["vaejax"], results["vaejax_lax"], strict=True)
        ]
        print(f"conv_as_matmul on / off: {common.spread(ratios)}")


if __name__ == "__main__":
    main()
