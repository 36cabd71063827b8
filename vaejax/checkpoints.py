"""Orbax checkpoints of the train state in a work directory, verified when restored.

Orbax writes a step to a temporary directory and renames it when complete, so a killed save
leaves the previous checkpoint intact. Each save records a SHA-256 of every array; `restore`
recomputes it, and a step that fails is named, moved to `<workdir>/bad_checkpoints/`, and the
newest good step restored instead. A `read_only` checkpointer (`vaejax.load` beside a run)
changes no file and skips the steps the run prunes while they are read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vaejax.files import DiskFullError

log = logging.getLogger(__name__)

# The custom-metadata key of the checksum (kept out of what `metadata()` returns).
_CHECKSUM = "_vaejax_checksum"


class CheckpointError(ValueError):
    """No checkpoint of the work directory passes verification, or one could not be written."""


def _leaf_host(x: Any) -> np.ndarray:
    """A leaf's values on this host (a replicated global array: this process's copy)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def checksum(tree: Any) -> list[str]:
    """Per-leaf SHA-256 of shape and values, sorted.

    Independent of how the tree is nested, so a raw restore (nested dicts) and a typed one
    (the train state) compare equal; values are hashed widened (float64, complex128, int64),
    so a restore into a wider dtype (a step saved as int32, restored into a Python int's
    int64) is the same checkpoint, while any changed value is not.

    Args:
      tree: a pytree of arrays (of a replicated global array, this process's copy is hashed).

    Returns:
      One SHA-256 hex digest per leaf, sorted.
    """
    digests = []
    for leaf in jax.tree.leaves(tree):
        a = _leaf_host(leaf)
        kind = np.complex128 if np.iscomplexobj(a) else np.float64
        if not np.issubdtype(a.dtype, np.inexact):
            kind = np.int64
        a = np.ascontiguousarray(a, dtype=kind)
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        digests.append(h.hexdigest())
    return sorted(digests)


def _nonfinite(tree: Any) -> list[str]:
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        a = _leaf_host(leaf)
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            bad.append(jax.tree_util.keystr(path))
    return bad


def _disk_full(e: BaseException) -> OSError | None:
    """The `No space left on device` error inside `e`'s causes, contexts or group, if any."""
    seen, todo = set(), [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno == errno.ENOSPC:
            return x
        if "No space left on device" in str(x) or "ENOSPC" in str(x):
            return OSError(errno.ENOSPC, str(x))
        todo += [x.__cause__, x.__context__, *getattr(x, "exceptions", ())]
    return None


class _DropReadOnlyNotes(logging.Filter):
    """Drops Orbax's notes that a read-only manager is read-only (three lines per load)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("CheckpointManagerOptions.read_only") or "read only=" in text)


@contextlib.contextmanager
def _without_read_only_notes() -> Iterator[None]:
    drop, logger = _DropReadOnlyNotes(), logging.getLogger("absl")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


class _DropDiskFull(logging.Filter):
    """Drops the log records of Orbax's writer threads that repeat a full disk's error."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage() + str(record.exc_info[1] if record.exc_info else "")
        return "No space left on device" not in text and "Event loop is closed" not in text


@contextlib.contextmanager
def _quiet_disk_full_logs() -> Iterator[None]:
    """While saving: a full disk is said once, by `DiskFullError`, not by each of Orbax's
    threads in its own traceback (hundreds of lines burying the cause)."""
    drop = _DropDiskFull()
    # On the handlers: a logger's own filters miss the records its children propagate to it.
    handlers = [*logging.getLogger().handlers, *logging.getLogger("absl").handlers]
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def _is_bad(e: BaseException) -> bool:
    return isinstance(e, CheckpointError)


class Checkpointer:
    """Saves and restores a pytree (the train state) under `<workdir>/checkpoints`.

    Keeps the latest `max_to_keep` steps and, with `keep_every_steps` N > 0, also the first
    step saved at or after each multiple of N (0, N, 2N, ...): the points of a learning curve
    (`benchmarks/curve.py`), whatever steps a resumed run happens to save at.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        max_to_keep: int = 2,
        keep_every_steps: int = 0,
        read_only: bool = False,
    ):
        self._workdir = os.path.abspath(os.fspath(workdir))
        self._max_to_keep, self._keep_every = max_to_keep, keep_every_steps
        self._read_only = read_only  # a reader beside a training run: changes no file
        directory = os.path.join(self._workdir, "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if keep_every_steps else max_to_keep,  # else `_prune` does
            create=not read_only,
            save_interval_steps=0 if read_only else 1,
            # The trainer removes a killed process's partial save; a reader leaves the
            # trainer's in-flight save alone.
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
            enable_async_checkpointing=False,  # the step is small; keep saves simple and ordered
        )
        with _without_read_only_notes():
            self._manager = ocp.CheckpointManager(directory, options=options)
        self._current: int | None = None  # the step last restored or saved
        self._verified_metadata: tuple[int | None, dict] = (None, {})

    @property
    def directory(self) -> str:
        """Returns `<workdir>/checkpoints`, where the steps are saved."""
        return os.fspath(self._manager.directory)

    @property
    def current_step(self) -> int | None:
        """The step last restored or saved."""
        return self._current

    def latest_step(self) -> int | None:
        """Returns the newest saved step (not verified), or None if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Returns every saved step, ascending (not verified)."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, *, metadata: dict[str, Any] | None = None) -> None:
        """Saves `state` at `step`, with `metadata` (JSON) written in the same atomic step.

        A step already saved is replaced; then the steps past what is kept are deleted.

        Args:
          step: the step number to save under.
          state: the pytree to save (the train state); its checksum is recorded.
          metadata: JSON-compatible values to save with it (`metadata` reads them back).

        Raises:
          DiskFullError: the disk filled up; said first and once, with what to free.
        """
        metadata = dict(metadata or {}) | {_CHECKSUM: checksum(state)}
        if step in self._manager.all_steps():  # a step restored past (e.g. a damaged one)
            self._manager.delete(step)
        try:
            with _quiet_disk_full_logs():
                try:
                    self._manager.save(
                        step,
                        args=ocp.args.StandardSave(state),
                        custom_metadata=metadata,
                        force=True,
                    )
                    self._manager.wait_until_finished()
                except Exception as e:
                    if _disk_full(e) is not None:
                        self._settle()
                    raise
        except Exception as e:
            if _disk_full(e) is None:
                raise
            raise DiskFullError(
                errno.ENOSPC,
                f"No space left on device: the checkpoint of step {step} could not be written "
                f"to {self.directory}. The checkpoints before it are intact. Free space (or move "
                "the workdir to a larger disk) and rerun with the same --workdir to resume.",
            ) from None
        self._current = step
        self._prune()

    def _prune(self) -> None:
        """Deletes the steps neither among the latest `max_to_keep` nor the first at or after
        a multiple of `keep_every_steps` (only with `keep_every_steps`; else Orbax prunes)."""
        if not self._keep_every:
            return
        steps = self.all_steps()
        firsts: dict[int, int] = {}
        for s in steps:  # ascending: the first step of each interval [kN, (k+1)N)
            firsts.setdefault(s // self._keep_every, s)
        kept = {*steps[-self._max_to_keep :], *firsts.values()}
        for s in steps:
            if s not in kept:
                self._manager.delete(s)

    def _settle(self) -> None:
        """Lets a failed save's writer threads finish (they would otherwise fail again, loudly,
        while the interpreter shuts down)."""
        with contextlib.suppress(Exception):
            self._manager.wait_until_finished()

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The metadata saved with a step.

        Args:
          step: the step; None (the default): the step last restored or saved, else the latest.

        Returns:
          The dict given to `save` (without the checksum); {} if none was.
        """
        step = step if step is not None else self._current
        step = self.latest_step() if step is None else step
        if self._verified_metadata[0] == step:  # a reader beside a run: the run may prune it
            meta = dict(self._verified_metadata[1])
        else:
            meta = dict(self._manager.metadata(step).custom_metadata or {})
        meta.pop(_CHECKSUM, None)
        return meta

    def verify(self, step: int, restored: Any) -> None:
        """Checks `restored` against what `step` saved: its checksum, or, for steps saved
        without one, that every float in it is finite.

        Args:
          step: the step `restored` was read from.
          restored: the pytree restored from it.

        Raises:
          CheckpointError: `restored` does not match the checksum, or holds non-finite values
            (a step saved without a checksum); for a read-only checkpointer, also a step with
            no metadata (being deleted).
        """
        meta = self._manager.metadata(step).custom_metadata or {}
        if not meta and self._read_only:  # every step of a run has some: this one is going
            raise CheckpointError(f"checkpoint step {step} has no metadata (being deleted?)")
        self._verified_metadata = (step, dict(meta))  # read with the arrays it describes
        if _CHECKSUM in meta:
            if checksum(restored) != sorted(meta[_CHECKSUM]):
                raise CheckpointError(
                    f"checkpoint step {step} does not match the checksum recorded when it was "
                    "saved (its files were changed or damaged on disk)"
                )
            return
        bad = _nonfinite(restored)
        if bad:
            raise CheckpointError(f"checkpoint step {step} holds non-finite values in {bad[:3]}")

    def _restore_step(self, step: int, target: Any) -> Any:
        if target is None:
            manager = ocp.CheckpointManager(
                self.directory,
                item_handlers=ocp.StandardCheckpointHandler(),
                options=ocp.CheckpointManagerOptions(
                    create=False, cleanup_tmp_directories=False, read_only=True
                ),
            )
            saved = manager.item_metadata(step)
            manager.close()
            abstract = jax.tree.map(
                self._single_device,
                dict(saved),
                is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"),
            )
        else:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        self.verify(step, restored)
        return restored

    @staticmethod
    def _single_device(meta: Any) -> Any:
        # As saved, but on this process's first device: a run saved on 3 devices loads on 1.
        if hasattr(meta, "shape") and hasattr(meta, "dtype"):
            sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            return jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=sharding)
        return meta

    def restore(self, target: Any = None, step: int | None = None) -> Any:
        """Restores and verifies `step` into the structure, shapes and shardings of `target`;
        with no target, as saved: nested dicts of arrays on one device (e.g. `["params"]` of a
        finished run, for analysis).

        With no `step`, the newest step that restores and passes verification: a bad newer
        step is named in a warning (and moved aside if its files are damaged).

        Args:
          target: a pytree whose structure, shapes, dtypes and shardings the restore takes
            (e.g. a fresh train state); None: as saved.
          step: the step to restore; None: the newest good one.

        Returns:
          The restored pytree: `target`'s type, or nested dicts of arrays.

        Raises:
          CheckpointError: the given `step` fails to restore or verify, or, with no `step`,
            no step does.
        """
        if step is not None:
            try:
                restored = self._restore_step(step, target)
            except Exception as e:
                raise CheckpointError(self._bad_message(step, e)) from None
            self._current = step
            return restored
        failures = []
        # A reader beside a training run lists again when the run pruned what it listed.
        for _ in range(5 if self._read_only else 1):
            self._manager.reload()
            for s in reversed(self.all_steps()):
                try:
                    restored = self._restore_step(s, target)
                except Exception as e:  # a damaged file fails in TensorStore with a bare Exception
                    if self._read_only and self._pruned(s):
                        continue  # deleted by the run while it was read: not damaged
                    # A ValueError (another structure, shape or topology than `target`'s) says
                    # nothing of the files: the step is skipped, not moved.
                    self._set_aside(s, e, move=not isinstance(e, ValueError) or _is_bad(e))
                    failures.append(self._bad_message(s, e))
                    continue
                self._current = s
                return restored
            if failures:
                break
        raise CheckpointError(
            f"No checkpoint in {self.directory} can be restored: {'; '.join(failures)}. "
            "Start afresh with a new --workdir, or restore into a target of the saved structure."
        )

    def _pruned(self, step: int) -> bool:
        """Whether `step` is gone, or going (a deletion in progress ends within moments)."""
        time.sleep(0.2)
        return not os.path.isdir(os.path.join(self.directory, str(step)))

    def latest_good_step(self) -> int | None:
        """Returns the newest step that passes verification (read back and checked), or None."""
        for s in reversed(self.all_steps()):
            try:
                self._restore_step(s, None)
            except Exception:  # any failure to read or verify: not good
                continue
            return s
        return None

    def kept(self) -> str:
        """Returns what a stopped run leaves to resume from, in a sentence."""
        good = self.latest_good_step()
        if good is None:
            return f"No checkpoint was saved yet in {self.directory}."
        return (
            f"The last good checkpoint (step {good}), read back and verified, "
            f"is kept in {self.directory}."
        )

    def _bad_dir(self) -> str:
        return os.path.join(self._workdir, "bad_checkpoints")

    def _bad_message(self, step: int, e: BaseException) -> str:
        return (
            f"Checkpoint step {step} in {self.directory} cannot be used: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )

    def _set_aside(self, step: int, e: BaseException, *, move: bool) -> None:
        """Says why `step` is skipped; a damaged one is moved out of Orbax's directory (kept
        for inspection), so that training can save that step number again."""
        where = "left it in place"
        if move and not self._read_only:
            os.makedirs(self._bad_dir(), exist_ok=True)
            where = os.path.join(self._bad_dir(), f"{step}.{time.strftime('%Y%m%dT%H%M%S')}")
            src = os.path.join(self.directory, str(step))
            if jax.process_index() == 0 and os.path.exists(src):
                shutil.move(src, where)
            self._manager.reload()
            where = f"moved it to {where}"
        log.warning(
            "%s. Skipped it (%s); trying the newest step before it.",
            self._bad_message(step, e),
            where,
        )

    def close(self) -> None:
        """Closes the Orbax manager; the checkpointer is not to be used afterwards."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
