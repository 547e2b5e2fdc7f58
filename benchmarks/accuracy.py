"""Accuracy of every recipe and peak method, and of template matching, on held-out simulated tomograms.

    .venv/bin/python benchmarks/accuracy.py              # the suite (about an hour on 2 CPU cores)
    .venv/bin/python benchmarks/accuracy.py --quick      # one tiny dataset, one recipe: the smoke test

Each dataset is simulated anew per seed: training tomograms (one of them validates) with a
fraction of their target particles annotated, and held-out tomograms that are only picked.
Every recipe is trained with the small networks (CPU-sized), its score maps are computed
once per held-out tomogram and every peak method picks from them; template matching uses
the true template over 60 random orientations. Metrics are at each method's F1max threshold
(Hungarian matching, hit within half the diameter), averaged over seeds.

Writes ``benchmarks/results/accuracy.csv``, ``accuracy.md`` and ``accuracy.png``.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from template_matching import template_matching_scores  # noqa: E402

from tomocpt_scipion.engine import io  # noqa: E402
from tomocpt_scipion.engine.checkpoint import load_model  # noqa: E402
from tomocpt_scipion.engine.config import recipe_config  # noqa: E402
from tomocpt_scipion.engine.infer import predict_scores  # noqa: E402
from tomocpt_scipion.engine.peaks import find_peaks  # noqa: E402
from tomocpt_scipion.engine.predict import picks_from_scores  # noqa: E402
from tomocpt_scipion.engine.report import evaluation_report  # noqa: E402
from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_dataset, species_density  # noqa: E402
from tomocpt_scipion.engine.train import train  # noqa: E402

RESULTS = Path(__file__).with_name("results")
BASE = dict(shape_zyx=(48, 96, 96), pixel_size_a=20.0, n_target=20, n_distractors=12, snr=0.3)


@dataclass
class Dataset:
    """One benchmark setting."""

    name: str
    simulation: dict
    n_train: int = 3
    n_test: int = 2
    annotated_fraction: float = 1.0
    notes: str = ""


DATASETS = [
    Dataset("easy", {"snr": 1.0}, notes="SNR 1.0, crowded"),
    Dataset("medium", {}, notes="SNR 0.3, crowded"),
    Dataset("hard", {"snr": 0.1}, notes="SNR 0.1, crowded"),
    Dataset("sparse", {"n_target": 6, "n_distractors": 4}, notes="SNR 0.3, 6 targets"),
    Dataset("wedge±45", {"tilt_range_deg": 45.0}, notes="SNR 0.3, tilt ±45°"),
    Dataset("small target", {"target": "1bxn", "pixel_size_a": 10.0}, notes="RuBisCO (134 Å) at 10 Å/px"),
    Dataset("few labels", {"n_target": 40}, n_train=5, annotated_fraction=0.01,
            notes="1 % of the particles annotated (≥ 1)"),
]
QUICK = [Dataset("quick", {"shape_zyx": (32, 64, 64), "n_target": 8, "n_distractors": 4, "snr": 1.0},
                 n_train=2, n_test=1)]

#: recipe name in the table -> (engine recipe, overrides); small networks, CPU-sized patches
RECIPES = {
    "tomoCPT": ("tomocpt", dict(model_size="small", patch_size=64, batch_size=2, epochs=10)),
    "DeepETPicker": ("deepetpicker", dict(model_size="small", patch_size=32, batch_size=4, epochs=20)),
    "TomoPicker-nnPU": ("tomopicker", dict(model_size="small", patch_size=32, batch_size=4, epochs=30, loss="nnpu")),
    "TomoPicker-KL": ("tomopicker", dict(model_size="small", patch_size=32, batch_size=4, epochs=30, loss="kl")),
}
PEAK_THRESHOLDS = {"local-max": 0.05, "mp-nms": 0.5, "greedy": 0.05}
#: MP-NMS segments at its threshold: a Gaussian centroid map is above 0.5 only near the centre
MP_NMS_GAUSSIAN_THRESHOLD = 0.2


def _simulate(dataset: Dataset, seed: int, folder: Path):
    config = SimulationConfig(**{**BASE, **dataset.simulation})
    summary = simulate_dataset(folder, dataset.n_train + dataset.n_test, config, seed=seed, overwrite=True)
    names = list(summary["tomograms"])
    truth = io.read_coordinates(folder / "coordinates" / f"{config.target}.star")
    rng = np.random.default_rng(seed)
    train_rows = truth[truth["tomo_name"].isin(names[:dataset.n_train])]
    keep = max(1, int(round(dataset.annotated_fraction * len(train_rows))))
    annotated = train_rows.iloc[np.sort(rng.choice(len(train_rows), keep, replace=False))]
    paths = [folder / p for p in summary["tomograms"].values()]
    return config, summary, paths[:dataset.n_train], annotated, paths[dataset.n_train:], \
        truth[truth["tomo_name"].isin(names[dataset.n_train:])]


def _metrics(picks, truth, diameter_a, pixel_size_a) -> dict:
    report = evaluation_report(picks, truth, diameter_a, pixel_size_a)
    return {k: report.overall[k] for k in ("precision", "recall", "f1", "ad_px")}


def _recipe_rows(name, dataset, config, diameter, train_paths, annotated, test_paths, truth, work) -> list[dict]:
    recipe, overrides = RECIPES[name]
    expected = float(truth.groupby("tomo_name").size().mean())
    engine_config = recipe_config(recipe, diameter_a=diameter, expected_particles=max(expected, 1.0),
                                  **overrides)
    started = time.time()
    result = train(train_paths, annotated, engine_config, work / name, overwrite=True)
    model, model_config = load_model(result.checkpoint)
    maps = {Path(p).stem: predict_scores(model, model_config, p) for p in test_paths}
    seconds = time.time() - started
    rows = []
    for method, threshold in PEAK_THRESHOLDS.items():
        if method == "mp-nms" and model_config.label == "gaussian":
            threshold = MP_NMS_GAUSSIAN_THRESHOLD
        picks = pd.concat([picks_from_scores(score_map, model_config, tomo, method, threshold,
                                             max_picks=int(4 * expected) + 10)
                           for tomo, score_map in maps.items()], ignore_index=True)
        rows.append({"method": f"{name} / {method}", "recipe": name, "peaks": method,
                     **_metrics(picks, truth, diameter, config.pixel_size_a), "seconds": seconds})
    return rows


def _template_matching_row(config, diameter, test_paths, truth) -> dict:
    template = -species_density(config.target, config.pixel_size_a) if config.dark_protein \
        else species_density(config.target, config.pixel_size_a)
    radius_px = diameter / 2 / config.pixel_size_a
    started = time.time()
    tables = []
    for path in test_paths:
        volume, _ = io.read_mrc(path)
        scores = template_matching_scores(volume, template)
        peaks = find_peaks(scores, "local-max", radius_px=radius_px, threshold=-1.0)
        tables.append(io.coordinate_table(peaks[:, :3], Path(path).stem, peaks[:, 3]))
    picks = pd.concat(tables, ignore_index=True)
    return {"method": "template matching (NCC, true template)", "recipe": "template matching", "peaks": "local-max",
            **_metrics(picks, truth, diameter, config.pixel_size_a), "seconds": time.time() - started}


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| dataset | method | precision | recall | F1 | AD (px) |", "|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        lines.append(f"| {row.dataset} | {row.method} | {row.precision:.2f} | {row.recall:.2f} | "
                     f"**{row.f1:.2f}** | {row.ad_px:.2f} |" if row.is_best else
                     f"| {row.dataset} | {row.method} | {row.precision:.2f} | {row.recall:.2f} | {row.f1:.2f} | "
                     f"{row.ad_px:.2f} |")
    return "\n".join(lines)


def _bar_chart(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = table.loc[table.groupby(["dataset", "recipe"])["f1"].idxmax()]
    pivot = best.pivot(index="dataset", columns="recipe", values="f1").reindex(table["dataset"].unique())
    axis = pivot.plot.bar(figsize=(12, 4.5), rot=0)
    axis.set(ylabel="F1 at F1max (best peak method)", ylim=(0, 1), title="Held-out simulated tomograms")
    axis.legend(ncol=5, fontsize=8, loc="upper right")
    plt.tight_layout()
    plt.savefig(path, dpi=100)
    plt.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny dataset, one recipe (smoke test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="simulation seeds (default 1 2)")
    parser.add_argument("--datasets", nargs="*", help="names of the datasets to run (default all)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    datasets = QUICK if args.quick else [d for d in DATASETS if not args.datasets or d.name in args.datasets]
    recipes = ["DeepETPicker"] if args.quick else list(RECIPES)
    seeds = args.seeds[:1] if args.quick else args.seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in datasets:
        for seed in seeds:
            work = out / "scratch" / f"{dataset.name.replace(' ', '_')}_{seed}"
            shutil.rmtree(work, ignore_errors=True)
            config, summary, train_paths, annotated, test_paths, truth = _simulate(dataset, seed, work / "data")
            diameter = summary["diameters_a"][config.target]
            common = {"dataset": dataset.name, "seed": seed, "notes": dataset.notes}
            for name in recipes:
                for row in _recipe_rows(name, dataset, config, diameter, train_paths, annotated, test_paths,
                                        truth, work):
                    rows.append({**common, **row})
                    print(f"{dataset.name:<14} seed {seed}  {row['method']:<36} F1 {row['f1']:.3f}", flush=True)
            row = _template_matching_row(config, diameter, test_paths, truth)
            rows.append({**common, **row})
            print(f"{dataset.name:<14} seed {seed}  {row['method']:<36} F1 {row['f1']:.3f}", flush=True)
    raw = pd.DataFrame(rows)
    raw.to_csv(out / "accuracy_per_seed.csv", index=False)
    table = (raw.groupby(["dataset", "method", "recipe", "peaks"], sort=False)
             [["precision", "recall", "f1", "ad_px", "seconds"]].mean().reset_index())
    table["is_best"] = table["f1"] == table.groupby("dataset")["f1"].transform("max")
    table.to_csv(out / "accuracy.csv", index=False)
    markdown = _markdown(table)
    (out / "accuracy.md").write_text(f"Seeds {seeds}; metrics at F1max, mean over seeds; best F1 per dataset in bold.\n\n"
                                     f"{markdown}\n")
    _bar_chart(table, out / "accuracy.png")
    print(f"\n{markdown}\n\nWrote {out / 'accuracy.md'}, {out / 'accuracy.csv'} and {out / 'accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
