"""``tomocpt-engine``: the engine's command line (simulate, export, train, predict, evaluate).

Each sub-command parses its arguments and calls one library function; heavy modules are
imported lazily so ``--help`` is instant. Errors in the input (bad files, bad values)
end the command with one line naming the file or value, and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main", "build_parser"]

logger = logging.getLogger("tomocpt_scipion.engine")

def _tomogram_geometry(paths: Sequence[str]) -> tuple[dict[str, tuple[int, int, int]], float | None]:
    """{stem: (z, y, x)} and the common pixel size (Å) of MRC files, from headers only."""
    from .io import read_mrc_header

    shapes, pixel_sizes = {}, set()
    for path in paths:
        shape, pixel_size = read_mrc_header(path)
        shapes[Path(path).stem] = shape
        if pixel_size:
            pixel_sizes.add(round(pixel_size, 4))
    if len(pixel_sizes) > 1:
        raise ValueError(f"tomograms have different pixel sizes {sorted(pixel_sizes)} Å; "
                         f"export them separately.")
    return shapes, (pixel_sizes.pop() if pixel_sizes else None)


# ----------------------------------------------------------------------------- simulate
def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    from .simulate import SimulationConfig, available_species

    defaults = SimulationConfig()
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-tomograms", type=int, default=2, help="number of tomograms (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--prefix", default="tomo", help="tomogram name prefix (default tomo)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        default=defaults.shape_zyx, help="volume size in voxels (default %(default)s)")
    parser.add_argument("--pixel-size", type=float, default=defaults.pixel_size_a,
                        help="voxel size in Å (default %(default)s)")
    parser.add_argument("--target", default=defaults.target, choices=available_species(),
                        help="species to pick (default %(default)s, the 80S ribosome)")
    parser.add_argument("--distractors", nargs="*", default=list(defaults.distractors),
                        choices=available_species(), help="other species (default %(default)s)")
    parser.add_argument("--n-target", type=int, default=defaults.n_target,
                        help="target particles per tomogram (default %(default)s)")
    parser.add_argument("--n-distractors", type=int, default=defaults.n_distractors,
                        help="distractor particles per tomogram (default %(default)s)")
    parser.add_argument("--snr", type=float, default=defaults.snr,
                        help="signal-to-noise variance ratio (default %(default)s)")
    parser.add_argument("--tilt-range", type=float, default=defaults.tilt_range_deg,
                        help="tilt range ± degrees (default %(default)s)")
    parser.add_argument("--defocus", type=float, default=defaults.defocus_um,
                        help="defocus in µm (default %(default)s)")
    parser.add_argument("--no-membrane", action="store_true", help="leave out the vesicle")
    parser.add_argument("--n-gold", type=int, default=defaults.n_gold,
                        help="gold beads per tomogram (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing simulation")


def _simulate(args: argparse.Namespace) -> None:
    from .simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        shape_zyx=tuple(args.shape), pixel_size_a=args.pixel_size, target=args.target,
        distractors=tuple(args.distractors), n_target=args.n_target,
        n_distractors=args.n_distractors, snr=args.snr, tilt_range_deg=args.tilt_range,
        defocus_um=args.defocus, membrane=not args.no_membrane, n_gold=args.n_gold)
    summary = simulate_dataset(args.out, args.n_tomograms, config, args.seed, args.prefix,
                               overwrite=args.overwrite)
    out = Path(args.out)
    print(f"Simulated {len(summary['tomograms'])} tomogram(s) of {config.shape_zyx[::-1]} voxels "
          f"(x, y, z) at {config.pixel_size_a} Å/px, SNR {config.snr}, tilt ±{config.tilt_range_deg}°:")
    for name, path in summary["tomograms"].items():
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"][name].items())
        print(f"  {out / path}: {counts}")
    print(f"Target {config.target}: diameter {summary['diameters_a'][config.target]:.0f} Å; "
          f"ground truth in {out / 'coordinates'} (STAR per species, x y z text per tomogram).")


# ----------------------------------------------------------------------------- export
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from .io import FORMATS

    formats = sorted(set(FORMATS.values()))
    parser.add_argument("input", help="coordinate file (star, mod, tbl, coords, txt, csv)")
    parser.add_argument("output", help="file to write; its suffix sets the format")
    parser.add_argument("--from-format", choices=formats, help="input format if the suffix is unusual")
    parser.add_argument("--to-format", choices=formats, help="output format if the suffix is unusual")
    parser.add_argument("--tomograms", nargs="*", default=[],
                        help="MRC files of the tomograms: their sizes and pixel size (RELION 5, "
                             "STAR) and names (checked; Dynamo tomogram numbers follow this order)")
    parser.add_argument("--pixel-size", type=float, help="pixel size in Å (overrides the MRC headers)")
    parser.add_argument("--relion", type=int, choices=(4, 5), default=4,
                        help="STAR flavour to write (default 4)")
    parser.add_argument("--tomo-name", help="tomogram name for formats that hold none")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _export(args: argparse.Namespace) -> None:
    from .io import read_coordinates, write_coordinates

    shapes, header_pixel_size = _tomogram_geometry(args.tomograms)
    pixel_size = args.pixel_size or header_pixel_size
    names = list(shapes) or None
    table = read_coordinates(args.input, args.from_format, tomo_name=args.tomo_name,
                             pixel_size_a=pixel_size, tomo_shapes=shapes, tomo_names=names)
    write_coordinates(args.output, table, args.to_format, pixel_size_a=pixel_size,
                      tomo_shapes=shapes, relion_version=args.relion, tomo_names=names,
                      overwrite=args.overwrite)
    print(f"Wrote {len(table)} coordinate(s) of {table['tomo_name'].nunique()} tomogram(s) to {args.output}")


# ----------------------------------------------------------------------------- entry point
#: sub-command -> (add its arguments, run it, one-line help)
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                           Callable[[argparse.Namespace], None], str]] = {
    "simulate": (_simulate_arguments, _simulate, "simulate tomograms with known particle centres"),
    "export": (_export_arguments, _export,
               "convert coordinates between STAR (RELION 4/5), IMOD, Dynamo, text and CSV"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``tomocpt-engine`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="tomocpt-engine", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _, help_text) in _COMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tomocpt-engine``; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        _COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"tomocpt-engine {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
