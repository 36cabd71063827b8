"""One benchmark, two checkouts, alternating processes: does a change move the speed?

  git worktree add ../base <commit>
  python -m benchmarks.commits --base=../base --rounds=3 -- \
      benchmarks.throughput --models=mlp500,burda_b100,conv --peers=

runs `python -m <module> <args> --json=...` in `--base` and in this checkout in turn (base first
in even rounds, this one first in odd ones), each with its own code on `PYTHONPATH`, and prints,
per result row, the median of each side's `vaejax_steps_per_s` and of their per-round ratio. Both
sides run on the same machine minutes apart, so drift moves both alike.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from absl import app, flags

from benchmarks import common

FLAGS = flags.FlagValues()
flags.DEFINE_string("base", None, "The checkout to compare against.", flag_values=FLAGS)
flags.DEFINE_integer(
    "rounds", 3, "Alternating rounds (one process per side each).", flag_values=FLAGS
)
flags.DEFINE_string("metric", "vaejax_steps_per_s", "The result field compared.", flag_values=FLAGS)

HERE = pathlib.Path(__file__).resolve().parents[1]


def run_side(root: pathlib.Path, module: str, args: Sequence[str]) -> list[dict]:
    """`python -m module args` with `root`'s code; its `--json` results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        env = os.environ | {"PYTHONPATH": str(root)}
        cmd = [sys.executable, "-m", module, *args, f"--json={out}"]
        subprocess.run(cmd, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["results"]


def compare(base: pathlib.Path, module: str, args: Sequence[str], *, rounds: int, metric: str):
    """Per row (model): each side's metric over the rounds, and the ratio this / base."""
    sides = {"base": base, "this": HERE}
    values: dict[str, dict[str, list[float]]] = {}
    for r in range(rounds):
        for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            for row in run_side(sides[side], module, args):
                values.setdefault(row["model"], {"base": [], "this": []})[side].append(row[metric])
    rows = []
    for model, v in values.items():
        ratio = [t / b for t, b in zip(v["this"], v["base"], strict=True)]
        rows.append(
            [model, f"{common.median(v['base']):.1f}", f"{common.median(v['this']):.1f}",
             f"{common.median(ratio):.3f} [{common.spread(ratio)}]"]
        )  # fmt: skip
    return rows


def main(argv: Sequence[str]) -> list[list[str]]:
    """`argv`: this script's flags, `--`, then the benchmark's module and its flags."""
    if "--" not in argv:
        raise app.UsageError("usage: python -m benchmarks.commits --base=DIR -- MODULE [FLAGS]")
    split = list(argv).index("--")
    common.parse_flags(FLAGS, argv[:split])
    module, *args = argv[split + 1 :]
    if not FLAGS.base or not (pathlib.Path(FLAGS.base) / "vaejax").is_dir():
        raise app.UsageError(f"--base={FLAGS.base!r} must be a vaejax checkout.")
    print(common.describe_machine(), flush=True)
    rows = compare(
        pathlib.Path(FLAGS.base).resolve(), module, args, rounds=FLAGS.rounds, metric=FLAGS.metric
    )
    headers = ["model", f"base {FLAGS.metric}", f"this {FLAGS.metric}", "this / base [range]"]
    print(common.markdown_table(headers, rows), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv)
