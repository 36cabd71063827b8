"""Discretized logistic mixture decoder (PixelCNN++'s output), conv VAE, on 8-bit MNIST.

  python -m experiments.mnist --config=experiments/configs/logistic_mixture.py --workdir=runs/dlm

Ten logistics per pixel over the 256 levels, exact bin masses (`likelihoods.discretized_logistic`),
so the test NLL is of the 8-bit data and bits/dim are exact; the encoder sees pixels / 255.
`:mlp` for the MLP (its three heads per pixel from 16 features, `networks.PixelHead`);
`--config.data.name=fashion_mnist` for Fashion-MNIST. Compared with the Categorical(256) decoder
of `categorical.py` for the same time in benchmarks/README.md, "Other configs".
"""

import ml_collections

from experiments.configs import categorical


def get_config(preset: str = "conv"):
    config = categorical.get_config(preset)  # the same data, network and optimizer
    config.model.likelihood = "discretized_logistic_mixture"
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"num_components": 10})
    return config
