"""Stopping a sweep on SIGINT or SIGTERM: the trial in training is interrupted (and resumed
by the next run), a worker starts no new trial, and the parent forwards the signal to its
workers and writes the report. Optuna stops only on an exception inside the objective, which
would abort its own bookkeeping if a signal raised it there."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A sweep stopped by a signal (a KeyboardInterrupt, so Ctrl-C code catches it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclasses.dataclass
class Stop:
    """What a signal asked for. `training` is set while a trial trains: only then may the
    signal raise, so Optuna's own writes to the storage are never cut short."""

    signum: int | None = None
    count: int = 0
    training: bool = False

    @contextlib.contextmanager
    def while_training(self) -> Iterator[None]:
        """Marks the `with` block as training: only inside it may a signal raise.

        Yields:
          None; `training` is True inside the block.

        Raises:
          Interrupted: a signal came before the block started.
        """
        if self.signum is not None:
            raise Interrupted(self.signum)
        self.training = True
        try:
            yield
        finally:
            self.training = False


def raise_in_training(stop: Stop) -> Callable[[int, object], None]:
    """A handler for a process that trains: interrupt the trial in training, else stop after
    it; a second signal interrupts at once.

    Args:
      stop: what a signal asked for; the handler sets its `signum` and `count`.

    Returns:
      A `(signum, frame)` handler for `signal.signal`, that raises `Interrupted` to interrupt.
    """

    def handler(signum, frame):
        stop.signum = stop.signum or signum
        stop.count += 1
        if stop.training or stop.count > 1:
            raise Interrupted(stop.signum)

    return handler


def record(stop: Stop, forward: Callable[[int], None]) -> Callable[[int, object], None]:
    """A handler for the parent of workers: forward the signal to them, once.

    Args:
      stop: what a signal asked for; the handler sets its `signum` and `count`.
      forward: called with the signal's number, on the first signal only.

    Returns:
      A `(signum, frame)` handler for `signal.signal`.
    """

    def handler(signum, frame):
        stop.signum = stop.signum or signum
        stop.count += 1
        if stop.count == 1:
            forward(signum)

    return handler


@contextlib.contextmanager
def handled(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Installs `handler` for SIGINT and SIGTERM, then restores the previous handlers. Only the
    main thread may set handlers; elsewhere (a sweep run from a thread) this does nothing.

    Args:
      handler: a `(signum, frame)` signal handler.

    Yields:
      None, with `handler` installed inside the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
