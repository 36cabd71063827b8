"""Tiny config for tests: a few steps on whatever data is given, in seconds.

python -m experiments.mnist --config=experiments/configs/test.py --workdir=/tmp/vaejax_test
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.data.num_valid = 20
    config.model.preset = "mlp"
    config.model.latent_dim = 2
    config.model.hidden_sizes = (16,)
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
    return config
