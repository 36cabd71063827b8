"""beta-VAE on MNIST: the weight of the KL term from 0.25 to 4, three seeds per value.

Each trial is one population (seeds 0, 1, 2 trained together in one compiled program); its metric
is the mean over seeds of the test NLL (5000 importance samples). beta < 1 buys reconstruction
with an ELBO that is no longer a bound on the NLL; beta > 1 switches latent units off (see
test.active_units in each member's results.json).

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.sweep \
      --sweep=experiments/sweeps/beta.py --workdir=runs/beta
"""

from experiments.configs import mnist
from vaejax import sweeps


def get_sweep() -> sweeps.Sweep:
    config = mnist.get_config()
    config.train.num_epochs = 30
    config.train.progress_bar = False
    return sweeps.Sweep(
        config=config,
        space={"objective.beta": sweeps.choice(0.25, 0.5, 1.0, 2.0, 4.0)},
        metric="test.nll_5000",
        direction="minimize",
        population={"seed": [0, 1, 2]},
    )
