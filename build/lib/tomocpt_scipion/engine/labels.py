"""Training labels built from particle centres, evaluated at each centre's exact position.

Every kind has the same signature ``fn(shape_zyx, xyz_px, radius_px, class_ids=None)`` and
returns a (z, y, x) array. Distances are measured from the sub-voxel centre (never rounded
to a voxel): a label rounded to the grid teaches the network an offset of up to half a
training voxel per axis, which is 1-2 px of the original tomogram after rescaling. Where
particles overlap the maximum wins.

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
:func:`make_label` also takes one R per class (species of different sizes in one model).
Class-index labels are uint8 with 0 = background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "LABELS",
    "gaussian",
    "tball",
    "ball",
    "cube",
    "sphere",
    "make_label",
    "label_voxel_count",
    "CLASS_INDEX_LABELS",
]

GAUSSIAN_FRACTIONS = (0.95, 0.5)


def _gaussian_value(offsets_zyx: np.ndarray, radius_px: float) -> np.ndarray:
    """Label value at (..., 3) offsets from a centre: 1 at the centre, 0 beyond R."""
    r2 = np.square(offsets_zyx).sum(-1)
    sigma1, sigma2 = (f * radius_px / 3 for f in GAUSSIAN_FRACTIONS)
    value = (np.exp(-r2 / (2 * sigma1**2)) + np.exp(-r2 / (2 * sigma2**2))) / 2
    return np.where(r2 <= radius_px**2, value, 0.0).astype(np.float32)


def _mask_value(kind: str) -> Callable[[np.ndarray, float], np.ndarray]:
    def inside(offsets_zyx: np.ndarray, radius_px: float) -> np.ndarray:
        r2 = np.square(offsets_zyx).sum(-1)
        in_cube = np.all(np.abs(offsets_zyx) <= radius_px, axis=-1)
        return {
            "tball": (r2 < 2 * radius_px**2) & in_cube,
            "ball": r2 < radius_px**2,
            "cube": in_cube,
            "sphere": r2 <= radius_px**2,
        }[kind]

    return inside


def _stamp(shape_zyx, xyz_px, value_fn, radius_px, values: np.ndarray, dtype) -> np.ndarray:
    """Stamp ``value_fn`` (scaled by each value) around every centre; ``radius_px`` is one R or
    one per centre."""
    out = np.zeros(shape_zyx, dtype=dtype)
    shape = np.asarray(shape_zyx)
    centres = np.asarray(xyz_px, dtype=float).reshape(-1, 3)[:, ::-1]
    radii = np.broadcast_to(np.asarray(radius_px, dtype=float), (len(centres),))
    for centre, radius, value in zip(centres, radii, values):
        # no label reaches beyond the cube [-R, R]³ along an axis
        lo = np.maximum(np.ceil(centre - radius - 1e-9).astype(int), 0)
        hi = np.minimum(np.floor(centre + radius + 1e-9).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1)
        stamp = (value_fn(grid - centre, radius) * value).astype(dtype)
        dst = tuple(slice(a, b) for a, b in zip(lo, hi))
        np.maximum(out[dst], stamp, out=out[dst])
    return out


def _check(shape_zyx, xyz_px, radius_px, class_ids):
    xyz = np.asarray(xyz_px, dtype=float).reshape(-1, 3)
    if not np.all(np.asarray(radius_px) > 0):
        raise ValueError(f"radius_px must be > 0, got {radius_px}.")
    ids = np.ones(len(xyz), dtype=int) if class_ids is None else np.asarray(class_ids, dtype=int)
    if len(ids) != len(xyz):
        raise ValueError(f"class_ids has {len(ids)} entries for {len(xyz)} coordinates.")
    if len(ids) and (ids.min() < 1 or ids.max() > 255):
        raise ValueError(f"class_ids must be in 1..255, got {ids.min()}..{ids.max()}.")
    return xyz, ids


def gaussian(shape_zyx, xyz_px, radius_px: float, class_ids=None) -> np.ndarray:
    """tomoCPT centroid label: two Gaussians truncated at R, 1 at the exact centre (eq. 1-4).

    Parameters
    ----------
    shape_zyx : (z, y, x) size of the label volume.
    xyz_px : (N, 3) particle centres, x, y, z in pixels (sub-voxel positions are kept).
    radius_px : particle radius R in pixels.
    class_ids : ignored (one channel per class is built by :func:`make_label`).

    Returns
    -------
    (z, y, x) float32 in [0, 1].
    """
    xyz, _ = _check(shape_zyx, xyz_px, radius_px, class_ids)
    return _stamp(shape_zyx, xyz, _gaussian_value, radius_px, np.ones(len(xyz)), np.float32)


def _class_index_label(kind: str) -> Callable:
    inside = _mask_value(kind)

    def label(shape_zyx, xyz_px, radius_px: float, class_ids=None) -> np.ndarray:
        xyz, ids = _check(shape_zyx, xyz_px, radius_px, class_ids)
        return _stamp(shape_zyx, xyz, inside, radius_px, ids, np.uint8)

    label.__name__ = kind
    label.__doc__ = (
        f"{kind} weak label: class index inside the shape around the exact centre, 0 "
        "outside (see module table).\n\nReturns\n-------\n(z, y, x) uint8 class indices."
    )
    return label


tball = _class_index_label("tball")
ball = _class_index_label("ball")
cube = _class_index_label("cube")
sphere = _class_index_label("sphere")

LABELS: dict[str, Callable] = {"gaussian": gaussian, "tball": tball, "ball": ball, "cube": cube, "sphere": sphere}
CLASS_INDEX_LABELS = ("tball", "ball", "cube", "sphere")


def make_label(
    kind: str, shape_zyx, xyz_px, radius_px: float | Sequence[float], class_ids=None, n_classes: int = 1
) -> np.ndarray:
    """Label volume of any kind, with one channel per class for ``gaussian``.

    ``radius_px`` is R for every class, or R of each class in class order (class 1 first).

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
    xyz, ids = _check(shape_zyx, xyz_px, radius_px, class_ids)
    n = max(n_classes, int(ids.max(initial=1)))
    radii = np.full(n, float(radius_px)) if np.ndim(radius_px) == 0 else np.asarray(radius_px, dtype=float)
    if len(radii) < n:
        raise ValueError(f"{len(radii)} label radii for classes 1..{n}; give one per class.")
    if kind == "gaussian":
        return np.stack([gaussian(shape_zyx, xyz[ids == c], radii[c - 1]) for c in range(1, n_classes + 1)])
    return _stamp(shape_zyx, xyz, _mask_value(kind), radii[ids - 1], ids, np.uint8)


def label_voxel_count(kind: str, radius_px: float) -> int:
    """Voxels one isolated particle centred on a voxel labels as positive (TomoPicker's Rn)."""
    half = int(np.ceil(radius_px))
    size = 2 * half + 1
    return int(np.count_nonzero(make_label(kind, (size,) * 3, [[half] * 3], radius_px)))
