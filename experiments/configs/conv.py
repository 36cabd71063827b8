"""A small convolutional VAE (two stride-2 convs each way), Bernoulli, dynamic binarization.

python -m experiments.mnist --config=experiments/configs/conv.py --workdir=runs/conv
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "conv"
    config.model.latent_dim = 32
    config.train.num_epochs = 30
    config.eval.nll_samples = 1000
    return config
