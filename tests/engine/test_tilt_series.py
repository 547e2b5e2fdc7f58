"""Tilt series and weighted back-projection: geometry, dose order, CTF correction."""

import numpy as np
import pytest

from tomocpt_scipion.engine.tilt_series import (
    back_project,
    dose_symmetric_order,
    project,
    ramp_filter,
    reconstruct,
    simulate_tilt_series,
    tilt_angles,
)

SHAPE = (32, 40, 48)


def _blob(centre_zyx, sigma=1.5, shape=SHAPE):
    z, y, x = np.indices(shape)
    r2 = (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def _centroid(volume):
    weights = np.clip(volume - 0.3 * volume.max(), 0, None)
    return np.array([(weights * axis).sum() / weights.sum() for axis in np.indices(volume.shape)])


def test_tilt_angles_span_the_range_in_steps_and_dose_symmetric_order_starts_at_zero():
    angles = tilt_angles(60, 3)
    assert len(angles) == 41 and angles[0] == -60 and angles[-1] == 60
    order = angles[dose_symmetric_order(angles)]
    assert order[:5].tolist() == [0, 3, -3, 6, -6]
    with pytest.raises(ValueError, match="tilt_step_deg"):
        tilt_angles(60, 0)


def test_projection_conserves_mass_at_every_tilt():
    blob = _blob((16.0, 20.0, 24.0))
    images = project(blob, tilt_angles(60, 15))
    np.testing.assert_allclose(images.sum(axis=(1, 2)), blob.sum(), rtol=5e-3)  # linear interpolation


def test_weighted_back_projection_puts_an_off_grid_blob_back_at_its_centre():
    centre = np.array([13.3, 21.6, 27.45])
    angles = tilt_angles(60, 3)
    volume = back_project(ramp_filter(project(_blob(centre), angles)), angles, SHAPE)
    np.testing.assert_allclose(_centroid(volume), centre, atol=0.1)


@pytest.mark.parametrize("sigma_px", [1.5, 3.0])
def test_ctf_corrected_reconstruction_keeps_a_dense_blob_dark_and_in_place(sigma_px):
    centre = np.array([15.2, 19.7, 23.4])
    angles = tilt_angles(60, 3)
    blob = _blob(centre, sigma_px)
    # a gold-like density: the counting noise of a real dose is small beside it
    images, defoci = simulate_tilt_series(
        40 * blob,
        angles,
        10.0,
        defocus_um=3.0,
        voltage_kv=300,
        bfactor_a2=0.0,
        dose_e_per_a2=120.0,
        alignment_error_px=0.0,
        rng=np.random.default_rng(0),
    )
    tomogram = reconstruct(images, angles, SHAPE, 10.0, defocus_um=defoci, voltage_kv=300)
    assert np.corrcoef(tomogram.ravel(), blob.ravel())[0, 1] < -0.5  # dark
    np.testing.assert_allclose(_centroid(-tomogram), centre, atol=0.1)
