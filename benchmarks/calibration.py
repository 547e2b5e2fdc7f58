"""Score-threshold calibration rules compared on the models ``accuracy.py`` trained.

    .venv/bin/python benchmarks/calibration.py benchmarks/results/centring_pu benchmarks/results/temperature
    .venv/bin/python benchmarks/calibration.py --combine benchmarks/results/calibration benchmarks/results/calibration_b

Every ``scratch/seed_<n>/<species>/<picker>_<labels>/model.pt`` under the given ``accuracy.py``
result folders (single-class tasks) picks its validation tomogram (the one after the
``--training-tomograms``, as ``accuracy.py`` split them: ``tomo_002`` by default) and its
held-out test tomograms (the ones after it) down to a score of 0.02, refined on the score map
(and rescored by the model's particle templates, where it has them). Each
rule places a threshold from the validation picks and their (for partial labels: partial)
annotation; the table gives the test F1 at that threshold and its gap to the best test F1
over every threshold. The rules:

- ``fine``: the F1-best of 50 even thresholds between the lowest and highest score (the
  engine's rule for complete annotations);
- ``every-score``: the F1-best threshold over every pick's score;
- ``count``: keep as many picks as the expected particles (TomoPicker's rule);
- ``labelled-recall``: with partial annotations, F1 estimated from the recall of the
  annotated particles r(t) and the expected count N as 2 r N / (picks + N);
- ``score-sum``: no annotation at all, the scores read as the probability that a pick is a
  particle, so the k best picks hold their scores' sum of particles and F1 is estimated as
  2 (s_1 + … + s_k) / (k + N);
- ``count×score-sum w``: keep N^(1-w) k^w of the two counts above, N the expected count and
  k the score-sum one, for w = 1/2 (the plain geometric mean: the engine's rule for partial
  annotations of positive-unlabelled models that learned from at least
  ``annotation.ENOUGH_PARTIAL_LABELS`` labelled particles), 3/4 (its rule for fewer,
  ``calibrate.partial_annotation_keep``) and 0.9;
- ``fine+training``: ``fine`` on the validation and the training tomograms together
  (complete annotations only);
- ``pooled count×score-sum w``: ``count×score-sum w`` over the picks of the validation and
  the training tomograms together, N the expected particles of all of them (partial
  annotations; w = 0 keeps N picks);
- ``count-window ×w``: the pick count whose F1, averaged over the counts within a factor w
  of it, is highest (complete annotations; with partial ones its F1 is against the few
  annotated particles).

Writes ``calibration.csv`` and ``calibration.md`` in ``--out``. ``--combine`` writes them
from the ``calibration.csv`` of earlier runs instead, one table over all their models (whose
``scratch/`` need not exist any more); a row of a later folder replaces the same model and
rule of an earlier one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import ALL_SPECIES, N_TRAINING, Dataset, Task, _training_rows, _validation_rows  # noqa: E402

from tomocpt_scipion.engine import io  # noqa: E402
from tomocpt_scipion.engine.calibrate import (  # noqa: E402
    ENOUGH_LABELS_SCORE_SUM_WEIGHT,
    SCORE_SUM_WEIGHT,
    partial_annotation_keep,
    score_sum_count,
)
from tomocpt_scipion.engine.checkpoint import load_model, load_templates  # noqa: E402
from tomocpt_scipion.engine.infer import predict_scores  # noqa: E402
from tomocpt_scipion.engine.metrics import evaluate_picks, match_points, threshold_sweep  # noqa: E402
from tomocpt_scipion.engine.predict import picks_from_scores, template_rescored  # noqa: E402

RESULTS = Path(__file__).with_name("results")
_FLOOR = 0.02
COUNT_WINDOWS = (1.25, 1.5)
SCORE_SUM_WEIGHTS = (ENOUGH_LABELS_SCORE_SUM_WEIGHT, SCORE_SUM_WEIGHT, 0.9)
_MAX_PICKS_PER_PARTICLE = 8
_RUN = re.compile(r"(?P<picker>.+)_(?P<labels>[0-9.]+)$")


def _picks(model, config, templates, tomograms: list[Path]) -> pd.DataFrame:
    """The picks of ``tomograms`` down to the floor, refined on the score map, then rescored and
    moved by the model's particle templates where it has any."""
    return pd.concat(
        [
            template_rescored(
                picks_from_scores(predict_scores(model, config, p), config, p.stem, threshold=_FLOOR),
                p,
                config,
                templates,
            )
            for p in tomograms
        ],
        ignore_index=True,
    )


def _f1_at(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float, threshold: float) -> float:
    return evaluate_picks(picks, truth, diameter_px, threshold=threshold).overall["f1"]


def _every_score(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float, particles: int) -> pd.DataFrame:
    """Recall and F1 with every pick's score as the threshold (best first), each matched anew
    within its tomogram, down to :data:`_MAX_PICKS_PER_PARTICLE` picks per one of the
    ``particles`` the tomograms hold (below, F1 stays under 2 / 9: no rule's best lies there)."""
    ordered = picks.sort_values("score", ascending=False, kind="stable").head(_MAX_PICKS_PER_PARTICLE * particles)
    kept = np.arange(1, len(ordered) + 1)
    tp = np.zeros(len(ordered), dtype=int)
    for name, true_rows in truth.groupby("tomo_name"):
        in_tomogram = (ordered["tomo_name"] == name).to_numpy()
        xyz = ordered.loc[in_tomogram, ["x", "y", "z"]].to_numpy(float)
        true_xyz = true_rows[["x", "y", "z"]].to_numpy(float)
        hits = np.array([len(match_points(xyz[:k], true_xyz, diameter_px / 2)[0]) for k in range(len(xyz) + 1)])
        tp += hits[np.cumsum(in_tomogram)]
    return pd.DataFrame(
        {
            "threshold": ordered["score"].to_numpy(float),
            "f1": 2 * tp / (kept + len(truth)),
            "recall": tp / max(len(truth), 1),
            "kept": kept,
        }
    )


def _count_window_best(every: pd.DataFrame, width: float) -> int:
    """Row of ``every`` whose F1, averaged over the pick counts within a factor ``width`` of
    its own, is highest."""
    kept, f1 = every["kept"].to_numpy(), every["f1"].to_numpy()
    low = np.searchsorted(kept, kept / width, side="left")
    high = np.searchsorted(kept, kept * width, side="right")
    total = np.concatenate([[0.0], np.cumsum(f1)])
    return int(np.argmax((total[high] - total[low]) / (high - low)))


def _fine_best(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float) -> float:
    fine = threshold_sweep(picks, truth, diameter_px, grid="fine")
    return float(fine.loc[fine["f1"].idxmax(), "threshold"])


def _rules(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    diameter_px: float,
    expected: int,
    training: tuple[pd.DataFrame, pd.DataFrame, int],
    complete: bool,
) -> dict:
    """Each rule's threshold from the validation ``picks`` and ``truth`` and from ``training``,
    the training tomograms' picks, annotation and number; ``complete``: whether the
    annotations are complete (otherwise partial)."""
    scores = np.sort(picks["score"].to_numpy(float))[::-1]
    every = _every_score(picks, truth, diameter_px, max(len(truth), expected))
    rules = {
        "fine": _fine_best(picks, truth, diameter_px),
        "every-score": float(every.loc[every["f1"].idxmax(), "threshold"]),
        "count": float(scores[min(expected, len(scores)) - 1]),
    }
    training_picks, training_truth, training_tomograms = training
    if complete:
        rules["fine+training"] = _fine_best(
            pd.concat([picks, training_picks], ignore_index=True),
            pd.concat([truth, training_truth], ignore_index=True),
            diameter_px,
        )
    else:
        estimate = 2 * every["recall"] * expected / (every["kept"] + expected)
        rules["labelled-recall"] = float(every.loc[estimate.idxmax(), "threshold"])
        pooled = np.sort(np.concatenate([scores, training_picks["score"].to_numpy(float)]))[::-1]
        pooled_expected = expected * (1 + training_tomograms)
        for weight in (0.0, *SCORE_SUM_WEIGHTS[:2]):
            kept = partial_annotation_keep(pooled, pooled_expected, weight)
            rules[f"pooled count×score-sum {weight:g}"] = float(pooled[kept - 1])
    for width in COUNT_WINDOWS:
        rules[f"count-window ×{width:g}"] = float(every["threshold"].iloc[_count_window_best(every, width)])
    rules["score-sum"] = float(scores[score_sum_count(scores, expected) - 1])
    for weight in SCORE_SUM_WEIGHTS:
        rules[f"count×score-sum {weight:g}"] = float(scores[partial_annotation_keep(scores, expected, weight) - 1])
    return rules


def _markdown(pivot: pd.DataFrame) -> str:
    """The gaps per model, then their mean and largest per rule."""
    rules = list(pivot.columns)
    lines = ["| run | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
    for key, gaps in pivot.iterrows():
        folder, seed, species, picker, labels = key
        cells = " | ".join("—" if np.isnan(g) else f"{g:.3f}" for g in gaps)
        lines.append(f"| {folder} seed {seed} {species} {picker} {labels:.0%} labels | {cells} |")
    for name, values in (("mean", pivot.mean()), ("largest", pivot.max())):
        lines.append(f"| **{name}** | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def _runs(folders: list[Path]):
    for folder in folders:
        for model in sorted(folder.glob("scratch/seed_*/*/*/model.pt")):
            run, species, seed = model.parent, model.parent.parent.name, int(model.parents[2].name.split("_")[1])
            match = _RUN.match(run.name)
            if species in ALL_SPECIES and match:
                yield folder, seed, species, match["picker"], float(match["labels"]), model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="accuracy.py result folders (with their scratch/)")
    parser.add_argument(
        "--combine", nargs="+", metavar="FOLDER", help="earlier --out folders: one table from their calibration.csv"
    )
    parser.add_argument("--labels", type=float, nargs="+", help="only the models trained on these label fractions")
    parser.add_argument(
        "--training-tomograms",
        type=int,
        default=N_TRAINING,
        help=f"the training tomograms per seed the runs were given (accuracy.py's option, default {N_TRAINING})",
    )
    parser.add_argument("--out", default=str(RESULTS / "calibration"), help="results folder")
    args = parser.parse_args(argv)
    if bool(args.folders) == bool(args.combine):
        parser.error("give accuracy.py result folders or --combine with earlier calibration folders, not both")
    if args.combine:
        if Path(args.out).resolve() in {Path(f).resolve() for f in args.combine}:
            parser.error(
                f"--out {args.out} is one of the --combine folders, whose table it would replace: give another."
            )
        return _write_tables(_combined([Path(f) for f in args.combine], args.labels), Path(args.out))
    rows = []
    for folder, seed, species, picker, labels, model_path in _runs([Path(f) for f in args.folders]):
        if args.labels and labels not in args.labels:
            continue
        data = folder / "scratch" / f"seed_{seed}" / "data"
        paths = sorted((data / "tomograms").glob("*.mrc"))
        truth = {s: io.read_coordinates(data / "coordinates" / f"{s}.star") for s in ALL_SPECIES}
        summary = json.loads((data / "simulation.json").read_text())
        if len(paths) < args.training_tomograms + 2:
            parser.error(
                f"{data}: {len(paths)} tomograms, too few for {args.training_tomograms} training ones, a "
                "validation one and a held-out one: give the run's --training-tomograms."
            )
        dataset = Dataset(
            paths, truth, [], float(summary["config"]["pixel_size_a"]), summary["diameters_a"], args.training_tomograms
        )
        model, config = load_model(model_path)
        templates = load_templates(model_path)
        diameter_px = dataset.diameters_a[species] / dataset.pixel_size_a
        task = Task(species, (species,))
        test_truth = truth[species][truth[species]["tomo_name"].isin([p.stem for p in dataset.test_paths])]
        test_picks = _picks(model, config, templates, dataset.test_paths)
        training = (
            _picks(model, config, templates, dataset.training_paths),
            _training_rows(dataset, task, labels, seed),
            len(dataset.training_paths),
        )
        expected = int(round(config.expected_particles or len(test_truth) / len(dataset.test_paths)))
        best = float(_every_score(test_picks, test_truth, diameter_px, len(test_truth))["f1"].max())
        val_picks = _picks(model, config, templates, [dataset.validation_path])
        rules = _rules(
            val_picks, _validation_rows(dataset, task, labels, seed), diameter_px, expected, training, labels >= 1
        )
        for rule, threshold in rules.items():
            f1 = _f1_at(test_picks, test_truth, diameter_px, threshold)
            rows.append(
                dict(
                    folder=folder.name,
                    seed=seed,
                    species=species,
                    picker=picker,
                    labels=labels,
                    rule=rule,
                    threshold=threshold,
                    f1=f1,
                    best_f1=best,
                    gap=best - f1,
                )
            )
            print(
                f"{folder.name:<20} seed {seed} {species} {picker:<14} labels {labels:>4.0%} {rule:<16} "
                f"threshold {threshold:.4f} F1 {f1:.3f} (best {best:.3f}, gap {best - f1:.3f})",
                flush=True,
            )
    return _write_tables(pd.DataFrame(rows), Path(args.out))


def _combined(folders: list[Path], labels: list[float] | None) -> pd.DataFrame:
    """The rows of earlier runs' ``calibration.csv`` (those of ``labels`` only, when given)."""
    missing = [str(f) for f in folders if not (f / "calibration.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"no calibration.csv in {', '.join(missing)}: run calibration.py with --out there")
    table = pd.concat([pd.read_csv(f / "calibration.csv") for f in folders], ignore_index=True)
    table = table.drop_duplicates(["folder", "seed", "species", "picker", "labels", "rule"], keep="last")
    return table[table["labels"].isin(labels)] if labels else table


def _write_tables(table: pd.DataFrame, out: Path) -> int:
    """Write ``calibration.csv`` and the gap table ``calibration.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "calibration.csv", index=False)
    pivot = table.pivot_table(
        index=["folder", "seed", "species", "picker", "labels"], columns="rule", values="gap", sort=False
    )
    markdown = _markdown(pivot)
    (out / "calibration.md").write_text(
        f"Gap of the test F1 at each rule's threshold to the best test F1 (lower is better).\n\n{markdown}\n"
    )
    print(f"\n{markdown}\n\nWrote {out / 'calibration.md'} and {out / 'calibration.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
