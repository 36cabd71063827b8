"""The default model with a learned mixture of 10 diagonal Gaussians as its prior.

Means, scales and mixture weights are trained with the model; the KL is a Monte Carlo estimate
(no closed form for a mixture). Otherwise the default config:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/mixture_prior.py --workdir=runs/mixture_prior

Quality for time on this CPU: benchmarks/README.md, "Open priors and posteriors".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.prior = "mixture"
    config.model.prior_components = 10
    return config
