"""Populations: P members in one vmapped program train exactly as P lone runs would."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from experiments.configs import test as test_config
from vaejax import experiment, likelihoods, population, train

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


def test_population_of_4_matches_4_single_runs():
    config = _config()
    configs = population.member_configs(config, MEMBERS)
    rng = np.random.default_rng(0)
    train_x = rng.uniform(size=(48, 28, 28, 1)).astype(np.float32)
    lik = likelihoods.get("bernoulli")
    model = experiment.build_model(config.model, train_x.shape[1:], lik)
    mesh = train.data_mesh(jax.devices())
    replicated = NamedSharding(mesh, PartitionSpec())
    total, per_epoch, chunk, batch = 12, 6, 3, 8

    make_tx = population.optimizer_factory(
        config.optim, total_steps=total, steps_per_epoch=per_epoch
    )

    keys = [jax.random.key(c.seed) for c in configs]
    idx = np.stack(
        [np.asarray(rng.permutation(48)[: chunk * batch]).reshape(chunk, batch) for _ in configs]
    )
    bias = lik.output_bias(train_x)

    # Alone: the trainer's own compiled chunk, optimizer and objective, member by member.
    singles, steps, txs = [], {}, {}
    for i, cfg in enumerate(configs):
        lr = cfg.optim.learning_rate
        if lr not in txs:
            txs[lr] = experiment.build_optimizer(
                cfg.optim, total_steps=total, steps_per_epoch=per_epoch
            )
        state = train.create_train_state(
            jax.random.fold_in(keys[i], 0), model, train_x, txs[lr], output_bias=bias
        )
        state = jax.device_put(state, replicated)  # as the trainer places it
        objective = train.Objective(**cfg.objective)
        if objective not in steps:
            steps[objective] = train.make_train_chunk(model=model, objective=objective, mesh=mesh)
        step = steps[objective]
        metrics = []
        for _ in range(2):
            state, m = step(state, jnp.asarray(train_x), jnp.asarray(idx[i]), keys[i])
            metrics.append(m)
        singles.append((state, metrics))

    # Together: one vmapped program.
    lrs = [c.optim.learning_rate for c in configs]
    states = population.init_states(
        [jax.random.fold_in(k, 0) for k in keys],
        model,
        train_x,
        population.population_optimizer(make_tx, lrs),
        learning_rates=lrs,
        output_biases=[bias] * 4,
    )
    states = jax.device_put(states, replicated)
    step = population.make_population_chunk(
        model=model, objective=train.Objective(**config.objective), mesh=mesh
    )
    betas = jnp.asarray([c.objective.beta for c in configs])
    metrics = []
    for _ in range(2):
        states, m = step(states, jnp.asarray(train_x), jnp.asarray(idx), jnp.stack(keys), betas)
        metrics.append(m)

    assert states.step.tolist() == [6] * 4
    for i, (state, single_metrics) in enumerate(singles):
        member = population.unstack(states.params, i)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
            member,
            state.params,
        )
        for got, want in zip(metrics, single_metrics, strict=True):
            for name in ("loss", "elbo", "kl", "beta"):
                np.testing.assert_allclose(got[name][i], want[name], rtol=2e-5, atol=1e-5)
    # The members really differ: seeds, learning rates and betas reached the update.
    assert len({float(metrics[-1]["loss"][i, -1]) for i in range(4)}) == 4
    np.testing.assert_allclose(metrics[0]["beta"][:, 0], [1.0, 1.0, 0.5, 0.5])
    lr_state = states.opt_state.hyperparams["learning_rate"]
    np.testing.assert_allclose(lr_state, [1e-3, 1e-3, 3e-3, 3e-3], rtol=1e-6)


def test_population_trial_end_to_end_matches_a_lone_run(fake_dir, tmp_path, monkeypatch):
    # Figures are tested elsewhere; here they only cost time.
    monkeypatch.setattr(experiment, "write_figures", lambda *args, **kwargs: [])
    config = _config(
        **{
            "data.data_dir": fake_dir,
            "eval.iwae_samples": 0,
            "train.checkpoint_every_steps": 1000,  # the final one only
            "train.steps_per_dispatch": 5,  # an epoch: one chunk shape, one compile
        }
    )
    members = [MEMBERS[0], {"seed": 0, "optim.learning_rate": 2e-3, "objective.beta": 2.0}]
    pop = population.train_and_evaluate_population(config, str(tmp_path / "pop"), members)
    alone = experiment.train_and_evaluate(
        population.member_configs(config, members)[1], str(tmp_path / "alone")
    )
    got = pop["members"][1]
    assert got["steps"] == alone["steps"] == 10
    for key in ("elbo", "log_likelihood", "kl", "nll_20"):
        np.testing.assert_allclose(got["test"][key], alone["test"][key], rtol=1e-5)
    np.testing.assert_allclose(got["valid"]["elbo"], alone["valid"]["elbo"], rtol=1e-5)
    saved = json.loads((tmp_path / "pop" / "members" / "1" / "results.json").read_text())
    assert saved["config"]["objective"]["beta"] == 2.0 and saved["config"]["seed"] == 0
    assert (tmp_path / "pop" / "members" / "0" / "metrics.jsonl").exists()

    # Rerunning resumes from the final checkpoint: no step is trained twice.
    again = population.train_and_evaluate_population(config, str(tmp_path / "pop"), members)
    assert again["steps"] == 10
    np.testing.assert_allclose(again["members"][1]["test"]["elbo"], got["test"]["elbo"])
    # Other members would continue this population's checkpoint: refused, naming them.
    with pytest.raises(ValueError, match=r"'members': .*new --workdir"):
        population.train_and_evaluate_population(config, str(tmp_path / "pop"), members[:1])


def test_members_may_differ_only_in_population_fields():
    with pytest.raises(ValueError, match=r"may differ only in .*model.latent_dim"):
        population.member_configs(_config(), [{"model.latent_dim": 4}])


@pytest.mark.parametrize(
    "field, value",
    [("optim.ema_decay", 0.999), ("data.num_valid", 0), ("train.fit_schedule_to_budget", True)],
)
def test_what_only_lone_runs_do_is_refused(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field.split('.')[1]}={value}.*separate trials"):
        population.train_and_evaluate_population(
            _config(**{field: value}), str(tmp_path), MEMBERS[:2]
        )


def test_per_member_learning_rates_need_a_traceable_schedule(fake_dir, tmp_path):
    config = _config(**{"data.data_dir": fake_dir, "optim.schedule": "exponential"})
    with pytest.raises(ValueError, match="Per-member learning rates need a schedule"):
        population.train_and_evaluate_population(config, str(tmp_path), MEMBERS[1:3])
