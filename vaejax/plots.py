"""PNG figures for a VAE work directory: samples, reconstructions, curves, latent space.

Figures are drawn on `matplotlib.figure.Figure` objects rendered by Agg, never through `pyplot`,
so plotting needs no display, keeps no global state and is safe from a background thread. Every
input is a numpy array (callers convert device arrays); every `save_*` function writes one PNG,
creating parent directories, and returns its path.
"""

import math
import os
import pathlib
import statistics
from collections.abc import Callable, Mapping, Sequence

import jax
import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vaejax import files

# Separator lines and empty tiles, in the [0, 1] display range: mid grey stands apart from both the
# black background and the white strokes of digit-like images.
_FILL = 0.5
_DPI = 100


def to_unit_range(images: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Maps image values to [0, 1] for display.

    Args:
      images: Array of any shape and real dtype.
      value_range: `(low, high)` mapped to `(0, 1)`, values outside are clipped. None infers it:
        values already inside [0, 1] are kept, anything else (standardized data, 0..255 integers) is
        scaled from its finite minimum..maximum.

    Returns:
      float32 array of the same shape; non-finite inputs stay non-finite (drawn blank).
    """
    x = np.asarray(images, dtype=np.float32)
    if value_range is None:
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return x
        low, high = float(finite.min()), float(finite.max())
        if low >= 0.0 and high <= 1.0:
            return x
        if high == low:  # A constant image outside [0, 1] has no range to scale.
            return np.where(np.isfinite(x), np.float32(0.5), x)
    else:
        low, high = value_range
        if not high > low:
            raise ValueError(
                f"value_range must be (low, high) with high > low; got {value_range}. "
                "Pass the data's range, e.g. (0, 255) for 8-bit images, or None to infer it."
            )
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def image_grid(images: np.ndarray, *, ncols: int, fill: float = _FILL) -> np.ndarray:
    """Tiles a batch of images into one image, row by row, with 1-pixel separators.

    Args:
      images: `[N, H, W]` or `[N, H, W, C]` with C in {1, 3}.
      ncols: Tiles per row; the last row is padded with `fill` tiles.
      fill: Value of separators and padding tiles.

    Returns:
      `[rows * (H + 1) - 1, ncols * (W + 1) - 1(, C)]` array, `rows = ceil(N / ncols)`, with a float
      dtype at least float32.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(
            f"image_grid needs images shaped [N, H, W] or [N, H, W, C] with C in {{1, 3}}; got "
            f"shape {images.shape}. Reshape flat data to images first."
        )
    if ncols < 1 or len(images) == 0:
        raise ValueError(
            f"image_grid needs ncols >= 1 and N >= 1; got ncols={ncols}, N={len(images)}."
        )
    n, h, w = images.shape[:3]
    rows = math.ceil(n / ncols)
    dtype = np.result_type(images.dtype, np.float32)
    grid = np.full((rows * (h + 1) - 1, ncols * (w + 1) - 1, *images.shape[3:]), fill, dtype=dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return grid


def _figure_for(grid: np.ndarray) -> tuple[Figure, Axes]:
    """A figure whose axes fills it and shows each grid pixel as a whole number of PNG pixels.

    An integer zoom keeps every 1-pixel separator equally wide; titles and tick labels outside the
    axes are kept by saving with `bbox_inches="tight"`.
    """
    h, w = grid.shape[:2]
    zoom = math.ceil(600 / max(h, w))
    fig = Figure(figsize=(w * zoom / _DPI, h * zoom / _DPI), dpi=_DPI)
    return fig, fig.add_axes((0.0, 0.0, 1.0, 1.0))


def _imshow(ax: Axes, grid: np.ndarray) -> None:
    """Draws a [0, 1] grid: grayscale with a fixed 0..1 colour scale, RGB as is."""
    if grid.ndim == 3 and grid.shape[-1] == 1:
        grid = grid[..., 0]
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")


def _save(fig: Figure, path: str | os.PathLike) -> pathlib.Path:
    """Renders the figure to a PNG at `path`, creating parent directories. Atomically: rendered
    to a temporary file beside it, then renamed, so a crash or a full disk leaves the old
    figure or none, never a partial PNG. In a multi-process run only process 0 writes (every
    process draws the same figure)."""
    path = pathlib.Path(path)
    if jax.process_index() != 0:
        return path
    with files.atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return path


def save_samples(
    path: str | os.PathLike,
    images: np.ndarray,
    *,
    ncols: int = 10,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> pathlib.Path:
    """Writes a grid of images, e.g. decoder means of samples from the prior.

    Args:
      path: PNG file to write.
      images: `[N, H, W]` or `[N, H, W, C]`, scaled to [0, 1] together by `to_unit_range`.
      ncols: Images per row.
      title: Optional figure title.
      value_range: See `to_unit_range`.

    Returns:
      The path written.
    """
    grid = image_grid(to_unit_range(images, value_range), ncols=ncols)
    fig, ax = _figure_for(grid)
    _imshow(ax, grid)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return _save(fig, path)


def save_reconstructions(
    path: str | os.PathLike,
    inputs: np.ndarray,
    reconstructions: np.ndarray,
    *,
    ncols: int = 10,
    value_range: tuple[float, float] | None = None,
) -> pathlib.Path:
    """Writes inputs and their reconstructions in alternating rows, each row labelled.

    Args:
      path: PNG file to write.
      inputs: `[N, H, W(, C)]` data.
      reconstructions: Same shape as `inputs`; both share one display scale.
      ncols: Images per row.
      value_range: See `to_unit_range`.

    Returns:
      The path written.
    """
    inputs, reconstructions = np.asarray(inputs), np.asarray(reconstructions)
    if inputs.shape != reconstructions.shape:
        raise ValueError(
            f"inputs and reconstructions must have the same shape; got {inputs.shape} and "
            f"{reconstructions.shape}. Reshape the decoder output to the data shape."
        )
    both = to_unit_range(np.stack([inputs, reconstructions]), value_range)
    n, image_shape = inputs.shape[0], inputs.shape[1:]
    rows = math.ceil(n / ncols)
    # Pad to whole rows, then interleave: row k of inputs is followed by row k of reconstructions.
    padded = np.full((2, rows * ncols, *image_shape), _FILL, dtype=np.float32)
    padded[:, :n] = both
    tiles = padded.reshape(2, rows, ncols, *image_shape).swapaxes(0, 1)
    grid = image_grid(tiles.reshape(2 * rows * ncols, *image_shape), ncols=ncols)
    fig, ax = _figure_for(grid)
    _imshow(ax, grid)
    h = image_shape[0]
    ax.set_yticks([j * (h + 1) + (h - 1) / 2 for j in range(2 * rows)])
    ax.set_yticklabels(["input", "reconstruction"] * rows)
    ax.set_xticks([])
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _save(fig, path)


def _finite_float(value: object) -> float | None:
    """The value as a float, or None when it is missing, non-numeric or non-finite."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def save_curves(
    path: str | os.PathLike,
    records: Sequence[Mapping[str, float]],
    *,
    x_key: str = "step",
) -> pathlib.Path:
    """Writes one subplot per metric family, one line per split, from metric records.

    A key `split/name` belongs to family `name` (so `train/elbo` and `valid/elbo` share a subplot
    and are told apart by the legend); a key without "/" is its own family. Records may carry
    different keys; missing and non-finite values are skipped.

    Args:
      path: PNG file to write.
      records: Dicts like `{"step": 100, "train/loss": 95.1, "valid/elbo": -97.0}`.
      x_key: Key of the x coordinate.

    Returns:
      The path written.
    """
    series: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        x = _finite_float(record.get(x_key))
        if x is None:
            continue
        for key, value in record.items():
            y = _finite_float(value)
            if key != x_key and y is not None:
                xs, ys = series.setdefault(key, ([], []))
                xs.append(x)
                ys.append(y)
    if not series:
        keys = sorted({key for record in records for key in record})
        raise ValueError(
            f"save_curves found no finite metric values with an {x_key!r} in {len(records)} "
            f"records (keys seen: {keys}). Pass records with {x_key!r} and numeric metrics."
        )
    families: dict[str, list[str]] = {}
    for key in sorted(series):
        families.setdefault(key.split("/", 1)[-1], []).append(key)

    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), dpi=_DPI, layout="constrained")
    for i, (family, keys) in enumerate(sorted(families.items())):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for key in keys:
            xs, ys = series[key]
            # Markers keep sparse series (evaluation every few thousand steps) visible.
            ax.plot(xs, ys, marker="o" if len(xs) <= 50 else None, markersize=3, label=key)
        ax.set_title(family)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def manifold_latents(n: int, axes: np.ndarray | None = None) -> np.ndarray:
    """The `[n * n, 2]` latent grid of `save_latent_manifold`, in row-major tile order.

    z1 increases left to right and z2 increases bottom to top, as on a plot's axes.

    Args:
      n: grid points per side.
      axes: `[n, 2]` increasing coordinates of the grid along z1 and z2. Default: standard-normal
        quantiles of the probabilities `(i + 0.5) / n`, so they are symmetric around 0 and each
        tile covers equal prior mass.

    Returns:
      `[n * n, 2]` float32 latents; row 0 of the grid is the top one (the largest z2).

    Raises:
      ValueError: `n < 1`, or `axes` is not `[n, 2]`.
    """
    if n < 1:
        raise ValueError(f"The manifold grid needs n >= 1 points per side; got n={n}.")
    if axes is None:
        normal = statistics.NormalDist()
        q = np.array([normal.inv_cdf((i + 0.5) / n) for i in range(n)], dtype=np.float32)
        axes = np.stack([q, q], axis=-1)
    axes = np.asarray(axes, np.float32)
    if axes.shape != (n, 2):
        raise ValueError(f"The manifold grid's axes must be [n={n}, 2]; got {axes.shape}.")
    z1, z2 = np.meshgrid(axes[:, 0], axes[::-1, 1])  # Row 0 is the top row, i.e. the largest z2.
    return np.stack([z1.ravel(), z2.ravel()], axis=-1)


def save_latent_manifold(
    path: str | os.PathLike,
    decode_mean: Callable[[np.ndarray], np.ndarray],
    *,
    n: int = 20,
    value_range: tuple[float, float] | None = None,
    axes: np.ndarray | None = None,
) -> pathlib.Path:
    """Writes the decoded means over an n x n grid of a 2-D latent space.

    Args:
      path: PNG file to write.
      decode_mean: Maps latents `[n * n, 2]` to images `[n * n, H, W(, C)]`; called once.
      n: Grid points per side.
      value_range: See `to_unit_range`.
      axes: the grid's coordinates along z1 and z2, `[n, 2]` (see `manifold_latents`), e.g.
        the prior's quantiles; default: the standard normal's.

    Returns:
      The path written.

    References:
      Kingma & Welling (2013), Auto-Encoding Variational Bayes, Fig. 4.
    """
    z = manifold_latents(n, axes)
    images = np.asarray(decode_mean(z))
    if images.ndim not in (3, 4) or images.shape[0] != n * n:
        raise ValueError(
            f"decode_mean must map the [{n * n}, 2] latent grid to [{n * n}, H, W(, C)] images; "
            f"got shape {images.shape}. The manifold plot needs a 2-D latent space and a decoder "
            "that returns images shaped like the data."
        )
    grid = image_grid(to_unit_range(images, value_range), ncols=n)
    fig, ax = _figure_for(grid)
    _imshow(ax, grid)
    h, w = images.shape[1:3]
    q1, q2 = z[:n, 0], z[::n, 1][::-1]  # increasing, along each axis
    # Label tiles in mirrored pairs (plus the centre when n is odd) so the symmetry around 0 shows.
    k = round((n - 1) / 4)
    ticks = np.array(sorted({0, k, n - 1 - k, n - 1} | ({(n - 1) // 2} if n % 2 else set())))
    ax.set_xticks(ticks * (w + 1) + (w - 1) / 2, [f"{q1[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks * (h + 1) + (h - 1) / 2, [f"{q2[n - 1 - i]:.2f}" for i in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return _save(fig, path)


def save_latent_scatter(
    path: str | os.PathLike, codes: np.ndarray, labels: np.ndarray
) -> pathlib.Path:
    """Writes a scatter plot of 2-D codes coloured by label.

    Integer labels with at most 20 distinct values get one colour each and a legend; other labels
    get a continuous colour map and a colorbar.

    Args:
      path: PNG file to write.
      codes: `[N, 2]` latent codes, e.g. posterior means of the test set.
      labels: `[N]` class labels or any real value per example.

    Returns:
      The path written.
    """
    codes, labels = np.asarray(codes), np.asarray(labels)
    if codes.ndim != 2 or codes.shape[1] != 2 or labels.shape != codes.shape[:1]:
        raise ValueError(
            f"save_latent_scatter needs codes [N, 2] and labels [N]; got {codes.shape} and "
            f"{labels.shape}. Project higher-dimensional codes to 2-D first."
        )
    fig = Figure(figsize=(6.5, 5.5), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    classes = np.unique(labels)
    style = {"s": 4, "alpha": 0.6, "linewidths": 0}
    if np.issubdtype(labels.dtype, np.integer) and len(classes) <= 20:
        palette = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, label in enumerate(classes):
            mask = labels == label
            ax.scatter(*codes[mask].T, color=palette(i), label=str(label), **style)
        ax.legend(markerscale=3, fontsize="small", loc="best")
    else:
        points = ax.scatter(*codes.T, c=labels, cmap="viridis", **style)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, path)
