"""Burda et al. (2015), Table 1, one stochastic layer: their full protocol, 784-200-200-50 tanh.

Bernoulli, dynamically binarized MNIST, batch 20, Adam(b1=0.9, b2=0.999, eps=1e-4), 3280 epochs
in 8 stages (stage i: 3^i epochs at 1e-3 * 10^(-i/7)), test NLL from 5000 samples. Too long for a
CPU (about 8.2M steps): run it on a GPU. VAE or IWAE with k in {1, 5, 50} (for the VAE with k
samples set objective.num_samples=k):

  python -m experiments.mnist --config=experiments/configs/burda2015.py --workdir=runs/burda_vae
  python -m experiments.mnist --config=experiments/configs/burda2015.py --workdir=runs/iwae50 \
      --config.objective.name=iwae --config.objective.num_samples=50

Published: VAE 86.76, IWAE k=50 84.78 nats. Current result, the first 4 minutes only (2026-11-24,
commit 71e8dc0, 2-core AMD EPYC; the first command with `--config.train.time_budget_s=240
--config.eval.nll_samples=1000`): 131,500 steps, test NLL-1000 92.17. benchmarks/README.md,
"Other configs".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "burda2015"
    config.model.latent_dim = 50
    config.model.output_bias = False  # as published: no data-dependent initialisation
    config.objective.name = "elbo"
    config.objective.num_samples = 1
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "burda"
    config.optim.b1, config.optim.b2, config.optim.eps = 0.9, 0.999, 1e-4
    config.train.batch_size = 20
    config.train.num_epochs = 3280  # sum of 3^i for i = 0..7
    config.train.steps_per_dispatch = 500
    config.train.eval_every_epochs = 20
    config.train.checkpoint_every_steps = 50_000
    return config
