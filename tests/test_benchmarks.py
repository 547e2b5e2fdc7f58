"""The benchmark scripts run at their smallest size, so they cannot rot."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _check_tables(result: subprocess.CompletedProcess, folder: Path, tables: list[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    for name in tables:
        assert (folder / name).stat().st_size > 0, name
    table = pd.read_csv(folder / tables[0])
    assert len(table) and table.notna().any(axis=None)
    assert "Wrote" in result.stdout


@pytest.fixture(scope="module")
def quick_accuracy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("accuracy")
    return folder, _run("accuracy.py", "--quick", "--out", folder)


def test_speed_runs_quick_and_writes_its_tables(tmp_path):
    _check_tables(_run("speed.py", "--quick", "--out", tmp_path), tmp_path, ["speed.csv", "speed.md"])


def test_accuracy_runs_quick_and_writes_its_tables(quick_accuracy):
    folder, result = quick_accuracy
    _check_tables(result, folder, ["accuracy.csv", "accuracy.md", "accuracy.png"])


def test_ablation_runs_quick_and_writes_its_tables(tmp_path):
    result = _run("ablation.py", "--quick", "--out", tmp_path)
    _check_tables(result, tmp_path, ["ablation.csv", "ablation.md"])
    assert list(pd.read_csv(tmp_path / "ablation.csv")["variant"]) == ["baseline", "tta"]


def test_calibration_compares_the_rules_on_the_models_accuracy_trained(quick_accuracy, tmp_path):
    folder, _ = quick_accuracy
    _check_tables(_run("calibration.py", folder, "--out", tmp_path), tmp_path, ["calibration.csv", "calibration.md"])
    assert set(pd.read_csv(tmp_path / "calibration.csv")["rule"]) == {
        "fine",
        "fine+training",
        "every-score",
        "count",
        "count-window ×1.25",
        "count-window ×1.5",
        "score-sum",
        "count×score-sum 0.5",
        "count×score-sum 0.75",
        "count×score-sum 0.9",
    }


def test_accuracy_combines_earlier_runs_and_a_later_run_replaces_the_same_row(quick_accuracy, tmp_path):
    folder, _ = quick_accuracy
    rows = pd.read_csv(folder / "accuracy_per_seed.csv")
    rerun, other_seed, out = tmp_path / "rerun", tmp_path / "other_seed", tmp_path / "combined"
    for path, changed in ((rerun, rows.assign(f1=0.25)), (other_seed, rows.assign(seed=rows["seed"] + 1, f1=0.75))):
        path.mkdir()
        changed.to_csv(path / "accuracy_per_seed.csv", index=False)
    result = _run("accuracy.py", "--combine", folder, rerun, other_seed, "--out", out)
    _check_tables(result, out, ["accuracy.csv", "accuracy.md", "accuracy.png"])
    learned = pd.read_csv(out / "accuracy.csv").dropna(subset=["labels"])
    assert learned["f1"].tolist() == pytest.approx([0.5] * len(learned))
    assert (learned["seeds"] == 2).all()
    missing = _run("accuracy.py", "--combine", tmp_path / "nowhere", "--out", out)
    assert missing.returncode != 0 and "no accuracy_per_seed.csv in" in missing.stderr


def test_a_combined_accuracy_table_keeps_one_species_order_when_a_later_run_replaces_a_partial_label_row(tmp_path):
    rows = pd.DataFrame(
        [
            dict(seed=1, task=species, species=species, picker="TomoPicker", labels=labels, f1=f1, best_f1=f1)
            for species in ("4v94", "1bxn")
            for labels, f1 in ((1.0, 0.9), (0.1, 0.5))
        ]
    )
    earlier, later, out = tmp_path / "earlier", tmp_path / "later", tmp_path / "combined"
    for path, table in ((earlier, rows), (later, rows[(rows["species"] == "4v94") & (rows["labels"] == 0.1)])):
        path.mkdir()
        table.assign(f1=table["f1"] if path == earlier else 0.25).to_csv(path / "accuracy_per_seed.csv", index=False)
    result = _run("accuracy.py", "--combine", earlier, later, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    headers = [line for line in (out / "accuracy.md").read_text().splitlines() if line.startswith("| picker")]
    assert headers == ["| picker | 4v94 | 1bxn |"] * 2
    partial = (out / "accuracy.md").read_text().split("With 10 %")[1]
    assert "| TomoPicker | 0.25 / 0.50 (0.90) | 0.50 / 0.50 (0.90) |" in partial


def test_accuracy_reuses_an_earlier_runs_model_and_gets_its_figures(quick_accuracy, tmp_path):
    folder, _ = quick_accuracy
    result = _run("accuracy.py", "--quick", "--reuse-models", folder, "--out", tmp_path)
    _check_tables(result, tmp_path, ["accuracy_per_seed.csv"])
    assert "(model reused)" in result.stdout
    earlier, again = (pd.read_csv(f / "accuracy_per_seed.csv") for f in (folder, tmp_path))
    assert not again["trained"].any()
    columns = ["f1", "best_f1", "best_threshold", "ad_px", "threshold"]
    assert again[columns].to_numpy() == pytest.approx(earlier[columns].to_numpy(), nan_ok=True)


def test_an_accuracy_run_stopped_part_way_keeps_the_rows_it_finished(quick_accuracy, tmp_path, monkeypatch):
    folder, _ = quick_accuracy
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accuracy

    def stopped(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(accuracy, "_ncc_row", stopped)
    with pytest.raises(KeyboardInterrupt):
        accuracy.main(["--quick", "--reuse-models", str(folder), "--out", str(tmp_path)])
    kept, earlier = (pd.read_csv(f / accuracy.PER_SEED) for f in (tmp_path, folder))
    assert kept["picker"].tolist() == ["DeepETPicker"]
    assert kept["f1"].to_numpy() == pytest.approx(earlier.dropna(subset=["trained"])["f1"].to_numpy())
    assert not (tmp_path / "accuracy.md").exists()


def test_accuracy_recalibrating_a_reused_model_by_the_rule_it_was_trained_with_keeps_its_threshold(
    quick_accuracy, tmp_path
):
    folder, _ = quick_accuracy
    result = _run("accuracy.py", "--quick", "--reuse-models", folder, "--recalibrate", "--out", tmp_path)
    _check_tables(result, tmp_path, ["accuracy_per_seed.csv"])
    assert "(model reused, recalibrated)" in result.stdout
    earlier, again = (pd.read_csv(f / "accuracy_per_seed.csv").dropna(subset=["trained"]) for f in (folder, tmp_path))
    assert len(again) and again["recalibrated"].astype(bool).all()
    assert again["threshold"].to_numpy() == pytest.approx(earlier["threshold"].to_numpy())
    alone = _run("accuracy.py", "--quick", "--recalibrate", "--out", tmp_path / "alone")
    assert alone.returncode != 0 and "--recalibrate applies to the models of --reuse-models" in alone.stderr


def test_accuracy_refuses_to_reuse_the_models_of_a_run_that_split_its_tomograms_differently(quick_accuracy, tmp_path):
    folder, _ = quick_accuracy
    result = _run("accuracy.py", "--quick", "--training-tomograms", "3", "--reuse-models", folder, "--out", tmp_path)
    assert result.returncode != 0
    assert "simulation.json: that run simulated 4 tomograms, this one 5 (3 training)" in result.stderr
    assert not (tmp_path / "accuracy_per_seed.csv").exists()


def test_accuracy_refuses_to_reuse_the_models_of_the_folder_it_would_replace(quick_accuracy):
    folder, _ = quick_accuracy
    result = _run("accuracy.py", "--quick", "--reuse-models", folder, "--out", folder)
    assert result.returncode != 0 and "is the --out folder" in result.stderr


def test_accuracy_runs_the_two_class_task_only_with_recipes_whose_loss_takes_several_classes(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accuracy

    assert accuracy._multi_class(accuracy.RECIPES["DeepETPicker"]) and accuracy._multi_class(
        accuracy.RECIPES["tomoCPT"]
    )
    assert not accuracy._multi_class(accuracy.RECIPES["TomoPicker"])


def test_accuracy_splits_each_seeds_tomograms_into_training_validation_and_held_out_by_the_training_count(
    monkeypatch,
):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accuracy

    paths = [Path(f"tomo_{i:03d}.mrc") for i in range(7)]
    tilts = [p.with_suffix(".tlt") for p in paths]
    default = accuracy.Dataset(paths[:5], {}, tilts[:5], 10.0)
    assert (default.training_paths, default.validation_path, default.test_paths) == (paths[:2], paths[2], paths[3:5])
    more = accuracy.Dataset(paths, {}, tilts, 10.0, n_training=4)
    assert (more.training_paths, more.validation_path, more.test_paths) == (paths[:4], paths[4], paths[5:])
    assert more.test_tilt_angle_files == tilts[5:]
    refused = _run("accuracy.py", "--training-tomograms", "0", "--out", "unused")
    assert refused.returncode != 0 and "--training-tomograms must be at least 1" in refused.stderr


def test_calibration_combines_earlier_tables_and_a_later_run_replaces_the_same_model_and_rule(tmp_path):
    row = dict(folder="run", seed=1, species="4v94", picker="TomoPicker", labels=0.1, rule="count", threshold=0.5)
    earlier, later, out = tmp_path / "earlier", tmp_path / "later", tmp_path / "combined"
    for path, rows in (
        (earlier, [dict(row, f1=0.7, best_f1=0.8, gap=0.1), dict(row, seed=2, f1=0.6, best_f1=0.8, gap=0.2)]),
        (later, [dict(row, f1=0.75, best_f1=0.8, gap=0.05)]),
    ):
        path.mkdir()
        pd.DataFrame(rows).to_csv(path / "calibration.csv", index=False)
    _check_tables(
        _run("calibration.py", "--combine", earlier, later, "--out", out), out, ["calibration.csv", "calibration.md"]
    )
    combined = pd.read_csv(out / "calibration.csv").set_index("seed")
    assert combined["gap"].to_dict() == pytest.approx({1: 0.05, 2: 0.2})
    refused = _run("calibration.py", "--combine", earlier, later, "--out", later)
    assert refused.returncode != 0 and "--combine folders" in refused.stderr
    assert pd.read_csv(later / "calibration.csv")["gap"].tolist() == pytest.approx([0.05])
