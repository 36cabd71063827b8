"""CPU-only speed paths: each computes what the plain JAX code computes, faster on XLA:CPU.

On GPU and TPU the library takes the plain path. Each path has a test proving it gives the
plain path's numbers (`tests/test_cpu_fastpaths.py`); benchmarks/README.md records what each buys.

  threefry            `threefry_key(key)`: threefry as straight-line code (the same draws).
  evaluation_fusion   `evaluation_jit`: YNNPACK fusion limited to one dot, for evaluation.
  per_step_dispatch   `prefer_per_step_dispatch`: a conv model's chunk as jitted steps, no scan.
  conv_as_matmul      `vaejax.conv`: convolutions as slices, pads and one matmul each.

`disabled(*names)` turns paths off inside a `with` block (code traced inside is retraced).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.extend.core as jex_core
import jax.extend.random as jex_random
import jax.numpy as jnp
import numpy as np
from jax import lax

NAMES = ("threefry", "evaluation_fusion", "per_step_dispatch", "conv_as_matmul")

# Part of every jit cache key: code traced with a path off is not reused with it on.
_DISABLED = jax.make_user_context(default_value=frozenset())


@contextlib.contextmanager
def disabled(*names: str) -> Iterator[None]:
    """Turns the named paths (default: all) off inside the block; the plain path runs instead.

    Args:
      *names: paths among `NAMES`; none means all of them.

    Yields:
      None, with the paths off until the block ends.

    Raises:
      ValueError: a name is not in `NAMES`.
    """
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown CPU fast paths {unknown}; valid: {list(NAMES)}")
    with _DISABLED(_DISABLED.value | frozenset(names or NAMES)):
        yield


def applies(name: str, platform: str | None = None) -> bool:
    """Whether path `name` is on for `platform` (default: JAX's default backend).

    Args:
      name: a path among `NAMES`.
      platform: a JAX platform name such as "cpu" or "gpu"; None for the default backend.

    Returns:
      True where the platform is CPU and the path is not turned off by `disabled`.
    """
    if name not in NAMES:
        raise ValueError(f"unknown CPU fast path {name!r}; valid: {list(NAMES)}")
    return (platform or jax.default_backend()) == "cpu" and name not in _DISABLED.value


# ----------------------------------------------------------------------------- threefry
#
# On CPU, JAX lowers its threefry hash as a 5-trip while loop (to keep compile times short), which
# vectorizes poorly: drawing the posterior noise of a small training step costs about 0.1 ms,
# and large draws run at about 20 ns per 32-bit word. `FAST_THREEFRY` is threefry in every
# respect except that its `random_bits` is the straight-line hash, which XLA fuses into one
# vectorized loop (about 4x faster here). Other backends already unroll the hash.

_THREEFRY = jex_random.threefry_prng_impl
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of the word pairs `(x0, x1)` under `key` (`uint32[2]`).

    Args:
      key: the key's two words, `uint32[2]`.
      x0: the pairs' first words, `uint32[...]`.
      x1: the pairs' second words, `uint32`, `x0`'s shape.

    Returns:
      The two hashed words, `uint32` arrays of `x0`'s shape.

    References:
      Salmon et al., Parallel random numbers: as easy as 1, 2, 3, SC 2011.
    """
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _counts(shape: tuple[int, ...]) -> jax.Array:
    """The row-major index of each element, `uint32[shape]`, built from per-axis iotas.

    Per-axis iotas (not a reshaped 1-D iota) let the SPMD partitioner give each device just
    its slice, as JAX's own `iota_2x32_shape` does.
    """
    counts = jnp.zeros(shape, np.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        counts = counts + lax.broadcasted_iota(np.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    return counts


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """JAX's partitionable threefry bits: hash (0, index) per element; xor (or join) the halves."""
    if math.prod(shape) >= 2**32:  # the high count word is no longer zero: JAX's own code
        return _THREEFRY.random_bits(key, bit_width, shape)
    counts = _counts(tuple(shape))
    bits0, bits1 = threefry2x32(key, jnp.zeros_like(counts), counts)
    if bit_width == 64:
        hi, lo = bits0.astype(np.uint64), bits1.astype(np.uint64)
        return (hi << np.uint64(32)) | lo
    bits = bits0 ^ bits1
    return bits if bit_width == 32 else bits.astype(jnp.dtype(f"uint{bit_width}"))


FAST_THREEFRY = jex_random.define_prng_impl(
    key_shape=_THREEFRY.key_shape,
    seed=_THREEFRY.seed,
    split=_THREEFRY.split,
    random_bits=_random_bits,
    fold_in=_THREEFRY.fold_in,
    name="threefry2x32_unrolled",
    tag="fry_u",
)


def threefry_key(key: jax.Array) -> jax.Array:
    """On CPU, `key` as a `FAST_THREEFRY` key: the same draws, faster. Elsewhere `key` itself.

    `jax.random.normal(threefry_key(key), shape) == jax.random.normal(key, shape)` bit for bit.
    Threefry keys (typed, or legacy `uint32[..., 2]` under the default threefry) are converted;
    keys of other implementations, and threefry under the non-default
    `jax_threefry_partitionable=False` (whose bits differ), are returned unchanged.

    Args:
      key: a JAX PRNG key, typed or a legacy `uint32[..., 2]` one.

    Returns:
      A typed `FAST_THREEFRY` key of the same data, or `key` unchanged.
    """
    if not applies("threefry") or not jax.config.jax_threefry_partitionable:
        return key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != _THREEFRY.name:
            return key
        return jax.random.wrap_key_data(jax.random.key_data(key), impl=FAST_THREEFRY)
    if jax.config.jax_default_prng_impl != _THREEFRY.name:
        return key
    return jax.random.wrap_key_data(key, impl=FAST_THREEFRY)


# ----------------------------------------------------------------------------- evaluation

# XLA:CPU's YNNPACK fusion merges a forward-only decoder (its dots, activations, the likelihood
# and the sum over pixels) into one library call, which ran 6x slower here than the same ops
# apart (7 vs 41 GFLOP/s for Burda et al.'s decoder); evaluation keeps each dot in a fusion of
# its own. Training needs no such option: its backward pass reads the activations, which splits
# the fusion anyway.
EVALUATION_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
}


def evaluation_jit(fun: Callable | None = None, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fun, **jit_kwargs)`, compiled with `EVALUATION_COMPILER_OPTIONS` on CPU.

    Usable as `@evaluation_jit` or `@functools.partial(evaluation_jit, static_argnames=...)`.
    The platform is read at each call (the backend is not known when a module is imported).

    Args:
      fun: the function to compile; None to return a decorator taking it.
      **jit_kwargs: passed to `jax.jit` (e.g. `static_argnames`).

    Returns:
      The jitted function, or, with `fun` None, a decorator that makes one.
    """
    if fun is None:
        return functools.partial(evaluation_jit, **jit_kwargs)
    plain = jax.jit(fun, **jit_kwargs)
    fused_apart = jax.jit(fun, compiler_options=EVALUATION_COMPILER_OPTIONS, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        jitted = fused_apart if applies("evaluation_fusion") else plain
        return jitted(*args, **kwargs)

    return call


# ----------------------------------------------------------------------------- training chunks


def has_convolutions(jaxpr: jex_core.Jaxpr) -> bool:
    """Whether `jaxpr`, or any jaxpr inside it, runs a convolution.

    Args:
      jaxpr: the jaxpr to search, its sub-jaxprs included.

    Returns:
      True where it has a `conv_general_dilated`.
    """
    return any(
        eqn.primitive.name == "conv_general_dilated"
        or any(has_convolutions(sub) for sub in jex_core.jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


def prefer_per_step_dispatch(jaxpr: jex_core.Jaxpr, platform: str) -> bool:
    """Whether a chunk of the step `jaxpr` should run one jitted step per dispatch, not a scan.

    XLA:CPU runs convolutions inside a loop body several times slower than outside one
    (jax-ml/jax#12868; 2.7x for `networks.conv_vae`'s step here), and a dispatch costs little
    next to a convolutional step. True only on CPU for a step with convolutions.

    Args:
      jaxpr: the training step's jaxpr.
      platform: the platform the chunk runs on, e.g. "cpu".

    Returns:
      True where the "per_step_dispatch" path applies and the step has convolutions.
    """
    return applies("per_step_dispatch", platform) and has_convolutions(jaxpr)
