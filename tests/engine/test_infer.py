"""Tiled inference gives the whole-volume answer; score maps go back to the file's grid."""

import numpy as np
import pytest
import torch
from torch import nn

from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.infer import ScoreMap, run_network, score_map_at_original_grid

SHAPE = (40, 52, 60)  # not multiples of the patch on purpose


def _config(patch=16):
    return recipe_config("tomocpt", diameter_a=100.0, backbone="resunet", patch_size=patch)


def _convnet(kernel: int) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv3d(1, 4, kernel, padding=kernel // 2), nn.ELU(), nn.Conv3d(4, 1, kernel, padding=kernel // 2)]
    return nn.Sequential(*layers).eval()


def _whole(model, volume):
    with torch.inference_mode():
        return model(torch.from_numpy(volume)[None, None])[0].clamp(0, 1).numpy()


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(0).normal(0.5, 0.3, SHAPE).astype(np.float32)


@pytest.mark.parametrize("pad", [2, 4])
def test_overlap_tile_equals_whole_volume_inference_away_from_the_borders(volume, pad):
    model = _convnet(3)  # receptive field 5: tiles keep voxels >= 2 from their edge
    tiled = run_network(model, _config(), volume, merge="overlap-tile", pad=pad, batch_size=3, tta=False)
    whole = _whole(model, volume)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled[:, 2:-2, 2:-2, 2:-2], whole[:, 2:-2, 2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("window", ["gaussian", "hann"])
def test_blended_inference_equals_whole_volume_inference_for_a_pointwise_network(volume, window):
    model = _convnet(1)  # pointwise: every tile agrees, so any weighting must return the same map
    blended = run_network(model, _config(), volume, merge="blend", window=window, overlap=0.5, batch_size=5, tta=False)
    np.testing.assert_allclose(blended, _whole(model, volume), atol=1e-5)


def test_blended_inference_of_a_conv_net_is_close_in_the_interior(volume):
    model = _convnet(3)
    blended = run_network(model, _config(32), volume, merge="blend", overlap=0.5, tta=False)
    whole = _whole(model, volume)
    assert np.abs(blended - whole)[:, 4:-4, 4:-4, 4:-4].mean() < 0.02


def test_flip_tta_of_a_symmetric_network_changes_nothing(volume):
    model = _convnet(1)
    np.testing.assert_allclose(run_network(model, _config(), volume, tta=True), _whole(model, volume), atol=1e-5)


def test_score_map_returns_to_the_original_grid():
    scores = np.zeros((1, 21, 26, 31), np.float32)
    scores[0, 10, 13, 15] = 1
    original = score_map_at_original_grid(ScoreMap(scores, zoom=0.5, original_shape=(41, 51, 61), pixel_size_a=4))
    assert original.shape == (41, 51, 61)
    assert np.unravel_index(np.argmax(original), original.shape) == (20, 26, 30)


def test_bad_merge_options_are_refused(volume):
    with pytest.raises(ValueError, match="unknown merge mode 'mean'"):
        run_network(_convnet(1), _config(), volume, merge="mean")
    with pytest.raises(ValueError, match="overlap must be >= 0 and < 1, got 1.0"):
        run_network(_convnet(1), _config(), volume, overlap=1.0)
    with pytest.raises(ValueError, match="pad 8 leaves no centre"):
        run_network(_convnet(1), _config(), volume, merge="overlap-tile", pad=8)


@pytest.mark.parametrize("merge", ["blend", "overlap-tile"])
def test_a_volume_smaller_than_one_patch_is_scored_whole(merge):
    small = np.random.default_rng(1).normal(size=(7, 12, 20)).astype(np.float32)
    scores = run_network(_convnet(1), _config(32), small, merge=merge)
    np.testing.assert_allclose(scores, _whole(_convnet(1), small), atol=1e-5)
