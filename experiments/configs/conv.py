"""A small convolutional VAE (two stride-2 convs each way), Bernoulli, dynamic binarization.

python -m experiments.mnist --config=experiments/configs/conv.py --workdir=runs/conv

On CPU its convolutions run as matmuls (`vaejax.conv`, the `conv_as_matmul` CPU path); its 30
epochs are 15,000 steps. Current result (2026-12-02, commit 19df199, "Intel(R) Xeon(R) Processor"
CPU, load 3-4; the command with `--config.train.time_budget_s=480
--config.train.fit_schedule_to_budget=True --config.train.eval_every_epochs=100
--config.eval.num_test=1000 --config.eval.nll_samples=200`): 8,300 steps in 8 minutes, then
NLL-200 89.54 nats on the first 1,000 test images. benchmarks/README.md, "Other configs".
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
