"""Continuous Bernoulli on [0, 1] MNIST intensities (Loaiza-Ganem & Cunningham 2019).

  python -m experiments.mnist --config=experiments/configs/continuous_bernoulli.py \
      --workdir=runs/cb

Reports test log-likelihoods of the continuous [0, 1] data and bits/dim of the 8-bit pixels
(density times bin width 1/255); reconstructions show the CB mean, not sigmoid(logits).
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.data.preprocessing = "unit_interval"
    config.model.likelihood = "continuous_bernoulli"
    config.train.num_epochs = 50
    return config
