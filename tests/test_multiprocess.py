"""Two processes on this machine train as one run (jax.distributed, gloo collectives over
127.0.0.1), reach the losses of one process with the same global batch, write each file once,
and resume across both."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

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


def _start(workdir, pid, port, *extra, timeout_s=6):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid))
    env |= {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "VAEJAX_DISTRIBUTED_TIMEOUT_S": str(timeout_s),
    }
    cmd = [sys.executable, "-m", "experiments.mnist", f"--workdir={workdir}", *ARGS, *extra]
    return subprocess.Popen(
        [*cmd, "--config.distributed=True"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _said_once(out: str, *parts: str) -> None:
    lines = [line for line in out.splitlines() if line.startswith("vaejax: ")]
    assert len(lines) == 1 and all(p in lines[0] for p in parts), out[-3000:]
    assert "Fatal Python error" not in out and "Check failure" not in out, out[-3000:]


def test_a_process_that_never_starts_is_named_in_bounded_time(tmp_path):
    """Was: process 0 silent for 309 s, then a fatal-error dump ("another task died")."""
    proc = _start(tmp_path, 0, _free_port())
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1
    assert "waiting for 2 processes" in out
    _said_once(out, "process 0 of 2", "process 1 never connected", "within 6 s")


def test_the_coordinators_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("", 0))
        port = taken.getsockname()[1]
        taken.listen()
        first = _start(tmp_path, 0, port)
        second = _start(tmp_path, 1, port)
        outs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert first.returncode != 0 and f"port {port}, which is in use" in outs[0], outs[0][-3000:]
    assert "Fatal Python error" not in outs[0]
    assert second.returncode == 1
    _said_once(outs[1], "process 1 of 2", "within 6 s")


def test_a_process_killed_mid_run_is_named_and_the_other_stops(tmp_path):
    """Was: a fatal-error dump in the survivor after JAX's 100 s heartbeat timeout."""
    port = _free_port()
    epochs = "--config.train.num_epochs=400"  # long enough to be killed mid-run
    procs = [
        _start(tmp_path, pid, port, epochs, "--config.train.checkpoint_every_steps=20")
        for pid in (0, 1)
    ]
    deadline = time.monotonic() + 300
    while not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints"):
        assert time.monotonic() < deadline and procs[0].poll() is None
        time.sleep(0.5)
    procs[1].kill()
    out = procs[0].communicate(timeout=120)[0]
    procs[1].communicate()
    assert procs[0].returncode == 1
    _said_once(out, "process 0 of 2", "process 1 stopped", "checkpoint is kept")
