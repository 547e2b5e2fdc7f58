"""Rescaling keeps positions consistent with coordinate scaling; normalisations are as documented."""

import numpy as np
import pytest

from tomocpt_scipion.engine.preprocess import (
    normalise_volume,
    rescale_volume,
    rescale_zoom,
    rescaled_shape,
    scale_coordinates,
)


def _blob(shape, centre_zyx, sigma=2.0):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre_zyx)) / (2 * sigma**2)).astype(np.float32)


def test_zoom_makes_the_particle_the_target_size():
    assert rescale_zoom(diameter_a=250, pixel_size_a=5, target_diameter_px=10) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="diameter_a must be > 0, got 0"):
        rescale_zoom(0, 5, 10)


@pytest.mark.parametrize("zoom", [0.5, 0.37, 1.6])
def test_a_blob_moves_exactly_as_its_scaled_coordinate(zoom):
    volume = _blob((40, 44, 50), (20, 13, 31), sigma=3.0)
    out = rescale_volume(volume, zoom, chunk_slices=7)
    assert out.shape == rescaled_shape(volume.shape, zoom)
    expected_xyz = scale_coordinates([[31, 13, 20]], zoom)[0]
    peak_zyx = np.array(np.unravel_index(np.argmax(out), out.shape))
    np.testing.assert_allclose(peak_zyx[::-1], expected_xyz, atol=0.75)


def test_robust_normalisation_centres_on_the_median_and_scales_by_the_5_95_spread():
    volume = np.random.default_rng(0).gamma(2.0, size=(20, 30, 30)).astype(np.float32)
    out = normalise_volume(volume, "robust")
    assert np.median(out) == pytest.approx(0, abs=1e-5)
    p5, p95 = np.percentile(out, [5, 95])
    assert p95 - p5 == pytest.approx(1, rel=1e-4)


def test_std_clip_normalisation_clips_outliers_and_standardises():
    volume = np.random.default_rng(1).normal(3, 2, (20, 30, 30)).astype(np.float32)
    volume[0, 0, 0] = 1000
    out = normalise_volume(volume, "std-clip")
    assert out.mean() == pytest.approx(0, abs=1e-4) and out.std() == pytest.approx(1, rel=1e-3)
    clipped = np.clip(volume.astype(float), volume.mean() - 3 * volume.std(), volume.mean() + 3 * volume.std())
    assert out[0, 0, 0] == pytest.approx((clipped.max() - clipped.mean()) / clipped.std(), rel=1e-4)


def test_constant_volume_cannot_be_normalised():
    with pytest.raises(ValueError, match="constant volume"):
        normalise_volume(np.ones((4, 4, 4), np.float32))
