"""Q2: which decoder output activation when the data are not in [0, 1]?

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.questions.output_likelihoods \
      --workdir=runs/questions/output_likelihoods

The output activation and the loss are one choice: a likelihood. Part 1 trains the same MLP
VAE on MNIST with each likelihood and the data it is defined for, plus the common mistake:

  bernoulli             sigmoid + BCE = Bernoulli, on binarized pixels
  bce_grayscale         sigmoid + BCE on intensities in [0, 1] (the mistake: not a density)
  continuous_bernoulli  sigmoid + BCE + log C = continuous Bernoulli, on dequantized intensities
  gaussian              identity + squared error = Gaussian (one learned variance), on
                        standardized pixels
  categorical           softmax + cross-entropy = Categorical over the 256 levels
  logistic_mixture      a mixture of 10 discretized logistics per pixel (PixelCNN++'s output)

and compares them in bits per dimension of the same 8-bit test images. Part 2 does the same
on tabular features with no known scale (made in code: `make_features`): a Gaussian with an
identity output on the raw features and on standardized ones, and sigmoid + BCE on min-max
scaled ones; NLLs are in the raw features' units (the standardization's log-Jacobian added).

Writes the results block of docs/output_likelihoods.md, docs/img/questions/output_likelihoods.png
and docs/img/questions/output_likelihoods_features.png. `--quick` trains `QUICK_VARIANTS` only,
on synthetic data, into <workdir>/docs by default.
Measured on 2 cores (2026-12-02, the CPU that reports itself as "Intel(R) Xeon(R) Processor"):
12-20 s of training for each MNIST likelihood but the categorical (5 epochs); 6 minutes for the
categorical (2 epochs at ~0.3 s a step for its 200,704 logits per image) and 2.5 more for its
NLL-100 on 2000 test images; seconds for each tabular model. About 20 minutes in all, the first
decoding of MNIST and other jobs on the CPU included.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.questions import common
from vaejax import data as data_lib
from vaejax import evaluate, likelihoods, networks
from vaejax.writers import read_metrics

MNIST_EPOCHS = 5
CATEGORICAL_EPOCHS = 2
# The categorical's 256 logits per pixel come from 16 features of that pixel through one head
# shared by all pixels (`networks.PixelHead`), not from one 500 x 200,704 layer (100M weights).
# The first design, a 32-unit layer before a 32 x 200,704 head, collapsed: KL 0 after 2 epochs,
# the logits of every pixel a function of the same 32 numbers.
CATEGORICAL_PIXEL_FEATURES = 16
MNIST_EVAL = {"num_test": 2000, "nll_samples": 100, "nll_chunk_size": 10, "batch_size": 50}
FEATURE_EPOCHS = 30
FEATURE_HIDDEN = (128,)
FEATURE_LATENT = 4
FEATURE_FLOOR = 1e-6  # far below any feature's noise variance, raw or standardized
# --quick trains these only: one model with an 8-bit comparison, and the tabular comparison's
# standardized Gaussian and min-max BCE (the categorical head alone would take ~40 s).
QUICK_VARIANTS = ("gaussian", "gaussian_standardized", "bce_min_max")


@dataclasses.dataclass(frozen=True)
class BinaryCrossEntropy(likelihoods.Bernoulli):
    """Sigmoid + binary cross-entropy on values in [0, 1]: the common mistake on grayscale.

    The same loss as `Bernoulli`, with the data check relaxed from {0, 1} to [0, 1]. For x
    strictly inside (0, 1), exp(x l - log(1 + e^l)) is no density: it integrates over [0, 1]
    to 1 / C(sigmoid(l)) <= 1/2 (Loaiza-Ganem & Cunningham 2019), so its "log-likelihood" has
    no units and compares with nothing, and sigmoid(l) is not the mean of anything it models.
    """

    def check_data(self, x) -> None:
        x = np.asarray(x)
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise ValueError(
                f"BinaryCrossEntropy needs finite data in [0, 1]; got [{x.min()}, {x.max()}]."
            )


@dataclasses.dataclass(frozen=True)
class Case:
    label: str  # the output activation and loss, and the likelihood they are
    likelihood: likelihoods.Likelihood
    preprocessing: str  # data.PREPROCESSINGS for MNIST; "raw" | "standardized" | "min_max"
    data: str  # what the model sees
    discretized: str = ""  # how an 8-bit probability is read off it (MNIST)


MNIST_CASES = {
    "bernoulli": Case(
        "sigmoid + BCE = Bernoulli",
        likelihoods.Bernoulli(),
        "dynamic_binarize",
        "binarized pixels (a fresh draw per batch)",
        "none: binary data, another dataset",
    ),
    "bce_grayscale": Case(
        "sigmoid + BCE on grayscale (the mistake)",
        BinaryCrossEntropy(),
        "unit_interval",
        "intensities in [0, 1]",
        "none: not a density",
    ),
    "continuous_bernoulli": Case(
        "sigmoid + BCE + log C = continuous Bernoulli",
        likelihoods.ContinuousBernoulli(),
        "dequantize",
        "(pixel + u) / 256, u ~ U(0, 1) per batch",
        "dequantized: an upper bound on the 8-bit NLL (Theis et al. 2016)",
    ),
    "gaussian": Case(
        "identity + squared error = Gaussian (one learned variance)",
        likelihoods.LearnedGaussian(shared_variance=True),
        "standardize",
        "(pixel - mean) / std",
        "density at the pixel x bin width 1/std",
    ),
    "categorical": Case(
        "softmax + cross-entropy = Categorical(256)",
        likelihoods.Categorical(256),
        "integer",
        "integer levels 0..255",
        "exact: a distribution over the 256 levels",
    ),
    "logistic_mixture": Case(
        "identity + discretized logistic mixture (10; Salimans et al. 2017)",
        likelihoods.DiscretizedLogisticMixture(10),
        "integer",
        "integer levels 0..255",
        "exact: a distribution over the 256 levels",
    ),
}
FEATURE_CASES = {
    "gaussian_raw": Case(
        "identity + Gaussian",
        likelihoods.LearnedGaussian(variance_floor=FEATURE_FLOOR),
        "raw",
        "raw features",
    ),
    "gaussian_standardized": Case(
        "identity + Gaussian",
        likelihoods.LearnedGaussian(variance_floor=FEATURE_FLOOR),
        "standardized",
        "(x - mean) / std per feature",
    ),
    "bce_min_max": Case(
        "sigmoid + BCE (the mistake)",
        BinaryCrossEntropy(),
        "min_max",
        "(x - min) / (max - min) per feature, clipped to [0, 1]",
    ),
}


# ---- tabular features with no known scale


def make_features(
    seed: int = 0,
    *,
    sizes: tuple[int, int, int] = (20_000, 5_000, 5_000),
    num_features: int = 16,
    latent_dim: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, valid and test features `[N, num_features]` float32 in raw units.

    Each feature is a random nonlinear function of `latent_dim` standard-normal latents plus
    heavy-tailed noise (0.1 x Student-t with 3 degrees of freedom), then scaled by a factor
    log-uniform in [0.1, 1000] and offset by up to 5 scales: columns as unlike as a ratio, a
    count and an income, with outliers.
    """
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    z = rng.normal(size=(n, latent_dim))
    w1 = rng.normal(size=(latent_dim, 32))
    w2 = rng.normal(size=(32, num_features)) / np.sqrt(32)
    signal = np.tanh(z @ w1 + rng.normal(size=32)) @ w2
    noise = 0.1 * rng.standard_t(3, size=(n, num_features))
    scale = 10 ** rng.uniform(-1, 3, num_features)
    offset = scale * rng.uniform(-5, 5, num_features)
    x = ((signal + noise) * scale + offset).astype(np.float32)
    return tuple(np.split(x, np.cumsum(sizes)[:2]))


def feature_data(
    kind: str, raw: Sequence[np.ndarray]
) -> tuple[data_lib.Data, np.ndarray, np.ndarray]:
    """Splits for the model and the per-feature `shift`, `scale`: model input (x - shift) / scale.

    The shift and scale come from the train split only; min-max data of the other splits are
    clipped to [0, 1] (test values outside the training range exist: the noise is heavy-tailed).
    """
    train = raw[0].astype(np.float64)
    if kind == "raw":
        shift, scale = np.zeros(train.shape[1]), np.ones(train.shape[1])
    elif kind == "standardized":
        shift, scale = train.mean(0), train.std(0)
    elif kind == "min_max":
        shift, scale = train.min(0), train.max(0) - train.min(0)
    else:
        raise ValueError(f"Unknown feature preprocessing {kind!r}; use raw, standardized, min_max.")
    splits = [((s - shift) / scale).astype(np.float32) for s in raw]
    if kind == "min_max":
        splits = [np.clip(s, 0.0, 1.0) for s in splits]
    labels = [np.zeros(len(s), np.int32) for s in raw]
    info = {"name": "features", "features": kind, "num_features": train.shape[1]}
    none = data_lib.Preprocessing(data_lib.NO_PREPROCESSING)
    return data_lib.Data(*splits, *labels, info, none), shift, scale


def reconstruction_r2(model, params, x_model: np.ndarray, x_raw: np.ndarray, shift, scale) -> float:
    """Mean over features of the R^2 of the reconstructions (decoder mean), in raw units."""
    encode, decode = networks.bind(model, params)
    recon = np.asarray(model.likelihood.mean(decode(encode(jnp.asarray(x_model))["mean"])))
    recon = recon.astype(np.float64) * scale + shift
    r2 = 1.0 - np.square(x_raw - recon).mean(0) / x_raw.astype(np.float64).var(0)
    return float(r2.mean())


# ---- the experiment


def _mnist_model(config: ml_collections.ConfigDict, case: Case, data_shape) -> networks.VAE:
    integer = case.preprocessing == "integer"
    return networks.mlp_vae(
        data_shape=tuple(data_shape),
        likelihood=case.likelihood,
        latent_dim=config.model.latent_dim,
        hidden_sizes=config.model.hidden_sizes,
        activation=config.model.activation,
        input_scale=1 / 255 if integer else 1.0,
        pixel_features=CATEGORICAL_PIXEL_FEATURES if integer else 0,
    )


def _mnist_part(workdir, config, quick):
    """Table rows and figure cells of the MNIST likelihoods."""
    rows, cells = [], {}
    for i, (name, case) in enumerate(MNIST_CASES.items()):
        if quick and name not in QUICK_VARIANTS:
            continue
        c = common.copy_config(config)
        c.data.preprocessing = case.preprocessing
        if not quick and case.preprocessing == "integer":  # as many epochs as the categorical
            c.train.num_epochs = CATEGORICAL_EPOCHS
        d = common.load_data(c)
        model = _mnist_model(c, case, d.train.shape[1:])
        results = common.train_variant(workdir, name, c, model=model, data=d)
        if not cells or case.preprocessing == "unit_interval":  # prefer the grayscale images
            cells["test inputs"] = {"reconstruction": d.preprocessing.to_pixels(d.test[:8])}
        if common.DIVERGED in results:
            rows.append([case.label, case.data, common.diverged_note(results), *["—"] * 5])
            continue
        test = results["test"]
        bits = "—"
        # Not for sigmoid + BCE on grayscale: train_and_evaluate converts any unit_interval
        # "density", but that one is none.
        if "bits_per_dim" in test and not isinstance(case.likelihood, BinaryCrossEntropy):
            num_dims = int(np.prod(d.train.shape[1:]))
            from_elbo = evaluate.bits_per_dim(-test["elbo"], num_dims, d.preprocessing)
            bits = f"{common.number(test['bits_per_dim'], 3)} ({common.number(from_elbo, 3)})"
        rows.append(
            [
                case.label,
                case.data,
                common.number(test["elbo"]),
                common.number(test.get(f"nll_{c.eval.nll_samples}")),
                bits,
                f"{common.number(test['kl'])} ({test['active_units']})",
                case.discretized,
                c.train.num_epochs,
            ]
        )
        params = common.restore_params(common.run_directory(workdir, name))
        key = jax.random.fold_in(jax.random.key(c.seed), i)
        cells[case.label] = common.image_panels(model, params, d, key)
    return rows, cells


def _feature_summary(model, params, d, raw_test, shift, scale) -> dict[str, float]:
    return {"r2": reconstruction_r2(model, params, d.test, raw_test, shift, scale)}


def _feature_part(workdir, config, quick):
    """Table rows and validation curves (raw units) of the tabular models."""
    raw = make_features(config.seed, **({"sizes": (200, 40, 40)} if quick else {}))
    rows, curves = [], {}
    for name, case in FEATURE_CASES.items():
        if quick and name not in QUICK_VARIANTS:
            continue
        d, shift, scale = feature_data(case.preprocessing, raw)
        model = networks.mlp_vae(
            data_shape=d.train.shape[1:],
            likelihood=case.likelihood,
            latent_dim=config.model.latent_dim,
            hidden_sizes=config.model.hidden_sizes,
            activation=config.model.activation,
        )
        results = common.train_variant(workdir, name, config, model=model, data=d)
        if common.DIVERGED in results:
            rows.append([case.label, case.data, common.diverged_note(results), "—", "—"])
            continue
        run_dir = common.run_directory(workdir, name)
        params = common.restore_params(run_dir)
        summary = functools.partial(_feature_summary, model, params, d, raw[2], shift, scale)
        r2 = common.cached(run_dir / "question.json", summary)["r2"]
        test = results["test"]
        if isinstance(case.likelihood, BinaryCrossEntropy):
            nll = elbo = "— (not a density)"
        else:
            # log p(x) = log p(x') + log |dx'/dx|, with x' = (x - shift) / scale.
            log_jacobian = -float(np.log(scale).sum())
            nll = common.number(test[f"nll_{config.eval.nll_samples}"] - log_jacobian)
            elbo = common.number(test["elbo"] + log_jacobian)
            valid = [r for r in read_metrics(run_dir) if "valid/elbo" in r]
            curves[f"{case.label}, {case.preprocessing} features"] = (
                [r["train/epoch"] for r in valid],
                [r["valid/elbo"] + log_jacobian for r in valid],
            )
        rows.append([case.label, case.data, nll, elbo, common.number(r2, 3)])
    return rows, curves


def run(
    workdir: str, *, docs_dir: str | os.PathLike = common.DOCS_DIR, quick: bool = False
) -> dict[str, Any]:
    """Trains every case, writes the tables and figures; returns the table rows."""
    mnist_config = common.base_config(quick)
    # ReLU: with tanh units the continuous Bernoulli's decoder collapsed here (KL under 1 nat;
    # see experiments/configs/continuous_bernoulli.py); the same network for every likelihood.
    mnist_config.model.activation = "relu"
    feature_config = common.copy_config(mnist_config)
    if not quick:
        mnist_config.train.num_epochs = MNIST_EPOCHS
        mnist_config.eval.update(MNIST_EVAL)
        feature_config.model.hidden_sizes = FEATURE_HIDDEN
        feature_config.model.latent_dim = FEATURE_LATENT
        feature_config.train.num_epochs = FEATURE_EPOCHS
    mnist_rows, cells = _mnist_part(workdir, mnist_config, quick)
    feature_rows, curves = _feature_part(workdir, feature_config, quick)

    images, images_link = common.figure_path(docs_dir, "output_likelihoods.png")
    common.save_image_table(images, cells)
    lines, lines_link = common.figure_path(docs_dir, "output_likelihoods_features.png")
    common.save_lines(lines, {"validation ELBO, raw units (nats)": curves}, xlabel="epoch")
    nll = f"NLL-{mnist_config.eval.nll_samples}"
    mnist_table = common.markdown_table(
        [
            "output + loss = likelihood",
            "data the model sees",
            "test ELBO (nats, own units)",
            f"test {nll} (nats, own units)",
            f"bits/dim of the 8-bit images: {nll} (ELBO)",
            f"test KL (active units of {mnist_config.model.latent_dim})",
            "how an 8-bit probability is read off",
            "epochs",
        ],
        mnist_rows,
    )
    feature_table = common.markdown_table(
        [
            "output + loss",
            "features given to the model",
            f"test NLL-{feature_config.eval.nll_samples}, raw units (nats)",
            "test ELBO, raw units (nats)",
            "reconstruction R², mean over features",
        ],
        feature_rows,
    )
    hidden = "-".join(map(str, feature_config.model.hidden_sizes))
    feature_model = f"MLP {hidden} tanh, latent {feature_config.model.latent_dim}"
    block = "\n\n".join(
        [
            common.provenance("output_likelihoods", quick),
            "**MNIST.** "
            + common.describe(mnist_config, data=f"{mnist_config.data.name}")
            + " The two models of the integer levels train for the epochs in the table; "
            f"their decoders' values per pixel (the categorical's 256 logits, the mixture's 3 x "
            f"10) come from {CATEGORICAL_PIXEL_FEATURES} features of that pixel through one "
            "head per param shared by all pixels (`networks.PixelHead`).",
            mnist_table,
            f"![reconstructions and prior samples per likelihood]({images_link})",
            "**Tabular features with no known scale.** "
            + common.describe(
                feature_config,
                data="`make_features` (16 features, heavy-tailed noise, scales 0.1 to 1000)",
                model=feature_model,
            ),
            feature_table,
            f"![validation ELBO per epoch, raw units]({lines_link})",
        ]
    )
    common.write_results(docs_dir, "output_likelihoods", block)
    return {"mnist": mnist_rows, "features": feature_rows}


def main(argv: Sequence[str] | None = None) -> None:
    common.main(run, argv, __doc__)


if __name__ == "__main__":
    main()
