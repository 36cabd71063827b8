"""Evaluation: ELBO and its terms, the IWAE bound, importance-sampled log p(x), active units.

All in nats per example; `bits_per_dim` converts a negative log-likelihood of non-binary data
to bits per 8-bit dimension, accounting for how the data were scaled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import conditioning, cpu_fastpaths, networks
from vaejax import data as data_lib
from vaejax.objectives import elbo, estimate_log_likelihood

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015), Sec. 5.2: Var_x E_q[z_d] > 0.01

# On CPU, each dot in a fusion of its own (see `cpu_fastpaths.evaluation_jit`).
_jit = cpu_fastpaths.evaluation_jit


def _batched(
    fn: Callable[..., dict[str, jax.Array]], x: Any, key: jax.Array, batch_size: int
) -> dict[str, np.ndarray]:
    """Runs `fn(key_i, x_i) -> {name: [b]}` over batches of `x` (an array, or a conditional
    model's `(x, y)`); concatenates per-example values.

    The last batch is padded to `batch_size` (one compiled shape) and the padding dropped.
    """
    out: dict[str, list[np.ndarray]] = {}
    for i, start in enumerate(range(0, _size(x), batch_size)):
        chunk = jax.tree.map(functools.partial(_rows, start=start, size=batch_size), x)
        n = min(batch_size, _size(x) - start)
        res = fn(jax.random.fold_in(key, i), jax.tree.map(jnp.asarray, chunk))
        for name, v in res.items():
            out.setdefault(name, []).append(np.asarray(v)[:n])
    return {name: np.concatenate(v) for name, v in out.items()}


def _rows(a: np.ndarray, start: int, size: int) -> np.ndarray:
    """`a[start : start + size]`, padded to `size` rows with copies of its last."""
    rows = a[start : start + size]
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), 0)])


def _size(inputs: Any) -> int:
    return len(conditioning.split(inputs)[0])


@functools.partial(_jit, static_argnames=("model",))
def _elbo_batch(params, key, inputs, *, model) -> dict[str, jax.Array]:
    x, y = conditioning.split(inputs)
    bound = networks.bind(model, params, y=y)
    t = elbo(key, x, model=bound)
    out = {"elbo": t.elbo, "log_likelihood": t.log_likelihood, "kl": t.kl}
    codes = bound.codes(x)
    for i, (kl, kl_per_dim, code) in enumerate(
        zip(t.kl_per_layer, t.kl_per_dim, codes, strict=True)
    ):
        suffix = "" if len(codes) == 1 else f"_z{i + 1}"  # one layer: the names of old
        out |= {f"posterior_mean{suffix}": code} | ({f"kl{suffix}": kl} if suffix else {})
        if kl_per_dim is not None:  # a prior that does not factorize over dimensions has none
            out[f"kl_per_dim{suffix}"] = kl_per_dim
    return out


def elbo_terms(
    model: Any, params: Any, x: np.ndarray, key: jax.Array, *, batch_size: int = 1000
) -> dict[str, np.ndarray]:
    """Per-example ELBO, its two terms, posterior means and (where the prior has a closed-form
    KL) the per-dimension KL over a dataset; with several stochastic layers, each layer's KL,
    means and per-dimension KL with the suffix `_z1`, `_z2`, ...

    Args:
      model: the VAE (or hierarchical model).
      params: its parameters.
      x: the split `[N, *data_shape]`, preprocessed (a conditional model's: `(x, y)`).
      key: a PRNG key; batch i draws from `fold_in(key, i)`.
      batch_size: images per batch (the last batch is padded, the padding dropped).

    Returns:
      A dict of NumPy arrays: `"elbo"`, `"log_likelihood"`, `"kl"` `[N]` (nats),
      `"posterior_mean"` `[N, D]` and, where in closed form, `"kl_per_dim"` `[N, D]`; with
      several layers, `"kl_z<l>"` `[N]`, `"posterior_mean_z<l>"` and `"kl_per_dim_z<l>"`
      `[N, D_l]` in their place (l = 1, 2, ...).
    """
    return _batched(functools.partial(_elbo_batch, params, model=model), x, key, batch_size)


def elbo_summary(
    model: Any, params: Any, x: np.ndarray, key: jax.Array, *, batch_size: int = 1000
) -> dict[str, float]:
    """Dataset means of the ELBO and its terms (the per-epoch validation numbers).

    Args:
      model: the VAE (or hierarchical model).
      params: its parameters.
      x: the split `[N, *data_shape]`, preprocessed (a conditional model's: `(x, y)`).
      key: a PRNG key for the samples.
      batch_size: images per batch.

    Returns:
      `{"elbo", "log_likelihood", "kl"}`, and each layer's KL (`kl_z1`, ...) where there are
      several: means over `x`, nats.
    """
    res = elbo_terms(model, params, x, key, batch_size=batch_size)
    names = ("elbo", "log_likelihood", "kl", *sorted(k for k in res if k.startswith("kl_z")))
    return {k: float(res[k].mean()) for k in names}


def log_px(
    model: Any,
    params: Any,
    key: jax.Array,
    x: jax.Array,
    *,
    num_samples: int,
    chunk_size: int,
) -> jax.Array:
    """log (1/k) sum_k p(x, z_k) / q(z_k | x) per example `[B]`, k = `num_samples` (pure).

    The importance-sampled log p(x) with the encoder run once and the decoder on `chunk_size`
    samples of every example at a time; with `chunk_size = num_samples`, the IWAE-k bound.
    For a conditional model `x` is `(x, y)`, and this is log p(x | y).

    Args:
      model: the VAE (or hierarchical model).
      params: its parameters.
      key: a PRNG key for the importance samples.
      x: a batch `[B, *data_shape]`, preprocessed (a conditional model's: `(x, y)`).
      num_samples: k, importance samples per example.
      chunk_size: samples decoded at a time.

    Returns:
      `[B]` log p(x) estimates, nats.
    """
    x, y = conditioning.split(x)
    return estimate_log_likelihood(
        key,
        x,
        model=networks.bind(model, params, y=y),
        num_samples=num_samples,
        chunk_size=chunk_size,
    )


@functools.partial(_jit, static_argnames=("model", "num_samples", "chunk_size"))
def _log_px_batch(params, key, x, *, model, num_samples, chunk_size):
    return {"log_px": log_px(model, params, key, x, num_samples=num_samples, chunk_size=chunk_size)}


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent dimensions d with Var_x E_q[z_d | x] > threshold (Burda et al. 2015).

    Args:
      posterior_means: E_q[z | x] over a dataset, `[N, D]`.
      threshold: the variance over the `N` examples above which a dimension is active.

    Returns:
      The count of active dimensions, in 0..D.
    """
    return int((np.var(posterior_means.astype(np.float64), axis=0) > threshold).sum())


def bits_per_dim(
    nll_nats: float, num_dims: int, preprocessing: data_lib.Preprocessing
) -> float | None:
    """Bits per 8-bit dimension for an NLL in nats of data made by `preprocessing`.

    See `Preprocessing.log_bin_width` for when this is exact, a bound or an approximation.

    Args:
      nll_nats: a negative log-likelihood of one example, nats (e.g. a mean over a split).
      num_dims: the dimensions of one example, `prod(data_shape)`.
      preprocessing: how the data were made from the stored levels.

    Returns:
      `(nll_nats + num_dims * log_bin_width) / (num_dims * log 2)`, or None where the data
      have no 8-bit meaning (binary data, or preprocessing "none").
    """
    log_width = preprocessing.log_bin_width
    if log_width is None:
        return None
    return (nll_nats + num_dims * log_width) / (num_dims * math.log(2.0))


def evaluate_test(
    model: Any,
    params: Any,
    x: np.ndarray,
    key: jax.Array,
    *,
    iwae_samples: int = 50,
    nll_samples: int = 5000,
    nll_chunk_size: int = 500,
    batch_size: int = 100,
    preprocessing: data_lib.Preprocessing | None = None,
) -> dict[str, Any]:
    """Final numbers on a test set: ELBO, IWAE-k, log p(x) estimate (nats), KL, active units;
    with the data's `preprocessing`, the estimate in bits per 8-bit dimension too, where defined.

    Args:
      model: the VAE (or hierarchical model).
      params: its parameters.
      x: the test images `[N, *data_shape]`, preprocessed (a conditional model's: `(x, y)`).
      key: a PRNG key; each bound draws from its own split of it.
      iwae_samples: k of the IWAE bound (0: skip it).
      nll_samples: importance samples of the log-likelihood estimate (0: skip it).
      nll_chunk_size: samples per chunk of that estimate.
      batch_size: images per batch of the bounds.
      preprocessing: how `x` was made, for bits/dim.

    Returns:
      `{"elbo", "log_likelihood", "kl", "kl_per_dim" | "kl_per_layer", "active_units",
      "iwae_<k>", "nll_<S>", "bits_per_dim"}` (means over `x`, nats).
    """
    k_elbo, k_iwae, k_nll = jax.random.split(key, 3)
    terms = elbo_terms(model, params, x, k_elbo, batch_size=max(batch_size, 1000))
    out: dict[str, Any] = {k: float(terms[k].mean()) for k in ("elbo", "log_likelihood", "kl")}
    if "kl_per_dim" in terms:
        out["kl_per_dim"] = terms["kl_per_dim"].mean(0).round(5).tolist()
    if "posterior_mean" in terms:
        out["active_units"] = active_units(terms["posterior_mean"])
    else:  # several stochastic layers, z_1 first
        layers = range(1, 1 + sum(k.startswith("posterior_mean_z") for k in terms))
        out["kl_per_layer"] = [float(terms[f"kl_z{i}"].mean()) for i in layers]
        units = [active_units(terms[f"posterior_mean_z{i}"]) for i in layers]
        out["active_units_per_layer"], out["active_units"] = units, sum(units)
    for name, samples, chunk, k in (
        (f"iwae_{iwae_samples}", iwae_samples, iwae_samples, k_iwae),
        (f"nll_{nll_samples}", nll_samples, min(nll_chunk_size, nll_samples), k_nll),
    ):
        if samples:
            fn = functools.partial(
                _log_px_batch, params, model=model, num_samples=samples, chunk_size=chunk
            )
            log_px = float(_batched(fn, x, k, batch_size)["log_px"].mean())
            out[name] = -log_px if name.startswith("nll") else log_px
    if nll_samples and preprocessing is not None:
        data_shape = conditioning.split(x)[0].shape[1:]
        bpd = bits_per_dim(out[f"nll_{nll_samples}"], int(np.prod(data_shape)), preprocessing)
        if bpd is not None:
            out["bits_per_dim"] = bpd
    out["num_examples"] = _size(x)
    return out
