"""Checks that a config's dataset is prepared, and with --download prepares it.

    python -m experiments.prepare --config=experiments/configs/mnist.py [--download]
        [--manual_dir=DIR]

Exits 0 if `config.data.name` is prepared (array_record) in `config.data.data_dir` (None means
$TFDS_DATA_DIR, else the tfds default). Otherwise exits 1 after saying how to point at a
prepared data_dir, or with --download tries to download and convert it (needs internet and
TensorFlow: `pip install -e '.[prepare]'`) and exits 2 if that fails. `make prepare` chains both.
With --manual_dir it reads the dataset's original files from DIR instead of downloading them
(e.g. --manual_dir=../shared/data/mnist, the four MNIST IDX files): no network needed.
"""

import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from vaejax import data

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_DOWNLOAD = flags.DEFINE_bool(
    "download", False, "Download and prepare the dataset if it is not prepared."
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "With --download: read the original files from here, not the network."
)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    name = _CONFIG.value.data.name
    data_dir = data.resolve_data_dir(_CONFIG.value.data.data_dir)
    if data.is_prepared(name, data_dir):
        logging.info("%s is prepared in %s.", name, data_dir or "the tfds default data_dir")
        return 0

    # Plain stderr, not logging: these lines are instructions for whoever runs `make`.
    if not _DOWNLOAD.value:
        print(
            f"{data.not_prepared_message(name, data_dir)}\n"
            f"`make prepare` now tries to download and prepare {name} (with --download), which "
            "needs internet and tensorflow-cpu.",
            file=sys.stderr,
        )
        return 1
    try:
        data.prepare(name, data_dir, manual_dir=_MANUAL_DIR.value)
    except Exception as e:  # Any failure (network, missing TensorFlow) gets the same advice.
        print(
            f"Could not download and prepare {name}: {type(e).__name__}: {e}\n"
            f"{data.not_prepared_message(name, data_dir)}",
            file=sys.stderr,
        )
        return 2
    logging.info("Prepared %s in %s.", name, data_dir or "the tfds default data_dir")
    return 0


if __name__ == "__main__":
    app.run(main)
