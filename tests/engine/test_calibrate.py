"""Calibration: F1 on complete validation annotations, a particle count on partial ones, a
score temperature that keeps the best scores apart below 1, and a centring network kept only
where it helps."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from tomocpt_scipion.engine import calibrate
from tomocpt_scipion.engine.annotation import ENOUGH_PARTIAL_LABELS
from tomocpt_scipion.engine.calibrate import (
    CENTRING_EVIDENCE,
    SATURATED_SCORE,
    calibrate_thresholds,
    centring_helps,
    fit_score_temperature,
    partial_annotation_keep,
    score_sum_weight,
)
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.data import PreparedTomogram, prepare_tomogram
from tomocpt_scipion.engine.infer import run_network
from tomocpt_scipion.engine.io import coordinate_table, write_mrc
from tomocpt_scipion.engine.particle_template import SPARSE_NETWORK_WEIGHT, ParticleTemplate

GRID_XYZ = np.array([[x, y, z] for z in (12, 28, 44) for y in (12, 28, 44) for x in (12, 28)], float)
TRUE_XYZ = GRID_XYZ[:12]
FALSE_XYZ = np.array([[44, y, z] for z in (12, 28, 44) for y in (12, 28, 44)], float)[:6]


class _VolumeAsLogits(nn.Module):
    """Logits that are the input itself: the score map is sigmoid(volume)."""

    def forward(self, x):
        return x


def _tomogram(true_xyz=TRUE_XYZ, false_xyz=FALSE_XYZ, false_logit=1.0):
    """Logits of particles (score ~1) and look-alikes (score sigmoid(``false_logit``), ~0.73)."""
    zz, yy, xx = np.mgrid[:64, :64, :64]
    volume = np.full((64, 64, 64), -8.0, np.float32)
    for centres, peak in ((true_xyz, 6.0), (false_xyz, false_logit)):
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


@pytest.mark.parametrize("training_annotated,pooled", [(12, True), (3, False)])
def test_a_complete_pu_annotation_takes_the_f1_best_threshold_over_completely_annotated_training_tomograms_too(
    training_annotated, pooled, caplog
):
    caplog.set_level(logging.INFO, logger="tomocpt_scipion.engine.calibrate")
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=12, patch_size=32)

    def prepared(name, volume, labelled):
        return PreparedTomogram(
            name, volume, np.zeros_like(volume, np.uint8), labelled, np.ones(len(labelled), int), 1.0
        )

    # validation: 12 clear particles and 1 look-alike, so the best cut alone is above the look-alike;
    # training: 6 clear and 6 faint particles (scored as the look-alike), whose F1 needs the low cut
    validation = prepared("val", _tomogram(TRUE_XYZ, FALSE_XYZ[:1]), TRUE_XYZ)
    training_xyz = np.vstack([GRID_XYZ[:6], FALSE_XYZ])
    training = prepared("train", _tomogram(GRID_XYZ[:6], FALSE_XYZ), training_xyz[:training_annotated])
    faint = 1 / (1 + np.exp(-1.0))
    with torch.no_grad():
        (alone,) = calibrate_thresholds(_VolumeAsLogits(), config, [validation])
        (both,) = calibrate_thresholds(_VolumeAsLogits(), config, [validation], training_tomograms=[training])
    assert alone > faint + 1e-3
    assert (both <= faint + 1e-3) == pooled, (alone, both)
    # a partial training annotation is not scored at all: its picks would not be used
    assert ("training tomogram(s) to calibrate on them too" in caplog.text) == pooled


def test_a_class_rescored_by_a_particle_template_takes_its_f1_threshold_from_the_validation_tomograms_alone(
    monkeypatch,
):
    monkeypatch.setattr(calibrate, "template_rescored", lambda table, *args, **kwargs: table)
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=12, patch_size=32)

    def prepared(name, volume, labelled):
        return PreparedTomogram(
            name, volume, np.zeros_like(volume, np.uint8), labelled, np.ones(len(labelled), int), 1.0
        )

    # as above: the training tomograms' faint particles would pull the F1-best cut below the look-alike
    validation = prepared("val", _tomogram(TRUE_XYZ, FALSE_XYZ[:1]), TRUE_XYZ)
    training = prepared("train", _tomogram(GRID_XYZ[:6], FALSE_XYZ), np.vstack([GRID_XYZ[:6], FALSE_XYZ]))
    template = ParticleTemplate(np.zeros((15, 15, 15), np.float32), 0.2, 0.05, SPARSE_NETWORK_WEIGHT)
    with torch.no_grad():
        (rescored,) = calibrate_thresholds(
            _VolumeAsLogits(), config, [validation], training_tomograms=[training], templates={0: template}
        )
    assert rescored > 1 / (1 + np.exp(-1.0)) + 1e-3, rescored


@pytest.mark.parametrize(
    "training_labels,keeps_look_alikes",
    [((), True), ((ENOUGH_PARTIAL_LABELS - 1,), True), ((ENOUGH_PARTIAL_LABELS,), False)],
)
def test_a_partial_annotation_of_enough_training_labels_weighs_the_expected_count_more(
    training_labels, keeps_look_alikes
):
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=8, patch_size=32)
    volume = _tomogram()
    tomogram = PreparedTomogram("val", volume, np.zeros_like(volume, np.uint8), TRUE_XYZ[:3], np.ones(3, int), 1.0)
    with torch.no_grad():
        (threshold,) = calibrate_thresholds(_VolumeAsLogits(), config, [tomogram], training_labels=training_labels)
    false_score = 1 / (1 + np.exp(-1.0))
    # 12 particles then 6 look-alikes, score-sum count 18: few labels keep 8^(1/4) 18^(3/4) = 15
    # picks, reaching the look-alikes; enough labels √(8 × 18) = 12, the particles alone
    assert (threshold <= false_score + 1e-3) == keeps_look_alikes, threshold


def test_a_class_rescored_by_a_particle_template_keeps_the_expected_count_alone(monkeypatch):
    # the rescoring itself (which reads the tomogram's file) is left out: the same scores, another rule
    monkeypatch.setattr(calibrate, "template_rescored", lambda table, *args, **kwargs: table)
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=8, patch_size=32)
    volume = _tomogram()
    tomogram = PreparedTomogram("val", volume, np.zeros_like(volume, np.uint8), TRUE_XYZ[:3], np.ones(3, int), 1.0)
    template = ParticleTemplate(np.zeros((15, 15, 15), np.float32), 0.2, 0.05, SPARSE_NETWORK_WEIGHT)
    with torch.no_grad():
        (plain,) = calibrate_thresholds(_VolumeAsLogits(), config, [tomogram], training_labels=(3,))
        (rescored,) = calibrate_thresholds(
            _VolumeAsLogits(), config, [tomogram], training_labels=(3,), templates={0: template}
        )
    false_score, true_score = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-6.0))
    # 12 particles then 6 look-alikes: 8^(1/4) 18^(3/4) = 15 picks reach the look-alikes; 8 do not
    assert plain <= false_score + 1e-3 < rescored <= true_score + 1e-6, (plain, rescored)


def test_a_partial_annotation_counts_over_the_training_tomograms_picks_too():
    config = recipe_config("tomopicker", diameter_a=100.0, expected_particles=12, patch_size=32)

    def prepared(name, volume, labelled):
        return PreparedTomogram(
            name, volume, np.zeros_like(volume, np.uint8), labelled, np.ones(len(labelled), int), 1.0
        )

    # the validation tomogram holds 6 of the 12 expected particles, so its count reaches its 6
    # look-alikes; the training tomogram holds 18 and none: together 24 particles for 24 expected
    validation = prepared("val", _tomogram(GRID_XYZ[:6], FALSE_XYZ, false_logit=-1.0), GRID_XYZ[:3])
    training = prepared("train", _tomogram(GRID_XYZ, np.zeros((0, 3))), GRID_XYZ[:3])
    look_alike = 1 / (1 + np.exp(1.0))
    with torch.no_grad():
        (alone,) = calibrate_thresholds(_VolumeAsLogits(), config, [validation])
        (pooled,) = calibrate_thresholds(_VolumeAsLogits(), config, [validation], training_tomograms=[training])
    assert alone <= look_alike + 1e-3 < pooled, (alone, pooled)


@pytest.mark.parametrize(
    "scores,kept",
    [
        # every particle above every look-alike: the expected count
        (np.r_[np.full(30, 0.99), np.full(200, 0.05)], 30),
        # a weak ranker, 150 picks alike: F1 from the scores rises to the last; 30^(1/4) 150^(3/4)
        (np.full(150, 0.3), 100),
        # fewer picks than the weighted mean: all of them
        (np.full(20, 0.3), 20),
    ],
)
def test_partial_annotations_keep_a_weighted_geometric_mean_of_the_expected_and_the_score_sum_counts(scores, kept):
    assert partial_annotation_keep(scores, 30) == kept


def test_enough_training_labels_keep_the_plain_geometric_mean_of_the_two_counts():
    weak_ranker = np.full(150, 0.3)  # score-sum count 150: √(30 × 150) = 67 picks
    assert partial_annotation_keep(weak_ranker, 30, score_sum_weight(ENOUGH_PARTIAL_LABELS)) == 67
    assert partial_annotation_keep(weak_ranker, 30, score_sum_weight(ENOUGH_PARTIAL_LABELS - 1)) == 100


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


class _Smoothing(nn.Module):
    """A picking network that sees blobs and overlooks single bright voxels."""

    def forward(self, x):
        return nn.functional.avg_pool3d(x, 5, stride=1, padding=2, count_include_pad=False) + 6.0


@pytest.mark.parametrize(
    "truth_on_the_dot,annotated,kept",
    [(True, 8, True), (False, 8, False), (True, CENTRING_EVIDENCE - 1, False)],
)
def test_a_centring_network_is_kept_only_where_enough_validation_picks_show_it_brings_them_closer(
    tmp_path, caplog, truth_on_the_dot, annotated, kept
):
    # every particle is a blob with a bright dot 3 px along x; the score map finds the blob, the
    # centring network (the tomogram itself as heatmap) the dot
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:64, :64, :64]
    volume = rng.normal(-8.0, 0.1, (64, 64, 64)).astype(np.float32)
    blobs = TRUE_XYZ[:8] + [2, 4, 4]
    for x, y, z in blobs:
        volume = np.maximum(volume, 6.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2) / 8.0) - 8.0)
        volume[int(z), int(y), int(x) + 3] = 20.0
    path = write_mrc(tmp_path / "val.mrc", volume, 10.0)
    truth = (blobs + [3, 0, 0] if truth_on_the_dot else blobs)[:annotated]
    config = recipe_config("tomopicker", diameter_a=100.0, patch_size=32, normalisation="none")
    config.thresholds, config.centring_diameter_px = [0.3], 10.0
    tomogram = prepare_tomogram(path, coordinate_table(truth, "val"), config)

    with caplog.at_level(logging.INFO):
        assert centring_helps(_Smoothing(), config, _VolumeAsLogits(), [tomogram]) == kept

    assert f"{annotated} matched" in caplog.text or f"{annotated} validation pick(s) matched" in caplog.text
