"""A work directory's guards: one run at a time (a lock), and a resume only of the same training.

Two runs on one workdir would write their checkpoints into one directory, and a rerun would
resume whichever saved last. `hold(workdir)` takes an exclusive `flock` on `<workdir>/.lock`
and writes the holder (pid, host, start time) into it; a second run is refused at once with a
`WorkdirLockedError` naming the holder. The operating system drops the lock when the holder's
process ends, even by SIGKILL, so a lock on a local disk is never stale; on a network file
system whose server lost track of a dead client, the message says how to clear it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np

from vaejax import build, distributed
from vaejax import config as config_lib
from vaejax.checkpoints import Checkpointer
from vaejax.files import read_json, remove_leftovers, write_json

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
TRAIN_CONFIG = "train_config.json"


class WorkdirError(ValueError):
    """The work directory cannot be used: a file, or not writable."""


class WorkdirLockedError(WorkdirError):
    """Another process holds the work directory's lock."""


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            info = json.load(f)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "a process that has not written its details yet"


@contextlib.contextmanager
def hold(workdir: str | os.PathLike) -> Iterator[str]:
    """Holds `workdir`'s lock inside the `with` block; yields the lock file's path.

    Writes the holder (pid, host, start time) into the lock file and removes leftovers of
    writers killed mid-write.

    Args:
      workdir: the run's directory; created if missing.

    Yields:
      The lock file's path, `<workdir>/.lock`.

    Raises:
      WorkdirLockedError: another process holds it (at once, without waiting).
      WorkdirError: `workdir` is a file, or cannot be written.
    """
    path = os.path.join(os.fspath(workdir), LOCK_NAME)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(
            f"--workdir {os.fspath(workdir)} is a file, not a directory. Pass a directory (it "
            "is created if missing): checkpoints, metrics and results.json go there."
        )
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WorkdirError(
            f"The work directory {os.fspath(workdir)} cannot be written ({e.strerror}): "
            "checkpoints, metrics and results.json go there. Pass a --workdir you can write to."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirLockedError(
                f"{os.fspath(workdir)} is in use by another run ({_holder(path)}). Wait for it "
                "to finish or use another --workdir. If that run is not alive (its machine went "
                f"down and a network file system kept its lock), delete {path} and rerun."
            ) from None
        remove_leftovers(workdir)  # of writers killed mid-write: none can be at work now
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the holder's details go with the lock
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """The training settings of a config dict, flattened: what a resume must not change."""
    flat = build.flatten(json.loads(json.dumps(settings, default=str)))
    return {k: v for k, v in flat.items() if not k.startswith(build.RESUMABLE)}


def _refuse_changes(saved: dict, flat: dict, where: str, workdir: str) -> None:
    # A record from before each preset had its own fields holds the others' too, unused.
    unused = {f"model.{n}" for n in config_lib.unused_fields(flat.get("model.preset", "burda2015"))}
    saved = {k: v for k, v in saved.items() if k not in unused}
    changed = {k: (saved.get(k), flat.get(k)) for k in saved.keys() | flat.keys()}
    changed = {k: v for k, v in sorted(changed.items()) if v[0] != v[1]}
    if changed:
        raise ValueError(
            f"{workdir} holds checkpoints of a run with other training settings (setting: "
            f"({where}, this config)): {changed}. Use a new --workdir, or the checkpointed "
            "run's settings to resume it."
        )


def check_same_training(settings: dict[str, Any], workdir: str, *, resuming: bool) -> None:
    """Refuses to resume a run made with other training settings than `settings`, as
    `train_config.json` records them.

    Resuming restores the latest checkpoint, so a changed batch size, schedule or model would
    silently continue (or, with fewer steps, skip) another run's training.

    Args:
      settings: the config as a dict, plus a population's members.
      workdir: the run's directory.
      resuming: a checkpoint is about to be restored; else nothing is checked.

    Raises:
      ValueError: a training setting differs from the recorded one.
    """
    path = os.path.join(workdir, TRAIN_CONFIG)
    if resuming and os.path.exists(path):
        fix = "It records the checkpointed run's settings: restore it, or delete it to resume "
        saved = read_json(path, fix + "with the settings saved in the checkpoint.")
        _refuse_changes(saved, _flat(settings), "checkpointed run", workdir)


def check_same_as_checkpoint(
    configs: list[dict[str, Any]], recorded: list[dict[str, Any]], workdir: str
) -> None:
    """Refuses to resume from a checkpoint whose metadata records other training settings than
    each member's config: the check that holds when `train_config.json` is gone.

    Args:
      configs: each member's config as a dict.
      recorded: each model's config as the checkpoint's metadata records it.
      workdir: the run's directory, for the message.

    Raises:
      ValueError: the number of models, or a training setting, differs.
    """
    if len(recorded) != len(configs):
        raise ValueError(
            f"{workdir}'s checkpoint holds {len(recorded)} models, this run trains {len(configs)}. "
            "Use a new --workdir, or the checkpointed run's population to resume it."
        )
    for given, saved in zip(configs, recorded, strict=True):
        _refuse_changes(_flat(saved), _flat(given), "checkpoint", workdir)


def record_training(settings: dict[str, Any], workdir: str) -> None:
    """Writes `train_config.json`, atomically (the other processes of the run read it).

    Only the primary process writes it.

    Args:
      settings: the config as a dict, plus a population's members; its training settings are kept.
      workdir: the run's directory.
    """
    if distributed.is_primary():
        write_json(os.path.join(workdir, TRAIN_CONFIG), _flat(settings))


def resume(
    checkpointer: Checkpointer,
    state: Any,
    workdir: str,
    settings: dict[str, Any],
    configs: list[dict[str, Any]],
) -> tuple[Any, float]:
    """`state` restored from the latest checkpoint, if any, after checking that it trained with
    `settings`; then records them (`record_training`).

    Args:
      checkpointer: the run's checkpointer.
      state: the freshly initialised state, restored into.
      workdir: the run's directory.
      settings: the run's config dict, plus a population's members.
      configs: each member's config dict.

    Returns:
      `(state, trained_s)`: the state (restored, or `state` as given) and the training time the
      checkpoint holds (0.0 without one).

    Raises:
      ValueError: the checkpointed run had other training settings.
    """
    resuming = checkpointer.latest_step() is not None
    check_same_training(settings, workdir, resuming=resuming)
    trained_s = 0.0
    if resuming:
        state = checkpointer.restore(state)
        meta = checkpointer.metadata()
        if recorded := [m["config"] for m in meta.get("members", [])]:
            check_same_as_checkpoint(configs, recorded, workdir)
        trained_s = meta.get("train_time_s", 0.0)
        step = int(np.asarray(state.step).reshape(-1)[0])
        log.info("Resumed from step %d in %s", step, checkpointer.directory)
    record_training(settings, workdir)
    return state, trained_s
