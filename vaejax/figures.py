"""The figures of a trained model: prior samples, reconstructions, curves, 2-D latent maps."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import evaluate, networks, plots
from vaejax.writers import read_metrics


def write_figures(
    model: networks.VAE,
    params: Any,
    d: data_lib.Data,
    workdir: str,
    key: jax.Array,
    preprocessing: data_lib.Preprocessing,
) -> list[str]:
    """Prior samples, reconstructions, curves and, for 2-D latents, manifold and code scatter.

    Samples, reconstructions and the manifold are drawn for image data (`[N, H, W(, C)]`) only;
    the curves come from `<workdir>/metrics.jsonl`, the code scatter needs the test labels. A
    label-conditioned model's samples are one row per class (10 each, `class_samples.png`),
    its reconstructions and codes are given each test image's label, and it has no manifold
    (that would be one per class).

    Args:
      model: the trained VAE.
      params: its parameters.
      d: the data; the figures use its test split.
      workdir: the directory the PNG files go to.
      key: PRNG key for the prior samples and the test codes.
      preprocessing: how the data were made; maps them back to pixels.

    Returns:
      The names of the files written, relative to `workdir`.
    """
    labelled = networks.is_conditional(model)
    given = lambda y: networks.bind(model, params, y=y if labelled else None)
    shown_mean = lambda params: shown(model.likelihood.mean(params))
    shown = lambda x: preprocessing.to_pixels(np.asarray(x))
    images = d.test.ndim in (3, 4)
    paths = []
    if images:
        classes = getattr(model.conditioning, "num_classes", 0) if labelled else 0
        y = np.repeat(np.arange(classes), 10) if classes else None
        paths += [
            plots.save_samples(
                os.path.join(workdir, "class_samples.png" if classes else "samples.png"),
                # from the model's prior, top down; a conditional model's: 10 per class, a row each
                shown_mean(given(y).sample_prior(key, 100 if y is None else len(y))),
                value_range=(0, 1),
            ),
            plots.save_reconstructions(
                os.path.join(workdir, "reconstructions.png"),
                shown(d.test[:20]),
                shown_mean(given(_labels(d, 20)).reconstruct(jnp.asarray(d.test[:20]))),
                value_range=(0, 1),
            ),
        ]
    curves = {
        f"{split}/{m}"
        for split in ("train", "valid")
        for m in ("loss", "elbo", "iwae", "log_likelihood", "kl")
    }
    records = [
        {k: v for k, v in r.items() if k == "step" or k in curves} for r in read_metrics(workdir)
    ]
    records = [r for r in records if len(r) > 1]
    if records:
        paths.append(plots.save_curves(os.path.join(workdir, "curves.png"), records))
    if tuple(model.latent_sizes) != (2,):  # one stochastic layer of two dimensions only
        return [os.path.basename(str(p)) for p in paths]
    test = data_lib.inputs(d, "test", labelled)
    codes = evaluate.elbo_terms(model, params, test, key)["posterior_mean"]
    if images and not labelled:
        bound = given(None)
        mean_image = jax.jit(lambda z: model.likelihood.mean(bound.decode(z)))
        paths.append(
            plots.save_latent_manifold(
                os.path.join(workdir, "latent_manifold.png"),
                lambda z: shown(mean_image(jnp.asarray(z, jnp.float32))),
                value_range=(0, 1),
                axes=manifold_axes(bound.prior, codes),
            )
        )
    labels = d.test_labels
    if labels is not None and np.shape(labels) == (len(codes),):  # coloured by label: needs them
        paths.append(
            plots.save_latent_scatter(os.path.join(workdir, "latent_codes.png"), codes, labels)
        )
    return [os.path.basename(str(p)) for p in paths]


def _labels(d: data_lib.Data, n: int) -> np.ndarray | None:
    return None if d.test_labels is None else d.test_labels[:n]


def manifold_axes(prior: Any, codes: np.ndarray, n: int = 20) -> np.ndarray:
    """The 2-D manifold's grid `[n, 2]`: the prior's quantiles where it has them (equal prior
    mass per tile), else evenly over the 1st-99th percentiles of the test codes.

    Args:
      prior: the model's prior; its `quantile` is used if it has one.
      codes: the test codes, `[N, 2]`.
      n: grid points per side.

    Returns:
      `[n, 2]` float32 coordinates along z1 and z2.
    """
    u = (np.arange(n) + 0.5) / n
    if hasattr(prior, "quantile"):
        return np.asarray(prior.quantile(np.stack([u, u], axis=-1)), np.float32)
    low, high = np.percentile(codes, [1, 99], axis=0)
    return (low + u[:, None] * (high - low)).astype(np.float32)
