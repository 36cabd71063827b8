"""2-D convolutions as Flax modules that lower to one matmul each on CPU.

`Conv` and `ConvTranspose` replace `flax.linen.Conv` / `ConvTranspose` as the networks use them
(channels-last `[B, H, W, C]`, no dilation or groups), with the same parameter names, shapes and
initializers. On GPU and TPU they call `lax.conv_general_dilated` / `lax.conv_transpose` as Flax
does; on CPU (`cpu_fastpaths`' `conv_as_matmul`) they compute the same function as im2col
slices and one `dot_general` (the transpose: one matmul, then col2im by padded slabs), because
XLA:CPU runs convolutions far below its matmul speed (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vaejax import cpu_fastpaths

Padding = str | Sequence[tuple[int, int]]
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _pairs(padding: Padding, name: str) -> Padding:
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"{name} supports padding 'SAME', 'VALID' or pairs; got {padding!r}.")
        return padding
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv2d_as_matmul(
    x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding
) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, strides, padding)` (NHWC, HWIO) as im2col and a matmul.

    The padded input is viewed space-to-depth (`[B, H/sh, sh, W/sw, sw, C]`), so that every tap
    is a unit-stride slice (whose gradient is a plain pad, not an interior one).

    Args:
      x: `[B, H, W, Cin]`.
      kernel: `[kh, kw, Cin, Cout]`.
      strides: `(sh, sw)`.
      padding: "SAME", "VALID" or `((lo, hi), (lo, hi))`, as `lax.conv_general_dilated` takes it.

    Returns:
      `[B, H', W', Cout]`, `lax.conv_general_dilated`'s output shape.
    """
    kh, kw, cin, cout = kernel.shape
    sh, sw = strides
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
    (top, bottom), (left, right) = padding
    batch, height, width, _ = x.shape
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    # The rows and columns the taps reach, rounded up to whole strides.
    hp, wp = sh * (out_h + (kh - 1) // sh), sw * (out_w + (kw - 1) // sw)
    pads = ((0, 0, 0), (top, hp - height - top, 0), (left, wp - width - left, 0), (0, 0, 0))
    x6 = lax.pad(x, jnp.zeros((), x.dtype), pads).reshape(batch, hp // sh, sh, wp // sw, sw, cin)
    taps = [
        x6[:, i // sh : i // sh + out_h, i % sh, j // sw : j // sw + out_w, j % sw]
        for i in range(kh)
        for j in range(kw)
    ]
    # The channel order (i, j, c) is the kernel's HWIO order, so its reshape is the matrix.
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    # 2-D operands: XLA:CPU hands those to its matmul library; a 4-D dot_general ran 4x slower.
    y = patches.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return y.reshape(batch, out_h, out_w, cout)


def _transpose_pads(k: int, s: int, padding: str | tuple[int, int]) -> tuple[int, int]:
    """`lax.conv_transpose`'s padding of the stride-dilated input, for one spatial axis."""
    if padding == "SAME":
        pad_len = k + s - 2
        pad_a = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
    elif padding == "VALID":
        pad_len = k + s - 2 + max(k - s, 0)
        pad_a = k - 1
    else:  # pairs pad the dilated input directly (`lax.conv_transpose`'s default)
        return padding
    return pad_a, pad_len - pad_a


def _shifted(z: jax.Array, axis: int, offset: int, length: int) -> jax.Array:
    """`z[q + offset]` along `axis` for `q` in `[0, length)`, zero outside `z`."""
    config = [(0, 0, 0)] * z.ndim
    config[axis] = (-offset, length - z.shape[axis] + offset, 0)
    return lax.pad(z, jnp.zeros((), z.dtype), config)


def conv_transpose2d_as_matmul(
    x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding
) -> jax.Array:
    """`lax.conv_transpose(x, kernel, strides, padding)` (NHWC, HWIO, kernel not transposed).

    One matmul gives every input pixel's `kh * kw` contributions (the transposed conv's FLOPs
    and no more); tap `(i, j)` of pixel `(h, w)` lands on output `(sh * h + top - i, ...)`.
    The outputs are summed per phase `(o mod sh, o mod sw)`, where each tap is a plain shift,
    and the phases interleaved (depth-to-space): no interior padding, which XLA:CPU runs slowly.

    Args:
      x: `[B, H, W, Cin]`.
      kernel: `[kh, kw, Cin, Cout]`.
      strides: `(sh, sw)`.
      padding: "SAME", "VALID" (the forward conv's), or pairs that pad the stride-dilated input,
        as `lax.conv_transpose` takes them by default.

    Returns:
      `[B, H', W', Cout]`, `lax.conv_transpose`'s output shape (`H' = sh * H` for "SAME").
    """
    kh, kw, cin, cout = kernel.shape
    batch, height, width, _ = x.shape
    sh, sw = strides
    per_axis = [padding] * 2 if isinstance(padding, str) else padding
    (top, bottom), (left, right) = (
        _transpose_pads(k, s, p) for k, s, p in zip((kh, kw), strides, per_axis, strict=True)
    )
    out_h = (height - 1) * sh + top + bottom - kh + 2
    out_w = (width - 1) * sw + left + right - kw + 2
    qh, qw = -(-out_h // sh), -(-out_w // sw)  # outputs per phase, rounded up
    matrix = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin, kh * kw * cout)
    z = (x.reshape(-1, cin) @ matrix).reshape(batch, height, width, kh * kw, cout)
    # Split, not indexed: the gradient of a split is one concatenate, while each index's is a
    # full-size pad of z, and their sum kh * kw passes over it.
    taps = [t[:, :, :, 0] for t in jnp.split(z, kh * kw, axis=3)]
    rows = []
    for a in range(sh):
        cols = []
        for c in range(sw):
            phase = jnp.zeros((batch, qh, qw, cout), z.dtype)
            for i in (i for i in range(kh) if (top - i - a) % sh == 0):
                for j in (j for j in range(kw) if (left - j - c) % sw == 0):
                    tap = _shifted(taps[i * kw + j], 1, (a - top + i) // sh, qh)
                    phase = phase + _shifted(tap, 2, (c - left + j) // sw, qw)
            cols.append(phase)
        rows.append(jnp.stack(cols, axis=3))  # [B, qh, qw, sw, Cout]
    y = jnp.stack(rows, axis=2).reshape(batch, qh * sh, qw * sw, cout)
    return y[:, :out_h, :out_w]


class _Conv2D(nn.Module):
    """The parameters and bias shared by `Conv` and `ConvTranspose`; `_convolve` differs."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    def _convolve(self, x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = self._convolve(x, kernel, _pairs(self.padding, type(self).__name__))
        return y if bias is None else y + bias.reshape(1, 1, 1, -1)


class Conv(_Conv2D):
    """`flax.linen.Conv` for `[B, H, W, C]` images (no dilation, no feature groups)."""

    def _convolve(self, x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
        if cpu_fastpaths.applies("conv_as_matmul"):
            return conv2d_as_matmul(x, kernel, tuple(self.strides), padding)
        return lax.conv_general_dilated(
            x, kernel, tuple(self.strides), padding, dimension_numbers=_DIMENSION_NUMBERS
        )


class ConvTranspose(_Conv2D):
    """`flax.linen.ConvTranspose` (kernel not transposed) for `[B, H, W, C]` images."""

    def _convolve(self, x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
        if cpu_fastpaths.applies("conv_as_matmul"):
            return conv_transpose2d_as_matmul(x, kernel, tuple(self.strides), padding)
        return lax.conv_transpose(
            x, kernel, tuple(self.strides), padding, dimension_numbers=_DIMENSION_NUMBERS
        )
