"""The public API: names, version, and the README's import example."""

import re
from pathlib import Path

import pytest

import vaejax


def test_public_api():
    assert vaejax.__version__
    for name in vaejax.__all__:
        assert hasattr(vaejax, name), name
    assert vaejax.likelihoods.get("categorical", num_classes=16).num_classes == 16


ROOT = Path(__file__).parents[1]
# Pages whose Python examples run, in order, in one namespace per group.
PAGES = [
    ["README.md"],
    ["docs/guide/own_code.md", "docs/guide/hierarchies.md"],
    ["docs/guide/trained.md"],
    ["docs/guide/data.md"],
    ["docs/guide/conditional.md"],
]


@pytest.mark.parametrize("pages", PAGES, ids=lambda pages: pages[0])
def test_documented_examples_run(pages):
    """The Python examples of the README and the user guide run as written."""
    namespace = {}
    for page in pages:
        blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)
        assert blocks, f"{page} shows no Python example"
        for block in blocks:
            exec(compile(block, page, "exec"), namespace)
    if pages == ["README.md"]:
        assert "terms" in namespace and "codes" in namespace  # the ELBO and vaejax.load
