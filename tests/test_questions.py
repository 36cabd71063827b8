"""The design-question experiments: batch-norm folding, the report, each --quick run end to end."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.questions import (
    common,
    decoder_variance,
    encoder_heads,
    output_likelihoods,
    posterior_scale,
)
from vaejax import experiment

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
RNG = np.random.default_rng(0)


def _randomized_bn(params):
    """Params with batch-norm scales and shifts away from their identity initialization."""
    params = dict(params)
    for name in [n for n in params if n.endswith("_bn")]:
        d = params[name]["scale"].shape[0]
        params[name] = {
            "scale": jnp.asarray(RNG.uniform(0.5, 2.0, d), jnp.float32),
            "bias": jnp.asarray(RNG.normal(0, 1, d), jnp.float32),
        }
    return params


@pytest.mark.parametrize(
    "heads",
    [{}, {"relu_mean": True}, {"relu_variance": True}, {"relu_mean": True, "relu_variance": True}],
)
def test_folded_head_equals_batch_norm_with_population_statistics(heads):
    encoder = encoder_heads.HeadsEncoder((16,), latent_dim=4, batch_norm=True, **heads)
    x = jnp.asarray(RNG.normal(size=(300, 10)), jnp.float32)
    params = _randomized_bn(encoder.init(jax.random.key(0), x)["params"])
    stats = encoder_heads.population_statistics(encoder, params, np.asarray(x), batch_size=128)
    plain = encoder.clone(batch_norm=False)
    folded = encoder_heads.fold_batch_norm(params, stats)
    assert not any(n.endswith("_bn") for n in folded)

    # Over the whole set, batch statistics are the population statistics: the same function.
    np.testing.assert_allclose(
        plain.apply({"params": folded}, x)["mean"],
        encoder.apply({"params": params}, x)["mean"],
        rtol=1e-4,
        atol=1e-5,
    )
    # On any other batch: batch norm at the population statistics, written out in numpy.
    x_few = x[:5]
    raw = encoder.apply({"params": params}, x_few, raw=True)
    want = {}
    for name, (mu, var) in stats.items():
        bn = params[f"{name}_bn"]
        want[name] = (np.asarray(raw[name], np.float64) - mu) / np.sqrt(
            var + encoder_heads.BN_EPSILON
        ) * np.asarray(bn["scale"]) + np.asarray(bn["bias"])
    mean_head, scale_head = (want[n] for n in encoder.head_names)
    if heads.get("relu_mean"):
        mean_head = np.maximum(mean_head, 0)
    if heads.get("relu_variance"):
        scale_head = np.log(np.maximum(scale_head, 0) + encoder_heads.VARIANCE_EPS)
    got = plain.apply({"params": folded}, x_few)
    np.testing.assert_allclose(got["mean"], mean_head, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["log_var"], scale_head, rtol=1e-4, atol=1e-4)


def test_batch_norm_head_depends_on_the_batch_and_plain_heads_do_not():
    x = jnp.asarray(RNG.normal(size=(40, 10)), jnp.float32)
    for batch_norm in (False, True):
        encoder = encoder_heads.HeadsEncoder((8,), latent_dim=3, batch_norm=batch_norm)
        params = encoder.init(jax.random.key(0), x)["params"]
        alone = encoder.apply({"params": params}, x[:10])["mean"]
        together = encoder.apply({"params": params}, x)["mean"][:10]
        assert np.allclose(alone, together, atol=1e-6) != batch_norm


def test_features_have_no_common_scale_and_standardize_per_feature():
    train, valid, test = output_likelihoods.make_features(0, sizes=(2000, 100, 100))
    assert train.shape == (2000, 16) and valid.shape == test.shape == (100, 16)
    stds = train.std(0)
    assert stds.max() / stds.min() > 100  # orders of magnitude apart
    d, shift, scale = output_likelihoods.feature_data("standardized", (train, valid, test))
    np.testing.assert_allclose(d.train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(d.train.std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(d.test * scale + shift, test, rtol=1e-4, atol=1e-3)
    d, *_ = output_likelihoods.feature_data("min_max", (train, valid, test))
    assert d.test.min() >= 0 and d.test.max() <= 1


def test_write_results_rewrites_only_the_block(tmp_path):
    page = tmp_path / "q.md"
    page.write_text(f"# Q\n\nkept\n{common.RESULTS_START}\nold\n{common.RESULTS_END}\nalso kept\n")
    common.write_results(tmp_path, "q", "| new |")
    common.write_results(tmp_path, "q", "| newer |")
    assert page.read_text() == (
        f"# Q\n\nkept\n{common.RESULTS_START}\n| newer |\n{common.RESULTS_END}\nalso kept\n"
    )
    common.write_results(tmp_path, "fresh", "x")  # a missing page is created
    assert "x" in (tmp_path / "fresh.md").read_text()
    (tmp_path / "bad.md").write_text("no markers")
    with pytest.raises(ValueError, match="results:start"):
        common.write_results(tmp_path, "bad", "x")


def test_a_diverged_variant_is_a_result_and_is_not_rerun(tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise experiment.NonFiniteLossError("Non-finite loss nan at step 12", step=12)

    monkeypatch.setattr(experiment, "train_and_evaluate", diverge)
    config = common.base_config(quick=True)
    results = common.train_variant(tmp_path, "v", config)
    assert results[common.DIVERGED] == 12 and common.diverged_note(results).endswith("step 12")
    assert json.loads((tmp_path / "v" / common.RESULTS_FILE).read_text())[common.DIVERGED] == 12
    monkeypatch.setattr(experiment, "train_and_evaluate", None)  # would fail if called
    assert common.train_variant(tmp_path, "v", config)[common.DIVERGED] == 12


QUESTIONS = {
    "encoder_heads": (encoder_heads, ["encoder_heads.png"]),
    "output_likelihoods": (
        output_likelihoods,
        ["output_likelihoods.png", "output_likelihoods_features.png"],
    ),
    "posterior_scale": (posterior_scale, ["posterior_scale.png"]),
    "decoder_variance": (decoder_variance, ["decoder_variance.png", "decoder_variance_curves.png"]),
}


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_quick_run_end_to_end_fills_the_page(name, tmp_path):
    module, figures = QUESTIONS[name]
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(DOCS / f"{name}.md", docs)  # the real page: its hand-written text must stay
    before = (docs / f"{name}.md").read_text()
    workdir = tmp_path / "runs"
    module.main([f"--workdir={workdir}", f"--docs_dir={docs}", "--quick"])

    text = (docs / f"{name}.md").read_text()
    head, tail = before.split(common.RESULTS_START)[0], before.split(common.RESULTS_END)[1]
    assert text.startswith(head) and text.endswith(tail)
    block = text.split(common.RESULTS_START)[1].split(common.RESULTS_END)[0]
    assert "--quick" in block and "| --- |" in block and "Not run yet" not in block
    for figure in figures:
        assert (docs / common.FIGURES_DIR / figure).stat().st_size > 0
        assert f"{common.FIGURES_DIR}/{figure}" in block
    assert all((run / common.RESULTS_FILE).exists() for run in workdir.iterdir() if run.is_dir())
