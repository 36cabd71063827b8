"""docs/tutorial.ipynb runs, top to bottom, on synthetic data (no network, no prepared dataset)."""

import pathlib

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_tutorial_runs(monkeypatch):
    monkeypatch.setenv("VAEJAX_TUTORIAL_DATA", "synthetic")  # the kernel inherits it
    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "TrainedModel(" in text and "log p(x): clean" in text and "NNX VAE" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
