"""Hierarchical VAEs through the same objectives: a closed-form two-layer model, per-layer KL,
the one-layer special case bit for bit, the ladder's merge, bad input and the training loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vaejax
from experiments.configs import test as test_config
from vaejax import checks, experiment, figures, hierarchical, networks, population, priors
from vaejax import config as config_lib
from vaejax import likelihoods as L
from vaejax.writers import read_metrics

RNG = np.random.default_rng(1)

# ---- z2 ~ N(0, 1), z1 | z2 ~ N(A z2 + a, s1^2 I_2), x | z1 ~ N(W z1 + b, s^2 I_3): linear and
# Gaussian, so x ~ N(W a + b, W (A A^T + s1^2 I) W^T + s^2 I). The proposal is q(z1 | x) = the
# exact p(z1 | x)'s mean with its diagonal variance inflated, q(z2 | z1) = the exact p(z2 | z1).
A = RNG.normal(size=(2, 1))
A_BIAS = RNG.normal(size=2)
S1, S = 0.8, 0.7
W = RNG.normal(size=(3, 2))
B = RNG.normal(size=3)
X = (RNG.normal(size=(6, 3)) * 2).astype(np.float32)
C1 = A @ A.T + S1**2 * np.eye(2)
POST1 = np.linalg.inv(np.linalg.inv(C1) + W.T @ W / S**2)  # cov of p(z1 | x)
GAIN1 = POST1 @ W.T / S**2  # mean = GAIN1 (x - b) + POST1 C1^-1 a
POST2 = 1.0 / (1.0 + (A.T @ A).item() / S1**2)  # var of p(z2 | z1)
GAIN2 = POST2 * A.T / S1**2  # mean = GAIN2 (z1 - a)


def _dense(kernel, bias):
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _gaussian_head(kernel, bias, log_var):
    zeros = np.zeros_like(kernel)
    return {"mean": _dense(kernel, bias), "log_var": _dense(zeros, log_var)}


def linear_gaussian_hierarchy():
    model = hierarchical.stacked(
        data_shape=(3,), likelihood=L.Gaussian(S), latent_sizes=(2, 1), hidden_sizes=((), ())
    )
    mean1_bias = -GAIN1 @ B + POST1 @ np.linalg.solve(C1, A_BIAS)
    params = {
        "up_0": _gaussian_head(GAIN1.T, mean1_bias, np.log(1.5 * np.diag(POST1))),
        "up_1": _gaussian_head(GAIN2.T, -GAIN2 @ A_BIAS, np.log([POST2])),
        "down_0": _gaussian_head(A.T, A_BIAS, np.log([S1**2, S1**2])),
        "decoder": {"mean": _dense(W.T, B)},
    }
    init = networks.init(model, jax.random.key(0), jnp.asarray(X))
    assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, params)
    exact = stats.multivariate_normal(W @ A_BIAS + B, W @ C1 @ W.T + S**2 * np.eye(3)).logpdf(X)
    return networks.bind(model, params), exact


def test_two_layer_linear_gaussian_matches_the_exact_marginal():
    bound, exact = linear_gaussian_hierarchy()
    key = jax.random.key(3)
    est = vaejax.estimate_log_likelihood(key, X, model=bound, num_samples=5000, chunk_size=1000)
    np.testing.assert_allclose(est, exact, atol=0.02)
    keys = jax.random.split(key, 200)
    mean_over_keys = lambda f: float(jax.vmap(f)(keys).mean())
    bounds = [
        mean_over_keys(lambda k, s=s: vaejax.iwae_bound(k, X, model=bound, num_samples=s))
        for s in (1, 10, 100)
    ]
    elbo = mean_over_keys(lambda k: vaejax.elbo(k, X, model=bound).elbo)
    assert elbo < bounds[1] < bounds[2] < exact.mean() + 0.01
    assert abs(bounds[0] - elbo) < 0.05  # IWAE-1 is the ELBO up to Monte Carlo noise
    assert exact.mean() - elbo > 0.05  # the proposal is not exact: the test can fail


def _ladder(latent_sizes=(3, 2), hidden_sizes=((8,), (8,)), **kwargs):
    model = hierarchical.ladder(
        data_shape=(4,),
        likelihood=L.Gaussian(0.5),
        latent_sizes=latent_sizes,
        hidden_sizes=hidden_sizes,
        **kwargs,
    )
    x = jnp.asarray(RNG.normal(size=(5, 4)), jnp.float32)
    params = networks.init(model, jax.random.key(1), x)
    # Away from the initial q = p so that every layer's KL is well above zero.
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), params)
    return model, params, x


def test_per_layer_kl_closed_form_matches_monte_carlo():
    model, params, x = _ladder()
    bound = networks.bind(model, params)
    key = jax.random.key(4)
    analytic = vaejax.elbo(key, x, model=bound, num_samples=20_000)
    mc = vaejax.elbo(key, x, model=bound, num_samples=20_000, analytic_kl=False)
    assert len(analytic.kl_per_layer) == 2 and all(
        d.shape == (5, n) for d, n in zip(analytic.kl_per_dim, (3, 2), strict=True)
    )
    for a, m in zip(analytic.kl_per_layer, mc.kl_per_layer, strict=True):
        assert float(a.min()) > 0.1
        np.testing.assert_allclose(a, m, rtol=0.03, atol=0.02)
    np.testing.assert_allclose(analytic.kl, sum(analytic.kl_per_layer), rtol=1e-6)


def _vae_and_one_layer_twins(kind):
    shape, hidden = (6, 6, 1), (32, 16)
    vae = networks.mlp_vae(
        data_shape=shape, likelihood=L.Bernoulli(), latent_dim=8, hidden_sizes=hidden
    )
    twin = hierarchical.PRESETS[kind](
        data_shape=shape,
        likelihood=L.Bernoulli(),
        latent_sizes=(8,),
        hidden_sizes=(hidden,),
    )
    x = jnp.asarray(RNG.random((7, *shape)) > 0.5, jnp.float32)
    params = networks.init(vae, jax.random.key(0), x)
    params = jax.tree.map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.key(1), a.shape), params
    )
    twin_params = {"up_0": params["encoder"], "decoder": params["decoder"]}
    assert jax.tree.map(np.shape, networks.init(twin, jax.random.key(0), x)) == jax.tree.map(
        np.shape, twin_params
    )
    return (vae, params), (twin, twin_params), x


@pytest.mark.parametrize("kind", ["stacked", "ladder"])
def test_one_layer_through_the_hierarchical_path_gives_the_same_numbers(kind):
    (vae, params), (twin, twin_params), x = _vae_and_one_layer_twins(kind)
    key = jax.random.key(5)
    estimators = ["reparameterized"] + (["stl", "dreg"] if kind == "stacked" else [])
    objectives = {
        "elbo": lambda m, k: vaejax.elbo(k, x, model=m, num_samples=3, analytic_kl=False).elbo,
        "log_px": lambda m, k: vaejax.estimate_log_likelihood(
            k, x, model=m, num_samples=300, chunk_size=128
        ),
    }
    for est in estimators:
        objectives[f"iwae_{est}"] = lambda m, k, e=est: vaejax.iwae_bound(
            k, x, model=m, num_samples=5, gradient_estimator=e
        )
    if kind == "ladder":  # its one layer has the closed-form KL, as the VAE's
        objectives["elbo_analytic"] = lambda m, k: vaejax.elbo(k, x, model=m, num_samples=2).elbo
    for name, f in objectives.items():
        value = lambda m, p, f=f: f(networks.bind(m, p), key).mean()
        # One compiled program per model: the same operations, so the same bits.
        run = jax.jit(jax.value_and_grad(value, argnums=1), static_argnums=0)
        (v_vae, g_vae), (v_twin, g_twin) = run(vae, params), run(twin, twin_params)
        np.testing.assert_array_equal(v_vae, v_twin, err_msg=name)
        for part, twin_part in (("encoder", "up_0"), ("decoder", "decoder")):
            jax.tree.map(
                lambda a, b, n=name: np.testing.assert_array_equal(a, b, err_msg=n),
                g_vae[part],
                g_twin[twin_part],
            )


def test_ladder_merge_is_the_precision_weighted_gaussian():
    m1, m2 = RNG.normal(size=(2, 4, 3))
    lv1, lv2 = RNG.normal(size=(2, 4, 3)) * 2
    merged = hierarchical.precision_weighted(
        {"mean": jnp.asarray(m1), "log_var": jnp.asarray(lv1)},
        {"mean": jnp.asarray(m2), "log_var": jnp.asarray(lv2)},
    )
    precision = np.exp(-lv1) + np.exp(-lv2)
    np.testing.assert_allclose(merged["log_var"], -np.log(precision), rtol=1e-5, atol=1e-6)
    want_mean = (m1 * np.exp(-lv1) + m2 * np.exp(-lv2)) / precision
    np.testing.assert_allclose(merged["mean"], want_mean, rtol=1e-5, atol=1e-6)
    # Extreme precisions neither overflow nor lose the sharper estimate.
    sharp = hierarchical.precision_weighted(
        {"mean": jnp.ones(2), "log_var": jnp.full(2, -200.0)},
        {"mean": jnp.zeros(2), "log_var": jnp.full(2, 200.0)},
    )
    np.testing.assert_allclose(sharp["mean"], 1.0)
    np.testing.assert_allclose(sharp["log_var"], -200.0)


def test_gaussian_kl_per_dim_closed_form():
    q = {"mean": jnp.asarray([0.3, -1.0]), "log_var": jnp.asarray([-0.5, 0.7])}
    p = {"mean": jnp.asarray([1.0, 0.2]), "log_var": jnp.asarray([0.4, -0.3])}
    # log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2, in float64 by hand.
    (mq, lq), (mp, lp) = (
        (np.asarray(d["mean"], np.float64), np.asarray(d["log_var"])) for d in (q, p)
    )
    want = (lp - lq) / 2 + (np.exp(lq) + (mq - mp) ** 2) / (2 * np.exp(lp)) - 0.5
    np.testing.assert_allclose(hierarchical.gaussian_kl_per_dim(q, p), want, rtol=1e-5)


def test_prior_samples_are_drawn_from_the_top_down():
    model, params, _ = _ladder()
    bound = networks.bind(model, params)
    draws = bound.sample_prior(jax.random.key(0), 4000)["mean"]
    # The generative path by hand: z2 ~ N(0, I), z1 ~ p(z1 | z2), mean of p(x | z1).
    k2, k1 = jax.random.split(jax.random.key(0))[::-1]
    z2 = jax.random.normal(k2, (4000, 2))
    p1 = bound.apply("p", 0, z2)
    z1 = hierarchical.GAUSSIAN.sample(k1, p1)
    np.testing.assert_allclose(draws, bound.decode(z1)["mean"], rtol=1e-5, atol=1e-5)


def test_bad_layers_and_mismatched_priors_are_refused():
    data = dict(data_shape=(4,), likelihood=L.Gaussian(1.0))
    with pytest.raises(ValueError, match="latent_sizes is empty"):
        hierarchical.stacked(**data, latent_sizes=(), hidden_sizes=())
    with pytest.raises(ValueError, match="2 layer.*3 stochastic layer"):
        hierarchical.ladder(**data, latent_sizes=(4, 3, 2), hidden_sizes=((8,), (8,)))
    with pytest.raises(ValueError, match=r"integers >= 1; got \[0\]"):
        hierarchical.stacked(**data, latent_sizes=(4, 0), hidden_sizes=((8,), (8,)))
    model, params, x = _ladder()
    bound = networks.bind(model.clone(prior=priors.StandardNormal(5)), params)
    with pytest.raises(ValueError, match="latent_dim=5 but the posterior's samples have 2"):
        vaejax.elbo(jax.random.key(0), x, model=bound)
    for est in ("stl", "dreg"):
        with pytest.raises(ValueError, match="ladder|terms_at"):
            vaejax.iwae_bound(
                jax.random.key(0),
                x,
                model=networks.bind(model, params),
                num_samples=2,
                gradient_estimator=est,
            )
    with pytest.raises(ValueError, match="either model= .* or encode="):
        vaejax.elbo(jax.random.key(0), x, model=bound, encode=lambda x: x)
    with pytest.raises(ValueError, match=r"Missing \['decode'\]"):
        vaejax.elbo(jax.random.key(0), x, encode=lambda x: x, likelihood=L.Gaussian(1.0))


def test_hierarchical_config_errors_name_the_field():
    config = test_config.get_config()
    config_lib.set_preset(
        config.model, "ladder", latent_sizes=(8, 4, 2), layer_hidden_sizes=((16,), (16,))
    )
    with pytest.raises(checks.ConfigError, match="model.latent_sizes.*2 layer.*3 stochastic"):
        config_lib.read(config)
    config.model.layer_hidden_sizes = ((16,), (16,), (16,))
    config.model.posterior = "iaf"
    with pytest.raises(checks.ConfigError, match="diagonal Gaussian layers"):
        config_lib.read(config)


@pytest.mark.parametrize("preset", ["ladder", "burda2015_2layer"])
def test_hierarchical_models_train_through_the_loop(fake_dir, tmp_path, preset):
    config = test_config.get_config()
    config.data.data_dir = fake_dir
    layers = dict(latent_sizes=(4, 2), layer_hidden_sizes=((16,), (8,)))
    config_lib.set_preset(config.model, preset, **(layers if preset == "ladder" else {}))
    config.objective.free_bits = 0.05 if preset == "ladder" else 0.0
    experiment.train_and_evaluate(config, str(tmp_path))
    test = json.loads((tmp_path / "results.json").read_text())["test"]
    sizes = (4, 2) if preset == "ladder" else (100, 50)
    assert len(test["kl_per_layer"]) == 2 and all(np.isfinite(test["kl_per_layer"]))
    assert test["kl"] == pytest.approx(sum(test["kl_per_layer"]), rel=1e-5)
    assert all(0 <= n <= s for n, s in zip(test["active_units_per_layer"], sizes, strict=True))
    assert test["active_units"] == sum(test["active_units_per_layer"])
    assert np.isfinite(test["nll_20"]) and test["elbo"] <= test["iwae_5"] + 1.0
    records = read_metrics(str(tmp_path))
    assert any("train/kl_z2" in r for r in records) and any("valid/kl_z1" in r for r in records)
    assert (tmp_path / "samples.png").exists() and (tmp_path / "reconstructions.png").exists()

    # Back in Python: every layer's codes, top-down samples, the evaluation's ELBO terms.
    trained = vaejax.load(str(tmp_path))
    raw = trained.read_split("test")[0][:10]
    assert trained.latent_sizes == sizes
    assert [c.shape for c in trained.codes(raw)] == [(10, s) for s in sizes]
    assert trained.sample(jax.random.key(0), 3).shape == (3, 28, 28, 1)
    assert trained.reconstruct(raw).shape == raw.shape
    assert len(trained.elbo(jax.random.key(0), raw).kl_per_layer) == 2
    assert trained.active_units(raw).shape == (sum(sizes),)
    with pytest.raises(ValueError, match="2 .*Use codes"):
        trained.encode(raw)


def test_a_population_of_ladders_matches_its_lone_member(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    config = test_config.get_config()
    config.update_from_flattened_dict({"data.data_dir": fake_dir, "eval.iwae_samples": 0})
    config_lib.set_preset(
        config.model, "ladder", latent_sizes=(4, 2), layer_hidden_sizes=((16,), (8,))
    )
    members = [{"seed": 0}, {"seed": 1, "objective.beta": 0.5}]
    _, pop = experiment.train_and_evaluate(config, str(tmp_path / "pop"), members=members)
    _, alone = experiment.train_and_evaluate(
        population.member_configs(config, members)[1], str(tmp_path / "alone")
    )
    got = pop["members"][1]["test"]
    for key in ("elbo", "kl", "nll_20"):
        np.testing.assert_allclose(got[key], alone["test"][key], rtol=1e-5)
    np.testing.assert_allclose(got["kl_per_layer"], alone["test"]["kl_per_layer"], rtol=1e-5)
