"""The unrolled threefry: bit-for-bit `jax.random`'s draws, for every sampler the library uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import prng

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


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_fast_key_draws_what_the_key_draws(name):
    sample = SAMPLERS[name]
    key = jax.random.key(3)
    expected = np.asarray(sample(key))
    np.testing.assert_array_equal(sample(prng.fast(key)), expected)
    np.testing.assert_array_equal(jax.jit(lambda k: sample(prng.fast(k)))(key), expected)


def test_legacy_keys_vmap_and_other_implementations():
    raw = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(
        jax.random.normal(prng.fast(raw), (10,)), jax.random.normal(raw, (10,))
    )
    keys = jax.random.split(jax.random.key(1), 4)
    draw = lambda k: jax.random.normal(k, (3,))
    np.testing.assert_array_equal(
        jax.vmap(lambda k: draw(prng.fast(k)))(keys), jax.vmap(draw)(keys)
    )
    rbg = jax.random.key(0, impl="rbg")
    assert prng.fast(rbg) is rbg  # not threefry: left alone


def test_threefry_known_answer():
    """Salmon et al.'s Threefry-2x32 (20 rounds) test vector, as in JAX's own tests."""
    key = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    x0, x1 = prng.threefry2x32(key, jnp.uint32(0x243F6A88), jnp.uint32(0x85A308D3))
    assert (int(x0), int(x1)) == (0xC4923A9C, 0x483DF7A0)
