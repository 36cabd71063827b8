"""Q4: a Gaussian decoder with two heads (mean and variance), or a fixed variance?

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.questions.decoder_variance \
      --workdir=runs/questions/decoder_variance

Trains Kingma & Welling's MLP VAE (784-500-20 tanh) on MNIST intensities in [0, 1] with a
Gaussian decoder whose variance is:

  fixed_1           fixed, sigma = 1 (the plain squared error, halved)
  fixed_0.1         fixed, sigma = 0.1
  learned_no_floor  a second head, log-variance per pixel (K&W App. C.2), no floor
  learned_floor     the same head, variance = 1e-3 + exp(head) (the library's default floor)
  shared            one learned variance for all pixels: a scalar, not a head

It reports the test ELBO, NLL and bits/dim (density x bin width 1/255), the decoder's sigma in
8-bit levels, and the training log-likelihood per step: the head without a floor shrinks the
variance of pixels it can predict exactly (MNIST's constant background) towards zero, so the
density, not the fit, grows without bound, until the loss goes non-finite.

Writes the results block of docs/decoder_variance.md, docs/img/questions/decoder_variance.png
and docs/img/questions/decoder_variance_curves.png. `--quick` trains `QUICK_VARIANTS` only, on
synthetic data, into <workdir>/docs by default.
Estimate on 2 cores: about 2 minutes a variant (8 epochs, ~70 s; NLL-1000 on the 10,000 test
images, ~40 s), 10 minutes in all; a diverged run stops early.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.questions import common
from vaejax import build, likelihoods, networks
from vaejax import config as config_lib
from vaejax.writers import read_metrics

EPOCHS = 8
PREPROCESSING = "unit_interval"
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "fixed_1": ("fixed sigma = 1", "gaussian", {"scale": 1.0}),
    "fixed_0.1": ("fixed sigma = 0.1", "gaussian", {"scale": 0.1}),
    "learned_no_floor": (
        "variance head, no floor",
        "learned_gaussian",
        {"variance_floor": 0.0},
    ),
    "learned_floor": (
        "variance head, floor 1e-3",
        "learned_gaussian",
        {"variance_floor": 1e-3},
    ),
    "shared": ("one learned variance", "learned_gaussian", {"shared_variance": True}),
}
# --quick trains this only: the learned scalar (the fixed and head variants are library code).
QUICK_VARIANTS = ("shared",)


def decoder_stddev(model: networks.VAE, params: Any, x: np.ndarray) -> np.ndarray:
    """sigma of p(x | z) at the posterior means of `x`, per pixel: `[N, *data_shape]`."""
    encode, decode = networks.bind(model, params)
    out = decode(encode(jnp.asarray(x))["mean"])
    lik = model.likelihood
    if isinstance(lik, likelihoods.Gaussian):
        return np.full(out["mean"].shape, lik.scale, np.float32)
    std = np.sqrt(np.asarray(lik.variance(out)))
    return np.broadcast_to(std.reshape(*std.shape, *(1,) * (x.ndim - std.ndim)), x.shape)


def _sigma_summary(model, params, x) -> dict[str, float]:
    levels = decoder_stddev(model, params, x) * 255  # data are pixels / 255
    return {"sigma_median": float(np.median(levels)), "sigma_min": float(levels.min())}


def run(
    workdir: str, *, docs_dir: str | os.PathLike = common.DOCS_DIR, quick: bool = False
) -> dict[str, dict[str, Any]]:
    """Trains every variant, writes the table and figures; returns `{name: results}`."""
    config = common.base_config(quick)
    config.data.preprocessing = PREPROCESSING
    if not quick:
        config.train.num_epochs = EPOCHS
    d = common.load_data(config)
    root = jax.random.key(config.seed)

    results, rows, cells, curves, elbos = {}, [], {}, {}, {}
    cells["test inputs"] = {"reconstruction": d.preprocessing.to_pixels(d.test[:8])}
    for i, (name, (label, likelihood, kwargs)) in enumerate(VARIANTS.items()):
        if quick and name not in QUICK_VARIANTS:
            continue
        c = common.copy_config(config)
        c.model.likelihood = likelihood
        c.model.likelihood_kwargs = kwargs
        results[name] = r = common.train_variant(workdir, name, c, data=d)
        run_dir = common.run_directory(workdir, name)
        records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
        train = [rec for rec in records if "train/log_likelihood" in rec]
        curves[label] = (
            [rec["step"] for rec in train],
            [rec["train/log_likelihood"] for rec in train],
        )
        valid = [rec for rec in records if "valid/elbo" in rec]
        elbos[label] = ([rec["step"] for rec in valid], [rec["valid/elbo"] for rec in valid])
        last_train = common.number(train[-1]["train/log_likelihood"], 1) if train else "—"
        params = common.restore_params(run_dir)
        if params is None:  # diverged before its first checkpoint
            rows.append([label, common.diverged_note(r), *["—"] * 3, last_train])
            continue
        model = build.build_model(  # the model train_and_evaluate built from c
            config_lib.read(c).model, d.train.shape[1:], likelihoods.get(likelihood, **kwargs)
        )
        summary = functools.partial(_sigma_summary, model, params, d.test[:1000])
        sigma = common.cached(run_dir / "question.json", summary)
        sigma_cell = f"{sigma['sigma_median']:.3g} ({sigma['sigma_min']:.3g})"
        cells[label] = common.image_panels(model, params, d, jax.random.fold_in(root, i))
        if common.DIVERGED in r:
            rows.append([label, common.diverged_note(r), "—", "—", sigma_cell, last_train])
            continue
        test = r["test"]
        rows.append(
            [
                label,
                common.number(test["elbo"]),
                common.number(test.get(f"nll_{c.eval.nll_samples}")),
                common.number(test.get("bits_per_dim"), 3),
                sigma_cell,
                last_train,
            ]
        )

    images, images_link = common.figure_path(docs_dir, "decoder_variance.png")
    common.save_image_table(images, cells)
    lines, lines_link = common.figure_path(docs_dir, "decoder_variance_curves.png")
    common.save_lines(
        lines,
        {"train E_q log p(x | z) (nats)": curves, "validation ELBO (nats)": elbos},
        xlabel="step",
    )
    table = common.markdown_table(
        [
            "decoder variance",
            "test ELBO",
            f"test NLL-{config.eval.nll_samples}",
            "bits/dim",
            "sigma of p(x|z) in 8-bit levels: median (min)",
            "last train E_q log p(x|z)",
        ],
        rows,
    )
    block = "\n\n".join(
        [
            common.provenance("decoder_variance", quick),
            common.describe(config, data=f"{config.data.name} intensities in [0, 1]")
            + " Bits/dim: the density at each pixel times the bin width 1/255. Sigma: at the "
            "posterior means of the first 1000 test images; the checkpoint before divergence "
            "for a diverged run.",
            table,
            f"![reconstructions and prior samples per decoder variance]({images_link})",
            f"![training log-likelihood and validation ELBO per step]({lines_link})",
        ]
    )
    common.write_results(docs_dir, "decoder_variance", block)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    common.main(run, argv, __doc__)


if __name__ == "__main__":
    main()
