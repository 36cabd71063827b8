"""Discretized logistic mixture decoder (PixelCNN++'s output), conv VAE, on 8-bit MNIST.

  python -m experiments.mnist --config=experiments/configs/logistic_mixture.py --workdir=runs/dlm

Ten logistics per pixel over the 256 levels, exact bin masses (`likelihoods.discretized_logistic`),
so the test NLL is of the 8-bit data and bits/dim are exact; the encoder sees pixels / 255.
`:mlp` for the MLP (its three heads per pixel from 16 features, `networks.PixelHead`);
`--config.data.name=fashion_mnist` for Fashion-MNIST. Current result (2026-12-07, commit 3fb8fa2,
"AMD EPYC" CPU with AVX-512, alone; the command with `--config.train.time_budget_s=600
--config.train.fit_schedule_to_budget=True --config.train.eval_every_epochs=100
--config.eval.num_test=1000 --config.eval.nll_samples=200`): 7,700 steps in 10 minutes, then
NLL-200 660.32 nats, **1.215 bits/dim** on the first 1,000 test images; `categorical.py` run the
same way right after it: 3,900 steps, 1.217. benchmarks/README.md, "Other configs".
"""

import ml_collections

from experiments.configs import categorical


def get_config(preset: str = "conv"):
    config = categorical.get_config(preset)  # the same data, network and optimizer
    config.model.likelihood = "discretized_logistic_mixture"
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"num_components": 10})
    return config
