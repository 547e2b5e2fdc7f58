"""Reading and writing coordinate tables in every format: the registry of formats and the two
entry points that dispatch on it. Each format lives in its own module."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import dynamo, imod, star, text
from .atomic import atomic_path
from .table import COORDINATE_COLUMNS, CoordinateFormatError

__all__ = ["CoordinateFormat", "FORMAT_SPECS", "FORMATS", "FORMAT_NAMES", "read_coordinates", "write_coordinates"]


@dataclass(frozen=True)
class CoordinateFormat:
    """One coordinate format: its name, its file suffix (None: chosen by name only, a flavour
    of another format's suffix), its reader and writer, and an optional check run before
    writing (errors then name the destination and nothing is written)."""

    name: str
    suffix: str | None
    read: Callable[..., pd.DataFrame]
    write: Callable[..., None]
    check: Callable[..., None] | None = None


FORMAT_SPECS: dict[str, CoordinateFormat] = {
    spec.name: spec
    for spec in (
        CoordinateFormat("star", ".star", star.read_star, star.write_star, star.check_writable),
        CoordinateFormat("mod", ".mod", imod.read_mod, imod.write_mod),
        CoordinateFormat("tbl", ".tbl", dynamo.read_tbl, dynamo.write_tbl),
        CoordinateFormat("coords", ".coords", text.read_text, text.write_text),
        CoordinateFormat("txt", ".txt", text.read_text, text.write_text),
        CoordinateFormat("csv", ".csv", text.read_csv, text.write_csv),
        CoordinateFormat("warp", None, star.read_star, star.write_warp_star, star.check_writable),
    )
}
#: file suffix -> format name understood by :func:`read_coordinates` / :func:`write_coordinates`
FORMATS = {spec.suffix: name for name, spec in FORMAT_SPECS.items() if spec.suffix}
#: every format name; ``warp`` is a STAR flavour, so it has no suffix of its own
FORMAT_NAMES = tuple(FORMAT_SPECS)


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMAT_NAMES:
            raise ValueError(f"unknown coordinate format {fmt!r}; valid: {list(FORMAT_NAMES)}.")
        return fmt
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{path}: cannot tell the coordinate format from the suffix "
            f"{path.suffix!r}; known suffixes: {sorted(FORMATS)}."
        ) from None


def read_coordinates(
    path: os.PathLike | str,
    fmt: str | None = None,
    *,
    tomo_name: str | None = None,
    pixel_size_a: float | None = None,
    tomo_shapes: Mapping[str, Sequence[int]] | None = None,
    tomo_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read particle coordinates from any supported format.

    Parameters
    ----------
    path : coordinate file; its suffix tells the format unless ``fmt`` is given.
    fmt : one of :data:`FORMAT_NAMES` (``warp`` reads as ``star``).
    tomo_name : tomogram of every row for formats that do not name it (mod, coords, txt);
        defaults to the file's stem.
    pixel_size_a : pixel size of the tomogram (Å); needed by RELION 5 STAR files and by
        RELION 3.1/4 files with ``rlnOrigin*Angst`` when the optics block has none.
    tomo_shapes : {tomo_name: (z, y, x)}; needed by RELION 5 STAR files.
    tomo_names : tomogram names by number (1-based) for Dynamo tables; also checked
        against every other format: a row naming another tomogram is an error.

    Returns
    -------
    pandas.DataFrame with :data:`COORDINATE_COLUMNS`, pixels of the tomogram file.

    Raises
    ------
    CoordinateFormatError
        The file lacks the columns its format needs, or names an unknown tomogram.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such coordinate file.")
    fmt = _format_of(path, fmt)
    default_name = tomo_name if tomo_name is not None else path.stem
    reader = FORMAT_SPECS[fmt].read
    try:
        table = reader(
            path,
            default_name=default_name,
            pixel_size_a=pixel_size_a,
            tomo_shapes=tomo_shapes,
            tomo_names=tomo_names,
            fmt=fmt,
        )
    except (KeyError, IndexError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CoordinateFormatError(f"{path}: not a valid {fmt} coordinate file ({err}).") from err
    not_finite = ~np.isfinite(table[["x", "y", "z"]].to_numpy(float)).all(axis=1)
    if not_finite.any():
        row = int(np.argmax(not_finite))
        x, y, z = table[["x", "y", "z"]].iloc[row]
        raise CoordinateFormatError(
            f"{path}: {int(not_finite.sum())} coordinate(s) are not finite numbers; the "
            f"first is particle {row + 1}: x, y, z = {x}, {y}, {z}."
        )
    if tomo_names is not None:
        unknown = sorted(set(table["tomo_name"]) - set(tomo_names))
        if unknown:
            raise CoordinateFormatError(
                f"{path}: names tomogram(s) {unknown} that are not among the given tomograms {sorted(tomo_names)}."
            )
    return table.reset_index(drop=True)


def write_coordinates(
    path: os.PathLike | str,
    table: pd.DataFrame,
    fmt: str | None = None,
    *,
    pixel_size_a: float | None = None,
    tomo_shapes: Mapping[str, Sequence[int]] | None = None,
    relion_version: int = 4,
    tomo_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a coordinate table atomically.

    Parameters
    ----------
    path : destination; its suffix tells the format unless ``fmt`` is given.
    table : table with :data:`COORDINATE_COLUMNS`.
    fmt : format name, see :data:`FORMAT_NAMES`.
    pixel_size_a : pixel size (Å), written to the STAR optics block (Warp: per particle);
        required for STAR and Warp.
    tomo_shapes : {tomo_name: (z, y, x)}; required for RELION 5 STAR.
    relion_version : 4 (``rlnCoordinate*``, pixels) or 5 (``rlnCenteredCoordinate*Angst``).
    tomo_names : order of tomograms for Dynamo's tomogram number (1-based); defaults to the
        sorted names in ``table``.
    overwrite : replace an existing file. Defaults to False.
    """
    path = Path(path)
    fmt = _format_of(path, fmt)
    missing = [c for c in COORDINATE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"coordinate table lacks columns {missing}.")
    spec = FORMAT_SPECS[fmt]
    context = dict(
        pixel_size_a=pixel_size_a,
        tomo_shapes=tomo_shapes,
        relion_version=relion_version,
        tomo_names=tomo_names,
        fmt=fmt,
    )
    if spec.check is not None:  # before anything is written, so errors name the destination
        spec.check(path, table, **context)
    with atomic_path(path, overwrite) as tmp:
        spec.write(tmp, table, **context)
    return path
