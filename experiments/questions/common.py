"""What the design-question experiments share: run named variants, restore them, report.

Each question module (`encoder_heads`, `output_likelihoods`, `posterior_scale`,
`decoder_variance`) trains a few named variants, each in its own `<workdir>/<name>/` through
`experiment.train_and_evaluate`, then writes a markdown table and figures for the docs. Only the
block between `RESULTS_START` and `RESULTS_END` of `<docs_dir>/<question>.md` is rewritten, so
the hand-written text around it stays; figures go to `<docs_dir>/img/questions/`.

Rerunning a question skips every variant whose `results.json` exists (a variant killed mid-way
resumes from its checkpoints) and redoes only the report. A variant whose loss goes non-finite
is a result, not a crash: its `results.json` records the step it diverged at.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import math
import os
import pathlib
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging as absl_logging
from matplotlib.figure import Figure

from experiments.configs import mnist
from vaejax import data as data_lib
from vaejax import experiment, networks, plots
from vaejax.checkpoints import Checkpointer

log = logging.getLogger(__name__)

DOCS_DIR = pathlib.Path(__file__).resolve().parents[2] / "docs"
FIGURES_DIR = "img/questions"  # under the docs directory
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
RESULTS_FILE = "results.json"
DIVERGED = "diverged_at_step"  # results.json key of a run stopped by a non-finite loss


# ---- configs and data


def base_config(quick: bool = False) -> ml_collections.ConfigDict:
    """The MNIST config every question starts from: an MLP VAE, evaluated without IWAE.

    `quick`: synthetic data, a 16-unit MLP and one short epoch, for tests (seconds).
    """
    config = mnist.get_config("mlp")
    # The rate and batch size the pages' results were reached with:
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 100
    config.model.hidden_sizes = (500,)
    config.model.latent_dim = 20
    config.train.progress_bar = False
    config.train.checkpoint_every_steps = 500  # an epoch: a diverged run keeps recent params
    config.eval.iwae_samples = 0
    config.eval.nll_samples = 1000
    config.eval.nll_chunk_size = 250
    if quick:
        config.data.name = data_lib.SYNTHETIC
        config.data.num_valid = 40  # 200 train examples: 10 steps an epoch at batch 20
        config.model.hidden_sizes = (16,)
        config.model.latent_dim = 3  # > 2: no latent-space figures
        config.train.batch_size = 20
        config.train.num_epochs = 1
        config.train.steps_per_dispatch = 10
        config.train.checkpoint_every_steps = 10
        config.eval.nll_samples = 4
        config.eval.nll_chunk_size = 4
        config.eval.batch_size = 20
    return config


def load_data(config: ml_collections.ConfigDict) -> data_lib.Data:
    """The splits `train_and_evaluate` would load for `config` (decoded splits are cached)."""
    return data_lib.load(
        config.data.name,
        preprocessing=config.data.preprocessing,
        data_dir=config.data.get("data_dir"),
        num_valid=config.data.num_valid,
        seed=config.seed,
    )


def copy_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return copy.deepcopy(config)


def describe(
    config: ml_collections.ConfigDict,
    *,
    data: str | None = None,
    model: str | None = None,
    optimizer: str | None = None,
) -> str:
    """One line saying what was trained and how, from the config (or the given descriptions)."""
    c = config
    data = data or f"{c.data.name} ({c.data.preprocessing})"
    optimizer = optimizer or f"Adam {c.optim.learning_rate:g} ({c.optim.schedule} schedule)"
    model = model or (
        f"MLP {'-'.join(map(str, c.model.hidden_sizes))} {c.model.activation}, "
        f"latent {c.model.latent_dim}"
    )
    evaluation = f"ELBO and NLL-{c.eval.nll_samples}" if c.eval.nll_samples else "ELBO"
    if c.eval.get("num_test"):
        evaluation += f" on the first {c.eval.num_test} test images"
    return (
        f"{data}, {model}, {c.train.num_epochs} epoch{'s' * (c.train.num_epochs != 1)} "
        f"at batch {c.train.batch_size}, "
        f"{optimizer}, seed {c.seed}; "
        f"test: {evaluation} (nats)."
    )


# ---- running variants


def train_variant(
    workdir: str | os.PathLike,
    name: str,
    config: ml_collections.ConfigDict,
    *,
    model: networks.VAE | None = None,
    data: data_lib.Data | None = None,
) -> dict[str, Any]:
    """Trains variant `name` in `<workdir>/<name>` and returns its results.

    A variant with a `results.json` is not rerun. A run stopped by a non-finite loss returns
    (and saves) `{DIVERGED: step, "error": message}` instead of raising.
    """
    run_dir = run_directory(workdir, name)
    path = run_dir / RESULTS_FILE
    if path.exists():
        log.info("%s: done before, reading %s", name, path)
        return json.loads(path.read_text())
    log.info("%s: training in %s", name, run_dir)
    try:
        return experiment.train_and_evaluate(config, str(run_dir), model=model, data=data)[1]
    except experiment.NonFiniteLossError as e:
        log.warning("%s diverged: %s", name, e)
        results = {DIVERGED: e.step, "error": str(e), "config": config.to_dict()}
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str))
        return results


def run_directory(workdir: str | os.PathLike, name: str) -> pathlib.Path:
    return pathlib.Path(workdir) / name


def restore_params(run_dir: str | os.PathLike) -> Any | None:
    """The params of the latest checkpoint in `run_dir` on the host; None if there is none."""
    if not (pathlib.Path(run_dir) / "checkpoints").exists():
        return None
    with Checkpointer(run_dir) as checkpointer:
        if checkpointer.latest_step() is None:
            return None
        return jax.device_get(checkpointer.restore()["params"])


def cached(path: str | os.PathLike, compute: Callable[[], dict]) -> dict:
    """`compute()`, saved as JSON at `path`; read back from there on later runs."""
    path = pathlib.Path(path)
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value, indent=2, default=float))
    return value


def image_panels(
    model: networks.VAE, params: Any, d: data_lib.Data, key: jax.Array, *, num: int = 8
) -> dict[str, np.ndarray]:
    """Images in [0, 1]: `num` reconstructions of the first test images and prior samples.

    Reconstructions are the decoder's mean at the posterior mean. Samples are z ~ N(0, I)
    decoded to the mean of p(x | z) ("sample: mean") and to a draw x ~ p(x | z), the pixel
    noise the likelihood models included ("sample: draw").
    """
    encode, decode = networks.bind(model, params)
    likelihood = model.likelihood
    k_z, k_x = jax.random.split(key)
    z = jax.random.normal(k_z, (num, model.encoder.latent_dim))
    out = decode(z)
    show = lambda a: d.preprocessing.to_pixels(np.asarray(a, np.float32))
    return {
        "reconstruction": show(likelihood.mean(decode(encode(jnp.asarray(d.test[:num]))["mean"]))),
        "sample: mean": show(likelihood.mean(out)),
        "sample: draw": show(likelihood.sample(k_x, out)),
    }


# ---- reporting


def number(x: Any, digits: int = 2) -> str:
    """A table cell: `x` rounded, or an em dash when it is missing or not finite."""
    if x is None or isinstance(x, str):
        return x or "—"
    x = float(x)
    return f"{x:.{digits}f}" if math.isfinite(x) else "—"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; a "|" inside a cell is escaped."""
    line = lambda cells: "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + " --- |" * len(header), *map(line, rows)])


def diverged_note(results: Mapping[str, Any]) -> str:
    return f"diverged at step {results[DIVERGED]}"


def figure_path(docs_dir: str | os.PathLike, name: str) -> tuple[pathlib.Path, str]:
    """Where figure `name` goes, and the link to it from a page in `docs_dir`."""
    return pathlib.Path(docs_dir) / FIGURES_DIR / name, f"{FIGURES_DIR}/{name}"


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight", dpi=100)
    return path


def save_image_table(
    path: pathlib.Path, cells: Mapping[str, Mapping[str, np.ndarray | None]], *, ncols: int = 4
) -> pathlib.Path:
    """One row per variant, one column per kind of image; each cell a grid of [0, 1] images.

    Args:
      path: PNG file to write.
      cells: `{row label: {column label: images [N, H, W(, C)] in [0, 1], or None}}`.
      ncols: images per line within a cell.
    """
    rows = list(cells)
    columns = list(dict.fromkeys(c for row in cells.values() for c in row))
    titled: set[str] = set()
    fig = Figure(figsize=(1.8 + 2.2 * len(columns), 0.3 + 1.25 * len(rows)), layout="constrained")
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = fig.add_subplot(len(rows), len(columns), r * len(columns) + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            images = cells[row].get(column)
            if images is None:
                ax.set_axis_off()
                continue
            grid = plots.image_grid(plots.to_unit_range(images, (0.0, 1.0)), ncols=ncols)
            grid = grid[..., 0] if grid.ndim == 3 and grid.shape[-1] == 1 else grid
            ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if column not in titled:  # the column's first image cell carries its title
                ax.set_title(column, fontsize="medium")
                titled.add(column)
            if c == 0 or all(cells[row].get(k) is None for k in columns[:c]):
                label = textwrap.fill(row, 24)
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    return _save(fig, path)


def save_lines(
    path: pathlib.Path,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    xlabel: str,
    xscale: str = "linear",
) -> pathlib.Path:
    """One subplot per panel title, one line per label: `{title: {label: (xs, ys)}}`."""
    fig = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
    for i, (title, lines) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_xscale(xscale)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def provenance(module: str, quick: bool) -> str:
    line = f"_Written by `python -m experiments.questions.{module}` on {datetime.date.today()}._"
    if quick:
        line += (
            "\n\n**`--quick` run: synthetic data, a tiny model and a few steps. "
            "These numbers test the code; they answer nothing.**"
        )
    return line


def write_results(docs_dir: str | os.PathLike, page: str, block: str) -> pathlib.Path:
    """Replaces the results block of `<docs_dir>/<page>.md`; creates a bare page if none.

    Raises:
      ValueError: the page exists without a results block.
    """
    path = pathlib.Path(docs_dir) / f"{page}.md"
    if path.exists():
        text = path.read_text()
    else:
        text = f"# {page}\n\n{RESULTS_START}\n{RESULTS_END}\n"
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{path} has no results block to rewrite. Put a line {RESULTS_START} and, after it, "
            f"a line {RESULTS_END} where the results go; the text around them is kept."
        )
    text = f"{text[: start + len(RESULTS_START)]}\n{block.strip()}\n{text[end:]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log.info("Wrote the results block of %s", path)
    return path


# ---- the entry points' shared main


def main(run: Callable[..., Any], argv: Sequence[str] | None, doc: str | None) -> None:
    """Parses `--workdir`, `--docs_dir` and `--quick` and calls `run(workdir, docs_dir=, quick=)`.

    Without `--docs_dir`, a real run writes into the repository's docs/ and a `--quick` run into
    `<workdir>/docs`, so a quick try never overwrites the published results.
    """
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="One sub-directory per variant.")
    parser.add_argument(
        "--docs_dir",
        default=None,
        help=f"Where <question>.md and {FIGURES_DIR}/ are (default: the repository's docs/; "
        "<workdir>/docs with --quick).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="Synthetic data, tiny model, seconds: a smoke test."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    for name in ("vaejax", "experiments"):
        logging.getLogger(name).setLevel(logging.INFO)
    docs_dir = args.docs_dir or (
        os.path.join(args.workdir, "docs") if args.quick else str(DOCS_DIR)
    )
    run(args.workdir, docs_dir=docs_dir, quick=args.quick)
