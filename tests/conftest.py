"""Test-wide JAX settings: catch silent broadcasting."""

import jax
import pytest
from fakes import fake_tfds

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def fake_dir(tmp_path):
    """A data_dir in which mnist and binarized_mnist look prepared (see fakes.py)."""
    with fake_tfds(tmp_path) as path:
        yield path
