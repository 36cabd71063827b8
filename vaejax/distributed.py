"""Multi-process runs: start-up, which process writes, and host arrays as global arrays.

A run of N processes fails in bounded time with one line naming what happened: a coordinator's
port in use, a process that never connects (within `VAEJAX_DISTRIBUTED_TIMEOUT_S`, default
120 s), or a process that stops mid-run (no heartbeat for that long). The last checkpoint is kept.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax._src import distributed as jax_distributed  # its client: JAX's key-value store
from jax.sharding import NamedSharding

log = logging.getLogger(__name__)

TIMEOUT_ENV = "VAEJAX_DISTRIBUTED_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0
_BEAT_S = 2.0  # how often each process says it is alive
_RERUN = "The last checkpoint is kept: rerun every process with the same command to resume."
_beat: _Heartbeat | None = None  # this process's, once a multi-process run has started


class DistributedError(RuntimeError):
    """A multi-process run cannot start: the coordinator's port is taken, or a setting is bad."""


def timeout_s() -> float:
    """Returns `$VAEJAX_DISTRIBUTED_TIMEOUT_S` (seconds), else `DEFAULT_TIMEOUT_S`.

    Raises:
      DistributedError: the variable is not a number of seconds in (0, 1e6).
    """
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e6:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} must be a number of seconds > 0.")
    return seconds


def _stop(message: str) -> None:
    """Says `message` once and ends this process now, before JAX's own abort and its dump."""
    log.error(message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(f"vaejax: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def _reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host.strip("[]"), int(port)), 2):
        return True
    return False


def _check_port(address: str) -> None:
    """Process 0 serves the coordinator on `address`'s port: refuse it when it is taken."""
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
        try:
            s.bind(("", port))
        except OSError as e:
            raise DistributedError(
                f"Process 0 serves the coordinator on port {port}, which is in use on this host "
                f"({e.strerror}): another run, or a process left from one. Choose a free port in "
                f"JAX_COORDINATOR_ADDRESS (now {address}) for every process."
            ) from None


@contextlib.contextmanager
def _deadline(seconds: float, message: Any) -> Iterator[None]:
    """Stops the process with `message()` if the block has not ended within `seconds`."""
    done = threading.Event()
    timer = threading.Thread(
        target=lambda: done.wait(seconds) or _stop(message()), daemon=True, name="vaejax-deadline"
    )
    timer.start()
    try:
        yield
    finally:
        done.set()


def _not_connected(pid: int | None, n: int | None, address: str | None, seconds: float) -> str:
    whom = f"process {pid} of {n}" if pid is not None else "this process"
    if pid not in (None, 0) and address and not _reachable(address):
        missing = f"the coordinator (process 0) at {address} is not reachable"
    elif pid == 0 and n == 2:
        missing = "process 1 never connected"
    else:
        missing = f"not all {n or 'N'} processes connected"
    return (
        f"{whom}: {missing} within {seconds:g} s ({TIMEOUT_ENV}). Start every process, "
        "JAX_PROCESS_ID 0 to JAX_NUM_PROCESSES - 1, with the same JAX_COORDINATOR_ADDRESS "
        f"(now {address}), reachable from every host."
    )


class _Heartbeat:
    """Each process counts up its own key in JAX's key-value store every `_BEAT_S`; a peer
    whose count stands still for `seconds`, and that has not said it is done, has stopped:
    said, naming it, and this process ends (JAX itself would abort later, with a dump)."""

    def __init__(self, client: Any, pid: int, n: int, seconds: float):
        self.client, self.pid, self.n, self.seconds = client, pid, n, seconds
        self.ending = threading.Event()
        self.seen: dict[int, tuple[str | None, float]] = {}  # peer -> (count, since when)

    def get(self, key: str) -> str | None:
        try:
            return self.client.key_value_try_get(key)
        except Exception as e:  # not set yet
            if "not_found" in str(e).lower().replace(" ", "_"):
                return None
            raise

    def run(self) -> None:
        seen = self.seen
        while not self.ending.wait(_BEAT_S):
            now = time.monotonic()
            try:
                self.client.key_value_increment(f"vaejax/alive/{self.pid}", 1)
                for peer in range(self.n):
                    if peer == self.pid or self.get(f"vaejax/done/{peer}"):
                        continue
                    count = self.get(f"vaejax/alive/{peer}")
                    if peer not in seen or seen[peer][0] != count:
                        seen[peer] = (count, now)
                    elif now - seen[peer][1] > self.seconds:
                        self.stop(f"process {peer} stopped (no heartbeat for {self.seconds:g} s)")
            except Exception as e:  # the store is process 0's: it went with it
                self.stop(f"lost the coordinator, process 0 ({type(e).__name__})")

    def stop(self, what: str) -> None:
        if not self.ending.is_set():
            _stop(
                f"process {self.pid} of {self.n}: {what}: it crashed or was killed, and its "
                f"log says why. {_RERUN}"
            )

    def stopped_peer(self, within: float) -> int | None:
        """The first peer seen to stop counting (three beats missed), waiting up to `within`."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            for peer, (_, since) in list(self.seen.items()):
                if time.monotonic() - since > 3 * _BEAT_S:
                    return peer
            time.sleep(_BEAT_S / 2)
        return None

    def end(self) -> None:
        """At a normal exit: says this process is done, so the others do not wait for it."""
        self.ending.set()
        with contextlib.suppress(Exception):
            self.client.key_value_set(f"vaejax/done/{self.pid}", "1", allow_overwrite=True)


def initialize() -> None:
    """`jax.distributed.initialize` for one process of a multi-process run (once per process).

    The coordinator and ranks come from the environment: `JAX_COORDINATOR_ADDRESS` (host:port of
    process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, or, where those two are unset, from a
    cluster manager JAX detects (SLURM, Open MPI, ...). On CPU the cross-process collectives
    are gloo's unless `jax_cpu_collectives_implementation` says otherwise.

    Raises:
      DistributedError: the coordinator's port is in use, or a setting is not valid.
    """
    if jax.distributed.is_initialized():
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    ranks = {}
    for name, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        value = os.environ.get(env)
        if value is not None:
            if not value.isdigit():
                raise DistributedError(f"{env}={value!r} must be a non-negative integer.")
            ranks[name] = int(value)
    seconds, address = timeout_s(), os.environ.get("JAX_COORDINATOR_ADDRESS")
    pid, n = ranks.get("process_id"), ranks.get("num_processes")
    if pid == 0 and address:
        _check_port(address)
    log.info(
        "Process %s of %s: waiting for %s processes at %s (up to %g s)", pid, n, n, address, seconds
    )
    slack = int(seconds) + 60  # JAX's own limits, after ours: its abort never comes first
    with _deadline(seconds, lambda: _not_connected(pid, n, address, seconds)):
        jax.distributed.initialize(
            **ranks,
            initialization_timeout=slack,
            heartbeat_timeout_seconds=slack,
            shutdown_timeout_seconds=slack,
        )
    pid, n = jax.process_index(), jax.process_count()
    log.info("Process %d of %d: every process connected", pid, n)
    global _beat
    _beat = _Heartbeat(jax_distributed.global_state.client, pid, n, seconds)
    threading.Thread(target=_beat.run, daemon=True, name="vaejax-heartbeat").start()
    atexit.register(_beat.end)  # after JAX's shutdown was registered: runs before it


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """In a multi-process run, an error ends this process at once with one line, naming the
    process that stopped when a collective failed for that; not at JAX's shutdown barrier,
    which would wait for the others and then abort. Outside one: nothing.

    Yields:
      None, once: the run's work goes in the `with` block.
    """
    try:
        yield
    except Exception as e:
        if _beat is None:
            raise
        who = f"process {_beat.pid} of {_beat.n}"
        if any(s in str(e) for s in ("Gloo", "Connection closed", "Connection reset")):
            peer = _beat.stopped_peer(within=max(_beat.seconds, 5 * _BEAT_S))
            what = f"process {peer} stopped" if peer is not None else "a collective failed"
            _stop(f"{who}: {what} ({_first_line(e)}): it crashed or was killed. {_RERUN}")
        log.exception("%s failed", who)
        _stop(f"{who} failed: {type(e).__name__}: {_first_line(e)}. {_RERUN}")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def is_primary() -> bool:
    """Returns whether this process writes the run's files: process 0 (every process computes
    the same values; one writes them)."""
    return jax.process_index() == 0


def to_global(x: Any, sharding: NamedSharding) -> Any:
    """Host arrays -> global jax Arrays; works on one host and across hosts alike.

    Args:
      x: a pytree of host arrays, the same full (global) arrays on every process.
      sharding: how each array is laid out over the devices.

    Returns:
      `x`'s structure with each leaf a `jax.Array` of its shape, sharded by `sharding`.
    """
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        x,
    )
