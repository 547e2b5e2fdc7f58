"""Evaluation report: threshold sweep, metrics at F1max, CSV tables, a printed table and plots.

Files written in ``out_dir``: ``metrics.csv`` (one row per tomogram and an ``all`` row, at
the F1max threshold), ``sweep.csv`` (overall metrics per threshold), ``evaluation.png``
(precision-recall, F1 vs threshold, score histograms of hits vs false picks; one
``evaluation_class<k>.png`` per class when the reference has several) and, when asked,
``picks_at_f1max.star`` (picks at or above the best threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .inputs import class_diameters
from .io import staged_outputs, write_coordinates
from .metrics import detection_scores, evaluate_picks, threshold_sweep
from .outputs import EVALUATE
from .plots import plot_evaluation

__all__ = ["EvaluationReport", "evaluation_report", "format_metrics"]


@dataclass
class EvaluationReport:
    """Metrics at the F1max threshold and the sweep that found it.

    With several classes in the reference, every class is swept and evaluated on its own
    (its own diameter, its own best threshold): ``metrics`` and ``sweep`` then have a
    ``class_id`` column, ``class_thresholds`` one entry per class, and ``overall`` /
    ``best_threshold`` pool the classes (TP, FP, FN summed, each at its own threshold;
    ``best_threshold`` is NaN). ``class_overall`` holds each class's overall metrics.
    """

    best_threshold: float
    metrics: pd.DataFrame
    sweep: pd.DataFrame
    overall: dict
    class_thresholds: dict[int, float] = field(default_factory=dict)
    class_overall: dict[int, dict] = field(default_factory=dict)


def format_metrics(metrics: pd.DataFrame) -> str:
    """A fixed-width table of per-tomogram (and per-class) metrics for the log."""
    by_class = "class_id" in metrics.columns
    header = (f"{'class':<7}" if by_class else "") + (
        f"{'tomogram':<20}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}{'F1':>7}{'F4':>7}"
        f"{'AD px':>8}{'AD Å':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in metrics.itertuples():
        lines.append(
            (f"{str(row.class_id):<7}" if by_class else "")
            + f"{str(row.tomo_name):<20}{row.tp:>6}{row.fp:>6}{row.fn:>6}{row.precision:>11.3f}"
            f"{row.recall:>8.3f}{row.f1:>7.3f}{row.f4:>7.3f}{row.ad_px:>8.2f}{row.ad_a:>8.1f}"
        )
    return "\n".join(lines)


class _ClassResult(NamedTuple):
    """One class evaluated on its own: its picks, best threshold, metrics rows at it, sweep,
    overall metrics and which picks hit at any threshold."""

    picks: pd.DataFrame
    best: float
    metrics: pd.DataFrame
    sweep: pd.DataFrame
    overall: dict
    hit: pd.Series


def _evaluate_class(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    diameter_a: float,
    pixel_size_a: float,
    criterion: str,
    distance_px: float,
    grid: str,
) -> _ClassResult:
    if not diameter_a > 0 or not pixel_size_a > 0:
        raise ValueError(f"diameter ({diameter_a} Å) and pixel size ({pixel_size_a} Å) must be > 0.")
    diameter_px = diameter_a / pixel_size_a
    _check_diameter_against_coordinates(picks, truth, diameter_px, diameter_a, pixel_size_a)
    sweep = threshold_sweep(picks, truth, diameter_px, pixel_size_a, criterion, distance_px, grid)
    best = float(sweep.iloc[int(np.argmax(sweep["f1"].to_numpy()))]["threshold"])
    evaluation = evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px, threshold=best)
    metrics = pd.concat([evaluation.per_tomogram, pd.DataFrame([evaluation.overall])], ignore_index=True)
    hit = evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px).hit
    return _ClassResult(picks, best, metrics, sweep, evaluation.overall, hit)


def _pooled(overalls: Sequence[dict], pixel_size_a: float) -> dict:
    """The classes together: counts summed, AD weighted by hits."""
    tp = int(sum(o["tp"] for o in overalls))
    ad = sum(o["ad_px"] * o["tp"] for o in overalls if o["tp"]) / tp if tp else float("nan")
    counts = (tp, *(int(sum(o[k] for o in overalls)) for k in ("fp", "fn")))
    return {"tomo_name": "all", **detection_scores(*counts), "ad_px": ad, "ad_a": ad * pixel_size_a}


def evaluation_report(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    diameter_a: float | Sequence[float],
    pixel_size_a: float,
    out_dir: str | Path | None = None,
    criterion: str = "half-diameter",
    distance_px: float = 10.0,
    grid: str = "percentiles",
    write_filtered: bool = False,
    overwrite: bool = False,
) -> EvaluationReport:
    """Sweep thresholds, evaluate at F1max, and write the report files to ``out_dir`` (if given).

    Parameters
    ----------
    picks, truth : coordinate tables in pixels of the same tomograms. A reference with one
        class is compared with every pick; with several, class k's picks with class k's
        reference particles (hits within class k's radius).
    diameter_a : particle diameter in Å, or one per class (class order).
    pixel_size_a : pixel size in Å.
    criterion, distance_px : match criterion (see :mod:`.metrics`).
    grid : ``percentiles`` (2-98 % step 8) or ``fine``.
    write_filtered : also write the picks at or above the F1max threshold (of their class).

    Files: ``metrics.csv``, ``sweep.csv`` and ``evaluation.png`` (one plot per class,
    ``evaluation_class<k>.png``, when the reference has several classes).
    """
    diameters = class_diameters(diameter_a, sorted(int(c) for c in truth["class_id"].unique()) or [1])
    per_class = len(diameters) > 1
    results = {
        class_id: _evaluate_class(
            picks[picks["class_id"] == class_id] if per_class else picks,
            truth[truth["class_id"] == class_id] if per_class else truth,
            diameter,
            pixel_size_a,
            criterion,
            distance_px,
            grid,
        )
        for class_id, diameter in diameters.items()
    }
    thresholds = {c: r.best for c, r in results.items()}
    overalls = {c: r.overall for c, r in results.items()}
    if per_class:
        overall = _pooled(list(overalls.values()), pixel_size_a)
        metrics = pd.concat(
            [
                *(r.metrics.assign(class_id=c) for c, r in results.items()),
                pd.DataFrame([{**overall, "class_id": "all"}]),
            ],
            ignore_index=True,
        )
        metrics = metrics[["class_id", *[c for c in metrics.columns if c != "class_id"]]]
        sweep = pd.concat([r.sweep.assign(class_id=c) for c, r in results.items()], ignore_index=True)
        report = EvaluationReport(float("nan"), metrics, sweep, overall, thresholds, overalls)
    else:
        [result] = results.values()
        report = EvaluationReport(result.best, result.metrics, result.sweep, result.overall, thresholds, overalls)
    if out_dir is not None:
        plots = {c: EVALUATE.class_plot(c) if per_class else EVALUATE.plot for c in results}
        names = [EVALUATE.metrics, EVALUATE.sweep, *plots.values()] + ([EVALUATE.filtered] if write_filtered else [])
        with staged_outputs(out_dir, overwrite, expected=names) as staging:
            for name, table in ((EVALUATE.metrics, report.metrics), (EVALUATE.sweep, report.sweep)):
                table.to_csv(staging / name, index=False, float_format="%.6g")
            for class_id, r in results.items():
                plot_evaluation(
                    r.sweep,
                    r.picks["score"][r.hit].to_numpy(),
                    r.picks["score"][~r.hit].to_numpy(),
                    staging / plots[class_id],
                )
            if write_filtered:
                kept = pd.concat([r.picks[r.picks["score"] >= r.best] for r in results.values()])
                write_coordinates(staging / EVALUATE.filtered, kept, pixel_size_a=pixel_size_a)
    return report


def _check_diameter_against_coordinates(
    picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float, diameter_a: float, pixel_size_a: float
) -> None:
    """Refuse a diameter no tomogram holding these coordinates could contain.

    A centre lies at least a radius inside its tomogram, so the largest coordinate (pixels) is at
    least half the diameter; a larger diameter is a unit or pixel-size mistake that would count
    every pick as a hit.
    """
    xyz = np.concatenate([picks[["x", "y", "z"]].to_numpy(float), truth[["x", "y", "z"]].to_numpy(float)])
    if len(xyz) and diameter_px > 2 * (xyz.max() + 1):
        raise ValueError(
            f"a particle of {diameter_a:g} Å is {diameter_px:.4g} px at {pixel_size_a:g} Å/px, larger "
            f"than any tomogram holding these coordinates (the largest is {xyz.max():.0f} px); every "
            f"pick would count as a hit. Check the diameter (Å) and the pixel size."
        )
