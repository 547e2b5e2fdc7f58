"""Matching and metrics against hand-built cases."""

import numpy as np
import pandas as pd
import pytest

from tomocpt_scipion.engine.io import coordinate_table
from tomocpt_scipion.engine.metrics import evaluate_picks, match_points, threshold_sweep
from tomocpt_scipion.engine.report import evaluation_report


def test_hungarian_matching_beats_nearest_first_matching():
    truth = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    picks = np.array([[0.9, 0, 0], [-0.5, 0, 0]])
    # nearest-first in pick order: pick 0 takes truth 0 (0.9 < 1.1), pick 1 then has nothing within 1.2
    taken, greedy_hits = set(), 0
    for p in picks:
        d = np.linalg.norm(truth - p, axis=1)
        d[list(taken)] = np.inf
        if d.min() <= 1.2:
            taken.add(int(d.argmin()))
            greedy_hits += 1
    assert greedy_hits == 1
    rows, cols, distances = match_points(picks, truth, 1.2)
    assert sorted(zip(rows, cols)) == [(0, 1), (1, 0)]
    np.testing.assert_allclose(sorted(distances), [0.5, 1.1])


def test_strict_radius_criterion_excludes_the_boundary():
    assert len(match_points([[1.0, 0, 0]], [[0.0, 0, 0]], 1.0, strict=False)[0]) == 1
    assert len(match_points([[1.0, 0, 0]], [[0.0, 0, 0]], 1.0, strict=True)[0]) == 0


def test_metrics_match_a_hand_computed_table():
    truth = pd.concat(
        [
            coordinate_table([[10, 10, 10], [30, 10, 10], [50, 10, 10]], "A"),
            coordinate_table([[10, 10, 10], [40, 40, 10]], "B"),
        ],
        ignore_index=True,
    )
    picks = pd.concat(
        [
            coordinate_table([[11, 10, 10], [30, 12, 10], [70, 70, 10]], "A", [0.9, 0.8, 0.7]),
            coordinate_table([[10, 10, 13], [90, 90, 10]], "B", [0.6, 0.5]),
        ],
        ignore_index=True,
    )
    # diameter 8 px, pixel 2 Å: hits within 4 px. A: 2 hits (1, 2 px), 1 FP, 1 FN. B: 1 hit (3 px), 1 FP, 1 FN.
    result = evaluate_picks(picks, truth, diameter_px=8, pixel_size_a=2.0)
    a, b = result.per_tomogram.set_index("tomo_name").loc[["A", "B"]].to_dict("records")
    assert (a["tp"], a["fp"], a["fn"]) == (2, 1, 1)
    assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == pytest.approx(2 / 3)
    assert a["ad_px"] == pytest.approx(1.5) and a["ad_a"] == pytest.approx(3.0)
    assert (b["tp"], b["fp"], b["fn"]) == (1, 1, 1) and b["f1"] == pytest.approx(0.5)
    overall = result.overall
    assert (overall["tp"], overall["fp"], overall["fn"]) == (3, 2, 2)
    assert overall["f1"] == pytest.approx(0.6)
    assert overall["ad_px"] == pytest.approx(2.0)
    assert overall["rmse_over_diameter"] == pytest.approx(np.sqrt((1 + 4 + 9) / 3) / 8)
    assert list(result.hit) == [True, True, False, True, False]


def test_one_far_hit_moves_the_mean_hit_distance_but_not_the_median():
    truth = coordinate_table([[10, 10, 10], [30, 10, 10], [50, 10, 10]], "A")
    picks = coordinate_table([[11, 10, 10], [31, 10, 10], [50, 16, 10]], "A", [0.9, 0.8, 0.7])
    overall = evaluate_picks(picks, truth, diameter_px=16).overall
    assert overall["ad_px"] == pytest.approx(8 / 3)
    assert overall["median_px"] == pytest.approx(1.0)


def test_sweep_finds_the_threshold_that_drops_the_false_picks(tmp_path):
    truth = coordinate_table([[10, 10, 10], [30, 10, 10]], "A")
    picks = coordinate_table([[10, 10, 10], [30, 10, 10], [50, 50, 10], [70, 50, 10]], "A", [0.9, 0.8, 0.3, 0.2])
    sweep = threshold_sweep(picks, truth, diameter_px=8, grid="fine")
    assert sweep["f1"].max() == pytest.approx(1.0)
    report = evaluation_report(
        picks, truth, diameter_a=16, pixel_size_a=2, out_dir=tmp_path, grid="fine", write_filtered=True
    )
    assert 0.3 < report.best_threshold <= 0.8 and report.overall["f1"] == pytest.approx(1.0)
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.csv", "sweep.csv", "evaluation.png", "picks_at_f1max.star"}
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["tomo_name"]) == ["A", "all"]


def test_f4_weighs_recall_sixteen_times_precision_as_the_challenge_does():
    from tomocpt_scipion.engine.metrics import f_beta

    truth = coordinate_table(np.array([[10.0, 10, 10], [40, 40, 40], [70, 70, 70], [100, 100, 100]]), "t")
    picks = coordinate_table(np.array([[10.0, 10, 10], [40, 40, 40], [200, 200, 200]]), "t", 0.9)
    overall = evaluate_picks(picks, truth, diameter_px=8).overall
    precision, recall = 2 / 3, 2 / 4
    assert overall["f4"] == pytest.approx(17 * precision * recall / (16 * precision + recall))
    assert f_beta(precision, recall, 1.0) == pytest.approx(overall["f1"])
    assert f_beta(0.0, 0.0, 4.0) == 0.0
