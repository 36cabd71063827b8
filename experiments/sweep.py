"""Runs a hyperparameter sweep on Optuna: one trial per sub-directory, then a report.

  python -m experiments.sweep --sweep=experiments/sweeps/latent_dim.py --workdir=runs/latent_dim \
      [--workers=2] [--storage=URL | --storage_file=PATH] [--retry_failed] [--report]

Trial k trains in <workdir>/trials/<k>/ (config.json, results.json, figures, checkpoints). At the
end, <workdir>/trials.md, trials.csv and trials.png hold every trial's swept values, metric, test
ELBO/NLL, wall time and status. Rerunning the same command continues the study: a trial killed
or interrupted mid-way resumes from its checkpoints; once every trial is done it runs nothing.
A trial that raised stays FAIL until a run with --retry_failed runs it again.

The last line says whether the sweep is complete. The exit code is 0 only then; 1 when a trial
failed, was killed or did not run; 128 + the signal's number after SIGINT or SIGTERM (forwarded
to the workers, which stop within seconds; the report is written); 2 for a bad sweep file or
storage.

--workers=N runs N trials at once on this machine, each process pinned to 1/N of the cores.
--storage=URL shares one study among machines: start the same command on each, e.g.
  --storage=postgresql+psycopg2://user@db-host/vaejax   (pip install psycopg2-binary)
  --storage=/shared/nfs/runs/latent_dim/study.journal   (a journal file on a shared filesystem)
A URL with a password belongs in a file (--storage_file, chmod 600) or in the environment
variable VAEJAX_SWEEP_STORAGE, not on the command line, where `ps` shows it.
--report writes the report of the study as it stands and runs nothing (its exit code, too, is 0
only for a complete sweep).
"""

import logging as std_logging
import sys

import optuna
from absl import app, flags, logging

from vaejax import sweeps

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep() (experiments/sweeps/*.py).")
flags.DEFINE_string("workdir", None, "Directory of the sweep: trials/<k>/, the study, the report.")
flags.DEFINE_integer("workers", 1, "Trials run at once on this machine, one process each.")
flags.DEFINE_string(
    "storage",
    None,
    "Optuna storage URL shared by every worker (postgresql+psycopg2://..., sqlite:///..., "
    f"a .journal file path). Default: --storage_file, else ${sweeps.STORAGE_ENV}, else a "
    "journal file in --workdir.",
)
flags.DEFINE_string(
    "storage_file", None, "A file holding the storage URL (keeps a password out of `ps`)."
)
flags.DEFINE_bool("retry_failed", False, "Run again the trials that failed in earlier runs.")
flags.DEFINE_bool("report", False, "Only write the report (trials.md/.csv/.png); run nothing.")
flags.mark_flags_as_required(["sweep", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = sweeps.storage_url(FLAGS.storage, FLAGS.storage_file)
        sweep = sweeps.load_sweep(FLAGS.sweep)
        if FLAGS.report:
            rows = sweeps.report(sweep, FLAGS.workdir, storage=storage)
        else:
            rows = sweeps.run(
                sweep,
                FLAGS.workdir,
                workers=FLAGS.workers,
                storage=storage,
                retry_failed=FLAGS.retry_failed,
            )
    except ValueError as e:
        logging.error("%s", e)
        sys.exit(2)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        logging.error(
            "Sweep %s; trials.md shows where. Rerun the same command to resume.",
            str(e) or "stopped by SIGINT",
        )
        sys.exit(128 + signum)
    complete, line = sweeps.summarize(rows, sweep)
    if not complete:
        logging.error("%s", line)
        sys.exit(1)
    logging.warning("%s", line)


if __name__ == "__main__":
    app.run(main)
