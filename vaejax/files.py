"""Files written atomically: a reader sees the old file or the whole new one, never a part.

`atomic_file(path)` writes to a temporary file beside `path`, then renames it; `write_json`
(results.json, config.json, ...), the metric files, figures and the decode cache go through it.
"""

import contextlib
import errno
import json
import math
import os
import pathlib
from collections.abc import Iterator
from typing import IO, Any


class DiskFullError(OSError):
    """A checkpoint, figure or results file could not be written: the disk is full."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message first, without "[Errno 28]"


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside `path` for writing; on success it is renamed to `path`.

    A reader (another process of a multi-process run, a resumed run) sees the old file or the
    whole new one, never a part of it; a writer that fails or is killed leaves no partial file.

    Args:
      path: the file to write; its parent directories are made.
      mode: the `open` mode, "w" or "wb".

    Yields:
      The open temporary file.

    Raises:
      DiskFullError: the disk filled up (the old `path`, if any, is intact).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open(mode) as f:
            yield f
        os.replace(tmp, path)
    except OSError as e:
        if e.errno != errno.ENOSPC or isinstance(e, DiskFullError):
            raise
        raise DiskFullError(
            errno.ENOSPC,
            f"No space left on device: {path} could not be written (an earlier version of it, "
            "if any, is intact). Free space, or move the workdir to a larger disk, and rerun "
            "with the same --workdir: it resumes.",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(directory: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporary files that `atomic_file` writers killed mid-write left under
    `directory` (`.<name>.<pid>.tmp`); call it only while no writer can be at work there.

    Args:
      directory: searched recursively, except under any `checkpoints` directory.

    Returns:
      The paths removed.
    """
    found = [
        p
        for p in pathlib.Path(directory).rglob(".*.tmp")
        if p.is_file() and p.name.rsplit(".", 2)[-2].isdigit() and "checkpoints" not in p.parts
    ]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def strict(obj: Any, _open: frozenset[int] = frozenset()) -> Any:
    """`obj` with every non-finite float as None: strict JSON (`NaN` is not JSON). A circular
    container is left as it is, for `json.dump` to refuse.

    Args:
      obj: a JSON-like value: dicts, lists and tuples are walked, other values kept.
      _open: internal: the containers being walked.

    Returns:
      A copy of `obj` (tuples as lists) with NaN and infinities as None.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if id(obj) in _open or not isinstance(obj, dict | list | tuple):
        return obj
    inner = _open | {id(obj)}
    if isinstance(obj, dict):
        return {k: strict(v, inner) for k, v in obj.items()}
    return [strict(v, inner) for v in obj]


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Writes `obj` as strict JSON to `path` (non-finite numbers as null), atomically.

    Args:
      path: the file (`atomic_file`).
      obj: JSON-like; values JSON cannot hold are written as their `str`.
    """
    with atomic_file(path) as f:
        json.dump(strict(obj), f, indent=2, default=str, allow_nan=False)


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON in `path`.

    Args:
      path: the file.
      fix: what to do if it is not valid JSON, said in the error.

    Returns:
      The parsed value.

    Raises:
      ValueError: the file is not valid JSON (hand-edited, say), naming it and `fix`.
    """
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)} is not valid JSON ({e}). {fix}") from None
