"""The learning curve of one training run: the test bounds at each checkpoint it kept.

A run trained with `--config.train.keep_checkpoint_every_steps=N` keeps the first checkpoint at
or after each multiple of N steps besides the latest two. This evaluates each kept step on the
first `--num_test` test images: the ELBO (one sample) and the NLL with `--nll_samples`
importance samples, with the same images and random numbers at every step, so the curve's
differences are sharper than the estimates' spread over images. Beside them, from the run's
`metrics.jsonl`: the epoch and the learning rate logged at the step (the rate at the first step
of the chunk of steps that ended there), and the mean train ELBO logged since the previous kept
step (the fit to set the test ELBO against). Prints a table and writes `curve.json` and
`curve.png` into the work directory.

  TFDS_DATA_DIR=../shared/data/tfds python -m benchmarks.quality --budgets=240 \
      --config=experiments/configs/ladder.py --config.train.keep_checkpoint_every_steps=80000 \
      --workdir=runs/q_ladder_240
  TFDS_DATA_DIR=../shared/data/tfds python -m benchmarks.curve \
      --workdir=runs/q_ladder_240/budget_240min [--num_test=1000] [--nll_samples=5000]
"""

from __future__ import annotations

import bisect
import json
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags

import vaejax
from benchmarks import common
from vaejax import writers
from vaejax.checkpoints import Checkpointer


def _logged(workdir: str, steps: Sequence[int]) -> dict[int, dict]:
    """Each of `steps`: the epoch and learning rate logged at it, and the mean train ELBO logged
    after the previous of `steps` up to it (None where nothing was logged). Read with
    `writers.read_metrics`, so a resumed run's records count once."""
    train = [r for r in writers.read_metrics(workdir) if "train/epoch" in r]  # sorted by step
    at_step = {r["step"]: r for r in train}
    logged_steps = [r["step"] for r in train]
    logged, lo = {}, 0
    for s in sorted(steps):
        hi = bisect.bisect_right(logged_steps, s)
        elbos = [r["train/elbo"] for r in train[lo:hi]]
        at = at_step.get(s, {})
        logged[s] = {
            "epoch": at.get("train/epoch"),
            "learning_rate": at.get("train/learning_rate"),
            "train_elbo": float(np.mean(elbos)) if elbos else None,
        }
        lo = hi
    return logged


def evaluate_step(
    workdir: str, step: int, x: np.ndarray, *, nll_samples: int, batch_size: int, chunk_size: int
) -> dict[str, float]:
    """The mean test ELBO and NLL of `workdir`'s checkpoint `step` on raw images `x`."""
    model = vaejax.load(workdir, step=step)
    key, elbo, nll = jax.random.key(0), [], []
    for i in range(0, len(x), batch_size):
        k = jax.random.fold_in(key, i)  # the same noise at every step
        elbo.append(np.asarray(model.elbo(k, x[i : i + batch_size]).elbo))
        log_px = model.log_likelihood(
            k, x[i : i + batch_size], num_samples=nll_samples, chunk_size=chunk_size
        )
        nll.append(-np.asarray(log_px))
    return {"elbo": float(np.concatenate(elbo).mean()), "nll": float(np.concatenate(nll).mean())}


def run(
    workdir: str,
    *,
    num_test: int,
    nll_samples: int,
    batch_size: int = 100,
    chunk_size: int = 500,
    x: np.ndarray | None = None,
) -> list[dict]:
    """A row per kept checkpoint of `workdir`, in order of step; `x`: the test images (default
    the first `num_test` of the run's test split)."""
    with Checkpointer(workdir) as checkpointer:
        steps = checkpointer.all_steps()
        minutes = {s: checkpointer.metadata(s).get("train_time_s", np.nan) / 60 for s in steps}
    if not steps:
        raise FileNotFoundError(f"{workdir} holds no checkpoint: train first.")
    if x is None:
        x = vaejax.load(workdir, step=steps[-1]).read_split("test")[0][:num_test]
    logged = _logged(workdir, steps)
    rows = []
    for s in steps:
        numbers = evaluate_step(
            workdir, s, x, nll_samples=nll_samples, batch_size=batch_size, chunk_size=chunk_size
        )
        rows.append({"step": s, "train_min": minutes[s], **logged[s], **numbers})
        print(f"step {s}: {rows[-1]}", flush=True)
    return rows


def _plot(rows: list[dict], path: str, nll_samples: int) -> None:
    lines = {
        f"test NLL-{nll_samples}": ([r["nll"] for r in rows], "o-"),
        "test -ELBO": ([-r["elbo"] for r in rows], "s--"),
    }
    x = [r["train_min"] for r in rows]
    common.line_plot(path, x, lines, xlabel="training time (min)", ylabel="nats")


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "The run's work directory.", flag_values=fv)
    flags.DEFINE_integer("num_test", 1000, "The first this many test images.", flag_values=fv)
    flags.DEFINE_integer("nll_samples", 5000, "Importance samples per image.", flag_values=fv)
    flags.DEFINE_bool("help", False, "Show this help.", flag_values=fv)
    common.parse_flags(fv, argv)
    return fv


def main(argv: Sequence[str]) -> list[dict]:
    fv = parse_flags(argv)
    if fv.help or not fv.workdir:
        print(fv.get_help())
        return []
    rows = run(fv.workdir, num_test=fv.num_test, nll_samples=fv.nll_samples)
    headers = ["step", "epoch", "training (min)", "learning rate", "train ELBO", "test ELBO"]
    headers.append(f"test NLL-{fv.nll_samples}")
    table = [
        [
            r["step"],
            _fmt(r["epoch"], ".1f"),
            f"{r['train_min']:.1f}",
            _fmt(r["learning_rate"], ".1e"),
            _fmt(r["train_elbo"], ".2f"),
            f"{r['elbo']:.2f}",
            f"{r['nll']:.2f}",
        ]
        for r in rows
    ]
    print(common.markdown_table(headers, table))
    with open(os.path.join(fv.workdir, "curve.json"), "w") as f:
        json.dump({"num_test": fv.num_test, "nll_samples": fv.nll_samples, "rows": rows}, f)
    _plot(rows, os.path.join(fv.workdir, "curve.png"), fv.nll_samples)
    return rows


if __name__ == "__main__":
    main(sys.argv)
