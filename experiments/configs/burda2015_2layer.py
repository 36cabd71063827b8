"""Burda et al. 2015's two-stochastic-layer VAE: x-200-200-z1(100)-100-100-z2(50), tanh.

Bernoulli, dynamically binarized MNIST. Bottom-up q(z1 | x) q(z2 | z1), generative p(z2) p(z1 | z2)
p(x | z1), each a diagonal Gaussian (`vaejax.hierarchical.burda2015_2layer`); every KL is Monte
Carlo. Otherwise the default config (ELBO, batch 200, cosine schedule):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/burda2015_2layer.py --workdir=runs/burda2015_2layer

Published (Burda et al. 2015, Table 1, 3280 epochs): VAE 85.33, IWAE k=5 83.89, k=50 82.90 nats.
Current result (2026-12-02, commit bfba9b8, "Intel(R) Xeon(R) Processor" CPU, alone; `python -m
benchmarks.quality --budgets=30 --config=experiments/configs/burda2015_2layer.py`): test NLL-5000
84.65 after 314,300 steps. The other runs, and the flags for IWAE with DReG or a VampPrior at the
top: benchmarks/README.md, "Several stochastic layers".
"""

from experiments.configs import mnist
from vaejax import config as config_lib


def get_config():
    config = mnist.get_config()
    config_lib.set_preset(config.model, "burda2015_2layer")
    return config
