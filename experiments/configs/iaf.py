"""The default model with an inverse autoregressive flow posterior (Kingma et al. 2016).

The encoder's diagonal Gaussian is followed by 2 MADE steps (320 hidden units, ELU) conditioned
on a 50-wide context head, their weights in the encoder module; the flow starts as the identity.
The KL is a Monte Carlo estimate (no closed form for a flow). Otherwise the default config:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/iaf.py --workdir=runs/iaf

Quality for time on this CPU: benchmarks/README.md, "Open priors and posteriors".
"""

import ml_collections

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.posterior = "iaf"
    config.model.posterior_kwargs = ml_collections.ConfigDict(
        {"num_steps": 2, "hidden_size": 320, "context_dim": 50}
    )
    return config
