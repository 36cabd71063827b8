"""Where a sweep's study lives: Optuna storage from a URL, and the study itself."""

from __future__ import annotations

import os
import warnings

import optuna

from vaejax.sweeps.spec import Sweep

JOURNAL_FILE = "study.journal"
STORAGE_ENV = "VAEJAX_SWEEP_STORAGE"  # the storage URL, kept out of argv (visible to `ps`)
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 600  # longer than any single blocking step (compiles, a long evaluation)
HEARTBEAT_MAX_RETRY = 3  # a trial that kills its worker every time stops being retried
_FINGERPRINT = "sweep_fingerprint"


def storage_url(storage: str | None = None, storage_file: str | None = None) -> str | None:
    """The storage URL: `storage`, else the first line of `storage_file`, else the environment
    variable VAEJAX_SWEEP_STORAGE, else None (a journal file in the workdir).

    A file (chmod 600) or the environment keeps a database password out of the command line.

    Args:
      storage: a storage URL.
      storage_file: a file whose first non-empty line is the URL.

    Returns:
      The URL, or None.

    Raises:
      ValueError: both are given, or `storage_file` cannot be read or is empty.
    """
    if storage and storage_file:
        raise ValueError(
            f"Got both a storage URL and storage_file={storage_file!r}; give one of them."
        )
    if storage_file:
        try:
            with open(os.path.expanduser(storage_file)) as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise ValueError(
                f"Cannot read storage_file={storage_file!r} ({e.strerror or e}); write the "
                "storage URL into that file, or pass --storage."
            ) from None
        if not lines:
            raise ValueError(f"storage_file={storage_file!r} is empty; write the URL into it.")
        return lines[0]
    return storage or os.environ.get(STORAGE_ENV) or None


def _mask(url: str) -> str:
    """An unparsed `url` with whatever precedes its last "@" (user, password) hidden."""
    if "@" not in url:
        return url
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if sep else f"***@{url.rsplit('@', 1)[1]}"


def redact(url: str | None) -> str:
    """`url` with its password hidden, for messages.

    Args:
      url: a storage URL, or None.

    Returns:
      The URL with its password shown as `***` (what precedes the last "@" when the URL does not
      parse); "None" for None.
    """
    if url is None:
        return str(url)
    if "://" not in url:
        return _mask(url)
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return _mask(url)


# What a storage URL looks like, for messages.
URL_FORMS = (
    "postgresql+psycopg2://user@host:port/db (the password in --storage_file or "
    f"${STORAGE_ENV}), sqlite:///path/to/study.db, or a path ending in .journal"
)


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _unreachable(parsed, e: BaseException) -> str:
    """A short message for a database that cannot be connected to; never the password."""
    reason = _first_line(e)
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    if parsed.get_backend_name() == "sqlite":
        where = f"the SQLite file {parsed.database!r}"
        check = "that its directory exists and is writable"
    else:
        port = f":{parsed.port}" if parsed.port else " (default port)"
        where = f"{parsed.get_backend_name()} at {parsed.host}{port}"
        check = (
            "that the server runs and accepts connections from this machine (host, port, "
            "firewall), and that the user, password and database name are right"
        )
    return (
        f"Cannot connect to the sweep's storage, {where} "
        f"({parsed.render_as_string(hide_password=True)}): {reason}. Check {check}."
    )


def retry_callback(max_retry: int | None = None):
    """Optuna's own retry: a WAITING copy of a trial (same parameters and user attributes,
    hence the same key) that records which attempts it continues in `retry_history`.

    Args:
      max_retry: how many times a trial is retried at most; None: no limit.

    Returns:
      The callback, called as `callback(study, trial)`.
    """
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # optuna >= 4.9
    retry = retry or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return retry(max_retry=max_retry)


def make_storage(url: str | None, workdir: str | os.PathLike) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL.

    None: a journal file `<workdir>/study.journal` (many processes on this machine).
    `*.journal` or `journal:PATH`: that journal file (on a shared filesystem: many machines).
    "redis://...": a journal on Redis. Anything else is an SQLAlchemy URL (sqlite:///f.db,
    postgresql+psycopg2://user:pw@host/db, mysql+pymysql://...), stored with Optuna's
    RDBStorage and its heartbeat, so a worker that dies on any machine has its trial failed and
    retried by Optuna's RetryHeartbeatStaleTrialCallback.

    Args:
      url: the storage URL, or None.
      workdir: the sweep's directory, for the default journal.

    Returns:
      The storage.

    Raises:
      ValueError: the URL does not parse, the database cannot be connected to, or its driver is
        not installed.
    """
    from optuna.storages import journal

    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = os.path.join(os.fspath(workdir), JOURNAL_FILE) if url is None else url
        path = path.removeprefix("journal:")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(journal.JournalFileBackend(path))
    if url.startswith(("redis://", "rediss://")):
        return optuna.storages.JournalStorage(journal.JournalRedisBackend(url))
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
        parsed.port  # noqa: B018 (a port that is not a number fails here, not when connecting)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise ValueError(
            f"Cannot parse the storage URL {redact(url)!r} ({_first_line(e)}). Write {URL_FORMS}."
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=retry_callback(HEARTBEAT_MAX_RETRY),
            )
    except sqlalchemy.exc.OperationalError as e:
        raise ValueError(_unreachable(parsed, e)) from None
    except ImportError as e:
        raise ValueError(
            f"The storage {redact(url)} needs a database driver that is not installed ({e}). "
            "For PostgreSQL: pip install psycopg2-binary and write postgresql+psycopg2://..., "
            "or pip install 'psycopg[binary]' and write postgresql+psycopg://..."
        ) from None


def _sampler(sweep: Sweep, worker_index: int) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=sweep.seed + worker_index)
    # A grid is enqueued point by point; its sampler never picks a value.
    return optuna.samplers.RandomSampler(seed=sweep.seed + worker_index)


def open_study(
    sweep: Sweep,
    storage: optuna.storages.BaseStorage,
    *,
    create: bool = True,
    worker_index: int = 0,
) -> optuna.Study:
    """Creates the sweep's study (with `create`), or loads it after checking that the sweep
    file is the one the study was made by (Optuna keeps no record of that: a fingerprint in
    the study's user attributes does).

    Args:
      sweep: the sweep; its name is the study's.
      storage: the Optuna storage (`make_storage`).
      create: create the study if the storage has none of that name; else only load it.
      worker_index: offsets the sampler's seed.

    Returns:
      The study.

    Raises:
      ValueError: the storage has no study of the sweep's name, or its study was made by a
        different sweep.
    """
    name = sweep.name or "sweep"
    sampler = _sampler(sweep, worker_index)
    if create:
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, direction=sweep.direction, sampler=sampler
            )
            study.set_user_attr(_FINGERPRINT, sweep.fingerprint())
            study.set_user_attr("metric", sweep.metric)
            return study
        except optuna.exceptions.DuplicatedStudyError:
            pass
    try:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        raise ValueError(
            f"This storage has no study named {name!r} (it has {names}): the sweep file does "
            "not match the sweep run here. Pass the sweep file the sweep was run with."
        ) from None
    stored = study.user_attrs.get(_FINGERPRINT)
    if stored is not None and stored != sweep.fingerprint():
        raise ValueError(
            f"The study {name!r} in this storage was made by a different sweep (its base config, "
            "space, metric, sampler or population changed). Continue it with the sweep file as "
            "it was, or start a new study: a new --workdir, or another name in the sweep."
        )
    return study
