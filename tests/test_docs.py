"""The documentation site builds with no warning: a renamed function or a broken link fails."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_docs_build_with_no_warnings(tmp_path):
    dirs = ["-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", *dirs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-5000:]
    html = tmp_path / "html"
    api = (html / "api" / "math.html").read_text()
    assert "estimate_log_likelihood" in api and "Returns" in api  # generated from the docstrings
    for page in ("guide/own_code", "guide/data", "results/benchmarks", "tutorial"):
        assert (html / f"{page}.html").exists(), page
