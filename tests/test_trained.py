"""vaejax.load: a trained work directory back in Python, its methods, and what it refuses."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import vaejax
from experiments.configs import test as test_config
from vaejax import data as data_lib
from vaejax import evaluate, experiment
from vaejax.checkpoints import Checkpointer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run on synthetic data, with a moving average and deterministic preprocessing.

    "unit_interval" data make no noise, so the loaded model's log-likelihood can be compared
    with the evaluation's figure exactly.
    """
    config = test_config.get_config()
    config.update_from_flattened_dict(
        {
            "data.name": "synthetic",
            "data.preprocessing": "unit_interval",
            "model.likelihood": "continuous_bernoulli",
            "optim.ema_decay": 0.9,
            "train.num_epochs": 1,
        }
    )
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    _, results = experiment.train_and_evaluate(config, workdir)
    return workdir, config, results


@pytest.fixture(scope="module")
def raw_test():
    return data_lib.synthetic_split("test")


def test_every_method_on_raw_images(run, raw_test):
    workdir, config, results = run
    model = vaejax.load(workdir)
    x, _ = raw_test
    x = x[:6]
    latent, shape = config.model.latent_dim, x.shape[1:]
    assert model.step == results["steps"] and model.data_shape == shape and model.ema
    assert model.preprocessing.name == "unit_interval" and "unit_interval" in repr(model)
    key = jax.random.key(0)
    q = model.encode(x)
    assert set(q) == set(model.model.posterior.param_names)
    expected = {
        "posterior_mean": (model.posterior_mean(x), (6, latent)),
        "decode": (model.decode(np.zeros((3, latent))), (3, *shape)),
        "reconstruct": (model.reconstruct(x), (6, *shape)),
        "sample": (model.sample(key, 4), (4, *shape)),
        "interpolate": (model.interpolate(x[0], x[1], 5), (5, *shape)),
        "interpolate batched": (model.interpolate(x[:2], x[2:4], 3), (2, 3, *shape)),
        "elbo": (model.elbo(key, x).elbo, (6,)),
        "log_likelihood": (model.log_likelihood(key, x, num_samples=16, chunk_size=8), (6,)),
    }
    for name, (value, want) in expected.items():
        assert value.shape == want and value.dtype == np.float32, name
        assert np.all(np.isfinite(value)), name
    interpolation = model.interpolate(x[0], x[1], 5)
    np.testing.assert_allclose(interpolation[0], model.reconstruct(x[:1])[0], atol=1e-6)
    np.testing.assert_allclose(interpolation[-1], model.reconstruct(x[1:2])[0], atol=1e-6)
    mask = model.active_units(raw_test[0])
    assert mask.shape == (latent,) and mask.dtype == bool
    assert mask.sum() == results["test"]["active_units"]  # on the same 80 test images
    assert np.all(model.to_pixels(model.sample(key, 2)) <= 1.0)


def test_reconstruct_decodes_the_posterior_mean(run, raw_test):
    model = vaejax.load(run[0])
    x = raw_test[0][:8]
    np.testing.assert_allclose(
        model.reconstruct(x), model.decode(model.posterior_mean(x)), rtol=1e-6, atol=1e-6
    )


def test_log_likelihood_is_the_evaluations_figure(run, raw_test):
    """The same samples and seed as `evaluate_test` give its nll figure (results.json)."""
    workdir, config, results = run
    model = vaejax.load(workdir)
    ev = config.eval
    key_eval = jax.random.fold_in(jax.random.key(config.seed), 3)  # the run's evaluation key
    _, _, key_nll = jax.random.split(jax.random.fold_in(key_eval, 10**6), 3)
    x = raw_test[0][: ev.num_test]
    log_px = [
        model.log_likelihood(
            jax.random.fold_in(key_nll, i),
            x[start : start + ev.batch_size],
            num_samples=ev.nll_samples,
            chunk_size=ev.nll_chunk_size,
        )
        for i, start in enumerate(range(0, len(x), ev.batch_size))
    ]
    nll = -float(np.mean(np.concatenate(log_px)))
    np.testing.assert_allclose(nll, results["test"][f"nll_{ev.nll_samples}"], rtol=1e-5)


def test_the_moving_average_is_loaded(run):
    model = vaejax.load(run[0])
    saved = Checkpointer(run[0]).restore()
    for got, ema, raw in zip(
        jax.tree.leaves(model.params),
        jax.tree.leaves(saved["ema_params"]),
        jax.tree.leaves(saved["params"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, ema)
        assert not np.array_equal(ema, raw)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x: x.astype(np.float32) / 255, r"raw data .*\(uint8\); got float32"),
        (lambda x: x[..., 0], r"batches of shape \[B, 28, 28, 1\]; got .*\(4, 28, 28\)"),
        (lambda x: x[0], r"Add a batch axis"),
        (lambda x: x.astype(np.int32) * 2, r"levels 0..255; got values in \[0, 5\d\d\]"),
    ],
)
def test_mismatched_data_is_refused(run, raw_test, make, match):
    model = vaejax.load(run[0])
    with pytest.raises(ValueError, match=match):
        model.encode(make(raw_test[0][:4]))


def test_a_missing_workdir_names_the_path(tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        vaejax.load(missing)
    with pytest.raises(FileNotFoundError, match="no checkpoints/"):
        vaejax.load(tmp_path)


def _resave(run_dir, new_dir, edit_metadata):
    """A copy of the run whose latest checkpoint was saved with edited metadata."""
    shutil.copytree(run_dir, new_dir)
    with Checkpointer(new_dir) as checkpointer:
        step = checkpointer.latest_step()
        tree, metadata = checkpointer.restore(), checkpointer.metadata()
        edit_metadata(metadata)
        checkpointer.save(step + 1, tree, metadata=metadata)
    return str(new_dir)


def test_another_format_version_is_refused(run, tmp_path):
    workdir = _resave(run[0], tmp_path / "v99", lambda m: m.update(format_version=99))
    with pytest.raises(ValueError, match="format version 99; this vaejax .* format version 1"):
        vaejax.load(workdir)
    workdir = _resave(run[0], tmp_path / "v0", lambda m: m.pop("format_version"))
    with pytest.raises(ValueError, match="format version 0 .* reads format version 1"):
        vaejax.load(workdir)


def test_a_tampered_config_is_refused(run, tmp_path):
    # config.json edited after training: named, with both values.
    workdir = tmp_path / "edited"
    shutil.copytree(run[0], workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["model"]["likelihood"] = "bernoulli"
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"'model.likelihood': \('continuous_bernoulli', 'bern"):
        vaejax.load(workdir)
    (workdir / "config.json").write_text('{"model": {"likelihood": "bernoulli",')  # not JSON
    with pytest.raises(ValueError, match=r"config.json is not valid JSON .*restore it, or delete"):
        vaejax.load(workdir)

    # The checkpoint's own record edited: its parameters do not fit, said before any restore.
    def wider(metadata):
        metadata["members"][0]["config"]["model"]["latent_dim"] = 3

    workdir = _resave(run[0], tmp_path / "wider", wider)
    os.remove(os.path.join(workdir, "config.json"))
    with pytest.raises(ValueError, match=r"does not fit the model .*\(16, 2\), \(16, 3\)"):
        vaejax.load(workdir)


_RESAVE_ON_FOUR_DEVICES = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from vaejax.checkpoints import Checkpointer

    assert len(jax.devices()) == 4
    with Checkpointer(sys.argv[1]) as checkpointer:
        step, tree = checkpointer.latest_step(), checkpointer.restore()
        metadata = checkpointer.metadata()
        mesh = Mesh(np.array(jax.devices()), ("data",))
        tree = jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
        checkpointer.save(step + 1, tree, metadata=metadata)
    """
)


def test_a_checkpoint_saved_on_four_devices_loads_on_one(run, raw_test, tmp_path):
    workdir = tmp_path / "four"
    shutil.copytree(run[0], workdir)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    subprocess.run(
        [sys.executable, "-c", _RESAVE_ON_FOUR_DEVICES, str(workdir)],
        env=env,
        check=True,
        capture_output=True,
    )
    assert len(jax.devices()) == 1
    moved, original = vaejax.load(workdir), vaejax.load(run[0])
    assert moved.step == original.step + 1
    x = raw_test[0][:4]
    np.testing.assert_array_equal(moved.posterior_mean(x), original.posterior_mean(x))


def test_a_population_member(tmp_path, raw_test):
    """A population's work directory: one member at a time, each its own trained model."""
    config = test_config.get_config()
    config.update_from_flattened_dict({"data.name": "synthetic", "train.num_epochs": 1})
    workdir = str(tmp_path / "pop")
    state, _ = experiment.train_and_evaluate(config, workdir, members=[{"seed": 0}, {"seed": 1}])
    with pytest.raises(ValueError, match="a population of 2 models; pass member=i"):
        vaejax.load(workdir)
    with pytest.raises(ValueError, match=r"member must be in \[0, 2\)"):
        vaejax.load(workdir, member=2)
    x = raw_test[0][:4]
    for i in range(2):
        model = vaejax.load(workdir, member=i)
        assert model.config.seed == i
        for got, want in zip(
            jax.tree.leaves(model.params),
            jax.tree.leaves(jax.tree.map(lambda a, i=i: a[i], state.eval_params)),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(
        vaejax.load(workdir, member=0).posterior_mean(x),
        vaejax.load(workdir, member=1).posterior_mean(x),
    )


def test_a_zero_chunk_size_is_named_chunk_size(run, raw_test):
    model = vaejax.load(run[0])
    x, key = raw_test[0][:4], jax.random.key(0)
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1; got 0"):
        model.log_likelihood(key, x, num_samples=10, chunk_size=0)
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1; got 0"):
        model.log_likelihood(key, x, num_samples=0)
    y, _ = model.preprocess(x)
    with pytest.raises(ValueError, match=r"^chunk_size must be an integer >= 1; got 0"):
        evaluate.log_px(model.model, model.params, key, y, num_samples=10, chunk_size=0)


@pytest.mark.parametrize(
    "key, got",
    [
        (0, "got int 0"),
        (np.zeros(3, np.uint32), r"got a uint32 array of shape \(3,\)"),
        (jax.random.split(jax.random.key(0), 2), r"got a key<fry> array of shape \(2,\)"),
    ],
    ids=["int", "wrong-shape", "batch-of-keys"],
)
def test_a_key_that_is_not_a_jax_random_key_is_refused_up_front(run, raw_test, key, got):
    model = vaejax.load(run[0])
    x = raw_test[0][:4]
    expected = r"key must be a jax\.random\.key\(\.\.\.\) or PRNGKey array.*" + got
    for call in (
        lambda: model.elbo(key, x),
        lambda: model.log_likelihood(key, x, num_samples=4),
        lambda: model.sample(key, 2),
        lambda: model.preprocess(x, key),
    ):
        with pytest.raises(ValueError, match=expected):
            call()
    # Both kinds of key still work.
    assert model.elbo(jax.random.PRNGKey(0), x).elbo.shape == (4,)
    assert model.elbo(jax.random.key(0), x).elbo.shape == (4,)


def test_loading_while_the_run_trains_changes_none_of_its_files(tmp_path):
    """Was: vaejax.load in a loop beside a run that saved every few steps killed the run at its
    next save (the loader's Orbax manager removed the trainer's in-flight temporary step)."""
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "experiments.mnist", "--config=experiments/configs/test.py",
        f"--workdir={workdir}", "--config.data.name=synthetic", "--config.train.num_epochs=6",
        "--config.train.checkpoint_every_steps=4", "--config.train.steps_per_dispatch=1",
        "--config.eval.nll_samples=0", "--config.eval.iwae_samples=0",
    ]  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trainer = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    loads = 0
    while trainer.poll() is None:  # as fast as it goes, against every save
        try:
            vaejax.load(workdir)
            loads += 1
        except FileNotFoundError:  # before the first checkpoint
            pass
    _, stderr = trainer.communicate()
    assert trainer.returncode == 0, stderr.decode()[-2000:]
    assert loads > 5 and (workdir / "results.json").exists()
    assert not os.path.exists(workdir / "bad_checkpoints")


def test_a_binarized_models_score_can_be_the_same_for_every_key(run, raw_test):
    """Was: log_likelihood of grayscale images drew a fresh binarization per call, unsaid."""
    loaded = vaejax.load(run[0])
    model = dataclasses.replace(loaded, preprocessing=data_lib.Preprocessing("dynamic_binarize"))
    x = raw_test[0][:8]
    score = lambda k, images, **kw: np.asarray(
        model.log_likelihood(jax.random.key(k), images, num_samples=64, chunk_size=32, **kw)
    )
    drawn = [score(k, x) for k in range(3)]
    fixed = [score(k, x, binarize="threshold") for k in range(3)]
    thresholded = ((x / 255.0 >= 0.5) * 255).astype(np.uint8)
    np.testing.assert_array_equal(fixed[0], score(0, thresholded))  # the thresholded image's
    assert np.ptp(fixed, axis=0).max() < np.ptp(drawn, axis=0).max()  # only the samples' noise
    with pytest.raises(ValueError, match="for a model of binarized data.*'unit_interval'"):
        loaded.log_likelihood(jax.random.key(0), x, binarize="threshold")
