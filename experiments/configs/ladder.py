"""A three-layer ladder VAE (Sonderby et al. 2016): z sizes 64, 32, 16, tanh.

A deterministic bottom-up pass (256-256, 128-128, 64-64 units) gives each layer a Gaussian
estimate; inference runs top down, merging it with the prior's p(z_l | z_{l+1}) by precision
weighting. Each layer's KL is closed form given the sample above; a linear KL warm-up over the
first 10,000 steps keeps the upper layers from collapsing early (Sonderby et al. 2016, Sec. 2.2).

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/ladder.py --workdir=runs/ladder

Current result (2026-12-02, commit 0e81854, 2-core AMD EPYC, load 1.9; `python -m
benchmarks.quality --budgets=30 --config=experiments/configs/ladder.py`): test NLL-5000 **83.76**
after 165,900 steps, below Burda et al.'s two-layer VAE after 3280 epochs (85.33); 100 minutes at
this peak rate did worse (85.56). benchmarks/README.md, "Several stochastic layers".
"""

from experiments.configs import mnist
from vaejax import config as config_lib


def get_config():
    config = mnist.get_config()
    config_lib.set_preset(
        config.model,
        "ladder",
        latent_sizes=(64, 32, 16),
        layer_hidden_sizes=((256, 256), (128, 128), (64, 64)),
    )
    config.objective.warmup_steps = 10_000
    return config
