"""Conditional VAEs: a side input y through the model seam, checked against a closed form."""

import jax
import numpy as np
import pytest
from scipy import stats

import vaejax
from vaejax import likelihoods as L
from vaejax import networks, priors
from vaejax.conditioning import Features, Labels

RNG = np.random.default_rng(0)
K, D, E, SCALE = 3, 2, 3, 0.7  # classes, latent size, data size, decoder scale

# A linear-Gaussian conditional model in the MLP preset with no hidden layer:
# z | y ~ N(m_y, diag(s_y^2)) (ConditionalNormal), x | z, y ~ N(W z + b_y, SCALE^2 I), so
# x | y ~ N(W m_y + b_y, W S_y W^T + SCALE^2 I). The encoder's heads, linear in [x, onehot(y)],
# give the exact posterior's mean with its variances inflated by 1.5: close, not exact.
W = RNG.normal(size=(E, D))
B_Y = RNG.normal(size=(K, E))
M_Y = RNG.normal(size=(K, D))
LOG_S_Y = 0.3 * RNG.normal(size=(K, D))


def _model():
    vae = networks.mlp_vae(
        data_shape=(E,), likelihood=L.Gaussian(SCALE), latent_dim=D, hidden_sizes=()
    )
    return vae.clone(conditioning=Labels(K), prior=priors.ConditionalNormal(D))


def _posterior(y):
    """The exact q(z | x, y) = N(gain_y x + offset_y, cov_y) per class."""
    s = np.diag(np.exp(2 * LOG_S_Y[y]))
    cov = np.linalg.inv(np.linalg.inv(s) + W.T @ W / SCALE**2)
    gain = cov @ W.T / SCALE**2
    return gain, M_Y[y] - gain @ (W @ M_Y[y] + B_Y[y]), cov


def _params():
    f32 = lambda a: np.asarray(a, np.float32)
    posts = [_posterior(y) for y in range(K)]
    # mean = x @ gain^T + onehot @ offsets: one gain for every class (W and SCALE are shared).
    mean_kernel = np.concatenate([posts[0][0].T, np.stack([p[1] for p in posts])])
    log_var = np.stack([np.log(1.5 * np.diag(p[2])) for p in posts])
    return {
        "encoder": {
            "mean": {"kernel": f32(mean_kernel), "bias": f32(np.zeros(D))},
            "log_var": {
                "kernel": f32(np.concatenate([np.zeros((E, D)), log_var])),
                "bias": f32(np.zeros(D)),
            },
        },
        "decoder": {"mean": {"kernel": f32(np.concatenate([W.T, B_Y])), "bias": f32(np.zeros(E))}},
        "prior": {
            "mean": {"kernel": f32(M_Y), "bias": f32(np.zeros(D))},
            "log_scale": {"kernel": f32(LOG_S_Y), "bias": f32(np.zeros(D))},
        },
    }


def _exact(x, y):
    out = []
    for xi, yi in zip(x, y, strict=True):
        cov = W @ np.diag(np.exp(2 * LOG_S_Y[yi])) @ W.T + SCALE**2 * np.eye(E)
        out.append(stats.multivariate_normal(W @ M_Y[yi] + B_Y[yi], cov).logpdf(xi))
    return np.array(out)


Y = np.array([0, 1, 2, 0, 1, 2])
X = (RNG.normal(size=(6, E)) * 2).astype(np.float32)


def test_the_params_fit_the_preset_as_its_init_lays_them_out():
    init = networks.init(_model(), jax.random.key(0), X, Y)
    shapes = lambda t: jax.tree.map(np.shape, t)
    assert shapes(init) == shapes(_params())


def test_conditional_log_likelihood_matches_the_closed_form_and_bounds_sit_below_it():
    bound = networks.bind(_model(), _params(), y=Y)
    exact = _exact(X, Y)
    est = vaejax.estimate_log_likelihood(jax.random.key(4), X, model=bound, num_samples=5000)
    np.testing.assert_allclose(est, exact, atol=0.02)
    elbo = vaejax.elbo(jax.random.key(4), X, model=bound, num_samples=2000).elbo
    iwae = vaejax.iwae_bound(jax.random.key(5), X, model=bound, num_samples=50)
    assert np.all(exact - elbo > 0.02)  # the inflated posterior leaves a gap
    assert np.all(iwae < exact + 0.02) and np.all(iwae > elbo - 0.02)
    # The label matters: the same x under another label has another likelihood.
    other = networks.bind(_model(), _params(), y=(Y + 1) % K)
    est_other = vaejax.estimate_log_likelihood(jax.random.key(4), X, model=other, num_samples=5000)
    np.testing.assert_allclose(est_other, _exact(X, (Y + 1) % K), atol=0.02)
    assert np.abs(est_other - est).max() > 0.5


def test_the_closed_form_kl_to_a_conditional_prior_matches_monte_carlo():
    bound = networks.bind(_model(), _params(), y=Y)
    analytic = vaejax.elbo(jax.random.key(1), X, model=bound, num_samples=1).kl
    mc = vaejax.elbo(jax.random.key(1), X, model=bound, num_samples=20000, analytic_kl=False).kl
    np.testing.assert_allclose(analytic, mc, atol=0.03)


def test_prior_samples_one_per_label_and_features_condition_as_well():
    bound = networks.bind(_model(), _params(), y=np.array([0, 2]))
    assert bound.sample_prior(jax.random.key(0), 2)["mean"].shape == (2, E)
    vae = networks.mlp_vae(
        data_shape=(E,), likelihood=L.Gaussian(), latent_dim=D, hidden_sizes=(4,)
    )
    vae = vae.clone(conditioning=Features((2,)))
    feats = RNG.normal(size=(6, 2)).astype(np.float32)
    params = networks.init(vae, jax.random.key(0), X, feats)
    assert params["encoder"]["hidden_0"]["kernel"].shape == (E + 2, 4)
    assert params["decoder"]["hidden_0"]["kernel"].shape == (D + 2, 4)
    elbo = vaejax.elbo(jax.random.key(0), X, model=networks.bind(vae, params, y=feats)).elbo
    assert elbo.shape == (6,) and np.isfinite(elbo).all()


def test_a_missing_misshapen_or_out_of_range_y_is_refused_by_name():
    model, params = _model(), _params()
    with pytest.raises(ValueError, match=r"conditioned on a class label y in \[0, 3\).*pass y="):
        networks.bind(model, params)
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\); got \[3, 7\]"):
        Labels(K).check(np.array([0, 3, 7]))
    with pytest.raises(ValueError, match=r"shape \[6\]; got \(6, 1\)"):
        Labels(K).check(Y[:, None], batch=6)
    with pytest.raises(ValueError, match="integer class labels; got dtype float"):
        Labels(K).check(np.array([0.5]))
    with pytest.raises(ValueError, match=r"shape \(4, 2\); got \(4, 3\)"):
        Features((2,)).check(np.zeros((4, 3)), batch=4)
    with pytest.raises(ValueError, match="non-finite"):
        Features((2,)).check(np.array([[0.0, np.nan]]))
    plain = networks.mlp_vae(
        data_shape=(E,), likelihood=L.Gaussian(), latent_dim=D, hidden_sizes=()
    )
    with pytest.raises(ValueError, match="not a conditional model, so it takes no y"):
        networks.bind(plain, networks.init(plain, jax.random.key(0), X), y=Y)
    with pytest.raises(ValueError, match="ConditionalNormal is p\\(z \\| y\\) and needs"):
        plain.clone(prior=priors.ConditionalNormal(D))
    with pytest.raises(ValueError, match="VampPrior encodes its pseudo-inputs"):
        plain.clone(conditioning=Labels(K), prior=priors.VampPrior(2, (E,), plain.posterior))
