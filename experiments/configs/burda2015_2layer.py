"""Burda et al. 2015's two-stochastic-layer VAE: x-200-200-z1(100)-100-100-z2(50), tanh.

Bottom-up inference q(z1 | x) q(z2 | z1) and a mirrored generative path p(z2) p(z1 | z2)
p(x | z1), each conditional a diagonal Gaussian (`vaejax.hierarchical.burda2015_2layer`); every
KL is Monte Carlo. Otherwise the default config (ELBO, batch 200, cosine schedule):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/burda2015_2layer.py --workdir=runs/burda2015_2layer

Published (Burda et al. 2015, Table 1, dynamically binarized MNIST, 3280 epochs): VAE 85.33,
IWAE k=5 83.89, IWAE k=50 82.90 nats. For IWAE with DReG add
`--config.objective.name=iwae --config.objective.num_samples=5
--config.objective.gradient_estimator=dreg`.
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "burda2015_2layer"
    return config
