"""Categorical decoder: a softmax over the 256 pixel levels, on integer MNIST.

  python -m experiments.mnist --config=experiments/configs/categorical.py --workdir=runs/cat

The encoder sees pixels / 255 (model.input_scale); the loss is exact bits/dim of 8-bit data.
"""

import ml_collections

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.data.preprocessing = "integer"
    config.model.likelihood = "categorical"
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"num_classes": 256})
    config.model.input_scale = 1 / 255
    config.train.num_epochs = 20
    config.eval.nll_samples = 1000  # 200k-logit decoder outputs: keep the final estimate affordable
    config.eval.nll_chunk_size = 50
    return config
