"""The sweep's command line: its exit code and last line, signals, --retry_failed, --report."""

import json
import os
import signal
import time

import optuna
import pytest
from test_sweep import ROOT, _command, _log, _write_sweep

from vaejax import sweeps


def _last_line(out):
    return out.strip().splitlines()[-1]


def test_every_trial_failing_exits_nonzero_until_retry_failed_runs_them(tmp_path):
    space = "sweeps.choice(0.5, 1.0, 2.0)"
    path, log = _write_sweep(tmp_path, space=space, fail_without="FAKE_DATA_DIR")
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "0 of 3 trials COMPLETE" in _last_line(out) and "3 FAIL" in _last_line(out)
    assert "--retry_failed" in _last_line(out)

    # A plain rerun runs nothing: a failure is a result.
    rows = sweeps.run(str(path), workdir)
    assert [r["status"] for r in rows] == ["FAIL"] * 3 and len(_log(log)) == 3

    proc = _command(f"--sweep={path}", f"--workdir={workdir}", "--retry_failed", FAKE_DATA_DIR="1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "3 of 3 trials COMPLETE" in _last_line(out)
    assert sorted(r["key"] for r in _log(log)[3:]) == ["0", "1", "2"]
    table = (workdir / "trials.md").read_text()
    assert "3 of 3 trials; 3 COMPLETE" in table and "FAIL" not in table


def test_a_killed_worker_makes_the_sweep_exit_nonzero_and_the_rerun_resumes_it(tmp_path):
    path, log = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0, 2.0)", kill="1")
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}", "--workers=2")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "killed by SIGKILL" in out
    assert "1 INTERRUPTED" in _last_line(out) and "rerun the same command" in _last_line(out)
    table = (workdir / "trials.md").read_text()
    assert "INTERRUPTED" in table and "RUNNING" not in table  # the parent saw its worker die

    rows = sweeps.run(str(path), workdir)
    assert [(r["trial"], r["status"]) for r in rows] == [(k, "COMPLETE") for k in range(3)]
    assert rows[1]["attempts"] == 2
    assert [r["resumed"] for r in _log(log) if r["key"] == "1"] == [False, True]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_workers_within_seconds_and_the_rerun_resumes(tmp_path, signum):
    path, log = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0, 2.0)")
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}", "--workers=2", SWEEP_TEST_SLOW="1")
    deadline = time.time() + 90
    while len({r["pid"] for r in _log(log)} if log.exists() else ()) < 2:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    workers = {r["pid"] for r in _log(log)}
    sent = time.time()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert time.time() - sent < 15, out  # each worker's trial sleeps 60 s
    assert proc.returncode == 128 + signum, out
    name = signal.Signals(signum).name
    assert f"stopped by {name}" in _last_line(out) and "Rerun" in _last_line(out)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # none orphaned
    statuses = [r["status"] for r in sweeps.report(str(path), workdir)]
    assert sorted(statuses) == ["INTERRUPTED", "INTERRUPTED", "WAITING"]
    assert len(_log(log)) == 2  # no worker started another trial

    rows = sweeps.run(str(path), workdir)
    assert [r["status"] for r in rows] == ["COMPLETE"] * 3
    resumed = {r["key"]: r["resumed"] for r in _log(log)[2:]}
    assert resumed == {r["key"]: True for r in _log(log)[:2]} | {"2": False}


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def test_workers_stop_when_their_parent_is_killed(tmp_path):
    path, log = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0)")
    workdir = tmp_path / "sweep"
    proc = _command(f"--sweep={path}", f"--workdir={workdir}", "--workers=2", SWEEP_TEST_SLOW="1")
    deadline = time.time() + 90
    while len({r["pid"] for r in _log(log)} if log.exists() else ()) < 2:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.kill()  # SIGKILL: the parent can neither forward nor report
    proc.communicate(timeout=60)
    workers = {r["pid"] for r in _log(log)}
    deadline = time.time() + 15  # each worker's trial sleeps 60 s
    while any(_alive(pid) for pid in workers):
        assert time.time() < deadline, "a worker outlived its parent"
        time.sleep(0.1)
    rows = sweeps.run(str(path), workdir)  # both trials were interrupted, and now resume
    assert [(r["status"], r["attempts"]) for r in rows] == [("COMPLETE", 2)] * 2


def test_report_refuses_a_sweep_file_that_does_not_match_the_study(tmp_path):
    path, _ = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0)")
    workdir = tmp_path / "sweep"
    sweeps.run(str(path), workdir)
    table = (workdir / "trials.md").read_text()
    other = ROOT / "experiments" / "sweeps" / "test.py"

    proc = _command(f"--sweep={other}", f"--workdir={workdir}", "--report")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "no study named 'test'" in _last_line(out) and "'sweep_file'" in _last_line(out)
    assert (workdir / "trials.md").read_text() == table  # untouched
    storage = sweeps.make_storage(None, workdir)
    assert [s.study_name for s in storage.get_all_studies()] == ["sweep_file"]  # none created
    with pytest.raises(ValueError, match="holds the sweep 'sweep_file'"):
        sweeps.run(other, workdir)  # nor does a run mix another sweep into this workdir


def test_the_storage_url_comes_from_an_argument_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(sweeps.STORAGE_ENV, raising=False)
    assert sweeps.storage_url() is None  # a journal in the workdir
    monkeypatch.setenv(sweeps.STORAGE_ENV, "sqlite:///from_env.db")
    assert sweeps.storage_url() == "sqlite:///from_env.db"
    secret = tmp_path / "storage_url"
    secret.write_text("\n  sqlite:///from_file.db  \n")
    assert sweeps.storage_url(storage_file=str(secret)) == "sqlite:///from_file.db"
    assert sweeps.storage_url("sqlite:///given.db") == "sqlite:///given.db"
    with pytest.raises(ValueError, match="give one of them"):
        sweeps.storage_url("sqlite:///given.db", str(secret))
    secret.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        sweeps.storage_url(storage_file=str(secret))


def test_a_sweep_run_through_a_storage_file_shares_its_study(tmp_path):
    path, _ = _write_sweep(tmp_path, space="sweeps.choice(0.5, 1.0)")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    (tmp_path / "storage_url").write_text(url)
    proc = _command(
        f"--sweep={path}",
        f"--workdir={tmp_path / 'sweep'}",
        f"--storage_file={tmp_path}/storage_url",
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    study = optuna.load_study(study_name="sweep_file", storage=url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "sweep" / "study.journal").exists()
    assert json.loads((tmp_path / "sweep" / "trials" / "1" / "results.json").read_text())


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("psycopg") is not None,
    reason="psycopg is installed: a plain postgresql:// URL would connect instead of failing",
)
def test_a_missing_database_driver_names_the_fix_and_hides_the_password(tmp_path):
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://") as e:
        sweeps.make_storage("postgresql://vaejax:s3cret@127.0.0.1:1/vaejax", tmp_path)
    assert "s3cret" not in str(e.value) and "pip install psycopg2-binary" in str(e.value)


@pytest.mark.parametrize("problem", ["syntax_error", "missing"])
def test_a_bad_or_missing_sweep_file_exits_2_with_one_line_naming_it(tmp_path, problem):
    path = tmp_path / "broken.py"
    if problem == "syntax_error":
        path.write_text("from vaejax import sweeps\n\ndef get_sweep(:\n    pass\n")
    proc = _command(f"--sweep={path}", f"--workdir={tmp_path / 'sweep'}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2, out
    expected = "line 3 does not run: SyntaxError" if problem == "syntax_error" else "No sweep file"
    assert str(path) in _last_line(out) and expected in _last_line(out)
    with pytest.raises(sweeps.SweepFileError, match=expected):
        sweeps.load_sweep(path)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("psycopg2") is None, reason="needs psycopg2"
)
def test_an_unreachable_database_gives_a_short_message_without_the_password(tmp_path):
    proc = _command(
        f"--sweep={ROOT / 'experiments' / 'sweeps' / 'test.py'}",
        f"--workdir={tmp_path / 'sweep'}",
        VAEJAX_SWEEP_STORAGE="postgresql+psycopg2://vaejax:s3cret@127.0.0.1:1/vaejax",
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    assert "s3cret" not in out
    assert "Cannot connect" in out and "127.0.0.1:1" in out and "server runs" in out


@pytest.mark.parametrize(
    "url", ["vaejax:s3cret@db-host/vaejax", "postgresql+psycopg2://vaejax:s3cret@db-host:port/db"]
)
def test_a_malformed_storage_url_shows_the_expected_forms(tmp_path, url):
    with pytest.raises(ValueError, match="Cannot parse the storage URL") as e:
        sweeps.make_storage(url, tmp_path)
    assert "s3cret" not in str(e.value)
    assert "postgresql+psycopg2://user@host:port/db" in str(e.value)
    assert "sqlite:///" in str(e.value) and ".journal" in str(e.value)


def test_a_missing_storage_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"Cannot read storage_file='.*nofile'"):
        sweeps.storage_url(storage_file=str(tmp_path / "nofile"))
