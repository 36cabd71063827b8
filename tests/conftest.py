"""Test-wide JAX settings: catch silent broadcasting."""

import jax
import pytest
from fakes import fake_tfds

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    """Each test caches decoded splits in its own directory, never in ~/.cache."""
    monkeypatch.setenv("VAEJAX_CACHE_DIR", str(tmp_path / "vaejax_cache"))


@pytest.fixture
def fake_dir(tmp_path):
    """A data_dir in which mnist and binarized_mnist look prepared (see fakes.py)."""
    with fake_tfds(tmp_path) as path:
        yield path
