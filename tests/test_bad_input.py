"""Bad input to the public API: each is a ValueError naming the value and the fix, said up front."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import likelihoods as L
from vaejax import objectives, posteriors

D = 4


def encode(x):
    return {"mean": jnp.zeros((x.shape[0], 2)), "log_var": jnp.zeros((x.shape[0], 2))}


def decode_logits(z):
    return {"logits": jnp.zeros((z.shape[0], D))}


def decode_classes(z):
    return {"logits": jnp.zeros((z.shape[0], D, 256))}


def decode_mean(z):
    return {"mean": jnp.zeros((z.shape[0], D))}


KEY = jax.random.key(0)
OBJECTIVES = {
    "elbo": lambda key, x, **kw: objectives.elbo(key, x, encode=encode, **kw).elbo,
    "iwae": lambda key, x, **kw: objectives.iwae_bound(key, x, encode=encode, num_samples=2, **kw),
    "nll": lambda key, x, **kw: objectives.estimate_log_likelihood(
        key, x, encode=encode, num_samples=4, chunk_size=2, **kw
    ),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize(
    "value, likelihood, decode, match",
    [
        (300.0, L.Categorical(), decode_classes, r"integers in \[0, 256\).*300"),  # was NaN
        (-5.0, L.Categorical(), decode_classes, r"integers in \[0, 256\).*-5"),  # was class 251
        (0.7, L.Categorical(), decode_classes, r"integers in \[0, 256\).*0\.7"),  # was class 0
        (255.0, L.ContinuousBernoulli(), decode_logits, r"\[0, 1\].*255"),  # was -2e24
        (0.5, L.Bernoulli(), decode_logits, r"\{0, 1\}.*0\.5"),
        (np.nan, L.Gaussian(), decode_mean, "non-finite"),
    ],
)
def test_eager_objectives_check_concrete_data(objective, value, likelihood, decode, match):
    x = jnp.full((2, D), value)
    with pytest.raises(ValueError, match=match):
        OBJECTIVES[objective](KEY, x, decode=decode, likelihood=likelihood)


def test_jitted_objectives_stay_jittable_and_leave_values_to_the_caller():
    """Under jit the values are tracers: no check, no host copy; the docstring says so."""
    fn = jax.jit(
        lambda x: (
            objectives.elbo(
                KEY, x, encode=encode, decode=decode_logits, likelihood=L.Bernoulli()
            ).elbo
        )
    )
    assert np.isfinite(fn(jnp.ones((2, D)))).all()
    assert "check_data` is the caller's job" in objectives.__doc__


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "key, x, match",
    [
        (0, jnp.ones((2, D)), r"key must be a JAX PRNG key; got int 0.*jax\.random\.key"),
        (KEY, jnp.ones((0, D)), r"empty batch \(shape \(0, 4\)\)"),  # was ZeroDivisionError
        (KEY, jnp.ones((D,)), r"at least 2 axes; got shape \(4,\).*x\[None\]"),  # blamed decoder
        (KEY, jnp.ones((2, D), jnp.complex64), "real numbers.*complex64"),  # was accepted
        (KEY, jnp.ones((2, D), bool), r"boolean.*x\.astype\(np\.float32\)"),  # "real part"
    ],
)
def test_shape_dtype_and_key_errors_also_under_jit(objective, jit, key, x, match):
    fn = OBJECTIVES[objective]
    call = lambda k, x: fn(k, x, decode=decode_mean, likelihood=L.Gaussian())
    with pytest.raises(ValueError, match=match):
        if jit and not isinstance(key, int):
            jax.jit(call)(key, x)
        else:
            call(key, x)


def test_mismatched_mean_and_log_var_shapes():
    bad = lambda x: {"mean": jnp.zeros((2, 2)), "log_var": jnp.zeros((2, 3))}
    with pytest.raises(
        ValueError, match=r"'mean' of shape \(2, 2\) and 'log_var' of shape \(2, 3\)"
    ):
        objectives.elbo(
            KEY, jnp.ones((2, D)), encode=bad, decode=decode_logits, likelihood=L.Bernoulli()
        )


@pytest.mark.parametrize("floor", [-1.0, 0.0, float("inf"), float("nan")])
def test_softplus_floor_must_be_positive(floor):
    with pytest.raises(ValueError, match="softplus_floor must be a positive finite number"):
        posteriors.DiagonalGaussian("softplus", softplus_floor=floor)


def test_estimate_log_likelihood_under_x64():
    """The scan carry takes the log-weights' dtype (was a float32 carry type error)."""
    with jax.enable_x64(True):
        enc = lambda x: {k: jnp.zeros((2, 2), jnp.float64) for k in ("mean", "log_var")}
        dec = lambda z: {"logits": jnp.zeros((z.shape[0], D), jnp.float64)}
        for fn in (lambda f: f, jax.jit):
            est = fn(
                lambda x: objectives.estimate_log_likelihood(
                    KEY,
                    x,
                    encode=enc,
                    decode=dec,
                    likelihood=L.Bernoulli(),
                    num_samples=10,
                    chunk_size=4,
                )
            )(jnp.ones((2, D), jnp.float64))
            assert est.dtype == jnp.float64
            np.testing.assert_allclose(est, D * np.log(0.5))


def test_get_with_an_unknown_argument_names_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"'gaussian' takes no argument 'sigma'; it takes \['scale'\]"
    ):
        L.get("gaussian", sigma=1)  # was a TypeError from the dataclass


def test_categorical_accepts_numpy_integers():
    lik = L.Categorical(num_classes=np.int64(10))  # was refused
    assert lik.num_classes == 10 and type(lik.num_classes) is int


def test_likelihoods_refuse_complex_data():
    for lik in (L.Gaussian(), L.LearnedGaussian(), L.Bernoulli(), L.ContinuousBernoulli()):
        with pytest.raises(ValueError, match="real data.*complex64"):
            lik.check_data(np.ones((2, D), np.complex64))


def test_log_prob_of_an_empty_batch_is_empty():
    """Called directly with B = 0 (was a ZeroDivisionError in the flattening reshape)."""
    assert L.Bernoulli().log_prob({"logits": jnp.zeros((0, D))}, jnp.zeros((0, D))).shape == (0,)
    logits = {"logits": jnp.zeros((0, D, 256))}
    assert L.Categorical().log_prob(logits, jnp.zeros((0, D))).shape == (0,)
