"""Signal-to-noise ratio of the encoder's IWAE gradients: reparameterized, STL and DReG.

  python -m benchmarks.gradient_snr                        # the default model at initialization
  python -m benchmarks.gradient_snr --workdir=runs/mnist   # a trained run's model (vaejax.load)
  python -m benchmarks.gradient_snr --quick                # seconds, for the tests

For each k in `--ks` and each estimator, the gradient of the IWAE bound (batch mean over
`--batch` images) with respect to every parameter is drawn `--draws` times with independent
keys at fixed parameters. Per parameter, SNR = |mean| / std over the draws (Rainforth et al.
2018); reported is the median over the encoder's parameters (and the decoder's, which the
estimators leave unchanged). Rainforth et al. show the plain estimator's encoder SNR falling as
k grows, like 1/sqrt(k); DReG's (Tucker et al. 2018) does not. Images: MNIST's test split
dynamically binarized when $TFDS_DATA_DIR is set (or --workdir gives a run), else synthetic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags

from benchmarks import common
from vaejax import data, likelihoods, networks, objectives

ESTIMATORS = ("reparameterized", "stl", "dreg")


def gradient_draws(model, params, x, *, num_samples, estimator, draws, seed=0):
    """`draws` gradients of the IWAE bound's batch mean, each with its own key."""
    prior = networks.bind(model, params).prior

    def bound(p, key):
        encode, decode = networks.bind(model, p)
        return objectives.iwae_bound(
            key, x, encode=encode, decode=decode, likelihood=model.likelihood,
            posterior=model.posterior, prior=prior, num_samples=num_samples,
            gradient_estimator=estimator,
        ).mean()  # fmt: skip

    grad = jax.jit(jax.grad(bound))
    keys = jax.random.split(jax.random.key(seed), draws)
    return [jax.device_get(grad(params, k)) for k in keys]


def snr(draws: list, part: str) -> float:
    """The median over `part`'s parameters of |mean| / std across the draws."""
    stacked = [np.stack([np.ravel(x) for x in leaf]) for leaf in _leaves(draws, part)]
    g = np.concatenate(stacked, axis=1)  # [draws, parameters]
    return float(np.median(np.abs(g.mean(0)) / (g.std(0) + 1e-30)))


def _leaves(draws: list, part: str) -> list[list[np.ndarray]]:
    per_draw = [jax.tree.leaves(d[part]) for d in draws]
    return [list(leaf) for leaf in zip(*per_draw, strict=True)]


def model_and_data(workdir: str | None, batch: int, quick: bool):
    if workdir:
        import vaejax

        trained = vaejax.load(workdir)
        d = data.load("mnist", preprocessing=trained.preprocessing.name, num_valid=10_000, seed=0)
        x = np.asarray(d.test[:batch] > np.random.default_rng(0).random(d.test[:batch].shape))
        return trained.model, trained.params, x.astype(np.float32), f"trained run {workdir}"
    lik = likelihoods.Bernoulli()
    if os.environ.get("TFDS_DATA_DIR") and not quick:
        d = data.load("mnist", preprocessing="dynamic_binarize", num_valid=10_000, seed=0)
        x = d.test[:batch] > np.random.default_rng(0).random(d.test[:batch].shape)
        x, source = x.astype(np.float32), "MNIST test images, binarized once"
    else:
        x, source = common.synthetic_binary_images(batch), "synthetic binary images"
    model = networks.burda2015(data_shape=x.shape[1:], likelihood=lik)
    params = networks.init(model, jax.random.key(0), x[:1])
    params = networks.set_output_bias(params, lik.output_bias(x))
    return model, params, x, f"the default model at initialization, {source}"


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_bool("quick", False, "k in (1, 5), 20 draws, batch 8.", flag_values=fv)
    flags.DEFINE_string("workdir", None, "A trained run (default: initialization).", flag_values=fv)
    flags.DEFINE_list("ks", ["1", "5", "50"], "Importance samples.", flag_values=fv)
    flags.DEFINE_integer("draws", 200, "Gradient draws per estimator and k.", flag_values=fv)
    flags.DEFINE_integer("batch", 32, "Images in the batch mean.", flag_values=fv)
    common.parse_flags(fv, argv)
    return fv


def main(argv: Sequence[str]) -> list[dict]:
    fv = parse_flags(argv)
    ks = [1, 5] if fv.quick else [int(k) for k in fv.ks]
    draws, batch = (20, 8) if fv.quick else (fv.draws, fv.batch)
    model, params, x, source = model_and_data(fv.workdir, batch, fv.quick)
    print(f"{common.describe_machine()}\n{source}; {draws} draws, batch {batch}", flush=True)
    rows = []
    for k in ks:
        for estimator in ESTIMATORS:
            if k == 1 and estimator == "dreg":
                continue  # with one sample DReG's encoder gradient is STL's
            g = gradient_draws(model, params, x, num_samples=k, estimator=estimator, draws=draws)
            rows.append(
                {"k": k, "estimator": estimator, "encoder_snr": snr(g, "encoder"),
                 "decoder_snr": snr(g, "decoder")}
            )  # fmt: skip
            print(rows[-1], flush=True)
    print(
        common.markdown_table(
            ("k", "estimator", "encoder SNR (median)", "decoder SNR (median)"),
            [[r["k"], r["estimator"], r["encoder_snr"], r["decoder_snr"]] for r in rows],
        )
    )
    return rows


if __name__ == "__main__":
    main(sys.argv)
