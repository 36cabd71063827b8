"""train_and_evaluate end to end on a fake prepared MNIST: outputs, resume, faults, configs."""

import importlib
import json
import os
import pathlib

import jax
import numpy as np
import optax
import pytest

import vaejax
from experiments.configs import test as test_config
from vaejax import budget, build, experiment, likelihoods, networks, train
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax.checkpoints import Checkpointer
from vaejax.writers import read_metrics

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _config(fake_dir, **overrides):
    config = test_config.get_config()
    config.data.data_dir = fake_dir
    config.update_from_flattened_dict(overrides)
    return config


def test_tiny_config_end_to_end(fake_dir, tmp_path):
    workdir = str(tmp_path / "run")
    _, results = experiment.train_and_evaluate(_config(fake_dir), workdir)
    files = set(os.listdir(workdir))
    assert {
        "results.json",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
        "curves.png",
        "latent_manifold.png",
        "latent_codes.png",
        "checkpoints",
        "tensorboard",
    } <= files
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    test = saved["test"]
    for key in ("elbo", "log_likelihood", "kl", "iwae_5", "nll_20", "active_units"):
        assert np.isfinite(test[key]), key
    assert test["elbo"] <= test["iwae_5"] + 1.0  # bounds are ordered up to MC noise
    assert saved["steps"] == results["steps"] == 2 * (40 // 8)
    assert saved["config"]["model"]["latent_dim"] == 2 and saved["wall_time_s"] > 0
    records = read_metrics(workdir)
    assert any("valid/elbo" in r for r in records) and any("train/loss" in r for r in records)


@pytest.mark.parametrize(
    "likelihood, kwargs",
    [("discretized_logistic_mixture", {"num_components": 3}), ("negative_binomial", {})],
)
def test_integer_level_likelihoods_end_to_end(fake_dir, tmp_path, likelihood, kwargs):
    """8-bit levels: trained, scored in exact bits/dim, drawn in the figures, loaded back."""
    config = _config(fake_dir, **{"data.preprocessing": "integer", "model.input_scale": 1 / 255})
    config.model.likelihood, config.model.likelihood_kwargs = likelihood, kwargs
    workdir = str(tmp_path / "run")
    _, results = experiment.train_and_evaluate(config, workdir)
    test = results["test"]
    assert np.isfinite(test["nll_20"]) and test["nll_20"] > 0  # a discrete NLL is >= 0
    assert test["bits_per_dim"] == pytest.approx(test["nll_20"] / (28 * 28 * np.log(2)), rel=1e-6)
    assert {"samples.png", "reconstructions.png"} <= set(os.listdir(workdir))
    model = vaejax.load(workdir)
    means = model.sample(jax.random.key(0), 3)  # the likelihood's means: levels, or any count
    top = 255 if likelihood.startswith("discretized") else np.inf
    assert means.shape == (3, 28, 28, 1) and 0 <= means.min() and means.max() <= top


def test_non_finite_test_numbers_are_no_result(fake_dir, tmp_path, monkeypatch):
    """Was: a diverged run exited 0 with NaN IWAE and NLL in results.json (not even JSON)."""
    real = experiment.evaluate.evaluate_test
    nan_nll = lambda *a, **k: real(*a, **k) | {"nll_20": float("nan")}
    monkeypatch.setattr(experiment.evaluate, "evaluate_test", nan_nll)
    with pytest.raises(
        experiment.NonFiniteLossError, match=r"Non-finite test numbers \['nll_20'\]"
    ):
        experiment.train_and_evaluate(_config(fake_dir), str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())  # strict JSON: null
    assert saved["test"]["nll_20"] is None and "Non-finite" in saved["error"]


def test_no_validation_split_and_a_moving_average(fake_dir, tmp_path, monkeypatch):
    """num_valid=0 trains on every train example; the test sees the averaged parameters."""
    evaluated = []
    real = experiment.evaluate.evaluate_test
    monkeypatch.setattr(
        experiment.evaluate,
        "evaluate_test",
        lambda model, params, *a, **k: evaluated.append(params) or real(model, params, *a, **k),
    )
    config = _config(fake_dir, **{"data.num_valid": 0, "optim.ema_decay": 0.9})
    _, results = experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["steps"] == 2 * (60 // 8) and results["valid"] is None
    assert not any("valid/elbo" in r for r in read_metrics(str(tmp_path / "run")))
    saved = Checkpointer(str(tmp_path / "run")).restore()
    jax_leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]
    for got, ema, raw in zip(
        jax_leaves(evaluated[0]),
        jax_leaves(saved["ema_params"]),
        jax_leaves(saved["params"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, ema)
        assert not np.array_equal(ema, raw)


class _Interrupt(Exception):
    pass


def test_resume_matches_an_uninterrupted_run(fake_dir, tmp_path, monkeypatch):
    config = _config(fake_dir, **{"train.num_epochs": 3})
    _, straight = experiment.train_and_evaluate(config, str(tmp_path / "straight"))

    # 5 steps an epoch in chunks of 4 and 1; checkpoints when 4 steps have passed: at 4 and 9.
    # Kill the run in its 4th chunk (steps 10-13), then rerun the same command.
    real = train.make_train_chunk

    def dying(**kwargs):
        fn, calls = real(**kwargs), []

        def chunk(*args):
            calls.append(1)
            if len(calls) == 4:
                raise _Interrupt
            return fn(*args)

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", dying)
    with pytest.raises(_Interrupt):
        experiment.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert Checkpointer(tmp_path / "resumed").latest_step() == 9
    monkeypatch.setattr(train, "make_train_chunk", real)
    _, resumed = experiment.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["steps"] == straight["steps"] == 15
    for key in ("elbo", "log_likelihood", "kl", "iwae_5", "nll_20"):
        np.testing.assert_allclose(resumed["test"][key], straight["test"][key], rtol=1e-5)
    losses = lambda d: [r["train/loss"] for r in read_metrics(tmp_path / d) if "train/loss" in r]
    np.testing.assert_allclose(losses("resumed"), losses("straight"), rtol=1e-5)


def test_resume_refuses_other_training_settings(fake_dir, tmp_path):
    workdir = str(tmp_path / "run")
    _, first = experiment.train_and_evaluate(_config(fake_dir), workdir)
    # Other evaluation or checkpoint-keeping settings resume (here: re-evaluate the run) ...
    other = {"eval.nll_samples": 7, "train.keep_checkpoint_every_steps": 4}
    _, again = experiment.train_and_evaluate(_config(fake_dir, **other), workdir)
    assert again["steps"] == first["steps"] and "nll_7" in again["test"]
    # ... a changed batch size would continue another run's checkpoint: refused, naming it.
    with pytest.raises(ValueError, match=r"'train.batch_size': \(8, 4\).*new --workdir"):
        experiment.train_and_evaluate(_config(fake_dir, **{"train.batch_size": 4}), workdir)
    # Without train_config.json (only checkpoints/ copied over), the checkpoint's metadata decides.
    recorded = tmp_path / "run" / "train_config.json"
    recorded.unlink()
    changed = {"train.batch_size": 4, "optim.learning_rate": 0.5}
    with pytest.raises(
        ValueError, match=r"\(checkpoint, this config\).*'train.batch_size': \(8, 4\)"
    ):
        experiment.train_and_evaluate(_config(fake_dir, **changed), workdir)
    assert not recorded.exists()  # nothing rewritten by the refused run
    recorded.write_text('{"train.batch_size": 8,')  # hand-edited, no longer JSON
    with pytest.raises(ValueError, match=r"train_config.json is not valid JSON.*delete it"):
        experiment.train_and_evaluate(_config(fake_dir), workdir)


def test_schedule_fitted_to_the_time_budget_and_the_clock_across_resumes(
    fake_dir, tmp_path, monkeypatch
):
    """The rate follows the schedule by the time spent; the budget, not num_epochs, ends it."""
    clock, rates, calls = [0.0], [], [0]
    monkeypatch.setattr(budget, "now", lambda: clock[0])
    real = train.make_train_chunk

    def timed(**kwargs):
        fn = real(**kwargs)

        def chunk(state, *args):
            calls[0] += 1
            if calls[0] == 7:
                raise _Interrupt
            rates.append(float(optax.tree_utils.tree_get(state.opt_state, "learning_rate")))
            clock[0] += 1.0  # each chunk takes a second
            return fn(state, *args)

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", timed)
    overrides = {
        "train.num_epochs": 1,  # 5 steps: the schedule's shape, not when training stops
        "train.time_budget_s": 10.0,
        "train.fit_schedule_to_budget": True,
        "optim.grad_clip_norm": 1.0,  # the rate is found inside a chain too
    }
    config = _config(fake_dir, **overrides)
    workdir = str(tmp_path / "run")
    with pytest.raises(_Interrupt):  # in the 7th chunk: the checkpoint after 5 s, at step 14
        experiment.train_and_evaluate(config, workdir)
    assert Checkpointer(workdir).metadata()["train_time_s"] == 5.0
    _, results = experiment.train_and_evaluate(config, workdir)

    cosine = optax.cosine_decay_schedule(3e-3, 5, alpha=1e-4 / 3e-3)
    expected = [float(cosine(s / 10 * 5)) for s in range(10)]  # after s of the 10 seconds
    np.testing.assert_allclose(rates, expected[:6] + expected[5:], rtol=1e-6)
    assert results["train_time_s"] == 10.0 and results["steps"] == 25  # 10 chunks of 4 and 1
    logged = [r["train/learning_rate"] for r in read_metrics(workdir) if "train/loss" in r]
    np.testing.assert_allclose(logged[-5:], expected[5:], rtol=1e-6)

    # The budget is spent: rerunning only evaluates, in either mode.
    _, again = experiment.train_and_evaluate(config, workdir)
    config.train.fit_schedule_to_budget = False
    with pytest.raises(ValueError, match=r"fit_schedule_to_budget': \(True, False\)"):
        experiment.train_and_evaluate(config, workdir)
    assert again["steps"] == 25 and len(rates) == 11


def test_bad_time_budgets_are_refused():
    with pytest.raises(ValueError, match=r"time_budget_s = -1.0 is out of range"):
        config_lib.Train(time_budget_s=-1.0)
    train_cfg = config_lib.Train(time_budget_s=0.0, fit_schedule_to_budget=True)
    with pytest.raises(ValueError, match="time_budget_s=0.0, fit_schedule_to_budget=True"):
        budget.Budget.from_config(train_cfg)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(fake_dir, tmp_path, monkeypatch):
    real = train.make_train_chunk

    def poisoned(**kwargs):
        fn, calls = real(**kwargs), []

        def chunk(*args):
            state, metrics = fn(*args)
            calls.append(1)
            if len(calls) == 3:
                metrics = {**metrics, "loss": metrics["loss"].at[1].set(np.nan)}
            return state, metrics

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", poisoned)
    workdir = tmp_path / "nan"
    with pytest.raises(
        experiment.NonFiniteLossError, match=r"at step 7.*last good checkpoint \(step 4\)"
    ) as raised:
        experiment.train_and_evaluate(_config(fake_dir), str(workdir))
    assert raised.value.step == 7
    assert Checkpointer(workdir).latest_step() == 4  # the chunk with the NaN was not saved


def test_non_finite_loss_before_any_checkpoint_says_there_is_none(fake_dir, tmp_path, monkeypatch):
    real = train.make_train_chunk

    def poisoned(**kwargs):
        fn = real(**kwargs)

        def chunk(*args):
            state, metrics = fn(*args)
            return state, {**metrics, "loss": metrics["loss"].at[0].set(np.nan)}

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", poisoned)
    workdir = tmp_path / "nan_at_once"
    with pytest.raises(experiment.NonFiniteLossError, match=r"at step 1\b") as raised:
        experiment.train_and_evaluate(_config(fake_dir), str(workdir))
    message = str(raised.value)
    assert "No checkpoint was saved yet" in message and "step None" not in message
    assert "last good checkpoint" not in message
    assert raised.value.step == 1


def test_bad_data_for_the_likelihood_fails_at_start(fake_dir, tmp_path):
    config = _config(fake_dir, **{"data.preprocessing": "unit_interval"})
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs data in \{0, 1\}"):
        experiment.train_and_evaluate(config, str(tmp_path / "bad"))


def _features(sizes=(40, 16, 16), dim=5) -> data_lib.Data:
    rng = np.random.default_rng(0)
    splits = [(rng.normal(size=(n, dim)) * 100 + 7).astype(np.float32) for n in sizes]
    labels = [np.arange(n, dtype=np.int32) % 3 for n in sizes]
    return data_lib.Data(*splits, *labels, {"name": "features", "preprocessing": "none"})


def test_own_model_and_data_replace_the_configured_ones(tmp_path):
    """Tabular [N, D] data and a model built by hand; the config's data and model are unused."""
    config = test_config.get_config()
    config.data.name = "no_such_dataset"  # never loaded
    model = networks.mlp_vae(
        data_shape=(5,),
        likelihood=likelihoods.LearnedGaussian(shared_variance=True),
        latent_dim=2,
        hidden_sizes=(8,),
    )
    workdir = tmp_path / "own"
    _, results = experiment.train_and_evaluate(config, str(workdir), model=model, data=_features())
    files = set(os.listdir(workdir))
    assert {"results.json", "curves.png", "latent_codes.png"} <= files
    assert not files & {"samples.png", "reconstructions.png", "latent_manifold.png"}  # no images
    assert results["steps"] == 2 * (40 // 8)  # not dynamically binarized: info says "none"
    assert np.isfinite(results["test"]["nll_20"]) and "bits_per_dim" not in results["test"]
    assert results["data_info"]["name"] == "features" and "LearnedGaussian" in results["model"]
    params = Checkpointer(workdir).restore()["params"]  # no target: the tree as saved
    assert params["decoder"]["log_var"].shape == ()  # the one learned scalar was trained
    assert float(params["decoder"]["log_var"]) != 0.0


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem != "__init__")
)
def test_every_config_loads_and_builds(name):
    config = config_lib.read(importlib.import_module(f"experiments.configs.{name}").get_config())
    assert config.model.preset and config.data.preprocessing
    num_classes = 10 if config.data.conditioning == "label" else 0  # MNIST's, for cvae.py
    likelihood = build.build_likelihood(config.model)
    build.build_model(config.model, (28, 28, 1), likelihood, num_classes)


def test_pixel_features_give_the_mlp_decoder_a_pixel_head():
    config = test_config.get_config()
    config.model.update(preset="mlp", hidden_sizes=(8,), latent_dim=2, pixel_features=3)
    model = build.build_model(
        config_lib.read(config).model, (4, 4, 1), likelihoods.Categorical(256)
    )
    x = np.zeros((2, 4, 4, 1), np.float32)
    head = networks.init(model, jax.random.key(0), x)["decoder"]["logits"]
    assert head["features"]["kernel"].shape == (8, 16 * 3)
    assert head["shared"]["kernel"].shape == (3, 256)


@pytest.mark.parametrize(
    "prior, overrides",
    [
        ("normal", {}),
        ("mixture", {"model.prior_components": 3}),
        (
            "vampprior",
            {
                "model.prior_components": 4,
                "objective.name": "iwae",
                "objective.num_samples": 3,
                "objective.gradient_estimator": "dreg",
            },
        ),
    ],
)
def test_learned_priors_train_end_to_end(fake_dir, tmp_path, prior, overrides):
    """The prior is a config choice; its parameters train; figures and evaluation use it."""
    config = _config(fake_dir, **{"model.prior": prior, **overrides})
    state, results = experiment.train_and_evaluate(config, str(tmp_path / prior))
    assert np.isfinite(results["test"]["nll_20"]) and np.isfinite(results["test"]["elbo"])
    assert "prior" in state.params and "latent_manifold.png" in results["figures"]
    init = build.build_model(
        config_lib.read(config).model, (28, 28, 1), likelihoods.get("bernoulli")
    )
    first = networks.init(init, jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), first["prior"], state.params["prior"])
    assert any(jax.tree.leaves(moved))  # the prior learned


def test_a_closed_form_kl_that_does_not_exist_is_refused(fake_dir, tmp_path):
    config = _config(fake_dir, **{"model.prior": "mixture", "objective.analytic_kl": True})
    with pytest.raises(ValueError, match="No closed-form KL.*MixtureOfGaussians"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))
