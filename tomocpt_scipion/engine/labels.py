"""Training labels built from particle centres by stamping a precomputed kernel.

Every kind has the same signature ``fn(shape_zyx, xyz_px, radius_px, class_ids=None)`` and
returns a (z, y, x) array. Centres are rounded to the nearest voxel; where particles overlap
the maximum wins.

==========  ==============================================================  ===========
kind        value at distance r from a centre                                paper
==========  ==============================================================  ===========
gaussian    (exp(-r²/2σ1²) + exp(-r²/2σ2²)) / 2 for r ≤ R, 0 beyond;          tomoCPT
            σi = fi R / 3 with f1 = 0.95, f2 = 0.5 (eq. 1-4); float32
tball       class index if r < √2·R inside the cube [-R, R]³ (eq. 4)          DeepETPicker
ball        class index if r < R (eq. 3)                                     DeepETPicker
cube        class index in the cube [-R, R]³ (eq. 2)                          DeepETPicker
sphere      class index if r ≤ R (binary for one class)                      TomoPicker
==========  ==============================================================  ===========

``radius_px`` is R in pixels of the volume being labelled: the particle radius for
``gaussian`` and ``sphere``, the weak-label half-size r (diameter 2r + 1) for the others.
Class-index labels are uint8 with 0 = background.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["LABELS", "gaussian", "tball", "ball", "cube", "sphere", "make_label",
           "label_voxel_count", "CLASS_INDEX_LABELS"]

GAUSSIAN_FRACTIONS = (0.95, 0.5)


def _offsets(radius_px: float) -> tuple[np.ndarray, int]:
    half = int(np.floor(radius_px * np.sqrt(2))) if radius_px > 0 else 0
    axis = np.arange(-half, half + 1, dtype=np.float32)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.sqrt(x**2 + y**2 + z**2), half


def _gaussian_kernel(radius_px: float) -> np.ndarray:
    r, _ = _offsets(radius_px)
    sigma1, sigma2 = (f * radius_px / 3 for f in GAUSSIAN_FRACTIONS)
    value = np.exp(-r**2 / (2 * sigma1**2)) + np.exp(-r**2 / (2 * sigma2**2))
    return np.where(r <= radius_px, value / value.max(), 0.0).astype(np.float32)


def _mask_kernel(kind: str, radius_px: float) -> np.ndarray:
    r, half = _offsets(radius_px)
    axis = np.arange(-half, half + 1)
    in_cube = np.all(np.abs(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))) <= radius_px, axis=0)
    return {"tball": (r < np.sqrt(2) * radius_px) & in_cube, "ball": r < radius_px,
            "cube": in_cube, "sphere": r <= radius_px}[kind]


def _stamp(shape_zyx, xyz_px, kernel: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    out = np.zeros(shape_zyx, dtype=dtype)
    half = kernel.shape[0] // 2
    centres = np.rint(np.asarray(xyz_px, dtype=float).reshape(-1, 3)[:, ::-1]).astype(int)
    shape = np.asarray(shape_zyx)
    for centre, value in zip(centres, values):
        lo, hi = centre - half, centre + half + 1
        clo, chi = np.maximum(lo, 0), np.minimum(hi, shape)
        if np.any(chi <= clo):
            continue
        dst = tuple(slice(a, b) for a, b in zip(clo, chi))
        src = tuple(slice(a - l, b - l) for a, b, l in zip(clo, chi, lo))
        np.maximum(out[dst], kernel[src] * value, out=out[dst])
    return out


def _check(shape_zyx, xyz_px, radius_px, class_ids):
    xyz = np.asarray(xyz_px, dtype=float).reshape(-1, 3)
    if not radius_px > 0:
        raise ValueError(f"radius_px must be > 0, got {radius_px}.")
    ids = np.ones(len(xyz), dtype=int) if class_ids is None else np.asarray(class_ids, dtype=int)
    if len(ids) != len(xyz):
        raise ValueError(f"class_ids has {len(ids)} entries for {len(xyz)} coordinates.")
    if len(ids) and (ids.min() < 1 or ids.max() > 255):
        raise ValueError(f"class_ids must be in 1..255, got {ids.min()}..{ids.max()}.")
    return xyz, ids


def gaussian(shape_zyx, xyz_px, radius_px: float, class_ids=None) -> np.ndarray:
    """tomoCPT centroid label: two Gaussians truncated at R, peak 1 (eq. 1-4).

    Parameters
    ----------
    shape_zyx : (z, y, x) size of the label volume.
    xyz_px : (N, 3) particle centres, x, y, z in pixels.
    radius_px : particle radius R in pixels.
    class_ids : ignored (one channel per class is built by :func:`make_label`).

    Returns
    -------
    (z, y, x) float32 in [0, 1].
    """
    xyz, _ = _check(shape_zyx, xyz_px, radius_px, class_ids)
    return _stamp(shape_zyx, xyz, _gaussian_kernel(radius_px), np.ones(len(xyz)), np.float32)


def _class_index_label(kind: str) -> Callable:
    def label(shape_zyx, xyz_px, radius_px: float, class_ids=None) -> np.ndarray:
        xyz, ids = _check(shape_zyx, xyz_px, radius_px, class_ids)
        return _stamp(shape_zyx, xyz, _mask_kernel(kind, radius_px).astype(np.uint8), ids, np.uint8)

    label.__name__ = kind
    label.__doc__ = (f"{kind} weak label: class index inside the shape, 0 outside (see module table).\n\n"
                     "Returns\n-------\n(z, y, x) uint8 class indices.")
    return label


tball = _class_index_label("tball")
ball = _class_index_label("ball")
cube = _class_index_label("cube")
sphere = _class_index_label("sphere")

LABELS: dict[str, Callable] = {"gaussian": gaussian, "tball": tball, "ball": ball, "cube": cube,
                               "sphere": sphere}
CLASS_INDEX_LABELS = ("tball", "ball", "cube", "sphere")


def make_label(kind: str, shape_zyx, xyz_px, radius_px: float, class_ids=None,
               n_classes: int = 1) -> np.ndarray:
    """Label volume of any kind, with one channel per class for ``gaussian``.

    Returns
    -------
    ``gaussian``: (n_classes, z, y, x) float32; other kinds: (z, y, x) uint8 class indices.

    Raises
    ------
    ValueError
        Unknown kind (the valid ones are listed).
    """
    if kind not in LABELS:
        raise ValueError(f"unknown label kind {kind!r}; valid: {sorted(LABELS)}.")
    if kind != "gaussian":
        return LABELS[kind](shape_zyx, xyz_px, radius_px, class_ids)
    xyz, ids = _check(shape_zyx, xyz_px, radius_px, class_ids)
    return np.stack([gaussian(shape_zyx, xyz[ids == c], radius_px) for c in range(1, n_classes + 1)])


def label_voxel_count(kind: str, radius_px: float) -> int:
    """Voxels one isolated particle labels as positive (TomoPicker's Rn)."""
    kernel = _gaussian_kernel(radius_px) if kind == "gaussian" else _mask_kernel(kind, radius_px)
    return int(np.count_nonzero(kernel))
