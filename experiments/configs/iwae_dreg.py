"""The default model trained on the IWAE bound with k=5, its encoder on DReG gradients.

The doubly reparameterized estimator (Tucker et al. 2018) keeps the IWAE bound but removes the
score-function term from the encoder's gradient, whose signal-to-noise ratio otherwise falls
as k grows (Rainforth et al. 2018). k=5 rather than Burda et al.'s 50 keeps a step about 2.5x
the ELBO's on this CPU; for k=50 add --config.objective.num_samples=50.

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/iwae_dreg.py --workdir=runs/iwae_dreg

Burda et al. 2015 Table 1, IWAE after 3280 epochs: k=5 85.54, k=50 84.78 nats. Quality for time on
this CPU: reached (2026-12-02, commit 0dad536, 2-core CPU shared with other jobs, load average about
4: half the CPU) with `python -m benchmarks.quality --budgets=10
--config=experiments/configs/iwae_dreg.py`, 10 minutes of training on all 60,000 train images: test
NLL-5000 90.20, ELBO -97.50, IWAE-50 -91.51, 25 active units after 37 epochs (11,100 steps). Not
comparable with the plain VAE's 87.27 measured alone: benchmarks/README.md, "Open priors and
posteriors". With `--budgets=30`, alone, on a CPU with 2-3x faster matmuls (2026-12-02, commit
2016cc4): NLL-5000 85.69, ELBO -91.93, IWAE-50 -86.70, 25 active units after 449 epochs (134,700
steps); on that CPU the plain VAE reached 86.16 in 30 minutes, the IAF 85.05.
"""

from experiments.configs import mnist


def get_config():
    config = mnist.get_config()
    config.objective.name = "iwae"
    config.objective.num_samples = 5
    config.objective.gradient_estimator = "dreg"
    return config
