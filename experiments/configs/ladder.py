"""A three-layer ladder VAE (Sonderby et al. 2016): z sizes 64, 32, 16, tanh.

A deterministic bottom-up pass (256-256, 128-128, 64-64 units) gives each layer a Gaussian
estimate; inference then runs top down, merging each estimate with the prior's p(z_l | z_{l+1})
by precision weighting, so the generative and inference paths share the top-down network.
Each layer's KL is in closed form given the sample above it. A linear KL warm-up over the first
10,000 steps keeps the upper layers from collapsing early (Sonderby et al. 2016, Sec. 2.2).

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/ladder.py --workdir=runs/ladder

Reached (2026-12-02, commit 0e81854, 2-core CPU shared with test runs, load average 1.9 at the
end) with `python -m benchmarks.quality --budgets=10 --config=experiments/configs/ladder.py`,
10 minutes of training on all 60,000 train images: test NLL-5000 85.16, ELBO -89.44, IWAE-50
-86.06, KL 16.58 + 4.46 + 3.90 nats (z1, z2, z3), active units 64 + 32 + 2, after 145 epochs
(43,400 steps): 2.1 nats better than the one-layer default's 87.27 in the same time. With
`--budgets=30` (same commit, load 1.9 at the end): test NLL-5000 **83.76**, ELBO -87.52,
IWAE-50 -84.52, KL 15.79 + 4.05 + 4.10 nats, active units 64 + 32 + 2, after 553 epochs
(165,900 steps), below Burda et al.'s two-layer VAE after 3280 epochs (85.33).
With `--budgets=100` (2026-12-06, commit 8916c20, an AMD EPYC, alone), 800,200 steps (2667
epochs): NLL-5000 85.56, ELBO -92.16, IWAE-50 -87.13, 1.8 nats behind the 30-minute run. Its
curve (`benchmarks/curve.py`) stays near 90 nats while the cosine's rate is above 2e-3 and falls
only as the rate drops: a long budget wants a lower peak rate (not yet tried).
benchmarks/README.md, "Several stochastic layers".

Add a VampPrior at the top with `--config.model.prior=vampprior
--config.model.prior_components=100`. Alone on an AMD EPYC (2026-12-03, commit ac79926), with
`--budgets=10`: NLL-5000 85.65, ELBO -90.07, IWAE-50 -86.59, KL 17.38 + 7.83 + 0.00, active units
64 + 4 + 0, after 158 epochs (47,500 steps); with `--budgets=30`: NLL-5000 84.65, ELBO -88.67,
IWAE-50 -85.51, KL 16.39 + 7.85 + 0.00, active units 64 + 4 + 0, after 445 epochs (133,500
steps). The top layer goes unused, and the model lands 0.5 and 0.9 nats behind the plain
ladder. benchmarks/README.md, "Several stochastic layers".
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.model.preset = "ladder"
    config.model.latent_sizes = (64, 32, 16)
    config.model.layer_hidden_sizes = ((256, 256), (128, 128), (64, 64))
    config.objective.warmup_steps = 10_000
    return config
