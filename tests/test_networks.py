"""Flax networks: plain linear heads, shapes for every likelihood, presets, output bias."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from vaejax import likelihoods as L
from vaejax import networks as N
from vaejax.posteriors import DiagonalGaussian

RNG = np.random.default_rng(0)


LEVELS = (
    L.Categorical,
    L.DiscretizedLogistic,
    L.DiscretizedLogisticMixture,
    L.Poisson,
    L.NegativeBinomial,
)


def _data(lik, shape, batch=3):
    if isinstance(lik, LEVELS):  # integer levels (counts included)
        return RNG.integers(0, 256, (batch, *shape)).astype(np.float32)
    if isinstance(lik, L.Bernoulli):
        return (RNG.random((batch, *shape)) < 0.3).astype(np.float32)
    return RNG.random((batch, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", L.names())
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_decoder_heads_match_the_likelihood(name, shape, arch):
    lik = L.get(name)
    kw = {"hidden_sizes": (16,)} if arch == "mlp" else {}
    if isinstance(lik, LEVELS):  # levels 0..255: the encoder sees them / 255, as in
        kw["input_scale"] = (
            1 / 255
        )  # experiments/configs/categorical.py (raw, exp(log_var) overflows)
    model = N.PRESETS[arch](data_shape=shape, likelihood=lik, latent_dim=4, **kw)
    x = _data(lik, shape)
    params = N.init(model, jax.random.key(0), x)
    encode, decode = N.bind(model, params)
    q = encode(x)
    assert set(q) == {"mean", "log_var"} and q["mean"].shape == (3, 4)
    out = decode(q["mean"])
    assert {k: v.shape for k, v in out.items()} == {
        k: (3, *s) for k, s in lik.param_shapes(shape).items()
    }
    t = vaejax.elbo(jax.random.key(1), x, encode=encode, decode=decode, likelihood=lik)
    assert np.all(np.isfinite(t.elbo))


@pytest.mark.parametrize("parameterization", ["log_var", "log_sigma", "softplus"])
def test_encoder_heads_are_plain_dense(parameterization):
    post = DiagonalGaussian(parameterization)
    enc = N.MLPEncoder((8,), latent_dim=2, posterior=post)
    x = jnp.asarray(RNG.normal(size=(50, 5)), jnp.float32)
    params = enc.init(jax.random.key(0), x)["params"]
    assert set(params) == {"hidden_0", *post.param_names}
    for name in post.param_names:
        assert set(params[name]) == {"kernel", "bias"}  # a Dense layer, nothing else
    out = enc.apply({"params": params}, x)
    h = jnp.tanh(x @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"][None])
    for name in post.param_names:
        head = params[name]
        np.testing.assert_allclose(out[name], h @ head["kernel"] + head["bias"][None], rtol=1e-5)
        assert float(out[name].min()) < 0 < float(out[name].max())  # no activation


def _layer_sizes(params):
    flat = flax.traverse_util.flatten_dict(params)
    return {"/".join(k[:-1]): v.shape for k, v in flat.items() if k[-1] == "kernel"}


def test_presets_have_the_published_layer_sizes():
    lik = L.Bernoulli()
    x = jnp.zeros((1, 28, 28, 1))
    burda = _layer_sizes(
        N.init(N.burda2015(data_shape=(28, 28, 1), likelihood=lik), jax.random.key(0), x)
    )
    assert burda == {
        "encoder/hidden_0": (784, 200),
        "encoder/hidden_1": (200, 200),
        "encoder/mean": (200, 50),
        "encoder/log_var": (200, 50),
        "decoder/hidden_0": (50, 200),
        "decoder/hidden_1": (200, 200),
        "decoder/logits": (200, 784),
    }
    kingma = _layer_sizes(
        N.init(
            N.kingma2013(data_shape=(28, 28, 1), likelihood=lik, latent_dim=3), jax.random.key(0), x
        )
    )
    assert kingma["encoder/hidden_0"] == (784, 500) and kingma["decoder/logits"] == (500, 784)


def test_vae_call_returns_a_structure():
    model = N.burda2015(data_shape=(4, 4, 1), likelihood=L.Bernoulli(), latent_dim=2)
    x = jnp.zeros((3, 4, 4, 1))
    params = N.init(model, jax.random.key(0), x)
    out = model.apply({"params": params}, x, jax.random.key(1))
    assert isinstance(out, N.VAEOutput)
    assert out.z.shape == (3, 2) and out.likelihood_params["logits"].shape == (3, 4, 4, 1)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_output_bias_sets_the_initial_mean(arch):
    lik = L.Bernoulli()
    x = (RNG.random((200, 28, 28, 1)) < np.linspace(0.05, 0.95, 28)[None, :, None, None]).astype(
        np.float32
    )
    kw = {"hidden_sizes": (16,)} if arch == "mlp" else {}
    model = N.PRESETS[arch](data_shape=(28, 28, 1), likelihood=lik, latent_dim=2, **kw)
    params = N.set_output_bias(N.init(model, jax.random.key(0), x), lik.output_bias(x))
    bias = params["decoder"]["logits"]["bias"]
    if arch == "mlp":
        np.testing.assert_allclose(bias, lik.output_bias(x)["logits"].reshape(-1), rtol=1e-6)
    else:
        np.testing.assert_allclose(bias, lik.output_bias(x)["logits"].mean(), rtol=1e-5)


def test_pixel_head_is_a_per_pixel_dense_shared_by_all_pixels():
    lik = L.Categorical(5)
    shape = (3, 2, 1)
    dec = N.MLPDecoder((6,), shape, lik, activation="relu", pixel_features=4)
    z = jnp.asarray(RNG.normal(size=(7, 2)), jnp.float32)
    params = dec.init(jax.random.key(0), z)["params"]
    head = params["logits"]
    assert head["features"]["kernel"].shape == (6, 6 * 4) and head["bias"].shape == (6 * 5,)
    assert set(head["shared"]) == {"kernel"} and head["shared"]["kernel"].shape == (4, 5)
    head = {**head, "bias": jnp.asarray(RNG.normal(size=30), jnp.float32)}
    params = {**params, "logits": head}
    p = jax.tree.map(np.asarray, params)
    h = np.maximum(np.asarray(z) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"], 0)
    f = np.maximum(h @ p["logits"]["features"]["kernel"] + p["logits"]["features"]["bias"], 0)
    f = f.reshape(7, *shape, 4)
    want = f @ p["logits"]["shared"]["kernel"] + p["logits"]["bias"].reshape(*shape, 5)
    got = dec.apply({"params": params}, z)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    x = RNG.integers(0, 5, (40, *shape)).astype(np.float32)
    set_bias = N.set_output_bias({"decoder": params}, lik.output_bias(x))["decoder"]
    np.testing.assert_allclose(
        set_bias["logits"]["bias"], lik.output_bias(x)["logits"].reshape(-1), rtol=1e-6
    )
    # Params without a class axis keep their plain heads.
    plain = N.MLPDecoder((6,), shape, L.Bernoulli(), pixel_features=4).init(jax.random.key(0), z)
    assert set(plain["params"]["logits"]) == {"kernel", "bias"}


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_shared_variance_is_a_decoder_scalar_that_learns(arch):
    lik = L.LearnedGaussian(shared_variance=True)
    kw = {"hidden_sizes": (16,)} if arch == "mlp" else {}
    model = N.PRESETS[arch](data_shape=(28, 28, 1), likelihood=lik, latent_dim=2, **kw)
    x = jnp.asarray(RNG.normal(size=(5, 28, 28, 1)), jnp.float32)
    params = N.init(model, jax.random.key(0), x)
    assert params["decoder"]["log_var"].shape == ()  # a param, not a head
    assert "log_var" not in {k for k, v in params["decoder"].items() if isinstance(v, dict)}
    encode, decode = N.bind(model, params)
    out = decode(encode(x)["mean"])
    assert out["log_var"].shape == (5,) and out["mean"].shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(out["log_var"], 0.0)

    def loss(p):
        enc, dec = N.bind(model, p)
        return -vaejax.elbo(
            jax.random.key(1), x, encode=enc, decode=dec, likelihood=lik
        ).elbo.mean()

    grad = jax.grad(loss)(params)["decoder"]["log_var"]
    # d(-log p)/d log_var = 0.5 sum_d (1 - r_d^2 / var) per example: nonzero for these residuals.
    assert grad.shape == () and np.isfinite(grad) and abs(float(grad)) > 1e-3

    params = N.set_output_bias(params, lik.output_bias(np.asarray(x)))
    np.testing.assert_allclose(
        params["decoder"]["log_var"], lik.output_bias(np.asarray(x))["log_var"], rtol=1e-6
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown activation 'sigmoid'.*tanh"):
        model = N.mlp_vae(
            data_shape=(4,),
            likelihood=L.Bernoulli(),
            latent_dim=2,
            hidden_sizes=(3,),
            activation="sigmoid",
        )
        N.init(model, jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"divisible by 4.*\(30, 30, 1\)"):
        model = N.conv_vae(data_shape=(30, 30, 1), likelihood=L.Bernoulli(), latent_dim=2)
        N.init(model, jax.random.key(0), jnp.zeros((1, 30, 30, 1)))
