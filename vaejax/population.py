"""Populations: P VAEs trained at once in one compiled program, vmapped over a member axis.

Small models leave a big device idle. A population stacks P train states along a leading member
axis and the train chunk vmaps `train.train_step` over it (`train.make_train_chunk(stacked=True)`),
so one dispatch trains every member. Members differ in what does not change the program's shapes:

  seed                 initialisation, data order, binarization noise and evaluation keys;
  optim.learning_rate  via `optax.inject_hyperparams`: each member's optimizer state holds its rate;
  objective.beta       a traced per-member value in the objective.

Everything else (model, likelihood, batch size, schedule shape) is shared. A population is trained
by the one training loop, `experiment.train_and_evaluate(config, workdir, members=...)`, so each
member follows exactly the trajectory it follows alone with the same seed and values, up to float
rounding (tests/test_population.py checks this).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

# Config fields that may differ between the members of one population.
POPULATION_FIELDS = ("seed", "optim.learning_rate", "objective.beta")
# Schedules whose construction is traceable in the learning rate (per-member rates need that).
TRACEABLE_SCHEDULES = ("constant", "cosine")


def stack(trees: Sequence[Any]) -> Any:
    """Stacks equal-structure pytrees along a new leading member axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Member `i` of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def member_configs(
    config: ml_collections.ConfigDict, members: Sequence[Mapping[str, Any]]
) -> list[ml_collections.ConfigDict]:
    """One config per member: `config` with the member's values of `POPULATION_FIELDS`."""
    out = []
    for member in members:
        unknown = sorted(set(member) - set(POPULATION_FIELDS))
        if unknown:
            raise ValueError(
                f"Population members may differ only in {list(POPULATION_FIELDS)}; got {unknown}. "
                "Sweep other fields across trials instead."
            )
        cfg = config.copy_and_resolve_references()
        cfg.update_from_flattened_dict(
            {k: int(v) if k == "seed" else float(v) for k, v in member.items()}
        )
        out.append(cfg)
    return out
