"""Hyperparameter sweeps on Optuna: a sweep spec, one sub-directory per trial, a report.

A sweep file defines `get_sweep() -> Sweep`: a base config, a search space over dotted config
fields, a metric (a dotted key into `results.json`, e.g. "test.nll_5000") and its direction, a
sampler ("grid", "random" or "tpe") and a number of trials. `run(sweep, workdir)` keeps the study
in Optuna storage (by default a journal file in `workdir`; any Optuna RDB or journal URL lets
workers on many machines share it) and trains trial k in `workdir/trials/<k>/`.

One module per concern:

- `space`: the search space (`choice`, `uniform`, `log_uniform`, `IntRange`, `Variants`).
- `spec`: the `Sweep` a sweep file returns, and `load_sweep`.
- `storage`: Optuna storage from a URL (journal file, Redis, or an RDB with heartbeats), the
  URL from a file or the environment, and the study.
- `trials`: the queue: every trial enqueued up front, Optuna hands each to one worker; retries
  are Optuna's `RetryHeartbeatStaleTrialCallback`; a per-trial file lock tells a dead trial on
  this machine at once.
- `objective`: train one trial in `trials/<key>/` and return its metric.
- `signals`: SIGINT/SIGTERM interrupt the trials in training, which the next run resumes.
- `runner`: `run`, `run_worker` and the worker processes.
- `reporting`: `trials.md`, `trials.csv`, `trials.png` and the one-line verdict (`summarize`).

A trial that raises is recorded FAIL and the others go on; `run(..., retry_failed=True)` runs
failed trials again. A trial killed or interrupted is resumed from its checkpoints by the next
run. Rerunning the same command continues the study and runs nothing once every trial is done.
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
