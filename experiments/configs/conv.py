"""A small convolutional VAE (two stride-2 convs each way), Bernoulli, dynamic binarization.

python -m experiments.mnist --config=experiments/configs/conv.py --workdir=runs/conv

XLA:CPU runs this model's convolutions at about 1.7 steps/s on 2 cores, so its 30 epochs (15,000
steps) are a GPU job. Reached there (2026-11-24, commit be77621), a smoke run only, the command
above with `--config.train.num_epochs=1 --config.train.time_budget_s=150 --config.eval.num_test=500
--config.eval.nll_samples=100` stopped after 300 steps (0.6 epochs, 2 min 56 s), then on the first
500 test images: ELBO -144.49, IWAE-50 -134.41, NLL-100 133.82 nats, 32 of 32 units active.
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    # The rate and batch size the results above were reached with:
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 100
    config.model.preset = "conv"
    config.model.latent_dim = 32
    config.train.num_epochs = 30
    config.eval.nll_samples = 1000
    return config
