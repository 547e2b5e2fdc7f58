"""Partial annotations: when they count as complete, and when they hold too few particles."""

import pytest

from tomocpt_scipion.engine.annotation import (
    COMPLETE_ANNOTATION,
    ENOUGH_PARTIAL_LABELS,
    few_partial_labels_warning,
    is_partial_annotation,
    labelled_per_class,
)


@pytest.mark.parametrize("labelled,expected,partial", [(3, 30, True), (23, 30, True), (24, 30, False), (30, 30, False)])
def test_an_annotation_is_partial_below_the_complete_share_of_the_expected_particles(labelled, expected, partial):
    assert COMPLETE_ANNOTATION == 0.8
    assert is_partial_annotation(labelled, expected) is partial


def test_a_partial_annotation_with_too_few_particles_gets_a_warning_naming_class_count_and_tomograms():
    warning = few_partial_labels_warning("ribosome", 6, 2, 30)
    assert warning.startswith("Class ribosome: 6 labelled particle(s) in 2 training tomogram(s), 3.0 of the 30 ")
    assert f"fewer than {ENOUGH_PARTIAL_LABELS}" in warning


@pytest.mark.parametrize(
    "labelled,tomograms,expected",
    [
        (ENOUGH_PARTIAL_LABELS, 20, 30),  # 10 % of twenty tomograms: enough particles
        (10, 2, 5),  # complete: the few particles are all there are
    ],
)
def test_enough_partial_labels_or_a_complete_annotation_get_no_warning(labelled, tomograms, expected):
    assert few_partial_labels_warning("ribosome", labelled, tomograms, expected) is None


def test_labelled_particles_are_counted_per_class_in_class_order_with_zero_for_an_absent_class():
    assert labelled_per_class([2, 1, 2, 2], 3) == [1, 3, 0]
