"""Files written atomically: a reader sees the old file or the whole new one, never a part.

`atomic_file(path)` writes to a temporary file beside `path`, then renames it; `write_json`
(results.json, config.json, ...), the metric files, figures and the decode cache go through it.
"""

import contextlib
import json
import os
import pathlib
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside `path` for writing; on success it is renamed to `path`.

    A reader (another process of a multi-process run, a resumed run) sees the old file or the
    whole new one, never a part of it; a writer that fails or is killed leaves no partial file.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open(mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Writes `obj` as JSON to `path`, atomically (`atomic_file`)."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=2, default=str)
