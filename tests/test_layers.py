"""The import structure: the four layers of pyproject's contracts, and a light `import vaejax`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
# What the application layer brings in; the math and the models need none of it.
HEAVY = ("matplotlib", "tensorboardX", "optuna", "orbax", "tqdm", "tensorflow_datasets")


def test_layers_and_no_cycles():
    """application > pipeline > models > math, no module imports a higher layer, and no cycles
    (an import inside a function counts too).

    In its own process: import-linter's CLI calls `logging.config.dictConfig`, which disables
    every logger already made (vaejax's too) for the rest of the process it runs in.
    """
    code = (
        "import sys; from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_import_vaejax_loads_no_application_packages():
    code = (
        "import sys, vaejax\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert callable(vaejax.load) and 'orbax' in sys.modules\n"  # reachable, lazily
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
