"""Writes the posterior means of a trained model's data, for downstream use.

  python -m experiments.encode --workdir=runs/mnist --split=test --out=codes.npz
  python -m experiments.encode --workdir=runs/mnist --data=my_images.npy --out=codes.npz

The .npz holds `codes` `[N, latent_dim]` float32 (E_q[z | x]) and, for a split, `labels` `[N]`.
A model conditioned on the label encodes each example given its label (E_q[z | x, y]): a
split's own, or with --data those of --labels=labels.npy.
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
flags.DEFINE_string(
    "labels", None, "With --data, for a model conditioned on the label: a .npy of labels [N]."
)
flags.DEFINE_string("out", "codes.npz", "Where to write the codes (.npz, appended if missing).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default the run's, else $TFDS_DATA_DIR.")
flags.DEFINE_integer("batch_size", 1000, "Examples encoded per call.")
flags.DEFINE_integer("step", None, "The checkpoint's step; default the latest.")
flags.DEFINE_integer("member", None, "For a population's work directory, which member.")
flags.mark_flags_as_required(["workdir"])


def encode(
    model: vaejax.TrainedModel, x: np.ndarray, batch_size: int, y: np.ndarray | None = None
) -> np.ndarray:
    """Posterior means of `x` `[N, ...]`, `batch_size` examples at a time: `[N, latent_dim]`;
    a conditional model's given the side inputs `y` `[N, ...]`."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1; got {batch_size}.")
    model.check(x)  # the whole arrays, before the first batch
    y = model.side_input(y, len(x))
    rows = lambda a, start: None if a is None else a[start : start + batch_size]
    codes = [
        np.asarray(model.posterior_mean(rows(x, start), y=rows(y, start)))
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(codes) if codes else np.zeros((0, model.latent_dim), np.float32)


_NPY_MAGIC = b"\x93NUMPY"  # how every .npy file starts (np.lib.format.MAGIC_PREFIX)
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive


def read_array(path: str) -> np.ndarray:
    """The array in the .npy file at `path`; never unpickles (anything else is refused)."""
    expected = "a .npy file of raw examples [N, ...], as np.save('x.npy', array) writes it"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise ValueError(
            f"Cannot read --data={path} ({e.strerror or e}); give {expected}."
        ) from None
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"--data={path} is an .npz archive, not a .npy file; give {expected} (for an "
            "archive: np.save('x.npy', np.load(archive)['<name>']))."
        )
    if not path.endswith(".npy") or head != _NPY_MAGIC:
        raise ValueError(f"--data={path} is not a NumPy .npy file; give {expected}.")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array (pickled), or a damaged file
        kind = "holds Python objects (a pickle)" if "allow_pickle" in str(e) else "cannot be read"
        raise ValueError(
            f"--data={path} {kind}; it is not loaded. Give {expected}, of numbers."
        ) from None


def out_path(out: str) -> str:
    """Where `np.savez(out)` writes: numpy appends .npz to a name without it."""
    return out if out.endswith(".npz") else f"{out}.npz"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    out_file = out_path(FLAGS.out)
    x = read_array(FLAGS.data) if FLAGS.data else None  # a bad file fails before the model loads
    labels = read_array(FLAGS.labels) if FLAGS.labels else None
    model = vaejax.load(FLAGS.workdir, step=FLAGS.step, member=FLAGS.member)
    if FLAGS.data:
        source = FLAGS.data
    else:
        x, labels = model.read_split(FLAGS.split, data_dir=FLAGS.data_dir)
        source = f"{model.config.data.name} {FLAGS.split}"
    conditioned = vaejax.networks.is_conditional(model.model)
    codes = encode(model, x, FLAGS.batch_size, labels if conditioned else None)
    out = {"codes": codes} | ({} if labels is None else {"labels": labels})
    np.savez(out_file, **out)
    std_logging.getLogger("vaejax").info(
        "Wrote the %d-dimensional codes of %d examples (%s) to %s",
        codes.shape[1],
        len(codes),
        source,
        out_file,
    )


if __name__ == "__main__":
    app.run(main)
