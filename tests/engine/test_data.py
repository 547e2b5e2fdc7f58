"""Patch sampling: what one epoch shows the network."""

import numpy as np

from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.data import PreparedTomogram, sample_patches


def _tomogram(n_labelled: int) -> PreparedTomogram:
    rng = np.random.default_rng(0)
    xyz = rng.uniform(10, 50, (n_labelled, 3)) * [1, 1, 0.5]
    return PreparedTomogram(
        "t", np.zeros((32, 64, 64), np.float32), np.zeros((32, 64, 64), np.uint8), xyz, np.ones(n_labelled, int), 1.0
    )


def _pu_config(expected: float):
    return recipe_config("tomopicker", patch_size=16, stride=16, expected_particles=expected, jitter_px=2)


def _centred_on_a_label(corners: np.ndarray, tomo: PreparedTomogram, patch: int, jitter: int) -> np.ndarray:
    centres = corners[:, 1:] + patch // 2
    distance = np.abs(centres[:, None, :] - tomo.xyz_px[None, :, ::-1]).max(axis=-1)
    return distance.min(axis=1) <= jitter + 0.5


def test_a_sparse_annotation_shows_each_labelled_particle_as_often_as_a_complete_one_would():
    tomo = _tomogram(3)
    config = _pu_config(expected=30)
    grid = 2 * 4 * 4
    corners = sample_patches([tomo], config, epoch=0)
    assert len(corners) == grid + 3 * 9  # the grid, and 30 / 3 - 1 centred patches per label
    extra = corners[grid:]
    assert _centred_on_a_label(extra, tomo, config.patch_size, config.jitter_px).all()
    assert len(np.unique(extra, axis=0)) > 3  # each copy has its own shift


def test_a_complete_annotation_samples_only_the_grid():
    config = _pu_config(expected=3)
    assert len(sample_patches([_tomogram(3)], config, epoch=0)) == 2 * 4 * 4


def test_the_extra_patches_are_drawn_anew_each_epoch_and_repeat_per_seed():
    tomo = _tomogram(3)
    config = _pu_config(expected=30)
    first, again, second = (sample_patches([tomo], config, epoch=e) for e in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


def test_a_small_tomograms_epoch_repeats_its_grid_from_random_origins_up_to_the_minimum():
    tomo = _tomogram(3)
    config = _pu_config(expected=3)
    one_grid = sample_patches([tomo], config, epoch=0)
    topped_up = sample_patches([tomo], config, epoch=0, min_patches=100)
    assert len(one_grid) == 32 and len(topped_up) == 128
    np.testing.assert_array_equal(topped_up[:32], one_grid)
    on_the_grid = {tuple(c) for c in one_grid}
    assert sum(tuple(c) not in on_the_grid for c in topped_up[32:]) > 32
    assert (topped_up[:, 1:] >= 0).all() and (topped_up[:, 1:] + 16 <= np.array(tomo.volume.shape)).all()


def test_a_held_out_grid_is_repeated_in_place_so_no_patch_overlaps_it():
    config = _pu_config(expected=3)
    corners = sample_patches([_tomogram(3)], config, epoch=0, min_patches=100, shift_grid=False)
    assert {tuple(c) for c in corners} == {tuple(c) for c in corners[:32]}
