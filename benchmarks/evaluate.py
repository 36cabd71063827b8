"""Evaluation throughput: the importance-sampled log-likelihood of Burda et al.'s model.

  python -m benchmarks.evaluate                      # 10,000 images x 5000 samples (minutes)
  python -m benchmarks.evaluate --quick              # seconds, for the tests
  python -m benchmarks.evaluate --num_test=1000 --samples=5000 --chunk_size=20
  python -m benchmarks.evaluate --fastpaths --num_test=500 --samples=1000  # CPU fast paths on/off

The code under test is `vaejax.evaluate.evaluate_test` (ELBO terms, then log p(x) with
`vaejax.objectives.estimate_log_likelihood`: the encoder once per image, the decoder on
`chunk_size` samples of every image of a batch at a time) on Burda et al.'s 784-200-200-50 tanh
VAE, on synthetic binary images of MNIST's shape, or on the MNIST test split when
`TFDS_DATA_DIR` is set (`--data mnist`). Throughput does not depend on the parameters' values,
so the model is at its initialisation.

In the same process it times a straightforward chunked JAX evaluation (its own Flax modules,
`optax.sigmoid_binary_cross_entropy`, a `lax.scan` over chunks of `--reference_chunk_size`
samples, plain `jax.jit`) on `--reference_num_test` images, and the matmul bound: the decoder's
and encoder's dots alone, on their own shapes (`benchmarks.common.matmul_bound`).

With `--fastpaths`, it instead times `evaluate_test` with each evaluation fast path of
`vaejax.cpu_fastpaths` on and off, `--repeats` times alternating: what each buys.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from benchmarks import common
from benchmarks.throughput import (
    FASTPATH_HEADERS,
    Model,
    fastpath_row,
    fastpath_side,
    reference_model,
)
from experiments.configs import mnist as mnist_config
from vaejax import data, evaluate, likelihoods, networks

BURDA = Model("burda", "784-200-200-50 tanh", 100, "mlp", 50, (200, 200), "tanh")


def test_images(name: str, num: int) -> np.ndarray:
    if name == "synthetic":
        return common.synthetic_binary_images(num, seed=1)
    d = data.load(name, preprocessing="dynamic_binarize")
    return d.test[:num]


def reference_log_px(model, params, x, key, *, num_samples: int, chunk_size: int):
    """log p(x) the straightforward way: one scan step per chunk of samples, per-pixel BCE."""
    num_chunks = num_samples // chunk_size

    def encode(x):
        return model.apply({"params": params}, x, method=lambda m, x: m.encoder(x))

    def decode(z):
        return model.apply({"params": params}, z, method=lambda m, z: m.decoder(z))

    mean, logvar = encode(x)
    std = jnp.exp(0.5 * logvar)

    def chunk(total, k):
        eps = jax.random.normal(k, (chunk_size, *mean.shape))
        z = mean[None] + std[None] * eps
        logits = decode(z.reshape(-1, z.shape[-1])).reshape(chunk_size, *x.shape)
        bce = optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(x, logits.shape))
        log_px_z = -bce.reshape(chunk_size, len(x), -1)
        log_pz = -0.5 * jnp.sum(z**2 + math.log(2 * math.pi), -1)
        log_qz = -0.5 * jnp.sum(eps**2 + math.log(2 * math.pi) + logvar[None], -1)
        log_w = log_px_z.sum(-1) + log_pz - log_qz
        return jnp.logaddexp(total, jax.nn.logsumexp(log_w, axis=0)), None

    init = jnp.full(len(x), -jnp.inf)
    total, _ = jax.lax.scan(chunk, init, jax.random.split(key, num_chunks))
    return total - math.log(num_chunks * chunk_size)


def time_reference(x: np.ndarray, *, num_samples: int, chunk_size: int, batch_size: int):
    """Images per second of the straightforward evaluation, and its mean log p(x)."""
    model = reference_model(BURDA)
    params = model.init(jax.random.key(0), x[:1], jax.random.key(0))["params"]
    fn = jax.jit(
        functools.partial(reference_log_px, model, num_samples=num_samples, chunk_size=chunk_size)
    )
    batches = [x[i : i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]
    jax.block_until_ready(fn(params, batches[0], jax.random.key(0)))  # compile
    start = time.perf_counter()
    out = [fn(params, b, jax.random.key(i)) for i, b in enumerate(batches)]
    jax.block_until_ready(out)
    seconds = time.perf_counter() - start
    return len(batches) * batch_size / seconds, seconds


def flops_and_bound(model, params, x, *, num_samples: int, chunk_size: int, batch_size: int):
    """Matmul FLOPs of the whole evaluation (counted from the jaxpr) and the bound's seconds."""
    batch = jnp.asarray(x[:batch_size])

    # What evaluate_test runs per batch.
    log_px = functools.partial(
        evaluate.log_px, model, num_samples=num_samples, chunk_size=chunk_size
    )
    ops = common.matmul_ops(log_px, params, jax.random.key(0), batch)
    num_batches = math.ceil(len(x) / batch_size)
    bound = common.matmul_bound(ops)
    bound(1)  # compile
    return common.total_flops(ops) * num_batches, bound, num_batches


EVALUATION_FASTPATHS = ("evaluation_fusion", "threefry")


def fastpath_ab(model, params, x, name: str, *, repeats: int, **eval_kwargs) -> dict:
    """Images/s of `evaluate_test` with fast path `name` on and off, alternating."""

    def run(on: bool) -> int:
        with fastpath_side(name, on):
            evaluate.evaluate_test(
                model, params, x, jax.random.key(2), iwae_samples=0, **eval_kwargs
            )
        return len(x)

    for on in (True, False):  # compile each side
        with fastpath_side(name, on):
            evaluate.evaluate_test(
                model,
                params,
                x[: eval_kwargs["batch_size"]],
                jax.random.key(0),
                iwae_samples=0,
                **eval_kwargs,
            )
    description = f"{BURDA.description}, {len(x)} images x {eval_kwargs['nll_samples']} samples"
    return {"fastpath": name, "description": description, **common.on_off(run, repeats=repeats)}


def run_fastpaths(model, params, x, *, repeats: int, **eval_kwargs) -> list[dict]:
    results = []
    for name in EVALUATION_FASTPATHS:
        res = fastpath_ab(model, params, x, name, repeats=repeats, **eval_kwargs)
        results.append(res)
        print(
            f"{name}: on {res['on_per_s']:.1f} images/s, off {res['off_per_s']:.1f}, "
            f"on/off {res['speedup']:.3f}x [{res['speedup_range']}], by CPU time "
            f"{res['cpu_speedup']:.3f}x [{res['cpu_speedup_range']}] over {repeats} "
            "alternating runs",
            flush=True,
        )
    headers = [h.replace("steps/s", "images/s") for h in FASTPATH_HEADERS]
    print()
    print(common.markdown_table(headers, [fastpath_row(r) for r in results]))
    return results


def parse_flags(argv: Sequence[str]) -> flags.FlagValues:
    """`argv` (program name first) parsed into flags of this script's own `FlagValues`."""
    ev = mnist_config.get_config().eval
    fv = flags.FlagValues()
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, str: flags.DEFINE_string}
    for name, kind, default, help_ in (
        ("quick", bool, False, "200 images x 100 samples."),
        ("num_test", int, None, "Test images (10000)."),
        ("samples", int, None, "Importance samples (5000)."),
        ("chunk_size", int, 20, "Samples per decoder pass."),
        ("batch_size", int, ev.batch_size, "Images per batch."),
        ("reference_num_test", int, None, "Test images for the reference (500)."),
        ("reference_chunk_size", int, ev.nll_chunk_size, "The reference's samples per pass."),
        ("data", str, "mnist" if os.environ.get("TFDS_DATA_DIR") else "synthetic", "Or synthetic."),
        ("json", str, None, "Also write the results here."),
        ("fastpaths", bool, False, "Time each CPU fast path on against off instead."),
        ("repeats", int, None, "With --fastpaths (6; quick 1)."),
    ):
        define[kind](name, default, help_, flag_values=fv)
    common.parse_flags(fv, argv)
    return fv


def main(argv: Sequence[str]) -> dict:
    """Runs the benchmark for the command line `argv` (program name first)."""
    args = parse_flags(argv)
    num_test = args.num_test or (200 if args.quick else 10_000)
    samples = args.samples or (100 if args.quick else mnist_config.get_config().eval.nll_samples)
    chunk = min(args.chunk_size, samples)
    ref_num = args.reference_num_test or (100 if args.quick else 500)
    ref_chunk = min(args.reference_chunk_size, samples)

    print(common.describe_machine(), flush=True)
    x = test_images(args.data, max(num_test, ref_num))
    likelihood = likelihoods.Bernoulli()
    model = networks.burda2015(data_shape=x.shape[1:], likelihood=likelihood)
    params = networks.init(model, jax.random.key(0), x[:1])
    params = networks.set_output_bias(params, likelihood.output_bias(x))
    if args.fastpaths:
        results = run_fastpaths(
            model,
            params,
            x[:num_test],
            repeats=args.repeats or (1 if args.quick else 6),
            nll_samples=samples,
            nll_chunk_size=chunk,
            batch_size=args.batch_size,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": common.machine(), "results": results}, f, indent=1)
        return {"fastpaths": results}

    flops, bound, num_batches = flops_and_bound(
        model,
        params,
        x[:num_test],
        num_samples=samples,
        chunk_size=chunk,
        batch_size=args.batch_size,
    )
    print(
        f"{num_test} images x {samples} samples ({args.data}): {flops:.3g} FLOP in matmuls "
        f"(jaxpr count), {num_batches} batches of {args.batch_size}, chunks of {chunk} samples",
        flush=True,
    )

    # Warm up (compiles), then the timed evaluation, with its peak memory.
    evaluate.evaluate_test(
        model,
        params,
        x[: args.batch_size],
        jax.random.key(1),
        iwae_samples=0,
        nll_samples=samples,
        nll_chunk_size=chunk,
        batch_size=args.batch_size,
    )
    bound_before = bound(1) * num_batches
    with common.peak_rss() as mem:
        start = time.perf_counter()
        result = evaluate.evaluate_test(
            model,
            params,
            x[:num_test],
            jax.random.key(2),
            iwae_samples=0,
            nll_samples=samples,
            nll_chunk_size=chunk,
            batch_size=args.batch_size,
        )
        seconds = time.perf_counter() - start
    bound_after = bound(1) * num_batches
    bound_s = common.median([bound_before, bound_after])
    print(
        f"vaejax: {seconds:.1f} s, {num_test / seconds:.1f} images/s, "
        f"{flops / seconds / 1e9:.0f} GFLOP/s; bound {bound_s:.1f} s "
        f"({flops / bound_s / 1e9:.0f} GFLOP/s on these shapes, timed before and after), "
        f"so {seconds / bound_s:.2f}x the bound; peak RSS {mem['peak_mb']:.0f} MB; "
        f"test NLL {result[f'nll_{samples}']:.2f} nats",
        flush=True,
    )

    ref_rate, ref_s = time_reference(
        x[:ref_num], num_samples=samples, chunk_size=ref_chunk, batch_size=args.batch_size
    )
    print(
        f"straightforward (chunks of {ref_chunk} samples, {ref_num} images): {ref_s:.1f} s, "
        f"{ref_rate:.1f} images/s, so {num_test / ref_rate:.0f} s for {num_test}; "
        f"vaejax is {num_test / seconds / ref_rate:.2f}x faster",
        flush=True,
    )
    out = {
        "machine": common.machine(),
        "data": args.data,
        "num_test": num_test,
        "samples": samples,
        "chunk_size": chunk,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "images_per_s": num_test / seconds,
        "matmul_flops": flops,
        "gflops": flops / seconds / 1e9,
        "bound_s": bound_s,
        "times_bound": seconds / bound_s,
        "peak_rss_mb": mem["peak_mb"],
        "device_peak_mb": common.device_peak_mb(),
        "nll": result[f"nll_{samples}"],
        "reference_images_per_s": ref_rate,
        "reference_chunk_size": ref_chunk,
        "speedup": num_test / seconds / ref_rate,
    }
    print()
    print(
        common.markdown_table(
            (
                "what",
                "images",
                "samples",
                "seconds",
                "images/s",
                "GFLOP/s",
                "x bound",
                "peak RSS MB",
            ),
            [
                (
                    f"vaejax evaluate_test (chunk {chunk})",
                    num_test,
                    samples,
                    seconds,
                    num_test / seconds,
                    flops / seconds / 1e9,
                    seconds / bound_s,
                    mem["peak_mb"],
                ),
                (
                    f"straightforward (chunk {ref_chunk})",
                    ref_num,
                    samples,
                    ref_s,
                    ref_rate,
                    flops / num_test * ref_num / ref_s / 1e9,
                    num_test / ref_rate / bound_s,
                    "",
                ),
                (
                    "matmul bound",
                    num_test,
                    samples,
                    bound_s,
                    num_test / bound_s,
                    flops / bound_s / 1e9,
                    1.0,
                    "",
                ),
            ],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main(sys.argv)
