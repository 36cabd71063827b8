"""The default model with an inverse autoregressive flow posterior (Kingma et al. 2016).

The encoder's diagonal Gaussian is followed by 2 MADE steps (320 hidden units, ELU) conditioned
on a 50-wide context head, their weights in the encoder module; the flow starts as the identity.
The KL is a Monte Carlo estimate (no closed form for a flow). Otherwise the default config:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/iaf.py --workdir=runs/iaf

Reached (2026-12-02, commit 7a7598d, 2-core CPU shared with other jobs, load average 4.7: less than
half the CPU) with `python -m benchmarks.quality --budgets=10 --config=experiments/configs/iaf.py`,
10 minutes of training on all 60,000 train images: test NLL-5000 87.25, ELBO -91.16, IWAE-50 -88.02,
29 active units after 146 epochs (43,700 steps); the plain VAE reached 87.27 alone (100,000 steps).
Alone on the plain VAE's CPU, an AMD EPYC (2026-12-03, commit 1fd95fa,
`--workdir=runs/q_iaf_10_alone`, load average 1.8-1.9): NLL-5000 86.94, ELBO -90.79, IWAE-50 -87.69,
28 active units after 172 epochs (51,600 steps). With `--budgets=30` (commit 105f738, the CPU shared
with a test-suite run for most of it): NLL-5000 86.64, ELBO -90.39 after 220 epochs (66,000 steps;
the plain VAE alone: 86.28 after 314,000). Alone (2026-12-02, commits 8199f8c and 57d359e,
`--budgets=30 [--config.seed=1]`, on a CPU with 2-3x faster matmuls): NLL-5000 85.06 and 85.05 for
seeds 0 and 1, ELBO -88.31 / -88.28, 24 active units, after 298,500 and 317,200 steps. On a
faster AMD EPYC with AVX-512 (2026-12-06, commits 3d1ea3b and 9bb8972, alone, the same commands
with `--workdir=runs/q_iaf_30[_seed1]`): NLL-5000 84.83 and 84.92, ELBO -88.01 / -88.15, after
449,000 and 445,800 steps, against the plain VAE's 85.86 there (704,700 steps). With
`--config.optim.ema_decay=0.999 --config.optim.grad_clip_norm=100` (commit 9ae600e): NLL-5000 85.06,
ELBO -88.12, after 280,100 steps. With a KL warm-up over 10,000 steps (commit bcdbda1) a gradient
spike at step 68,800 wrecked the run; `optim.grad_clip_norm` guards against that. Trained on the
IWAE bound, k = 2 (`--config.objective.name=iwae --config.objective.num_samples=2`, commit 279b9e9,
alone): NLL-5000 85.20 after 174,700 steps, behind the ELBO's 85.06. benchmarks/README.md, "Open
priors and posteriors".
"""

import ml_collections

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.posterior = "iaf"
    config.model.posterior_kwargs = ml_collections.ConfigDict(
        {"num_steps": 2, "hidden_size": 320, "context_dim": 50}
    )
    return config
