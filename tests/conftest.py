"""Test-wide JAX settings: catch silent broadcasting."""

import logging

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


@pytest.fixture(autouse=True)
def _loggers_left_working():
    """A test that disables vaejax's loggers (`logging.config` does, by default) fails itself,
    not a later test in the same worker that reads the log."""
    yield
    off = [
        n
        for n, lg in logging.root.manager.loggerDict.items()
        if n.startswith("vaejax") and getattr(lg, "disabled", False)
    ]
    assert not off, f"this test left these loggers disabled: {off}"
