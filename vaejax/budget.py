"""The time budget of a run: training time counted across resumes, and a schedule fitted to it.

`train.time_budget_s` bounds the training time (each checkpoint records the time spent). With
`train.fit_schedule_to_budget` the learning-rate schedule runs on that clock instead of on steps:
it ends when the budget does, however fast the machine turns out to be.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any


def now() -> float:
    """Returns the training clock, in seconds (a function of its own, so that tests can drive
    it)."""
    return time.monotonic()


@dataclasses.dataclass(frozen=True)
class Budget:
    seconds: float = math.inf
    fit_schedule: bool = False  # the schedule's step is elapsed / seconds * total_steps

    @classmethod
    def from_config(cls, train_cfg: Any) -> Budget:
        """`train.time_budget_s` (0: none) and `train.fit_schedule_to_budget` (`config.Train`)."""
        given, fit = train_cfg.time_budget_s, bool(train_cfg.fit_schedule_to_budget)
        seconds = given or math.inf
        if seconds <= 0 or (fit and seconds == math.inf):
            raise ValueError(
                f"train.time_budget_s must be positive (0: no budget), and set when "
                f"train.fit_schedule_to_budget is True; got time_budget_s={given}, "
                f"fit_schedule_to_budget={fit}."
            )
        return cls(seconds, fit)

    def schedule_step(self, elapsed: float, total_steps: int) -> float:
        """The schedule's step that `elapsed` seconds of training correspond to.

        Args:
          elapsed: seconds of training so far, counted across resumes.
          total_steps: the steps the schedule spans.

        Returns:
          `elapsed / seconds * total_steps`, a float (past `total_steps` once over budget).
        """
        return elapsed / self.seconds * total_steps
