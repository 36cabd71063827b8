"""vaejax: variational autoencoders in JAX/Flax.

One ELBO (`vaejax.elbo`), pluggable decoder likelihoods (`vaejax.likelihoods`), priors
(`vaejax.priors`) and posteriors (`vaejax.posteriors`), Flax networks, hierarchical models
(`vaejax.hierarchical`) that the same objectives reduce (`vaejax.Terms`), and trained models
back in Python (`vaejax.load`).
"""

import importlib

from vaejax import (
    conditioning,
    hierarchical,
    likelihoods,
    networks,
    objectives,
    posteriors,
    priors,
    terms,
)
from vaejax.conditioning import Features, Labels
from vaejax.likelihoods import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    Gaussian,
    LearnedGaussian,
    Likelihood,
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
)
from vaejax.networks import VAE, VAEOutput
from vaejax.objectives import ElboTerms, elbo, estimate_log_likelihood, iwae_bound
from vaejax.posteriors import DiagonalGaussian, InverseAutoregressiveFlow, Posterior
from vaejax.priors import ConditionalNormal, MixtureOfGaussians, Normal, Prior, StandardNormal
from vaejax.terms import Terms
from vaejax.version import __version__

# The application layer, imported on first use: `import vaejax` stays the math and the models.
_LAZY = {"TrainedModel": "vaejax.trained", "load": "vaejax.loading"}
_SUBMODULES = (
    "build",
    "checkpoints",
    "data",
    "evaluate",
    "experiment",
    "train",
    "trained",
    "loading",
)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:  # e.g. `vaejax.data`, `vaejax.experiment`
        return importlib.import_module(f"vaejax.{name}")
    raise AttributeError(f"module 'vaejax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    "VAE",
    "Bernoulli",
    "Categorical",
    "ConditionalNormal",
    "ContinuousBernoulli",
    "DiagonalGaussian",
    "DiscretizedLogistic",
    "DiscretizedLogisticMixture",
    "ElboTerms",
    "Features",
    "Gaussian",
    "InverseAutoregressiveFlow",
    "Labels",
    "LearnedGaussian",
    "Likelihood",
    "MixtureOfGaussians",
    "NegativeBinomial",
    "Normal",
    "Poisson",
    "Posterior",
    "Prior",
    "StandardNormal",
    "Terms",
    "TrainedModel",
    "VAEOutput",
    "ZeroInflatedNegativeBinomial",
    "__version__",
    "conditioning",
    "elbo",
    "estimate_log_likelihood",
    "hierarchical",
    "iwae_bound",
    "likelihoods",
    "load",
    "networks",
    "objectives",
    "posteriors",
    "priors",
    "terms",
]
