"""Running a sweep: its study, one or many worker processes, their signals, the report."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import optuna

from vaejax.sweeps import reporting, signals, trials
from vaejax.sweeps.objective import TrialObjective
from vaejax.sweeps.spec import Sweep, load_sweep
from vaejax.sweeps.storage import make_storage, open_study

log = logging.getLogger(__name__)

STOP_GRACE_S = 10  # after a forwarded signal, workers still running are killed


def prepare(study: optuna.Study, sweep: Sweep, *, retry_failed: bool = False) -> None:
    """Retries interrupted (and, with `retry_failed`, failed) trials; enqueues missing ones.

    Args:
      study: the sweep's study.
      sweep: the sweep.
      retry_failed: also retry the trials that failed (raised).
    """
    trials.recover(study, retry_failed=retry_failed)
    trials.enqueue_missing(study, sweep)


def run_worker(
    sweep: Sweep,
    workdir: str,
    *,
    storage: str | None = None,
    worker_index: int = 0,
    retry_failed: bool = False,
    stop: signals.Stop | None = None,
    prepared: bool = False,
) -> None:
    """One worker: runs the study's waiting trials until none is left (or a signal stops it).

    Unless `prepared`, it first retries this machine's interrupted trials and enqueues the
    missing ones, so the same call on another machine joins the sweep.

    Args:
      sweep: the sweep.
      workdir: the sweep's directory; trial k trains in `trials/<k>/`.
      storage: the Optuna storage URL; None: the journal in `workdir`.
      worker_index: this worker's index; offsets its sampler's seed.
      retry_failed: when preparing, also retry the trials that failed.
      stop: what a signal asked for, shared with the signal handler; None: a new `Stop`.
      prepared: skip `prepare` (the caller has done it).
    """
    stop = stop or signals.Stop()
    study = open_study(sweep, make_storage(storage, workdir), worker_index=worker_index)
    if not prepared:
        prepare(study, sweep, retry_failed=retry_failed)
    objective = TrialObjective(sweep, workdir, stop)

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if stop.signum is not None or not trials.waiting(study):
            study.stop()

    while stop.signum is None and trials.waiting(study):
        try:
            study.optimize(
                objective, catch=(Exception,), callbacks=[stop_when_done], gc_after_trial=True
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            # The heartbeat failed this trial while it ran (a false alarm); its retry reuses
            # the results it just wrote.
            log.warning("A trial outlived its heartbeat grace period; its retry takes over.")


def _core_groups(workers: int) -> list[list[int] | None]:
    """This machine's cores split among workers; None (no pinning) when there are too few."""
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        return [None] * workers
    return [[int(c) for c in g] for g in np.array_split(cores, workers)]


def _worker_env(index: int, cores: list[int] | None) -> dict[str, str]:
    env = dict(os.environ)
    if cores is not None:
        threads = str(len(cores))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = threads
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if gpus:  # one GPU per worker, round robin
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def _stop_when_parent_dies() -> None:
    """The parent holds our stdin open; its end (the parent died, however) stops this worker
    as SIGTERM would."""
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main() -> None:
    """Entry of a worker process started by `run`. Its arguments (the storage URL among them)
    come on stdin, never in argv or the environment, where `ps` or a child could read them."""
    spec = json.loads(sys.stdin.readline())
    if spec["cores"] is not None:
        os.sched_setaffinity(0, spec["cores"])  # before JAX sizes its thread pools
    # Our progress at INFO; libraries (Orbax logs every save at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(process)d %(message)s")
    logging.getLogger("vaejax").setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = signals.Stop()
    with signals.handled(signals.raise_in_training(stop)):
        threading.Thread(target=_stop_when_parent_dies, daemon=True).start()
        try:
            sweep = load_sweep(spec["sweep"])
            run_worker(
                sweep,
                spec["workdir"],
                storage=spec["storage"],
                worker_index=spec["index"],
                stop=stop,
                prepared=True,
            )
        except KeyboardInterrupt:
            pass
    if stop.signum is not None:
        sys.exit(128 + stop.signum)


def _start_workers(sweep: Sweep, workdir: str, storage: str | None, workers: int) -> list:
    procs = []
    for i, cores in enumerate(_core_groups(workers)):
        cmd = [sys.executable, "-c", "from vaejax.sweeps import runner; runner.worker_main()"]
        proc = subprocess.Popen(  # its own process group: Ctrl-C reaches it once, forwarded by us
            cmd, env=_worker_env(i, cores), stdin=subprocess.PIPE, text=True, start_new_session=True
        )
        spec = {"sweep": sweep.source, "workdir": workdir, "storage": storage}
        proc.stdin.write(json.dumps(spec | {"index": i, "cores": cores}) + "\n")
        proc.stdin.flush()
        procs.append(proc)
        log.info("Started worker %d (pid %d) on cores %s", i, proc.pid, cores or "all")
    return procs


def _wait_for_workers(procs: list, stop: signals.Stop) -> list[int]:
    """Waits for the workers; after a signal, kills those still running STOP_GRACE_S later
    (or at once, on a second signal). Returns their exit codes."""
    deadline = None
    while any(p.poll() is None for p in procs):
        if stop.signum is not None:
            deadline = deadline or time.monotonic() + STOP_GRACE_S
            if stop.count > 1 or time.monotonic() > deadline:
                for p in procs:
                    if p.poll() is None:
                        log.warning("Worker pid %d did not stop; killing it.", p.pid)
                        p.kill()
        time.sleep(0.1)
    for p in procs:
        with contextlib.suppress(OSError):
            p.stdin.close()
    return [p.returncode for p in procs]


def _run_workers(sweep: Sweep, workdir: str, storage: str | None, workers: int, stop) -> None:
    procs = _start_workers(sweep, workdir, storage, workers)

    def forward(signum: int) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    with signals.handled(signals.record(stop, forward)):
        codes = _wait_for_workers(procs, stop)
    died = {i: c for i, c in enumerate(codes) if c}
    for i, code in died.items():
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        log.warning("Worker %d (pid %d) ended with %s.", i, procs[i].pid, how)


def _check_workdir(storage: optuna.storages.BaseStorage, sweep: Sweep) -> None:
    """A workdir holds one sweep: its trials/<k>/ would collide with another's."""
    others = sorted({s.study_name for s in storage.get_all_studies()} - {sweep.name})
    if others:
        raise ValueError(
            f"This workdir holds the sweep {others[0]!r}; the sweep {sweep.name!r} would mix "
            "its trials with that one's. Use another --workdir, or the sweep file of "
            f"{others[0]!r}."
        )


def run(
    sweep: Sweep | str | os.PathLike,
    workdir: str | os.PathLike,
    *,
    workers: int = 1,
    storage: str | None = None,
    report: bool = True,
    retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Runs (or continues) a sweep until no trial is left to run; returns the report's rows.

    `reporting.summarize(rows, sweep)` says whether the sweep is complete, and if not, why.
    SIGINT or SIGTERM interrupts the trials in training (forwarded to the workers), writes the
    report and raises `Interrupted`; the next run resumes the interrupted trials.

    Args:
      sweep: a `Sweep`, or the path of a sweep file (needed for `workers > 1`: each worker
        process loads the file).
      workdir: the sweep's directory: `trials/<key>/`, the default journal storage, the report.
      workers: trials run at once on this machine, each in its own process pinned to an equal
        share of the cores (or, with CUDA_VISIBLE_DEVICES set, to one GPU each). 1 runs them
        in this process.
      storage: an Optuna storage URL (see `make_storage`); None keeps the study in `workdir`.
      report: write `trials.md`, `trials.csv` and `trials.png` at the end.
      retry_failed: run again the trials that failed (raised) in earlier runs. Interrupted or
        killed trials are always resumed.

    Returns:
      The report's rows (`reporting.report_rows`).

    Raises:
      vaejax.sweeps.Interrupted: a signal stopped the sweep (after the report is written).
      ValueError: `workers < 1`, `workers > 1` without a sweep file, or `workdir` holds
        another sweep.
    """
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}.")
    if workers > 1 and sweep.source is None:
        raise ValueError(
            f"workers={workers} needs the sweep as a file (each worker process loads it); pass "
            "its path, or load it with vaejax.sweeps.load_sweep."
        )
    store = make_storage(storage, workdir)
    if storage is None:
        _check_workdir(store, sweep)
    prepare(open_study(sweep, store), sweep, retry_failed=retry_failed)
    stop = signals.Stop()
    try:
        if workers == 1:
            with signals.handled(signals.raise_in_training(stop)):
                run_worker(sweep, workdir, storage=storage, stop=stop, prepared=True)
        else:
            _run_workers(sweep, workdir, storage, workers, stop)
    finally:  # also when interrupted: the report says what ran
        study = open_study(sweep, make_storage(storage, workdir))
        trials.fail_dead(study)
        rows = reporting.report_rows(study, sweep)
        if report:
            reporting.write_report(rows, sweep, workdir)
    if stop.signum is not None:
        raise signals.Interrupted(stop.signum)
    return rows
