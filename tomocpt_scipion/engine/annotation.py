"""How complete an annotation is, and whether a partial one holds enough labelled particles.

Torch-free: the Scipion train protocol warns from it before anything runs, and the engine
logs the same warning when it trains.

A positive-unlabelled loss learns what a particle looks like from the labelled ones alone;
how many there are decides more than which share of the particles they are. On the WBP
benchmark (README, "where this stands"), TomoPicker trained on 10 % of the ribosomes picked
0.19 F1 below a complete annotation when that 10 % was 6 or 18 particles (two or six training
tomograms); when it was 60 (twenty tomograms), seven of eight models of the ribosome (four
seeds), RuBisCO and 3d2f (two seeds each) came within 0.1, once the model kept its last epoch
and the count rule weighed the expected count more: :data:`ENOUGH_PARTIAL_LABELS`. From that
count on, calibration trusts the model's ranking more (:mod:`.calibrate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = [
    "COMPLETE_ANNOTATION",
    "ENOUGH_PARTIAL_LABELS",
    "is_partial_annotation",
    "labelled_per_class",
    "few_partial_labels_warning",
]

#: annotations holding this part of the expected particles count as complete
COMPLETE_ANNOTATION = 0.8
#: labelled particles of a class that a partial annotation should hold (module doc)
ENOUGH_PARTIAL_LABELS = 60


def is_partial_annotation(labelled: float, expected: float) -> bool:
    """Whether ``labelled`` particles are fewer than :data:`COMPLETE_ANNOTATION` of the
    ``expected`` ones (counted over the same tomograms)."""
    return labelled < COMPLETE_ANNOTATION * expected


def labelled_per_class(class_ids: Iterable[int], n_classes: int) -> list[int]:
    """How many of the labelled particles (their class ids, 1-based) each class holds, in class order."""
    counts = Counter(int(c) for c in class_ids)
    return [counts[c] for c in range(1, n_classes + 1)]


def few_partial_labels_warning(
    class_name: str, labelled: int, tomograms: int, expected_per_tomogram: float
) -> str | None:
    """The warning for a partial annotation with fewer than :data:`ENOUGH_PARTIAL_LABELS`
    labelled particles of a class, or None (a complete annotation, or enough particles).

    Parameters
    ----------
    class_name : the class, as the user named it.
    labelled : its labelled particles in all the training tomograms.
    tomograms : how many training tomograms.
    expected_per_tomogram : particles of the class expected in one tomogram, labelled or not.
    """
    if labelled >= ENOUGH_PARTIAL_LABELS or not is_partial_annotation(labelled, expected_per_tomogram * tomograms):
        return None
    return (
        f"Class {class_name}: {labelled} labelled particle(s) in {tomograms} training tomogram(s), "
        f"{labelled / tomograms:.1f} of the {expected_per_tomogram:g} expected per tomogram. A positive-unlabelled "
        f"model learns the particle from the labelled ones alone: with fewer than {ENOUGH_PARTIAL_LABELS} it picked "
        f"far below a complete annotation on the benchmark (README). Label a few particles in more tomograms."
    )
