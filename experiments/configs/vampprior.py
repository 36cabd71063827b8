"""The default model with a VampPrior (Tomczak & Welling 2018): 500 learned pseudo-inputs.

The prior is the uniform mixture of the encoder's posteriors at 500 pseudo-inputs learned with the
model, otherwise the default config (784-200-200-50 tanh, Bernoulli, dynamically binarized MNIST):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/vampprior.py --workdir=runs/vampprior

The paper reports 85.57 nats for its one-layer VampPrior VAE (MLP, 40 latents, KL warm-up, long
training); this config has no warm-up. Current result (2026-12-03, commit 297fd50, 2-core AMD
EPYC, alone; `python -m benchmarks.quality --budgets=30 --config=experiments/configs/vampprior.py`):
test NLL-5000 89.03 after 103,600 steps, 2.75 nats behind the plain VAE's 86.28 on that CPU.
benchmarks/README.md, "Open priors and posteriors".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.prior = "vampprior"
    config.model.prior_components = 500  # pseudo-inputs, as the paper
    return config
