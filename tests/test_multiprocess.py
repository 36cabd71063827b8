"""Two processes on this machine train as one run (jax.distributed, gloo collectives over
127.0.0.1), reach the losses of one process with the same global batch, write each file once,
and resume across both."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from vaejax.writers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "--config=experiments/configs/test.py",
    "--config.data.name=synthetic",
    "--config.train.progress_bar=False",
    "--config.eval.num_test=40",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(workdir, *extra, processes=1):
    cmd = [sys.executable, "-m", "experiments.mnist", f"--workdir={workdir}", *ARGS, *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if processes == 1:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
        return
    env |= {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
    procs = [
        subprocess.Popen(
            [*cmd, "--config.distributed=True"],
            cwd=ROOT,
            env=env | {"JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    # Both processes' logs: when one fails, the other is aborted by JAX's coordination service
    # wherever it waits, and only the first one's log says why.
    failed = [
        f"process {i} exited with {p.returncode}:\n{out[-3000:]}"
        for i, (p, out) in enumerate(zip(procs, outs, strict=True))
        if p.returncode != 0
    ]
    assert not failed, "\n\n".join(failed)
    assert "Rank 1 is connected to 1 peer ranks" in outs[1]  # really two processes


def _losses(workdir):
    return [(r["step"], r["train/loss"]) for r in read_metrics(workdir) if "train/loss" in r]


def test_two_processes_train_as_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(one, "--config.train.num_epochs=2")
    _run(two, "--config.train.num_epochs=2", processes=2)
    a, b = _losses(one), _losses(two)
    assert [s for s, _ in b] == [s for s, _ in a]  # each step's record once, not once per process
    # The same losses, up to the order of the all-reduce's sums.
    np.testing.assert_allclose([v for _, v in b], [v for _, v in a], rtol=1e-5)
    results = json.loads((two / "results.json").read_text())
    assert results["test"]["elbo"] == pytest.approx(
        json.loads((one / "results.json").read_text())["test"]["elbo"], rel=1e-5
    )
    assert not [p for p in os.listdir(two) if p.endswith(".tmp")]


def test_two_processes_resume_across_both(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(one, "--config.train.num_epochs=2")
    _run(two, "--config.train.num_epochs=2", processes=2)
    # Killed after the checkpoint before the last, then resumed across both processes from the
    # checkpoint both wrote as one: the same run.
    steps = sorted(int(p) for p in os.listdir(two / "checkpoints"))
    assert steps == sorted(int(p) for p in os.listdir(one / "checkpoints")) and len(steps) == 2
    shutil.rmtree(two / "checkpoints" / str(steps[-1]))
    (two / "results.json").unlink()
    _run(two, "--config.train.num_epochs=2", processes=2)
    a, b = _losses(one), _losses(two)
    assert [s for s, _ in b] == [s for s, _ in a]
    np.testing.assert_allclose([v for _, v in b], [v for _, v in a], rtol=1e-5)
    assert json.loads((two / "results.json").read_text())["steps"] == steps[-1]
