"""Writes the posterior means of a trained model's data, for downstream use.

  python -m experiments.encode --workdir=runs/mnist --split=test --out=codes.npz
  python -m experiments.encode --workdir=runs/mnist --data=my_images.npy --out=codes.npz

The .npz holds `codes` `[N, latent_dim]` float32 (E_q[z | x]) and, for a split, `labels` `[N]`.
`--split` is a TFDS split of the dataset the run trained on ("train", "test", "train[:1000]";
the run's validation examples are its last `data.num_valid` train examples, e.g.
"train[-10000:]"). `--data` is a .npy array of raw examples as the dataset stores them (uint8
images `[N, 28, 28, 1]` for MNIST).
"""

import logging as std_logging

import numpy as np
from absl import app, flags, logging

import vaejax

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Work directory of a trained run.")
flags.DEFINE_string("split", "test", "A split of the run's dataset to encode.")
flags.DEFINE_string("data", None, "A .npy file of raw examples to encode instead of a split.")
flags.DEFINE_string("out", "codes.npz", "Where to write the codes (.npz).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default the run's, else $TFDS_DATA_DIR.")
flags.DEFINE_integer("batch_size", 1000, "Examples encoded per call.")
flags.DEFINE_integer("step", None, "The checkpoint's step; default the latest.")
flags.DEFINE_integer("member", None, "For a population's work directory, which member.")
flags.mark_flags_as_required(["workdir"])


def encode(model: vaejax.TrainedModel, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Posterior means of `x` `[N, ...]`, `batch_size` examples at a time: `[N, latent_dim]`."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1; got {batch_size}.")
    model.check(x)  # the whole array, before the first batch
    codes = [
        np.asarray(model.posterior_mean(x[start : start + batch_size]))
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(codes) if codes else np.zeros((0, model.latent_dim), np.float32)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    model = vaejax.load(FLAGS.workdir, step=FLAGS.step, member=FLAGS.member)
    if FLAGS.data:
        x, labels = np.load(FLAGS.data, allow_pickle=False), None
        source = FLAGS.data
    else:
        x, labels = model.read_split(FLAGS.split, data_dir=FLAGS.data_dir)
        source = f"{model.config.data.name} {FLAGS.split}"
    codes = encode(model, x, FLAGS.batch_size)
    out = {"codes": codes} | ({} if labels is None else {"labels": labels})
    np.savez(FLAGS.out, **out)
    std_logging.getLogger("vaejax").info(
        "Wrote the %d-dimensional codes of %d examples (%s) to %s",
        codes.shape[1],
        len(codes),
        source,
        FLAGS.out,
    )


if __name__ == "__main__":
    app.run(main)
