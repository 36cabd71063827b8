"""Q3: should the encoder output the log-variance, the log-sigma or the variance?

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.questions.posterior_scale \
      --workdir=runs/questions/posterior_scale

Trains Burda et al.'s MLP VAE (784-200-200-50 tanh, Bernoulli, dynamically binarized MNIST)
for a few epochs at a constant learning rate, for each parameterization of the posterior's
scale at each learning rate in `LEARNING_RATES`:

  log_var        std = exp(h / 2)            (Kingma & Welling 2013; the library's default)
  log_sigma      std = exp(h)
  softplus       std = softplus(h) + 1e-4
  relu_variance  var = relu(h) + 1e-4        (the ReLU variance head of encoder_heads.py)

A run whose loss goes non-finite is recorded as diverged at that step, not a crash.

Writes the results block of docs/posterior_scale.md and docs/img/questions/posterior_scale.png.
`--quick` trains the `QUICK` grid only, on synthetic data, into <workdir>/docs by default.
Estimate on 2 cores: about 25 s a run (3 epochs, ~15 s; compile and the test ELBO ~10 s),
16 runs, 7 minutes in all; a diverged run stops early.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.questions import common, encoder_heads

EPOCHS = 3
HIDDEN_SIZES = (200, 200)
LATENT_DIM = 50
PARAMETERIZATIONS = {
    "log_var": "log-variance: std = exp(h / 2)",
    "log_sigma": "log-sigma: std = exp(h)",
    "softplus": "softplus: std = softplus(h) + 1e-4",
    "relu_variance": f"ReLU variance: var = relu(h) + {encoder_heads.VARIANCE_EPS:g}",
}
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)
# --quick: the library's default and the custom ReLU-variance encoder, at one rate.
QUICK = (("log_var", "relu_variance"), (1e-3,))


def run_name(parameterization: str, learning_rate: float) -> str:
    return f"{parameterization}_lr{learning_rate:g}"


def run(
    workdir: str, *, docs_dir: str | os.PathLike = common.DOCS_DIR, quick: bool = False
) -> dict[str, dict[str, Any]]:
    """Trains the grid, writes the table and figure; returns `{run name: results}`."""
    config = common.base_config(quick)
    config.optim.schedule = "constant"  # the rate itself is the variable
    config.eval.nll_samples = 0  # the test ELBO suffices to compare stability
    parameterizations, learning_rates = QUICK if quick else (PARAMETERIZATIONS, LEARNING_RATES)
    if not quick:
        config.model.hidden_sizes = HIDDEN_SIZES
        config.model.latent_dim = LATENT_DIM
        config.train.num_epochs = EPOCHS
    d = common.load_data(config)

    results, rows, lines = {}, [], {}
    for p in parameterizations:
        cells, elbos = [], []
        for lr in learning_rates:
            c = common.copy_config(config)
            c.optim.learning_rate = lr
            model = None
            if p == "relu_variance":
                model = encoder_heads.build_model(c, d.train.shape[1:], relu_variance=True)
            else:
                c.model.posterior = p
            name = run_name(p, lr)
            results[name] = r = common.train_variant(workdir, name, c, model=model, data=d)
            if common.DIVERGED in r:
                cells.append(common.diverged_note(r))
                elbos.append(np.nan)
            else:
                cells.append(common.number(r["test"]["elbo"]))
                elbos.append(r["test"]["elbo"])
        rows.append([PARAMETERIZATIONS[p], *cells])
        lines[PARAMETERIZATIONS[p]] = (list(learning_rates), elbos)

    figure, link = common.figure_path(docs_dir, "posterior_scale.png")
    panel = f"test ELBO after {config.train.num_epochs} epochs (a gap: diverged)"
    common.save_lines(figure, {panel: lines}, xlabel="learning rate", xscale="log")
    table = common.markdown_table(
        ["posterior scale", *(f"test ELBO, lr {lr:g}" for lr in learning_rates)], rows
    )
    optimizer = f"Adam at each rate ({config.optim.schedule} schedule)"
    block = "\n\n".join(
        [
            common.provenance("posterior_scale", quick),
            common.describe(config, optimizer=optimizer),
            table,
            f"![test ELBO against learning rate per parameterization]({link})",
        ]
    )
    common.write_results(docs_dir, "posterior_scale", block)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    common.main(run, argv, __doc__)


if __name__ == "__main__":
    main()
