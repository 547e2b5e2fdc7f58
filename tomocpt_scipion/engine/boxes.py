"""Cubic boxes cut from a volume, zero beyond its faces.

Zero is the normalised tomogram's background level, so a particle cut by a face stays cut
in its box. Each box is filled on its own: no padded copy of the whole volume is made (it
would be larger than the tomogram at the centring scale, held for every centring call).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cut_boxes"]


def cut_boxes(volume: np.ndarray, corners_zyx: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size, size) boxes of ``volume`` (z, y, x) whose first voxel is each corner.

    Parameters
    ----------
    volume : (z, y, x) array; the boxes take its dtype.
    corners_zyx : (n, 3) integer z, y, x pixels of each box's first voxel; they may lie
        outside the volume, and the part of a box beyond a face is zero.
    size : box edge, pixels.
    """
    corners_zyx = np.asarray(corners_zyx, dtype=int).reshape(-1, 3)
    boxes = np.zeros((len(corners_zyx), size, size, size), volume.dtype)
    for box, corner in zip(boxes, corners_zyx):
        low, high = np.maximum(corner, 0), np.minimum(corner + size, volume.shape)
        if (high > low).all():
            inside = tuple(slice(lo, hi) for lo, hi in zip(low, high))
            box[tuple(slice(lo - c, hi - c) for lo, hi, c in zip(low, high, corner))] = volume[inside]
    return boxes
