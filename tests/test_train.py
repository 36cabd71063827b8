"""The train step: one update, chunked equals step-by-step, objectives, schedules, devices."""

import functools
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import likelihoods, networks, train

RNG = np.random.default_rng(0)
X = (RNG.random((64, 6, 6, 1)) < 0.4).astype(np.float32)


def _setup(lr=1e-2):
    lik = likelihoods.Bernoulli()
    model = networks.mlp_vae(data_shape=(6, 6, 1), likelihood=lik, latent_dim=3, hidden_sizes=(8,))
    state = train.create_train_state(
        jax.random.key(0), model, X, optax.adam(lr), output_bias=lik.output_bias(X)
    )
    return model, state


class OneStepTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_one_step_is_an_adam_step_on_the_loss(self):
        """Jitted or not: step 1, finite parameters moved by Adam's first update, the bound's
        metrics."""
        lr = 1e-2
        model, state = _setup(lr)
        before = jax.tree.map(np.asarray, state.params)
        step = self.variant(
            functools.partial(train.train_step, model=model, objective=train.Objective())
        )
        new, metrics = step(state, jnp.asarray(X[:8]), jax.random.key(1))
        assert int(new.step) == 1
        chex.assert_trees_all_equal_shapes_and_dtypes(new.params, before)
        chex.assert_tree_all_finite(new.params)
        # Adam's first update moves each parameter by lr * |g| / (|g| + eps): lr, or 0 where the
        # gradient is 0 (input weights of pixels that are 0 throughout the batch).
        for delta in jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b), new.params, before)):
            assert np.all(np.isclose(delta, lr, rtol=1e-3) | (delta == 0)), delta
            assert np.mean(delta > 0) > 0.9
        assert set(metrics) >= {"loss", "elbo", "log_likelihood", "kl", "grad_norm"}
        chex.assert_shape([metrics["loss"], metrics["elbo"], metrics["grad_norm"]], ())
        np.testing.assert_allclose(
            metrics["elbo"], metrics["log_likelihood"] - metrics["kl"], rtol=1e-6
        )
        np.testing.assert_allclose(metrics["loss"], -metrics["elbo"], rtol=1e-6)  # beta = 1
        assert float(metrics["grad_norm"]) > 0


def test_moving_average_of_params():
    """ema_{t+1} = d ema_t + (1 - d) params_{t+1}, from ema_0 = params_0; evaluation uses it."""
    model, plain = _setup()
    assert plain.ema_params is None and plain.eval_params is plain.params
    lik = likelihoods.Bernoulli()
    state = train.create_train_state(
        jax.random.key(0), model, X, optax.adam(1e-2), output_bias=lik.output_bias(X), ema_decay=0.9
    )
    step = jax.jit(
        lambda s, k: train.train_step(
            s, jnp.asarray(X[:8]), k, model=model, objective=train.Objective()
        )
    )
    history = [state.params]
    for i in range(2):
        state, _ = step(state, jax.random.key(i))
        history.append(state.params)
    expected = jax.tree.map(lambda p0, p1, p2: 0.81 * p0 + 0.09 * p1 + 0.1 * p2, *history)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        state.ema_params,
        expected,
    )
    assert state.eval_params is state.ema_params
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"ema_decay must be in \\[0, 1\\).*got {bad}"):
            train.create_train_state(jax.random.key(0), model, X, optax.adam(1e-2), ema_decay=bad)


@pytest.mark.parametrize(
    "objective",
    [
        train.Objective(),
        train.Objective(name="iwae", num_samples=4),
        train.Objective(beta=0.5, warmup_steps=10, free_bits=0.1, num_samples=2),
    ],
)
def test_chunk_equals_steps_one_by_one(objective):
    """The scanned, sharded, donated chunk is the same computation as the plain step."""
    model, state = _setup()
    mesh = train.data_mesh(jax.devices()[:1])
    chunk = train.make_train_chunk(
        model=model, objective=objective, mesh=mesh, data_noise="binarize"
    )
    key = jax.random.key(7)
    idx = np.arange(32, dtype=np.int32).reshape(4, 8)
    s = state
    losses = []
    for i in range(4):
        s, m = train.train_step(
            s,
            jnp.asarray(X[idx[i]]),
            jax.random.fold_in(key, i),
            model=model,
            objective=objective,
            data_noise="binarize",
        )
        losses.append(m["loss"])
    fused, metrics = chunk(jax.tree.map(jnp.copy, state), jnp.asarray(X), jnp.asarray(idx), key)
    np.testing.assert_allclose(metrics["loss"], np.array(losses), rtol=2e-5)
    for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(s.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(fused.step) == 4


def test_conv_chunk_equals_steps_one_by_one():
    """On CPU a model with convolutions runs its chunk one step per dispatch (XLA:CPU is slow on
    convolutions inside loops); the result is still the plain steps'."""
    x = (RNG.random((16, 8, 8, 1)) < 0.4).astype(np.float32)
    lik = likelihoods.Bernoulli()
    model = networks.conv_vae(data_shape=(8, 8, 1), likelihood=lik, latent_dim=2)
    # SGD: Adam's division by sqrt(v) would amplify rounding in near-zero gradients.
    state = train.create_train_state(jax.random.key(0), model, x, optax.sgd(1e-2))
    mesh = train.data_mesh(jax.devices()[:1])
    objective = train.Objective()
    chunk = train.make_train_chunk(model=model, objective=objective, mesh=mesh)
    key, idx = jax.random.key(3), np.arange(12, dtype=np.int32).reshape(3, 4)
    s, losses = state, []
    for i in range(3):
        s, m = train.train_step(
            s, jnp.asarray(x[idx[i]]), jax.random.fold_in(key, i), model=model, objective=objective
        )
        losses.append(m["loss"])
    fused, metrics = chunk(jax.tree.map(jnp.copy, state), jnp.asarray(x), jnp.asarray(idx), key)
    assert metrics["loss"].shape == (3,) and int(fused.step) == 3
    np.testing.assert_allclose(metrics["loss"], np.array(losses), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(s.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_warmup_and_free_bits():
    obj = train.Objective(beta=2.0, warmup_steps=4)
    np.testing.assert_allclose(
        [obj.beta_at(jnp.asarray(s)) for s in range(6)], [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    )
    model, state = _setup()
    batch = jnp.asarray(X[:8])
    loss = lambda o: train.loss_fn(
        state.params, batch, jax.random.key(0), 0, model=model, objective=o
    )
    plain, m = loss(train.Objective())
    floored, _ = loss(train.Objective(free_bits=100.0))
    # With a floor above every dimension's KL, the penalty is latent_dim * floor.
    np.testing.assert_allclose(floored, -m["log_likelihood"] + 3 * 100.0, rtol=1e-5)
    assert float(floored) > float(plain)


def test_burda_schedule():
    sched = train.learning_rate_schedule(
        "burda", learning_rate=1e-3, total_steps=0, steps_per_epoch=10
    )
    # Stage i lasts 3^i epochs at 1e-3 * 10^(-i/7): stage boundaries at 1, 4, 13, 40 ... epochs.
    for step, stage in [(0, 0), (9, 0), (10, 1), (39, 1), (40, 2), (129, 2), (130, 3)]:
        np.testing.assert_allclose(sched(step), 1e-3 * 10 ** (-stage / 7), rtol=1e-5)
    np.testing.assert_allclose(sched(3280 * 10 + 5), 1e-4, rtol=1e-5)


def test_bad_config_values():
    with pytest.raises(ValueError, match="Unknown objective 'vlb'.*elbo.*iwae"):
        train.Objective(name="vlb")
    with pytest.raises(ValueError, match="beta = -1 is out of range"):
        train.Objective(beta=-1)
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'step'"):
        train.learning_rate_schedule("step", learning_rate=1, total_steps=1, steps_per_epoch=1)


@pytest.mark.parametrize(
    "setting",
    [{"beta": 0.5}, {"warmup_steps": 10}, {"free_bits": 0.1}, {"analytic_kl": False}],
    ids=lambda s: next(iter(s)),
)
def test_iwae_refuses_the_kl_settings_it_would_ignore(setting):
    ((name, value),) = setting.items()
    with pytest.raises(ValueError, match=f"no separate KL term.*'{name}': {value}"):
        train.Objective(name="iwae", num_samples=5, **setting)


def test_free_bits_refuse_a_monte_carlo_kl():
    with pytest.raises(ValueError, match="free_bits=0.5.*analytic_kl=False"):
        train.Objective(free_bits=0.5, analytic_kl=False)


def test_beta_weights_the_loss_but_the_logged_elbo_is_the_bound():
    model, state = _setup()
    loss = lambda o: train.loss_fn(
        state.params, jnp.asarray(X[:8]), jax.random.key(0), 0, model=model, objective=o
    )
    weighted, m = loss(train.Objective(beta=3.0))
    np.testing.assert_allclose(weighted, -m["log_likelihood"] + 3.0 * m["kl"], rtol=1e-6)
    np.testing.assert_allclose(m["elbo"], m["log_likelihood"] - m["kl"], rtol=1e-6)


def test_batch_size_must_split_evenly_over_the_devices():
    one = train.data_mesh(jax.devices()[:1])
    assert one.size == 1
    for batch_size in (1, 7):
        assert train.check_batch_size(batch_size, one) is None  # any batch fits one device
    four = type("Mesh", (), {"size": 4})()
    for batch_size in (4, 8, 200):
        assert train.check_batch_size(batch_size, four) is None
    for batch_size in (2, 6, 201):
        with pytest.raises(
            ValueError, match=f"batch_size {batch_size} is not divisible by the 4 devices.*4"
        ):
            train.check_batch_size(batch_size, four)


_DEVICES_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    from vaejax import likelihoods, networks, train
    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    x = rng.random((256, 6, 6, 1)).astype(np.float32)
    lik = likelihoods.Bernoulli()
    model = networks.mlp_vae(data_shape=(6, 6, 1), likelihood=lik, latent_dim=3,
                             hidden_sizes=(16,))
    obj = train.Objective(num_samples=2)
    idx = np.stack([rng.permutation(256)[:32] for _ in range(20)]).astype(np.int32)
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.data_mesh(devices)
        state = train.create_train_state(jax.random.key(0), model, x, optax.adam(3e-3))
        chunk = train.make_train_chunk(model=model, objective=obj, mesh=mesh,
                                       data_noise="binarize")
        state, m = chunk(state, jnp.asarray(x), jnp.asarray(idx), jax.random.key(1))
        out.append(np.asarray(m["loss"]))
        # A population of two members, stacked, on the same mesh.
        tx = optax.adam(3e-3)
        states = [train.create_train_state(jax.random.key(s), model, x, tx) for s in (0, 1)]
        states = jax.tree.map(lambda *a: jnp.stack(a), *states)
        pchunk = train.make_train_chunk(model=model, objective=obj, mesh=mesh,
                                        data_noise="binarize", stacked=True)
        keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
        states, pm = pchunk(states, jnp.asarray(x), jnp.asarray(np.stack([idx, idx[::-1]])),
                            keys, jnp.ones(2))
        out.append(np.asarray(pm["loss"]))
    np.testing.assert_allclose(out[0], out[2], rtol=1e-4)  # a lone run, 1 and 4 devices
    np.testing.assert_allclose(out[1], out[3], rtol=1e-4)  # a population, 1 and 4 devices
    np.testing.assert_allclose(out[1][0], out[0], rtol=1e-4)  # member 0 is the lone run
    print("max rel diff", np.max(np.abs(out[0] - out[2]) / np.abs(out[0])))
    """
)


def test_one_device_equals_four():
    """Same global batch, same loss trajectory on 1 and 4 (forced host) devices, for a lone
    state and for a stacked population."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    res = subprocess.run(
        [sys.executable, "-c", _DEVICES_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "max rel diff" in res.stdout


def test_a_model_too_large_for_the_device_is_refused_before_allocating():
    """Was: latent_dim=2e8 gave a raw RESOURCE_EXHAUSTED from the allocator."""
    huge = networks.mlp_vae(
        data_shape=(4,), likelihood=likelihoods.Bernoulli(), latent_dim=200_000_000,
        hidden_sizes=(16,),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"GiB of parameters.*more than this device's"):
        train.create_train_state(jax.random.key(0), huge, np.zeros((2, 4)), optax.adam(1e-3))
