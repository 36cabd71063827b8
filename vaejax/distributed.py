"""Multi-process runs: start-up, which process writes, and host arrays as global arrays."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding


def initialize() -> None:
    """`jax.distributed.initialize` for one process of a multi-process run (once per process).

    The coordinator and ranks come from the environment: `JAX_COORDINATOR_ADDRESS` (host:port of
    process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, or, where those two are unset, from a
    cluster manager JAX detects (SLURM, Open MPI, ...). On CPU the cross-process collectives
    are gloo's unless `jax_cpu_collectives_implementation` says otherwise.
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
                raise ValueError(f"{env}={value!r} must be a non-negative integer.")
            ranks[name] = int(value)
    jax.distributed.initialize(**ranks)


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0 (every process computes the same
    values; one writes them)."""
    return jax.process_index() == 0


def to_global(x: Any, sharding: NamedSharding) -> Any:
    """Host arrays -> global jax Arrays; works on one host and across hosts alike."""
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        x,
    )
