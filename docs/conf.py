"""Sphinx configuration of vaejax's documentation site (`make docs`)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaejax.version import __version__  # noqa: E402

project = "vaejax"
author = "the vaejax authors"
release = version = __version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and the tutorial notebook, not executed here
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the docstrings' Args: / Returns: / Raises: sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "img/*.md"]
nb_execution_mode = "off"  # tests/test_tutorial.py runs the notebook
myst_heading_anchors = 3  # links to a section: page.md#its-title
myst_enable_extensions = ["dollarmath"]

default_role = "code"  # `x` in a docstring is code, as in the Markdown pages
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_type_aliases = {"ArrayLike": "ArrayLike", "Params": "Params", "Gaussian": "Gaussian"}
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"vaejax {version}"
