"""Labels against hand-computed values: centre, at R, beyond R, overlaps take the maximum."""

import numpy as np
import pytest

from tomocpt_scipion.engine.labels import ball, cube, gaussian, label_voxel_count, make_label, sphere, tball

SHAPE = (15, 15, 15)
CENTRE = np.array([[7.0, 7.0, 7.0]])  # x, y, z


def test_gaussian_is_one_at_the_centre_two_gaussians_at_r_and_zero_beyond():
    label = gaussian(SHAPE, CENTRE, radius_px=4.0)
    sigma1, sigma2 = 0.95 * 4 / 3, 0.5 * 4 / 3
    at_r = (np.exp(-16 / (2 * sigma1**2)) + np.exp(-16 / (2 * sigma2**2))) / 2
    assert label[7, 7, 7] == pytest.approx(1.0)
    assert label[7, 7, 11] == pytest.approx(at_r, rel=1e-5)  # x + 4: distance R
    at_1 = (np.exp(-1 / (2 * sigma1**2)) + np.exp(-1 / (2 * sigma2**2))) / 2
    assert label[8, 7, 7] == pytest.approx(at_1, rel=1e-5)  # z + 1
    assert label[7, 7, 12] == 0 and label[7, 10, 10] == 0  # distances 5 and 4.24 > R
    assert label.dtype == np.float32


def test_overlapping_gaussians_take_the_maximum():
    two = gaussian(SHAPE, [[5, 7, 7], [8, 7, 7]], 4.0)
    one_a, one_b = gaussian(SHAPE, [[5, 7, 7]], 4.0), gaussian(SHAPE, [[8, 7, 7]], 4.0)
    np.testing.assert_array_equal(two, np.maximum(one_a, one_b))


@pytest.mark.parametrize(
    "label,inside,outside",
    [
        (tball, [(2, 1, 1), (2, 1, 0)], [(2, 2, 0), (3, 0, 0)]),  # r < 2√2 (strict) within [-2, 2]³
        (ball, [(1, 1, 1), (0, 0, 1)], [(2, 0, 0), (1, 1, 2)]),  # r < 2 (strict)
        (cube, [(2, 2, 2), (-2, 2, 0)], [(3, 0, 0), (0, 0, -3)]),  # the cube [-2, 2]³
        (sphere, [(2, 0, 0), (1, 1, 1)], [(2, 1, 0), (2, 2, 0)]),  # r <= 2
    ],
)
def test_weak_labels_carry_the_class_index_inside_and_zero_outside(label, inside, outside):
    volume = label(SHAPE, CENTRE, 2.0, class_ids=[3])
    assert volume.dtype == np.uint8 and volume[7, 7, 7] == 3
    for dz, dy, dx in inside:
        assert volume[7 + dz, 7 + dy, 7 + dx] == 3, (dz, dy, dx)
    for dz, dy, dx in outside:
        assert volume[7 + dz, 7 + dy, 7 + dx] == 0, (dz, dy, dx)


def test_overlapping_weak_labels_take_the_larger_class_and_clip_at_the_border():
    volume = ball(SHAPE, [[1, 7, 7], [2, 7, 7], [14, 0, 0]], 2.0, class_ids=[1, 2, 1])
    assert volume[7, 7, 1] == 2 and volume[7, 7, 3] == 2  # covered by both: the larger class
    assert volume[7, 7, 0] == 1  # distance 2 from the second centre: outside its ball
    assert volume[0, 0, 14] == 1 and volume[1, 1, 13] == 1


def test_multi_class_gaussian_has_one_channel_per_class():
    label = make_label("gaussian", SHAPE, [[4, 4, 4], [10, 10, 10]], 3.0, [1, 2], n_classes=2)
    assert label.shape == (2, *SHAPE)
    assert label[0, 4, 4, 4] == 1 and label[0, 10, 10, 10] == 0 and label[1, 10, 10, 10] == 1


def test_voxel_count_of_a_sphere_label_is_the_discrete_ball():
    assert label_voxel_count("sphere", 1.0) == 7
    assert label_voxel_count("cube", 1.0) == 27


def test_bad_label_arguments_are_refused():
    with pytest.raises(ValueError, match="radius_px"):
        gaussian(SHAPE, CENTRE, 0)
    with pytest.raises(ValueError, match="unknown label kind 'disc'"):
        make_label("disc", SHAPE, CENTRE, 2.0)


def test_labels_are_centred_on_the_exact_sub_voxel_position():
    centre = np.array([[7.3, 6.6, 7.45]])
    label = gaussian(SHAPE, centre, radius_px=4.0)
    z, y, x = np.indices(SHAPE)
    centroid = np.array([(label * axis).sum() / label.sum() for axis in (x, y, z)])
    np.testing.assert_allclose(centroid, centre[0], atol=0.02)
    weak = ball(SHAPE, centre, 3.0).astype(float)
    centroid = np.array([(weak * axis).sum() / weak.sum() for axis in (x, y, z)])
    np.testing.assert_allclose(centroid, centre[0], atol=0.15)


def test_class_index_labels_stamp_python_int_classes_without_casting_errors():
    # numpy 2 refuses an int64 product written into a uint8 output (UFuncOutputCastingError)
    volume = make_label("tball", SHAPE, CENTRE, 2.0, class_ids=np.array([2], dtype=np.int64))
    assert volume.dtype == np.uint8 and volume[7, 7, 7] == 2
