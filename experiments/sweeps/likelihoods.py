"""Every decoder likelihood on MNIST, each with the preprocessing it is defined for.

  bernoulli             dynamically binarized pixels (a fresh draw per batch)
  continuous_bernoulli  intensities in [0, 1]
  gaussian              standardized pixels, fixed scale 0.3
  learned_gaussian      standardized pixels, learned per-pixel variance (floor 1e-3)
  categorical           integer pixels 0..255 (the encoder sees pixels / 255)

The models see different data, so their nats differ in meaning: compare the continuous and
integer ones by test.bits_per_dim in each trial's results.json (bits per 8-bit pixel); the
Bernoulli model's numbers are of binary data. The sweep's metric is the test ELBO, shown for
completeness. 20 epochs each; about 10 minutes a trial on 2 cores:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.sweep \
      --sweep=experiments/sweeps/likelihoods.py --workdir=runs/likelihoods
"""

from experiments.configs import mnist
from vaejax import sweeps

LIKELIHOODS = {
    "bernoulli": {
        "model.likelihood": "bernoulli",
        "data.preprocessing": "dynamic_binarize",
    },
    "continuous_bernoulli": {
        "model.likelihood": "continuous_bernoulli",
        "data.preprocessing": "unit_interval",
    },
    "gaussian": {
        "model.likelihood": "gaussian",
        "model.likelihood_kwargs": {"scale": 0.3},
        "data.preprocessing": "standardize",
    },
    "learned_gaussian": {
        "model.likelihood": "learned_gaussian",
        "model.likelihood_kwargs": {"variance_floor": 1e-3},
        "data.preprocessing": "standardize",
    },
    "categorical": {
        "model.likelihood": "categorical",
        "model.likelihood_kwargs": {"num_classes": 256},
        "model.input_scale": 1 / 255,
        "data.preprocessing": "integer",
    },
}


def get_sweep() -> sweeps.Sweep:
    config = mnist.get_config()
    config.train.num_epochs = 20
    config.train.progress_bar = False
    # The categorical decoder outputs 200k logits per image: keep the NLL estimate affordable.
    config.eval.nll_samples = 1000
    config.eval.nll_chunk_size = 50
    return sweeps.Sweep(
        config=config,
        space={"likelihood": sweeps.Variants(LIKELIHOODS)},
        metric="test.elbo",
        direction="maximize",
    )
