"""Burda et al. 2015's two-stochastic-layer VAE: x-200-200-z1(100)-100-100-z2(50), tanh.

Bottom-up inference q(z1 | x) q(z2 | z1) and a mirrored generative path p(z2) p(z1 | z2)
p(x | z1), each conditional a diagonal Gaussian (`vaejax.hierarchical.burda2015_2layer`); every
KL is Monte Carlo. Otherwise the default config (ELBO, batch 200, cosine schedule):

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/burda2015_2layer.py --workdir=runs/burda2015_2layer

Reached (2026-12-02, commit 0e81854, 2-core CPU shared with test runs, load average 2.4 at the
end) with `python -m benchmarks.quality --budgets=10
--config=experiments/configs/burda2015_2layer.py`, 10 minutes of training on all 60,000 train
images: test NLL-5000 87.12, ELBO -91.27, IWAE-50 -87.98, KL 16.38 + 7.74 nats (z1, z2), active
units 21 + 6, after 128 epochs (38,500 steps; the one-layer default trains about 100,000 steps
in 10 minutes on a quiet machine and reached 87.27). Alone, on a CPU with 2-3x faster matmuls
(2026-12-02, commit 92101b4), the same command trained 102,100 steps (340 epochs): NLL-5000
85.66, ELBO -89.52, IWAE-50 -86.44, KL 16.44 + 7.93, active units 20 + 6. With `--budgets=30`,
alone on that CPU (commit bfba9b8): NLL-5000 84.65, ELBO -88.33, IWAE-50 -85.38, KL 16.49 + 7.83,
active units 19 + 5, after 1048 epochs (314,300 steps). benchmarks/README.md,
"Several stochastic layers".

Published (Burda et al. 2015, Table 1, dynamically binarized MNIST, 3280 epochs): VAE 85.33,
IWAE k=5 83.89, IWAE k=50 82.90 nats. For IWAE with DReG add
`--config.objective.name=iwae --config.objective.num_samples=5
--config.objective.gradient_estimator=dreg`; with `--budgets=30`, alone on an AMD EPYC
(2026-12-03, commit bbc01aa), that reached NLL-5000 84.96, ELBO -90.44, IWAE-50 -85.90, KL
12.57 + 11.19, active units 73 + 9, after 147 epochs (44,200 steps); with `--budgets=10` (commit
6a71be4, the same CPU): NLL-5000 86.84 after 15,500 steps. With a VampPrior at the
top (`--config.model.prior=vampprior --config.model.prior_components=100`) and `--budgets=30`,
alone on an AMD EPYC (2026-12-03, commit ac79926): NLL-5000 85.33, ELBO -89.00, IWAE-50 -86.05,
KL 16.88 + 7.49, active units 19 + 5, after 583 epochs (174,800 steps); with
`--budgets=10`: NLL-5000 86.63, ELBO -90.54, IWAE-50 -87.41, KL 16.88 + 7.15, active units
19 + 5, after 193 epochs (58,000 steps), where the model without it reached 86.23 in 67,300
steps on the same CPU (commit 99d2f28).
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "burda2015_2layer"
    return config
