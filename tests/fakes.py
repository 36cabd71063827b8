"""A fake prepared TFDS data_dir for tests: no network, no shared data.

Each dataset's directory holds only a hand-written `dataset_info.json` (so tfds sees it as
prepared, with real split names and sizes), and `tfds.testing.mock_data` serves the records
from `FakeSource`. tfds's own mocked source cannot be used: in tfds 4.9.10 its `__getitems__`
is set on a MagicMock instance and is called without `self`.
"""

import contextlib
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

SHAPE = (28, 28, 1)
# name -> split -> number of examples.
SPLITS = {
    "mnist": {"train": 60, "test": 20},
    "binarized_mnist": {"train": 30, "validation": 10, "test": 10},
}


def fake_images(name: str, split: str) -> np.ndarray:
    rng = np.random.default_rng(list(SPLITS[name]).index(split))
    high = 2 if name == "binarized_mnist" else 256
    return rng.integers(0, high, (SPLITS[name][split], *SHAPE), dtype=np.uint8)


class FakeSource:
    """A split as tfds.data_source returns it: decoded examples by index."""

    def __init__(self, name: str, split: str):
        self.images = fake_images(name, split)
        self.has_label = name != "binarized_mnist"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        # Labels are the record index, so tests can tell exactly which records went where.
        return {"image": self.images[i], **({"label": i} if self.has_label else {})}

    def __getitems__(self, keys) -> list[dict]:
        return [self[i] for i in keys]


@contextlib.contextmanager
def fake_tfds(tmp_path):
    """A data_dir in which mnist and binarized_mnist look prepared; yields its path."""
    for name, sizes in SPLITS.items():
        builder = tfds.builder(name, data_dir=str(tmp_path))
        version_dir = pathlib.Path(builder.data_dir)
        version_dir.mkdir(parents=True)
        splits = [{"name": s, "shardLengths": [str(n)], "numBytes": "0"} for s, n in sizes.items()]
        info = {
            "name": name,
            "version": str(builder.version),
            "fileFormat": "array_record",
            "splits": splits,
        }
        (version_dir / "dataset_info.json").write_text(json.dumps(info))

    def as_data_source(builder, split, **kwargs):
        return FakeSource(builder.name, split)

    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_FILES,
        data_dir=str(tmp_path),
        as_data_source_fn=as_data_source,
    ):
        yield str(tmp_path)
