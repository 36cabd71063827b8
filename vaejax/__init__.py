"""vaejax: variational autoencoders in JAX/Flax.

One ELBO (`vaejax.elbo`), pluggable decoder likelihoods (`vaejax.likelihoods`), a diagonal
Gaussian posterior with an explicit scale parameterization, and Flax networks.
"""

from vaejax import likelihoods, networks, objectives, posteriors
from vaejax.likelihoods import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Gaussian,
    LearnedGaussian,
    Likelihood,
)
from vaejax.networks import VAE, VAEOutput
from vaejax.objectives import ElboTerms, elbo, estimate_log_likelihood, iwae_bound
from vaejax.posteriors import DiagonalGaussian
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
    "LearnedGaussian",
    "Likelihood",
    "TrainedModel",
    "VAEOutput",
    "__version__",
    "elbo",
    "estimate_log_likelihood",
    "iwae_bound",
    "likelihoods",
    "load",
    "networks",
    "objectives",
    "posteriors",
]
