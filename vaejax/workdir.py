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
import os
import socket
from collections.abc import Iterator
from typing import Any

from vaejax import build, distributed
from vaejax.files import write_json

LOCK_NAME = ".lock"


class WorkdirLockedError(ValueError):
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

    Raises:
      WorkdirLockedError: another process holds it (at once, without waiting).
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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


def check_same_training(settings: dict[str, Any], workdir: str, *, resuming: bool) -> None:
    """Records the training settings in `workdir`; refuses to resume a run made with others.

    `settings`: the config as a dict (`config.to_dict()`, plus a population's members).
    Resuming restores the latest checkpoint, so a changed batch size, schedule or model would
    silently continue (or, with fewer steps, skip) another run's training.
    """
    path = os.path.join(workdir, "train_config.json")
    flat = {
        k: v
        for k, v in build.flatten(json.loads(json.dumps(settings, default=str))).items()
        if not k.startswith(build.RESUMABLE)
    }
    if resuming and os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = {k: (saved.get(k), flat.get(k)) for k in saved.keys() | flat.keys()}
        changed = {k: v for k, v in sorted(changed.items()) if v[0] != v[1]}
        if changed:
            raise ValueError(
                f"{workdir} holds checkpoints of a run with other training settings "
                f"(setting: (checkpointed run, this config)): {changed}. Use a new --workdir, "
                f"or the checkpointed run's settings to resume it."
            )
    if distributed.is_primary():  # atomically: the other processes of the run read it meanwhile
        write_json(path, flat)
