"""Score thresholds calibrated on the validation tomograms after training.

A network's scores are not probabilities: the threshold that picks best differs per model
and per class (0.3, the tomoCPT suggestion, was 0.9 for a Dice-trained model). After
training, the best model scores the validation tomograms, picks them with the default
peak method down to a low floor, and for every class takes the threshold that maximises F1
against the validation particles (Hungarian matching, hit within half the diameter) on a
fine grid of thresholds. The curve is not smoothed: averaging it over 5 neighbouring
thresholds moved the DeepETPicker recipe's 1bxn threshold from the test optimum (0.98) to
0.94 and left its default F1 0.07 below the best; unsmoothed, the gap is 0.02, and 4v94
and 3d2f did not change. The TomoPicker recipe's 1bxn went the other way (gap 0.02 → 0.07):
one validation tomogram of 30 particles places a steep F1 cliff no better than a particle
or two either way (WBP benchmark, README).

For a positive-unlabelled loss the F1 runs over the validation and the training tomograms
together, where the training tomograms' annotation of the class is complete too (F1 against
a partial one would punish the unlabelled particles picked): twenty more tomograms, or two,
place that cliff better than one, and the training particles the network learned score a
little higher, which moved the threshold up on the models measured. On the main WBP
benchmark's TomoPicker models (current recipe, two training tomograms, README) the test F1 at
the default threshold moved 0.821 → 0.855, 0.348 → 0.417 and 0.434 → 0.413 on seed 1 (4v94 /
1bxn / 3d2f), 0.790 → 0.844, 0.421 → 0.421 and 0.406 → 0.386 on seed 2: its gap to the best
test F1 went from 0.034 on average (largest 0.095) to 0.015 (0.026). The other losses keep
the validation tomograms alone: on five models of the DeepETPicker recipe (4v94 seed 1, 1bxn
and 3d2f seeds 1-2, ``benchmarks/calibration.py``) the F1 over the training tomograms too left
the test F1 0.029 below its best on average (largest 0.062, 3d2f seed 1), against 0.023
(0.040) for the validation tomogram alone: 3d2f lost on both seeds (its seed-1 threshold
moved from 0.60 to 0.96, past the test optimum) and no model gained. A class that a particle
template rescores keeps the validation tomograms alone too: the template averages the training
particles, so their matches flatter the training picks. On the six TomoPicker models with
templates of seeds 2 and 3 (``calibration_particle_templates``) the validation tomogram alone
left the test F1 0.020 below its best on average (largest 0.054), against 0.035 (0.096) with
the training tomograms; RuBisCO 0.023 against 0.096 and 0.030 against 0.062.

Positive-unlabelled losses are trained on partial annotations, and their validation
particles are usually partial too: F1 against them would punish the true picks nobody
annotated. Unless the validation annotations hold at least :data:`.annotation.COMPLETE_ANNOTATION`
of the expected particles (then they are complete enough for F1, which places the threshold
better: on the WBP benchmark the count rule left TomoPicker's F1 at the default threshold
0.03-0.22 below its best), the threshold keeps a number of picks set without the
annotation (:func:`partial_annotation_keep`), a weighted geometric mean of two estimates
of the F1-best count that err in opposite directions:

- the expected number of particles N (the prior the loss was trained with, TomoPicker's
  own rule), best for a network that ranks every particle above every other pick, and too
  few for a weak one, whose F1 rises past N picks while a kept pick is a particle more than
  half as often as F1;
- the count k that maximises 2 (s_1 + … + s_k) / (k + N), the F1 expected if the scores
  s_i (best first) were the probabilities that the picks are particles: too many where a
  network's scores are lower than its precision (a ribosome model that ranks well).

k weighs :data:`SCORE_SUM_WEIGHT` (N^(1-w) k^w). Over the nine 10 %-label models of the
WBP benchmark's nnPU recipe (three seeds, 4v94 / 1bxn / 3d2f; ``benchmarks/calibration.py``,
README), w = 3/4 left the test F1 0.060 below its best on average, against 0.084 for the
plain geometric mean (w = 1/2), 0.058 for w = 0.9, 0.064 for k alone and 0.106 for N alone;
3/4 rather than 0.9 keeps closer to N for the ribosome models, which rank well (largest gap
0.151 against 0.190). The weight was chosen on these models. On six models trained
afterwards (seeds 4 and 5) N alone (0.025) and w = 1/2 (0.028) did better than 3/4 (0.040);
over all fifteen, 3/4 has the lowest mean (0.052, against 0.062 for 1/2 and 0.073 for N
alone) and the smallest worst case (0.151): the rules differ by less than the models do.
With 3 annotated particles per tomogram no rule read from the annotation did better.
Those fifteen models learned from 6 labelled particles of their class. A model that learned
from at least :data:`.annotation.ENOUGH_PARTIAL_LABELS` ranks better, and k weighs
:data:`ENOUGH_LABELS_SCORE_SUM_WEIGHT` (1/2, the plain geometric mean; :func:`score_sum_weight`).
On eight 10 %-label models of twenty training tomograms (60 labelled particles each: 4v94
seeds 1, 2, 31 and 61, 1bxn and 3d2f seeds 1 and 2), w = 1/2 left the test F1 0.036 below its
best on average (largest 0.063), against 0.049 (0.143) for N alone and 0.049 (0.082) for
w = 3/4. N alone suited the ribosome (0.029 against 0.038 for 1/2 over its four models) and
kept too few 3d2f picks (0.100 and 0.143). The weight was chosen on these models; four ribosome
models and a RuBisCO one trained again favoured N alone (0.040 against 0.053; 0.011 against
0.076): over all thirteen w = 1/2 and N alone are level on the mean (0.044 and 0.043), and
w = 1/2 has the smaller worst case (0.094 against 0.143). Where the training labels are not
given, the weight is that of few labels.

A class rescored by a particle template (:mod:`.particle_template`) whose validation annotation
is partial keeps the expected count alone (:data:`TEMPLATE_SCORE_SUM_WEIGHT`; a complete one is
calibrated by F1 as any other): its scores are a standardised template match, not
probabilities, and the picks that are no particle, the most numerous, score near 0.4, so their
sum over-counts. On the WBP benchmark's 10 %-label ribosome model of seed 1 (README) w = 3/4
left the test F1 at 0.654 against its best 0.831 (commit cf0c584, before the picks moved to the
match); with N alone, and the picks moved, it is 0.762 against 0.816.

The count runs over the picks of the validation tomograms and, where ``train`` gives them, of
the training tomograms too, N the particles expected in all of them: one validation tomogram of
30 particles places a steep score cliff no better than a particle or two either way. The
training tomograms' picks include the particles the network learned from, at 10 % of the
labels 3 of a tomogram's 30. On the eight models above (held-out centring networks, README),
pooling √(N k) left the score map's F1 0.047 below its best on average (largest 0.092),
against 0.048 (0.094) on the validation tomogram alone; N alone pooled did better on the mean
(0.036, 0.074) but worse on the two models nearest 0.1 below their full-label F1 (ribosome
seed 1 0.046 → 0.060, 3d2f seed 2 0.055 → 0.064). With the engine's picks, pooling took the
ribosome seed-61 model from 0.119 to 0.074 below its full-label F1 and left all eight within
0.1 (``accuracy.py --recalibrate``).

The centring network (:mod:`.centring`) is kept only where it brings the picks of its
evidence closer to their particles than the score map's centroid does, shown on at least
:data:`CENTRING_EVIDENCE` matched particles (:func:`centring_helps`). The evidence is particles
it did not learn from: the validation tomograms (given, or split off the training ones; one
tomogram that both trains and validates shows nothing), and where they hold too few particles
and the training annotation many, the share of the labelled training particles that ``train``
held out of the centring network's training (:data:`.train.CENTRING_HOLDOUT_FRACTION`). It is trained on the labelled
particles alone, and nothing else tells whether a network trained on a handful of them learned
to centre: on the WBP benchmark, TomoPicker models trained on 6 labelled ribosomes (3
validation particles) lost F1 to their centring network (README); with 60 labelled ribosomes
(3 validation particles, 12 held out) it took their picks from 3.1-3.9 px to 1.0-2.2 px, and
the medium proteins' (1bxn, 3d2f) from 0.9-1.4 px to 0.65-0.83 px.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .annotation import ENOUGH_PARTIAL_LABELS, is_partial_annotation
from .config import EngineConfig
from .data import PreparedTomogram
from .infer import run_network
from .io import coordinate_table
from .metrics import match_points, threshold_sweep
from .particle_template import ParticleTemplate
from .peaks import find_peaks
from .predict import centre_picks, pick_tomogram, template_rescored
from .specs import (
    CANDIDATE_FLOOR,
    DEFAULT_PEAK_METHOD,
    FALLBACK_THRESHOLD,
    LOSS_SPECS,
    PU_LOSSES,
    SCORE_MAP_REFINEMENTS,
)

__all__ = [
    "calibrate_thresholds",
    "training_scale_picks",
    "score_sum_count",
    "partial_annotation_keep",
    "fit_score_temperature",
    "centring_helps",
    "SCORE_SUM_WEIGHT",
    "ENOUGH_LABELS_SCORE_SUM_WEIGHT",
    "TEMPLATE_SCORE_SUM_WEIGHT",
    "score_sum_weight",
    "CENTRING_EVIDENCE",
    "SATURATED_SCORE",
]

logger = logging.getLogger(__name__)

#: weight of the score-sum count against the expected count in the partial-annotation rule, for a
#: class of fewer than :data:`.annotation.ENOUGH_PARTIAL_LABELS` labelled training particles
SCORE_SUM_WEIGHT = 0.75
#: the same weight for a class of at least that many
ENOUGH_LABELS_SCORE_SUM_WEIGHT = 0.5
#: the same weight for a class rescored by a particle template: the expected count alone (module doc)
TEMPLATE_SCORE_SUM_WEIGHT = 0.0
#: matched validation particles needed to keep a centring network
CENTRING_EVIDENCE = 5
#: sigmoid(12): float32 still tells about 100 scores apart above it, and none above sigmoid(16.6)
SATURATED_SCORE = 1.0 / (1.0 + math.exp(-12.0))
_MAX_TEMPERATURE = 1024.0


def training_scale_picks(
    model: nn.Module,
    config: EngineConfig,
    tomograms: Sequence[PreparedTomogram],
    device: torch.device | str = "cpu",
    templates: dict[int, ParticleTemplate] | None = None,
) -> list[pd.DataFrame]:
    """Picks of every class in every tomogram (pixels at the training scale), down to
    :data:`.specs.CANDIDATE_FLOOR`, one table per class; the classes with a particle template
    rescored by it (:func:`.predict.template_rescored`, which reads the tomogram's file)."""
    tables = [[] for _ in range(config.n_classes)]
    for tomo in tomograms:
        scores = run_network(model, config, tomo.volume, torch.device(device))
        found = []
        for channel in range(config.n_classes):
            radius = config.training_diameters_px[channel] / 2
            peaks = find_peaks(scores[channel], DEFAULT_PEAK_METHOD, radius_px=radius, threshold=CANDIDATE_FLOOR)
            found.append(coordinate_table(peaks[:, :3], tomo.name, peaks[:, 3], channel + 1))
        found = pd.concat(found, ignore_index=True)
        if templates:
            at_file = found.assign(**{axis: found[axis] / tomo.zoom for axis in "xyz"})
            found = template_rescored(at_file, tomo.path, config, templates, tomo.pixel_size_a)
            found = found.assign(**{axis: found[axis] * tomo.zoom for axis in "xyz"})
        for channel in range(config.n_classes):
            tables[channel].append(found[found["class_id"] == channel + 1])
    return [pd.concat(parts, ignore_index=True) for parts in tables]


def score_sum_count(scores: np.ndarray, expected: int) -> int:
    """The count k that maximises 2 (s_1 + … + s_k) / (k + expected): the F1 expected if the
    scores ``s`` (best first) were the probabilities that the picks are particles."""
    ranks = np.arange(1, len(scores) + 1)
    return int(np.argmax(np.cumsum(scores) / (ranks + expected))) + 1


def score_sum_weight(labelled: int) -> float:
    """The weight of the score-sum count for a class of ``labelled`` training particles (module doc)."""
    return SCORE_SUM_WEIGHT if labelled < ENOUGH_PARTIAL_LABELS else ENOUGH_LABELS_SCORE_SUM_WEIGHT


def partial_annotation_keep(scores: np.ndarray, expected: int, weight: float = SCORE_SUM_WEIGHT) -> int:
    """How many of the best picks a partially annotated validation set keeps (module doc).

    Parameters
    ----------
    scores : the picks' scores, best first.
    expected : the particles expected in the tomograms these picks come from.
    weight : w, the weight of the score-sum count (0: ``expected`` alone; 1: the score-sum count alone).

    Returns
    -------
    ``expected`` ^ (1 - w) × :func:`score_sum_count` ^ w, rounded, between 1 and the number of picks.
    """
    weighted = expected ** (1 - weight) * score_sum_count(scores, expected) ** weight
    return int(np.clip(round(weighted), 1, len(scores)))


def _truth(tomograms: Sequence[PreparedTomogram], class_id: int) -> pd.DataFrame:
    return pd.concat(
        [coordinate_table(t.xyz_px[t.class_ids == class_id], t.name) for t in tomograms], ignore_index=True
    )


def fit_score_temperature(
    model: nn.Module, config: EngineConfig, tomograms: Sequence[PreparedTomogram], device: torch.device | str = "cpu"
) -> float:
    """The smallest power of two that keeps every validation score below :data:`SATURATED_SCORE`.

    A sigmoid or softmax in float32 rounds every logit above about 16.6 to a score of exactly
    1: the positive-unlabelled losses drive the logits of clear particles far beyond that (a
    best threshold of exactly 1 on the WBP benchmark, README), so the best picks tie at 1,
    their order is lost and a pick can land anywhere on its plateau of 1s. Dividing the
    logits by this temperature keeps them apart; the threshold is calibrated afterwards, on
    the scores it gives. 1 for a network whose scores never come that close, and for a
    regression (clipped) output.
    """
    device = torch.device(device)
    temperature = 1.0
    if LOSS_SPECS[config.loss].activation == "clip":
        return temperature
    while temperature < _MAX_TEMPERATURE:
        trial = replace(config, score_temperature=temperature)
        highest = max(float(run_network(model, trial, t.volume, device, tta=False).max()) for t in tomograms)
        if highest < SATURATED_SCORE:
            break
        temperature *= 2
    if temperature > 1:
        logger.info("Scores divided by a temperature of %g: at 1 the best ones round to exactly 1", temperature)
    return temperature


def calibrate_thresholds(
    model: nn.Module,
    config: EngineConfig,
    tomograms: Sequence[PreparedTomogram],
    device: torch.device | str = "cpu",
    training_labels: Sequence[int] = (),
    training_tomograms: Sequence[PreparedTomogram] = (),
    templates: dict[int, ParticleTemplate] | None = None,
) -> list[float]:
    """One score threshold per class (see the module doc for how).

    Parameters
    ----------
    model : the trained network, in eval mode on ``device``.
    config : its engine config.
    tomograms : validation tomograms at the training scale, with their particles.
    device : torch device.
    training_labels : labelled particles of each class the model trained on (class order);
        where they are unknown (empty), the count rule weighs as for few of them.
    training_tomograms : the tomograms it trained on, at the training scale, with the user's
        labels (not pseudo-labels). For a PU loss their picks join the validation picks: where
        a class's validation annotation is partial, the count rule keeps from them all, with the
        particles expected in all of them; where it is complete, F1 is over them all if their
        annotation of the class is complete too and no particle template rescores the class
        (the template averages their particles: on six TomoPicker models of the WBP benchmark
        the validation tomogram alone left the test F1 0.020 below its best on average, against
        0.035 with the training tomograms, README). Empty: the validation tomograms alone; a
        tomogram that is also a validation one (one tomogram both trains and validates) counts once.
    templates : the model's particle templates: their classes' picks are rescored before the
        thresholds are set on those scores.

    Returns
    -------
    Thresholds in class order; :data:`.specs.FALLBACK_THRESHOLD` for a class that has no
    validation particle.
    """
    device = torch.device(device)
    validation_names = {t.name for t in tomograms}
    pooled = [t for t in training_tomograms if t.name not in validation_names] if config.loss in PU_LOSSES else []
    thresholds = []
    training_picks = None
    for class_id, picks in enumerate(training_scale_picks(model, config, tomograms, device, templates), start=1):
        truth = _truth(tomograms, class_id)
        if not len(truth) or not len(picks):
            thresholds.append(FALLBACK_THRESHOLD)
            logger.warning(
                "Class %s: nothing to calibrate on (%d validation particle(s), %d pick(s)); threshold %.2f",
                config.classes[class_id - 1],
                len(truth),
                len(picks),
                FALLBACK_THRESHOLD,
            )
            continue
        expected = int(round(config.expected_particles * len(tomograms))) if config.expected_particles else 0
        pooled_expected = int(round(config.expected_particles * len(pooled))) if pooled else 0
        more_truth = _truth(pooled, class_id) if pooled else truth.iloc[:0]
        counts = config.loss in PU_LOSSES and is_partial_annotation(len(truth), expected)
        rescored = bool(templates) and class_id - 1 in templates
        # F1 against a partial training annotation would punish the unlabelled particles picked; a
        # particle template averages the training particles, so their matches flatter the training picks
        if not counts and (rescored or is_partial_annotation(len(more_truth), pooled_expected)):
            more_truth = truth.iloc[:0]
        uses_training = bool(pooled) and (counts or len(more_truth) > 0)
        if uses_training and training_picks is None:  # once, for every class
            logger.info("Scoring the %d training tomogram(s) to calibrate on them too", len(pooled))
            training_picks = training_scale_picks(model, config, pooled, device, templates)
        more_picks = training_picks[class_id - 1] if uses_training else picks.iloc[:0]
        if counts:
            scores = np.sort(np.concatenate([picks["score"].to_numpy(), more_picks["score"].to_numpy()]))[::-1]
            labelled = training_labels[class_id - 1] if training_labels else 0
            weight = TEMPLATE_SCORE_SUM_WEIGHT if rescored else score_sum_weight(labelled)
            kept = partial_annotation_keep(scores, expected + pooled_expected, weight)
            threshold = float(scores[kept - 1])
            why = "particle template scores" if rescored else f"{labelled} labelled training particles"
            how = (
                f"{kept} picks kept for {expected + pooled_expected} expected particles in "
                f"{len(tomograms) + len(pooled)} tomogram(s), {len(tomograms)} of them validation "
                f"(score-sum weight {weight:g}: {why})"
            )
        else:
            sweep = threshold_sweep(
                pd.concat([picks, more_picks], ignore_index=True),
                pd.concat([truth, more_truth], ignore_index=True),
                config.training_diameters_px[class_id - 1],
                grid="fine",
            )
            best = sweep.loc[sweep["f1"].idxmax()]
            threshold = float(best["threshold"])
            how = (
                f"F1 {best['f1']:.3f} (precision {best['precision']:.2f}, recall {best['recall']:.2f}) over "
                f"{len(set(truth['tomo_name']) | set(more_truth['tomo_name']))} tomogram(s)"
            )
        thresholds.append(threshold)
        logger.info("Class %s: calibrated score threshold %.3f, %s", config.classes[class_id - 1], threshold, how)
    return thresholds


def _hit_distances(picks: pd.DataFrame, tomogram: PreparedTomogram, config: EngineConfig) -> np.ndarray:
    """Distances, pixels of the file, of the picks matched one-to-one to the tomogram's
    particles of their class within half the diameter."""
    truth_xyz = tomogram.xyz_px / tomogram.zoom
    distances = [np.zeros(0)]
    for class_id in range(1, config.n_classes + 1):
        found = picks.loc[picks["class_id"] == class_id, ["x", "y", "z"]].to_numpy(float)
        radius_px = config.diameters_a[class_id - 1] / 2 / tomogram.pixel_size_a
        distances.append(match_points(found, truth_xyz[tomogram.class_ids == class_id], radius_px)[2])
    return np.concatenate(distances)


def centring_helps(
    model: nn.Module,
    config: EngineConfig,
    centring: nn.Module,
    tomograms: Sequence[PreparedTomogram],
    device: torch.device | str = "cpu",
    templates: dict[int, ParticleTemplate] | None = None,
) -> bool:
    """Whether the centring network brings the picks closer to the particles of ``tomograms``.

    Every tomogram (read again from its file) is picked at the calibrated thresholds and
    refined on the score map (``centroid``), then moved by ``centring``; the mean distance of
    the picks matched to one of its particles (one-to-one, within half the diameter, pixels of
    the file) decides. Fewer than :data:`CENTRING_EVIDENCE` matched picks are no evidence that
    it helps: it is dropped. The particles should be ones the centring network did not learn
    from: where the validation tomograms were split off the training ones, it has seen them and
    the check favours it. Training tomograms with particles held out of the centring network's
    training are fair evidence, and if anything favour the score map, whose network learned
    from them.

    Parameters
    ----------
    model : the trained picking network, in eval mode on ``device``; ``config`` has its thresholds.
    centring : the centring network, in eval mode on ``device``.
    tomograms : tomograms with their particles and files (:func:`.data.prepare_tomogram`): the
        validation ones, and training ones holding particles the centring network did not learn from.
    device : torch device.
    templates : the model's particle templates (the thresholds apply to the picks they rescore).
    """
    on_score_map, centred = [np.zeros(0)], [np.zeros(0)]
    for tomogram in tomograms:
        picks, _ = pick_tomogram(
            model,
            config,
            tomogram.path,
            pixel_size_a=tomogram.pixel_size_a,
            refine=SCORE_MAP_REFINEMENTS[0],
            templates=templates,
            device=device,
        )
        on_score_map.append(_hit_distances(picks, tomogram, config))
        moved = centre_picks(picks, tomogram.path, config, centring, tomogram.pixel_size_a, device, templates=templates)
        centred.append(_hit_distances(moved, tomogram, config))
    on_score_map, centred = np.concatenate(on_score_map), np.concatenate(centred)
    if min(len(on_score_map), len(centred)) < CENTRING_EVIDENCE:
        logger.info(
            "Centring network dropped, picks stay refined on the score map: %d validation pick(s) matched a "
            "particle, fewer than the %d needed to show that it helps",
            min(len(on_score_map), len(centred)),
            CENTRING_EVIDENCE,
        )
        return False
    helps = centred.mean() < on_score_map.mean()
    logger.info(
        "Centring network %s: validation picks %.2f px from their particles after it (%d matched), "
        "%.2f px on the score map alone (%d matched)",
        "kept" if helps else "dropped, picks stay refined on the score map",
        centred.mean(),
        len(centred),
        on_score_map.mean(),
        len(on_score_map),
    )
    return bool(helps)
