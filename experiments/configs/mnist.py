"""Default: Burda et al.'s 784-200-200-50 tanh VAE, Bernoulli, dynamically binarized MNIST.

Sized to train and evaluate in about 11 minutes on a 2-core CPU:

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.mnist \
      --config=experiments/configs/mnist.py --workdir=runs/mnist

Reached (2026-11-24, commit eadf4b9, 2-core CPU; 11 min 6 s wall for `make mnist`, 6 min 0 s of it
training): test ELBO -92.99, IWAE-50 -89.39, NLL-5000 88.43 nats, 23 active units
(benchmarks/README.md, "make mnist"). The peak rate of 3e-3 beat 1e-3 and 5e-3, and batch 200 beat
50, 100 and 400 for a fixed training time (benchmarks/README.md, "Quality for time").
"""

import ml_collections

from vaejax import config as config_lib


def get_config(preset: str = "burda2015") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.distributed = False  # True: jax.distributed.initialize() for multi-host runs

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"
    config.data.data_dir = ml_collections.config_dict.placeholder(str)  # None: $TFDS_DATA_DIR
    config.data.preprocessing = "dynamic_binarize"
    config.data.num_valid = 10_000
    config.data.num_train = 0  # 0: every train example; else at most this many (the first)

    config.model = ml_collections.ConfigDict()
    # The preset and its own fields (vaejax.config.PRESETS). Another preset, with its own fields
    # at their defaults: --config=experiments/configs/mnist.py:ladder (or, in a config file,
    # vaejax.config.set_preset(config.model, "ladder", latent_sizes=...), as ladder.py does).
    config.model.preset = "burda2015"
    config.model.latent_dim = 50
    config.model.likelihood = "bernoulli"
    config.model.likelihood_kwargs = ml_collections.ConfigDict()
    config.model.posterior = "log_var"  # log_var | log_sigma | softplus | iaf
    config.model.posterior_kwargs = ml_collections.ConfigDict()  # iaf: num_steps, hidden_size, ...
    config.model.prior = "standard_normal"  # standard_normal | normal | mixture | vampprior
    config.model.prior_components = 1  # mixture: components; vampprior: pseudo-inputs
    config.model.output_bias = True  # start the decoder's output at the data mean
    config.model.input_scale = 1.0

    config.objective = ml_collections.ConfigDict()
    config.objective.name = "elbo"  # elbo | iwae
    config.objective.num_samples = 1
    config.objective.beta = 1.0
    config.objective.warmup_steps = 0
    config.objective.free_bits = 0.0
    # None: the closed-form KL where the posterior and prior have one, else Monte Carlo.
    config.objective.analytic_kl = ml_collections.config_dict.placeholder(bool)
    config.objective.gradient_estimator = "reparameterized"  # | stl | dreg (iwae only)

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 3e-3  # peak; 1.1 nats better than 1e-3 after 100 epochs
    config.optim.schedule = "cosine"  # constant | cosine | exponential | burda
    config.optim.end_learning_rate = 1e-4
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-4
    config.optim.grad_clip_norm = 0.0  # 0: off
    config.optim.ema_decay = 0.0  # 0: off; else evaluate a moving average of the parameters

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 200  # 0.3 nats better than 100 for 10 minutes of training
    config.train.num_epochs = 200
    config.train.steps_per_dispatch = 100  # steps fused in one lax.scan call
    config.train.eval_every_epochs = 1
    config.train.checkpoint_every_steps = 10_000
    # 0: keep the latest two checkpoints; N: also the first at or after each multiple of N steps
    # (the points of a learning curve: python -m benchmarks.curve --workdir=...)
    config.train.keep_checkpoint_every_steps = 0
    config.train.time_budget_s = 0.0  # 0: none; else seconds of training (across resumes)
    # True: the learning-rate schedule runs on training time and ends with time_budget_s (at
    # elapsed t, its rate at step t / budget * num_epochs * steps per epoch); training lasts the
    # budget whatever num_epochs says. For a fixed time, with no guess of the machine's speed.
    config.train.fit_schedule_to_budget = False
    config.train.progress_bar = True

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 100
    config.eval.iwae_samples = 50
    config.eval.nll_samples = 5000
    config.eval.nll_chunk_size = 500
    config.eval.num_test = 0  # 0: the whole test split
    if preset != "burda2015":
        config_lib.set_preset(config.model, preset)
    return config
