"""Calibration: F1 on complete validation annotations, the particle count on partial ones, and a
score temperature that keeps the best scores apart below 1."""

import numpy as np
import pytest
import torch
from torch import nn

from tomocpt_scipion.engine.calibrate import SATURATED_SCORE, calibrate_thresholds, fit_score_temperature
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.data import PreparedTomogram
from tomocpt_scipion.engine.infer import run_network

TRUE_XYZ = np.array([[x, y, z] for z in (12, 28, 44) for y in (12, 28, 44) for x in (12, 28)], float)[:12]
FALSE_XYZ = np.array([[44, y, z] for z in (12, 28, 44) for y in (12, 28, 44)], float)[:6]


class _VolumeAsLogits(nn.Module):
    """Logits that are the input itself: the score map is sigmoid(volume)."""

    def forward(self, x):
        return x


def _tomogram():
    zz, yy, xx = np.mgrid[:64, :64, :64]
    volume = np.full((64, 64, 64), -8.0, np.float32)
    for centres, peak in ((TRUE_XYZ, 6.0), (FALSE_XYZ, 1.0)):  # particles score ~1, look-alikes ~0.73
        for x, y, z in centres:
            blob = peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2) / 8.0) - 8.0 * (
                1 - np.exp(-((xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2) / 8.0)
            )
            volume = np.maximum(volume, blob.astype(np.float32))
    return volume


@pytest.mark.parametrize("annotated,expected,expect_f1_rule", [(12, 12, True), (11, 12, True), (3, 18, False)])
def test_pu_thresholds_use_f1_when_the_validation_annotations_are_complete(annotated, expected, expect_f1_rule):
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=expected, patch_size=32)
    volume = _tomogram()
    tomogram = PreparedTomogram(
        "val", volume, np.zeros_like(volume, np.uint8), TRUE_XYZ[:annotated], np.ones(annotated, int), 1.0
    )
    with torch.no_grad():
        (threshold,) = calibrate_thresholds(_VolumeAsLogits(), config, [tomogram])
    false_score, true_score = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-6.0))
    if expect_f1_rule:  # between the look-alikes and the particles
        assert false_score + 1e-3 < threshold <= true_score
    else:  # as many picks as the 18 expected particles: the look-alikes are kept too
        assert threshold <= false_score + 1e-3


class _ScaledLogits(nn.Module):
    """Logits that are the input times ``gain``: PU networks reach logits far above 16.6."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        return self.gain * x


def _validation(volume):
    return PreparedTomogram("val", volume, np.zeros_like(volume, np.uint8), TRUE_XYZ, np.ones(len(TRUE_XYZ), int), 1.0)


def test_saturating_logits_get_a_temperature_that_keeps_the_best_scores_apart():
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=12, patch_size=32)
    volume = _tomogram()
    model = _ScaledLogits(10.0)  # particle logits 60: every particle would score exactly 1.0
    with torch.no_grad():
        assert (run_network(model, config, volume, tta=False) == 1.0).any()
        temperature = fit_score_temperature(model, config, [_validation(volume)])
        config.score_temperature = temperature
        scores = run_network(model, config, volume, tta=False)
    assert temperature == 8.0  # the smallest power of two with 60 / T below 12
    assert scores.max() < SATURATED_SCORE
    particles = [scores[0, int(z), int(y), int(x)] for x, y, z in TRUE_XYZ]
    look_alikes = [scores[0, int(z), int(y), int(x)] for x, y, z in FALSE_XYZ]
    assert min(particles) > max(look_alikes)


@pytest.mark.parametrize("recipe,gain", [("tomopicker", 1.0), ("tomocpt", 10.0)])
def test_scores_that_never_saturate_and_regression_outputs_keep_temperature_one(recipe, gain):
    config = recipe_config(recipe, diameter_a=100.0, expected_particles=12, patch_size=32)
    with torch.no_grad():
        assert fit_score_temperature(_ScaledLogits(gain), config, [_validation(_tomogram())]) == 1.0
