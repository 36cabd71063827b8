"""`vaejax.load(workdir)`: a trained model back in Python (`vaejax.trained.TrainedModel`).

The model is rebuilt from what the checkpoint records (the config, the data's shape, the fitted
preprocessing) and its parameters (the moving average where the run kept one) are restored onto
this machine's devices, whatever devices saved them. Loading reads and changes nothing else.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from vaejax import build, files, networks
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax.checkpoints import Checkpointer
from vaejax.trained import TrainedModel
from vaejax.version import __version__

FORMAT_VERSION = build.FORMAT_VERSION


def load(
    workdir: str | os.PathLike,
    *,
    step: int | None = None,
    member: int | None = None,
    model: networks.VAE | None = None,
) -> TrainedModel:
    """The trained model in `workdir` (the `--workdir` of a finished or running training run).

    Loading reads and changes nothing of the work directory, so it is safe beside the run that
    writes it: only finished, verified steps are read.

    Args:
      workdir: a work directory written by `train_and_evaluate` (`python -m experiments.mnist`).
      step: the checkpoint's step; default the newest that passes verification (a damaged
        newer one is named in a warning).
      member: for a population's work directory, which member (0, 1, ...).
      model: the VAE to restore into, for a run trained with a model of its own
        (`train_and_evaluate(..., model=...)`); by default the one its config describes.

    Returns:
      A `TrainedModel` on this machine's first device, with the run's moving-average
      parameters where it kept them.

    Raises:
      FileNotFoundError: no such work directory, or no checkpoint in it.
      ValueError: a checkpoint of another format version, a population without `member`, or
        a config that does not match the checkpoint's parameters.
    """
    workdir = os.fspath(workdir)
    _check_workdir(workdir)
    tree, step, metadata = _read(workdir, None if step is None else int(step))
    _check_format(metadata, workdir, step)
    description = _member_description(metadata, member, workdir)
    _check_config_file(workdir, member, description["config"])
    config = ml_collections.ConfigDict(description["config"])
    data_shape = tuple(description["data_shape"])
    if model is None:
        model = _build_model(config, data_shape, description, workdir)
    x = jnp.zeros((1, *data_shape), description["data_dtype"])
    y = jnp.zeros((1,), jnp.int32) if description.get("num_classes") else None
    expected = jax.eval_shape(lambda: networks.init(model, jax.random.key(0), x, y))
    stacked = len(metadata["members"]) > 1 or _is_stacked(tree["params"], expected)
    pick = (lambda t: jax.tree.map(lambda a: a[member or 0], t)) if stacked else (lambda t: t)
    ema = tree.get("ema_params") is not None
    params = pick(tree["ema_params"] if ema else tree["params"])
    _check_params(params, expected, workdir)
    return TrainedModel(
        model=model,
        params=params,
        config=config,
        preprocessing=data_lib.Preprocessing(**description["preprocessing"]),
        data_shape=data_shape,
        data_dtype=description["data_dtype"],
        step=step,
        ema=ema,
        workdir=workdir,
    )


def _read(workdir: str, step: int | None, tries: int = 5) -> tuple[Any, int, Any]:
    """The checkpoint's tree, step and metadata, read-only: a run training in `workdir`
    meanwhile keeps every file, its save in flight too. A step the run deletes (its oldest,
    past `max_to_keep`) while this reads it is read again from the steps left."""
    for attempt in range(tries):
        try:
            with Checkpointer(workdir, read_only=True) as checkpointer:
                saved = checkpointer.all_steps()
                if not saved or step not in (None, *saved):
                    break
                # Restored as saved, whatever its format, before anything interprets it (a
                # restore first also registers the handler that reading the metadata quietly
                # needs). With no step: the newest that passes verification (a damaged newer
                # one is named, and kept).
                tree = checkpointer.restore(step=step)  # on this process's first device
                found = checkpointer.current_step
                return tree, found, checkpointer.metadata(found)
        except (FileNotFoundError, NotADirectoryError):
            if attempt == tries - 1:
                raise
            time.sleep(0.05)
    raise FileNotFoundError(
        f"{os.path.join(workdir, 'checkpoints')} holds no checkpoint"
        + ("" if step is None else f" of step {step}")
        + ": train first (python -m experiments.mnist --workdir=...), or pass a saved step."
    )


def _check_workdir(workdir: str) -> None:
    if not os.path.isdir(workdir):
        raise FileNotFoundError(
            f"No work directory at {os.path.abspath(workdir)}. Pass the --workdir of a training "
            "run (python -m experiments.mnist --config=... --workdir=DIR)."
        )
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(
            f"{os.path.abspath(workdir)} holds no checkpoints/ directory: it is not the work "
            "directory of a training run, or the run saved no checkpoint yet. For a population "
            "member, pass the population's work directory and member=i."
        )


def _check_format(metadata: dict[str, Any], workdir: str, step: int) -> None:
    """Refuses a checkpoint of another format version, naming both versions."""
    version = metadata.get("format_version")
    if version == FORMAT_VERSION and "members" in metadata:
        return
    written = (
        f"format version {version}"
        if version is not None
        else "format version 0 (written before vaejax recorded one)"
    )
    raise ValueError(
        f"The checkpoint of step {step} in {workdir} has {written}; this vaejax "
        f"({__version__}) reads format version {FORMAT_VERSION}. Load it with the vaejax "
        "that wrote it, or retrain the run with this one."
    )


def _member_description(metadata: dict[str, Any], member: int | None, workdir: str) -> dict:
    members = metadata["members"]
    if member is None and len(members) > 1:
        raise ValueError(
            f"{workdir} holds a population of {len(members)} models; pass member=i for one of "
            f"them (0..{len(members) - 1})."
        )
    if member is not None and not 0 <= member < len(members):
        raise ValueError(
            f"member must be in [0, {len(members)}) for the {len(members)} model(s) in "
            f"{workdir}; got {member}."
        )
    return members[member or 0]


def _check_config_file(workdir: str, member: int | None, saved: dict[str, Any]) -> None:
    """Refuses a config.json that disagrees with the config saved with the checkpoint."""
    directory = workdir if member is None else os.path.join(workdir, "members", str(member))
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        return
    fix = "It is the run's config as trained: restore it, or delete it (the checkpoint has one)."
    on_disk = build.flatten(files.read_json(path, fix))
    saved = build.flatten(saved)
    changed = {
        k: (saved.get(k), on_disk.get(k))
        for k in sorted(saved.keys() | on_disk.keys())
        if saved.get(k) != on_disk.get(k) and not k.startswith(build.RESUMABLE)
    }
    if changed:
        raise ValueError(
            f"{path} disagrees with the config saved with the checkpoint (setting: "
            f"(checkpoint, config.json)): {changed}. config.json was edited after training, or "
            "belongs to another run; restore it, or train a new run with the settings you want."
        )


def _build_model(config, data_shape, description, workdir) -> Any:
    if description.get("custom_model"):
        raise ValueError(
            f"{workdir} was trained with a model of its own, not the one its config describes: "
            f"{description['custom_model'][:200]}... Pass it: vaejax.load(workdir, model=...)."
        )
    cfg = config_lib.read(config_lib.own_fields(config)).model
    likelihood = build.build_likelihood(cfg)
    return build.build_model(cfg, data_shape, likelihood, description.get("num_classes", 0))


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    return {jax.tree_util.keystr(p): tuple(a.shape) for p, a in jax.tree.leaves_with_path(tree)}


def _is_stacked(saved: Any, expected: Any) -> bool:
    """Whether the saved params are a population's: each with one leading member axis more."""
    saved, expected = _shapes(saved), _shapes(expected)
    return saved.keys() == expected.keys() and all(
        len(s) == len(expected[k]) + 1 and s[1:] == expected[k] for k, s in saved.items()
    )


def _check_params(params: Any, expected: Any, workdir: str) -> None:
    """Refuses parameters that the model built from the config would not have."""
    saved, built = _shapes(params), _shapes(expected)
    diff = {
        k: (saved.get(k), built.get(k))
        for k in sorted(saved.keys() | built.keys())
        if saved.get(k) != built.get(k)
    }
    if diff:
        shown = dict(list(diff.items())[:8])
        raise ValueError(
            f"The checkpoint in {workdir} does not fit the model its recorded config builds "
            f"(parameter: (checkpoint shape, model shape); None: absent): {shown}"
            f"{' ...' if len(diff) > 8 else ''}. The checkpoint or its config was changed "
            "after training, or the code that builds the model changed: load it with the "
            "vaejax that trained it, or retrain."
        )
