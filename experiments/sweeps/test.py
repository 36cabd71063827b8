"""Tiny sweep for tests and a first try: beta in {0.5, 1, 2} on the tiny config (3 trials).

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.sweep \
      --sweep=experiments/sweeps/test.py --workdir=/tmp/vaejax_sweep

On real MNIST a trial is 2 epochs of a 784-16-3 MLP VAE at batch 8 (about a minute on 2
cores); on the tests' fake data, 10 steps.
"""

from experiments.configs import test as test_config
from vaejax import sweeps


def get_sweep() -> sweeps.Sweep:
    config = test_config.get_config()
    config.model.latent_dim = 3  # > 2: no latent-space figures, which a tiny run does not need
    config.train.checkpoint_every_steps = 1000  # only the final checkpoint: saves cost seconds
    config.train.steps_per_dispatch = 5  # the fake data's epoch: one chunk shape, one compile
    return sweeps.Sweep(
        config=config,
        space={"objective.beta": sweeps.choice(0.5, 1.0, 2.0)},
        metric="test.nll_20",
        direction="minimize",
    )
