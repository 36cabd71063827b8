"""Tests for vaejax.plots: grid tiling, latent grid geometry, every figure a real PNG."""

import pathlib

import numpy as np
import pytest
from matplotlib import image as mpimg

from vaejax import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: pathlib.Path) -> np.ndarray:
    """Checks that `path` holds a non-blank RGBA PNG and returns its pixels."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[-1] == 4 and min(pixels.shape[:2]) > 50
    assert pixels[..., :3].std() > 0.01  # Not a blank canvas.
    return pixels


def test_image_grid_shape_separators_and_padding():
    images = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3) + 10.0
    grid = plots.image_grid(images, ncols=3, fill=-1.0)
    assert grid.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(grid[0:2, 0:3], images[0])
    np.testing.assert_array_equal(grid[0:2, 4:7], images[1])
    np.testing.assert_array_equal(grid[3:5, 4:7], images[4])
    np.testing.assert_array_equal(grid[2, :], -1.0)  # Row separator.
    np.testing.assert_array_equal(grid[:, [3, 7]], -1.0)  # Column separators.
    np.testing.assert_array_equal(grid[3:5, 8:11], -1.0)  # Padding tile.


def test_image_grid_keeps_channels():
    assert plots.image_grid(np.zeros((4, 5, 6, 3)), ncols=4).shape == (5, 4 * 7 - 1, 3)
    assert plots.image_grid(np.zeros((1, 5, 6, 1)), ncols=1).shape == (5, 6, 1)


def test_image_grid_rejects_bad_shape():
    with pytest.raises(ValueError, match="image_grid needs"):
        plots.image_grid(np.zeros((4, 784)), ncols=2)


def test_to_unit_range():
    x = np.array([0.2, 0.7])
    np.testing.assert_allclose(plots.to_unit_range(x), x, rtol=1e-6)
    np.testing.assert_allclose(plots.to_unit_range(np.array([-2.0, 0.0, 2.0])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(plots.to_unit_range(np.array([0, 255]), (0, 255)), [0.0, 1.0])
    with pytest.raises(ValueError, match="high > low"):
        plots.to_unit_range(x, (1.0, 1.0))


def test_manifold_latents_symmetric_and_increasing():
    n = 6
    z = plots.manifold_latents(n).reshape(n, n, 2)  # [row, column, latent]
    q = z[0, :, 0]
    np.testing.assert_allclose(q, -q[::-1], atol=1e-6)
    assert np.all(np.diff(q) > 0)
    np.testing.assert_array_equal(z[:, :, 0], np.broadcast_to(q, (n, n)))  # z1 grows rightwards.
    np.testing.assert_array_equal(z[:, :, 1], np.broadcast_to(q[::-1, None], (n, n)))  # z2 upwards.


def test_save_samples(tmp_path):
    rng = np.random.default_rng(0)
    path = plots.save_samples(tmp_path / "s.png", rng.uniform(size=(12, 8, 8)), ncols=5, title="t")
    assert_png(path)
    path = plots.save_samples(tmp_path / "rgb.png", rng.normal(size=(6, 8, 8, 3)), ncols=3)
    assert_png(path)


def test_a_figure_that_fails_to_render_leaves_the_old_one_whole(tmp_path, monkeypatch):
    path = plots.save_samples(tmp_path / "s.png", np.eye(8)[None].repeat(4, 0), ncols=2)
    before = path.read_bytes()

    def full_disk(self, fname, **kwargs):
        fname.write(PNG_MAGIC + b"partial")  # half written (to the open file), then:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots.Figure, "savefig", full_disk)
    with pytest.raises(OSError, match="No space left"):
        plots.save_samples(path, np.zeros((4, 8, 8)), ncols=2)
    assert path.read_bytes() == before  # the old figure, whole
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary file left


def test_save_reconstructions(tmp_path):
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, size=(7, 8, 8, 1))
    path = plots.save_reconstructions(
        tmp_path / "sub" / "r.png", inputs, inputs[::-1], ncols=4, value_range=(0, 255)
    )
    assert_png(path)
    with pytest.raises(ValueError, match="same shape"):
        plots.save_reconstructions(tmp_path / "x.png", inputs, inputs[:3])


def test_save_curves_tolerates_missing_and_nonfinite(tmp_path):
    records = [
        {"step": s, "train/loss": 100.0 / (s + 1), "train/elbo": -100.0 / (s + 1)}
        for s in range(0, 100, 10)
    ]
    records += [
        {"step": 50, "valid/elbo": -3.0, "valid/kl": float("nan")},
        {"step": 90, "valid/elbo": -2.0, "valid/kl": 1.0, "valid/log_likelihood": -1.5},
    ]
    assert_png(plots.save_curves(tmp_path / "c.png", records))
    with pytest.raises(ValueError, match="no finite metric"):
        plots.save_curves(tmp_path / "none.png", [{"step": 1}, {"loss": 2.0}])


def test_save_latent_manifold_decodes_once(tmp_path):
    n, calls = 5, []

    def decode_mean(z):
        calls.append(z)
        # A decoder whose images visibly depend on z: a blob that moves with the latent.
        ys, xs = np.mgrid[-2:2:9j, -2:2:9j]
        return np.exp(-((xs - z[:, :1, None]) ** 2) - (ys + z[:, 1:, None]) ** 2)

    assert_png(plots.save_latent_manifold(tmp_path / "m.png", decode_mean, n=n))
    assert len(calls) == 1 and calls[0].shape == (n * n, 2)
    np.testing.assert_array_equal(calls[0], plots.manifold_latents(n))

    with pytest.raises(ValueError, match="2-D latent space"):
        plots.save_latent_manifold(tmp_path / "bad.png", lambda z: np.zeros((3, 4, 4)), n=n)


@pytest.mark.parametrize("labels", [np.arange(60) % 10, np.linspace(0.0, 1.0, 60)])
def test_save_latent_scatter(tmp_path, labels):
    codes = np.random.default_rng(0).normal(size=(60, 2))
    assert_png(plots.save_latent_scatter(tmp_path / "z.png", codes, labels))
    with pytest.raises(ValueError, match=r"codes \[N, 2\]"):
        plots.save_latent_scatter(tmp_path / "bad.png", np.zeros((60, 3)), labels)


def test_manifold_grid_on_given_axes():
    """A prior's own quantiles (or the codes' range) replace the standard normal's."""
    n = 3
    axes = np.array([[-1.0, 10.0], [0.0, 20.0], [2.0, 30.0]])
    z = plots.manifold_latents(n, axes).reshape(n, n, 2)
    np.testing.assert_array_equal(z[0, :, 0], [-1.0, 0.0, 2.0])  # z1 left to right
    np.testing.assert_array_equal(z[:, 0, 1], [30.0, 20.0, 10.0])  # z2 top row largest
    with pytest.raises(ValueError, match=r"axes must be \[n=3, 2\]; got \(2, 2\)"):
        plots.manifold_latents(n, axes[:2])
