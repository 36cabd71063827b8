"""benchmarks.peers reads the upstream examples from their directories, and only what it names."""

import textwrap

import numpy as np
import pytest

from benchmarks import peers


def test_only_the_named_definitions_of_a_script_run(tmp_path):
    (tmp_path / "main.py").write_text(
        textwrap.dedent(
            """\
            import a_module_that_is_not_installed
            raise SystemExit("the script's body ran")
            def f(x):
                return g(x) + 1
            class C:
                v = 3
            """
        )
    )
    ns = peers.load_definitions(tmp_path / "main.py", ("f", "C"), {"g": lambda x: 2 * x})
    assert ns["f"](3) == 7 and ns["C"].v == 3
    with pytest.raises(ValueError, match=r"does not define \['h'\].*18f8f311"):
        peers.load_definitions(tmp_path / "main.py", ("f", "h"), {})


def test_an_unset_peer_is_none_and_a_wrong_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(peers.FLAX_ENV, raising=False)
    assert peers.peer_dir(None, peers.FLAX_ENV, "train.py") is None
    assert peers.peer_dir("", peers.FLAX_ENV, "train.py") is None
    monkeypatch.setenv(peers.FLAX_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"has no train\.py.*google/flax examples/vae"):
        peers.peer_dir(None, peers.FLAX_ENV, "train.py")
    (tmp_path / "train.py").write_text("")
    assert peers.peer_dir(None, peers.FLAX_ENV, "train.py") == tmp_path
    assert "column skipped" in peers.missing_line("flax", peers.FLAX_ENV)


def test_the_flax_example_is_driven_through_its_own_model_and_step(tmp_path):
    # A stand-in with the upstream example's interface: `models.model(latents)` and
    # `train_step(state, batch, z_rng, latents)` returning the new state.
    (tmp_path / "models.py").write_text(
        textwrap.dedent(
            """\
            from flax import linen as nn

            class VAE(nn.Module):
                latents: int

                @nn.compact
                def __call__(self, x, z_rng):
                    return nn.Dense(784)(nn.Dense(self.latents)(x))

            def model(latents):
                return VAE(latents)
            """
        )
    )
    (tmp_path / "train.py").write_text(
        textwrap.dedent(
            """\
            import tensorflow  # the upstream file imports it; never executed here

            def train_step(state, batch, z_rng, latents):
                apply = lambda p: models.model(latents).apply({"params": p}, batch, z_rng)
                loss = lambda p: jnp.mean((apply(p) - batch) ** 2)
                return state.apply_gradients(grads=jax.grad(loss)(state.params))

            def kl_divergence(mean, logvar):
                return 0.0

            def binary_cross_entropy_with_logits(logits, labels):
                return 0.0
            """
        )
    )
    x = (np.random.default_rng(0).random((64, 28, 28, 1)) > 0.5).astype(np.float32)
    loop = peers.FlaxExampleLoop(tmp_path, x, batch_size=16)
    before = loop.state.params["Dense_1"]["bias"].copy()
    assert loop.run(5) == 5 and int(loop.state.step) == 5  # crosses an epoch of 4 batches
    assert not np.allclose(before, loop.state.params["Dense_1"]["bias"])
