"""A small convolutional VAE (two stride-2 convs each way), Bernoulli, dynamic binarization.

python -m experiments.mnist --config=experiments/configs/conv.py --workdir=runs/conv

On CPU its convolutions run as matmuls (`vaejax.conv`, the `conv_as_matmul` CPU path), so it
trains on CPU; its 30 epochs (15,000 steps) are still hours on 2 cores.
Reached on a 2-core CPU shared with other jobs (2026-12-01, commit 5e7a080), 14 minutes of
training: `TFDS_DATA_DIR=... python -m experiments.mnist --config=experiments/configs/conv.py
--workdir=runs/conv --config.train.time_budget_s=840 --config.train.fit_schedule_to_budget=True
--config.train.eval_every_epochs=100 --config.eval.num_test=1000 --config.eval.nll_samples=200`
ran 1,000 steps (2 epochs, 855 s, about 1.2 steps/s under a load average of 10), then on the
first 1,000 test images: ELBO -110.81, IWAE-50 -103.95, NLL-200 102.81 nats, KL 25.3,
32 of 32 units active (validation ELBO -111.99). After the transposed conv's split (commit
d3ecab6), on a CPU with 2-3x faster matmuls (2026-12-02, commit 19df199), the same command with
`--config.train.time_budget_s=480` trained 8,300 steps (16.6 epochs) in 8 minutes, sharing the
CPU with another run's evaluation (load average 3-4): ELBO -94.88, IWAE-50 -90.13, NLL-200 89.54
nats on the first 1,000 test images, KL 27.1, 28 of 32 units active.
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
