"""The default model with a learned mixture of 10 diagonal Gaussians as its prior.

Means, scales and mixture weights are trained with the model; the KL is a Monte Carlo estimate
(no closed form for a mixture). Otherwise the default config:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/mixture_prior.py --workdir=runs/mixture_prior

Current result (2026-12-03, commit 297fd50, 2-core AMD EPYC, alone; `python -m
benchmarks.quality --budgets=30 --config=experiments/configs/mixture_prior.py`): test NLL-5000
86.77 after 230,700 steps, 0.49 nats behind the plain VAE's 86.28 on that CPU.
benchmarks/README.md, "Open priors and posteriors".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.prior = "mixture"
    config.model.prior_components = 10
    return config
