"""The seam between models and objectives: a model conditioned on a batch gives its `Terms`.

A model is any object with `infer(x) -> Inference` (`Model`); its `Inference` draws samples of
every stochastic layer and returns their per-sample log-densities (`Terms`), which the
objectives (`vaejax.objectives`) reduce. `networks.bind(model, params)` and the hierarchical
models of `vaejax.hierarchical` are models; `Functions` makes one of a one-layer model given as
plain functions, `encode(x) -> dict` (the posterior's params) and `decode(z) -> dict` (the
likelihood's), with any prior and posterior.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax

from vaejax.likelihoods import Likelihood
from vaejax.posteriors import DiagonalGaussian, Posterior, analytic_kl_per_dim
from vaejax.priors import Prior, StandardNormal

Encode = Callable[[jax.Array], Mapping[str, jax.Array]]
Decode = Callable[[jax.Array], Mapping[str, jax.Array]]


class Terms(NamedTuple):
    """One batch's per-sample log-densities: what the objectives reduce.

    Stochastic layers are listed from the data up: z_1 first, the top layer z_L last. A model
    with one stochastic layer has one entry in each tuple.
    """

    log_px_z: jax.Array  # log p(x | z_1), [S, B]
    log_p: tuple[jax.Array, ...]  # log p(z_l | z_{l+1}); the top layer's log p(z_L); [S, B]
    log_q: tuple[jax.Array, ...]  # log q(z_l | x, ...), [S, B]
    # KL(q(z_l | ..) || p(z_l | ..)) per dimension in closed form, [B, D_l], or [S, B, D_l]
    # where it depends on the samples of other layers; None where there is no closed form.
    kl_per_dim: tuple[jax.Array | None, ...]


class Inference(Protocol):
    """A model conditioned on one batch `x` (what `Model.infer(x)` returns).

    `sample(key, num_samples)` (reparameterized samples of every layer, `[S, B, ...]` each) and
    `terms_at(zs)` (the `Terms` at given samples with q's parameters, not the samples, held
    fixed) are optional: the "dreg" estimator needs them.
    """

    def sample_terms(
        self, key: jax.Array, num_samples: int, gradient_estimator: str = "reparameterized"
    ) -> Terms:
        """Draws `num_samples` reparameterized samples per example and returns their terms;
        "stl" holds q's parameters fixed in log q (the gradient flows through z only).

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.
          gradient_estimator: "reparameterized", "stl" or "dreg".

        Returns:
          The batch's `Terms`, `[S, B]` log-densities per layer.
        """
        ...


class Model(Protocol):
    """What the objectives take as `model=`: `infer(x) -> Inference`. An optional
    `likelihood` attribute lets eager calls check the data's values."""

    def infer(self, x: jax.Array) -> Inference:
        """Conditions the model on a batch.

        Args:
          x: a batch of data `[B, *event]`.

        Returns:
          The batch's `Inference`.
        """
        ...


def log_likelihoods(x: jax.Array, z_SxBxD: jax.Array, decode: Decode, likelihood: Likelihood):
    """log p(x | z_s) for each sample: `[S, B]`.

    The decoder runs once, on all `S * B` samples as one batch: plain 2-D matmuls, which XLA
    runs faster than the same work mapped over samples.

    Args:
      x: the batch `[B, *event]`.
      z_SxBxD: the latent samples `[S, B, D]`.
      decode: maps z `[S * B, D]` to the likelihood's params, a dict of `[S * B, ...]` arrays.
      likelihood: p(x | z), whose `log_prob(params, x)` gives `[B]`.

    Returns:
      log p(x | z_s) per sample and example, `[S, B]`.
    """
    num_samples, batch = z_SxBxD.shape[:2]
    params = decode(z_SxBxD.reshape(num_samples * batch, *z_SxBxD.shape[2:]))
    for name, p in params.items():
        if p.shape[:1] != (num_samples * batch,):
            raise ValueError(
                f"decode must return one row per latent: for z of shape "
                f"{(num_samples * batch, *z_SxBxD.shape[2:])} it returned {name!r} of shape "
                f"{tuple(p.shape)}. Give the decoder's outputs the batch size of its input."
            )
    params = {n: p.reshape(num_samples, batch, *p.shape[1:]) for n, p in params.items()}
    return jax.vmap(likelihood.log_prob, in_axes=(0, None))(params, x)


def check_prior_dim(prior: Prior, z: jax.Array) -> None:
    """Checks that a prior with a `latent_dim` matches the samples' latent size.

    Args:
      prior: the prior p(z); one with no `latent_dim` attribute (or None) passes.
      z: the posterior's samples `[..., D]`.

    Raises:
      ValueError: the prior's `latent_dim` is not D.
    """
    prior_dim = getattr(prior, "latent_dim", None)
    if prior_dim is not None and prior_dim != z.shape[-1]:
        raise ValueError(
            f"The prior {type(prior).__name__} has latent_dim={prior_dim} but the posterior's "
            f"samples have {z.shape[-1]}; give the prior the encoder's latent size."
        )


def sample_and_log_prob(key, q, posterior, num_samples, gradient_estimator):
    """z `[S, B, D]` and log q(z | x) `[S, B]`; "stl"/"dreg" stop the gradient through q's
    parameters in log q (Roeder et al. 2017), keeping only the path through z.

    Args:
      key: a PRNG key for the samples.
      q: the posterior's params, the encoder's outputs (a dict of `[B, ...]` arrays).
      posterior: the `Posterior`.
      num_samples: S, the samples per example.
      gradient_estimator: "reparameterized", or "stl" or "dreg".

    Returns:
      `(z, log_q)`: the samples `[S, B, D]` and their log q(z | x) `[S, B]`.
    """
    if gradient_estimator == "reparameterized":
        return posterior.sample_and_log_prob(key, q, num_samples)
    z = posterior.sample(key, q, num_samples)
    return z, posterior.log_prob(jax.lax.stop_gradient(q), z)


@dataclasses.dataclass(frozen=True)
class OneLayer:
    """The `Inference` of a one-stochastic-layer model: z ~ q(z | x) given by the encoder's
    params `q`, p(z) = `prior`, p(x | z) = `likelihood` at `decode(z)`."""

    x: jax.Array
    q: Mapping[str, Any]
    decode: Decode
    likelihood: Likelihood
    posterior: Posterior
    prior: Prior

    def describe(self, layer: int) -> str:
        """Names the posterior and prior of a stochastic layer, for error messages.

        Args:
          layer: the layer's index (0; there is one layer).

        Returns:
          A phrase naming the posterior's and the prior's types.
        """
        del layer
        return (
            f"the posterior {type(self.posterior).__name__} and the prior "
            + type(self.prior).__name__
        )

    def sample_terms(self, key, num_samples, gradient_estimator="reparameterized") -> Terms:
        """Draws `num_samples` samples of z per example and returns their terms.

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.
          gradient_estimator: "reparameterized", or "stl"/"dreg" (q's parameters held fixed
            in log q).

        Returns:
          The `Terms`: log p(x | z), log p(z) and log q(z | x), `[S, B]` each, and the
          closed-form KL per dimension `[B, D]` (or None).
        """
        z, log_q = sample_and_log_prob(key, self.q, self.posterior, num_samples, gradient_estimator)
        return self._terms(z, log_q)

    def sample(self, key: jax.Array, num_samples: int) -> tuple[jax.Array]:
        """Draws reparameterized samples of z.

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.

        Returns:
          A one-element tuple, z `[S, B, D]`.
        """
        return (self.posterior.sample(key, self.q, num_samples),)

    def terms_at(self, zs: tuple[jax.Array]) -> Terms:
        """The terms at given samples, with q's parameters (not z) held fixed in log q.

        Args:
          zs: a one-element tuple, z `[S, B, D]` (as `sample` returns).

        Returns:
          The `Terms` at `zs`, `[S, B]` log-densities.
        """
        (z,) = zs
        return self._terms(z, self.posterior.log_prob(jax.lax.stop_gradient(self.q), z))

    def _terms(self, z: jax.Array, log_q: jax.Array) -> Terms:
        check_prior_dim(self.prior, z)
        return Terms(
            log_px_z=log_likelihoods(self.x, z, self.decode, self.likelihood),
            log_p=(self.prior.log_prob(z),),
            log_q=(log_q,),
            kl_per_dim=(analytic_kl_per_dim(self.posterior, self.q, self.prior),),
        )


@dataclasses.dataclass(frozen=True)
class Functions:
    """A one-stochastic-layer model given as functions (what `encode=`/`decode=` build)."""

    encode: Encode
    decode: Decode
    likelihood: Likelihood
    posterior: Posterior = DiagonalGaussian()
    prior: Prior = StandardNormal()

    def infer(self, x: jax.Array) -> OneLayer:
        """Encodes the batch once.

        Args:
          x: a batch of data `[B, *event]`.

        Returns:
          The `OneLayer` inference of `x`.
        """
        return OneLayer(x, self.encode(x), self.decode, self.likelihood, self.posterior, self.prior)


ONE_LAYER_ARGS = tuple(f.name for f in dataclasses.fields(Functions))


def as_model(model: Model | None, one_layer: Mapping[str, Any]) -> Model:
    """`model`, or the `Functions` model of the keywords `encode=`, `decode=`, `likelihood=`
    (and optionally `posterior=`, `prior=`): one of the two, checked.

    Args:
      model: a `Model`, or None.
      one_layer: the keywords of `Functions`; those that are None count as not given.

    Returns:
      `model` itself, or a `Functions` of the keywords.

    Raises:
      TypeError: a keyword is not a field of `Functions`.
      ValueError: both or neither of `model` and the keywords are given, or some of
        `encode`, `decode`, `likelihood` are missing.
    """
    unknown = sorted(set(one_layer) - set(ONE_LAYER_ARGS))
    if unknown:
        raise TypeError(f"Unexpected keyword arguments {unknown}; a model's are {ONE_LAYER_ARGS}.")
    given = {k: v for k, v in one_layer.items() if v is not None}
    if model is not None:
        if given:
            raise ValueError(
                "Pass either model= (a model with infer(x)) or encode=, decode=, likelihood= "
                f"(one stochastic layer), not both; got model= and {sorted(given)}."
            )
        return model
    missing = [n for n in ONE_LAYER_ARGS[:3] if n not in given]
    if missing:
        raise ValueError(
            f"Missing {missing}: pass encode=, decode= and likelihood= (one stochastic layer), "
            "or model= (any model with infer(x), e.g. networks.bind(model, params))."
        )
    return Functions(**given)
