"""vaejax: variational autoencoders in JAX/Flax.

One ELBO (`vaejax.elbo`), pluggable decoder likelihoods (`vaejax.likelihoods`), priors
(`vaejax.priors`) and posteriors (`vaejax.posteriors`), Flax networks, hierarchical models
(`vaejax.hierarchical`) that the same objectives reduce (`vaejax.Terms`), and trained models
back in Python (`vaejax.load`).
"""

from vaejax import hierarchical, likelihoods, networks, objectives, posteriors, priors
from vaejax.likelihoods import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Gaussian,
    LearnedGaussian,
    Likelihood,
)
from vaejax.networks import VAE, VAEOutput
from vaejax.objectives import ElboTerms, Terms, elbo, estimate_log_likelihood, iwae_bound
from vaejax.posteriors import DiagonalGaussian, InverseAutoregressiveFlow, Posterior
from vaejax.priors import MixtureOfGaussians, Normal, Prior, StandardNormal
from vaejax.trained import TrainedModel, load

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Bernoulli",
    "Categorical",
    "ContinuousBernoulli",
    "DiagonalGaussian",
    "ElboTerms",
    "Gaussian",
    "InverseAutoregressiveFlow",
    "LearnedGaussian",
    "Likelihood",
    "MixtureOfGaussians",
    "Normal",
    "Posterior",
    "Prior",
    "StandardNormal",
    "Terms",
    "TrainedModel",
    "VAEOutput",
    "__version__",
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
]
