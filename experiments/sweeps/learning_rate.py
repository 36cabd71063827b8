"""Adam's learning rate for the default MNIST VAE: 12 TPE trials over [1e-4, 1e-2], log scale.

Optuna's TPE sampler proposes each rate from the results so far; the metric is the validation
ELBO (the test set stays untouched for the final number):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.sweep \
      --sweep=experiments/sweeps/learning_rate.py --workdir=runs/learning_rate --workers=2

For a fixed grid of rates trained together, one population per trial, set
`population={"optim.learning_rate": [3e-4, 1e-3, 3e-3]}` and an empty space with sampler="grid".
"""

from experiments.configs import mnist
from vaejax import sweeps


def get_sweep() -> sweeps.Sweep:
    config = mnist.get_config()
    config.train.num_epochs = 30
    config.optim.end_learning_rate = None  # the cosine schedule ends at a tenth of each rate
    config.train.progress_bar = False
    return sweeps.Sweep(
        config=config,
        space={"optim.learning_rate": sweeps.log_uniform(1e-4, 1e-2)},
        metric="valid.elbo",
        direction="maximize",
        sampler="tpe",
        num_trials=12,
    )
