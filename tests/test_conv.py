"""vaejax.conv: the matmul lowering is `lax`'s convolution, in values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vaejax import conv, cpu_fastpaths, likelihoods, networks

_DN = ("NHWC", "HWIO", "NHWC")

# (x shape, kernel shape, strides, padding): the networks' layers (28x28 and 32x32 images, the
# 1x1 heads), then odd sizes, VALID, explicit pairs, non-square kernels and strides.
CASES = [
    ((2, 28, 28, 1), (3, 3, 1, 8), (2, 2), "SAME"),
    ((2, 14, 14, 8), (3, 3, 8, 16), (2, 2), "SAME"),
    ((2, 16, 16, 3), (3, 3, 3, 8), (2, 2), "SAME"),
    ((2, 7, 7, 16), (3, 3, 16, 16), (2, 2), "SAME"),
    ((2, 8, 8, 16), (3, 3, 16, 8), (2, 2), "SAME"),
    ((2, 28, 28, 8), (1, 1, 8, 5), (1, 1), "SAME"),
    ((2, 9, 7, 3), (3, 3, 3, 5), (2, 2), "VALID"),
    ((2, 8, 9, 4), (2, 3, 4, 6), (2, 1), "SAME"),
    ((2, 9, 8, 4), (3, 3, 4, 6), (3, 2), "SAME"),
    ((2, 8, 8, 4), (3, 3, 4, 6), (1, 1), ((1, 2), (0, 1))),
]


def _conv_ref(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


def _conv_transpose_ref(x, w, strides, padding):
    return lax.conv_transpose(x, w, strides, padding, dimension_numbers=_DN)


def _value_and_grads(fn, x, w, cotangent):
    y, vjp = jax.vjp(fn, x, w)
    return (y, *vjp(cotangent))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "mine, ref",
    [
        (conv.conv2d_as_matmul, _conv_ref),
        (conv.conv_transpose2d_as_matmul, _conv_transpose_ref),
    ],
    ids=["conv", "conv_transpose"],
)
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matmul_lowering_matches_lax_in_values_and_gradients(case, mine, ref, dtype):
    x_shape, w_shape, strides, padding = case
    rng = np.random.default_rng(0)
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(rng.normal(size=x_shape), dtype)
        w = jnp.asarray(rng.normal(size=w_shape), dtype)
        y_ref = ref(x, w, strides, padding)
        ct = jnp.asarray(rng.normal(size=y_ref.shape), dtype)
        expected = _value_and_grads(lambda x, w: ref(x, w, strides, padding), x, w, ct)
        got = jax.jit(
            lambda x, w, ct: _value_and_grads(lambda x, w: mine(x, w, strides, padding), x, w, ct)
        )(x, w, ct)
        tol = 1e-12 if dtype == np.float64 else 2e-5
        for name, a, b in zip(("value", "d_x", "d_kernel"), got, expected, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype, name
            scale = float(jnp.max(jnp.abs(b)))
            np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize(
    "ours, flax_module, x_shape",
    [
        (
            conv.Conv(16, (3, 3), strides=(2, 2)),
            nn.Conv(16, (3, 3), strides=(2, 2)),
            (3, 14, 14, 8),
        ),
        (conv.Conv(4, (1, 1)), nn.Conv(4, (1, 1)), (3, 28, 28, 8)),
        (
            conv.ConvTranspose(8, (3, 3), strides=(2, 2)),
            nn.ConvTranspose(8, (3, 3), strides=(2, 2)),
            (3, 7, 7, 16),
        ),
        (
            conv.ConvTranspose(8, (3, 3), strides=(2, 2), use_bias=False),
            nn.ConvTranspose(8, (3, 3), strides=(2, 2), use_bias=False),
            (3, 8, 8, 16),
        ),
    ],
)
def test_modules_are_drop_in_for_flax(ours, flax_module, x_shape):
    x = jnp.asarray(np.random.default_rng(1).normal(size=x_shape), jnp.float32)
    params = flax_module.init(jax.random.key(0), x)
    # The same names, shapes and initial values: checkpoints of either load into the other.
    assert jax.tree.map(np.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(np.shape, params)
    for a, b in zip(
        jax.tree.leaves(ours.init(jax.random.key(0), x)), jax.tree.leaves(params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    expected = flax_module.apply(params, x)
    np.testing.assert_allclose(ours.apply(params, x), expected, rtol=1e-5, atol=1e-5)
    with cpu_fastpaths.disabled("conv_as_matmul"):
        np.testing.assert_allclose(ours.apply(params, x), expected, rtol=1e-6, atol=1e-6)


def _ops(fn, *args) -> set[str]:
    return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


def test_lax_convolution_off_cpu_or_when_disabled():
    module = conv.ConvTranspose(4, (3, 3), strides=(2, 2))
    x = jnp.zeros((1, 4, 4, 2))
    params = module.init(jax.random.key(0), x)
    apply = lambda p, x: module.apply(p, x)
    assert "conv_general_dilated" not in _ops(apply, params, x)
    with cpu_fastpaths.disabled("conv_as_matmul"):
        assert "conv_general_dilated" in _ops(apply, params, x)


def test_conv_vae_gradients_match_the_lax_convolutions():
    model = networks.conv_vae(
        data_shape=(28, 28, 1), likelihood=likelihoods.Bernoulli(), latent_dim=4
    )
    x = (np.random.default_rng(2).random((4, 28, 28, 1)) < 0.3).astype(np.float32)
    params = networks.init(model, jax.random.key(0), x)

    def loss(params):
        out = model.apply({"params": params}, x, jax.random.key(1))
        return jnp.sum(out.likelihood_params["logits"] ** 2) + jnp.sum(out.z**2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    with cpu_fastpaths.disabled("conv_as_matmul"):
        ref_value, ref_grads = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))
