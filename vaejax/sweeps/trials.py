"""The queue of a sweep's trials: which attempts count, enqueueing, claiming, retrying.

Every trial is enqueued before any worker asks for one: a grid's points with
`enqueue_trial(skip_if_exists=True)`, a random or TPE sweep's `num_trials` empty slots that
the sampler fills when a worker claims them. Optuna hands each WAITING trial to exactly one
worker (the journal backend's lock, or the database's transaction, makes the claim atomic).
Each trial carries a key, its directory name `trials/<key>/`; a retry is Optuna's own
(`RetryHeartbeatStaleTrialCallback`: a WAITING copy with the same parameters and key, that
lists the attempts it continues in `retry_history`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import warnings
from collections.abc import Iterable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from vaejax.sweeps.spec import Sweep
from vaejax.sweeps.storage import retry_callback

log = logging.getLogger(__name__)

# Trial user attributes written by the sweep code.
KEY = "key"  # the trial's directory name; a retry keeps it
SURPLUS = "surplus"  # pruned before training: another attempt holds its key
INTERRUPTED = "interrupted"  # stopped by a signal or Ctrl-C: resumed by the next run
HOST, PID, LOCK = "host", "pid", "lock"
ATTEMPT = "attempt"  # the trial number that wrote HOST, PID, LOCK (a retry copies them)
SUMMARY, MEMBERS, ERROR = "summary", "members", "error"
PER_ATTEMPT = (INTERRUPTED, ERROR, SUMMARY, MEMBERS)  # a retry copies them; it starts afresh


def key(t: FrozenTrial | optuna.Trial) -> int | None:
    """A trial's key, its directory name `trials/<key>/`.

    Args:
      t: a trial.

    Returns:
      The key, or None for a trial without one.
    """
    k = t.user_attrs.get(KEY)
    return None if k is None else int(k)


def attempts(t: FrozenTrial) -> int:
    """How many attempts a trial's key has had, this one included.

    Args:
      t: a trial.

    Returns:
      1 plus the number of attempts it continues (`retry_history`).
    """
    return 1 + len(t.system_attrs.get("retry_history", []))


def params(t: FrozenTrial) -> dict:
    """A trial's parameters, including those it was enqueued with but has not suggested yet.

    Args:
      t: a trial.

    Returns:
      Parameter name -> value.
    """
    return {**t.system_attrs.get("fixed_params", {}), **t.params}


def live_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Attempts that count: keyed, not surplus, not pruned, not continued by a retry.

    Args:
      trials: a study's trials.

    Returns:
      Those that count, in the given order.
    """
    superseded = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [
        t
        for t in trials
        if key(t) is not None
        and t.number not in superseded
        and not t.user_attrs.get(SURPLUS)
        and t.state != TrialState.PRUNED
    ]


def by_key(trials: Sequence[FrozenTrial]) -> dict[int, FrozenTrial]:
    """The attempt that counts for each key (the earliest, if two were enqueued at once).

    Args:
      trials: a study's trials.

    Returns:
      Key -> trial, in key order.
    """
    out: dict[int, FrozenTrial] = {}
    for t in sorted(live_trials(trials), key=lambda t: t.number):
        out.setdefault(key(t), t)
    return dict(sorted(out.items()))


def interrupted(t: FrozenTrial) -> bool:
    """Failed without an error of its own: stopped by a signal, or its process died.

    Args:
      t: a trial.

    Returns:
      Whether it is FAIL and marked interrupted, or FAIL without an error.
    """
    return t.state == TrialState.FAIL and bool(
        t.user_attrs.get(INTERRUPTED) or not t.user_attrs.get(ERROR)
    )


def waiting(study: optuna.Study) -> bool:
    """Whether the study has a WAITING trial.

    Args:
      study: the sweep's study.

    Returns:
      True if a trial waits to be run.
    """
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def enqueue_missing(study: optuna.Study, sweep: Sweep) -> int:
    """Enqueues each trial of the sweep that has no attempt yet; returns how many.

    Args:
      study: the sweep's study.
      sweep: the sweep: a grid's points, or `num_trials` empty slots.

    Returns:
      The number of trials enqueued.
    """
    trials = study.get_trials(deepcopy=False)
    before = len(trials)
    if sweep.sampler == "grid":
        for k, point in enumerate(sweep.grid()):
            study.enqueue_trial(point, user_attrs={KEY: k}, skip_if_exists=True)
    else:  # Optuna's skip_if_exists compares parameters, and a slot has none before it runs
        held = {key(t) for t in trials if not t.user_attrs.get(SURPLUS)}
        for k in range(sweep.num_trials):
            if k not in held:
                study.enqueue_trial({}, user_attrs={KEY: k})
    return len(study.get_trials(deepcopy=False)) - before


def surplus_reason(trial: optuna.Trial, sweep: Sweep) -> str | None:
    """Why a claimed trial must not train, or None. Optuna makes claiming a WAITING trial
    atomic but not enqueueing one: two machines may enqueue the same key at once. The earlier
    attempt wins; the rule depends on trial numbers only, so every worker agrees.

    Args:
      trial: the trial just claimed.
      sweep: the sweep.

    Returns:
      The reason, or None when it may train.
    """
    k = key(trial)
    if k is None:
        return "no trial was waiting (the study has all its trials)"
    if k >= sweep.num_trials:
        return f"the study has its {sweep.num_trials} trials"
    earlier = [
        t
        for t in live_trials(trial.study.get_trials(deepcopy=False))
        if t.number < trial.number and key(t) == k
    ]
    if earlier:
        return f"trial {k} is already run by attempt #{earlier[0].number}"
    return None


@contextlib.contextmanager
def flock(path: str, *, blocking: bool) -> Iterator[bool]:
    """An advisory lock on `path`; yields whether it was taken. The kernel releases it when
    the process holding it dies, however it dies: Optuna's heartbeat needs an RDB storage and
    a grace period, this tells a dead trial on this machine at once, with any storage.

    Args:
      path: the lock file; it and its directory are created if missing.
      blocking: wait for the lock; else give up at once if another process holds it.

    Yields:
      True while the lock is held; False when it was not taken (non-blocking only).
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def fail_dead(study: optuna.Study) -> list[int]:
    """Tells FAIL each RUNNING trial of this machine whose process died (its lock is free);
    the report then shows it INTERRUPTED, and the next run resumes it.

    Args:
      study: the sweep's study.

    Returns:
      The keys of the trials told FAIL.
    """
    host = socket.gethostname()
    keys = []
    for t in live_trials(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        lock = t.user_attrs.get(LOCK)
        mine = t.user_attrs.get(ATTEMPT) == t.number and t.user_attrs.get(HOST) == host
        if not mine or not lock or not os.path.exists(lock):
            continue
        with flock(lock, blocking=False) as free:
            if free:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    study.tell(t.number, state=TrialState.FAIL)
                    keys.append(key(t))
    return keys


def retry(study: optuna.Study, trials: Iterable[FrozenTrial]) -> int:
    """Enqueues Optuna's retry of each trial; returns how many.

    Args:
      study: the sweep's study.
      trials: the trials to retry.

    Returns:
      The number of retries enqueued.
    """
    count = 0
    for t in trials:
        retry_callback()(study, t)
        log.info("Trial %d will run again (attempt %d)", key(t), attempts(t) + 1)
        count += 1
    return count


def recover(study: optuna.Study, *, retry_failed: bool = False) -> int:
    """Enqueues a retry of each interrupted trial (and, with `retry_failed`, of each failed
    one), after failing this machine's dead trials and, on an RDB storage, those whose
    heartbeat stopped. A retry trains in its trial's directory, so it resumes from the
    checkpoints there.

    Args:
      study: the sweep's study.
      retry_failed: also retry the trials that failed (raised).

    Returns:
      How many trials were enqueued again.
    """
    fail_dead(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB heartbeats; Optuna enqueues the retries
    failed = live_trials(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return retry(study, [t for t in failed if retry_failed or interrupted(t)])
