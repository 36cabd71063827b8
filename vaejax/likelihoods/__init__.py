"""Decoder likelihoods p(x | z): each ties the decoder's raw outputs to one distribution.

A likelihood is a small frozen dataclass. The decoder has one linear head per name in
`param_names` and never applies an activation: the likelihood interprets the raw outputs
(logits, means, log-variances). So the output activation and the loss are one choice.

Shapes: data `x` is `[B, *event]`; every param is `[B, *event]` except `Categorical`'s logits,
`[B, *event, K]`, and a param whose `param_shapes` entry is `()`: one learned scalar, not a head
(the decoder holds it and returns it as `[B]`), e.g. `LearnedGaussian(shared_variance=True)`'s
log-variance. `log_prob` sums over every axis but the first and returns `[B]`.
"""

from __future__ import annotations

import dataclasses

from vaejax.likelihoods.base import Likelihood, Params, softplus
from vaejax.likelihoods.bernoulli import Bernoulli
from vaejax.likelihoods.categorical import Categorical
from vaejax.likelihoods.continuous_bernoulli import (
    ContinuousBernoulli,
    cb_log_normalizer,
    cb_mean,
)
from vaejax.likelihoods.gaussian import Gaussian, LearnedGaussian

__all__ = [
    "Bernoulli",
    "Categorical",
    "ContinuousBernoulli",
    "Gaussian",
    "LearnedGaussian",
    "Likelihood",
    "Params",
    "cb_log_normalizer",
    "cb_mean",
    "get",
    "names",
    "softplus",
]

_REGISTRY: dict[str, type] = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "learned_gaussian": LearnedGaussian,
    "continuous_bernoulli": ContinuousBernoulli,
    "categorical": Categorical,
}


def get(name: str, **kwargs) -> Likelihood:
    """Builds a likelihood by name, e.g. `get("gaussian", scale=0.1)`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown likelihood {name!r}; valid names: {sorted(_REGISTRY)}.")
    cls = _REGISTRY[name]
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"Likelihood {name!r} takes no argument {', '.join(map(repr, unknown))}; it takes "
            f"{valid or 'none'}, e.g. get({name!r}{''.join(f', {v}=...' for v in valid[:1])})."
        )
    return cls(**kwargs)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
