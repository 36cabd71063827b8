"""Orbax checkpoints of the train state in a work directory.

Orbax writes each step to a temporary directory and renames it when complete, so a process
killed mid-save leaves the previous checkpoint intact; at most the steps since the last
checkpoint are lost.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a pytree (the train state) under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 2):
        directory = os.path.abspath(os.path.join(os.fspath(workdir), "checkpoints"))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            cleanup_tmp_directories=True,  # remove the partial save of a killed process
            enable_async_checkpointing=False,  # the step is small; keep saves simple and ordered
        )
        self._manager = ocp.CheckpointManager(directory, options=options)

    @property
    def directory(self) -> str:
        return os.fspath(self._manager.directory)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, *, metadata: dict[str, Any] | None = None) -> None:
        """Saves `state` at `step`, with `metadata` (JSON) written in the same atomic step."""
        self._manager.save(
            step, args=ocp.args.StandardSave(state), custom_metadata=metadata, force=True
        )
        self._manager.wait_until_finished()

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The metadata saved with `step` (default: the latest); {} if none was."""
        step = self.latest_step() if step is None else step
        return dict(self._manager.metadata(step).custom_metadata or {})

    def restore(self, target: Any = None, step: int | None = None) -> Any:
        """Restores `step` (default: the latest) into the structure, shapes and shardings of
        `target`; with no target, as saved: nested dicts of arrays (e.g. `["params"]` of a
        finished run, for analysis)."""
        step = self.latest_step() if step is None else step
        if target is None:
            return self._manager.restore(step, args=ocp.args.StandardRestore())
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
