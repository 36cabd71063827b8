"""Kingma & Welling (2013), Fig. 2: the MNIST ELBO against the latent size (3, 5, 10, 20, 200).

Their one-hidden-layer (500 tanh units) VAE, Bernoulli decoder, dynamically binarized MNIST. On
a 2-core CPU each trial takes about 15 minutes (100 epochs; the 5000-sample NLL evaluation is
about 3 minutes of it); --workers=2 pins one core to each of two trials:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.sweep \
      --sweep=experiments/sweeps/latent_dim.py --workdir=runs/latent_dim

Their Fig. 2 shows the test ELBO rising from about -125 (3 latents) to about -100 nats
(20 latents) after 10^8 examples, with no overfitting at 200 latents; we train 100 epochs
(5 * 10^6 examples) with Adam, so expect lower-but-ordered numbers.
"""

from experiments.configs import kingma2013
from vaejax import sweeps


def get_sweep() -> sweeps.Sweep:
    config = kingma2013.get_config()
    config.train.progress_bar = False  # one bar per worker would interleave
    return sweeps.Sweep(
        config=config,
        space={"model.latent_dim": sweeps.choice(3, 5, 10, 20, 200)},
        metric="test.elbo",
        direction="maximize",
    )
