"""Which training and picking choices pay: one recipe, one species, variants side by side.

    .venv/bin/python benchmarks/ablation.py                          # every variant (about an hour on 2 cores)
    .venv/bin/python benchmarks/ablation.py --variants baseline tta   # some of them
    .venv/bin/python benchmarks/ablation.py --quick                   # smoke test: a small set, 2 epochs

The data are those of ``accuracy.py`` for the seed (same simulation, same split: tomograms 0
and 1 train, 2 validates and calibrates, 3 is held out). Every variant trains the
DeepETPicker recipe (small network, CPU-sized) with its overrides and picks the held-out
tomogram with the engine's defaults; an ensemble variant trains its members with seeds
``seed, seed + 1, …`` and averages their score maps (the threshold: the members' mean).
Reported: F1 at the calibrated threshold, best F1 and AD (px) at the calibrated threshold.

Writes ``ablation.csv`` and ``ablation.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import (  # noqa: E402
    QUICK_SIMULATION,
    SIMULATION,
    Task,
    _scores,
    _simulate,
    _train_on_split,
)

from tomocpt_scipion.engine.checkpoint import load_model  # noqa: E402
from tomocpt_scipion.engine.config import recipe_config  # noqa: E402
from tomocpt_scipion.engine.infer import ScoreMap, predict_scores  # noqa: E402
from tomocpt_scipion.engine.predict import picks_from_scores  # noqa: E402

RESULTS = Path(__file__).with_name("results")
BASE = dict(model_size="small", patch_size=32, batch_size=4)
#: name -> (training overrides, flip TTA at picking, ensemble members)
VARIANTS = {
    "baseline": (dict(epochs=30), False, 1),
    "tta": (dict(epochs=30), True, 1),
    "epochs100+tta": (dict(epochs=100, patience=100), True, 1),
    "target20px+tta": (dict(epochs=30, target_diameter_px=20), True, 1),
    "epochs100+tta+ensemble2": (dict(epochs=100, patience=100), True, 2),
    "epochs100+tta+ensemble3": (dict(epochs=100, patience=100), True, 3),
}
#: ``--quick``: these variants (one network between them), trained this briefly, no centring network
QUICK_VARIANTS = ("baseline", "tta")
QUICK_OVERRIDES = dict(epochs=2, centring_steps=0)


def _member(dataset, task, overrides: dict, seed: int, work: Path):
    diameter = dataset.diameters_a[task.classes[0]]
    config = recipe_config(
        "deepetpicker", diameter_a=diameter, classes=list(task.classes), seed=seed, **{**BASE, **overrides}
    )
    return load_model(_train_on_split(dataset, task, 1.0, seed, config, work))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), help="variants to run (default all)")
    parser.add_argument("--species", default="4v94", help="species to pick (default 4v94)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="a small set, two variants, 2 epochs (smoke test)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    work = out / "scratch" / f"ablation_{args.seed}"
    dataset = _simulate(args.seed, work / "data", QUICK_SIMULATION if args.quick else SIMULATION, n_test=1)
    task = Task(args.species, (args.species,))
    test = dataset.test_paths[0]
    truth = dataset.truth[args.species][dataset.truth[args.species]["tomo_name"] == test.stem]
    members: dict[tuple, tuple] = {}  # (overrides, seed) -> model, reused by the ensembles
    rows = []
    for name in args.variants or (QUICK_VARIANTS if args.quick else list(VARIANTS)):
        overrides, tta, n_members = VARIANTS[name]
        if args.quick:
            overrides = {**overrides, **QUICK_OVERRIDES}
        started = time.time()
        maps, configs = [], []
        for k in range(n_members):
            key = (tuple(sorted(overrides.items())), args.seed + k)
            if key not in members:
                members[key] = _member(dataset, task, overrides, args.seed + k, work / f"{name}_{k}")
            model, config = members[key]
            maps.append(predict_scores(model, config, test, tta=tta))
            configs.append(config)
        score_map = ScoreMap(
            np.mean([m.scores for m in maps], axis=0), maps[0].zoom, maps[0].original_shape, maps[0].pixel_size_a
        )
        threshold = float(np.mean([c.class_threshold(0) for c in configs]))
        picks = picks_from_scores(score_map, configs[0], test.stem, threshold=0.02)
        row = {
            "variant": name,
            **_scores(picks, truth, dataset.diameters_a[args.species], dataset.pixel_size_a, threshold),
            "seconds": time.time() - started,
        }
        rows.append(row)
        print(f"{name:<26} F1 {row['f1']:.3f}  best {row['best_f1']:.3f}  AD {row['ad_px']:.2f} px", flush=True)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation.csv", index=False)
    lines = [
        f"{args.species}, seed {args.seed}, held-out {test.stem}; DeepETPicker recipe, small network.",
        "",
        "| variant | F1 (calibrated threshold) | best F1 | AD (px) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.variant} | {r.f1:.3f} | {r.best_f1:.3f} | {r.ad_px:.2f} |" for r in table.itertuples()]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nWrote {out / 'ablation.md'} and {out / 'ablation.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
