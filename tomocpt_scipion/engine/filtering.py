"""Filtering picks after the fact: score threshold, top N, minimum distance, mask.

Picking keeps candidates down to a low score, so a new threshold, a cap per tomogram, a
larger spacing or a mask make a new set in seconds, without running the network again.
Torch-free (numpy and scipy only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .io import read_mrc

__all__ = ["suppress_close", "resolve_class_overlaps", "mask_binning", "read_mask", "filter_picks"]

logger = logging.getLogger(__name__)


def suppress_close(points: np.ndarray, scores: np.ndarray, min_distance: float, p_norm: float = 2.0) -> np.ndarray:
    """Indices of the points kept when each drops every lower-scoring point closer than
    ``min_distance`` (same units as ``points``), highest score first; returned best first.

    ``p_norm`` 2 measures Euclidean distance, ``np.inf`` the largest axis difference (a cube).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) < 2 or min_distance <= 0:
        return order
    pairs = cKDTree(np.asarray(points)[order]).query_pairs(min_distance - 1e-9, p=p_norm, output_type="ndarray")
    return order[_kept_best_first(pairs, len(order))]


def _kept_best_first(pairs: np.ndarray, n: int) -> np.ndarray:
    """Keep mask of ``n`` points ranked best first, given the (i, j) pairs of rank indices that
    conflict: visited best first, a kept point removes every worse point it conflicts with."""
    keep = np.ones(n, dtype=bool)
    if len(pairs):
        pairs = np.sort(pairs, axis=1)  # (better, worse)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        starts = np.searchsorted(pairs[:, 0], np.arange(n + 1))
        # only points with a conflict are visited
        for better in np.unique(pairs[:, 0]):
            if keep[better]:
                keep[pairs[starts[better] : starts[better + 1], 1]] = False
    return keep


def resolve_class_overlaps(table: pd.DataFrame, radius_px: Mapping[int, float]) -> pd.DataFrame:
    """Picks of different classes closer than the smaller of their two radii are one particle
    called twice: the best-scoring pick keeps it, the others are dropped.

    Parameters
    ----------
    table : coordinate table of one tomogram (pixels).
    radius_px : {class id: particle radius in the table's pixels}.

    Returns
    -------
    The kept rows, best score first.
    """
    order = np.argsort(-table["score"].to_numpy(float), kind="stable")
    ranked = table.iloc[order]
    xyz = ranked[["x", "y", "z"]].to_numpy(float)
    classes = ranked["class_id"].to_numpy(int)
    radii = np.array([radius_px[c] for c in classes], dtype=float)
    if len(ranked) < 2:
        return ranked.reset_index(drop=True)
    pairs = cKDTree(xyz).query_pairs(float(radii.max()), output_type="ndarray")
    first, second = pairs.T
    overlap = (classes[first] != classes[second]) & (
        np.linalg.norm(xyz[first] - xyz[second], axis=1) < np.minimum(radii[first], radii[second])
    )
    keep = _kept_best_first(pairs[overlap], len(ranked))
    if not keep.all():
        logger.info("%d pick(s) lay on a better pick of another class and were dropped", int((~keep).sum()))
    return ranked[keep].reset_index(drop=True)


def mask_binning(mask_shape: Sequence[int], tomogram_shape: Sequence[int]) -> int:
    """Integer binning of a mask relative to its tomogram (1: same grid).

    A mask binned by b has ``ceil`` or ``floor`` of each tomogram side / b.

    Raises
    ------
    ValueError
        The shapes are not the same grid at one binning for all three axes.
    """
    mask_shape, tomogram_shape = tuple(map(int, mask_shape)), tuple(map(int, tomogram_shape))
    binning = int(round(max(t / m for t, m in zip(tomogram_shape, mask_shape))))
    if binning < 1 or any(abs(m * binning - t) >= binning for m, t in zip(mask_shape, tomogram_shape)):
        raise ValueError(
            f"mask of shape (z, y, x) {mask_shape} does not cover a tomogram of shape "
            f"{tomogram_shape}: expected the same shape or one binned by a whole factor "
            f"on all three axes."
        )
    return binning


def read_mask(path: str | Path, tomogram_shape: Sequence[int]) -> tuple[np.ndarray, int]:
    """A mask MRC (memory-mapped) and its binning relative to a tomogram of ``tomogram_shape``
    (z, y, x); a binning above 1 is logged.

    Raises
    ------
    ValueError
        The shapes do not fit (see :func:`mask_binning`); the message names the mask.
    """
    mask, _ = read_mrc(path)
    try:
        binning = mask_binning(mask.shape, tomogram_shape)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if binning > 1:
        logger.info("%s: mask binned %d × relative to its tomogram; scaled up", path, binning)
    return mask, binning


def _inside(mask: np.ndarray, binning: int, xyz_px: np.ndarray) -> np.ndarray:
    zyx = np.clip(np.floor(xyz_px[:, ::-1] / binning + 0.5).astype(int), 0, np.array(mask.shape) - 1)
    return np.asarray(mask[tuple(zyx.T)]) > 0


def filter_picks(
    picks: pd.DataFrame,
    threshold: float | None = None,
    top_n: int | None = None,
    min_distance_px: float | None = None,
    masks: Mapping[str, tuple[np.ndarray, int]] | None = None,
) -> pd.DataFrame:
    """The picks that pass every given filter, per tomogram and class, best first.

    Parameters
    ----------
    picks : coordinate table (x, y, z in pixels of the tomograms, score, class_id).
    threshold : keep scores ≥ this.
    top_n : keep at most this many per tomogram and class (after the other filters).
    min_distance_px : drop a pick closer than this to a better one of its tomogram and class.
    masks : {tomogram name: ((z, y, x) mask, binning)}: keep picks where the mask is > 0;
        tomograms without a mask are kept whole.
    """
    parts = []
    for (name, _), group in picks.groupby(["tomo_name", "class_id"], sort=False):
        if threshold is not None:
            group = group[group["score"] >= threshold]
        if masks and name in masks:
            group = group[_inside(*masks[name], group[["x", "y", "z"]].to_numpy(float))]
        keep = suppress_close(
            group[["x", "y", "z"]].to_numpy(float), group["score"].to_numpy(float), min_distance_px or 0.0
        )
        parts.append(group.iloc[keep[:top_n] if top_n else keep])
    if not parts:
        return picks.iloc[:0]
    return pd.concat(parts).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
