"""Accuracy of the recipes against template matching on realistic (tilt-series, WBP) tomograms.

    .venv/bin/python benchmarks/accuracy.py                  # the suite (see README for its duration)
    .venv/bin/python benchmarks/accuracy.py --quick          # one small set, one recipe: the smoke test

Per seed, five tomograms of 128 × 256 × 256 voxels at 10 Å/px are simulated in ``wbp`` mode
(tilt series ±60° in 3° steps, CTF, 120 e/Å², Poisson noise, weighted back-projection) with
all six SHREC species, crowded; tomogram i of seed s is drawn with seed s + i, so consecutive
seeds share tomograms in other roles. Tomograms 0 and 1 train, 2 validates (and calibrates
the score threshold), 3 and 4 are held out (``--quick``: 3 only); ``--training-tomograms N``
trains on tomograms 0 … N-1 instead, validates on N and holds out the two after it, so that
10 % of the labels is more particles. Per species (and one
two-class run, which the one-class PU losses skip), every recipe is trained with the
CPU-sized networks on all the particles and on 10 % of them (training and validation labels
alike), and picks the held-out tomograms with the engine's defaults: the default peak
method, the centroid on the score map then the model's centring network, and the model's
calibrated threshold.

Reported per picker and species: F1 at the shipped default threshold, the best F1 over
thresholds (Hungarian matching, hit within half the diameter), and AD, the mean hit
distance in pixels of the tomogram, at the default threshold (the CSV files also give the
median hit distance, the mean for the picks on the score map alone, before the centring
network, and whether the model kept one). Template matching has no default threshold (only
its best F1 is reported): pyTME (the real package, CPU backend, ``FLCSphericalMask`` score,
the exact template, missing wedge from the tilt angles, CTF phase-flip model, its own
``PeakCallerMaximumFilter``) run as a separate program (``--pytme``),
and the engine-free NCC of ``template_matching.py`` (60 random orientations) beside it.

``--reuse-models`` evaluates the models earlier runs trained (same seed, task, recipe and
label fraction) instead of training them again: training is what takes the time, and it
gives the same model for the same tomograms, code and thread count; a run that split its
tomograms differently (another ``--training-tomograms``) is refused, since its models may have
trained on tomograms this run holds out. With ``--recalibrate`` their particle templates
are made again (:func:`train.particle_templates`, where the recipe makes them now) and their
score thresholds calibrated again
by the engine's current rule (:func:`calibrate.calibrate_thresholds`, on the validation
tomogram and its annotated fraction, with the training tomograms as in ``train``) instead of
the ones stored when they were trained; with ``--no-particle-templates`` as well, without
particle templates, so that what the templates bring is measured on the same networks.

Writes ``accuracy_per_seed.csv`` (after every row, so a run stopped part-way keeps its finished
rows for ``--combine``), ``accuracy.csv`` (mean over seeds), ``accuracy.md`` and ``accuracy.png``
in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from template_matching import template_matching_scores  # noqa: E402

from tomocpt_scipion.engine import io  # noqa: E402
from tomocpt_scipion.engine.annotation import labelled_per_class  # noqa: E402
from tomocpt_scipion.engine.calibrate import calibrate_thresholds  # noqa: E402
from tomocpt_scipion.engine.checkpoint import load_centring, load_model, load_templates  # noqa: E402
from tomocpt_scipion.engine.config import recipe_config  # noqa: E402
from tomocpt_scipion.engine.data import prepare_tomogram  # noqa: E402
from tomocpt_scipion.engine.infer import predict_scores  # noqa: E402
from tomocpt_scipion.engine.metrics import evaluate_picks  # noqa: E402
from tomocpt_scipion.engine.outputs import TRAIN  # noqa: E402
from tomocpt_scipion.engine.peaks import find_peaks  # noqa: E402
from tomocpt_scipion.engine.predict import centre_picks, picks_from_scores, template_rescored  # noqa: E402
from tomocpt_scipion.engine.report import evaluation_report  # noqa: E402
from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_dataset, species_density  # noqa: E402
from tomocpt_scipion.engine.specs import LOSS_SPECS  # noqa: E402
from tomocpt_scipion.engine.train import particle_templates, train  # noqa: E402

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]
ALL_SPECIES = ("4v94", "1bxn", "3d2f", "4cr2", "1u6g", "1s3x")
SIMULATION = dict(
    shape_zyx=(128, 256, 256),
    pixel_size_a=10.0,
    target="4v94",
    distractors=tuple(s for s in ALL_SPECIES if s != "4v94"),
    n_target=30,
    n_distractors=150,
)
QUICK_SIMULATION = {**SIMULATION, "shape_zyx": (64, 128, 128), "n_target": 10, "n_distractors": 25}
#: tomograms 0 and 1 train, 2 validates, the rest are held out (``--training-tomograms`` changes the 2)
N_TRAINING = 2
N_TEST = 2
QUICK_N_TEST = 1
#: the per-seed figures averaged over seeds in ``accuracy.csv``
MEASURES = [
    "f1",
    "best_f1",
    "ad_px",
    "median_px",
    "ad_score_map_px",
    "precision",
    "recall",
    "threshold",
    "best_threshold",
    "seconds",
]
#: the per-seed rows, rewritten after each one so that a run stopped part-way keeps what it measured
PER_SEED = "accuracy_per_seed.csv"
#: the floor down to which picks are kept, so the best threshold can be found above it
PICK_FLOOR = 0.02


@dataclass
class Task:
    """One picking task: the species that are the classes (one diameter: their mean)."""

    name: str
    classes: tuple[str, ...]
    label_fractions: tuple[float, ...] = (1.0, 0.1)


TASKS = [
    Task("4v94", ("4v94",)),
    Task("1bxn", ("1bxn",)),
    Task("3d2f", ("3d2f",)),
    Task("1bxn+3d2f", ("1bxn", "3d2f"), label_fractions=(1.0,)),
]
QUICK_TASKS = [Task("4v94", ("4v94",), label_fractions=(1.0,))]

#: the CPU-sized settings every TomoPicker variant below starts from
_TOMOPICKER = dict(model_size="small", patch_size=32, batch_size=4, epochs=30, loss="nnpu")
_DEEPETPICKER = dict(model_size="small", patch_size=32, batch_size=4, epochs=100)
_TOMOCPT = dict(model_size="small", patch_size=64, batch_size=2, epochs=15)
#: recipe name in the tables -> (engine recipe, overrides): CPU-sized networks and epochs
RECIPES = {
    "tomoCPT": ("tomocpt", _TOMOCPT),
    "tomoCPT 45 epochs": ("tomocpt", {**_TOMOCPT, "epochs": 45}),
    "DeepETPicker": ("deepetpicker", _DEEPETPICKER),
    "TomoPicker": ("tomopicker", _TOMOPICKER),
    "TomoPicker pseudo-labels": ("tomopicker", {**_TOMOPICKER, "pseudo_labels": True}),
    "TomoPicker PN": ("tomopicker", {**_TOMOPICKER, "loss": "bce"}),
    "TomoPicker KL": ("tomopicker", {**_TOMOPICKER, "loss": "kl"}),
    "TomoPicker small spheres": ("tomopicker", {**_TOMOPICKER, "label_radius_fraction": 0.25}),
    "TomoPicker ResUNet": ("tomopicker", {**_TOMOPICKER, "backbone": "resunet"}),
    "TomoPicker x2": ("tomopicker", {**_TOMOPICKER, "ensemble": 2}),
    "TomoPicker x4": ("tomopicker", {**_TOMOPICKER, "ensemble": 4}),
    "DeepETPicker x2": ("deepetpicker", {**_DEEPETPICKER, "ensemble": 2}),
    "DeepETPicker templates": ("deepetpicker", {**_DEEPETPICKER, "particle_template": True}),
}
#: recipes run when none is named (the ensemble doubles the time of its recipe: ask for it)
DEFAULT_RECIPES = ("tomoCPT", "DeepETPicker", "TomoPicker")
#: the same recipes as a user trains them, the papers' networks and epochs: for a GPU (gpu_check.sh)
RECIPES.update({f"{name} default size": (RECIPES[name][0], {}) for name in DEFAULT_RECIPES})
QUICK_RECIPES = {
    "DeepETPicker": (
        "deepetpicker",
        dict(model_size="small", patch_size=32, batch_size=4, epochs=4, centring_steps=100),
    )
}


@dataclass
class Dataset:
    """Simulated tomograms of one seed and the ground truth of every species."""

    paths: list[Path]
    truth: dict[str, pd.DataFrame]
    tilt_angle_files: list[Path]
    pixel_size_a: float
    diameters_a: dict[str, float] = field(default_factory=dict)
    #: the first ``n_training`` tomograms train, the next one validates, the rest are held out
    n_training: int = N_TRAINING

    @property
    def training_paths(self) -> list[Path]:
        return self.paths[: self.n_training]

    @property
    def validation_path(self) -> Path:
        return self.paths[self.n_training]

    @property
    def test_paths(self) -> list[Path]:
        return self.paths[self.n_training + 1 :]

    @property
    def test_tilt_angle_files(self) -> list[Path]:
        return self.tilt_angle_files[self.n_training + 1 :]


def _simulate(seed: int, folder: Path, simulation: dict, n_test: int, n_training: int = N_TRAINING) -> Dataset:
    config = SimulationConfig(**simulation)
    summary = simulate_dataset(folder, n_training + 1 + n_test, config, seed=seed, overwrite=True)
    paths = [folder / p for p in summary["tomograms"].values()]
    truth = {s: io.read_coordinates(folder / "coordinates" / f"{s}.star") for s in ALL_SPECIES}
    return Dataset(
        paths,
        truth,
        [folder / "tilt_series" / f"{p.stem}.tlt" for p in paths],
        config.pixel_size_a,
        summary["diameters_a"],
        n_training,
    )


def _annotated(dataset: Dataset, task: Task, fraction: float, names: list[str], seed: int) -> pd.DataFrame:
    """The task's particles in ``names``, a seeded ``fraction`` of each class, class_id = class order."""
    rng = np.random.default_rng([seed, int(fraction * 1000)])
    parts = []
    for class_id, species in enumerate(task.classes, start=1):
        rows = dataset.truth[species][dataset.truth[species]["tomo_name"].isin(names)]
        keep = max(1, int(round(fraction * len(rows))))
        parts.append(rows.iloc[np.sort(rng.choice(len(rows), keep, replace=False))].assign(class_id=class_id))
    return pd.concat(parts, ignore_index=True)


def _scores(
    picks: pd.DataFrame, truth: pd.DataFrame, diameter_a: float, pixel_size_a: float, default_threshold: float | None
) -> dict:
    best = evaluation_report(picks, truth, diameter_a, pixel_size_a, grid="fine")
    row = {"best_f1": best.overall["f1"], "best_threshold": best.best_threshold}
    if default_threshold is None:
        return {
            **row,
            "f1": np.nan,
            "precision": np.nan,
            "recall": np.nan,
            "ad_px": best.overall["ad_px"],
            "median_px": best.overall["median_px"],
            "threshold": np.nan,
        }
    evaluation = evaluate_picks(picks, truth, diameter_a / pixel_size_a, pixel_size_a, threshold=default_threshold)
    at_default = evaluation.overall
    return {
        **row,
        "test_f1s": " ".join(f"{f:.3f}" for f in evaluation.per_tomogram["f1"]),
        "f1": at_default["f1"],
        "precision": at_default["precision"],
        "recall": at_default["recall"],
        "ad_px": at_default["ad_px"],
        "median_px": at_default["median_px"],
        "threshold": default_threshold,
    }


def _multi_class(recipe: tuple[str, dict]) -> bool:
    """Whether the (engine recipe, overrides) pair trains one model for several classes."""
    return LOSS_SPECS[recipe_config(recipe[0], **recipe[1]).loss].multi_class


def _model_folder(name: str, fraction: float) -> str:
    return f"{name}_{fraction:g}"


def _earlier_model(
    reuse: list[Path], seed: int, task: Task, name: str, fraction: float, dataset: Dataset
) -> Path | None:
    """The model the last of the ``reuse`` runs trained for this seed, task, recipe and label
    fraction, or None.

    Raises
    ------
    ValueError
        That run simulated another number of tomograms than ``dataset`` holds: it split them
        differently (``--training-tomograms``), so its model may have trained on tomograms this
        run holds out.
    """
    found = [f / "scratch" / f"seed_{seed}" for f in reuse]
    found = [f for f in found if (f / task.name / _model_folder(name, fraction) / TRAIN.model).is_file()]
    if not found:
        return None
    simulation = found[-1] / "data" / "simulation.json"
    simulated = len(json.loads(simulation.read_text())["tomograms"])
    if simulated != len(dataset.paths):
        raise ValueError(
            f"{simulation}: that run simulated {simulated} tomograms, this one {len(dataset.paths)} "
            f"({dataset.n_training} training); its models were trained on another split: give the same "
            "--training-tomograms (and --quick or not) as that run."
        )
    return found[-1] / task.name / _model_folder(name, fraction) / TRAIN.model


def _training_rows(dataset: Dataset, task: Task, fraction: float, seed: int) -> pd.DataFrame:
    """The annotated particles of the training tomograms."""
    return _annotated(dataset, task, fraction, [p.stem for p in dataset.training_paths], seed)


def _validation_rows(dataset: Dataset, task: Task, fraction: float, seed: int) -> pd.DataFrame:
    """The annotated particles of the validation tomogram."""
    return _annotated(dataset, task, fraction, [dataset.validation_path.stem], seed)


def _train_on_split(dataset: Dataset, task: Task, fraction: float, seed: int, config, folder: Path) -> Path:
    """Train ``config`` on the training tomograms, validated and calibrated on the validation
    one, each with its annotated ``fraction``; the checkpoint written in ``folder``."""
    return train(
        dataset.training_paths,
        _training_rows(dataset, task, fraction, seed),
        config,
        folder,
        [dataset.validation_path],
        _validation_rows(dataset, task, fraction, seed),
        overwrite=True,
    ).checkpoint


def _trained_model(
    name: str, recipes: dict, task: Task, fraction: float, dataset: Dataset, seed: int, work: Path
) -> Path:
    recipe, overrides = recipes[name]
    diameter = float(np.mean([dataset.diameters_a[s] for s in task.classes]))
    first = dataset.training_paths[0].stem
    expected = float(np.mean([len(dataset.truth[s][dataset.truth[s]["tomo_name"] == first]) for s in task.classes]))
    config = recipe_config(
        recipe, diameter_a=diameter, classes=list(task.classes), expected_particles=expected, seed=seed, **overrides
    )
    return _train_on_split(dataset, task, fraction, seed, config, work / _model_folder(name, fraction))


def _recipe_rows(
    name: str,
    recipes: dict,
    task: Task,
    fraction: float,
    dataset: Dataset,
    seed: int,
    work: Path,
    reuse: list[Path],
    recalibrate: bool = False,
    with_templates: bool = True,
) -> list[dict]:
    started = time.time()
    checkpoint = _earlier_model(reuse, seed, task, name, fraction, dataset)
    trained = checkpoint is None
    if trained:
        checkpoint = _trained_model(name, recipes, task, fraction, dataset, seed, work)
    model, model_config = load_model(checkpoint)
    if model_config.classes != list(task.classes) or model_config.recipe != recipes[name][0]:
        raise ValueError(
            f"{checkpoint} is a {model_config.recipe} model of {model_config.classes}; "
            f"expected {recipes[name][0]} of {list(task.classes)} for {name} on task {task.name}."
        )
    templates = load_templates(checkpoint)
    recalibrated = recalibrate and not trained
    if recalibrated:
        # the recipe's template setting as it is now, not as it was when the model trained
        recipe, overrides = recipes[name]
        model_config.particle_template = recipe_config(recipe, **overrides).particle_template
        validation = prepare_tomogram(
            dataset.validation_path, _validation_rows(dataset, task, fraction, seed), model_config
        )
        training = _training_rows(dataset, task, fraction, seed)
        training_labels = labelled_per_class(training["class_id"], len(task.classes))
        training_tomograms = [
            prepare_tomogram(path, training[training["tomo_name"] == path.stem], model_config)
            for path in dataset.training_paths
        ]
        templates = (
            particle_templates(model, model_config, training_tomograms, training_labels) if with_templates else {}
        )
        model_config.thresholds = calibrate_thresholds(
            model,
            model_config,
            [validation],
            training_labels=training_labels,
            training_tomograms=training_tomograms,
            templates=templates,
        )
    centring = load_centring(checkpoint)
    on_score_map = [
        template_rescored(
            picks_from_scores(predict_scores(model, model_config, path), model_config, path.stem, threshold=PICK_FLOOR),
            path,
            model_config,
            templates,
        )
        for path in dataset.test_paths
    ]
    picks = pd.concat(
        [
            centre_picks(p, path, model_config, centring, templates=templates)
            for p, path in zip(on_score_map, dataset.test_paths)
        ],
        ignore_index=True,
    )
    on_score_map = pd.concat(on_score_map, ignore_index=True)
    seconds = time.time() - started
    rows = []
    for class_id, species in enumerate(task.classes, start=1):
        truth = dataset.truth[species][dataset.truth[species]["tomo_name"].isin([p.stem for p in dataset.test_paths])]
        threshold = model_config.class_threshold(class_id - 1)
        diameter_px = dataset.diameters_a[species] / dataset.pixel_size_a
        scores = _scores(
            picks[picks["class_id"] == class_id], truth, dataset.diameters_a[species], dataset.pixel_size_a, threshold
        )
        of_class = on_score_map[on_score_map["class_id"] == class_id]
        before_centring = evaluate_picks(
            of_class, truth, diameter_px, dataset.pixel_size_a, threshold=threshold
        ).overall
        rows.append(
            {
                "picker": name,
                "species": species,
                "labels": fraction,
                "seconds": seconds,
                "trained": trained,
                "recalibrated": recalibrated,
                "centring": centring is not None,
                **scores,
                "ad_score_map_px": before_centring["ad_px"],
            }
        )
    return rows


def _provenance(row: dict) -> str:
    if row["trained"]:
        return ""
    return " (model reused, recalibrated)" if row["recalibrated"] else " (model reused)"


def _ncc_row(species: str, dataset: Dataset) -> dict:
    started = time.time()
    diameter = dataset.diameters_a[species]
    tables = []
    for path in dataset.test_paths:
        volume, _ = io.read_mrc(path)
        # protein is dark in the tomogram: match the negated template
        scores = template_matching_scores(volume, -species_density(species, dataset.pixel_size_a))
        peaks = find_peaks(
            scores, "local-max", radius_px=diameter / 2 / dataset.pixel_size_a, threshold=-1.0, refine="none"
        )
        tables.append(io.coordinate_table(peaks[:, :3], path.stem, peaks[:, 3]))
    truth = dataset.truth[species][dataset.truth[species]["tomo_name"].isin([p.stem for p in dataset.test_paths])]
    scores = _scores(pd.concat(tables, ignore_index=True), truth, diameter, dataset.pixel_size_a, None)
    return {
        "picker": "NCC template matching",
        "species": species,
        "labels": np.nan,
        "seconds": time.time() - started,
        **scores,
    }


def _pytme_row(species: str, dataset: Dataset, pytme: str, angular_sampling: float, work: Path) -> dict:
    started = time.time()
    work.mkdir(parents=True, exist_ok=True)
    template = io.write_mrc(
        work / f"{species}.mrc", species_density(species, dataset.pixel_size_a), dataset.pixel_size_a, overwrite=True
    )
    diameter = dataset.diameters_a[species]
    tables = []
    for path, angles in zip(dataset.test_paths, dataset.test_tilt_angle_files):
        result = work / f"{path.stem}_{species}.pickle"
        prefix = work / f"{path.stem}_{species}"
        commands = [
            [
                pytme,
                "match",
                "-m",
                str(path),
                "-i",
                str(template),
                "--invert-target-contrast",
                "-a",
                str(angular_sampling),
                "-n",
                "2",
                "--tilt-angles",
                str(angles),
                "--wedge-axes",
                "2,1",
                "--defocus",
                str(SimulationConfig().defocus_um * 1e4),
                "-o",
                str(result),
            ],
            [
                pytme,
                "postprocess",
                "--input-file",
                str(result),
                "--output-prefix",
                str(prefix),
                "--output-format",
                "orientations",
                "--min-distance",
                str(int(diameter / dataset.pixel_size_a)),
                "--num-peaks",
                "1000",
                "--no-stats",
            ],
        ]
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"pyTME failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        found = pd.read_csv(f"{prefix}.tsv", sep="\t")
        tables.append(io.coordinate_table(found[["x", "y", "z"]].to_numpy(float), path.stem, found["score"]))
    truth = dataset.truth[species][dataset.truth[species]["tomo_name"].isin([p.stem for p in dataset.test_paths])]
    scores = _scores(pd.concat(tables, ignore_index=True), truth, diameter, dataset.pixel_size_a, None)
    return {
        "picker": f"pyTME ({angular_sampling:g}°)",
        "species": species,
        "labels": np.nan,
        "seconds": time.time() - started,
        **scores,
    }


def _seeds_note(row, seeds: int) -> str:
    """Marks a mean over fewer seeds than the table's others."""
    return f" ({row.seeds} of {seeds} seeds)" if row.seeds < seeds else ""


def _cell(row, seeds: int) -> str:
    default = "—" if np.isnan(row.f1) else f"{row.f1:.2f}"
    return f"{default} / {row.best_f1:.2f} / {row.ad_px:.1f}{_seeds_note(row, seeds)}"


def _shown_pickers(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each multi-class model's picker named apart from the one-class models'."""
    multi_class = table["task"] != table["species"]
    return table.assign(
        picker=table["picker"].where(~multi_class, table["picker"] + ", one " + table["task"] + " model")
    )


def _markdown(table: pd.DataFrame) -> str:
    full = table[table["labels"].isna() | (table["labels"] == 1.0)]
    seeds = int(table["seeds"].max())
    # one column order for both tables: a combined run's rows come in the order of its folders
    order = list(dict.fromkeys(table["species"]))
    species = [s for s in order if s in set(full["species"])]
    lines = []
    if len(full):
        lines += [
            "F1 at the default threshold / best F1 / AD (px), held-out tomogram(s), mean over seeds.",
            "",
            "| picker | " + " | ".join(species) + " |",
            "|---|" + "---|" * len(species),
        ]
    for picker, rows in full.groupby("picker", sort=False):
        cells = {row.species: _cell(row, seeds) for row in rows.itertuples()}
        lines.append(f"| {picker} | " + " | ".join(cells.get(s, "") for s in species) + " |")
    few = table[table["labels"] < 1.0]
    if len(few):
        few_species = [s for s in order if s in set(few["species"])]
        lines += [
            "",
            "With 10 % of the labels (training and validation): F1 at the default threshold / best F1 "
            "(full labels in brackets).",
            "",
            "| picker | " + " | ".join(few_species) + " |",
            "|---|" + "---|" * len(few_species),
        ]
        for picker, rows in few.groupby("picker", sort=False):
            cells = {}
            for row in rows.itertuples():
                ref = full[(full["picker"] == picker) & (full["species"] == row.species)]
                reference = f" ({ref['f1'].iloc[0]:.2f})" if len(ref) else ""
                cells[row.species] = f"{row.f1:.2f} / {row.best_f1:.2f}{reference}{_seeds_note(row, seeds)}"
            lines.append(f"| {picker} | " + " | ".join(cells.get(s, "") for s in few_species) + " |")
    return "\n".join(lines)


def _bar_chart(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    value = table["f1"].where(table["f1"].notna(), table["best_f1"])
    partial = table["labels"].notna() & (table["labels"] < 1.0)
    bar = table["picker"].where(~partial, table["picker"] + ", " + table["labels"].map("{:.0%} labels".format))
    pivot = table.assign(value=value, bar=bar).pivot_table(index="species", columns="bar", values="value", sort=False)
    axis = pivot.plot.bar(figsize=(11, 4.5), rot=0)
    axis.set(
        ylabel="F1 (default threshold; template matching: best)", ylim=(0, 1), title="Held-out WBP tomograms, 10 Å/px"
    )
    axis.legend(ncol=3, fontsize=8, loc="upper right")
    plt.tight_layout()
    plt.savefig(path, dpi=100)
    plt.close()


def _every_measure(raw: pd.DataFrame) -> pd.DataFrame:
    """The per-seed rows with a column for each measure; one that older runs did not record is empty for their rows."""
    return raw.reindex(columns=list(dict.fromkeys([*raw.columns, *MEASURES])))


def _write_per_seed(raw: pd.DataFrame, out: Path) -> None:
    """The per-seed rows in ``out``."""
    _every_measure(raw).to_csv(out / PER_SEED, index=False)


def _write_tables(raw: pd.DataFrame, out: Path, header: str) -> None:
    """The mean of the per-seed rows over seeds (CSV, Markdown) and the bar chart, in ``out``."""
    raw = _every_measure(raw)
    keys = ["task", "species", "picker", "labels"]
    table = raw.groupby(keys, sort=False, dropna=False)[MEASURES].mean().reset_index()
    table = table.assign(seeds=raw.groupby(keys, sort=False, dropna=False)["seed"].nunique().to_numpy())
    table.to_csv(out / "accuracy.csv", index=False)
    markdown = _markdown(_shown_pickers(table))
    (out / "accuracy.md").write_text(f"{header}\n\n{markdown}\n")
    _bar_chart(_shown_pickers(table), out / "accuracy.png")
    print(f"\n{markdown}\n\nWrote {out / 'accuracy.md'}, {out / 'accuracy.csv'} and {out / 'accuracy.png'}")


def combine(folders: list[Path], out: Path) -> None:
    """The per-seed rows of earlier runs as one table; a row of a later folder replaces the
    same seed, task, species, picker and label fraction of an earlier one."""
    missing = [str(f) for f in folders if not (f / PER_SEED).is_file()]
    if missing:
        raise FileNotFoundError(f"no {PER_SEED} in {', '.join(missing)}: run accuracy.py with --out there")
    raw = pd.concat([pd.read_csv(f / PER_SEED) for f in folders], ignore_index=True)
    raw = raw.drop_duplicates(["seed", "task", "species", "picker", "labels"], keep="last")
    out.mkdir(parents=True, exist_ok=True)
    _write_per_seed(raw, out)
    _write_tables(
        raw, out, f"Seeds {sorted(raw['seed'].unique().tolist())}, combined from {', '.join(map(str, folders))}."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small set, one recipe (smoke test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="simulation seeds (default 1 2 3)")
    parser.add_argument("--tasks", nargs="*", help="task names to run (default all)")
    parser.add_argument(
        "--recipes",
        nargs="*",
        help=f"recipe names to run, of {list(RECIPES)} (default: {' '.join(DEFAULT_RECIPES)}; "
        "none after the option: template matching only)",
    )
    parser.add_argument(
        "--pytme",
        default=str(ROOT / ".venv-bench" / "bin" / "pytme"),
        help="the pytme program (`make install-bench` puts it here); skipped if absent",
    )
    parser.add_argument("--pytme-sampling", type=float, default=20.0, help="pyTME angular sampling, degrees")
    parser.add_argument("--no-template-matching", action="store_true", help="leave NCC and pyTME out")
    parser.add_argument(
        "--label-fractions",
        type=float,
        nargs="+",
        help="run only these label fractions of each task (default: the task's, 1.0 and 0.1)",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="FOLDER",
        help="train nothing: write the mean tables of these earlier runs' per-seed rows in --out "
        "(a later folder's row replaces an earlier one's for the same seed, task, picker and labels)",
    )
    parser.add_argument(
        "--reuse-models",
        nargs="+",
        metavar="FOLDER",
        default=[],
        help="evaluate the models these earlier runs (their --out) trained for the same seed, task, recipe "
        "and label fraction instead of training again (a later folder's model replaces an earlier one's)",
    )
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="make the reused models' particle templates and calibrate their score thresholds again, "
        "by the engine's current rules",
    )
    parser.add_argument(
        "--no-particle-templates",
        action="store_true",
        help="with --recalibrate: calibrate and pick without particle templates "
        "(what they bring, on the same networks)",
    )
    parser.add_argument(
        "--training-tomograms",
        type=int,
        default=N_TRAINING,
        help=f"tomograms that train per seed (default {N_TRAINING}); the next one validates, then the held-out ones",
    )
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)
    if args.training_tomograms < 1:
        parser.error(f"--training-tomograms must be at least 1, got {args.training_tomograms}.")
    if args.recalibrate and not args.reuse_models:
        parser.error("--recalibrate applies to the models of --reuse-models: give them.")
    if args.no_particle_templates and not args.recalibrate:
        parser.error("--no-particle-templates applies with --recalibrate: give it.")
    if args.combine:
        combine([Path(f) for f in args.combine], Path(args.out))
        return 0
    out = Path(args.out)
    reuse = [Path(f) for f in args.reuse_models]
    if any(f.resolve() == out.resolve() for f in reuse):
        parser.error(f"--reuse-models {out} is the --out folder, whose scratch this run replaces: give another --out.")
    logging.basicConfig(level=logging.WARNING)
    simulation = QUICK_SIMULATION if args.quick else SIMULATION
    tasks = QUICK_TASKS if args.quick else [t for t in TASKS if not args.tasks or t.name in args.tasks]
    recipes = (
        QUICK_RECIPES
        if args.quick
        else {k: v for k, v in RECIPES.items() if k in (DEFAULT_RECIPES if args.recipes is None else args.recipes)}
    )
    seeds = args.seeds[:1] if args.quick else args.seeds
    use_pytme = not args.quick and not args.no_template_matching and Path(args.pytme).exists()
    if not args.quick and not use_pytme and not args.no_template_matching:
        print(f"pyTME not found at {args.pytme}: `make install-bench` installs it; running without it.")
    n_test = QUICK_N_TEST if args.quick else N_TEST
    out.mkdir(parents=True, exist_ok=True)
    rows = []

    def record(seed: int, task: Task, row: dict) -> None:
        rows.append({"seed": seed, "task": task.name, **row})
        _write_per_seed(pd.DataFrame(rows), out)

    for seed in seeds:
        work = out / "scratch" / f"seed_{seed}"
        shutil.rmtree(work, ignore_errors=True)
        started = time.time()
        dataset = _simulate(seed, work / "data", simulation, n_test, args.training_tomograms)
        print(
            f"seed {seed}: simulated {len(dataset.paths)} tomograms ({args.training_tomograms} train, "
            f"{n_test} held out) in "
            f"{time.time() - started:.0f} s",
            flush=True,
        )
        for task in tasks:
            for fraction in [f for f in task.label_fractions if not args.label_fractions or f in args.label_fractions]:
                for name in recipes:
                    if len(task.classes) > 1 and not _multi_class(recipes[name]):
                        print(f"seed {seed} {task.name}: {name} skipped, its loss takes one class", flush=True)
                        continue
                    for row in _recipe_rows(
                        name,
                        recipes,
                        task,
                        fraction,
                        dataset,
                        seed,
                        work / task.name,
                        reuse,
                        args.recalibrate,
                        not args.no_particle_templates,
                    ):
                        record(seed, task, row)
                        print(
                            f"seed {seed} {task.name:<10} {row['species']:<5} labels {fraction:>4.0%} "
                            f"{name:<14} F1 {row['f1']:.3f} (best {row['best_f1']:.3f} at "
                            f"{row['best_threshold']:.3f}, default {row['threshold']:.3f}) AD "
                            f"{row['ad_px']:.2f} px (median {row['median_px']:.2f}; "
                            f"{'centring network' if row['centring'] else 'score map'}; "
                            f"score map alone {row['ad_score_map_px']:.2f} px)"
                            f" F1 per test tomogram {row['test_f1s']}"
                            f"  {row['seconds']:.0f} s{_provenance(row)}",
                            flush=True,
                        )
            if args.no_template_matching:
                continue
            for species in task.classes if len(task.classes) == 1 else ():
                matchers = [lambda s=species, d=dataset: _ncc_row(s, d)]
                if use_pytme:
                    matchers.append(
                        lambda s=species, d=dataset, w=work: _pytme_row(
                            s, d, args.pytme, args.pytme_sampling, w / "pytme"
                        )
                    )
                for matcher in matchers:
                    row = matcher()
                    record(seed, task, row)
                    print(
                        f"seed {seed} {task.name:<10} {species:<5} {row['picker']:<22} best F1 "
                        f"{row['best_f1']:.3f} AD {row['ad_px']:.2f} px (median {row['median_px']:.2f})  "
                        f"{row['seconds']:.0f} s",
                        flush=True,
                    )
    header = (
        f"Seeds {seeds}; simulation {simulation}; {args.training_tomograms} training and "
        f"{n_test} held-out tomogram(s) per seed."
    )
    _write_tables(pd.DataFrame(rows), out, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
