"""Checkpoints are verified when restored: a damaged latest step is named and skipped."""

import errno
import glob
import logging
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging

from vaejax import checkpoints
from vaejax.checkpoints import Checkpointer, CheckpointError, DiskFullError


def _tree(offset: float) -> dict:
    return {"w": jnp.arange(2000.0) + offset, "count": jnp.asarray(3, jnp.int32)}


@pytest.fixture
def two_steps(tmp_path):
    with Checkpointer(tmp_path) as c:
        c.save(1, _tree(0.0), metadata={"train_time_s": 1.0})
        c.save(2, _tree(1.0), metadata={"train_time_s": 2.0})
    return tmp_path


def _largest_data_file(workdir, step: int) -> str:
    files = glob.glob(
        os.path.join(workdir, "checkpoints", str(step), "**", "d", "*"), recursive=True
    )
    return max(files, key=os.path.getsize)


def _flip_bytes(workdir):
    path = _largest_data_file(workdir, 2)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        for i in range(len(data) // 2, len(data) // 2 + 8):
            data[i] ^= 0xFF
        f.seek(0)
        f.write(data)


def _truncate(workdir):
    path = _largest_data_file(workdir, 2)
    os.truncate(path, os.path.getsize(path) // 2)


def _delete_metadata(workdir):
    os.remove(os.path.join(workdir, "checkpoints", "2", "default", "_METADATA"))


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate])
def test_a_damaged_latest_step_is_named_and_the_previous_one_restored(two_steps, damage, caplog):
    damage(two_steps)
    with caplog.at_level(logging.WARNING), Checkpointer(two_steps) as c:
        restored = c.restore(_tree(0.0))
        assert c.metadata() == {"train_time_s": 1.0}  # the restored step's, not the bad one's
        assert c.latest_step() == 1  # the bad step was moved aside
        c.save(2, _tree(5.0))  # training saves that step number again
        np.testing.assert_array_equal(c.restore(_tree(0.0))["w"], _tree(5.0)["w"])
    np.testing.assert_array_equal(restored["w"], _tree(0.0)["w"])
    assert "Checkpoint step 2" in caplog.text and "trying the newest step before it" in caplog.text
    assert os.listdir(two_steps / "bad_checkpoints")[0].startswith("2.")


def test_a_read_only_reader_falls_back_and_moves_nothing(two_steps, caplog):
    """What vaejax.load uses beside a training run: the newest good step, no file changed."""
    _flip_bytes(two_steps)
    (two_steps / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir()  # a save in flight
    with caplog.at_level(logging.WARNING), Checkpointer(two_steps, read_only=True) as c:
        np.testing.assert_array_equal(c.restore()["w"], _tree(0.0)["w"])
        assert c.current_step == 1 and c.all_steps() == [1, 2]
    assert "Checkpoint step 2" in caplog.text and "left it in place" in caplog.text
    assert (two_steps / "checkpoints" / "3.orbax-checkpoint-tmp-1").is_dir()
    assert not (two_steps / "bad_checkpoints").exists()


def test_a_deleted_metadata_file_restores_verified_values(two_steps):
    """Orbax reads the arrays without `_METADATA`; the checksum says they are the saved ones."""
    _delete_metadata(two_steps)
    with Checkpointer(two_steps) as c:
        restored = c.restore(_tree(0.0))
        step = c._current
    np.testing.assert_array_equal(restored["w"], _tree(step - 1.0)["w"])


def test_a_target_of_another_structure_moves_nothing(two_steps):
    with Checkpointer(two_steps) as c, pytest.raises(CheckpointError, match="can be restored"):
        c.restore({"other": jnp.zeros(3)})
    assert not (two_steps / "bad_checkpoints").exists()


def test_a_given_bad_step_raises_naming_it(two_steps):
    _flip_bytes(two_steps)
    with Checkpointer(two_steps) as c, pytest.raises(CheckpointError, match="step 2"):
        c.restore(_tree(0.0), step=2)


def test_no_good_step_says_so(two_steps):
    _flip_bytes(two_steps)
    os.truncate(_largest_data_file(two_steps, 1), 10)
    with Checkpointer(two_steps) as c, pytest.raises(CheckpointError, match="can be restored"):
        c.restore(_tree(0.0))


def test_flipped_values_that_still_decode_fail_the_checksum(two_steps):
    """The checksum, not a decode error, catches a silent change (e.g. 2.5e38 Adam moments)."""
    with Checkpointer(two_steps) as c:
        with pytest.raises(CheckpointError, match="checksum"):
            c.verify(2, _tree(1.0) | {"w": _tree(1.0)["w"].at[7].set(2.5e38)})
        c.verify(2, _tree(1.0))  # the saved values pass
        assert c.latest_good_step() == 2


def test_disk_full_is_said_first_and_once(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)

    def full(*args, **kwargs):
        # As Orbax's writer threads do: each logs its own traceback of the full disk.
        for _ in range(3):
            absl_logging.error("_SignalingThread.run() raised: No space left on device [28]")
        absl_logging.info("an unrelated record still shows")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("Event loop is closed") from e

    with Checkpointer(tmp_path) as c:
        monkeypatch.setattr(c._manager, "save", full)
        with pytest.raises(DiskFullError, match=r"^No space left on device: the checkpoint") as e:
            c.save(1, _tree(0.0))
    assert e.value.errno == errno.ENOSPC and e.value.__cause__ is None
    logged = caplog.text
    assert "No space left" not in logged and "an unrelated record still shows" in logged
    absl_logging.error("after the save: No space left on device")  # the filter is gone again
    assert "after the save" in caplog.text


def test_restore_without_target_of_a_run_saved_on_3_devices_on_1(tmp_path):
    """Was a topology error: the saved sharding named 3 devices."""
    script = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from vaejax.checkpoints import Checkpointer
        mesh = Mesh(np.array(jax.devices()), ("data",))
        x = jax.device_put(jnp.arange(6.0), NamedSharding(mesh, PartitionSpec("data")))
        with Checkpointer({str(tmp_path)!r}) as c:
            c.save(1, {{"params": {{"w": x}}}})
        """
    )
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    assert len(jax.devices()) == 1 or os.environ.get("XLA_FLAGS")
    with Checkpointer(tmp_path) as c:
        restored = c.restore()
    np.testing.assert_array_equal(restored["params"]["w"], np.arange(6.0))


def test_checksum_ignores_nesting_and_exact_widening():
    a = {"x": np.arange(3, dtype=np.int32), "y": np.ones(2, np.float32)}
    b = [np.ones(2, np.float64), np.arange(3, dtype=np.int64)]
    assert checkpoints.checksum(a) == checkpoints.checksum(b)
    assert checkpoints.checksum(a) != checkpoints.checksum({**a, "y": np.zeros(2, np.float32)})


def test_keep_every_steps_keeps_the_first_step_of_each_interval_and_the_latest_two(tmp_path):
    saved = [3, 5, 9, 12, 13, 20, 21]
    with Checkpointer(tmp_path / "curve", keep_every_steps=10) as c:
        for s in saved:
            c.save(s, _tree(float(s)))
        assert c.all_steps() == [3, 12, 20, 21]  # [0, 10): 3; [10, 20): 12; [20, 30): 20
        np.testing.assert_array_equal(c.restore(_tree(0.0), step=12)["w"], _tree(12.0)["w"])
    with Checkpointer(tmp_path / "latest") as c:  # the default: the latest two only
        for s in saved:
            c.save(s, _tree(float(s)))
        assert c.all_steps() == [20, 21]
