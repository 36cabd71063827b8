"""Flax (Linen) encoders and decoders, used through pure `apply`.

Encoders end in one plain `nn.Dense` head per posterior param (no activation, no normalization:
the posterior interprets the raw values). Decoders end in one plain head per likelihood param,
reshaped to the data's shape (no output activation: the likelihood is the activation); a param of
shape `()` is one learned scalar instead of a head, returned broadcast to `[B]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import conditioning as conditioning_lib
from vaejax import conv, terms
from vaejax.likelihoods import Likelihood
from vaejax.likelihoods.base import is_free
from vaejax.posteriors import DiagonalGaussian, Posterior
from vaejax.priors import ConditionalNormal, StandardNormal, VampPrior

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function of a name.

    Args:
      name: "tanh", "relu", "elu", "gelu", "silu", "softplus" or "leaky_relu".

    Returns:
      The elementwise function, e.g. `nn.tanh`.
    """
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; valid names: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def posterior_heads(posterior: Posterior, h: jax.Array, latent_dim: int) -> dict[str, Any]:
    """The posterior's params from the encoder's last hidden layer `h`, inside the calling
    encoder module: one plain `nn.Dense` head per param (`posterior.head_sizes(latent_dim)`
    where the posterior has it, else `latent_dim` wide), and, for a posterior with weights of
    its own (a flow's `weights(latent_dim, name)`), those weights under "flow".

    Args:
      posterior: the `Posterior`; its `param_names` (or `head_sizes`) name the heads.
      h: the encoder's last hidden layer, `[B, H]`.
      latent_dim: D, the size of z.

    Returns:
      A dict of one `[B, size]` array per head, and the flow's per-step weights under "flow"
      where the posterior has them.
    """
    sizes = getattr(posterior, "head_sizes", None)
    sizes = sizes(latent_dim) if sizes else dict.fromkeys(posterior.param_names, latent_dim)
    out: dict[str, Any] = {n: nn.Dense(size, name=n)(h) for n, size in sizes.items()}
    if hasattr(posterior, "weights"):
        out["flow"] = posterior.weights(latent_dim, name="flow")()
    return out


class MLPEncoder(nn.Module):
    """x `[B, ...]` (and a side input `c` `[B, C]`, concatenated to the flattened x) ->
    posterior params, each `[B, latent_dim]`."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    posterior: Posterior = DiagonalGaussian()
    activation: str = "tanh"
    input_scale: float = 1.0  # e.g. 1/255 when the data are integer levels

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array | None = None) -> dict[str, jax.Array]:
        act = activation(self.activation)
        h = _with_condition(x.reshape(x.shape[0], -1).astype(jnp.float32) * self.input_scale, c)
        for i, size in enumerate(self.hidden_sizes):
            h = act(nn.Dense(size, name=f"hidden_{i}")(h))
        return posterior_heads(self.posterior, h, self.latent_dim)


class MLPDecoder(nn.Module):
    """z `[B, D]` (and a side input `c` `[B, C]`, concatenated to z) -> likelihood params for
    data of shape `[B, *data_shape]`.

    `pixel_features`: 0 for one plain `nn.Dense` head per param. When > 0, a param with an axis
    beyond the data's (the categorical's K logits per pixel) gets a `PixelHead` instead: its K
    values per pixel come from `pixel_features` features of that pixel, not from one layer
    `hidden x (pixels x K)` wide (200,704 outputs for 8-bit MNIST).
    """

    hidden_sizes: Sequence[int]
    data_shape: tuple[int, ...]
    likelihood: Likelihood
    activation: str = "tanh"
    pixel_features: int = 0

    @nn.compact
    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> dict[str, jax.Array]:
        act = activation(self.activation)
        h = _with_condition(z, c)
        for i, size in enumerate(self.hidden_sizes):
            h = act(nn.Dense(size, name=f"hidden_{i}")(h))
        out = {}
        data_shape = tuple(self.data_shape)
        for name, shape in self.likelihood.param_shapes(data_shape).items():
            if is_free(self.likelihood, name, shape):
                out[name] = _free(self, name, shape, z.shape[0])
            elif self.pixel_features and len(shape) > len(data_shape):
                out[name] = PixelHead(shape, self.pixel_features, self.activation, name=name)(h)
            else:
                flat = nn.Dense(math.prod(shape), name=name)(h)
                out[name] = flat.reshape(*h.shape[:-1], *shape)
        return out


class PixelHead(nn.Module):
    """h `[B, H]` -> `[B, *shape]`, shape = `(*pixels, K)`: each pixel's K values from its own
    `features` features (`nn.Dense(pixels x features)` and the activation), through one
    `nn.Dense(K)` shared by every pixel (a 1x1 convolution), plus a bias per pixel and value
    (flat, so `set_output_bias` sets it to the data's per-pixel marginal)."""

    shape: tuple[int, ...]
    features: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        *pixels, k = self.shape
        f = nn.Dense(math.prod(pixels) * self.features, name="features")(h)
        f = activation(self.activation)(f).reshape(*h.shape[:-1], *pixels, self.features)
        bias = self.param("bias", nn.initializers.zeros, (math.prod(self.shape),))
        bias = bias.reshape((1,) * (h.ndim - 1) + self.shape)
        return nn.Dense(k, use_bias=False, name="shared")(f) + bias


def _with_condition(h: jax.Array, c: jax.Array | None) -> jax.Array:
    """`h` `[B, F]` with the side input `c` `[B, C]` appended, `[B, F + C]` (`h` without one)."""
    return h if c is None else jnp.concatenate([h, c.astype(h.dtype)], axis=-1)


def _free(module: nn.Module, name: str, shape: tuple[int, ...], batch: int) -> jax.Array:
    """A likelihood param learned as a free parameter (init 0), the same for every example
    (e.g. a shared variance, or a count model's dispersion per feature): `[batch, *shape]`."""
    return jnp.broadcast_to(module.param(name, nn.initializers.zeros, shape), (batch, *shape))


def _check_image_shape(data_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(data_shape) != 3 or data_shape[0] % 4 or data_shape[1] % 4:
        raise ValueError(
            f"Conv networks need images of shape (H, W, C) with H and W divisible by 4 "
            f"(e.g. 28x28 or 32x32); got data_shape {tuple(data_shape)}. Use the MLP networks."
        )
    return tuple(data_shape)


class ConvEncoder(nn.Module):
    """Images `[B, H, W, C]` (H, W divisible by 4) -> posterior params `[B, latent_dim]`; a side
    input `c` `[B, C]` joins the image as C constant channels."""

    latent_dim: int
    channels: Sequence[int] = (32, 64)
    hidden_size: int = 256
    posterior: Posterior = DiagonalGaussian()
    activation: str = "relu"
    input_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array | None = None) -> dict[str, jax.Array]:
        act = activation(self.activation)
        _check_image_shape(x.shape[1:])
        h = x.astype(jnp.float32) * self.input_scale
        if c is not None:  # the side input as constant channels at every pixel
            h = jnp.concatenate(
                [h, jnp.broadcast_to(c[:, None, None], (*h.shape[:3], c.shape[-1]))], -1
            )
        for i, c in enumerate(self.channels):
            h = act(conv.Conv(c, (3, 3), strides=(2, 2), name=f"conv_{i}")(h))
        h = act(nn.Dense(self.hidden_size, name="hidden")(h.reshape(h.shape[0], -1)))
        return posterior_heads(self.posterior, h, self.latent_dim)


class ConvDecoder(nn.Module):
    """z `[B, D]` (and a side input `c` `[B, C]`, concatenated to z) -> likelihood params for
    images `[B, H, W, C]` (H, W divisible by 4)."""

    data_shape: tuple[int, ...]
    likelihood: Likelihood
    channels: Sequence[int] = (64, 32)
    hidden_size: int = 256
    activation: str = "relu"

    @nn.compact
    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> dict[str, jax.Array]:
        act = activation(self.activation)
        height, width, _ = _check_image_shape(self.data_shape)
        base = (height // 4, width // 4, self.channels[0])
        h = act(nn.Dense(self.hidden_size, name="hidden")(_with_condition(z, c)))
        h = act(nn.Dense(math.prod(base), name="project")(h)).reshape(z.shape[0], *base)
        h = act(conv.ConvTranspose(self.channels[0], (3, 3), strides=(2, 2), name="deconv_0")(h))
        h = act(conv.ConvTranspose(self.channels[1], (3, 3), strides=(2, 2), name="deconv_1")(h))
        out = {}
        for name, shape in self.likelihood.param_shapes(tuple(self.data_shape)).items():
            if is_free(self.likelihood, name, shape):
                out[name] = _free(self, name, shape, z.shape[0])
                continue
            # A plain 1x1 conv head per param: the per-pixel equivalent of a Dense head.
            extra = math.prod(shape[2:])
            out[name] = conv.Conv(extra, (1, 1), name=name)(h).reshape(z.shape[0], *shape)
        return out


class VAEOutput(NamedTuple):
    posterior_params: dict[str, Any]  # each [B, ...]; a flow's weights under "flow"
    z: jax.Array  # [B, D], one reparameterized sample
    likelihood_params: dict[str, jax.Array]  # each [B, *data_shape(, K)]


class VAE(nn.Module):
    """An encoder, a decoder and a prior; `bind` gives the functions and the prior the
    objectives take.

    `prior`: None (the standard normal), a fixed distribution (`vaejax.priors.Prior`), or a Flax
    module returning one when called with the model's `encode` (`vaejax.priors.LearnedNormal`,
    `LearnedMixture`, `VampPrior`): its parameters live beside the encoder's and decoder's.

    `conditioning` (`vaejax.conditioning.Labels` or `Features`): a conditional VAE, q(z | x, y)
    and p(x | z, y), whose encoder and decoder take the embedded side input y as a second
    argument (the presets concatenate it to their inputs); with the prior
    `priors.ConditionalNormal`, p(z | y) is learned too. `bind(model, params, y=y)` gives the
    model conditioned on a batch's y, which the objectives take as any other model.
    """

    encoder: nn.Module
    decoder: nn.Module
    prior: Any = None
    conditioning: conditioning_lib.Conditioning | None = None

    def __post_init__(self):
        conditional_prior = isinstance(self.prior, ConditionalNormal)
        if conditional_prior and self.conditioning is None:
            raise ValueError(
                "The prior ConditionalNormal is p(z | y) and needs a conditional model: give the "
                "VAE conditioning=Labels(num_classes) or Features(shape), or another prior."
            )
        if self.conditioning is not None and isinstance(self.prior, VampPrior):
            raise ValueError(
                "The VampPrior encodes its pseudo-inputs, which have no side input y: with "
                "conditioning use the prior ConditionalNormal (p(z | y)) or an unconditional one."
            )
        super().__post_init__()

    @property
    def posterior(self) -> Posterior:
        return self.encoder.posterior

    @property
    def likelihood(self) -> Likelihood:
        return self.decoder.likelihood

    @property
    def latent_sizes(self) -> tuple[int]:
        """The one stochastic layer's size (a hierarchical model lists one per layer)."""
        return (self.encoder.latent_dim,)

    def condition(self, y: jax.Array | None, rows: int | None = None) -> jax.Array | None:
        """The networks' side input for `y`, checked against the model's `conditioning`.

        Args:
          y: the batch's side inputs (`[B]` labels or `[B, *shape]` features), or None.
          rows: the rows they must match (S * B samples, sample-major); None: B.

        Returns:
          The embedded `[rows, C]` (`conditioning.embed`), or None for an unconditional model.
        """
        if (y is None) != (self.conditioning is None):
            if y is None:
                self.conditioning.check(None)  # the ValueError saying what y this model takes
            raise ValueError(
                "This model is not conditioned (no conditioning), so it takes no y; build it "
                "with conditioning=Labels(num_classes) or Features(shape) to condition on y."
            )
        if y is None:
            return None
        c = self.conditioning.embed(y)
        return c if rows is None else conditioning_lib.repeat_rows(c, rows)

    def encode(self, x: jax.Array, y: jax.Array | None = None) -> dict[str, jax.Array]:
        """Runs the encoder, q(z | x) or q(z | x, y).

        Args:
          x: a batch `[B, *data_shape]`.
          y: its side inputs (a conditional model's), `[B]` labels or `[B, *shape]` features.

        Returns:
          The posterior's params, each `[B, ...]` (a flow's weights under "flow").
        """
        c = self.condition(y)
        return self.encoder(x) if c is None else self.encoder(x, c)

    def decode(self, z: jax.Array, y: jax.Array | None = None) -> dict[str, jax.Array]:
        """Runs the decoder, p(x | z) or p(x | z, y).

        Args:
          z: latents `[N, D]`, N = S * B for S samples of each of B examples (sample-major).
          y: the B examples' side inputs (a conditional model's).

        Returns:
          The likelihood's params, each `[N, *data_shape]` (or `[N, *data_shape, K]`).
        """
        c = self.condition(y, z.shape[0])
        return self.decoder(z) if c is None else self.decoder(z, c)

    def prior_distribution(self, y: jax.Array | None = None) -> Any:
        """p(z), or p(z | y), as a distribution (for a learned prior: at the current parameters).

        Args:
          y: a conditional model's side inputs `[B, ...]`; with `ConditionalNormal` the prior's
            means and scales are then `[B, D]`.

        Returns:
          A `StandardNormal` of the encoder's latent size where `prior` is None, the learned
          prior's distribution, or the fixed `prior` itself.
        """
        c = self.condition(y)
        if self.prior is None:
            return StandardNormal(self.encoder.latent_dim)
        if isinstance(self.prior, ConditionalNormal):
            return self.prior(c)
        if isinstance(self.prior, nn.Module):
            return self.prior(self.encode)
        return self.prior

    def bound_to(self, params: Any, y: jax.Array | None = None) -> Bound:
        """The model at `params` (what `bind` returns for a `VAE`).

        Args:
          params: the model's parameter tree.
          y: a conditional model's side inputs for the batches it will see, `[B, ...]`.

        Returns:
          The `Bound` model.
        """
        return Bound(self, params, y)

    def __call__(self, x: jax.Array, key: jax.Array, y: jax.Array | None = None) -> VAEOutput:
        q = self.encode(x, y)
        z = self.posterior.sample(key, q)
        self.prior_distribution(y)  # creates a learned prior's parameters at `init`
        return VAEOutput(q, z, self.decode(z, y))


class Bound(tuple):
    """What `bind` returns for a `VAE`: unpacks as `(encode, decode)`; `.prior` is the bound
    prior, `.infer(x)` the one-layer `terms.Inference` the objectives take as `model=`. A
    conditional model's is bound to one batch's side inputs `y` too: its functions, prior and
    inference are those given y."""

    def __new__(cls, model: VAE, params: Any, y: jax.Array | None = None) -> Bound:
        variables = {"params": params}
        encode = lambda x: model.apply(variables, x, y, method=VAE.encode)
        decode = lambda z: model.apply(variables, z, y, method=VAE.decode)
        self = super().__new__(cls, (encode, decode))
        self.encode, self.decode = encode, decode
        self.prior = model.apply(variables, y, method=VAE.prior_distribution)
        self.likelihood, self.posterior = model.likelihood, model.posterior
        self.latent_sizes = model.latent_sizes
        return self

    def infer(self, x: jax.Array) -> terms.OneLayer:
        """Encodes the batch once.

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          The batch's `terms.OneLayer` inference.
        """
        return terms.OneLayer(
            x, self.encode(x), self.decode, self.likelihood, self.posterior, self.prior
        )

    def codes(self, x: jax.Array) -> tuple[jax.Array]:
        """The posterior means `[B, D]` (one stochastic layer).

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          A one-element tuple, the means `[B, D]`.
        """
        return (self.encode(x)["mean"],)

    def reconstruct(self, x: jax.Array) -> dict[str, jax.Array]:
        """The likelihood's params decoded at the posterior means.

        Args:
          x: a batch `[B, *data_shape]`.

        Returns:
          The likelihood's params, each `[B, *data_shape]` (or `[B, *data_shape, K]`).
        """
        return self.decode(self.encode(x)["mean"])

    def sample_prior(self, key: jax.Array, num: int) -> dict[str, jax.Array]:
        """The likelihood's params at `num` draws from the prior.

        Args:
          key: a PRNG key for the draws.
          num: N, the number of draws (a conditional model's: one per bound y).

        Returns:
          The likelihood's params, each `[N, *data_shape]` (or `[N, *data_shape, K]`).
        """
        return self.decode(self.prior.sample(key, (num,)))


def bind(model: Any, params: Any, y: jax.Array | None = None) -> Any:
    """The model at `params`, as the objectives take it (`model=bind(model, params)`).

    For a `VAE`: `encode, decode = bind(model, params)` as ever, `.prior` is p(z) at `params`
    and `.infer` the per-batch inference. Any other model brings its own (`model.bound_to`,
    e.g. the hierarchical models of `vaejax.hierarchical`).

    Args:
      model: a `VAE`, or any module with `bound_to(params)`.
      params: its parameters (`init`, or a trained state's).
      y: a conditional model's side inputs for one batch, `[B]` labels or `[B, *shape]`
        features (`VAE.conditioning`); the objectives then reduce the terms given y, e.g. the
        conditional ELBO on log p(x | y).

    Returns:
      The bound model: an `(encode, decode)` pair with `.prior` and `.infer` for a `VAE`.
    """
    if y is None:
        return model.bound_to(params)
    if getattr(model, "conditioning", None) is None:
        raise ValueError(
            f"{type(model).__name__} is not a conditional model, so it takes no y: build a VAE "
            "with conditioning=Labels(num_classes) or Features(shape) (the one-layer presets)."
        )
    return model.bound_to(params, y)


def is_conditional(model: Any) -> bool:
    """Whether `model` takes a side input y (a `VAE` with `conditioning`).

    Args:
      model: any model.

    Returns:
      True for a conditional model.
    """
    return getattr(model, "conditioning", None) is not None


def init(model: VAE, key: jax.Array, x: jax.Array, y: jax.Array | None = None) -> Any:
    """Initial params from a batch `x` (only its shape and dtype matter).

    Args:
      model: the VAE (or a hierarchical model) to initialize.
      key: a PRNG key for the initializers.
      x: a batch `[B, *data_shape]` of the data's dtype.
      y: a conditional model's side inputs for it.

    Returns:
      The parameter tree, `model.init(...)["params"]`.
    """
    if y is None:
        return model.init(key, x, jax.random.key(0))["params"]
    return model.init(key, x, jax.random.key(0), y)["params"]


def set_output_bias(params: Any, bias: Mapping[str, np.ndarray]) -> Any:
    """Returns params with the decoder's output-head biases set, e.g. from `likelihood.output_bias`.

    Starting the Bernoulli logits at the logit of the mean pixel skips the first steps of learning
    the marginal. A conv head's bias is per channel, so there the bias is averaged over space; a
    free parameter (not a head) is set to the bias, or to its mean when it is a scalar.

    Args:
      params: the VAE's parameter tree, with the decoder's under "decoder".
      bias: per likelihood param name, its head's bias in the param's shape (e.g.
        `[*data_shape]`), as `likelihood.output_bias(x)` gives.

    Returns:
      A copy of `params` with those heads' biases (or free parameters) replaced.
    """
    decoder = dict(params["decoder"])
    for name, b in bias.items():
        if not isinstance(decoder[name], Mapping):  # a free parameter, not a head
            shape = np.shape(decoder[name])
            b = np.mean(b) if shape == () else np.reshape(b, shape)
            decoder[name] = jnp.asarray(b, jnp.float32)
            continue
        size = decoder[name]["bias"].shape[0]
        b = np.asarray(b, np.float32).reshape(-1, size).mean(0)
        decoder[name] = {**decoder[name], "bias": jnp.asarray(b)}
    return {**params, "decoder": decoder}


def mlp_vae(
    *,
    data_shape: Sequence[int],
    likelihood: Likelihood,
    latent_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "tanh",
    posterior: Posterior = DiagonalGaussian(),
    input_scale: float = 1.0,
    pixel_features: int = 0,
) -> VAE:
    """A symmetric MLP VAE: the decoder's hidden sizes mirror the encoder's.

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: the decoder's likelihood (`vaejax.likelihoods`): its heads and its loss.
      latent_dim: D, the size of z.
      hidden_sizes: the encoder's widths, input side first.
      activation: a name of `networks.activation` ("tanh", "relu", ...).
      posterior: q(z | x): the encoder's heads (`vaejax.posteriors`).
      input_scale: multiplies the encoder's input (e.g. 1 / 255 for integer levels).
      pixel_features: > 0: each pixel's K values from its own features (`PixelHead`), e.g. 16
        for a categorical over 8-bit levels; 0: one plain head per likelihood param.

    Returns:
      The `VAE` module.
    """
    hidden = tuple(hidden_sizes)
    return VAE(
        MLPEncoder(hidden, latent_dim, posterior, activation, input_scale),
        MLPDecoder(hidden[::-1], tuple(data_shape), likelihood, activation, pixel_features),
    )


def conv_vae(
    *,
    data_shape: Sequence[int],
    likelihood: Likelihood,
    latent_dim: int,
    posterior: Posterior = DiagonalGaussian(),
    input_scale: float = 1.0,
) -> VAE:
    """A small conv VAE for 28x28 or 32x32 images (two stride-2 convs each way).

    Args:
      data_shape: one image's shape `(H, W, C)`, H and W divisible by 4.
      likelihood: the decoder's likelihood (`vaejax.likelihoods`).
      latent_dim: D, the size of z.
      posterior: q(z | x): the encoder's heads (`vaejax.posteriors`).
      input_scale: multiplies the encoder's input (e.g. 1 / 255 for integer levels).

    Returns:
      The `VAE` module.
    """
    return VAE(
        ConvEncoder(latent_dim, posterior=posterior, input_scale=input_scale),
        ConvDecoder(tuple(data_shape), likelihood),
    )


def kingma2013(
    *, data_shape, likelihood, latent_dim=20, posterior=DiagonalGaussian(), input_scale=1.0
) -> VAE:
    """Kingma & Welling 2013, App. C: one tanh hidden layer of 500 units (MNIST) each way.

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: the decoder's likelihood (`vaejax.likelihoods`).
      latent_dim: D, the size of z.
      posterior: q(z | x): the encoder's heads (`vaejax.posteriors`).
      input_scale: multiplies the encoder's input (e.g. 1 / 255 for integer levels).

    Returns:
      The `VAE` module.
    """
    return mlp_vae(
        data_shape=data_shape,
        likelihood=likelihood,
        latent_dim=latent_dim,
        hidden_sizes=(500,),
        activation="tanh",
        posterior=posterior,
        input_scale=input_scale,
    )


def burda2015(
    *, data_shape, likelihood, latent_dim=50, posterior=DiagonalGaussian(), input_scale=1.0
) -> VAE:
    """Burda et al. 2015, one stochastic layer: 784-200-200-50 tanh, mirrored decoder.

    Args:
      data_shape: one example's shape, e.g. `(28, 28, 1)`.
      likelihood: the decoder's likelihood (`vaejax.likelihoods`).
      latent_dim: D, the size of z.
      posterior: q(z | x): the encoder's heads (`vaejax.posteriors`).
      input_scale: multiplies the encoder's input (e.g. 1 / 255 for integer levels).

    Returns:
      The `VAE` module.
    """
    return mlp_vae(
        data_shape=data_shape,
        likelihood=likelihood,
        latent_dim=latent_dim,
        hidden_sizes=(200, 200),
        activation="tanh",
        posterior=posterior,
        input_scale=input_scale,
    )


PRESETS: dict[str, Callable[..., VAE]] = {
    "kingma2013": kingma2013,
    "burda2015": burda2015,
    "mlp": mlp_vae,
    "conv": conv_vae,
}
