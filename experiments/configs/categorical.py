"""Categorical decoder: a softmax over the 256 pixel levels, conv VAE, on integer MNIST.

  python -m experiments.mnist --config=experiments/configs/categorical.py --workdir=runs/cat

The encoder sees pixels / 255 (model.input_scale); the loss is exact bits/dim of 8-bit data. The
conv decoder's 1x1 head gives each pixel its 256 logits from 32 channels; for an MLP whose head
does so from 16 features per pixel, `--config=experiments/configs/categorical.py:mlp`
(`networks.PixelHead`, docs/output_likelihoods.md). Current result (2026-12-02, commit
a3741a0, "Intel(R) Xeon(R) Processor" CPU; the command with `--config.train.time_budget_s=900
--config.train.fit_schedule_to_budget=True --config.train.eval_every_epochs=100
--config.eval.num_test=1000 --config.eval.nll_samples=200`): 6,200 steps in 15 minutes, then
NLL-200 653.81 nats, **1.20 bits/dim** on the first 1,000 test images. benchmarks/README.md,
"Other configs".
"""

import ml_collections

from experiments.configs import mnist
from vaejax import config as config_lib


def get_config(preset: str = "conv"):
    config = mnist.get_config()
    # The rate and batch size the results above were reached with:
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 100
    config.data.preprocessing = "integer"
    if preset == "mlp":
        config_lib.set_preset(config.model, "mlp", latent_dim=32, pixel_features=16)
    else:
        config_lib.set_preset(config.model, preset, latent_dim=32)
    config.model.likelihood = "categorical"
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"num_classes": 256})
    config.model.input_scale = 1 / 255
    config.train.num_epochs = 20
    config.eval.nll_samples = 1000  # 200k-logit decoder outputs: keep the final estimate affordable
    config.eval.nll_chunk_size = 50
    return config
