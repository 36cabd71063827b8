"""Trains and evaluates a VAE on MNIST (or any configured dataset).

  python -m experiments.mnist --config=experiments/configs/mnist.py --workdir=runs/mnist \
      [--config.model.latent_dim=20 ...]

Rerunning with the same --workdir resumes from the latest checkpoint.
"""

import itertools
import logging as std_logging
import runpy
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vaejax import checks
from vaejax.experiment import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, figures and results.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
    """Parses the flags; a misspelled `--config.x` field is one line naming the nearest field,
    and so is a `--config` given twice (absl would keep the last one without a word)."""
    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    paths += [b for a, b in itertools.pairwise(argv) if a == "--config"]
    if len(paths) > 1:
        sys.stderr.write(f"FATAL Flags parsing error: --config is given {len(paths)} times "
                         f"({', '.join(paths)}); give one config file, and change its fields "
                         "with --config.<field>=value.\n")  # fmt: skip
        sys.exit(1)
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError):  # ml_collections' 40-line error for an unknown field
        overrides = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--config.")]
        if not paths:
            raise
        path, *arg = paths[0].split(":", 1)  # a config file's argument: mnist.py:ladder
        config = runpy.run_path(path)["get_config"](*arg)
        try:
            checks.check_overrides(config, [o.removeprefix("config.") for o in overrides])
        except checks.ConfigError as e:
            sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
            sys.exit(1)
        raise


def main(argv):
    del argv
    # Our progress at INFO; libraries (Orbax logs every save at INFO) at WARNING.
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
