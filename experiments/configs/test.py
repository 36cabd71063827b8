"""Tiny config for tests and a first try: at most 400 train images, 2 epochs, in seconds.

TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
    --config=experiments/configs/test.py --workdir=/tmp/vaejax_test

It trains 2 epochs on the first 400 train images at batch 8 (100 steps on MNIST; the tests'
fake data have fewer) and evaluates the first 500 test images. Not a result: a check that the
whole pipeline runs.
"""

from experiments.configs import mnist
from vaejax import config as config_lib


def get_config():
    config = mnist.get_config()
    config.data.num_valid = 20
    config.data.num_train = 400
    config_lib.set_preset(config.model, "mlp", latent_dim=2, hidden_sizes=(16,))
    config.train.batch_size = 8
    config.train.num_epochs = 2
    config.train.steps_per_dispatch = 4
    config.train.eval_every_epochs = 1
    config.train.checkpoint_every_steps = 4
    config.train.progress_bar = False
    config.eval.iwae_samples = 5
    config.eval.nll_samples = 20
    config.eval.nll_chunk_size = 8
    config.eval.batch_size = 10
    config.eval.num_test = 500
    return config
