import numpy as np

from tomocpt_scipion.engine.boxes import cut_boxes


def test_a_box_across_a_face_holds_the_volume_inside_and_zero_beyond():
    volume = np.arange(1, 6 * 7 * 8 + 1, dtype=np.float32).reshape(6, 7, 8)
    size = 5
    corners = np.array([[-2, 3, 5], [4, -4, -1], [0, 0, 0], [3, 5, 6]])
    padded = np.pad(volume, size)
    expected = [padded[tuple(slice(c + size, c + 2 * size) for c in corner)] for corner in corners]
    np.testing.assert_array_equal(cut_boxes(volume, corners, size), expected)


def test_a_box_wholly_outside_the_volume_is_zero_and_no_box_is_an_empty_stack():
    volume = np.ones((4, 4, 4), np.float64)
    boxes = cut_boxes(volume, np.array([[10, 0, 0], [-3, -3, -3]]), 3)
    assert boxes.dtype == np.float64 and not boxes.any()
    assert cut_boxes(volume, np.zeros((0, 3)), 3).shape == (0, 3, 3, 3)
