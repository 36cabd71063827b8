"""Q1: an activation or batch norm on the encoder's mean and variance heads?

  TFDS_DATA_DIR=../shared/data/tfds python -m experiments.questions.encoder_heads \
      --workdir=runs/questions/encoder_heads

Trains Kingma & Welling's MNIST VAE (784-500-20 tanh, Bernoulli, dynamically binarized MNIST)
once per variant of the encoder's two heads, everything else equal:

  linear           plain Dense heads for the mean and log-variance (K&W 2013, App. C.2)
  relu_mean        mean = relu(Dense(h))
  relu_variance    the scale head predicts the variance: log_var = log(relu(Dense(h)) + 1e-4)
  batch_norm       batch norm on both heads (the batch's statistics, learned scale and shift)
  batch_norm_relu  batch norm on both heads, then ReLU on the mean

A batch-norm head is evaluated properly: after training, the population mean and variance of
its pre-norm outputs over the training set (Ioffe & Szegedy 2015, Alg. 2) are folded into the
Dense layer, so the test-time model is a plain (or ReLU) head and the test numbers are those of
an ordinary encoder. The test ELBO with the batch's statistics (batches of the training size)
is reported beside it, so the minibatch noise shows.

Writes the results block of docs/encoder_heads.md and docs/img/questions/encoder_heads.png.
`--quick` trains `QUICK_VARIANTS` only, on synthetic data, into <workdir>/docs by default.
Estimate: about 2 minutes a variant on 2 cores (8 epochs, ~60 s; NLL-1000 on the 10,000 test
images, ~40 s), 10-11 minutes in all; rerunning skips finished variants.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.questions import common
from vaejax import data as data_lib
from vaejax import evaluate, likelihoods, networks
from vaejax.posteriors import DiagonalGaussian

EPOCHS = 8
VARIANCE_EPS = 1e-4  # a ReLU variance head's floor: std >= 0.01 where the ReLU is off
BN_EPSILON = 1e-5  # added to the variance before normalizing (as flax.linen.BatchNorm)

VARIANTS: dict[str, dict[str, bool]] = {
    "linear": {},
    "relu_mean": {"relu_mean": True},
    "relu_variance": {"relu_variance": True},
    "batch_norm": {"batch_norm": True},
    "batch_norm_relu": {"batch_norm": True, "relu_mean": True},
}
# --quick trains this only: batch norm (the fold) with a ReLU mean. Compilation makes each
# variant cost seconds even when tiny; tests/test_questions.py checks the other heads directly.
QUICK_VARIANTS = ("batch_norm_relu",)
LABELS = {
    "linear": "linear heads (K&W App. C.2)",
    "relu_mean": "ReLU on the mean",
    "relu_variance": f"variance head, log(relu(h) + {VARIANCE_EPS:g})",
    "batch_norm": "batch norm on both heads",
    "batch_norm_relu": "batch norm on both + ReLU mean",
}


class BatchNorm(nn.Module):
    """Normalizes each feature with the batch's mean and variance, then a learned scale and shift.

    Always the batch's statistics (training mode) and no `batch_stats` collection: the train
    step applies params only. The test-time model folds population statistics into the Dense
    layer before it instead (`fold_batch_norm`).
    """

    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, a: jax.Array) -> jax.Array:  # [B, D] -> [B, D]
        scale = self.param("scale", nn.initializers.ones, a.shape[-1:])
        bias = self.param("bias", nn.initializers.zeros, a.shape[-1:])
        mean = a.mean(0, keepdims=True)
        var = jnp.square(a - mean).mean(0, keepdims=True)
        return (a - mean) * jax.lax.rsqrt(var + self.epsilon) * scale[None] + bias[None]


class HeadsEncoder(nn.Module):
    """`networks.MLPEncoder` with options on its heads; outputs `{"mean", "log_var"}`.

    relu_mean: mean = relu(head).
    relu_variance: the scale head (named "variance") predicts the variance, made positive by a
      ReLU: log_var = log(relu(head) + VARIANCE_EPS).
    batch_norm: each head's Dense output is batch-normalized before its activation.

    The library's encoders keep plain Dense heads; this module exists to show why.
    """

    hidden_sizes: Sequence[int]
    latent_dim: int
    relu_mean: bool = False
    relu_variance: bool = False
    batch_norm: bool = False
    activation: str = "tanh"
    input_scale: float = 1.0

    @property
    def posterior(self) -> DiagonalGaussian:
        return DiagonalGaussian("log_var")

    @property
    def head_names(self) -> tuple[str, str]:
        return ("mean", "variance" if self.relu_variance else "log_var")

    @nn.compact
    def __call__(self, x: jax.Array, *, raw: bool = False) -> dict[str, jax.Array]:
        """Posterior params `[B, latent_dim]`; `raw=True`: each head's Dense output, by name."""
        act = networks.activation(self.activation)
        h = x.reshape(x.shape[0], -1).astype(jnp.float32) * self.input_scale
        for i, size in enumerate(self.hidden_sizes):
            h = act(nn.Dense(size, name=f"hidden_{i}")(h))
        heads = {n: nn.Dense(self.latent_dim, name=n)(h) for n in self.head_names}
        if raw:
            return heads
        if self.batch_norm:
            heads = {n: BatchNorm(name=f"{n}_bn")(a) for n, a in heads.items()}
        mean_head, scale_head = (heads[n] for n in self.head_names)
        mean = nn.relu(mean_head) if self.relu_mean else mean_head
        if self.relu_variance:
            return {"mean": mean, "log_var": jnp.log(nn.relu(scale_head) + VARIANCE_EPS)}
        return {"mean": mean, "log_var": scale_head}


def build_model(config: ml_collections.ConfigDict, data_shape, **heads: bool) -> networks.VAE:
    """The config's MLP VAE with a `HeadsEncoder(**heads)` and the config's likelihood."""
    c = config.model
    hidden = tuple(c.hidden_sizes)
    encoder = HeadsEncoder(
        hidden, c.latent_dim, activation=c.activation, input_scale=c.input_scale, **heads
    )
    likelihood = likelihoods.get(c.likelihood, **c.likelihood_kwargs)
    decoder = networks.MLPDecoder(hidden[::-1], tuple(data_shape), likelihood, c.activation)
    return networks.VAE(encoder, decoder)


# ---- batch norm at test time: population statistics folded into the Dense head


def population_statistics(
    encoder: HeadsEncoder, params: Any, x: np.ndarray, *, batch_size: int = 1000
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and variance over `x` of each head's pre-norm output: `{head: ([D], [D])}`.

    The statistics of the whole set, in float64; Ioffe & Szegedy's Alg. 2 estimates the same
    from minibatch averages (with an m / (m - 1) correction that is negligible here).
    """
    raw = jax.jit(lambda xb: encoder.apply({"params": params}, xb, raw=True))
    outs = [
        jax.device_get(raw(jnp.asarray(x[i : i + batch_size])))
        for i in range(0, len(x), batch_size)
    ]
    stats = {}
    for name in encoder.head_names:
        a = np.concatenate([o[name] for o in outs]).astype(np.float64)
        stats[name] = (a.mean(0), a.var(0))
    return stats


def fold_batch_norm(params: Any, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Encoder params with each head's batch norm, at statistics `stats`, folded into its Dense.

    BN(W h + b) = g (W h + b - mu) / s + beta = W' h + b', with s = sqrt(var + eps),
    W' = W g / s (column-wise) and b' = g (b - mu) / s + beta.
    """
    params = dict(params)
    for name, (mu, var) in stats.items():
        bn, dense = params.pop(f"{name}_bn"), params[name]
        g = np.asarray(bn["scale"], np.float64) / np.sqrt(var + BN_EPSILON)
        kernel = np.asarray(dense["kernel"], np.float64) * g[None]
        bias = (np.asarray(dense["bias"], np.float64) - mu) * g + np.asarray(bn["bias"])
        params[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return params


def test_time_model(model: networks.VAE, params: Any, train_x: np.ndarray):
    """(model, params) for evaluation: batch norm folded at the training set's statistics."""
    encoder = model.encoder
    if not encoder.batch_norm:
        return model, params
    stats = population_statistics(encoder.clone(parent=None), params["encoder"], train_x)
    folded = networks.VAE(encoder.clone(parent=None, batch_norm=False), model.decoder.clone())
    return folded, {**params, "encoder": fold_batch_norm(params["encoder"], stats)}


# ---- the experiment


def _evaluate(model, params, test_model, test_params, d, config, key) -> dict[str, Any]:
    ev = config.eval
    test = evaluate.evaluate_test(
        test_model,
        test_params,
        d.test,
        key,
        iwae_samples=ev.iwae_samples,
        nll_samples=ev.nll_samples,
        nll_chunk_size=ev.nll_chunk_size,
        batch_size=ev.batch_size,
    )
    # The trained model as it ran in training: each batch normalized with its own statistics.
    batch = evaluate.elbo_summary(model, params, d.test, key, batch_size=config.train.batch_size)
    return {"test": test, "test_elbo_batch_statistics": batch["elbo"]}


def run(
    workdir: str, *, docs_dir: str | os.PathLike = common.DOCS_DIR, quick: bool = False
) -> dict[str, dict[str, Any]]:
    """Trains and evaluates every variant, writes the table and figure; returns the numbers."""
    config = common.base_config(quick)
    if not quick:
        config.train.num_epochs = EPOCHS
    # train_and_evaluate reports the ELBO only: the test numbers come from the test-time model.
    train_config = common.copy_config(config)
    train_config.eval.nll_samples = 0
    train_config.eval.iwae_samples = 0
    d = common.load_data(config)
    root = jax.random.key(config.seed)
    train_x = d.train
    if config.data.preprocessing == "dynamic_binarize":  # one binarization, for the statistics
        train_x = np.asarray(data_lib.binarize(jax.random.fold_in(root, 1), d.train))

    numbers, rows = {}, []
    cells = {"test inputs": {"reconstruction": d.preprocessing.to_pixels(d.test[:8])}}
    for i, (name, heads) in enumerate(VARIANTS.items()):
        if quick and name not in QUICK_VARIANTS:
            continue
        model = build_model(config, d.train.shape[1:], **heads)
        results = common.train_variant(workdir, name, train_config, model=model, data=d)
        if common.DIVERGED in results:
            numbers[name] = results
            rows.append([LABELS[name], common.diverged_note(results), *["—"] * 4])
            continue
        run_dir = common.run_directory(workdir, name)
        params = common.restore_params(run_dir)
        test_model, test_params = test_time_model(model, params, train_x)
        key = jax.random.fold_in(root, 100 + i)
        evaluate_fn = functools.partial(
            _evaluate, model, params, test_model, test_params, d, config, key
        )
        numbers[name] = res = common.cached(run_dir / "question.json", evaluate_fn)
        test, nll = res["test"], f"nll_{config.eval.nll_samples}"
        rows.append(
            [
                LABELS[name],
                common.number(test["elbo"]),
                common.number(test.get(nll)),
                common.number(test["kl"]),
                test["active_units"],
                common.number(res["test_elbo_batch_statistics"])
                if heads.get("batch_norm")
                else "—",
            ]
        )
        cells[LABELS[name]] = common.image_panels(test_model, test_params, d, key)

    figure, link = common.figure_path(docs_dir, "encoder_heads.png")
    common.save_image_table(figure, cells)
    table = common.markdown_table(
        [
            "encoder heads",
            "test ELBO",
            f"NLL-{config.eval.nll_samples}",
            "KL",
            f"active units (of {config.model.latent_dim})",
            "test ELBO, batch statistics",
        ],
        rows,
    )
    block = "\n\n".join(
        [
            common.provenance("encoder_heads", quick),
            common.describe(config)
            + " Batch-norm heads are evaluated with their population statistics folded into "
            f"the Dense layer; the last column normalizes each test batch of "
            f"{config.train.batch_size} with its own statistics, as in training.",
            table,
            f"![reconstructions and prior samples per encoder head]({link})",
        ]
    )
    common.write_results(docs_dir, "encoder_heads", block)
    return numbers


def main(argv: Sequence[str] | None = None) -> None:
    common.main(run, argv, __doc__)


if __name__ == "__main__":
    main()
