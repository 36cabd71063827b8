"""Decoder likelihoods p(x | z): each ties the decoder's raw outputs to one distribution.

A likelihood is a small frozen dataclass. The decoder has one linear head per name in
`param_names` and never applies an activation: the likelihood interprets the raw outputs
(logits, means, log-variances). So the output activation and the loss are one choice.

Shapes: data `x` is `[B, *event]`; every param is `[B, *event]` except those with an axis of
K values per dimension (`Categorical`'s logits, a mixture's components), `[B, *event, K]`. A
param of shape `()`, or one a likelihood names in `free_params`, is a free parameter of the
decoder, not a head, returned broadcast to `[B, *shape]`: `LearnedGaussian(shared_variance=True)`'s
log-variance, `NegativeBinomial`'s dispersion per feature. `log_prob` sums over every axis but
the first and returns `[B]`.
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
from vaejax.likelihoods.counts import (
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    with_library_size,
)
from vaejax.likelihoods.discretized_logistic import (
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
)
from vaejax.likelihoods.gaussian import Gaussian, LearnedGaussian

__all__ = [
    "Bernoulli",
    "Categorical",
    "ContinuousBernoulli",
    "DiscretizedLogistic",
    "DiscretizedLogisticMixture",
    "Gaussian",
    "LearnedGaussian",
    "Likelihood",
    "NegativeBinomial",
    "Params",
    "Poisson",
    "ZeroInflatedNegativeBinomial",
    "cb_log_normalizer",
    "cb_mean",
    "get",
    "names",
    "softplus",
    "with_library_size",
]

_REGISTRY: dict[str, type] = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "learned_gaussian": LearnedGaussian,
    "continuous_bernoulli": ContinuousBernoulli,
    "categorical": Categorical,
    "discretized_logistic": DiscretizedLogistic,
    "discretized_logistic_mixture": DiscretizedLogisticMixture,
    "poisson": Poisson,
    "negative_binomial": NegativeBinomial,
    "zero_inflated_negative_binomial": ZeroInflatedNegativeBinomial,
}


def get(name: str, **kwargs) -> Likelihood:
    """Builds a likelihood by name, e.g. `get("gaussian", scale=0.1)`.

    Args:
      name: a registered name, one of `names()`.
      **kwargs: the likelihood's dataclass fields.

    Returns:
      The likelihood.

    Raises:
      ValueError: the name is unknown, or a keyword is not one of its fields.
    """
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
    """Returns the names `get` takes, e.g. "bernoulli", "gaussian"."""
    return tuple(_REGISTRY)
