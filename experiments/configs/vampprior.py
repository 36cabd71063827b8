"""The default model with a VampPrior (Tomczak & Welling 2018): 500 learned pseudo-inputs.

The prior is the uniform mixture of the encoder's posteriors at 500 pseudo-inputs learned with the
model, otherwise the default config (784-200-200-50 tanh, Bernoulli, dynamically binarized MNIST):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/vampprior.py --workdir=runs/vampprior

The paper reports 85.57 nats for its one-layer VampPrior VAE (MLP, 40 latents, warm-up, long
training). Reached (2026-12-02, commit 0dad536, 2-core CPU shared with other jobs, load average
about 4: half the CPU) with `python -m benchmarks.quality --budgets=10
--config=experiments/configs/vampprior.py`, 10 minutes of training on all 60,000 train images: test
NLL-5000 91.53, ELBO -95.50, IWAE-50 -92.35, 13 active units after 76 epochs (22,700 steps). Not
comparable with the plain VAE's 87.27 measured alone. Rerun alone after commit d12ebd9's fix of
the mixture density (2026-12-03, commit 297fd50, AMD EPYC, the plain VAE's CPU): NLL-5000 90.77,
ELBO -94.63, IWAE-50 -91.55, 13 active units after 113 epochs (34,000 steps), 3.5 nats behind
the plain VAE's 87.27 (100,000 steps). Alone for 30 minutes (`--budgets=30`, 2026-12-02, commit
d3ecab6, on a CPU with 2-3x faster matmuls): NLL-5000 88.24, ELBO -91.93,
IWAE-50 -88.98, 13 active units after 788 epochs (236,500 steps), 2 nats behind the plain VAE's
86.28; the paper's KL warm-up is not used here. That run was measured before commit d12ebd9;
rerun alone on the fixed density (2026-12-03, commit 297fd50, AMD EPYC): NLL-5000 89.03, ELBO
-92.79, IWAE-50 -89.80, 13 active units after 345 epochs (103,600 steps), 2.75 nats behind the
plain VAE's 86.28 on that CPU (314,000 steps). benchmarks/README.md, "Open priors and
posteriors".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.prior = "vampprior"
    config.model.prior_components = 500  # pseudo-inputs, as the paper
    return config
