"""The report of a sweep, from its storage alone: trials.md, trials.csv, trials.png, and one
line saying whether the sweep is complete and, if not, what to do.

Optuna's `trials_dataframe` and `plot_slice` show one row or point per attempt; a sweep's
report shows one per trial key (retries folded in) and per population member.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from vaejax.sweeps import trials
from vaejax.sweeps.space import Variants
from vaejax.sweeps.spec import Sweep, load_sweep
from vaejax.sweeps.storage import JOURNAL_FILE, make_storage, open_study

log = logging.getLogger(__name__)


def _status(t: optuna.trial.FrozenTrial) -> str:
    return "INTERRUPTED" if trials.interrupted(t) else t.state.name


def report_rows(study: optuna.Study, sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial (per member, for populations), in key order, from the storage.

    Args:
      study: the sweep's study.
      sweep: the sweep.

    Returns:
      Dicts with the same keys (columns), in order trial, status, the swept fields, (for
      populations) member and its population fields, the metric, test_elbo, test_nll,
      wall_time_s, attempts and error.
    """
    rows = []
    for key, t in trials.by_key(study.get_trials(deepcopy=False)).items():
        end = t.datetime_complete or datetime.datetime.now()
        wall = (end - t.datetime_start).total_seconds() if t.datetime_start else None
        base = {
            "trial": key,
            "status": _status(t),
            **{name: trials.params(t).get(name) for name in sweep.space},
        }
        tail = {
            "wall_time_s": None if wall is None else round(wall, 1),
            "attempts": trials.attempts(t),
            "error": t.user_attrs.get(trials.ERROR) or "",
        }
        members = t.user_attrs.get(trials.MEMBERS)
        fields = list(sweep.population or ["seed"])
        if members:
            for i, m in enumerate(members):
                rows.append(
                    base
                    | {"member": i}
                    | {f: m["values"].get(f) for f in fields}
                    | _metric_columns(m.get(trials.SUMMARY, {}), sweep)
                    | tail
                    | {"error": m.get(trials.ERROR, tail["error"])}
                )
        else:
            if sweep.population_size > 1:
                base |= {"member": None} | {f: None for f in fields}
            summary = t.user_attrs.get(trials.SUMMARY) or {}
            rows.append(base | _metric_columns(summary, sweep) | tail)
    return rows


def _metric_columns(summary: Mapping[str, Any], sweep: Sweep) -> dict[str, Any]:
    return {
        sweep.metric: summary.get("metric"),
        "test_elbo": summary.get("test_elbo"),
        "test_nll": summary.get("test_nll"),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.2f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table, one column per key of the first row.

    Args:
      rows: the report's rows (`report_rows`).

    Returns:
      The table's text, ending in a newline; `(no trials yet)` without rows.
    """
    if not rows:
        return "(no trials yet)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for r in rows:
        cells = [_fmt(r.get(c)).replace("|", "\\|").replace("\n", " ")[:120] for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(rows: Sequence[Mapping[str, Any]], sweep: Sweep) -> Mapping[str, Any] | None:
    done = [r for r in rows if r["status"] == "COMPLETE" and r.get(sweep.metric) is not None]
    if not done:
        return None
    pick = min if sweep.direction == "minimize" else max
    return pick(done, key=lambda r: r[sweep.metric])


def summarize(rows: Sequence[Mapping[str, Any]], sweep: Sweep) -> tuple[bool, str]:
    """Whether the sweep is complete (every trial COMPLETE), and a line saying so or why not
    and what to do.

    Args:
      rows: the report's rows (`report_rows`).
      sweep: the sweep.

    Returns:
      `(complete, line)`.
    """
    statuses = list({r["trial"]: r["status"] for r in rows}.values())  # per trial, not member
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    done = counts.get("COMPLETE", 0)
    if done == sweep.num_trials:
        line = f"Sweep {sweep.name} complete: {done} of {done} trials COMPLETE"
        best = _best(rows, sweep)
        if best is not None:
            line += f"; best trial {best['trial']}, {sweep.metric} = {_fmt(best[sweep.metric])}"
        return True, line + "."
    todo = {
        "FAIL": "see the error column of trials.md, fix the cause, then rerun with --retry_failed",
        "INTERRUPTED": "stopped or killed; rerun the same command to resume them",
        "RUNNING": "in another command or on another machine; wait for it, or if it died, rerun "
        "on its machine",
        "WAITING": "never started; rerun the same command",
    }
    parts = [f"{counts[s]} {s}: {why}" for s, why in todo.items() if counts.get(s)]
    missing = sweep.num_trials - len(statuses)
    if missing > 0:
        parts.append(f"{missing} not created yet: rerun the same command")
    head = f"Sweep {sweep.name} incomplete: {done} of {sweep.num_trials} trials COMPLETE"
    return False, "; ".join([head, *parts]) + "."


def write_report(
    rows: Sequence[Mapping[str, Any]], sweep: Sweep, workdir: str | os.PathLike
) -> list[str]:
    """Writes `trials.md`, `trials.csv` and `trials.png` into `workdir`; returns their paths.

    Each file is replaced atomically; the Markdown report is also logged.

    Args:
      rows: the report's rows (`report_rows`).
      sweep: the sweep.
      workdir: the sweep's directory.

    Returns:
      The paths written; `trials.png` only where `plot_metric` drew it.
    """
    workdir = os.fspath(workdir)
    statuses = list({r["trial"]: r["status"] for r in rows}.values())  # per trial, not member
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    head = [
        f"# Sweep {sweep.name}: {sweep.direction} {sweep.metric}",
        "",
        f"{len(statuses)} of {sweep.num_trials} trials; "
        + ", ".join(f"{n} {s}" for s, n in counts.items()),
    ]
    best = _best(rows, sweep)
    if best is not None:
        members = ["member", *(sweep.population or ["seed"])] if "member" in best else []
        shown = {k: best[k] for k in (*sweep.space, *members)}
        head.append(
            f"Best: trial {best['trial']} {shown}: {sweep.metric} = {_fmt(best[sweep.metric])}"
        )
    md = os.path.join(workdir, "trials.md")
    _atomic_write(md, "\n".join(head) + "\n\n" + markdown_table(rows))
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = os.path.join(workdir, "trials.csv")
    _atomic_write(path, buf.getvalue())
    paths = [md, path]
    png = plot_metric(rows, sweep, os.path.join(workdir, "trials.png"))
    if png:
        paths.append(png)
    log.info("Sweep %s:\n%s", sweep.name, "\n".join(head) + "\n\n" + markdown_table(rows))
    return paths


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_metric(rows: Sequence[Mapping[str, Any]], sweep: Sweep, path: str) -> str | None:
    """The metric of every finished trial against each swept field, one panel per field.

    Args:
      rows: the report's rows (`report_rows`).
      sweep: the sweep.
      path: the PNG file to write, atomically.

    Returns:
      `path`, or None (nothing written) when no field is swept or no trial has finished.
    """
    from matplotlib.figure import Figure

    fields = [*sweep.space, *sweep.population]
    if not fields and sweep.population_size > 1:
        fields = ["seed"]
    done = [r for r in rows if r["status"] == "COMPLETE" and r.get(sweep.metric) is not None]
    if not fields or not done:
        return None
    fig = Figure(figsize=(4 * len(fields), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, field in zip(axes, fields, strict=True):
        xs = [r[field] for r in done]
        ys = [r[sweep.metric] for r in done]
        param = sweep.space.get(field)
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
        if numeric and not isinstance(param, Variants):
            ax.scatter(xs, ys, s=24)
            positive = all(x > 0 for x in xs)
            if positive and (
                getattr(param, "log", False) or max(xs) / min(xs) >= 100 or field.endswith("rate")
            ):
                ax.set_xscale("log")
        else:
            labels = list(dict.fromkeys(str(x) for x in xs))
            ax.scatter([labels.index(str(x)) for x in xs], ys, s=24)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(field)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.name}: {sweep.metric} ({sweep.direction})")
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def report(sweep: Sweep | str, workdir: str | os.PathLike, *, storage: str | None = None):
    """Writes the report of a sweep as it stands, running nothing; returns the rows.

    Args:
      sweep: a `Sweep`, or the path of a sweep file.
      workdir: the sweep's directory; the report goes there.
      storage: the Optuna storage URL it ran with; None: the journal in `workdir`.

    Returns:
      The report's rows (`report_rows`).

    Raises:
      ValueError: no sweep has run in `workdir`, the storage holds no study of this sweep, or
        one made by another sweep file.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    journal = os.path.join(workdir, JOURNAL_FILE)
    if storage is None and not os.path.exists(journal):
        raise ValueError(
            f"No sweep has run in {os.fspath(workdir)!r} (no {JOURNAL_FILE} there): run it first, "
            "or pass the --storage it ran with."
        )
    os.makedirs(workdir, exist_ok=True)
    study = open_study(sweep, make_storage(storage, workdir), create=False)
    rows = report_rows(study, sweep)
    write_report(rows, sweep, workdir)
    return rows
