"""Hierarchical VAEs: several stochastic layers through the same objectives.

A model here is a Flax module; `networks.bind(model, params)` gives an object whose
`infer(x)` returns the per-sample `terms.Terms` (log p(x | z_1), and per layer
log p(z_l | z_{l+1}) and log q(z_l | ...)), so `vaejax.elbo`, `iwae_bound` and
`estimate_log_likelihood` take it as `model=` unchanged. Layers are listed from the data up:
z_1 first, z_L at the top, where the prior p(z_L) sits (any `vaejax.priors` prior or learned
prior module; a VampPrior encodes its pseudo-inputs with the model's `encode_top`).

- `StackedVAE`: bottom-up inference q(z_1 | x) q(z_2 | z_1) ..., a mirrored generative path
  p(z_L) p(z_{L-1} | z_L) ... p(x | z_1), each conditional a diagonal Gaussian from an MLP
  (Burda et al. 2015, Sec. 5: `burda2015_2layer`). Every KL is Monte Carlo.
- `LadderVAE`: a deterministic bottom-up pass, then top-down inference that merges each
  layer's bottom-up Gaussian with the prior's p(z_l | z_{l+1}) by precision weighting
  (Sonderby et al. 2016); each layer's KL is in closed form given the sample above it.

Each conditional's mean and log-variance are plain `Dense` heads (`networks.MLPEncoder`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax.likelihoods import Likelihood
from vaejax.networks import MLPDecoder, MLPEncoder, activation
from vaejax.posteriors import DiagonalGaussian, analytic_kl_per_dim
from vaejax.priors import StandardNormal
from vaejax.terms import Terms, check_prior_dim, log_likelihoods

GAUSSIAN = DiagonalGaussian("log_var")  # every layer's conditional: {"mean", "log_var"}
Gaussian = dict[str, jax.Array]


def gaussian_kl_per_dim(q: Gaussian, p: Gaussian) -> jax.Array:
    """KL(N(m_q, v_q) || N(m_p, v_p)) per dimension for {"mean", "log_var"} params.

    Args:
      q: `{"mean", "log_var"}`, each `[..., D]`.
      p: `{"mean", "log_var"}`, each `[..., D]` (broadcast against `q`'s).

    Returns:
      The KL per dimension, `[..., D]`, not summed.
    """
    log_ratio = q["log_var"] - p["log_var"]
    return 0.5 * (
        jnp.exp(log_ratio)
        + jnp.square(q["mean"] - p["mean"]) * jnp.exp(-p["log_var"])
        - 1.0
        - log_ratio
    )


def precision_weighted(bottom_up: Gaussian, top_down: Gaussian) -> Gaussian:
    """The ladder's merge (Sonderby et al. 2016, eq. 18-19): precisions add, and the mean is
    the precision-weighted mean. Computed in log-variance, so no precision overflows.

    Args:
      bottom_up: the bottom-up estimate `{"mean", "log_var"}`, each `[..., D]`.
      top_down: the prior's `{"mean", "log_var"}`, each `[..., D]`.

    Returns:
      The merged `{"mean", "log_var"}`, each `[..., D]`.
    """
    w = jax.nn.sigmoid(top_down["log_var"] - bottom_up["log_var"])  # bottom-up's share
    return {
        "mean": w * bottom_up["mean"] + (1.0 - w) * top_down["mean"],
        "log_var": -jnp.logaddexp(-bottom_up["log_var"], -top_down["log_var"]),
    }


def _per_sample(fn: Callable[[jax.Array], dict], z: jax.Array) -> dict:
    """`fn` on `[..., D]` rows: flattened to `[N, D]` for the network, reshaped back."""
    out = fn(z.reshape(-1, z.shape[-1]))
    return {n: v.reshape(*z.shape[:-1], *v.shape[1:]) for n, v in out.items()}


def _layer_keys(key: jax.Array, num_layers: int) -> jax.Array:
    """One key per layer; a single layer draws with `key` itself, as the one-layer VAE does."""
    return key[None] if num_layers == 1 else jax.random.split(key, num_layers)


def _check_layers(latent_sizes: Sequence[int], hidden_sizes: Sequence[Sequence[int]]) -> None:
    if not latent_sizes:
        raise ValueError(
            "latent_sizes is empty; give at least one stochastic layer, e.g. (100, 50)."
        )
    if len(hidden_sizes) != len(latent_sizes):
        raise ValueError(
            f"hidden_sizes gives {len(hidden_sizes)} layer(s) of deterministic units for "
            f"{len(latent_sizes)} stochastic layer(s) (latent_sizes={tuple(latent_sizes)}); give "
            "one tuple per stochastic layer, e.g. ((200, 200), (100, 100)) for (100, 50)."
        )
    bad = [s for s in latent_sizes if not isinstance(s, int) or s < 1]
    bad += [s for h in hidden_sizes for s in h if not isinstance(s, int) or s < 1]
    if bad:
        raise ValueError(
            f"Layer sizes must be integers >= 1; got {bad} in latent_sizes="
            f"{tuple(latent_sizes)}, hidden_sizes={tuple(map(tuple, hidden_sizes))}."
        )


class _Hierarchy(nn.Module):
    """What both hierarchies share: the decoder p(x | z_1), the top prior and the checks."""

    latent_sizes: Sequence[int]
    hidden_sizes: Sequence[Sequence[int]]  # the deterministic layers below each z_l
    data_shape: tuple[int, ...]
    likelihood: Likelihood
    activation: str = "tanh"
    input_scale: float = 1.0
    prior: Any = None  # None (N(0, I)), a distribution, or a learned prior module

    def __post_init__(self):
        _check_layers(self.latent_sizes, self.hidden_sizes)
        activation(self.activation)
        super().__post_init__()

    def _mlp(self, hidden: Sequence[int], size: int, scale: float = 1.0) -> MLPEncoder:
        return MLPEncoder(tuple(hidden), size, GAUSSIAN, self.activation, scale)

    def decode(self, z1: jax.Array) -> dict[str, jax.Array]:
        return self.decoder(z1)

    def p(self, layer: int, z_above: jax.Array) -> Gaussian:
        """p(z_layer | z_{layer+1}) for 0-based `layer` < L - 1."""
        return _per_sample(self.down[layer], z_above)

    def prior_distribution(self) -> Any:
        if self.prior is None:
            return StandardNormal(self.latent_sizes[-1])
        if isinstance(self.prior, nn.Module):
            return self.prior(self.encode_top)
        return self.prior

    def _setup_generative(self) -> None:
        sizes, hidden = self.latent_sizes, self.hidden_sizes
        self.down = [self._mlp(hidden[i + 1][::-1], sizes[i]) for i in range(len(sizes) - 1)]
        self.decoder = MLPDecoder(
            tuple(hidden[0])[::-1], tuple(self.data_shape), self.likelihood, self.activation
        )

    def bound_to(self, params: Any) -> HierarchyBound:
        return HierarchyBound(self, params)


class StackedVAE(_Hierarchy):
    """Bottom-up stochastic layers (Burda et al. 2015): q(z_l | z_{l-1}), z_0 = x."""

    def setup(self):
        self.up = [
            self._mlp(h, size, self.input_scale if i == 0 else 1.0)
            for i, (h, size) in enumerate(zip(self.hidden_sizes, self.latent_sizes, strict=True))
        ]
        self._setup_generative()

    def q(self, layer: int, below: jax.Array) -> Gaussian:
        """q(z_layer | z_{layer-1}) (the data for layer 0).

        Args:
          layer: the 0-based layer index.
          below: the data `[B, *data_shape]` for layer 0, else the samples or means of the
            layer below, `[..., D_below]` (e.g. `[S, B, D_below]`).

        Returns:
          `{"mean", "log_var"}`, each `[..., D_layer]` (`[B, D_layer]` for layer 0).
        """
        return self.up[layer](below) if layer == 0 else _per_sample(self.up[layer], below)

    def means(self, x: jax.Array) -> list[Gaussian]:
        """Each layer's q along the path of means (the codes; `encode_top` for a VampPrior).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          One `{"mean", "log_var"}` per layer, z_1 first, each `[B, D_l]`; layer l is
          conditioned on the mean of layer l - 1.
        """
        qs, h = [], x
        for layer in range(len(self.latent_sizes)):
            qs.append(self.q(layer, h))
            h = qs[-1]["mean"]
        return qs

    def encode_top(self, x: jax.Array) -> Gaussian:
        """The top layer's q along the path of means (what a VampPrior encodes with).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          `{"mean", "log_var"}`, each `[B, D_L]`.
        """
        return self.means(x)[-1]

    def __call__(self, x: jax.Array, key: jax.Array) -> Any:
        del key
        means = [q["mean"] for q in self.means(x)]
        for layer in range(len(means) - 1):
            self.p(layer, means[layer + 1])
        self.prior_distribution()
        return self.decode(means[0])


class LadderVAE(_Hierarchy):
    """Top-down inference merging a deterministic bottom-up pass (Sonderby et al. 2016)."""

    def setup(self):
        self.up = [self._up_layer(i) for i in range(len(self.latent_sizes))]
        self._setup_generative()

    def _up_layer(self, i: int) -> _LadderUp:
        scale = self.input_scale if i == 0 else 1.0
        return _LadderUp(tuple(self.hidden_sizes[i]), self.latent_sizes[i], self.activation, scale)

    def bottom_up(self, x: jax.Array) -> list[Gaussian]:
        """Each layer's bottom-up Gaussian estimate (the top one is q(z_L | x)).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          One `{"mean", "log_var"}` per layer, z_1 first, each `[B, D_l]`.
        """
        out, h = [], x
        for layer in self.up:
            h, q = layer(h)
            out.append(q)
        return out

    def encode_top(self, x: jax.Array) -> Gaussian:
        """q(z_L | x), the top of the bottom-up pass (what a VampPrior encodes with).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          `{"mean", "log_var"}`, each `[B, D_L]`.
        """
        return self.bottom_up(x)[-1]

    def __call__(self, x: jax.Array, key: jax.Array) -> Any:
        del key
        up = self.bottom_up(x)
        for layer in range(len(up) - 1):
            self.p(layer, up[layer + 1]["mean"])
        self.prior_distribution()
        return self.decode(up[0]["mean"])


class _LadderUp(nn.Module):
    """One deterministic bottom-up block: its hidden output and its Gaussian heads."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str
    input_scale: float = 1.0

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, Gaussian]:
        act = activation(self.activation)
        h = h.reshape(h.shape[0], -1).astype(jnp.float32) * self.input_scale
        for i, size in enumerate(self.hidden_sizes):
            h = act(nn.Dense(size, name=f"hidden_{i}")(h))
        return h, {n: nn.Dense(self.latent_dim, name=n)(h) for n in GAUSSIAN.param_names}


@dataclasses.dataclass(frozen=True)
class HierarchyBound:
    """A hierarchical model at `params`: what `networks.bind` returns for one."""

    model: _Hierarchy
    params: Any

    def __post_init__(self):
        object.__setattr__(self, "prior", self.apply("prior_distribution"))

    def apply(self, method: str, *args, stop: bool = False) -> Any:
        """`model.<method>(*args)` at the params (held fixed in the gradient if `stop`).

        Args:
          method: the name of a method of the model, e.g. "decode" or "q".
          *args: its arguments.
          stop: stop the gradient through the params.

        Returns:
          What the method returns.
        """
        params = jax.lax.stop_gradient(self.params) if stop else self.params
        return self.model.apply({"params": params}, *args, method=getattr(type(self.model), method))

    @property
    def likelihood(self) -> Likelihood:
        return self.model.likelihood

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        return tuple(self.model.latent_sizes)

    def decode(self, z1: jax.Array) -> dict[str, jax.Array]:
        """Runs the decoder p(x | z_1).

        Args:
          z1: samples of the bottom layer, `[N, D_1]`.

        Returns:
          The likelihood's params, each `[N, *data_shape]` (or `[N, *data_shape, K]`).
        """
        return self.apply("decode", z1)

    def infer(self, x: jax.Array) -> StackedInference | LadderInference:
        """Conditions the model on a batch (q(z_1 | x), or the ladder's bottom-up pass, once).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          A `LadderInference` for a `LadderVAE`, else a `StackedInference`.
        """
        if isinstance(self.model, LadderVAE):
            return LadderInference(self, x, self.apply("bottom_up", x))
        return StackedInference(self, x, self.apply("q", 0, x))

    def codes(self, x: jax.Array) -> tuple[jax.Array, ...]:
        """E_q[z_l] along the path of means, per layer `[B, D_l]` (for active units).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          One mean per layer, z_1 first, each `[B, D_l]`.
        """
        if isinstance(self.model, LadderVAE):
            return tuple(q["mean"] for q in self._top_down_means(x))
        return tuple(q["mean"] for q in self.apply("means", x))

    def _top_down_means(self, x: jax.Array) -> list[Gaussian]:
        up = self.apply("bottom_up", x)
        qs = [up[-1]]
        for layer in reversed(range(len(up) - 1)):
            qs.insert(0, precision_weighted(up[layer], self.apply("p", layer, qs[0]["mean"])))
        return qs

    def reconstruct(self, x: jax.Array) -> dict[str, jax.Array]:
        """The likelihood's params decoded at z_1's mean along the path of means.

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          The likelihood's params, each `[B, *data_shape]` (or `[B, *data_shape, K]`).
        """
        return self.decode(self.codes(x)[0])

    def sample_prior(self, key: jax.Array, num: int) -> dict[str, jax.Array]:
        """The likelihood's params at `num` draws from the prior, top down.

        Args:
          key: a PRNG key for the draws.
          num: N, the number of draws.

        Returns:
          The likelihood's params, each `[N, *data_shape]` (or `[N, *data_shape, K]`).
        """
        keys = _layer_keys(key, len(self.latent_sizes))
        z = self.prior.sample(keys[-1], (num,))
        for layer in reversed(range(len(self.latent_sizes) - 1)):
            z = GAUSSIAN.sample(keys[layer], self.apply("p", layer, z))
        return self.decode(z)


@dataclasses.dataclass(frozen=True)
class StackedInference:
    """`Inference` of a `StackedVAE` for a batch: q(z_1 | x) computed once."""

    bound: HierarchyBound
    x: jax.Array
    q1: Gaussian

    def sample(self, key: jax.Array, num_samples: int) -> tuple[jax.Array, ...]:
        """Draws reparameterized samples of every layer, bottom up.

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.

        Returns:
          One sample per layer, z_1 first, each `[S, B, D_l]`.
        """
        keys = _layer_keys(key, len(self.bound.latent_sizes))
        zs = [GAUSSIAN.sample(keys[0], self.q1, num_samples)]
        for layer in range(1, len(keys)):
            zs.append(GAUSSIAN.sample(keys[layer], self.bound.apply("q", layer, zs[-1])))
        return tuple(zs)

    def sample_terms(self, key, num_samples, gradient_estimator="reparameterized") -> Terms:
        """Draws `num_samples` samples of every layer per example and returns their terms.

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.
          gradient_estimator: "reparameterized", or "stl"/"dreg" (q's parameters held fixed
            in log q).

        Returns:
          The `Terms`, `[S, B]` log-densities per layer (every KL Monte Carlo: `kl_per_dim`
          is None for each layer).
        """
        zs = self.sample(key, num_samples)
        return self._terms(zs, stop=gradient_estimator != "reparameterized")

    def terms_at(self, zs: tuple[jax.Array, ...]) -> Terms:
        """The terms at given samples, with q's parameters (not the samples) held fixed.

        Args:
          zs: one sample per layer, z_1 first, each `[S, B, D_l]` (as `sample` returns).

        Returns:
          The `Terms` at `zs`, `[S, B]` log-densities per layer.
        """
        return self._terms(zs, stop=True)

    def _terms(self, zs: tuple[jax.Array, ...], *, stop: bool) -> Terms:
        """The terms at `zs`; `stop` holds q's parameters fixed (the samples stay live)."""
        b = self.bound
        q1 = jax.lax.stop_gradient(self.q1) if stop else self.q1
        qs = [q1] + [b.apply("q", i, zs[i - 1], stop=stop) for i in range(1, len(zs))]
        log_q = tuple(GAUSSIAN.log_prob(q, z) for q, z in zip(qs, zs, strict=True))
        log_p = [GAUSSIAN.log_prob(b.apply("p", i, zs[i + 1]), zs[i]) for i in range(len(zs) - 1)]
        check_prior_dim(b.prior, zs[-1])
        return Terms(
            log_px_z=log_likelihoods(self.x, zs[0], b.decode, b.likelihood),
            log_p=(*log_p, b.prior.log_prob(zs[-1])),
            log_q=log_q,
            kl_per_dim=(None,) * len(zs),  # Monte Carlo, as Burda et al.
        )


@dataclasses.dataclass(frozen=True)
class LadderInference:
    """`Inference` of a `LadderVAE` for a batch: the bottom-up pass computed once."""

    bound: HierarchyBound
    x: jax.Array
    up: list[Gaussian]

    def describe(self, layer: int) -> str:
        """Names a stochastic layer's q and p, for error messages.

        Args:
          layer: the 0-based layer index.

        Returns:
          A phrase naming the layer (1-based) and the prior's type.
        """
        return (
            f"q and p of the ladder's layer {layer + 1} (prior {type(self.bound.prior).__name__})"
        )

    def sample_terms(self, key, num_samples, gradient_estimator="reparameterized") -> Terms:
        """Draws `num_samples` samples top down per example and returns their terms.

        Args:
          key: a PRNG key for the samples.
          num_samples: S, the samples per example.
          gradient_estimator: "reparameterized" only (a ValueError otherwise: q and p share
            the top-down pass).

        Returns:
          The `Terms`, `[S, B]` log-densities per layer, and each layer's closed-form KL per
          dimension: `[S, B, D_l]` below the top (given the sample above), the top's `[B, D_L]`
          (or None where the prior has no closed form).
        """
        if gradient_estimator != "reparameterized":
            raise ValueError(
                f"gradient_estimator={gradient_estimator!r} holds q's parameters fixed apart from "
                "p's, but the ladder's q shares the top-down pass with p; use 'reparameterized' "
                "with LadderVAE (or the StackedVAE for 'stl'/'dreg')."
            )
        b, L = self.bound, len(self.up)
        keys = _layer_keys(key, L)
        q_top = self.up[-1]
        z = GAUSSIAN.sample(keys[-1], q_top, num_samples)
        check_prior_dim(b.prior, z)
        zs, log_q, log_p = [z], [GAUSSIAN.log_prob(q_top, z)], [b.prior.log_prob(z)]
        kl = [analytic_kl_per_dim(GAUSSIAN, q_top, b.prior)]
        for layer in reversed(range(L - 1)):
            p = b.apply("p", layer, zs[0])  # [S, B, D]
            up = {n: jnp.broadcast_to(v, p[n].shape) for n, v in self.up[layer].items()}
            q = precision_weighted(up, p)
            z = GAUSSIAN.sample(keys[layer], q)
            zs.insert(0, z)
            log_q.insert(0, GAUSSIAN.log_prob(q, z))
            log_p.insert(0, GAUSSIAN.log_prob(p, z))
            kl.insert(0, gaussian_kl_per_dim(q, p))
        return Terms(
            log_px_z=log_likelihoods(self.x, zs[0], b.decode, b.likelihood),
            log_p=tuple(log_p),
            log_q=tuple(log_q),
            kl_per_dim=tuple(kl),
        )


def _made(cls, data_shape, likelihood, latent_sizes, hidden_sizes, activation, input_scale):
    return cls(
        latent_sizes=tuple(latent_sizes),
        hidden_sizes=tuple(tuple(h) for h in hidden_sizes),
        data_shape=tuple(data_shape),
        likelihood=likelihood,
        activation=activation,
        input_scale=input_scale,
    )


def stacked(
    *,
    data_shape,
    likelihood,
    latent_sizes: Sequence[int] = (100, 50),
    hidden_sizes: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
    activation: str = "tanh",
    input_scale: float = 1.0,
) -> StackedVAE:
    """Bottom-up stochastic layers of any sizes (the general form of `burda2015_2layer`).

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: p(x | z_1) (`vaejax.likelihoods`).
      latent_sizes: each stochastic layer's size, z_1 (nearest the data) first.
      hidden_sizes: per layer, the widths of its deterministic layers.
      activation: a name of `networks.activation`.
      input_scale: multiplies the encoder's input.

    Returns:
      The model; `networks.bind(model, params)` gives what the objectives take as `model=`.
    """
    args = (latent_sizes, hidden_sizes, activation, input_scale)
    return _made(StackedVAE, data_shape, likelihood, *args)


def burda2015_2layer(*, data_shape, likelihood, input_scale: float = 1.0) -> StackedVAE:
    """Burda et al. 2015, two stochastic layers: x-200-200-z1(100)-100-100-z2(50), tanh,
    bottom-up inference and a mirrored generative path.

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: p(x | z_1) (`vaejax.likelihoods`).
      input_scale: multiplies the encoder's input.

    Returns:
      The `StackedVAE`.
    """
    sizes = dict(latent_sizes=(100, 50), hidden_sizes=((200, 200), (100, 100)))
    return stacked(data_shape=data_shape, likelihood=likelihood, input_scale=input_scale, **sizes)


def ladder(
    *,
    data_shape,
    likelihood,
    latent_sizes: Sequence[int] = (64, 32),
    hidden_sizes: Sequence[Sequence[int]] = ((512, 512), (256, 256)),
    activation: str = "tanh",
    input_scale: float = 1.0,
) -> LadderVAE:
    """A ladder VAE with any number of layers (Sonderby et al. 2016).

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: p(x | z_1) (`vaejax.likelihoods`).
      latent_sizes: each stochastic layer's size, z_1 (nearest the data) first.
      hidden_sizes: per layer, the widths of its deterministic layers.
      activation: a name of `networks.activation`.
      input_scale: multiplies the encoder's input.

    Returns:
      The model; `networks.bind(model, params)` gives what the objectives take as `model=`.
    """
    args = (latent_sizes, hidden_sizes, activation, input_scale)
    return _made(LadderVAE, data_shape, likelihood, *args)


PRESETS: dict[str, Callable[..., _Hierarchy]] = {
    "burda2015_2layer": burda2015_2layer,
    "stacked": stacked,
    "ladder": ladder,
}


def build(
    preset: str,
    *,
    data_shape: Sequence[int],
    likelihood: Likelihood,
    input_scale: float = 1.0,
    activation: str = "tanh",
    latent_sizes: Sequence[int] = (),
    hidden_sizes: Sequence[Sequence[int]] = (),
) -> _Hierarchy:
    """The preset named `preset`; for "stacked" and "ladder", the given activation and layers
    (empty: the preset's own). `burda2015_2layer` is fixed. Every layer is a diagonal Gaussian
    with a log-variance head.

    Args:
      preset: "burda2015_2layer", "stacked" or "ladder".
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: p(x | z_1) (`vaejax.likelihoods`).
      input_scale: multiplies the encoder's input.
      activation: a name of `networks.activation` (not for "burda2015_2layer").
      latent_sizes: each stochastic layer's size, z_1 first; empty for the preset's.
      hidden_sizes: per layer, the widths of its deterministic layers; empty for the preset's.

    Returns:
      The hierarchical model (a `StackedVAE` or a `LadderVAE`).
    """
    kwargs: dict[str, Any] = dict(
        data_shape=tuple(data_shape), likelihood=likelihood, input_scale=input_scale
    )
    if preset != "burda2015_2layer":
        kwargs["activation"] = activation
        if latent_sizes:
            kwargs["latent_sizes"] = tuple(latent_sizes)
        if hidden_sizes:
            kwargs["hidden_sizes"] = tuple(tuple(h) for h in hidden_sizes)
    return PRESETS[preset](**kwargs)
