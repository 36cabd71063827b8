"""Tests for benchmarks.breakdown: the wall-time split, the source attribution, a quick run."""

import os
import re
import subprocess
import sys

import pytest

from benchmarks import breakdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A compiled module's text as XLA dumps it: the stack-frame tables, then instructions.
MODULE = """HloModule jit_chunk

FileNames
1 "/src/vaejax/train.py"
2 "/site-packages/optax/_src/transform.py"
3 "/src/vaejax/likelihoods/bernoulli.py"

FunctionNames
1 "train_step"
2 "update_moment"
3 "Bernoulli.log_prob"

FileLocations
1 {file_name_id=1 function_name_id=1 line=264 end_line=264 column=1 end_column=9}
2 {file_name_id=2 function_name_id=2 line=88 end_line=88 column=1 end_column=9}
3 {file_name_id=3 function_name_id=3 line=70 end_line=70 column=1 end_column=9}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=1}
3 {file_location_id=3 parent_frame_id=1}

ENTRY %main {
  %dot.3 = f32[784,500]{1,0} dot(%a, %b), metadata={op_name="transpose" stack_frame_id=1}
  %ynn_fusion.1 = f32[128,500]{1,0} fusion(%a), backend_config={"kind":"__ynn_fusion"}
  %multiply_add_fusion = f32[500,784]{1,0} fusion(%c), metadata={stack_frame_id=2}
  %exp_fusion = f32[128,784]{1,0} fusion(%d), metadata={op_name="exp" stack_frame_id=3}
  %gather_fusion = f32[128,784]{1,0} fusion(%e), metadata={op_name="a/gather" stack_frame_id=1}
  %copy.7 = f32[500,784]{1,0} copy(%c)
  ROOT %tuple = (f32[]) tuple(%z)
}
"""


def test_attribute_splits_each_instant_among_the_thunks_running():
    # a alone for 5, a and b together for 5 (split evenly), b alone for 5; a gap of 5; c for 2.
    intervals = [(0, 10, "a"), (5, 15, "b"), (20, 22, "c")]
    got = breakdown.attribute(intervals, lambda name: name)
    assert got == pytest.approx({"a": 7.5, "b": 7.5, "c": 2.0})
    # Grouped, the same instants: the groups add up to the time anything ran (17 of 22).
    grouped = breakdown.attribute(intervals, lambda name: "ab" if name in "ab" else name)
    assert grouped == pytest.approx({"ab": 15.0, "c": 2.0})


def test_instructions_are_grouped_by_what_made_them():
    instructions = breakdown.parse_module(MODULE)
    groups = {name: breakdown.group_of(*instructions[name]) for name in instructions}
    assert groups["dot.3"] == groups["ynn_fusion.1"] == "matmuls"
    assert groups["multiply_add_fusion"] == "optimizer"
    assert groups["exp_fusion"] == "likelihood"
    assert groups["gather_fusion"] == "data"
    assert groups["copy.7"] == "copies"
    stack = ["/src/vaejax/likelihoods/bernoulli.py", "/src/vaejax/train.py"]
    assert instructions["exp_fusion"][1] == stack


def test_quick_run_accounts_for_the_whole_step():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.breakdown", "--models=mlp400", "--steps=100",
         "--repeats=1"],
        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
        timeout=600, check=True,
    ).stdout  # fmt: skip
    rows = dict(re.findall(r"^\| ([A-Za-z, ()]+?) \| ([\d.]+) \|", out, flags=re.M))
    rows = {k: float(v) for k, v in rows.items()}
    parts = [v for k, v in rows.items() if k != "traced step"]
    assert sum(parts) == pytest.approx(rows["traced step"], rel=0.02)
    assert rows["matmuls"] > 0 and rows["optimizer"] > 0 and rows["data"] > 0
    assert "The costliest thunks" in out and "dot_general" in out
