"""The README's multi-machine recipe against a real PostgreSQL server: two workers share one
study through `postgresql+psycopg2://` (psycopg2-binary), each trial runs exactly once, and the
URL with its password reaches the command through a file and the environment, never argv.

`.ci/run` starts a server on 127.0.0.1 and sets VAEJAX_TEST_POSTGRES_URL; elsewhere the test
is skipped, saying so, except under CI, where a missing server fails it.
"""

import contextlib
import os
import uuid

import optuna
import pytest
from test_sweep import _command, _log, _write_sweep

from vaejax import sweeps

URL_ENV = "VAEJAX_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url():
    url = os.environ.get(URL_ENV)
    if not url:
        why = (
            f"needs a PostgreSQL server: set {URL_ENV}=postgresql+psycopg2://user:password@"
            "127.0.0.1:port/db (.ci/run starts one)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"CI must run the PostgreSQL sweep test: it {why}.")
        pytest.skip(why)
    return url


def test_two_workers_share_a_postgresql_study_and_run_each_trial_once(tmp_path, postgres_url):
    name = f"pg_{uuid.uuid4().hex[:12]}"  # the database outlives the test: a fresh study
    space = "sweeps.choice(0.25, 0.5, 1.0, 2.0)"
    path, log = _write_sweep(tmp_path, space=space, wait_for_pids=2, name=name)
    secret = tmp_path / "storage_url"
    secret.write_text(postgres_url + "\n")
    secret.chmod(0o600)
    workdir = tmp_path / "sweep"
    try:
        args = (f"--sweep={path}", f"--workdir={workdir}", "--workers=2")
        proc = _command(*args, f"--storage_file={secret}")
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        runs = _log(log)
        assert sorted(int(r["key"]) for r in runs) == [0, 1, 2, 3]  # each once
        assert len({r["pid"] for r in runs}) == 2  # by both workers
        password = _password(postgres_url)
        assert not password or password not in out

        # The same command with the URL in the environment: the study is complete, nothing runs.
        proc = _command(*args, **{sweeps.STORAGE_ENV: postgres_url})
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "4 of 4 trials COMPLETE" in out, out
        assert len(_log(log)) == 4
        rows = sweeps.report(str(path), workdir, storage=postgres_url)
        assert [(r["trial"], r["status"], r["attempts"]) for r in rows] == [
            (k, "COMPLETE", 1) for k in range(4)
        ]
        assert not (workdir / "study.journal").exists()
    finally:
        with contextlib.suppress(KeyError):  # KeyError: the study was never created
            optuna.delete_study(study_name=name, storage=postgres_url)


def _password(url):
    import sqlalchemy

    return sqlalchemy.engine.make_url(url).password
