"""Peak extraction from score maps: one interface, three methods.

``find_peaks(scores, method, ...)`` returns an (N, 4) array of x, y, z (pixels of the score
map) and score, best first:

- ``local-max`` (tomoCPT): the picks of scikit-image ``peak_local_max`` (borders kept,
  ``exclude_border=False``), with torch pooling on the GPU when ``device`` is one: a peak
  is the maximum of the cube of edge ``min_distance_px`` around it and above ``threshold``.
- ``mp-nms`` (DeepETPicker): the map is binarised at ``threshold``; ``ceil(2r / (k - 1))``
  iterations of k³ mean pooling (eq. 6, k = 3) turn each blob into a soft mask that peaks at
  its centre; a ``(2r + 1)³`` max pooling keeps local maxima whose pooled value reaches
  ``mp_min_fill``; maxima closer than ``min_distance_px`` are de-duplicated with a KD-tree
  (the lower one goes), and each centre moves to the highest score within r / 2. Runs on
  the GPU when ``device`` is one.
- ``greedy`` (TomoPicker): repeatedly take the highest remaining voxel and set a sphere of
  ``radius_px`` around it to -inf, until ``max_picks`` or nothing above ``threshold``
  remains. Exact, computed as one descending scan of the voxels above the threshold.

Scores are the map's values at the peaks. Sub-voxel refinement (``refine``):

- ``centroid`` (default): mean shift. The position moves to the centroid of the score
  above half the peak's value within ``refine_radius_px`` of it (the map sampled
  trilinearly on a half-voxel grid around the current, sub-voxel position), three times.
  It finds the centre of a Gaussian peak and of a flat-topped blob alike (a weak-label
  network outputs a plateau, where the first maximum found is any voxel of the plateau).
- ``quadratic``: parabola through the peak and its two neighbours along each axis (sharp,
  single-voxel peaks only).
- ``none``: the voxel found.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .filtering import suppress_close
from .specs import PEAK_METHODS, SCORE_MAP_REFINEMENTS

__all__ = ["find_peaks", "PEAK_METHODS", "SCORE_MAP_REFINEMENTS", "mp_nms_iterations"]

_MP_KERNEL = 3
_GREEDY_CHUNK = 1024
_MEAN_SHIFT_STEPS = 3
_MEAN_SHIFT_SPACING = 0.5
_MEAN_SHIFT_LEVEL = 0.5


def mp_nms_iterations(radius_px: float, kernel: int = _MP_KERNEL) -> int:
    """DeepETPicker eq. 6: mean-pooling iterations so the receptive field spans 2r + 1 voxels."""
    return max(1, math.ceil(2 * radius_px / (kernel - 1)))


class _Filters:
    """Box mean and max filters of a (z, y, x) volume and the look-ups around them.

    scipy's separable filters on the CPU (3.3x faster there than torch's pooling on a
    200 x 512 x 512 map, ``benchmarks/speed.py``), torch's separable pooling on a GPU. Both
    pad as DeepETPicker's pooling does: zeros for the mean, the edge for the maximum.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.on_cpu = self.device.type == "cpu"

    def array(self, volume: np.ndarray):
        volume = np.ascontiguousarray(volume, dtype=np.float32)
        return volume if self.on_cpu else torch.from_numpy(volume).to(self.device)

    def mean(self, volume, size: int):
        if self.on_cpu:
            return ndimage.uniform_filter(volume, size, mode="constant")
        return _separable_pool(volume[None, None], size, F.avg_pool3d)[0, 0]

    def max(self, volume, size: int):
        if self.on_cpu:
            return ndimage.maximum_filter(volume, size, mode="nearest")
        return _separable_pool(volume[None, None], size, F.max_pool3d)[0, 0]

    def where(self, mask) -> np.ndarray:
        """(N, 3) z, y, x of the True voxels, in C order."""
        return np.argwhere(mask) if self.on_cpu else torch.nonzero(mask).cpu().numpy()

    def values(self, volume, zyx: np.ndarray) -> np.ndarray:
        if self.on_cpu or not len(zyx):
            return np.asarray(volume[tuple(zyx.T)]) if len(zyx) else np.zeros(0, np.float32)
        return volume[tuple(torch.from_numpy(zyx.T).to(self.device))].cpu().numpy()


def _local_max(
    scores: np.ndarray, min_distance_px: float, threshold: float, max_picks: int | None, device: torch.device
) -> np.ndarray:
    """``skimage.feature.peak_local_max(exclude_border=False)``'s picks, on ``device``.

    A peak equals the maximum of the cube of half-edge ``distance`` around it and exceeds
    ``threshold``; candidates closer than ``distance`` (Chebyshev) to a higher kept one go.
    """
    # tomoCPT: each voxel is compared with a cubic neighbourhood whose edge is min_distance
    distance = max(1, int(round(min_distance_px / 2)))
    filters = _Filters(device)
    volume = filters.array(scores)
    is_peak = volume == filters.max(volume, 2 * distance + 1)
    if bool(is_peak.all()):  # a constant map has no peak
        return np.zeros((0, 3), int)
    zyx = filters.where(is_peak & (volume > threshold))
    kept = _dedupe(zyx, scores[tuple(zyx.T)], distance, p_norm=np.inf)
    return kept[:max_picks] if max_picks else kept


def _dedupe(zyx: np.ndarray, values: np.ndarray, min_distance_px: float, p_norm: float = 2.0) -> np.ndarray:
    """Drop any maximum closer than ``min_distance_px`` to a kept, higher one (highest first)."""
    return zyx[suppress_close(zyx, values, min_distance_px, p_norm)]


def _separable_pool(volume: torch.Tensor, size: int, pool) -> torch.Tensor:
    """k³ mean or max pooling (stride 1, same size) as three 1-D passes: equal for a cube
    window, ~k²/3 times fewer operations. Mean pooling counts the zero padding, as DeepETPicker."""
    for axis in range(3):
        kernel = [1, 1, 1]
        kernel[axis] = size
        padding = [0, 0, 0]
        padding[axis] = size // 2
        volume = pool(volume, tuple(kernel), stride=1, padding=tuple(padding))
    return volume


def _mp_nms(
    scores: np.ndarray,
    radius_px: float,
    min_distance_px: float,
    threshold: float,
    min_fill: float,
    device: torch.device,
) -> np.ndarray:
    filters = _Filters(device)
    binary = filters.array(scores >= threshold)
    soft = binary
    for _ in range(mp_nms_iterations(radius_px)):
        soft = filters.mean(soft, _MP_KERNEL)
    is_peak = (soft == filters.max(soft, 2 * int(round(radius_px)) + 1)) & (soft >= min_fill) & (binary > 0)
    zyx = filters.where(is_peak)
    # among equal plateaus the pooled value ties; the score map breaks them
    zyx = _dedupe(zyx, filters.values(soft, zyx) + 1e-6 * scores[tuple(zyx.T)], min_distance_px)
    return _snap_to_score_maximum(scores, zyx, max(1, int(math.ceil(radius_px / 2))))


def _snap_to_score_maximum(scores: np.ndarray, zyx: np.ndarray, half: int) -> np.ndarray:
    """Move each MP-NMS centre to the highest score within ``half`` voxels (a blob cut by a
    tomogram face has its pooled centre pushed off the particle; the score peak is not)."""
    if not len(zyx):
        return zyx
    axis = np.arange(-half, half + 1)
    offsets = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    candidates = zyx[:, None, :] + offsets[None]
    inside = np.all((candidates >= 0) & (candidates < scores.shape), axis=2)
    clipped = np.clip(candidates, 0, np.array(scores.shape) - 1)
    values = np.where(inside, scores[tuple(np.moveaxis(clipped, 2, 0))], -np.inf)
    return candidates[np.arange(len(zyx)), np.argmax(values, axis=1)]


def _sphere_offsets(radius_px: float) -> np.ndarray:
    r = int(math.floor(radius_px))
    axis = np.arange(-r, r + 1)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[(grid**2).sum(1) <= radius_px**2]


def _greedy(scores: np.ndarray, radius_px: float, threshold: float, max_picks: int | None) -> np.ndarray:
    """Exact greedy sphere suppression as one scan of the voxels above ``threshold``, best first.

    Taking the best remaining voxel and removing its sphere, again and again, picks exactly
    the voxels that no earlier (higher) pick's sphere covers, in descending order; so one
    sort and a look-up of a removal mask replace a search of the volume per pick. The scan
    looks at :data:`_GREEDY_CHUNK` candidates at a time (the mask changes with every pick).
    """
    flat = scores.ravel()
    candidates = np.flatnonzero((flat >= threshold) & np.isfinite(flat))
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    removed = np.zeros(flat.shape, dtype=bool)
    shape = np.array(scores.shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    offsets = _sphere_offsets(radius_px)
    picks: list[int] = []
    limit = max_picks or len(order)
    position = 0
    while position < len(order) and len(picks) < limit:
        chunk = order[position : position + _GREEDY_CHUNK]
        free = np.flatnonzero(~removed[chunk])
        if not len(free):
            position += len(chunk)
            continue
        index = chunk[free[0]]
        picks.append(index)
        position += free[0] + 1
        stamp = np.array(np.unravel_index(index, scores.shape)) + offsets
        stamp = stamp[np.all((stamp >= 0) & (stamp < shape), axis=1)]
        removed[stamp @ strides] = True
    return np.array(np.unravel_index(np.array(picks, dtype=int), scores.shape)).T.reshape(-1, 3)


def _quadratic(scores: np.ndarray, zyx: np.ndarray) -> np.ndarray:
    positions = zyx.astype(float)
    padded = np.pad(scores, 1, mode="edge")
    centre = zyx + 1
    for axis in range(3):
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        left, mid, right = (padded[tuple((centre + s * step).T)] for s in (-1, 0, 1))
        curvature = left - 2 * mid + right
        shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, 1), 0.0)
        positions[:, axis] += np.clip(shift, -0.5, 0.5)
    return positions


def _mean_shift(scores: np.ndarray, zyx: np.ndarray, radius_px: float) -> np.ndarray:
    """Centroid of the score above half the peak within ``radius_px``, iterated (see module)."""
    positions = zyx.astype(float)
    axis = np.arange(-np.floor(radius_px / _MEAN_SHIFT_SPACING), np.floor(radius_px / _MEAN_SHIFT_SPACING) + 1)
    offsets = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3) * _MEAN_SHIFT_SPACING
    offsets = offsets[(offsets**2).sum(1) <= radius_px**2]
    level = _MEAN_SHIFT_LEVEL * scores[tuple(zyx.T)][:, None]
    upper = np.array(scores.shape) - 1
    for _ in range(_MEAN_SHIFT_STEPS):
        points = np.clip(positions[:, None, :] + offsets[None], 0, upper)
        values = ndimage.map_coordinates(scores, points.reshape(-1, 3).T, order=1, mode="nearest")
        weights = np.clip(values.reshape(len(positions), -1) - level, 0, None)
        total = weights.sum(1, keepdims=True)
        centroid = (weights[..., None] * points).sum(1) / np.where(total > 0, total, 1)
        positions = np.where(total > 0, centroid, positions)
    return positions


def _refine(scores: np.ndarray, zyx: np.ndarray, method: str, radius_px: float) -> np.ndarray:
    if method == "none" or len(zyx) == 0:
        return zyx.astype(float)
    return _quadratic(scores, zyx) if method == "quadratic" else _mean_shift(scores, zyx, radius_px)


def find_peaks(
    scores: np.ndarray,
    method: str = "local-max",
    *,
    radius_px: float,
    min_distance_px: float | None = None,
    threshold: float = 0.3,
    max_picks: int | None = None,
    refine: str = "centroid",
    refine_radius_px: float | None = None,
    mask: np.ndarray | None = None,
    mp_min_fill: float = 0.05,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Particle centres in a score map.

    Parameters
    ----------
    scores : (z, y, x) score map.
    method : ``local-max``, ``mp-nms`` or ``greedy``.
    radius_px : particle radius in pixels of the map (MP-NMS pooling, greedy sphere).
    min_distance_px : smallest distance between picks, pixels; defaults to the diameter.
    threshold : score threshold (``mp-nms``: the segmentation threshold).
    max_picks : keep at most this many, best first.
    refine : sub-voxel refinement, ``centroid`` (default), ``quadratic`` or ``none``.
    refine_radius_px : window radius of ``centroid`` refinement, pixels; defaults to ``radius_px``.
    mask : (z, y, x) bool; picks only where True.
    mp_min_fill : smallest pooled value of an MP-NMS maximum (rejects specks).
    device : torch device of the local-max and MP-NMS pooling.

    Returns
    -------
    (N, 4) float array: x, y, z in pixels of ``scores``, and score; best first.

    Raises
    ------
    ValueError
        Unknown method or refinement, bad radius, or a mask of another shape.
    """
    if method not in PEAK_METHODS:
        raise ValueError(f"unknown peak method {method!r}; valid: {list(PEAK_METHODS)}.")
    if refine not in SCORE_MAP_REFINEMENTS:
        raise ValueError(f"unknown refinement {refine!r}; valid: {list(SCORE_MAP_REFINEMENTS)}.")
    if not radius_px > 0:
        raise ValueError(f"radius_px must be > 0, got {radius_px}.")
    min_distance_px = 2 * radius_px if min_distance_px is None else min_distance_px
    scores = np.asarray(scores, dtype=np.float32)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the score map's {scores.shape}.")
        scores = np.where(mask, scores, -np.inf if method == "greedy" else 0.0).astype(np.float32)
    if method == "local-max":
        zyx = _local_max(scores, min_distance_px, threshold, max_picks, torch.device(device))
    elif method == "mp-nms":
        zyx = _mp_nms(scores, radius_px, min_distance_px, threshold, mp_min_fill, torch.device(device))
    else:
        zyx = _greedy(scores, radius_px, threshold, max_picks)
    values = scores[tuple(zyx.T)] if len(zyx) else np.zeros(0, np.float32)
    order = np.argsort(-values, kind="stable")[: max_picks or None]
    zyx, values = zyx[order], values[order]
    xyz = _refine(scores, zyx, refine, radius_px if refine_radius_px is None else refine_radius_px)[:, ::-1]
    return np.column_stack([xyz, values]).astype(float) if len(zyx) else np.zeros((0, 4))
