"""Runs a hyperparameter sweep on Optuna: one trial per sub-directory, then a report.

  python -m experiments.sweep --sweep=experiments/sweeps/latent_dim.py --workdir=runs/latent_dim \
      [--workers=2] [--storage=URL] [--report]

Trial k trains in <workdir>/trials/<k>/ (config.json, results.json, figures, checkpoints). At the
end, <workdir>/trials.md, trials.csv and trials.png hold every trial's swept values, metric, test
ELBO/NLL, wall time and status. Rerunning the same command continues the study: a trial killed
mid-way resumes from its checkpoints; once every trial is done it runs nothing.

--workers=N runs N trials at once on this machine, each process pinned to 1/N of the cores.
--storage=URL shares one study among machines: start the same command on each, e.g.
  --storage=postgresql://user:password@db-host/vaejax   (pip install psycopg2-binary)
  --storage=/shared/nfs/runs/latent_dim/study.journal   (a journal file on a shared filesystem)
--report writes the report of the study as it stands and runs nothing.
"""

import logging as std_logging

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
    "Optuna storage URL shared by every worker (postgresql://..., sqlite:///..., "
    "a .journal file path). Default: a journal file in --workdir.",
)
flags.DEFINE_bool("report", False, "Only write the report (trials.md/.csv/.png); run nothing.")
flags.mark_flags_as_required(["sweep", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("vaejax").setLevel(std_logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if FLAGS.report:
        sweeps.report(FLAGS.sweep, FLAGS.workdir, storage=FLAGS.storage)
    else:
        sweeps.run(FLAGS.sweep, FLAGS.workdir, workers=FLAGS.workers, storage=FLAGS.storage)


if __name__ == "__main__":
    app.run(main)
