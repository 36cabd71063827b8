"""Trains and evaluates a VAE on MNIST (or any configured dataset).

  python -m experiments.mnist --config=experiments/configs/mnist.py --workdir=runs/mnist \
      [--config.model.latent_dim=20 ...]

Rerunning with the same --workdir resumes from the latest checkpoint.
"""

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from vaejax.experiment import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, figures and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    # Our progress at INFO; libraries (Orbax logs every save at INFO) at WARNING.
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
