"""Where a training step's milliseconds go: every XLA operation of vaejax's loop, profiled.

  python -m benchmarks.breakdown                      # the 784-500-20 MLP, batch 128
  python -m benchmarks.breakdown --models=burda_b100 --steps=500

vaejax's loop (`benchmarks.loop.VaejaxLoop`, the chunks `vaejax/experiment.py` runs) is
timed plain, `--repeats` times, then run once under `jax.profiler`. XLA:CPU executes a compiled
step as a sequence of thunks (a matmul, a fusion of elementwise work, a copy, a gather), each
recorded by the profiler on the thread that ran it. Each thunk is traced back, through the
stack frames XLA keeps in the compiled module (dumped with `--xla_dump_to`), to the source line
that made it, and grouped:

  matmuls       dots and XNNPACK (ynn) fusions, forward and backward;
  optimizer     optax: Adam's moments and the parameter update;
  likelihood    `vaejax/likelihoods/`: the decoder's log-density and its gradient;
  sample, KL    the reparameterized sample (random bits), the posterior, the prior, the KL;
  network       bias adds, activations and their gradients (`vaejax/networks.py`, Flax);
  conv lowering the patches and phase shuffles of convolutions run as matmuls (`vaejax/conv.py`);
  data          the batch gathered from the resident training set, dynamic binarization;
  objective     the rest of `vaejax/objectives.py` and `vaejax/train.py` (reductions, metrics);
  copies        buffer copies XLA inserted; other: whatever is left.

Times are wall milliseconds per step of the traced run: each instant is split evenly among the
thunks running then, on any of XLA's threads, so the groups and the time no thunk ran (the
loop's dispatch, a thread waiting on another) add up to the step. The matmul bound
(`benchmarks.common.matmul_bound`: the step's dots replayed alone) is printed beside them.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from absl import flags

from benchmarks import common

GROUPS = (
    "matmuls",
    "optimizer",
    "likelihood",
    "sample, KL",
    "network",
    "conv lowering",
    "data",
    "objective",
    "copies",
    "other",
)
_FILES = (  # the innermost source file that made an operation -> its group
    ("/optax/", "optimizer"),
    ("/flax/training/", "optimizer"),
    ("vaejax/likelihoods/", "likelihood"),
    ("vaejax/posteriors.py", "sample, KL"),
    ("vaejax/priors.py", "sample, KL"),
    ("vaejax/conv.py", "conv lowering"),
    ("vaejax/networks.py", "network"),
    ("/flax/linen/", "network"),
    ("vaejax/data.py", "data"),
    ("vaejax/objectives.py", "objective"),
    ("vaejax/train.py", "objective"),
)
_CONTAINERS = ("ThunkExecutor", "ThreadpoolListener", "end: ", "while", "call", "conditional")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$")


def parse_module(text: str) -> dict[str, tuple[str, list[str]]]:
    """Instruction name -> (its text, the source files of its stack, innermost first), from a
    compiled module's HLO text (with its FileNames / FileLocations / StackFrames tables)."""
    tables: dict[str, dict[int, str]] = {}
    section = None
    instructions: dict[str, str] = {}
    for line in text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = line
            tables[section] = {}
            continue
        row = re.match(r"^(\d+) (.*)$", line)
        if section and row:
            tables[section][int(row.group(1))] = row.group(2)
            continue
        section = None
        m = _INSTRUCTION.match(line)
        if m:
            instructions[m.group(1)] = m.group(2)
    files = {i: s.strip('"') for i, s in tables.get("FileNames", {}).items()}
    location_file = {
        i: files.get(int(re.search(r"file_name_id=(\d+)", s).group(1)), "")
        for i, s in tables.get("FileLocations", {}).items()
    }
    frames = {
        i: (
            int(re.search(r"file_location_id=(\d+)", s).group(1)),
            int(re.search(r"parent_frame_id=(\d+)", s).group(1)),
        )
        for i, s in tables.get("StackFrames", {}).items()
    }

    def stack(frame: int) -> list[str]:
        out, seen = [], set()
        while frame in frames and frame not in seen:
            seen.add(frame)
            location, parent = frames[frame]
            out.append(location_file.get(location, ""))
            frame = parent
        return out

    out = {}
    for name, body in instructions.items():
        frame = re.search(r"stack_frame_id=(\d+)", body)
        out[name] = (body, stack(int(frame.group(1))) if frame else [])
    return out


def group_of(body: str, stack: Sequence[str]) -> str:
    """The group of one compiled instruction (see the module docstring)."""
    if re.match(r"\S+ dot\(", body) or "__ynn_fusion" in body:
        return "matmuls"
    if re.match(r"\S+ copy\(", body):
        return "copies"
    if "/gather" in body and stack and stack[0].endswith("vaejax/train.py"):
        return "data"  # the batch, gathered from the resident training set
    if "/random/" in body or "_normal" in body or "threefry" in body:
        return "sample, KL"
    for file in stack:
        for pattern, group in _FILES:
            if pattern in file:
                return group
    return "other"


def thunk_intervals(xplane_path: str) -> list[tuple[float, float, str]]:
    """(start, end, thunk name), in nanoseconds, of every thunk XLA:CPU ran while tracing."""
    import jax.profiler

    data = jax.profiler.ProfileData.from_file(xplane_path)
    return [
        (event.start_ns, event.end_ns, event.name)
        for plane in data.planes
        for line in plane.lines
        if line.name.startswith(("tf_XLAEigen", "tf_XLAPjRtCpuClient"))
        for event in line.events
        if not event.name.startswith(_CONTAINERS) and event.end_ns > event.start_ns
    ]


def attribute(intervals: Sequence[tuple[float, float, str]], group: Callable[[str], str]):
    """Wall nanoseconds per group: each instant is split evenly among the thunks running then
    (on any thread), so the groups add up to the time anything ran."""
    edges = sorted({t for start, end, _ in intervals for t in (start, end)})
    where = {t: i for i, t in enumerate(edges)}
    active = [collections.Counter() for _ in edges]  # group -> thunks running from edge i
    for start, end, name in intervals:
        active[where[start]][group(name)] += 1
        active[where[end]][group(name)] -= 1
    out: dict[str, float] = collections.defaultdict(float)
    running: collections.Counter = collections.Counter()
    for i in range(len(edges) - 1):
        running.update(active[i])
        n = sum(running.values())
        for g, k in running.items():
            if k:
                out[g] += (edges[i + 1] - edges[i]) * k / n
    return dict(out)


def _op_name(body: str) -> str:
    m = re.search(r'op_name="([^"]*)"', body)
    return m.group(1).removeprefix("jit(chunk)/while/body/closed_call/") if m else ""


def breakdown(
    model_name: str, *, steps: int, repeats: int, dump_dir: str, top_thunks: int = 12
) -> dict:
    import jax

    from benchmarks import loop as loop_lib

    m = loop_lib.models()[model_name]
    # Two epochs of whole chunks: one chunk length, so one compiled module names every thunk.
    x = common.synthetic_binary_images(2 * m.batch_size * m.steps_per_dispatch)
    before = set(glob.glob(os.path.join(dump_dir, "*jit_chunk.cpu_after_optimizations.txt")))
    loop = loop_lib.VaejaxLoop(m, x, steps_per_dispatch=m.steps_per_dispatch)
    loop.warm_up()
    steps = max(steps // m.steps_per_dispatch, 1) * m.steps_per_dispatch
    loop.run(steps)

    def ms_per_step() -> float:
        start = time.perf_counter()
        done = loop.run(steps)  # blocks: it reads each chunk's metrics on the host
        return 1e3 * (time.perf_counter() - start) / done

    wall = [ms_per_step() for _ in range(repeats)]
    step_fn, step_args = loop.single_step()
    bound_ms = 1e3 * common.matmul_bound(common.matmul_ops(step_fn, *step_args))(max(steps // 4, 1))

    trace_dir = os.path.join(dump_dir, f"trace_{m.name}")
    with jax.profiler.trace(trace_dir):
        traced_ms = ms_per_step()
    (xplane,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    (module,) = (
        set(glob.glob(os.path.join(dump_dir, "*jit_chunk.cpu_after_optimizations.txt"))) - before
    )
    with open(module) as f:
        instructions = parse_module(f.read())
    intervals = thunk_intervals(xplane)
    group = lambda name: group_of(*instructions[name]) if name in instructions else "other"
    per_group = attribute(intervals, group)
    per_step = {g: per_group.get(g, 0.0) / 1e6 / steps for g in GROUPS}
    per_thunk = sorted(attribute(intervals, lambda name: name).items(), key=lambda kv: -kv[1])
    top = [
        (name, group(name), ns / 1e6 / steps, _op_name(instructions.get(name, ("", []))[0]))
        for name, ns in per_thunk[:top_thunks]
    ]
    return {
        "model": m.name,
        "description": m.description,
        "steps": steps,
        "repeats": repeats,
        "wall_ms_per_step": common.median(wall),
        "wall_ms_range": common.spread(wall),
        "traced_wall_ms_per_step": traced_ms,
        "matmul_bound_ms_per_step": bound_ms,
        "ms_per_step": per_step,
        "busy_ms_per_step": sum(per_step.values()),
        "idle_ms_per_step": traced_ms - sum(per_step.values()),
        "top_thunks": top,
    }


def table(res: dict) -> str:
    wall = res["traced_wall_ms_per_step"]
    rows = [[g, ms, 100 * ms / wall] for g, ms in res["ms_per_step"].items()]
    rows.append(
        [
            "no operation running (dispatch, waits)",
            res["idle_ms_per_step"],
            100 * res["idle_ms_per_step"] / wall,
        ]
    )
    rows.append(["traced step", wall, 100.0])
    head = (
        f"{res['description']}: {res['wall_ms_per_step']:.2f} ms/step wall "
        f"({res['wall_ms_range']} over {res['repeats']} runs of {res['steps']} steps), "
        f"{res['traced_wall_ms_per_step']:.2f} traced; matmul bound "
        f"{res['matmul_bound_ms_per_step']:.2f} ms/step "
        f"({100 * res['matmul_bound_ms_per_step'] / res['wall_ms_per_step']:.0f}% of the wall time)"
    )
    groups = common.markdown_table(["group", "ms/step", "% of the traced step"], rows)
    top = common.markdown_table(
        ["thunk", "group", "ms/step", "made by (JAX name stack)"],
        [list(t) for t in res["top_thunks"]],
    )
    return f"{head}\n\n{groups}\n\nThe costliest thunks:\n\n{top}"


def main(argv: Sequence[str]) -> list[dict]:
    fv = flags.FlagValues()
    flags.DEFINE_list("models", ["mlp500"], "Models of benchmarks.throughput.", flag_values=fv)
    flags.DEFINE_integer("steps", 500, "Steps per timed run (whole chunks).", flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "Plain timed runs before the traced one.", flag_values=fv)
    common.parse_flags(fv, argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="vaejax-breakdown-") as dump_dir:
        # Read when XLA's backend starts (the first computation below), so set here.
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump_dir} "
            "--xla_dump_hlo_as_text --xla_dump_hlo_module_re=jit_chunk"
        ).strip()
        print(common.describe_machine())
        for name in fv.models:
            res = breakdown(name, steps=fv.steps, repeats=fv.repeats, dump_dir=dump_dir)
            results.append(res)
            print("\n" + table(res))
            sys.stdout.flush()
    return results


if __name__ == "__main__":
    main(sys.argv)
