"""Quality for time: test NLL (k=5000) reached after a training budget of T minutes.

For each budget the default config is trained from scratch, its learning-rate schedule run on
the training clock so that it ends with the budget (`train.fit_schedule_to_budget`): no guess
of the machine's speed, which drifts by 10-20% over minutes here. Compilation counts against
the budget. Then the full test split is evaluated. Prints a table and writes a PNG of NLL
against training minutes.

  TFDS_DATA_DIR=../shared/data/tfds python -m benchmarks.quality --budgets=1,5,10,30 \
      --workdir=runs/quality [--config=experiments/configs/mnist.py] [--config.x=...]
  python -m benchmarks.quality --quick   # seconds, synthetic data: for the tests

Published, dynamically binarized MNIST, Burda et al. (2015) Table 1: VAE 86.76, IWAE-50 84.78.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from benchmarks import common
from experiments.configs import test as test_config
from vaejax import experiment

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def run(config: ml_collections.ConfigDict, budgets_min: list[float], workdir: str) -> list[dict]:
    os.makedirs(workdir, exist_ok=True)
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.num_valid = 0  # as Burda et al.: all train images; nothing is chosen on validation
    config.train.fit_schedule_to_budget = True
    rows = []
    for minutes in budgets_min:
        c = ml_collections.ConfigDict(config.to_dict())
        c.train.time_budget_s = minutes * 60
        _, res = experiment.train_and_evaluate(c, os.path.join(workdir, f"budget_{minutes:g}min"))
        test = res["test"]
        nll_key = next(k for k in test if k.startswith("nll_"))
        rows.append(
            {
                "budget_min": minutes,
                "train_min": res["train_time_s"] / 60,
                "epochs": res["epochs"],
                "steps": res["steps"],
                "test_nll": test[nll_key],
                "test_elbo": test["elbo"],
                "test_iwae": next((v for k, v in test.items() if k.startswith("iwae_")), None),
                "active_units": test["active_units"],
                # Several stochastic layers: each one's active units and KL, z_1 first.
                "active_units_per_layer": test.get("active_units_per_layer"),
                "kl_per_layer": test.get("kl_per_layer"),
                # The machine's 5-minute load average at the end: above ~2 (2 cores), other
                # jobs shared the CPU and the budget bought fewer epochs.
                "load_avg": round(os.getloadavg()[1], 2),
            }
        )
        print(_table(rows), flush=True)
    with open(os.path.join(workdir, "quality.json"), "w") as f:
        json.dump(rows, f, indent=2)
    _plot(rows, os.path.join(workdir, "quality.png"))
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        "| budget (min) | trained (min) | epochs | steps | test NLL | test ELBO | test IWAE-50 "
        "| active | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        iwae = "" if r["test_iwae"] is None else f"{r['test_iwae']:.2f}"
        layers = r.get("active_units_per_layer")
        active = "+".join(map(str, layers)) if layers else r["active_units"]
        lines.append(
            f"| {r['budget_min']:g} | {r['train_min']:.1f} | {r['epochs']:.0f} | {r['steps']} | "
            f"{r['test_nll']:.2f} | {r['test_elbo']:.2f} | {iwae} | {active} | "
            f"{r['load_avg']:.1f} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], path: str) -> None:
    common.line_plot(
        path,
        [r["train_min"] for r in rows],
        {"vaejax": ([r["test_nll"] for r in rows], "o-")},
        xlabel="training time (min, 2-core CPU)",
        ylabel="test NLL (nats)",
        hlines={"Burda et al. VAE (3280 epochs)": 86.76},
    )


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    """The command line `argv` (program name first), parsed into flags of this script's own.

    Its own `FlagValues`, made per call, keeps the benchmarks importable side by side (the tests
    run them in one process); `config_flags` reads the `--config.x=...` overrides from `argv`.
    """
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config",
        str(_CONFIGS / "mnist.py"),
        "The config trained for each budget; --config.x=... overrides a field.",
        flag_values=fv,
        lock_config=True,
        sys_argv=list(argv),
    )
    flags.DEFINE_list("budgets", ["1", "5", "10", "30"], "Budgets in minutes.", flag_values=fv)
    flags.DEFINE_string(
        "workdir",
        "runs/quality",
        "A run directory per budget, the table, the plot.",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "quick",
        False,
        "Seconds, on synthetic data: the tiny test config (experiments/configs/test.py, with any "
        "--config.x overrides) for one 0.02-minute budget. The code path, nothing more.",
        flag_values=fv,
    )
    flags.DEFINE_bool("help", False, "Show this help.", flag_values=fv)
    common.parse_flags(fv, argv)
    return fv


def main(argv: Sequence[str]) -> list[dict]:
    """Runs the benchmark for the command line `argv` (program name first)."""
    fv = parse_flags(argv)
    if fv.help:
        print(fv.get_help())
        return []
    if fv.quick:
        if fv["config"].present:
            raise app.UsageError("--quick trains the test config; leave out --config.")
        config = test_config.get_config()
        config.data.name = "synthetic"
        config.update_from_flattened_dict(config_flags.get_override_values(fv["config"]))
        budgets = [0.02]
    else:
        config = fv.config
        budgets = [float(b) for b in fv.budgets]
    config.train.progress_bar = False
    started = time.time()
    rows = run(config, budgets, fv.workdir)
    print(f"total wall time {time.time() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv)
