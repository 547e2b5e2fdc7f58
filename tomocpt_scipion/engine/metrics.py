"""Evaluation of picks against ground truth: Hungarian matching, P / R / F1, AD, RMSE, sweeps.

Per tomogram, predictions and truth are matched one-to-one by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on Euclidean distances, maximising the number of
pairs within the match distance and then minimising their total distance. A matched
prediction is a hit (TP); unmatched predictions are false picks (FP); unmatched truth are
misses (FN).

Match distance criteria:

- ``half-diameter`` (tomoCPT, default): distance ≤ diameter / 2;
- ``radius`` (DeepETPicker "within r"): distance < diameter / 2 (strict);
- ``pixels`` (TomoPicker): distance ≤ a fixed number of pixels (10 in the paper).

F4 is the F-beta score with β = 4 that the CryoET object-identification challenge (CZII,
2024-25) ranks by: recall weighs β² = 16 times as much as precision, because a missed
particle costs an averaging project more than a false pick that classification removes.
Like the challenge, the ``all`` row sums hits, false picks and misses over the tomograms
before computing the ratios.

AD is the mean hit distance (px and Å), ``median_px`` the median (px): a few hits far off,
such as particles cut by the tomogram's faces, move the mean but not the median.
``rmse_over_diameter`` is the root-mean-square hit distance divided by the diameter
(tomoCPT eq. 13 normalises by the particle size; the equation as printed averages
distances, which is AD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from .specs import MATCH_CRITERIA

__all__ = [
    "match_points",
    "match_distance_px",
    "evaluate_picks",
    "threshold_sweep",
    "f_beta",
    "detection_scores",
    "Evaluation",
    "CRITERIA",
    "METRIC_COLUMNS",
    "CHALLENGE_BETA",
]

CRITERIA = tuple(choice.name for choice in MATCH_CRITERIA)
METRIC_COLUMNS = (
    "tomo_name",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "f4",
    "ad_px",
    "ad_a",
    "median_px",
    "rmse_over_diameter",
)
#: β of the F-beta score the CryoET object-identification challenge ranks by (column ``f4``)
CHALLENGE_BETA = 4.0
_SWEEP_PERCENTILES = np.arange(2, 99, 8)
_FINE_STEPS = 50


def match_distance_px(criterion: str, diameter_px: float, pixels: float = 10.0) -> tuple[float, bool]:
    """(distance, strict) of a criterion; strict means ``<`` instead of ``≤``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown match criterion {criterion!r}; valid: {list(CRITERIA)}.")
    if criterion == "pixels":
        return float(pixels), False
    return diameter_px / 2, criterion == "radius"


def match_points(
    predicted_xyz: np.ndarray, true_xyz: np.ndarray, max_distance: float, strict: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching within ``max_distance``.

    Parameters
    ----------
    predicted_xyz, true_xyz : (N, 3) and (M, 3) positions, same units as ``max_distance``.
    strict : require distance < max_distance instead of ≤.

    Returns
    -------
    predicted indices, true indices and distances of the matched pairs.
    """
    predicted_xyz = np.asarray(predicted_xyz, float).reshape(-1, 3)
    true_xyz = np.asarray(true_xyz, float).reshape(-1, 3)
    if not len(predicted_xyz) or not len(true_xyz):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    distances = cdist(predicted_xyz, true_xyz)
    allowed = distances < max_distance if strict else distances <= max_distance
    # a disallowed pair costs more than any set of allowed ones: most pairs first, then shortest
    penalty = (max_distance + 1) * (min(distances.shape) + 1)
    rows, cols = linear_sum_assignment(np.where(allowed, distances, penalty))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep], distances[rows[keep], cols[keep]]


def f_beta(precision: float, recall: float, beta: float) -> float:
    """(1 + β²) P R / (β² P + R); 0 when both are 0. β = 1 is F1."""
    denominator = beta**2 * precision + recall
    return (1 + beta**2) * precision * recall / denominator if denominator else 0.0


def detection_scores(tp: int, fp: int, fn: int) -> dict:
    """Counts and the precision, recall, F1 and F4 they give."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f_beta(precision, recall, 1.0),
        "f4": f_beta(precision, recall, CHALLENGE_BETA),
    }


def _metrics(
    name: str, tp: int, fp: int, fn: int, distances: np.ndarray, pixel_size_a: float, diameter_px: float
) -> dict:
    ad = float(distances.mean()) if len(distances) else float("nan")
    median = float(np.median(distances)) if len(distances) else float("nan")
    rmse = float(np.sqrt(np.mean(distances**2))) if len(distances) else float("nan")
    return {
        "tomo_name": name,
        **detection_scores(tp, fp, fn),
        "ad_px": ad,
        "ad_a": ad * pixel_size_a,
        "median_px": median,
        "rmse_over_diameter": rmse / diameter_px,
    }


@dataclass
class Evaluation:
    """Result of :func:`evaluate_picks`.

    Attributes
    ----------
    per_tomogram : one row per tomogram, :data:`METRIC_COLUMNS`.
    overall : the same for all tomograms pooled (tomo_name "all").
    hit : per prediction (index of the input table), True when matched.
    """

    per_tomogram: pd.DataFrame
    overall: dict
    hit: pd.Series


def evaluate_picks(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    diameter_px: float,
    pixel_size_a: float = 1.0,
    criterion: str = "half-diameter",
    distance_px: float = 10.0,
    threshold: float | None = None,
) -> Evaluation:
    """Match picks to truth per tomogram and compute the metrics.

    Parameters
    ----------
    picks, truth : coordinate tables (pixels of the same tomograms).
    diameter_px : particle diameter in pixels.
    pixel_size_a : Å per pixel, for AD in Å.
    criterion, distance_px : match criterion (see module doc).
    threshold : keep picks with score ≥ threshold first.
    """
    if threshold is not None:
        picks = picks[picks["score"] >= threshold]
    max_distance, strict = match_distance_px(criterion, diameter_px, distance_px)
    names = sorted(set(truth["tomo_name"]) | set(picks["tomo_name"]))
    rows, all_distances = [], []
    hit = pd.Series(False, index=picks.index)
    for name in names:
        p = picks[picks["tomo_name"] == name]
        t = truth[truth["tomo_name"] == name]
        rows_idx, _, distances = match_points(
            p[["x", "y", "z"]].to_numpy(), t[["x", "y", "z"]].to_numpy(), max_distance, strict
        )
        hit.loc[p.index[rows_idx]] = True
        all_distances.append(distances)
        tp = len(distances)
        rows.append(_metrics(name, tp, len(p) - tp, len(t) - tp, distances, pixel_size_a, diameter_px))
    per_tomogram = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    distances = np.concatenate(all_distances) if all_distances else np.zeros(0)
    overall = _metrics(
        "all",
        int(per_tomogram["tp"].sum()),
        int(per_tomogram["fp"].sum()),
        int(per_tomogram["fn"].sum()),
        distances,
        pixel_size_a,
        diameter_px,
    )
    return Evaluation(per_tomogram, overall, hit)


def threshold_sweep(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    diameter_px: float,
    pixel_size_a: float = 1.0,
    criterion: str = "half-diameter",
    distance_px: float = 10.0,
    grid: str = "percentiles",
) -> pd.DataFrame:
    """Overall metrics at a series of score thresholds.

    ``grid``: ``percentiles`` of the pick scores, 2 to 98 % in steps of 8 (tomoCPT), or
    ``fine`` (50 evenly spaced thresholds between the lowest and highest score).

    Returns
    -------
    DataFrame with threshold and the overall metric columns, one row per threshold.
    """
    scores = picks["score"].to_numpy(float)
    if not len(scores):
        return pd.DataFrame(
            [
                {
                    "threshold": 0.0,
                    **evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px).overall,
                }
            ]
        )
    if grid == "percentiles":
        thresholds = np.percentile(scores, _SWEEP_PERCENTILES)
    elif grid == "fine":
        thresholds = np.linspace(scores.min(), scores.max(), _FINE_STEPS)
    else:
        raise ValueError(f"unknown sweep grid {grid!r}; valid: ['percentiles', 'fine'].")
    rows = [
        {
            "threshold": float(t),
            **evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px, threshold=t).overall,
        }
        for t in np.unique(np.concatenate([[scores.min()], thresholds]))
    ]
    return pd.DataFrame(rows)
