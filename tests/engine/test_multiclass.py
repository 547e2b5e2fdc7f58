"""Several species of different sizes in one model: per-class label radii, peak spacing, overlap
resolution and hit radii, and per-class metrics with F1 and F4 from train → predict → evaluate."""

import json

import numpy as np
import pandas as pd
import pytest

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.filtering import resolve_class_overlaps
from tomocpt_scipion.engine.infer import ScoreMap
from tomocpt_scipion.engine.labels import label_voxel_count, make_label
from tomocpt_scipion.engine.predict import picks_from_scores
from tomocpt_scipion.engine.report import evaluation_report


def _blob(shape, centre_zyx, sigma):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return np.exp(-np.square(grid - centre_zyx).sum(-1) / (2 * sigma**2))


def test_each_class_is_labelled_with_its_own_radius():
    label = make_label("ball", (40, 40, 80), [[20, 20, 20], [60, 20, 20]], [2.0, 5.0], [1, 2], n_classes=2)
    assert np.count_nonzero(label == 1) == label_voxel_count("ball", 2.0)
    assert np.count_nonzero(label == 2) == label_voxel_count("ball", 5.0)
    gaussian = make_label("gaussian", (40, 40, 80), [[20, 20, 20], [60, 20, 20]], [2.0, 5.0], [1, 2], n_classes=2)
    assert np.count_nonzero(gaussian[0]) < np.count_nonzero(gaussian[1])


def test_peaks_of_each_class_are_spaced_by_its_own_diameter():
    # class 1: 100 Å, class 2: 300 Å, at 10 Å per training voxel; two maxima 15 voxels apart per channel
    config = recipe_config(
        "deepetpicker",
        classes=["small", "large"],
        class_diameters_a=[100.0, 300.0],
        target_diameter_px=10.0,
        thresholds=[0.5, 0.5],
    )
    shape = (40, 40, 60)
    scores = np.zeros((2, *shape), np.float32)
    for channel in range(2):
        scores[channel] = np.maximum(_blob(shape, (20, 20, 20), 1.5), 0.9 * _blob(shape, (20, 20, 35), 1.5))
    table = picks_from_scores(ScoreMap(scores, 1.0, shape, 10.0), config, "t", "local-max", refine="centroid")
    assert config.diameter_a == 100.0
    assert sorted(table.groupby("class_id").size().to_dict().items()) == [(1, 2), (2, 1)]


def test_overlapping_picks_of_two_classes_keep_the_better_score():
    table = pd.concat(
        [
            io.coordinate_table(np.array([[10.0, 10, 10], [40, 40, 40]]), "t", [0.9, 0.4], 1),
            io.coordinate_table(np.array([[12.0, 10, 10], [40, 40, 52]]), "t", [0.6, 0.8], 2),
        ],
        ignore_index=True,
    )
    kept = resolve_class_overlaps(table, {1: 3.0, 2: 15.0})
    # (10,10,10) vs (12,10,10): 2 px < min(3, 15) -> one particle, class 1 wins on score;
    # (40,40,40) vs (40,40,52): 12 px > min radius 3 -> two particles
    assert sorted(zip(kept["class_id"], kept["x"])) == [(1, 10.0), (1, 40.0), (2, 40.0)]


def test_hits_are_counted_within_each_class_radius_and_reported_with_f1_and_f4(tmp_path):
    truth = pd.concat(
        [
            io.coordinate_table(np.array([[20.0, 20, 20]]), "t", 1.0, 1),
            io.coordinate_table(np.array([[60.0, 60, 60]]), "t", 1.0, 2),
        ],
        ignore_index=True,
    )
    picks = truth.assign(x=truth["x"] + 4.0, score=0.9)  # 4 px off: within 30/2 but not 6/2
    report = evaluation_report(picks, truth, [6.0, 30.0], 1.0, tmp_path / "evaluation")
    rows = report.metrics.set_index(["class_id", "tomo_name"])
    assert rows.loc[(1, "all"), "tp"] == 0 and rows.loc[(2, "all"), "tp"] == 1
    assert {"f1", "f4"} <= set(rows.columns) and rows.loc[(2, "all"), "f4"] == 1.0
    assert rows.loc[("all", "all"), "tp"] == 1 and rows.loc[("all", "all"), "fn"] == 1
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == [
        "evaluation_class1.png",
        "evaluation_class2.png",
        "metrics.csv",
        "sweep.csv",
    ]


@pytest.fixture(scope="module")
def two_species(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_species")
    assert (
        main(
            [
                "simulate",
                "--out",
                str(root / "sim"),
                "--n-tomograms",
                "3",
                "--shape",
                "48",
                "96",
                "96",
                "--pixel-size",
                "20",
                "--n-target",
                "16",
                "--n-distractors",
                "12",
                "--distractors",
                "1bxn",
                "--mode",
                "fourier",
                "--snr",
                "1.0",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    diameters = json.loads((root / "sim" / "simulation.json").read_text())["diameters_a"]
    return root, [diameters["4v94"], diameters["1bxn"]]


def test_two_species_of_different_sizes_train_pick_and_evaluate_class_by_class(two_species, capsys):
    root, diameters = two_species
    sim = root / "sim"
    tomograms = [str(sim / "tomograms" / f"tomo_00{i}.mrc") for i in range(2)]
    assert (
        main(
            [
                "train",
                "--tomograms",
                *tomograms,
                "--coordinates",
                str(sim / "coordinates" / "4v94.star"),
                str(sim / "coordinates" / "1bxn.star"),
                "--diameter",
                *map(str, diameters),
                "--recipe",
                "deepetpicker",
                "--model-size",
                "small",
                "--patch-size",
                "32",
                "--batch-size",
                "4",
                "--epochs",
                "12",
                "--centring-steps",
                "0",
                "--out",
                str(root / "model"),
            ]
        )
        == 0
    )
    config = json.loads((root / "model" / "model.json").read_text())["config"]
    assert config["class_diameters_a"] == pytest.approx(diameters) and config["classes"] == ["4v94", "1bxn"]
    held_out = str(sim / "tomograms" / "tomo_002.mrc")
    assert (
        main(
            [
                "predict",
                "--model",
                str(root / "model" / "model.pt"),
                "--tomograms",
                held_out,
                "--out",
                str(root / "picks"),
                "--threshold",
                "0.05",
            ]
        )
        == 0
    )
    picks = io.read_coordinates(root / "picks" / "picks.star")
    assert set(picks["class_id"]) == {1, 2}
    truth = pd.concat(
        [
            io.read_coordinates(sim / "coordinates" / f"{s}.star").assign(class_id=c)
            for c, s in ((1, "4v94"), (2, "1bxn"))
        ],
        ignore_index=True,
    )
    truth = truth[truth["tomo_name"] == "tomo_002"]
    io.write_coordinates(root / "truth.csv", truth)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--picks",
                str(root / "picks" / "picks.star"),
                "--truth",
                str(root / "truth.csv"),
                "--diameter",
                *map(str, diameters),
                "--tomograms",
                held_out,
                "--out",
                str(root / "evaluation"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    metrics = pd.read_csv(root / "evaluation" / "metrics.csv", dtype={"class_id": str}).set_index(
        ["class_id", "tomo_name"]
    )
    assert {"f1", "f4"} <= set(metrics.columns) and {"1", "2", "all"} <= set(metrics.index.get_level_values(0))
    assert metrics.loc[("1", "all"), "f1"] >= 0.6, printed
    assert "class 1: F1max" in printed and "class 2: F1max" in printed
