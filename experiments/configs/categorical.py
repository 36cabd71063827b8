"""Categorical decoder: a softmax over the 256 pixel levels, on integer MNIST.

  python -m experiments.mnist --config=experiments/configs/categorical.py --workdir=runs/cat

The encoder sees pixels / 255 (model.input_scale); the loss is exact bits/dim of 8-bit data.
The conv decoder's 1x1 head gives each pixel its 256 logits from 32 channels; one plain MLP
head would need a 200 x 200,704 output layer (40M weights, about 1.5 s a step on 2 CPU cores).
An MLP does it with `--config.model.preset=mlp --config.model.pixel_features=16`
(`networks.PixelHead`, as design question 2, docs/output_likelihoods.md, does).

On CPU its convolutions (and the 1x1 head) run as matmuls (`vaejax.conv`). Trained on a 2-core
CPU shared with other jobs (load average about 10; 2026-12-01, commit 5e7a080) for 14 minutes:
the command above with `--config.train.time_budget_s=840 --config.train.fit_schedule_to_budget=True
--config.train.eval_every_epochs=100 --config.eval.num_test=1000 --config.eval.nll_samples=200`
ran 400 steps (0.8 epochs, 901 s), then on the first 1,000 test images: ELBO -786.36,
IWAE-50 -772.32, NLL-200 770.25 nats, **1.42 bits/dim** (exact for 8-bit data), KL 32.0, 32 of
32 units active: the code is in use, not collapsed (validation ELBO -786.85). The earlier smoke
run (commit a59c7bb, 200 steps, 200 test images) reached NLL-100 831.88 nats, 1.53 bits/dim.
For 15 minutes on a CPU with 2-3x faster matmuls ("Intel(R) Xeon(R) Processor", 2026-12-02,
commit a3741a0, alone but for another job in its first 4 minutes), the same command with
`--config.train.time_budget_s=900 --workdir=runs/cat_15min` trained 6,200 steps (12.4 epochs,
about 7 steps/s), then on the first 1,000 test images: ELBO -667.21, IWAE-50 -655.51, NLL-200
653.81 nats, **1.20 bits/dim**, KL 51.9, 30 of 32 units active (validation ELBO -669.20); its
reconstructions are the test digits.
"""

import ml_collections

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    # The rate and batch size the results above were reached with:
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 100
    config.data.preprocessing = "integer"
    config.model.preset = "conv"
    config.model.latent_dim = 32
    config.model.likelihood = "categorical"
    config.model.likelihood_kwargs = ml_collections.ConfigDict({"num_classes": 256})
    config.model.input_scale = 1 / 255
    config.train.num_epochs = 20
    config.eval.nll_samples = 1000  # 200k-logit decoder outputs: keep the final estimate affordable
    config.eval.nll_chunk_size = 50
    return config
