"""What the benchmarks share: the machine, synthetic data, peak memory, FLOP accounting, tables.

The FLOP bound of a computation is measured, not quoted: `matmul_ops` collects every
`dot_general` and `conv_general_dilated` in its jaxpr (with their shapes, transposes and how
often a `scan` runs them), and `matmul_replay` runs just those ops, on random inputs of the same
shapes, in one compiled call. The time of that call is the floor for the whole computation on
this machine: what it would take if everything but the matmuls were free.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
from absl import app, flags

MNIST_SHAPE = (28, 28, 1)
_MATMUL_PRIMITIVES = ("dot_general", "conv_general_dilated")


# ----------------------------------------------------------------------------- machine, data


def machine() -> dict[str, Any]:
    """The machine, its load when asked, and the software: what a figure needs beside it."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "device": f"{device.platform}:{device.device_kind}",
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
    }


def describe_machine() -> str:
    m = machine()
    return (
        f"{m['date']}  {m['cpu']}, nproc={m['nproc']}, load(1m)={m['load_avg_1m']}  "
        f"device={m['device']} x{m['num_devices']}  jax {m['jax']}"
    )


def synthetic_binary_images(num: int, shape: tuple[int, ...] = MNIST_SHAPE, *, seed: int = 0):
    """Binary images `[num, *shape]` float32 of MNIST's shape and pixel statistics, roughly.

    Each pixel is on with a probability that falls off from the centre (about 13% of pixels on
    overall, as in MNIST), so the data have MNIST's shape and sparsity; throughput and FLOPs do
    not depend on what the digits look like.
    """
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r2 = ((yy - (h - 1) / 2) / (h / 4)) ** 2 + ((xx - (w - 1) / 2) / (w / 5)) ** 2
    p = (0.45 * np.exp(-r2 / 2)).reshape(h, w, *([1] * (len(shape) - 2)))
    return (rng.random((num, *shape), dtype=np.float32) < p).astype(np.float32)


# ----------------------------------------------------------------------------- memory


def max_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def device_peak_mb() -> float | None:
    """Peak bytes in use on the first device (GPUs and TPUs report it; CPUs do not)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


@contextlib.contextmanager
def peak_rss(interval_s: float = 0.05) -> Iterator[dict[str, float]]:
    """Samples this process's RSS in a thread; yields a dict whose "peak_mb" is set on exit.

    `ru_maxrss` only ever grows over the process, so a later, smaller run would inherit an
    earlier run's peak; sampling gives each run its own.
    """
    out = {"peak_mb": _rss_mb()}
    done = threading.Event()

    def sample():
        while not done.wait(interval_s):
            out["peak_mb"] = max(out["peak_mb"], _rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        out["peak_mb"] = max(out["peak_mb"], _rss_mb())


# ----------------------------------------------------------------------------- FLOPs


def _walk(jaxpr: jex.Jaxpr, times: int, found: list[tuple[jex.JaxprEqn, int]]) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _MATMUL_PRIMITIVES:
            found.append((eqn, times))
            continue
        if eqn.primitive.name == "while":
            raise ValueError("matmul_ops cannot count a while loop's trips; use scan.")
        inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
        if eqn.primitive.name == "cond":  # one branch runs; count the costliest
            branches = []
            for b in eqn.params["branches"]:
                branches.append([])
                _walk(b.jaxpr, inner, branches[-1])
            found.extend(max(branches, key=lambda ops: sum(flops(e) * n for e, n in ops)))
            continue
        for sub in jex.jaxprs_in_params(eqn.params):
            _walk(sub, inner, found)


def matmul_ops(fn: Callable, *args: Any) -> list[tuple[jex.JaxprEqn, int]]:
    """Every dot/conv that `fn(*args)` runs, as (equation, times it runs per call)."""
    found: list[tuple[jex.JaxprEqn, int]] = []
    _walk(jax.make_jaxpr(fn)(*args).jaxpr, 1, found)
    return found


def flops(eqn: jex.JaxprEqn) -> int:
    """Multiply-adds x 2 of one dot_general or conv_general_dilated equation."""
    (out,) = eqn.outvars
    if eqn.primitive.name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2 * math.prod(out.aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    # conv: each output element is a dot over the kernel's window and its input features (a
    # transposed conv's dilated input counts its zeros: XLA computes them).
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
    window = math.prod(rhs[d] for d in spec[1:])
    return 2 * math.prod(out.aval.shape) * window


def total_flops(ops: Sequence[tuple[jex.JaxprEqn, int]]) -> int:
    return sum(flops(eqn) * times for eqn, times in ops)


def matmul_replay(ops: Sequence[tuple[jex.JaxprEqn, int]], *, seed: int = 0):
    """A compiled function running each op (times its multiplicity) on its own random inputs.

    Returns `(fn, args)`; `fn(*args)` returns every output, so nothing is dead code.
    """
    rng = np.random.default_rng(seed)
    args, plan = [], []
    for eqn, times in ops:
        for _ in range(times):
            first = len(args)
            for v in eqn.invars:
                args.append(jnp.asarray(rng.standard_normal(v.aval.shape), v.aval.dtype))
            plan.append((eqn.primitive, eqn.params, first, len(eqn.invars)))

    @jax.jit
    def fn(*xs):
        return [p.bind(*xs[i : i + n], **params) for p, params, i, n in plan]

    return fn, args


def matmul_bound(ops: Sequence[tuple[jex.JaxprEqn, int]]) -> Callable[[int], float]:
    """`measure(calls)`: seconds per call that `ops` take on this machine, timed over `calls`.

    Each group of ops that runs `n` times per call (a `scan` body) is replayed once and its
    time counted `n` times, so a long scan needs no long replay.
    """
    groups: dict[int, list] = {}
    for eqn, times in ops:
        groups.setdefault(times, []).append((eqn, 1))
    replays = [(times, *matmul_replay(group)) for times, group in groups.items()]

    def measure(calls: int) -> float:
        return sum(times * seconds_per_call(fn, *args, calls=calls) for times, fn, args in replays)

    return measure


def seconds_per_call(fn: Callable, *args: Any, calls: int) -> float:
    """Wall seconds per call of `fn(*args)`, `calls` calls dispatched back to back."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def square_matmul_gflops(n: int = 2048, calls: int = 5) -> float:
    """Float32 GFLOP/s of one large square matmul: the machine's peak, for scale."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / seconds_per_call(matmul, a, a, calls=calls) / 1e9


def xla_flops(jitted: Callable, *args: Any) -> float | None:
    """XLA's own FLOP count of one call (cost_analysis: matmuls and elementwise ops)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older jax returned one dict per device
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


# ----------------------------------------------------------------------------- A/B timing


def on_off(run: Callable[[bool], float], *, repeats: int) -> dict[str, Any]:
    """Times `run(on)` (it returns the work done: steps, images) with a switch on and off.

    The sides alternate (on, off, then off, on, ...) `repeats` times each, in this process; each
    ratio is the median of the per-repeat on/off ratios, by wall time and by this process's CPU
    time (all its threads): on a shared machine, other jobs stretch the wall time of a run
    but much less its CPU time.
    """
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for r in range(repeats):
        for on in (True, False) if r % 2 == 0 else (False, True):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            work = run(on)
            wall[on].append(work / (time.perf_counter() - start_wall))
            cpu[on].append(work / (time.process_time() - start_cpu))
    gain = [a / b for a, b in zip(wall[True], wall[False], strict=True)]
    cpu_gain = [a / b for a, b in zip(cpu[True], cpu[False], strict=True)]
    return {
        "repeats": repeats,
        "on_per_s": median(wall[True]),
        "off_per_s": median(wall[False]),
        "speedup": median(gain),
        "speedup_range": spread(gain),
        "cpu_speedup": median(cpu_gain),
        "cpu_speedup_range": spread(cpu_gain),
        "rates": {"on": wall[True], "off": wall[False]},
        "cpu_rates": {"on": cpu[True], "off": cpu[False]},
    }


# ----------------------------------------------------------------------------- reporting


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """`min-max` of repeats, for the reader to judge the noise."""
    return f"{min(values):.3g}-{max(values):.3g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def line_plot(
    path: str,
    x: Sequence[float],
    lines: dict[str, tuple[Sequence[float], str]],
    *,
    xlabel: str,
    ylabel: str,
    hlines: dict[str, float] | None = None,
) -> None:
    """A small PNG at `path`: each `label: (ys, style)` against `x`, dashed gray `hlines`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for label, (ys, style) in lines.items():
        ax.plot(x, ys, style, label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, ls="--", c="gray", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_flags(fv: flags.FlagValues, argv: Sequence[str]) -> flags.FlagValues:
    """Parses the command line `argv` (program name first) into a benchmark's own `fv`; a bad
    flag is a usage error that shows the benchmark's flags."""
    try:
        fv(list(argv))
    except flags.Error as e:
        raise app.UsageError(f"{e}\n\n{fv.get_help()}") from e
    return fv
