"""Populations: P members in one vmapped program train exactly as P lone runs would.

A population goes through the one training loop (`experiment.train_and_evaluate(...,
members=...)`), so every feature of a lone run is also a population's; these tests check that
each member equals its lone run.
"""

import json

import jax
import numpy as np
import optax
import pytest

from experiments.configs import test as test_config
from vaejax import budget, experiment, figures, population, train
from vaejax import data as data_lib
from vaejax.checkpoints import Checkpointer

# Four seeds; learning rate and beta in pairs, so the lone runs compile two programs, not four.
MEMBERS = [
    {"seed": 0, "optim.learning_rate": 1e-3},  # explicit: independent of the default rate
    {"seed": 1, "optim.learning_rate": 1e-3},
    {"seed": 2, "optim.learning_rate": 3e-3, "objective.beta": 0.5},
    {"seed": 3, "optim.learning_rate": 3e-3, "objective.beta": 0.5},
]


def _config(**overrides):
    config = test_config.get_config()
    config.model.latent_dim = 3
    config.update_from_flattened_dict(overrides)
    return config


def _images(sizes=(48, 8, 8)) -> data_lib.Data:
    rng = np.random.default_rng(0)
    splits = [rng.uniform(size=(n, 28, 28, 1)).astype(np.float32) for n in sizes]
    splits[1:] = [(s > 0.5).astype(np.float32) for s in splits[1:]]  # binary valid and test
    labels = [np.zeros(n, np.int32) for n in sizes]
    return data_lib.Data(*splits, *labels, {"name": "images", "preprocessing": "dynamic_binarize"})


def test_population_of_4_matches_4_single_runs(tmp_path):
    """The loop's own set-up and compiled chunk, for the population and for each member alone."""
    config, data = _config(), _images()
    pop = experiment.setup(config, str(tmp_path / "pop"), data=data, members=MEMBERS)
    perms = experiment.epoch_perms(pop, 0)  # [4, 6, 8]
    metrics = []
    for start in (0, 3):
        pop.state, m = pop.chunk(pop.state, perms[:, start : start + 3])
        metrics.append(m)
    assert np.asarray(pop.state.step).tolist() == [6] * 4

    for i, cfg in enumerate(population.member_configs(config, MEMBERS)):
        alone = experiment.setup(cfg, str(tmp_path / f"alone{i}"), data=data)
        np.testing.assert_array_equal(experiment.epoch_perms(alone, 0)[0], perms[i])
        for start, got in zip((0, 3), metrics, strict=True):
            alone.state, want = alone.chunk(alone.state, perms[i : i + 1, start : start + 3])
            for name in ("loss", "elbo", "kl", "beta"):
                np.testing.assert_allclose(got[name][i], want[name][0], rtol=2e-5, atol=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
            population.unstack(pop.state.params, i),
            alone.state.params,
        )
    # The members really differ: seeds, learning rates and betas reached the update.
    assert len({float(metrics[-1]["loss"][i, -1]) for i in range(4)}) == 4
    np.testing.assert_allclose(metrics[0]["beta"][:, 0], [1.0, 1.0, 0.5, 0.5])
    lr_state = optax.tree_utils.tree_get(pop.state.opt_state, "learning_rate")
    np.testing.assert_allclose(lr_state, [1e-3, 1e-3, 3e-3, 3e-3], rtol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        {"model.prior": "mixture", "model.prior_components": 3},
        {"model.prior": "vampprior", "model.prior_components": 4},
        {"model.posterior": "iaf", "model.posterior_kwargs": {"num_steps": 2, "hidden_size": 8}},
    ],
    ids=["mixture", "vampprior", "iaf"],
)
def test_members_with_learned_priors_or_a_flow_match_their_lone_runs(tmp_path, model):
    """A prior's or a flow's own parameters are stacked and trained per member like the rest."""
    config, data = _config(**model), _images()
    pop = experiment.setup(config, str(tmp_path / "pop"), data=data, members=MEMBERS[:2])
    perms = experiment.epoch_perms(pop, 0)
    pop.state, got = pop.chunk(pop.state, perms[:, :3])
    owned = "prior" if "model.prior" in model else "encoder"
    for i, cfg in enumerate(population.member_configs(config, MEMBERS[:2])):
        alone = experiment.setup(cfg, str(tmp_path / f"alone{i}"), data=data)
        alone.state, want = alone.chunk(alone.state, perms[i : i + 1, :3])
        np.testing.assert_allclose(got["loss"][i], want["loss"][0], rtol=2e-5, atol=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
            population.unstack(pop.state.params, i)[owned],
            alone.state.params[owned],
        )
    assert got["loss"][0, -1] != got["loss"][1, -1]


def _end_to_end_config(fake_dir, **overrides):
    return _config(
        **{
            "data.data_dir": fake_dir,
            "eval.iwae_samples": 0,
            "train.checkpoint_every_steps": 1000,  # the final one only
            "train.steps_per_dispatch": 5,  # an epoch: one chunk shape, one compile
            **overrides,
        }
    )


def test_population_trial_end_to_end_matches_a_lone_run(fake_dir, tmp_path, monkeypatch):
    # Figures are tested elsewhere; here they only cost time.
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    config = _end_to_end_config(fake_dir)
    members = [MEMBERS[0], {"seed": 0, "optim.learning_rate": 2e-3, "objective.beta": 2.0}]
    state, pop = experiment.train_and_evaluate(config, str(tmp_path / "pop"), members=members)
    _, alone = experiment.train_and_evaluate(
        population.member_configs(config, members)[1], str(tmp_path / "alone")
    )
    assert np.asarray(state.step).tolist() == [10, 10]  # the stacked state is returned
    got = pop["members"][1]
    assert got["steps"] == alone["steps"] == 10
    for key in ("elbo", "log_likelihood", "kl", "nll_20"):
        np.testing.assert_allclose(got["test"][key], alone["test"][key], rtol=1e-5)
    np.testing.assert_allclose(got["valid"]["elbo"], alone["valid"]["elbo"], rtol=1e-5)
    saved = json.loads((tmp_path / "pop" / "members" / "1" / "results.json").read_text())
    assert saved["config"]["objective"]["beta"] == 2.0 and saved["config"]["seed"] == 0
    assert (tmp_path / "pop" / "members" / "0" / "metrics.jsonl").exists()

    # Rerunning resumes from the final checkpoint: no step is trained twice.
    again = experiment.train_and_evaluate_population(config, str(tmp_path / "pop"), members)
    assert again["steps"] == 10
    np.testing.assert_allclose(again["members"][1]["test"]["elbo"], got["test"]["elbo"])
    # Other members would continue this population's checkpoint: refused, naming them.
    with pytest.raises(ValueError, match=r"'members': .*new --workdir"):
        experiment.train_and_evaluate_population(config, str(tmp_path / "pop"), members[:1])


def test_lone_run_features_work_for_members(fake_dir, tmp_path, monkeypatch):
    """A moving average, no validation split and clipping: member 1 equals its lone run."""
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    overrides = {"optim.ema_decay": 0.9, "data.num_valid": 0, "optim.grad_clip_norm": 1.0}
    config = _end_to_end_config(fake_dir, **overrides)
    members = [MEMBERS[0], MEMBERS[2]]
    _, pop = experiment.train_and_evaluate(config, str(tmp_path / "pop"), members=members)
    _, alone = experiment.train_and_evaluate(
        population.member_configs(config, members)[1], str(tmp_path / "alone")
    )
    got = pop["members"][1]
    assert got["valid"] is None and got["steps"] == alone["steps"] == 2 * (60 // 8)
    for key in ("elbo", "log_likelihood", "kl", "nll_20"):
        np.testing.assert_allclose(got["test"][key], alone["test"][key], rtol=1e-5)
    saved = Checkpointer(tmp_path / "pop").restore()
    assert saved["ema_params"]["encoder"]["mean"]["kernel"].shape[0] == 2  # stacked


def test_schedule_fitted_to_the_time_budget_per_member(fake_dir, tmp_path, monkeypatch):
    """On the training clock, each member's rate follows its own schedule."""
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    clock, rates = [0.0], []
    monkeypatch.setattr(budget, "now", lambda: clock[0])
    real = train.make_train_chunk

    def timed(**kwargs):
        fn = real(**kwargs)

        def chunk(state, *args):
            rates.append(np.asarray(optax.tree_utils.tree_get(state.opt_state, "learning_rate")))
            clock[0] += 1.0  # each chunk takes a second
            return fn(state, *args)

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", timed)
    overrides = {"train.time_budget_s": 4.0, "train.fit_schedule_to_budget": True}
    config = _end_to_end_config(fake_dir, **overrides)
    _, results = experiment.train_and_evaluate(config, str(tmp_path / "pop"), members=MEMBERS[1:3])
    assert results["train_time_s"] == 4.0 and len(rates) == 4
    for i, peak in enumerate((1e-3, 3e-3)):
        cosine = optax.cosine_decay_schedule(peak, 10, alpha=1e-4 / peak)
        np.testing.assert_allclose(
            [r[i] for r in rates], [cosine(s / 4 * 10) for s in range(4)], rtol=1e-6
        )


def test_a_diverged_member_stops_counting_and_all_diverged_stops(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    real, poison = train.make_train_chunk, [[1]]

    def poisoned(**kwargs):
        fn, calls = real(**kwargs), []

        def chunk(*args):
            state, metrics = fn(*args)
            calls.append(1)
            if len(calls) == 2:  # steps 6-10
                metrics = {**metrics, "loss": metrics["loss"].at[poison[0], 1].set(np.nan)}
            return state, metrics

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", poisoned)
    config = _end_to_end_config(fake_dir, **{"train.checkpoint_every_steps": 5})
    _, results = experiment.train_and_evaluate(config, str(tmp_path / "one"), members=MEMBERS[:2])
    assert results["members"][1]["error"].startswith("Non-finite loss nan at step 7")
    assert "test" in results["members"][0]

    poison[0] = [0, 1]
    with pytest.raises(experiment.NonFiniteLossError, match=r"step 7.*checkpoint \(step 5\)"):
        experiment.train_and_evaluate(config, str(tmp_path / "all"), members=MEMBERS[:2])
    assert Checkpointer(tmp_path / "all").latest_step() == 5


class _Interrupt(Exception):
    pass


def test_a_resumed_population_equals_an_uninterrupted_one(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
    config = _end_to_end_config(fake_dir, **{"train.checkpoint_every_steps": 5})
    members = MEMBERS[:2]
    _, straight = experiment.train_and_evaluate(config, str(tmp_path / "straight"), members=members)
    real = train.make_train_chunk

    def dying(**kwargs):
        fn, calls = real(**kwargs), []

        def chunk(*args):
            calls.append(1)
            if len(calls) == 2:  # after the checkpoint at step 5
                raise _Interrupt
            return fn(*args)

        return chunk

    monkeypatch.setattr(train, "make_train_chunk", dying)
    with pytest.raises(_Interrupt):
        experiment.train_and_evaluate(config, str(tmp_path / "resumed"), members=members)
    assert Checkpointer(tmp_path / "resumed").latest_step() == 5
    monkeypatch.setattr(train, "make_train_chunk", real)
    _, resumed = experiment.train_and_evaluate(config, str(tmp_path / "resumed"), members=members)
    for got, want in zip(resumed["members"], straight["members"], strict=True):
        for key in ("elbo", "kl", "nll_20"):
            np.testing.assert_allclose(got["test"][key], want["test"][key], rtol=1e-5)


def test_members_may_differ_only_in_population_fields():
    with pytest.raises(ValueError, match=r"may differ only in .*model.latent_dim"):
        population.member_configs(_config(), [{"model.latent_dim": 4}])


def test_per_member_learning_rates_need_a_traceable_schedule(fake_dir, tmp_path):
    config = _config(**{"data.data_dir": fake_dir, "optim.schedule": "exponential"})
    with pytest.raises(ValueError, match="Per-member learning rates need a schedule"):
        experiment.train_and_evaluate_population(config, str(tmp_path), MEMBERS[1:3])
