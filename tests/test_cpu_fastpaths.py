"""The CPU fast paths give the plain path's numbers (bit for bit where they can) and switch off."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import cpu_fastpaths, evaluate, likelihoods, networks, train

SAMPLERS = {
    "bits32": lambda k: jax.random.bits(k, (5, 7)),
    "bits16": lambda k: jax.random.bits(k, (3, 5), jnp.uint16),
    "bits8": lambda k: jax.random.bits(k, (9,), jnp.uint8),
    "uniform": lambda k: jax.random.uniform(k, (4, 9)),
    "normal": lambda k: jax.random.normal(k, (2, 3, 50)),
    "normal_scalar": lambda k: jax.random.normal(k, ()),
    "bernoulli": lambda k: jax.random.bernoulli(k, 0.3, (100,)),
    "categorical": lambda k: jax.random.categorical(k, jnp.zeros((4, 10))),
    "permutation": lambda k: jax.random.permutation(k, 100),
    "split_then_normal": lambda k: jax.random.normal(jax.random.split(k)[1], (10,)),
    "fold_in_then_bits": lambda k: jax.random.bits(jax.random.fold_in(k, 7), (10,)),
}


def test_paths_apply_only_on_cpu_and_switch_off():
    for name in cpu_fastpaths.NAMES:
        assert cpu_fastpaths.applies(name, "cpu")
        assert not cpu_fastpaths.applies(name, "gpu") and not cpu_fastpaths.applies(name, "tpu")
        with cpu_fastpaths.disabled(name):
            assert not cpu_fastpaths.applies(name, "cpu")
        assert cpu_fastpaths.applies(name, "cpu")
    with cpu_fastpaths.disabled():
        assert not any(cpu_fastpaths.applies(name, "cpu") for name in cpu_fastpaths.NAMES)
    with pytest.raises(ValueError, match="unknown CPU fast paths \\['nope'\\]; valid"):
        with cpu_fastpaths.disabled("nope"):
            pass


# ----------------------------------------------------------------------------- threefry


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_fast_key_draws_what_the_key_draws(name):
    sample = SAMPLERS[name]
    key = jax.random.key(3)
    expected = np.asarray(sample(key))
    assert jax.default_backend() != "cpu" or cpu_fastpaths.threefry_key(key) is not key
    np.testing.assert_array_equal(sample(cpu_fastpaths.threefry_key(key)), expected)
    fast = jax.jit(lambda k: sample(cpu_fastpaths.threefry_key(k)))
    np.testing.assert_array_equal(fast(key), expected)


def test_legacy_keys_vmap_and_other_implementations():
    raw = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(
        jax.random.normal(cpu_fastpaths.threefry_key(raw), (10,)), jax.random.normal(raw, (10,))
    )
    keys = jax.random.split(jax.random.key(1), 4)
    draw = lambda k: jax.random.normal(k, (3,))
    np.testing.assert_array_equal(
        jax.vmap(lambda k: draw(cpu_fastpaths.threefry_key(k)))(keys), jax.vmap(draw)(keys)
    )
    rbg = jax.random.key(0, impl="rbg")
    assert cpu_fastpaths.threefry_key(rbg) is rbg  # not threefry: left alone


def test_threefry_switches_off_and_jit_retraces():
    key = jax.random.key(0)
    with cpu_fastpaths.disabled("threefry"):
        assert cpu_fastpaths.threefry_key(key) is key
    bits = jax.jit(lambda k: jax.random.bits(cpu_fastpaths.threefry_key(k), (64,)))
    if jax.default_backend() == "cpu":  # XLA:CPU's threefry is a while loop; the fast one is not
        assert "while" not in bits.lower(key).as_text()
        with cpu_fastpaths.disabled("threefry"):
            assert "while" in bits.lower(key).as_text()
    fast = np.asarray(bits(key))
    with cpu_fastpaths.disabled("threefry"):
        np.testing.assert_array_equal(bits(key), fast)


def test_threefry_known_answer():
    """Salmon et al.'s Threefry-2x32 (20 rounds) test vector, as in JAX's own tests."""
    key = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    x0, x1 = cpu_fastpaths.threefry2x32(key, jnp.uint32(0x243F6A88), jnp.uint32(0x85A308D3))
    assert (int(x0), int(x1)) == (0xC4923A9C, 0x483DF7A0)


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_fusion_gives_the_plain_numbers():
    x = (np.random.default_rng(0).random((20, 6, 6, 1)) < 0.4).astype(np.float32)
    lik = likelihoods.Bernoulli()
    model = networks.burda2015(data_shape=x.shape[1:], likelihood=lik)
    params = networks.init(model, jax.random.key(0), x[:1])
    run = lambda: evaluate.evaluate_test(
        model, params, x, jax.random.key(1), iwae_samples=5, nll_samples=20, nll_chunk_size=10
    )
    fused_apart = run()
    with cpu_fastpaths.disabled("evaluation_fusion"):
        plain = run()
    assert fused_apart.keys() == plain.keys()
    for k, v in plain.items():
        np.testing.assert_allclose(fused_apart[k], v, rtol=1e-6, err_msg=k)


# ----------------------------------------------------------------------------- training chunks


def _only_per_step_dispatch():
    """Other paths off, so the conv model's step keeps XLA's convolutions."""
    return cpu_fastpaths.disabled(*(n for n in cpu_fastpaths.NAMES if n != "per_step_dispatch"))


def _conv_setup():
    x = (np.random.default_rng(1).random((16, 8, 8, 1)) < 0.4).astype(np.float32)
    model = networks.conv_vae(
        data_shape=(8, 8, 1), likelihood=likelihoods.Bernoulli(), latent_dim=2
    )
    # SGD: Adam's division by sqrt(v) would amplify rounding in near-zero gradients.
    state = train.create_train_state(jax.random.key(0), model, x, optax.sgd(1e-2))
    return model, state, x


def _step_jaxpr(model, state, x):
    step = lambda s, b, k: train.train_step(s, b, k, model=model, objective=train.Objective())
    return jax.make_jaxpr(step)(state, jnp.asarray(x[:4]), jax.random.key(0)).jaxpr


@_only_per_step_dispatch()
def test_per_step_dispatch_only_for_convolutions_on_cpu():
    model, state, x = _conv_setup()
    conv = _step_jaxpr(model, state, x)
    assert cpu_fastpaths.has_convolutions(conv)
    assert cpu_fastpaths.prefer_per_step_dispatch(conv, "cpu")
    assert not cpu_fastpaths.prefer_per_step_dispatch(conv, "gpu")
    with cpu_fastpaths.disabled("per_step_dispatch"):
        assert not cpu_fastpaths.prefer_per_step_dispatch(conv, "cpu")
    mlp = networks.mlp_vae(
        data_shape=(8, 8, 1), likelihood=likelihoods.Bernoulli(), latent_dim=2, hidden_sizes=(8,)
    )
    mlp_state = train.create_train_state(jax.random.key(0), mlp, x, optax.sgd(1e-2))
    assert not cpu_fastpaths.prefer_per_step_dispatch(_step_jaxpr(mlp, mlp_state, x), "cpu")


@_only_per_step_dispatch()
def test_per_step_dispatch_gives_the_scanned_numbers():
    model, state, x = _conv_setup()
    mesh = train.data_mesh(jax.devices()[:1])
    key, idx = jax.random.key(3), jnp.arange(12, dtype=np.int32).reshape(3, 4)

    def run():
        chunk = train.make_train_chunk(model=model, objective=train.Objective(), mesh=mesh)
        return chunk(jax.tree.map(jnp.copy, state), jnp.asarray(x), idx, key)

    stepped, metrics = run()
    with cpu_fastpaths.disabled("per_step_dispatch"):
        scanned, scanned_metrics = run()
    assert int(stepped.step) == int(scanned.step) == 3
    np.testing.assert_allclose(metrics["loss"], scanned_metrics["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stepped.params), jax.tree.leaves(scanned.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
