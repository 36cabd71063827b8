"""experiments.encode: a split's or the user's own array's codes, round-tripped through numpy."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import vaejax
from experiments import encode as encode_cli
from experiments.configs import test as test_config
from vaejax import data as data_lib
from vaejax import experiment


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    config = test_config.get_config()
    config.update_from_flattened_dict({"data.name": "synthetic", "train.num_epochs": 1})
    path = str(tmp_path_factory.mktemp("encode") / "run")
    experiment.train_and_evaluate(config, path)
    return path


@pytest.fixture
def run_cli():
    def run(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["encode", *args])
        encode_cli.main([])

    yield run
    flags.FLAGS.unparse_flags()


def test_a_split_round_trips(workdir, tmp_path, run_cli):
    out = tmp_path / "codes.npz"
    run_cli(f"--workdir={workdir}", "--split=test", f"--out={out}", "--batch_size=32")
    images, labels = data_lib.synthetic_split("test")
    model = vaejax.load(workdir)
    with np.load(out) as saved:
        assert saved["codes"].shape == (len(images), model.latent_dim)
        assert saved["codes"].dtype == np.float32
        np.testing.assert_allclose(saved["codes"], model.posterior_mean(images), atol=1e-6)
        np.testing.assert_array_equal(saved["labels"], labels)


def test_the_users_own_array(workdir, tmp_path, run_cli):
    images = data_lib.synthetic_split("train")[0][:10]
    np.save(tmp_path / "mine.npy", images)
    out = tmp_path / "mine_codes.npz"
    run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'mine.npy'}", f"--out={out}")
    with np.load(out) as saved:
        assert set(saved.files) == {"codes"}
        np.testing.assert_allclose(
            saved["codes"], vaejax.load(workdir).posterior_mean(images), atol=1e-6
        )
    np.save(tmp_path / "floats.npy", images / 255.0)
    with pytest.raises(ValueError, match="raw data as the dataset stores it"):
        run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'floats.npy'}", f"--out={out}")


def test_the_command_line(workdir, tmp_path):
    out = tmp_path / "codes.npz"
    command = [sys.executable, "-m", "experiments.encode", f"--workdir={workdir}", f"--out={out}"]
    root = pathlib.Path(__file__).resolve().parents[1]
    subprocess.run(command, check=True, capture_output=True, cwd=root)
    with np.load(out) as saved:
        assert saved["codes"].shape == (80, 2) and saved["labels"].shape == (80,)
