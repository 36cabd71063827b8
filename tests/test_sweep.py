"""The sweep runner: trials complete, fail, get killed and resume, and share one storage."""

import csv
import importlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import optuna
import pytest

from experiments.configs import test as test_config
from vaejax import build, experiment, sweeps
from vaejax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "experiments" / "sweeps"


def _trials(workdir, name):
    storage = sweeps.make_storage(None, workdir)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def _fake_results(config):
    beta = float(config.objective.beta)
    return {
        "test": {"elbo": -100.0 - beta, "nll_20": 90.0 + beta},
        "valid": {"elbo": -101.0},
        "train_time_s": 0.01,
    }


def test_tiny_sweep_completes_writes_the_table_and_reruns_nothing(fake_dir, tmp_path):
    sweep = sweeps.load_sweep(SWEEPS / "test.py")
    sweep.config.data.data_dir = fake_dir
    workdir = tmp_path / "sweep"
    rows = sweeps.run(sweep, workdir)

    assert [r["trial"] for r in rows] == [0, 1, 2]
    assert [r["objective.beta"] for r in rows] == [0.5, 1.0, 2.0]
    assert all(r["status"] == "COMPLETE" for r in rows)
    for r in rows:
        assert np.isfinite(r["test.nll_20"]) and r["test.nll_20"] == r["test_nll"]
        assert np.isfinite(r["test_elbo"]) and r["wall_time_s"] > 0 and r["attempts"] == 1
        trial_dir = workdir / "trials" / str(r["trial"])
        saved = json.loads((trial_dir / "results.json").read_text())
        assert saved["config"]["objective"]["beta"] == r["objective.beta"]
        assert {"config.json", "samples.png", "checkpoints"} <= set(os.listdir(trial_dir))
    table = (workdir / "trials.md").read_text()
    assert "| trial | status | objective.beta | test.nll_20 |" in table and "Best: trial" in table
    with open(workdir / "trials.csv") as f:
        assert [int(r["trial"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert (workdir / "trials.png").stat().st_size > 0

    # The same command again: nothing new is trained or even asked of Optuna.
    mtime = (workdir / "trials" / "0" / "results.json").stat().st_mtime_ns
    assert sweeps.run(sweep, workdir) == rows
    assert len(_trials(workdir, "test")) == 3
    assert (workdir / "trials" / "0" / "results.json").stat().st_mtime_ns == mtime


def _fake_sweep(train_fn, **kwargs):
    kwargs.setdefault("space", {"objective.beta": sweeps.choice(0.5, 1.0, 2.0)})
    return sweeps.Sweep(
        config=test_config.get_config(),
        metric="test.nll_20",
        name="fake",
        train_fn=train_fn,
        **kwargs,
    )


def test_a_trial_that_raises_is_recorded_failed_while_the_others_finish(tmp_path):
    def train_fn(config, workdir):
        if config.objective.beta == 1.0:
            raise ValueError("Bernoulli likelihood needs data in {0, 1}")
        return _fake_results(config)

    rows = sweeps.run(_fake_sweep(train_fn), tmp_path)
    assert [r["status"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert "ValueError: Bernoulli likelihood needs data" in rows[1]["error"]
    assert rows[1]["test.nll_20"] is None and rows[2]["test.nll_20"] == 92.0
    assert "FAIL" in (tmp_path / "trials.md").read_text()
    # A failure is a result: rerunning does not retry it, and the verdict says how to.
    assert sweeps.run(_fake_sweep(train_fn), tmp_path) == rows
    assert len(_trials(tmp_path, "fake")) == 3
    complete, line = sweeps.summarize(rows, _fake_sweep(train_fn))
    assert not complete and "1 FAIL" in line and "--retry_failed" in line

    # Once the cause is fixed, retry_failed runs it again, in its directory, under its key.
    ran = []
    fixed = lambda config, workdir: ran.append(os.path.basename(workdir)) or _fake_results(config)
    rows = sweeps.run(_fake_sweep(fixed), tmp_path, retry_failed=True)
    assert ran == ["1"]
    assert [(r["status"], r["attempts"], r["error"]) for r in rows] == [
        ("COMPLETE", 1, ""),
        ("COMPLETE", 2, ""),
        ("COMPLETE", 1, ""),
    ]
    assert sweeps.summarize(rows, _fake_sweep(fixed))[0]
    assert sweeps.run(_fake_sweep(fixed), tmp_path, retry_failed=True) == rows  # nothing left


def test_a_key_enqueued_twice_trains_once(tmp_path):
    # Two machines that start at once may both enqueue trial 1; the earlier attempt trains.
    ran = []
    sweep = _fake_sweep(lambda c, w: ran.append(os.path.basename(w)) or _fake_results(c))
    study = sweeps.open_study(sweep, sweeps.make_storage(None, tmp_path))
    sweeps.enqueue_missing(study, sweep)
    study.enqueue_trial({"objective.beta": 1.0}, user_attrs={"key": 1})
    rows = sweeps.run(sweep, tmp_path)
    assert sorted(ran) == ["0", "1", "2"]
    assert [(r["trial"], r["status"], r["attempts"]) for r in rows] == [
        (k, "COMPLETE", 1) for k in range(3)
    ]
    assert [t.state.name for t in _trials(tmp_path, "fake")].count("PRUNED") == 1


def test_an_interrupted_trial_is_resumed_by_the_next_run_and_counted_once(tmp_path):
    calls = []

    def train_fn(config, workdir):
        calls.append(os.path.basename(workdir))
        marker = pathlib.Path(workdir) / "progress"
        if calls == ["0", "1"]:
            marker.write_text("half")
            raise KeyboardInterrupt  # Ctrl-C in trial 1
        return _fake_results(config) | {"resumed": marker.exists()}

    with pytest.raises(KeyboardInterrupt):
        sweeps.run(_fake_sweep(train_fn), tmp_path)
    rows = sweeps.run(_fake_sweep(train_fn), tmp_path)
    assert calls == ["0", "1", "2", "1"]  # trial 1 ran again in its own directory
    assert [(r["trial"], r["status"]) for r in rows] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "COMPLETE"),
    ]
    assert rows[1]["attempts"] == 2
    assert sweeps.run(_fake_sweep(train_fn), tmp_path) == rows


def test_population_trials_report_every_member(tmp_path, monkeypatch):
    from vaejax import population

    def fake_population(config, workdir, members):
        out = []
        for m in population.member_configs(config, members):
            res = _fake_results(m)
            res["test"]["nll_20"] += m.seed
            out.append(res)
        return {"members": out, "train_time_s": 0.5}

    monkeypatch.setattr(experiment, "train_and_evaluate_population", fake_population)
    sweep = _fake_sweep(None, space={"optim.b1": sweeps.choice(0.5, 0.9)}, population_size=2)
    assert sweep.members() == [{"seed": 0}, {"seed": 1}]
    rows = sweeps.run(sweep, tmp_path)
    assert [(r["trial"], r["member"], r["seed"]) for r in rows] == [
        (0, 0, 0),
        (0, 1, 1),
        (1, 0, 0),
        (1, 1, 1),
    ]
    assert [r["test.nll_20"] for r in rows] == [91.0, 92.0, 91.0, 92.0]
    values = [t.value for t in _trials(tmp_path, "fake")]
    assert values == [91.5, 91.5]  # the mean over the population's seeds


_SWEEP_FILE = """
import json, os, pathlib, signal, time

from experiments.configs import test as test_config
from vaejax import sweeps

LOG = {log!r}


def train(config, workdir):
    key = os.path.basename(workdir)
    progress = pathlib.Path(workdir) / "progress"
    resumed = progress.exists()
    with open(LOG, "a") as f:
        f.write(json.dumps({{"key": key, "pid": os.getpid(), "resumed": resumed}}) + "\\n")
    if {fail_without!r} and not os.environ.get({fail_without!r}):
        raise RuntimeError({fail_without!r} + " is unset")
    progress.write_text("half")
    if key == {kill!r} and not resumed:
        os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.time() + 20
    while len({{json.loads(x)["pid"] for x in open(LOG)}}) < {wait_for_pids}:
        assert time.time() < deadline, "the other worker never started a trial"
        time.sleep(0.05)
    if os.environ.get("SWEEP_TEST_SLOW"):  # a long training a signal interrupts
        time.sleep(60)
    beta = float(config.objective.beta)
    results = {{"test": {{"elbo": -100.0 - beta, "nll_20": 90.0 + beta}}, "resumed": resumed}}
    (pathlib.Path(workdir) / "results.json").write_text(json.dumps(results))
    return results


def get_sweep():
    return sweeps.Sweep(
        config=test_config.get_config(),
        space={{"objective.beta": {space}}},
        metric="test.nll_20",
        train_fn=train,
        name={name!r},
    )
"""


def _write_sweep(
    tmp_path, *, space, kill=None, wait_for_pids=0, fail_without=None, name=None, file="sweep_file"
):
    """A sweep file whose trials log each start, and may fail, kill themselves or wait."""
    path = tmp_path / f"{file}.py"
    log = tmp_path / "log.jsonl"
    options = dict(kill=kill, wait_for_pids=wait_for_pids, fail_without=fail_without, name=name)
    path.write_text(_SWEEP_FILE.format(log=str(log), space=space, **options))
    return path, log


def _command(*args, **env):
    """The sweep's command line in a subprocess, output captured."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_worker_processes_run_each_trial_exactly_once(tmp_path):
    space = "sweeps.choice(0.25, 0.5, 1.0, 2.0)"
    # Each trial waits until both workers have started one, so both surely take part.
    path, log = _write_sweep(tmp_path, space=space, wait_for_pids=2)
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}", "--workers=2")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    runs = _log(log)
    assert sorted(int(r["key"]) for r in runs) == [0, 1, 2, 3]  # each once
    assert len({r["pid"] for r in runs}) == 2  # by both workers
    rows = sweeps.report(str(path), workdir)
    assert [r["status"] for r in rows] == ["COMPLETE"] * 4


def test_a_second_machine_joins_through_the_storage_and_nothing_runs_twice(tmp_path):
    # Two workers started independently, as on two machines: their own workdirs and storage
    # objects, one study in a shared journal file; both start at once and race to create it.
    # (Threads stand in for the machines: flock and the journal's lock work between them too.)
    runs = []

    def train_fn(config, workdir):
        runs.append(os.path.basename(workdir))
        time.sleep(0.2)
        return _fake_results(config)

    sweep = _fake_sweep(
        train_fn,
        space={"objective.beta": sweeps.uniform(0.1, 4.0)},
        sampler="random",
        num_trials=5,
    )
    storage = str(tmp_path / "shared" / "study.journal")
    machines = [
        threading.Thread(
            target=sweeps.run_worker,
            args=(sweep, str(tmp_path / name)),
            kwargs={"storage": storage, "worker_index": i},
        )
        for i, name in enumerate(("machine_a", "machine_b"))
    ]
    for m in machines:
        m.start()
    for m in machines:
        m.join(timeout=60)
    assert len(runs) == 5 and len(set(runs)) == 5
    assert {
        d for name in ("machine_a", "machine_b") for d in os.listdir(tmp_path / name / "trials")
    } == set(runs)
    rows = sweeps.report(sweep, tmp_path / "report", storage=storage)
    assert len(rows) == 5 and all(r["status"] == "COMPLETE" for r in rows)
    assert sweeps.run(sweep, tmp_path / "machine_a", storage=storage) == rows  # done: no more


def test_a_killed_trial_resumes_in_its_directory_on_the_next_run(tmp_path):
    path, log = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0, 2.0)", kill="1")
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}")
    proc.communicate(timeout=120)
    assert proc.returncode != 0  # SIGKILLed in trial 1, holding its lock
    states = [t.state for t in _trials(workdir, "sweep_file")]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]

    rows = sweeps.run(str(path), workdir)
    assert [(r["trial"], r["status"]) for r in rows] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "COMPLETE"),
    ]
    runs = _log(log)
    assert [(r["key"], r["resumed"]) for r in runs] == [
        ("0", False),
        ("1", False),
        ("2", False),
        ("1", True),  # the retry found the killed attempt's progress
    ]
    assert rows[1]["attempts"] == 2


def test_a_changed_sweep_does_not_continue_an_old_study(tmp_path):
    sweeps.run(_fake_sweep(lambda c, w: _fake_results(c)), tmp_path)
    changed = _fake_sweep(
        lambda c, w: _fake_results(c), space={"objective.beta": sweeps.choice(3.0)}
    )
    with pytest.raises(ValueError, match="made by a different sweep"):
        sweeps.run(changed, tmp_path)


def test_bad_sweeps_fail_early_with_the_fix():
    with pytest.raises(ValueError, match="grid sweep takes Choice or Variants only"):
        _fake_sweep(None, space={"optim.learning_rate": sweeps.log_uniform(1e-4, 1e-2)})
    with pytest.raises(ValueError, match=r"'model.latent_size' is not in the base config"):
        _fake_sweep(None, space={"model.latent_size": sweeps.choice(2, 3)})
    with pytest.raises(ValueError, match="population fields must be among"):
        _fake_sweep(None, population={"model.latent_dim": [2, 3]})
    with pytest.raises(ValueError, match="needs num_trials >= 1"):
        _fake_sweep(None, space={"objective.beta": sweeps.uniform(0, 1)}, sampler="tpe")


def test_a_metric_missing_from_the_results_names_the_available_ones(tmp_path):
    sweep = _fake_sweep(lambda c, w: _fake_results(c))
    sweep.metric = "test.nll_5000"
    rows = sweeps.run(sweep, tmp_path)
    assert (
        rows[0]["status"] == "FAIL" and "available: ['test.elbo', 'test.nll_20'" in rows[0]["error"]
    )


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in SWEEPS.glob("*.py") if p.stem != "__init__")
)
def test_every_shipped_sweep_loads_and_builds(name):
    sweep = sweeps.load_sweep(SWEEPS / f"{name}.py")
    points = sweep.grid() if sweep.sampler == "grid" else [{"optim.learning_rate": 1e-3}]
    for params in points:
        model_cfg = config_lib.read(sweep.trial_config(params)).model
        build.build_model(model_cfg, (28, 28, 1), build.build_likelihood(model_cfg))
    assert importlib.import_module(f"experiments.sweeps.{name}").get_sweep().metric == sweep.metric


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_whose_machine_went_silent_is_retried_through_the_heartbeat(tmp_path, monkeypatch):
    # An RDB storage (here SQLite) records heartbeats; a trial whose worker on another machine
    # stopped beating is failed by Optuna and run again here, under its own key.
    monkeypatch.setattr(sweeps.storage, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(sweeps.storage, "HEARTBEAT_GRACE_S", 1)
    ran = []

    def train_fn(config, workdir):
        ran.append(os.path.basename(workdir))
        return _fake_results(config)

    sweep = _fake_sweep(train_fn)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = sweeps.open_study(sweep, sweeps.make_storage(url, tmp_path))
    sweeps.enqueue_missing(study, sweep)
    lost = study.ask()  # trial 0 starts on "another machine", beats once, then goes silent
    lost.suggest_categorical("objective.beta", (0.5, 1.0, 2.0))
    lost.set_user_attr("host", "another-machine")
    study._storage.record_heartbeat(lost._trial_id)  # what Study.optimize's thread does
    time.sleep(2.5)

    rows = sweeps.run(sweep, tmp_path, storage=url)
    assert sorted(ran) == ["0", "1", "2"]  # trial 0 again, under its key
    assert [(r["trial"], r["status"], r["attempts"]) for r in rows] == [
        (0, "COMPLETE", 2),
        (1, "COMPLETE", 1),
        (2, "COMPLETE", 1),
    ]
