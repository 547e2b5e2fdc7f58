"""Evaluation report: threshold sweep, metrics at F1max, CSV tables, a printed table and plots.

Files written in ``out_dir``: ``metrics.csv`` (one row per tomogram and an ``all`` row, at
the F1max threshold), ``sweep.csv`` (overall metrics per threshold), ``evaluation.png``
(precision-recall, F1 vs threshold, score histograms of hits vs false picks) and, when
asked, ``picks_at_f1max.star`` (picks at or above the best threshold).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .io import staged_outputs, write_coordinates
from .metrics import evaluate_picks, threshold_sweep
from .plots import plot_evaluation

__all__ = ["EvaluationReport", "evaluation_report", "format_metrics"]


@dataclass
class EvaluationReport:
    """Metrics at the F1max threshold and the sweep that found it."""

    best_threshold: float
    metrics: pd.DataFrame
    sweep: pd.DataFrame
    overall: dict


def format_metrics(metrics: pd.DataFrame) -> str:
    """A fixed-width table of per-tomogram metrics for the log."""
    header = (f"{'tomogram':<20}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}{'F1':>7}{'F4':>7}"
              f"{'AD px':>8}{'AD Å':>8}")
    lines = [header, "-" * len(header)]
    for row in metrics.itertuples():
        lines.append(f"{str(row.tomo_name):<20}{row.tp:>6}{row.fp:>6}{row.fn:>6}{row.precision:>11.3f}"
                     f"{row.recall:>8.3f}{row.f1:>7.3f}{row.f4:>7.3f}{row.ad_px:>8.2f}{row.ad_a:>8.1f}")
    return "\n".join(lines)


def evaluation_report(picks: pd.DataFrame, truth: pd.DataFrame, diameter_a: float, pixel_size_a: float,
                      out_dir: str | Path | None = None, criterion: str = "half-diameter",
                      distance_px: float = 10.0, grid: str = "percentiles",
                      write_filtered: bool = False, overwrite: bool = False) -> EvaluationReport:
    """Sweep thresholds, evaluate at F1max, and write the report files to ``out_dir`` (if given).

    Parameters
    ----------
    picks, truth : coordinate tables in pixels of the same tomograms.
    diameter_a, pixel_size_a : particle diameter and pixel size in Å.
    criterion, distance_px : match criterion (see :mod:`.metrics`).
    grid : ``percentiles`` (2-98 % step 8) or ``fine``.
    write_filtered : also write the picks at or above the F1max threshold.
    """
    if not diameter_a > 0 or not pixel_size_a > 0:
        raise ValueError(f"diameter ({diameter_a} Å) and pixel size ({pixel_size_a} Å) must be > 0.")
    diameter_px = diameter_a / pixel_size_a
    _check_diameter_against_coordinates(picks, truth, diameter_px, diameter_a, pixel_size_a)
    sweep = threshold_sweep(picks, truth, diameter_px, pixel_size_a, criterion, distance_px, grid)
    best = sweep.iloc[int(np.argmax(sweep["f1"].to_numpy()))]
    evaluation = evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px,
                                threshold=float(best["threshold"]))
    metrics = pd.concat([evaluation.per_tomogram, pd.DataFrame([evaluation.overall])], ignore_index=True)
    report = EvaluationReport(float(best["threshold"]), metrics, sweep, evaluation.overall)
    if out_dir is not None:
        names = ["metrics.csv", "sweep.csv", "evaluation.png"] + (["picks_at_f1max.star"] if write_filtered else [])
        all_hits = evaluate_picks(picks, truth, diameter_px, pixel_size_a, criterion, distance_px).hit
        with staged_outputs(out_dir, overwrite, expected=names) as staging:
            for name, table in (("metrics.csv", metrics), ("sweep.csv", sweep)):
                table.to_csv(staging / name, index=False, float_format="%.6g")
            plot_evaluation(sweep, picks["score"][all_hits].to_numpy(), picks["score"][~all_hits].to_numpy(),
                            staging / "evaluation.png")
            if write_filtered:
                kept = picks[picks["score"] >= report.best_threshold]
                write_coordinates(staging / "picks_at_f1max.star", kept, pixel_size_a=pixel_size_a)
    return report


def _check_diameter_against_coordinates(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float,
                                        diameter_a: float, pixel_size_a: float) -> None:
    """Refuse a diameter no tomogram holding these coordinates could contain.

    A centre lies at least a radius inside its tomogram, so the largest coordinate (pixels) is at
    least half the diameter; a larger diameter is a unit or pixel-size mistake that would count
    every pick as a hit.
    """
    xyz = np.concatenate([picks[["x", "y", "z"]].to_numpy(float), truth[["x", "y", "z"]].to_numpy(float)])
    if len(xyz) and diameter_px > 2 * (xyz.max() + 1):
        raise ValueError(f"a particle of {diameter_a:g} Å is {diameter_px:.4g} px at {pixel_size_a:g} Å/px, larger "
                         f"than any tomogram holding these coordinates (the largest is {xyz.max():.0f} px); every "
                         f"pick would count as a hit. Check the diameter (Å) and the pixel size.")
