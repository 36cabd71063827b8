"""Gaussian decoder (identity output) on standardized MNIST.

Fixed variance by default; `--config.model.likelihood=learned_gaussian` adds a log-variance head
(Kingma & Welling 2013, App. C.2) with a variance floor (`likelihood_kwargs.variance_floor`).

  python -m experiments.mnist --config=experiments/configs/gaussian.py --workdir=runs/gauss
"""

import ml_collections

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.data.preprocessing = "standardize"
    config.model.likelihood = "gaussian"
    # Standardized pixels have unit variance overall; a fixed scale well under it lets the
    # reconstruction term dominate as it should. Override with --config.model.likelihood_kwargs.
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"scale": 0.3})
    config.train.num_epochs = 50
    return config
