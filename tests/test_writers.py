"""Tests for vaejax.writers: JSON-lines round trip, resuming, truncation, TensorBoard output."""

import json
import math
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from vaejax import files, writers


def read_events(workdir) -> list[tuple[int, str, float, bool]]:
    """(step, tag, scalar value, is image) of every summary value in the run's event files."""
    values = []
    for path in sorted((workdir / writers.TENSORBOARD_DIR).glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):  # TFRecord framing: length, length CRC, payload, payload CRC.
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for v in event.summary.value:
                values.append((event.step, v.tag, v.simple_value, v.HasField("image")))
    return values


def test_round_trip_and_tensorboard(tmp_path):
    scalars = {
        1: {"train/loss": 95.5, "train/elbo": np.float32(-95.5)},
        2: {"train/loss": 90.25, "valid/kl": float("inf"), "valid/elbo": float("nan")},
    }
    with writers.MetricWriter(tmp_path) as writer:
        for step, values in scalars.items():
            writer.write_scalars(step, values)
        writer.write_images(2, {"samples": np.random.default_rng(0).uniform(size=(8, 8))})
        writer.write_images(2, {"rgb": np.zeros((8, 8, 3), np.uint8)})

    records = writers.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    assert records[0] == {"step": 1, "train/loss": 95.5, "train/elbo": -95.5}
    assert records[1]["train/loss"] == 90.25
    # Non-finite values are stored as strict-JSON null and read back as NaN.
    assert math.isnan(records[1]["valid/kl"]) and math.isnan(records[1]["valid/elbo"])
    lines = (tmp_path / writers.METRICS_FILE).read_text().splitlines()
    assert json.loads(lines[1])["valid/kl"] is None

    events = read_events(tmp_path)
    assert (1, "train/loss", 95.5, False) in events
    assert (2, "train/loss", 90.25, False) in events
    assert {tag for _, tag, _, is_image in events if is_image} == {"samples", "rgb"}


def test_reopen_appends_and_resumed_steps_replace_old_ones(tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
        for step in (10, 20, 30):
            writer.write_scalars(step, {"train/loss": float(step)})
    with writers.MetricWriter(tmp_path) as writer:  # Resumed from a checkpoint at step 20.
        writer.write_scalars(30, {"train/loss": -30.0})
        writer.write_scalars(30, {"valid/elbo": -1.0})  # A second line for the same step merges.
        writer.write_scalars(40, {"train/loss": -40.0})
    assert len((tmp_path / writers.METRICS_FILE).read_text().splitlines()) == 6
    assert writers.read_metrics(tmp_path) == [
        {"step": 10, "train/loss": 10.0},
        {"step": 20, "train/loss": 20.0},
        {"step": 30, "train/loss": -30.0, "valid/elbo": -1.0},
        {"step": 40, "train/loss": -40.0},
    ]


def test_purge_step_hides_records_of_earlier_runs(tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
        for step in (10, 20, 30, 40):
            writer.write_scalars(step, {"loss": float(step)})
    with writers.MetricWriter(tmp_path, purge_step=30) as writer:
        writer.write_scalars(30, {"loss": 0.0})
    assert writers.read_metrics(tmp_path) == [
        {"step": 10, "loss": 10.0},
        {"step": 20, "loss": 20.0},
        {"step": 30, "loss": 0.0},
    ]


def test_truncated_last_line_is_tolerated_and_repaired(tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
        writer.write_scalars(1, {"loss": 1.0})
    path = tmp_path / writers.METRICS_FILE
    with path.open("a") as f:
        f.write('{"step": 2, "lo')  # A run killed mid-write.
    assert writers.read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]

    with writers.MetricWriter(tmp_path) as writer:  # Reopening drops the partial line.
        writer.write_scalars(2, {"loss": 2.0})
    assert writers.read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]


def test_corrupt_middle_line_raises(tmp_path):
    (tmp_path / writers.METRICS_FILE).write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        writers.read_metrics(tmp_path)


def test_bad_inputs_raise(tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="single number"):
            writer.write_scalars(1, {"loss": np.zeros(3)})
        with pytest.raises(ValueError, match="reserved"):
            writer.write_scalars(1, {"step": 1.0})
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            writer.write_images(1, {"x": np.full((4, 4), 2.0)})
        with pytest.raises(ValueError, match="C in"):
            writer.write_images(1, {"x": np.zeros((2, 4, 4, 1))})


def test_write_json_is_atomic(tmp_path, monkeypatch):
    # A reader while the file is being written (another process of a multi-process run reads
    # train_config.json while process 0 rewrites it) sees the old file whole, never a part.
    path = tmp_path / "run" / "train_config.json"
    files.write_json(path, {"old": 1})
    seen = []
    real_dump = json.dump

    def dump_with_a_reader_in_the_middle(obj, f, **kwargs):
        text = json.dumps(obj, **kwargs)
        f.write(text[: len(text) // 2])
        f.flush()
        seen.append(json.loads(path.read_text()))
        f.write(text[len(text) // 2 :])

    monkeypatch.setattr(json, "dump", dump_with_a_reader_in_the_middle)
    files.write_json(path, {"new": [1, 2, 3], "value": 0.5})
    monkeypatch.setattr(json, "dump", real_dump)
    assert seen == [{"old": 1}]
    assert json.loads(path.read_text()) == {"new": [1, 2, 3], "value": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["train_config.json"]  # no temporary left


def test_write_json_failure_leaves_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    files.write_json(path, {"old": 1})
    circular = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular"):  # fails half-way through the dump
        files.write_json(path, {"fine": 1, "bad": circular})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
