"""Continuous Bernoulli on dequantized MNIST intensities (Loaiza-Ganem & Cunningham 2019).

  python -m experiments.mnist --config=experiments/configs/continuous_bernoulli.py \
      --workdir=runs/cb

The data are (pixel + u) / 256, u ~ U(0, 1) drawn afresh per batch ("dequantize"), so the test
NLL bounds the bits/dim of the 8-bit pixels from above; reconstructions show the CB mean. The
network is the CB paper's 784-400-20 ReLU MLP: Burda et al.'s tanh 784-200-200-50 collapsed on it
(its tanh units saturate as the decoder's logits grow). Current result (2026-11-24, commit dcff320,
2-core AMD EPYC shared with other runs; the command with `--config.eval.nll_samples=1000`): test
NLL-1000 -3193.2 nats of dequantized pixels, **2.12 bits/dim** of the 8-bit test images.
benchmarks/README.md, "Other configs".
"""

from experiments.configs import mnist
from vaejax import config as config_lib


def get_config():
    config = mnist.get_config()
    # The rate and batch size the results above were reached with:
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 100
    config.data.preprocessing = "dequantize"
    config.model.likelihood = "continuous_bernoulli"
    config_lib.set_preset(
        config.model, "mlp", hidden_sizes=(400,), activation="relu", latent_dim=20
    )
    config.train.num_epochs = 50
    return config
