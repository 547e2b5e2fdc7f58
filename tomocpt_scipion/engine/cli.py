"""tomocpt-engine: deep-learning particle picking in cryo-electron tomograms (tomoCPT, DeepETPicker, TomoPicker).

Each sub-command parses its arguments and calls one library function; heavy modules are
imported lazily so ``--help`` is instant. Errors in the input (bad files, bad values)
end the command with one line naming the file or value, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

logger = logging.getLogger("tomocpt_scipion.engine")


def _number(kind: type, lowest: float, inclusive: bool, upper: float | None = None):
    """argparse type: a finite ``kind`` above ``lowest`` (or equal, when ``inclusive``) and below ``upper``."""
    bound = (f">= {lowest:g}" if inclusive else f"> {lowest:g}") + (f" and < {upper:g}" if upper is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__} number") from None
        if (
            not math.isfinite(value)
            or (value < lowest if inclusive else value <= lowest)
            or (upper is not None and value >= upper)
        ):
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_POSITIVE_INT = _number(int, 1, True)
_NON_NEGATIVE_INT = _number(int, 0, True)
_POSITIVE = _number(float, 0, False)
_NON_NEGATIVE = _number(float, 0, True)
_FINITE = _number(float, -math.inf, False)
_FRACTION = _number(float, 0, True, 1)


# ----------------------------------------------------------------------------- simulate
def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    from .simulate import SIMULATION_MODES, SimulationConfig, available_species

    defaults = SimulationConfig()
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-tomograms", type=_POSITIVE_INT, default=2, help="number of tomograms (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--prefix", default="tomo", help="tomogram name prefix (default tomo)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=defaults.shape_zyx,
        help="volume size in voxels (default %(default)s)",
    )
    parser.add_argument(
        "--pixel-size", type=_POSITIVE, default=defaults.pixel_size_a, help="voxel size in Å (default %(default)s)"
    )
    parser.add_argument(
        "--target",
        default=defaults.target,
        choices=available_species(),
        help="species to pick (default %(default)s, the 80S ribosome)",
    )
    parser.add_argument(
        "--distractors",
        nargs="*",
        default=list(defaults.distractors),
        choices=available_species(),
        help="other species (default %(default)s)",
    )
    parser.add_argument(
        "--n-target",
        type=_NON_NEGATIVE_INT,
        default=defaults.n_target,
        help="target particles per tomogram (default %(default)s)",
    )
    parser.add_argument(
        "--n-distractors",
        type=_NON_NEGATIVE_INT,
        default=defaults.n_distractors,
        help="distractor particles per tomogram (default %(default)s)",
    )
    parser.add_argument(
        "--mode",
        choices=SIMULATION_MODES,
        default=defaults.mode,
        help="wbp: tilt series with CTF, dose and Poisson noise, reconstructed by weighted "
        "back-projection (realistic); fourier: one Fourier filter and Gaussian noise "
        "(fast) (default %(default)s)",
    )
    parser.add_argument(
        "--snr",
        type=_POSITIVE,
        default=defaults.snr,
        help="fourier mode: signal-to-noise variance ratio (default %(default)s)",
    )
    parser.add_argument(
        "--tilt-range",
        type=_POSITIVE,
        default=defaults.tilt_range_deg,
        help="tilt range ± degrees (default %(default)s)",
    )
    parser.add_argument(
        "--tilt-step",
        type=_POSITIVE,
        default=defaults.tilt_step_deg,
        help="wbp mode: tilt increment in degrees (default %(default)s)",
    )
    parser.add_argument(
        "--tilt-angles",
        type=_FINITE,
        nargs="+",
        help="wbp mode: explicit tilt angles in degrees (instead of range and step)",
    )
    parser.add_argument(
        "--dose",
        type=_POSITIVE,
        default=defaults.dose_e_per_a2,
        help="wbp mode: total exposure of the tilt series, e/Å² (default %(default)s)",
    )
    parser.add_argument(
        "--defocus", type=_POSITIVE, default=defaults.defocus_um, help="defocus in µm (default %(default)s)"
    )
    parser.add_argument("--no-membrane", action="store_true", help="leave out the vesicle")
    parser.add_argument(
        "--n-gold",
        type=_NON_NEGATIVE_INT,
        default=defaults.n_gold,
        help="gold beads per tomogram (default %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing simulation")


def _simulate(args: argparse.Namespace) -> None:
    from .simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        shape_zyx=tuple(args.shape),
        pixel_size_a=args.pixel_size,
        target=args.target,
        distractors=tuple(args.distractors),
        n_target=args.n_target,
        n_distractors=args.n_distractors,
        mode=args.mode,
        snr=args.snr,
        tilt_range_deg=args.tilt_range,
        tilt_step_deg=args.tilt_step,
        tilt_angles_deg=args.tilt_angles,
        dose_e_per_a2=args.dose,
        defocus_um=args.defocus,
        membrane=not args.no_membrane,
        n_gold=args.n_gold,
    )
    summary = simulate_dataset(args.out, args.n_tomograms, config, args.seed, args.prefix, overwrite=args.overwrite)
    out = Path(args.out)
    noise = (
        f"{config.dose_e_per_a2:g} e/Å² over {len(config.angles_deg)} tilts "
        f"{config.angles_deg[0]:g}..{config.angles_deg[-1]:g}°, weighted back-projection"
        if config.mode == "wbp"
        else f"SNR {config.snr}, tilt ±{config.tilt_range_deg}°"
    )
    print(
        f"Simulated {len(summary['tomograms'])} tomogram(s) of {config.shape_zyx[::-1]} voxels "
        f"(x, y, z) at {config.pixel_size_a} Å/px, {noise}:"
    )
    for name, path in summary["tomograms"].items():
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"][name].items())
        print(f"  {out / path}: {counts}")
    print(
        f"Target {config.target}: diameter {summary['diameters_a'][config.target]:.0f} Å; "
        f"ground truth in {out / 'coordinates'} (STAR per species, x y z text per tomogram)."
    )


# ----------------------------------------------------------------------------- export
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from .io import FORMAT_NAMES

    formats = list(FORMAT_NAMES)
    parser.add_argument("input", help=f"coordinate file ({', '.join(formats)})")
    parser.add_argument("output", help="file to write; its suffix sets the format (warp: --to-format warp)")
    parser.add_argument("--from-format", choices=formats, help="input format if the suffix is unusual")
    parser.add_argument("--to-format", choices=formats, help="output format if the suffix is unusual")
    parser.add_argument(
        "--tomograms",
        nargs="*",
        default=[],
        help="MRC files of the tomograms: their sizes and pixel size (RELION 5, "
        "STAR) and names (checked; Dynamo tomogram numbers follow this order)",
    )
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å (overrides the MRC headers)")
    parser.add_argument("--relion", type=int, choices=(4, 5), default=4, help="STAR flavour to write (default 4)")
    parser.add_argument("--tomo-name", help="tomogram name for formats that hold none")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _export(args: argparse.Namespace) -> None:
    from .inputs import tomogram_geometry
    from .io import coordinate_pixel_size, read_coordinates, write_coordinates

    shapes, header_pixel_size = tomogram_geometry(args.tomograms)
    pixel_size = args.pixel_size or header_pixel_size or coordinate_pixel_size(args.input)
    names = list(shapes) or None
    table = read_coordinates(
        args.input,
        args.from_format,
        tomo_name=args.tomo_name,
        pixel_size_a=pixel_size,
        tomo_shapes=shapes,
        tomo_names=names,
    )
    write_coordinates(
        args.output,
        table,
        args.to_format,
        pixel_size_a=pixel_size,
        tomo_shapes=shapes,
        relion_version=args.relion,
        tomo_names=names,
        overwrite=args.overwrite,
    )
    print(f"Wrote {len(table)} coordinate(s) of {table['tomo_name'].nunique()} tomogram(s) to {args.output}")


# ----------------------------------------------------------------------------- browse
def _browse_arguments(parser: argparse.ArgumentParser) -> None:
    from .browser import VIEWS

    parser.add_argument("--tomogram", required=True, help="tomogram MRC file")
    parser.add_argument(
        "--picks", required=True, help="its picks (any coordinate format; other tomograms' are left out)"
    )
    parser.add_argument(
        "--diameter", type=_POSITIVE, nargs="+", required=True, help="particle diameter in Å, or one per class"
    )
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å when the MRC header has none")
    parser.add_argument("--threshold", type=float, default=0.0, help="initial score threshold (default 0)")
    parser.add_argument("--view", choices=list(VIEWS), default="xy", help="initial view (default xy)")
    parser.add_argument("--slice", type=int, help="initial slice (default: the middle one)")
    parser.add_argument("--screenshot", help="write the window to this PNG instead of opening it (no display needed)")


def _browse(args: argparse.Namespace) -> None:
    from .inputs import class_diameters
    from .io import read_coordinates, read_mrc

    volume, header_pixel = read_mrc(args.tomogram)
    pixel_size = args.pixel_size or header_pixel
    if not pixel_size:
        raise ValueError(f"{args.tomogram}: the header has no pixel size; give --pixel-size.")
    name = Path(args.tomogram).stem
    table = read_coordinates(args.picks, pixel_size_a=pixel_size, tomo_name=name, tomo_shapes={name: volume.shape})
    table = table[table["tomo_name"] == name]
    if table.empty:
        raise ValueError(f"{args.picks}: holds no picks of tomogram {name!r}.")
    diameters = class_diameters(args.diameter, sorted(int(c) for c in table["class_id"].unique()))
    radius = {c: d / 2 / pixel_size for c, d in diameters.items()}
    if args.screenshot:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .browser import PickBrowser

    browser = PickBrowser(
        volume,
        table,
        radius,
        args.threshold,
        title=name,
        on_save=lambda t: print(
            f"threshold {t:.4g}: {int((table['score'] >= t).sum())} pick(s); "
            f"keep them with: tomocpt-engine filter --threshold {t:.4g}"
        ),
    )
    if args.view != "xy":
        browser.set_view(args.view)
    if args.slice is not None:
        browser.slice_slider.set_val(args.slice)
    if args.screenshot:
        print(f"Wrote {browser.screenshot(args.screenshot)}")
    else:
        plt.show()


# ----------------------------------------------------------------------------- copick
def _copick_arguments(parser: argparse.ArgumentParser) -> None:
    from .copick_project import DEFAULT_SESSION, DEFAULT_USER

    parser.add_argument(
        "--objects",
        nargs="+",
        help="copick particle objects, in class order (class 1 first); default: all particles of the project",
    )
    parser.add_argument("--user", help=f"copick user id (export default {DEFAULT_USER}; import: any)")
    parser.add_argument("--session", help=f"copick session id (export default {DEFAULT_SESSION}; import: any)")
    parser.add_argument("--runs", nargs="+", help="only these runs (tomograms)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _copick_import_arguments(parser: argparse.ArgumentParser) -> None:
    from .io import FORMAT_NAMES

    parser.add_argument("config", help="copick project configuration (JSON)")
    parser.add_argument("output", help="coordinate file to write; its suffix sets the format")
    parser.add_argument(
        "--voxel-size", type=_POSITIVE, required=True, help="pixel size (Å) of the tomograms the coordinates are for"
    )
    parser.add_argument("--to-format", choices=list(FORMAT_NAMES), help="output format if the suffix is unusual")
    parser.add_argument(
        "--tomograms",
        metavar="TOMO_TYPE",
        help="also write each run's tomogram of this type (e.g. wbp) as <run>.mrc beside the output",
    )
    _copick_arguments(parser)


def _copick_import(args: argparse.Namespace) -> None:
    from .copick_project import export_tomograms, read_picks
    from .io import write_coordinates

    table = read_picks(args.config, args.voxel_size, args.objects, args.user, args.session, args.runs)
    if table.empty:
        raise ValueError(
            f"{args.config}: no picks of objects {args.objects or 'any'}, user {args.user or 'any'}, "
            f"session {args.session or 'any'}."
        )
    if args.tomograms:
        runs = sorted(set(table["tomo_name"]))
        written = export_tomograms(
            args.config, args.voxel_size, args.tomograms, Path(args.output).parent, runs, args.overwrite
        )
        print(f"Wrote {len(written)} tomogram(s) to {Path(args.output).parent}")
    write_coordinates(args.output, table, args.to_format, pixel_size_a=args.voxel_size, overwrite=args.overwrite)
    print(f"Wrote {len(table)} pick(s) of {table['tomo_name'].nunique()} run(s) to {args.output}")


def _copick_export_arguments(parser: argparse.ArgumentParser) -> None:
    from .io import FORMAT_NAMES

    parser.add_argument("input", help="coordinate file (picks of `predict`, or any format `export` reads)")
    parser.add_argument("config", help="copick project configuration (JSON)")
    parser.add_argument("--from-format", choices=list(FORMAT_NAMES), help="input format if the suffix is unusual")
    parser.add_argument(
        "--pixel-size", type=_POSITIVE, help="pixel size in Å of the coordinates (default: the one the file states)"
    )
    _copick_arguments(parser)


def _copick_export(args: argparse.Namespace) -> None:
    from .copick_project import DEFAULT_SESSION, DEFAULT_USER, write_picks
    from .io import coordinate_pixel_size, read_coordinates

    pixel_size = args.pixel_size or coordinate_pixel_size(args.input)
    if not pixel_size:
        raise ValueError(f"{args.input}: states no pixel size; give --pixel-size.")
    table = read_coordinates(args.input, args.from_format, pixel_size_a=pixel_size)
    if args.runs:
        table = table[table["tomo_name"].isin(args.runs)]
    written = write_picks(
        args.config,
        table,
        pixel_size,
        args.objects,
        args.user or DEFAULT_USER,
        args.session or DEFAULT_SESSION,
        args.overwrite,
    )
    print(f"Wrote {len(table)} pick(s) into {len(written)} copick picks file(s) of {args.config}")


# ----------------------------------------------------------------------------- train
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import AUGMENTATIONS, SAMPLINGS
    from .specs import (
        BACKBONES,
        DEFAULT_CENTRING_STEPS,
        DEFAULT_RECIPE,
        DEFAULT_RECIPE_REASON,
        LABELS,
        LOSS_SPECS,
        MODEL_SIZES,
        RECIPE_SPECS,
    )

    parser.add_argument("--tomograms", nargs="+", required=True, help="training tomograms (MRC)")
    parser.add_argument(
        "--coordinates",
        nargs="+",
        required=True,
        help="coordinate files, one per class (star, mod, tbl, coords, txt, csv)",
    )
    parser.add_argument("--class-names", nargs="+", help="class names (default: coordinate file stems)")
    parser.add_argument("--val-tomograms", nargs="*", default=[], help="validation tomograms")
    parser.add_argument("--val-coordinates", nargs="*", default=[], help="validation coordinates, one per class")
    parser.add_argument(
        "--diameter",
        type=_POSITIVE,
        nargs="+",
        required=True,
        help="particle diameter in Å, or one per class (order of --coordinates): the smallest "
        "sets the training scale; labels, peaks and hits of each class follow its own",
    )
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å when the MRC headers have none")
    parser.add_argument(
        "--recipe",
        choices=list(RECIPE_SPECS),
        default=DEFAULT_RECIPE,
        help=f"settings of one paper (default {DEFAULT_RECIPE}: {DEFAULT_RECIPE_REASON}); every option "
        "below overrides it",
    )
    parser.add_argument("--out", required=True, help="output folder (model.pt, training_log.csv, learning_curve.png)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--finetune", help="checkpoint to start from")
    parser.add_argument("--encoder-lr-factor", type=_POSITIVE, help="encoder learning-rate factor when fine-tuning")
    parser.add_argument("--backbone", choices=BACKBONES)
    parser.add_argument("--model-size", choices=MODEL_SIZES)
    parser.add_argument("--label", choices=LABELS)
    parser.add_argument("--loss", choices=list(LOSS_SPECS))
    parser.add_argument("--sampling", choices=SAMPLINGS)
    parser.add_argument("--patch-size", type=_POSITIVE_INT, help="patch edge in pixels at the training scale")
    parser.add_argument("--stride", type=_POSITIVE_INT, help="patch stride in pixels")
    parser.add_argument(
        "--target-size",
        type=_POSITIVE,
        dest="target_diameter_px",
        help="particle diameter after rescaling, pixels (tomoCPT: 10)",
    )
    parser.add_argument("--label-radius-fraction", type=_POSITIVE, help="label radius / rescaled diameter")
    parser.add_argument(
        "--sparse-label-radius-fraction",
        type=_POSITIVE,
        help="label radius / rescaled diameter where a PU loss trains on sparse labels (fewer "
        "labelled particles per tomogram than 80 %% of --expected-particles; TomoPicker: 0.25)",
    )
    parser.add_argument("--augment", nargs="*", choices=AUGMENTATIONS, help="augmentations to use")
    parser.add_argument("--epochs", type=_POSITIVE_INT)
    parser.add_argument(
        "--pseudo-labels",
        action=argparse.BooleanOptionalAction,
        help="on sparse labels (PU losses, fewer than 80 %% of --expected-particles labelled): train a first "
        "model, add its confident picks in the training tomograms to the labels, train again",
    )
    parser.add_argument(
        "--particle-template",
        action=argparse.BooleanOptionalAction,
        help="average the labelled particles, and the training picks that match them best, into a template "
        "and rescore every pick by its local match to it, the network's score weighing more where the "
        "annotation is complete (tomoCPT and TomoPicker: on)",
    )
    parser.add_argument(
        "--min-patches-per-epoch",
        type=_NON_NEGATIVE_INT,
        help="repeat an epoch's patch sampling (grid moved by a random origin) until it holds this many "
        "patches (TomoPicker: 256; 0 = one sampling)",
    )
    parser.add_argument("--patience", type=_POSITIVE_INT, help="early-stopping patience in epochs")
    parser.add_argument("--batch-size", type=_POSITIVE_INT)
    parser.add_argument("--lr", type=_POSITIVE, help="initial learning rate")
    parser.add_argument("--weight-decay", type=_NON_NEGATIVE)
    parser.add_argument(
        "--expected-particles", type=_POSITIVE, help="expected particles per tomogram, labelled or not (PU losses)"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--ensemble",
        type=_POSITIVE_INT,
        help="train this many networks (seeds --seed, --seed + 1, …) and average their scores "
        "when picking, at N × the training and picking time (default 1; on the WBP "
        "benchmark two did not pick better than one)",
    )
    parser.add_argument(
        "--centring-steps",
        type=_NON_NEGATIVE_INT,
        help="steps of the centring network trained after the picking network, which moves "
        f"every pick onto its particle's centre (default {DEFAULT_CENTRING_STEPS}, minutes on a CPU; "
        "0 = none: picks are refined on the score map only)",
    )
    parser.add_argument("--workers", type=_NON_NEGATIVE_INT, default=0, help="data-loader processes (default 0)")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")


_TRAIN_OVERRIDES = (
    "backbone",
    "model_size",
    "label",
    "loss",
    "sampling",
    "patch_size",
    "stride",
    "min_patches_per_epoch",
    "pseudo_labels",
    "particle_template",
    "target_diameter_px",
    "label_radius_fraction",
    "sparse_label_radius_fraction",
    "augment",
    "epochs",
    "patience",
    "batch_size",
    "lr",
    "weight_decay",
    "expected_particles",
    "seed",
    "encoder_lr_factor",
    "ensemble",
    "centring_steps",
)


def _train(args: argparse.Namespace) -> None:
    from .config import recipe_config
    from .inputs import check_distinct_tomograms, read_class_sets
    from .train import train

    check_distinct_tomograms([*args.tomograms, *args.val_tomograms], "--tomograms and --val-tomograms")
    if bool(args.val_tomograms) != bool(args.val_coordinates):
        given, missing = (
            ("--val-tomograms", "--val-coordinates") if args.val_tomograms else ("--val-coordinates", "--val-tomograms")
        )
        raise ValueError(f"{given} needs {missing} too (validation coordinates: one file per class, as --coordinates).")
    if args.val_coordinates and len(args.val_coordinates) != len(args.coordinates):
        raise ValueError(
            f"{len(args.val_coordinates)} --val-coordinates file(s) for {len(args.coordinates)} "
            f"class(es); give one per class, in the order of --coordinates."
        )
    coordinates, classes = read_class_sets(args.coordinates, args.class_names, args.tomograms, args.pixel_size)
    validation = None
    if args.val_tomograms:
        validation, _ = read_class_sets(args.val_coordinates, classes, args.val_tomograms, args.pixel_size)
    if len(args.diameter) not in (1, len(classes)):
        raise ValueError(
            f"{len(args.diameter)} diameters for {len(classes)} class(es) {classes}: give one, "
            f"or one per class in the order of --coordinates."
        )
    config = recipe_config(
        args.recipe,
        diameter_a=min(args.diameter),
        classes=classes,
        class_diameters_a=args.diameter if len(args.diameter) > 1 else None,
        **{name: getattr(args, name) for name in _TRAIN_OVERRIDES},
    )
    result = train(
        args.tomograms,
        coordinates,
        config,
        args.out,
        args.val_tomograms,
        validation,
        args.pixel_size,
        args.resume,
        args.finetune,
        args.overwrite,
        args.device,
        args.workers,
    )
    print(f"Best model (epoch {result.best_epoch}, validation loss {result.best_val_loss:.4g}): {result.checkpoint}")


# ----------------------------------------------------------------------------- predict
def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    from .infer import WINDOWS
    from .specs import DEFAULT_PEAK_METHOD, FALLBACK_THRESHOLD, MERGE_MODES, PEAK_METHODS, REFINEMENTS

    parser.add_argument("--model", required=True, help="checkpoint (model.pt)")
    parser.add_argument("--tomograms", nargs="+", required=True, help="tomograms to pick (MRC)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å when the MRC headers have none")
    parser.add_argument(
        "--diameter",
        type=_POSITIVE,
        help="diameter in Å of the particles to pick, when it differs from the model's: "
        "tomograms are rescaled so they look like the training particles",
    )
    parser.add_argument(
        "--masks",
        nargs="*",
        default=[],
        help="mask MRC files, one per tomogram in the same order (picks only where > 0)",
    )
    parser.add_argument(
        "--method",
        choices=PEAK_METHODS,
        default=DEFAULT_PEAK_METHOD,
        help="peak extraction: local-max (tomoCPT), mp-nms (DeepETPicker), greedy (TomoPicker)",
    )
    parser.add_argument(
        "--threshold",
        type=_FINITE,
        help="score threshold (default: the model's, calibrated per class on the validation "
        f"tomograms at the end of training; {FALLBACK_THRESHOLD} for a model without one)",
    )
    parser.add_argument(
        "--min-distance",
        type=_NON_NEGATIVE,
        help="smallest distance between picks in Å (default: the particle diameter)",
    )
    parser.add_argument("--max-picks", type=_POSITIVE_INT, help="at most this many picks per tomogram and class")
    parser.add_argument(
        "--refine",
        choices=REFINEMENTS,
        default=REFINEMENTS[0],
        help="sub-voxel refinement: learned (default: the centroid of the score blob, then "
        "the model's centring network on the tomogram; centroid alone for a model without "
        "one), centroid of the score blob above half its peak, quadratic fit, or none",
    )
    parser.add_argument(
        "--merge", choices=MERGE_MODES, default=MERGE_MODES[0], help=f"patch merging (default {MERGE_MODES[0]})"
    )
    parser.add_argument("--window", choices=WINDOWS, default="gaussian", help="blending weight")
    parser.add_argument("--overlap", type=_FRACTION, default=0.5, help="blending overlap fraction (default 0.5)")
    parser.add_argument(
        "--pad", type=_NON_NEGATIVE_INT, help="overlap-tile margin in pixels (default: a quarter patch)"
    )
    parser.add_argument("--batch-size", type=_POSITIVE_INT, default=4, help="patches per forward pass (default 4)")
    parser.add_argument(
        "--no-tta",
        dest="tta",
        action="store_false",
        help="one network pass instead of the average over flips along x, y and z (4 passes; "
        "the default, which localises picks better)",
    )
    parser.add_argument("--save-scores", action="store_true", help="write score maps (float16 MRC)")
    parser.add_argument("--preview", action="store_true", help="draw the picks over slices (<tomo>_picks.png)")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _predict(args: argparse.Namespace) -> None:
    from .predict import predict_tomograms

    written = predict_tomograms(
        args.model,
        args.tomograms,
        args.out,
        masks=args.masks,
        pixel_size_a=args.pixel_size,
        diameter_a=args.diameter,
        save_scores=args.save_scores,
        preview=args.preview,
        overwrite=args.overwrite,
        device=args.device,
        method=args.method,
        threshold=args.threshold,
        min_distance_a=args.min_distance,
        max_picks=args.max_picks,
        refine=args.refine,
        merge=args.merge,
        window=args.window,
        overlap=args.overlap,
        pad=args.pad,
        batch_size=args.batch_size,
        tta=args.tta,
    )
    print(f"Wrote {len(written)} file(s) to {args.out}")


# ----------------------------------------------------------------------------- evaluate
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from .specs import MATCH_CRITERIA, SWEEP_GRIDS

    parser.add_argument("--picks", required=True, help="picked coordinates (any format)")
    parser.add_argument("--truth", required=True, help="reference coordinates (any format)")
    parser.add_argument(
        "--diameter",
        type=_POSITIVE,
        nargs="+",
        required=True,
        help="particle diameter in Å, or one per class: a reference with several classes "
        "(rlnClassNumber, class_id) is evaluated class by class, each within its own radius",
    )
    parser.add_argument(
        "--tomograms", nargs="*", default=[], help="tomogram MRC files (pixel size, sizes for RELION 5 STAR)"
    )
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å (default: from --tomograms)")
    parser.add_argument(
        "--criterion",
        choices=[c.name for c in MATCH_CRITERIA],
        default=MATCH_CRITERIA[0].name,
        help="hit when within half the diameter (tomoCPT), strictly within r "
        "(DeepETPicker) or within --distance-px pixels (TomoPicker)",
    )
    parser.add_argument(
        "--distance-px", type=_POSITIVE, default=10.0, help="distance of --criterion pixels (default 10)"
    )
    parser.add_argument(
        "--sweep",
        choices=[c.name for c in SWEEP_GRIDS],
        default=SWEEP_GRIDS[0].name,
        help="threshold sweep: score percentiles 2-98 %% step 8, or 50 even steps",
    )
    parser.add_argument("--class-id", type=_POSITIVE_INT, help="evaluate only picks of this class")
    parser.add_argument("--out", help="folder for metrics.csv, sweep.csv, evaluation.png")
    parser.add_argument("--write-filtered", action="store_true", help="also write the picks kept at F1max")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _evaluate(args: argparse.Namespace) -> None:
    from .inputs import tomogram_geometry
    from .io import read_coordinates
    from .preprocess import check_particle_fits
    from .report import evaluation_report, format_metrics

    shapes, header_pixel = tomogram_geometry(args.tomograms)
    pixel_size = args.pixel_size or header_pixel
    if not pixel_size:
        raise ValueError("the pixel size is needed: give --pixel-size or --tomograms with it in their headers.")
    for path in args.tomograms:
        check_particle_fits(path, max(args.diameter), pixel_size, shapes[Path(path).stem])
    names = list(shapes) or None
    picks = read_coordinates(args.picks, pixel_size_a=pixel_size, tomo_shapes=shapes, tomo_names=names)
    truth = read_coordinates(args.truth, pixel_size_a=pixel_size, tomo_shapes=shapes, tomo_names=names)
    if args.class_id is not None:
        picks = picks[picks["class_id"] == args.class_id]
    report = evaluation_report(
        picks,
        truth,
        args.diameter,
        pixel_size,
        args.out,
        args.criterion,
        args.distance_px,
        args.sweep,
        args.write_filtered,
        args.overwrite,
    )
    print(format_metrics(report.metrics))
    for class_id, threshold in report.class_thresholds.items():
        overall = report.class_overall[class_id]
        print(
            f"class {class_id}: F1max {overall['f1']:.3f} (F4 {overall['f4']:.3f}) at score threshold {threshold:.4g}"
        )


# ----------------------------------------------------------------------------- filter
def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, help="picks with scores (any format), e.g. predict's picks.star")
    parser.add_argument("--out", required=True, help="file to write; its suffix sets the format")
    parser.add_argument("--threshold", type=_FINITE, help="keep picks scoring at least this")
    parser.add_argument("--top-n", type=_POSITIVE_INT, help="keep at most this many per tomogram and class")
    parser.add_argument(
        "--min-distance",
        type=_POSITIVE,
        help="drop a pick closer than this (Å) to a better one of its tomogram and class",
    )
    parser.add_argument(
        "--tomograms",
        nargs="*",
        default=[],
        help="MRC files of the tomograms: names, sizes and pixel size (needed with --masks)",
    )
    parser.add_argument(
        "--masks",
        nargs="*",
        default=[],
        help="MRC masks, one per --tomograms file in the same order: keep picks where > 0",
    )
    parser.add_argument("--pixel-size", type=_POSITIVE, help="pixel size in Å (overrides the MRC headers)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _filter(args: argparse.Namespace) -> None:
    from .filtering import filter_picks, read_mask
    from .inputs import check_distinct_tomograms, check_mask_count, tomogram_geometry
    from .io import coordinate_pixel_size, read_coordinates, write_coordinates

    check_mask_count(args.masks, args.tomograms)
    check_distinct_tomograms(args.tomograms, "--tomograms")
    shapes, header_pixel_size = tomogram_geometry(args.tomograms)
    pixel_size = args.pixel_size or header_pixel_size or coordinate_pixel_size(args.picks)
    if args.min_distance and not pixel_size:
        raise ValueError("--min-distance is in Å: give --pixel-size, or --tomograms with it in their headers.")
    masks = {
        Path(tomogram).stem: read_mask(mask_path, shapes[Path(tomogram).stem])
        for tomogram, mask_path in zip(args.tomograms, args.masks)
    }
    picks = read_coordinates(args.picks, pixel_size_a=pixel_size, tomo_shapes=shapes, tomo_names=list(shapes) or None)
    kept = filter_picks(
        picks, args.threshold, args.top_n, args.min_distance / pixel_size if args.min_distance else None, masks
    )
    write_coordinates(args.out, kept, pixel_size_a=pixel_size, tomo_shapes=shapes, overwrite=args.overwrite)
    print(f"Kept {len(kept)} of {len(picks)} pick(s) in {picks['tomo_name'].nunique()} tomogram(s): {args.out}")


# ----------------------------------------------------------------------------- inspect
def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint to check and describe")
    parser.add_argument("--json", help="also write its config, epoch and validation loss to this JSON file")


def _thresholds_text(config) -> str:
    from .specs import FALLBACK_THRESHOLD

    if not config.thresholds:
        return f"{FALLBACK_THRESHOLD} (not calibrated)"
    text = ", ".join(f"{name} {value:.3g}" for name, value in zip(config.classes, config.thresholds))
    return text if config.score_temperature == 1 else f"{text} (logits / {config.score_temperature:g})"


def _inspect(args: argparse.Namespace) -> None:
    from .checkpoint import load_centring, load_model, load_templates, read_checkpoint, write_model_summary

    _, config = load_model(args.model)  # builds the network and loads the weights: a mismatch fails here
    centring = load_centring(args.model)
    templates = load_templates(args.model)
    payload = read_checkpoint(args.model)
    members = f"ensemble of {config.ensemble} × " if config.ensemble > 1 else ""
    print(
        f"{args.model}: {members}{config.model_size} {config.backbone}, {config.label} labels, {config.loss} loss "
        f"({config.recipe} recipe); classes {config.classes}; particle {config.diameter_a:.0f} Å at "
        f"{config.voxel_size_a:.2f} Å/px; epoch {payload['epoch']}, validation loss {payload['val_loss']:.4g}; "
        f"score threshold {_thresholds_text(config)}; "
        f"centring network {f'at {config.centring_diameter_px:.1f} px per particle' if centring else 'none'}; "
        f"particle template {', '.join(config.classes[i] for i in sorted(templates)) or 'none'}; "
        f"engine {config.engine_version}"
    )
    if args.json:
        write_model_summary(args.json, config, payload["epoch"], payload["val_loss"])


# ----------------------------------------------------------------------------- entry point
#: sub-command -> (add its arguments, run it, one-line help)
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None], str]] = {
    "simulate": (_simulate_arguments, _simulate, "simulate tomograms with known particle centres"),
    "export": (
        _export_arguments,
        _export,
        "convert coordinates between STAR (RELION 4/5, Warp/M), IMOD, Dynamo, text and CSV",
    ),
    "browse": (
        _browse_arguments,
        _browse,
        "browse a tomogram's picks slice by slice, coloured by score, with a threshold slider",
    ),
    "copick-import": (
        _copick_import_arguments,
        _copick_import,
        "read picks (and tomograms) from a copick project into a coordinate file (and MRC)",
    ),
    "copick-export": (_copick_export_arguments, _copick_export, "write picks into a copick project"),
    "train": (_train_arguments, _train, "train a picker (tomoCPT, DeepETPicker or TomoPicker recipe)"),
    "predict": (_predict_arguments, _predict, "pick particles with a trained model"),
    "evaluate": (_evaluate_arguments, _evaluate, "compare picks with reference coordinates (P, R, F1, F4, AD)"),
    "filter": (
        _filter_arguments,
        _filter,
        "keep picks by score threshold, top N, minimum distance or mask, without running the network",
    ),
    "inspect": (_inspect_arguments, _inspect, "check a checkpoint and describe the model in it"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``tomocpt-engine`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="tomocpt-engine",
        description=__doc__.splitlines()[0],
        epilog="tomocpt-engine COMMAND --help describes one command and its options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _, help_text) in _COMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tomocpt-engine``; returns the exit status (0 ok, 2 bad input or a file that cannot be
    read or written, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from .threads import limit_threads

    limit_threads()
    try:
        _COMMANDS[args.command][1](args)
    except (ValueError, OSError) as error:  # OSError: missing, existing, read-only, full disk
        message = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"tomocpt-engine {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        epoch = getattr(interruption, "epoch", None)
        where = f" after epoch {epoch}" if epoch is not None else ""
        resume = f"; resume with --resume (the state is in {Path(args.out) / 'last.pt'})" if epoch else ""
        print(f"tomocpt-engine {args.command}: interrupted{where}{resume}", file=sys.stderr)
        return 130
    return 0
