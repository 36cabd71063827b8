"""Checked values: dataclass fields that say their valid range or names (`check` refuses the
rest), and the counts that library functions take (`check_count`).

  latent_dim: int = fields.at_least(1, default=50)
  schedule: str = fields.one_of(SCHEDULES, default="cosine")

A section's `__post_init__` calls `check(self, "config.model")`, so an object out of range is
never built and its error names the field, the value and what is valid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A config value out of its valid range, an unknown name or an unknown field."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def check_count(value: Any, name: str = "num_samples", where: str = "") -> None:
    """Refuses a count (of samples, of images) that is not an integer >= 1.

    Args:
      value: the count; a bool is not an integer here.
      name: the count's name in the error message.
      where: what takes it, prefixed to the message where given.

    Raises:
      ValueError: `value` is not an integer >= 1.
    """
    if not (_is_int(value) and value >= 1):
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}{name} must be an integer >= 1; got {value!r}.")


def _field(default: Any, ok: Callable[[Any], bool], text: str) -> Any:
    return dataclasses.field(default=default, metadata={"ok": ok, "valid": text})


def at_least(low: int, *, default: int, note: str = "") -> Any:
    """An integer field >= `low`.

    Args:
      low: the smallest valid value.
      default: the field's default.
      note: text appended to "an integer >= low" in the error message.

    Returns:
      A `dataclasses.field` whose metadata `check` tests.
    """
    return _field(default, lambda v: _is_int(v) and v >= low, f"an integer >= {low}{note}")


def real(test: Callable[[float], bool], text: str, *, default: float | None) -> Any:
    """A finite number passing `test` (`text` says which); None is valid where it is the default.

    Args:
      test: the predicate a finite number must pass.
      text: what is valid, in words, for the error message.
      default: the field's default (None makes None valid).

    Returns:
      A `dataclasses.field` whose metadata `check` tests.
    """
    ok = lambda v: (v is None and default is None) or (_is_real(v) and math.isfinite(v) and test(v))
    return _field(default, ok, text)


def one_of(names: Iterable[str], *, default: str) -> Any:
    """A name among `names`.

    Args:
      names: the valid names.
      default: the field's default.

    Returns:
      A `dataclasses.field` whose metadata `check` tests.
    """
    names = tuple(names)
    return dataclasses.field(default=default, metadata={"names": names})


def check(obj: Any, where: str) -> None:
    """Every checked field of dataclass `obj` in its range; `where` names it (`config.optim`).

    Args:
      obj: a dataclass instance with fields made by `at_least`, `real` or `one_of`.
      where: its name in the error message, e.g. "config.optim".

    Raises:
      ConfigError: a field's value is out of its range or not among its names.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if "ok" in f.metadata and not f.metadata["ok"](value):
            raise ConfigError(
                f"{where}.{f.name} = {value!r} is out of range: it must be {f.metadata['valid']}."
            )
        if "names" in f.metadata and value not in f.metadata["names"]:
            raise ConfigError(
                f"{where}.{f.name} = {value!r} is not a valid name; "
                f"valid: {sorted(f.metadata['names'])}."
            )
