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


def test_the_log_names_the_file_written(workdir, tmp_path, run_cli, caplog):
    out = tmp_path / "codes"  # numpy appends .npz
    with caplog.at_level("INFO", logger="vaejax"):
        run_cli(f"--workdir={workdir}", f"--out={out}")
    assert (tmp_path / "codes.npz").exists() and not out.exists()
    assert caplog.records[-1].getMessage().endswith(f"to {out}.npz")


def test_data_other_than_a_npy_file_is_refused_and_never_unpickled(workdir, tmp_path, run_cli):
    images = data_lib.synthetic_split("train")[0][:10]
    out = tmp_path / "codes.npz"
    np.savez(tmp_path / "x.npz", images=images)
    with pytest.raises(ValueError, match=r"x\.npz is an \.npz archive, not a \.npy file"):
        run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'x.npz'}", f"--out={out}")

    marker = tmp_path / "unpickled"
    (tmp_path / "x.pkl").write_bytes(
        __import__("pickle").dumps(_Touch(str(marker)))  # would create `marker` if unpickled
    )
    with pytest.raises(ValueError, match=r"x\.pkl is not a NumPy \.npy file") as e:
        run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'x.pkl'}", f"--out={out}")
    assert "allow_pickle" not in str(e.value)

    np.save(tmp_path / "objects.npy", np.array([_Touch(str(marker))], dtype=object))
    with pytest.raises(ValueError, match=r"objects\.npy holds Python objects") as e:
        run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'objects.npy'}", f"--out={out}")
    assert "allow_pickle" not in str(e.value) and "unsafely" not in str(e.value)
    with pytest.raises(ValueError, match=r"Cannot read --data=.*missing\.npy"):
        run_cli(f"--workdir={workdir}", f"--data={tmp_path / 'missing.npy'}", f"--out={out}")
    assert not marker.exists() and not out.exists()


class _Touch:
    """Creates a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))
