"""InverseAutoregressiveFlow: the exact density against jacfwd in float64, its inverse, its
masks, the zero-weight limits, and its place in the encoder, the objectives and the configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from experiments.configs import test as test_config
from vaejax import experiment, likelihoods, networks, objectives, posteriors, priors
from vaejax.posteriors import DiagonalGaussian, InverseAutoregressiveFlow, made_masks

B, D = 4, 3
X = (np.random.default_rng(0).random((B, 6)) > 0.5).astype(np.float32)


def _flow_and_params(scale=0.4, *, zero_masked=False, steps=2, dtype=jnp.float32):
    """An IAF in a tiny MLP encoder, every weight random (else the output layers start at 0)."""
    flow = InverseAutoregressiveFlow(num_steps=steps, hidden_size=8, context_dim=5)
    model = networks.mlp_vae(
        data_shape=(6,), likelihood=likelihoods.Bernoulli(), latent_dim=D, hidden_sizes=(7,),
        posterior=flow,
    )  # fmt: skip
    params = networks.init(model, jax.random.key(0), X[:1])
    leaves, tree = jax.tree.flatten_with_path(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    new = []
    for (path, leaf), key in zip(leaves, keys, strict=True):
        masked = any(k in jax.tree_util.keystr(path) for k in ("w_in", "w_shift", "w_log_scale"))
        value = scale * jax.random.normal(key, leaf.shape, dtype)
        new.append(jnp.zeros_like(value) if zero_masked and masked else value)
    params = jax.tree.unflatten(tree, new)
    encode, decode = networks.bind(model, params)
    return flow, model, encode(X.astype(dtype)), (encode, decode)


def test_made_masks_are_strictly_autoregressive():
    for reverse in (False, True):
        m_in, m_out = made_masks(5, 12, reverse)
        reach = (m_in @ m_out) > 0  # [input, output]: some path through the hidden layer
        order = np.arange(5)[::-1] if reverse else np.arange(5)
        rank = np.argsort(order)
        for i in range(5):
            for o in range(5):
                assert not reach[i, o] or rank[i] < rank[o], (reverse, i, o)
        assert reach.sum() == 10  # every earlier input reaches every later output


def test_density_equals_change_of_variables_by_jacfwd_in_float64():
    with jax.enable_x64(True):
        flow, _, q, _ = _flow_and_params(dtype=jnp.float64)
        eps = jax.random.normal(jax.random.key(3), (B, D), jnp.float64)
        _, log_q = flow.sample_and_log_prob(jax.random.key(3), q, 1)
        for b in range(B):
            qb = {k: (v if k == "flow" else v[b : b + 1]) for k, v in q.items()}

            def transform(e, qb=qb):  # eps -> z_T, for one example
                z0 = qb["mean"][0] + jnp.exp(0.5 * qb["log_var"][0]) * e
                return flow._forward(qb, z0[None, None])[0][0, 0]

            jac = jax.jacfwd(transform)(eps[b])
            assert np.abs(np.tril(np.asarray(jac), -1)).max() > 1e-3  # a real flow, not diagonal
            expected = norm.logpdf(eps[b]).sum() - jnp.linalg.slogdet(jac)[1]
            z = transform(eps[b])
            np.testing.assert_allclose(flow.log_prob(qb, z[None])[0], expected, rtol=1e-12)
        # sample_and_log_prob's density is log_prob's at its own samples
        z, log_q = flow.sample_and_log_prob(jax.random.key(4), q, 3)
        np.testing.assert_allclose(flow.log_prob(q, z), log_q, rtol=1e-10)


def test_with_zero_weights_it_is_its_base_gaussian():
    flow, _, q, _ = _flow_and_params(scale=0.0)
    base = DiagonalGaussian()
    z, log_q = flow.sample_and_log_prob(jax.random.key(5), q, 4)
    z_base, log_q_base = base.sample_and_log_prob(jax.random.key(5), q, 4)
    np.testing.assert_array_equal(z, z_base)
    np.testing.assert_array_equal(log_q, log_q_base)


def test_with_zero_autoregressive_weights_it_is_a_diagonal_gaussian_by_hand():
    # Then each step's shift m and log-scale s come from the context alone: z_T is the base
    # Gaussian moved to m2 + e^s2 (m1 + e^s1 mean) with std e^(s1 + s2) std.
    with jax.enable_x64(True):
        flow, _, q, _ = _flow_and_params(zero_masked=True, dtype=jnp.float64)
        mean, log_std = q["mean"], 0.5 * q["log_var"]
        for t, w in enumerate(q["flow"]):
            m = w["b_shift"][None]  # the hidden layer meets only zero output weights
            s = flow.max_log_scale * jnp.tanh(w["b_log_scale"][None] / flow.max_log_scale)
            mean, log_std = m + jnp.exp(s) * mean, log_std + s
            assert np.abs(s).max() > 0.01, t
        hand = {"mean": mean, "log_var": 2 * log_std}
        z, log_q = flow.sample_and_log_prob(jax.random.key(6), q, 5)
        np.testing.assert_allclose(log_q, DiagonalGaussian().log_prob(hand, z), rtol=1e-12)
        assert z.shape == (5, B, D)


def test_the_encoder_owns_its_weights_and_the_elbo_trains_them():
    flow, model, q, _ = _flow_and_params()
    params = networks.init(model, jax.random.key(0), X[:1])
    assert set(params["encoder"]["flow"]) == {
        f"step_{t}_{k}"
        for t in range(2)
        for k in (
            "w_in",
            "w_context",
            "b_hidden",
            "w_shift",
            "b_shift",
            "w_log_scale",
            "b_log_scale",
        )
    }
    assert q["context"].shape == (B, 5) and q["mean"].shape == (B, D)

    def loss(p):
        enc, dec = networks.bind(model, p)
        terms = objectives.elbo(
            jax.random.key(0), X, encode=enc, decode=dec, likelihood=model.likelihood,
            posterior=flow, num_samples=2,
        )  # fmt: skip
        return -terms.elbo.mean()

    grads = jax.grad(loss)(params)["encoder"]["flow"]
    # The output layers start at zero (the identity flow); their gradient is what moves them.
    assert np.abs(grads["step_1_w_shift"]).max() > 0
    assert np.abs(grads["step_0_w_log_scale"]).max() > 0


def test_its_kl_is_monte_carlo_and_an_analytic_kl_or_free_bits_is_refused():
    flow, model, q, (encode, decode) = _flow_and_params()
    assert posteriors.analytic_kl_per_dim(flow, q, priors.StandardNormal(D)) is None
    with pytest.raises(ValueError, match="No closed-form KL .*InverseAutoregressiveFlow"):
        objectives.elbo(
            jax.random.key(0), X, encode=encode, decode=decode, likelihood=model.likelihood,
            posterior=flow, analytic_kl=True,
        )  # fmt: skip
    for estimator in ("stl", "dreg"):  # log q at given z: through the flow's inverse
        terms = objectives.iwae_bound(
            jax.random.key(0), X, encode=encode, decode=decode, likelihood=model.likelihood,
            posterior=flow, num_samples=3, gradient_estimator=estimator,
        )  # fmt: skip
        assert np.all(np.isfinite(terms))


def test_bad_settings_and_names_are_refused():
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1; got 0"):
        InverseAutoregressiveFlow(num_steps=0)
    with pytest.raises(ValueError, match=r"Unknown posterior 'flow'; valid: \['log_var'"):
        posteriors.make("flow")
    with pytest.raises(ValueError, match="takes no settings"):
        posteriors.make("log_var", num_steps=2)
    with pytest.raises(ValueError, match="VampPrior .* InverseAutoregressiveFlow"):
        priors.make(
            "vampprior", latent_dim=D, data_shape=(6,), posterior=InverseAutoregressiveFlow(),
            num_components=3,
        )  # fmt: skip
    flow = InverseAutoregressiveFlow()
    with pytest.raises(ValueError, match=r"missing \['context', 'flow'\]"):
        flow.sample_and_log_prob(jax.random.key(0), {"mean": X, "log_var": X}, 1)


def test_an_iaf_config_trains_end_to_end(tmp_path):
    config = test_config.get_config()
    config.data.name = "synthetic"
    config.model.posterior = "iaf"
    config.model.posterior_kwargs = {"num_steps": 2, "hidden_size": 16, "context_dim": 8}
    config.train.num_epochs = 1
    config.eval.num_test = 100
    state, results = experiment.train_and_evaluate(config, str(tmp_path))
    assert "flow" in state.params["encoder"]
    assert np.isfinite(results["test"]["elbo"]) and results["test"]["elbo"] < 0
