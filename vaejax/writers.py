"""Metric logging: a JSON-lines file a script can read, and TensorBoard event files.

`MetricWriter(workdir)` appends `{"step": step, **scalars}` to `<workdir>/metrics.jsonl` (non-finite
values as `null`, read back as NaN) and mirrors scalars and images to `<workdir>/tensorboard/`.
`read_metrics` merges the lines of a step, later ones winning, so the steps a resumed run re-does
replace the earlier ones; `purge_step` hides an earlier run's records from that step on.
"""

import json
import logging
import math
import os
import pathlib
from collections.abc import Mapping
from types import TracebackType

import numpy as np
import tqdm
from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_PURGE_KEY = "purge_step"


def _drop_partial_line(path: pathlib.Path) -> None:
    """Truncates a last line left without its newline by a killed process, so appends stay valid."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logging.warning("Dropping a truncated last line of %s: %r", path, data[keep:][:200])
        with path.open("r+b") as f:
            f.truncate(keep)


def _to_uint8_image(name: str, image: np.ndarray) -> np.ndarray:
    """Checks an image for TensorBoard and converts it to `[H, W, C]` uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Image {name!r} must be [H, W] or [H, W, C] with C in {{1, 3, 4}}; got shape "
            f"{image.shape}. Tile batches into one image first, e.g. with vaejax.plots.image_grid."
        )
    if image.dtype == np.uint8:
        return image
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(
            f"Float image {name!r} must hold finite values in [0, 1]; got range "
            f"[{np.nanmin(image)}, {np.nanmax(image)}]. Rescale it, e.g. with "
            "vaejax.plots.to_unit_range, or pass uint8."
        )
    return np.round(image * 255.0).astype(np.uint8)


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard, images to TensorBoard.

    Usable as a context manager; see the module docstring for resuming.
    """

    def __init__(self, workdir: str | os.PathLike, *, purge_step: int | None = None) -> None:
        """Opens (appending) the metrics file and a TensorBoard writer under `workdir`.

        Args:
          workdir: Directory of the run; created if missing.
          purge_step: For a resumed run, the first step it will write; earlier runs' records and
            events at or after this step are hidden. None keeps everything.
        """
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / METRICS_FILE
        _drop_partial_line(path)
        self._file = path.open("a", encoding="utf-8")
        if purge_step is not None:
            self._write_line({_PURGE_KEY: int(purge_step)})
        self._tensorboard = SummaryWriter(
            logdir=str(self.workdir / TENSORBOARD_DIR), purge_step=purge_step
        )
        self._closed = False

    def _write_line(self, record: Mapping[str, object]) -> None:
        # One write call per line and a flush each time, so a killed run loses at most that line.
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Appends `{"step": step, **scalars}` to the metrics file and to TensorBoard.

        Args:
          step: Training step the values belong to.
          scalars: Name to number (Python, numpy or JAX scalar); non-finite values are allowed.
        """
        step = int(step)
        record: dict[str, float | int | None] = {"step": step}
        for name, value in scalars.items():
            if name == "step" or name == _PURGE_KEY:
                raise ValueError(
                    f"Scalar name {name!r} is reserved; rename it, e.g. 'train/{name}'."
                )
            try:
                number = float(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"Scalar {name!r} at step {step} must be a single number; got {value!r}. "
                    "Reduce it (e.g. mean over the batch) before logging."
                ) from e
            record[name] = number if math.isfinite(number) else None
            self._tensorboard.add_scalar(name, number, step)
        self._write_line(record)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Logs images to TensorBoard.

        Args:
          step: Training step the images belong to.
          images: Name to `[H, W]` or `[H, W, C]` image (C in {1, 3, 4}), uint8 or float in [0, 1].
        """
        for name, image in images.items():
            self._tensorboard.add_image(
                name, _to_uint8_image(name, image), int(step), dataformats="HWC"
            )

    def flush(self) -> None:
        """Pushes buffered TensorBoard events to disk; the metrics file is flushed per write."""
        self._file.flush()
        self._tensorboard.flush()

    def close(self) -> None:
        """Flushes and closes both outputs; closing twice is a no-op."""
        if self._closed:
            return
        self._closed = True
        self._tensorboard.close()
        self._file.close()

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, float]]:
    """Reads `<workdir>/metrics.jsonl` back as one record per step, sorted by step.

    Lines written for the same step are merged, later values winning; a `purge_step` marker hides
    earlier records at or after its step; `null` becomes NaN. A truncated last line (a run killed
    mid-write) is skipped with a warning.

    Args:
      workdir: Directory a `MetricWriter` wrote to.

    Returns:
      One dict per step, ``{"step": int, name: float, ...}``.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    lines = path.read_text(encoding="utf-8").split("\n")
    by_step: dict[int, dict[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # Only the last line can be cut short by a killed writer.
                logging.warning("Skipping a truncated last line of %s: %r", path, line[:200])
                continue
            raise ValueError(
                f"{path} line {number} is not valid JSON: {line[:200]!r}. The file is corrupt; "
                "delete or fix that line."
            ) from e
        if _PURGE_KEY in record:
            purge_step = record[_PURGE_KEY]
            by_step = {step: r for step, r in by_step.items() if step < purge_step}
            continue
        step = int(record.pop("step"))
        merged = by_step.setdefault(step, {"step": step})
        merged.update({k: math.nan if v is None else float(v) for k, v in record.items()})
    return [by_step[step] for step in sorted(by_step)]


class NullWriter:
    """`MetricWriter`'s methods, writing nothing: what the processes other than process 0 of a
    multi-process run use, so that each record is written once."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes nothing.

        Args:
          step: ignored.
          scalars: ignored.
        """
        del step, scalars

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Writes nothing.

        Args:
          step: ignored.
          images: ignored.
        """
        del step, images

    def flush(self) -> None:
        """Does nothing."""
        pass

    def close(self) -> None:
        """Does nothing."""
        pass


def open_writer(workdir: str, *, purge_step: int, primary: bool) -> MetricWriter | NullWriter:
    """The run's writer in `workdir` on the process that writes (`primary`), else a `NullWriter`.

    A resumed run's metrics file is read first: a damaged line is named before any training,
    not after it (when the figures read the file).

    Args:
      workdir: the run's directory.
      purge_step: the first step this run writes (see `MetricWriter`).
      primary: this process writes the records.

    Returns:
      A `MetricWriter`, or a `NullWriter` on the other processes.

    Raises:
      ValueError: a line of the existing metrics file, other than the last, is not valid JSON.
    """
    if (pathlib.Path(workdir) / METRICS_FILE).exists():
        read_metrics(workdir)
    return MetricWriter(workdir, purge_step=purge_step) if primary else NullWriter()


def progress_bar(total: int | None, initial: int, *, enabled: bool) -> tqdm.tqdm:
    """The training loop's bar of steps.

    Args:
      total: the steps to train; None for an open-ended bar (a schedule fitted to a time budget).
      initial: the step it starts at.
      enabled: show it; else the bar is disabled.

    Returns:
      A `tqdm.tqdm` bar.
    """
    return tqdm.tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        disable=not enabled,
        mininterval=1.0,
    )
