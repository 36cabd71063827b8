"""A three-layer ladder VAE (Sonderby et al. 2016): z sizes 64, 32, 16, tanh.

A deterministic bottom-up pass (256-256, 128-128, 64-64 units) gives each layer a Gaussian
estimate; inference then runs top down, merging each estimate with the prior's p(z_l | z_{l+1})
by precision weighting, so the generative and inference paths share the top-down network.
Each layer's KL is in closed form given the sample above it. A linear KL warm-up over the first
10,000 steps keeps the upper layers from collapsing early (Sonderby et al. 2016, Sec. 2.2).

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/ladder.py --workdir=runs/ladder

Add a VampPrior at the top with `--config.model.prior=vampprior
--config.model.prior_components=500`.
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "ladder"
    config.model.latent_sizes = (64, 32, 16)
    config.model.layer_hidden_sizes = ((256, 256), (128, 128), (64, 64))
    config.objective.warmup_steps = 10_000
    return config
