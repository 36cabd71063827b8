"""The public API: names, version, and the README's import example."""

import re
from pathlib import Path

import vaejax


def test_public_api():
    assert vaejax.__version__
    for name in vaejax.__all__:
        assert hasattr(vaejax, name), name
    assert vaejax.likelihoods.get("categorical", num_classes=16).num_classes == 16


def test_readme_example_runs():
    """The README's Python examples run as written, in order, in one namespace."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert any("vaejax.elbo" in b for b in blocks), "README must show a vaejax.elbo example"
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
