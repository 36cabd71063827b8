"""Burda et al. (2015), Table 1, one stochastic layer: their full protocol.

784-200-200-50 tanh, dynamically binarized MNIST, batch 20, Adam(b1=0.9, b2=0.999, eps=1e-4),
3280 epochs in 8 stages (stage i: 3^i epochs at 1e-3 * 10^(-i/7)), test NLL from 5000 samples.
VAE: 86.76 nats; IWAE with k=50: 84.78. Too long for a CPU (days); run it on a GPU:

  python -m experiments.mnist --config=experiments/configs/burda2015.py --workdir=runs/burda_vae
  python -m experiments.mnist --config=experiments/configs/burda2015.py --workdir=runs/iwae50 \
      --config.objective.name=iwae --config.objective.num_samples=50

(VAE or IWAE with k in {1, 5, 50}; for the VAE with k samples set objective.num_samples=k.)

Reached on a 2-core CPU (2026-11-24, commit 71e8dc0), only the protocol's first 4 minutes: the first
command with `--config.train.time_budget_s=240 --config.eval.nll_samples=1000` trained 131,500 steps
(52.6 of the 3280 epochs: stages 0-3 and part of stage 4, at 548 steps/s), then test ELBO -97.59,
IWAE-50 -93.15, NLL-1000 92.17 nats, 19 active units. The full protocol is about 8.2M steps: at that
pace 4 hours of steps alone plus a validation every 20 epochs, so run it on a GPU.
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
