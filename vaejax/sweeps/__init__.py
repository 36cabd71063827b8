"""Hyperparameter sweeps on Optuna: a sweep spec, one sub-directory per trial, a report.

A sweep file defines `get_sweep() -> Sweep` (`spec`): a base config, a search space over dotted
fields (`space`), a metric (a dotted key into `results.json`) and its direction, a sampler and a
number of trials. `run(sweep, workdir)` (`runner`) keeps the study in Optuna storage (`storage`:
a journal file in `workdir`, or a shared RDB or journal URL for many workers), hands out trials
(`trials`), trains trial k in `workdir/trials/<k>/` (`objective`), and writes the report
(`reporting`). A failed trial is recorded and the others go on; an interrupted one (`signals`)
resumes on the next run, and a rerun continues the study.
"""

from vaejax.sweeps import objective, reporting, runner, signals, space, spec, storage, trials
from vaejax.sweeps.reporting import (
    markdown_table,
    plot_metric,
    report,
    report_rows,
    summarize,
    write_report,
)
from vaejax.sweeps.runner import run, run_worker, worker_main
from vaejax.sweeps.signals import Interrupted
from vaejax.sweeps.space import (
    Choice,
    FloatRange,
    IntRange,
    Param,
    Variants,
    choice,
    log_uniform,
    uniform,
)
from vaejax.sweeps.spec import Sweep, SweepFileError, load_sweep
from vaejax.sweeps.storage import STORAGE_ENV, make_storage, open_study, storage_url
from vaejax.sweeps.trials import enqueue_missing, live_trials, recover

__all__ = [
    "STORAGE_ENV",
    "Choice",
    "FloatRange",
    "IntRange",
    "Interrupted",
    "Param",
    "Sweep",
    "SweepFileError",
    "Variants",
    "choice",
    "enqueue_missing",
    "live_trials",
    "load_sweep",
    "log_uniform",
    "make_storage",
    "markdown_table",
    "objective",
    "open_study",
    "plot_metric",
    "recover",
    "report",
    "report_rows",
    "reporting",
    "run",
    "run_worker",
    "runner",
    "signals",
    "space",
    "spec",
    "storage",
    "storage_url",
    "summarize",
    "trials",
    "uniform",
    "worker_main",
    "write_report",
]
