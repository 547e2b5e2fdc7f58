"""STAR: RELION 3.1/4 (``rlnCoordinateX/Y/Z``, pixels), RELION 5 (``rlnCenteredCoordinate*Angst``)
and Warp/M particle files (one ``data_`` block, ``<tomogram>.tomostar`` names); see the package doc."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .table import CoordinateFormatError, coordinate_table

__all__ = ["read_star", "write_star", "write_warp_star", "check_writable", "coordinate_pixel_size"]


def _shape_of(tomo_shapes: Mapping[str, Sequence[int]] | None, name: str, path: Path) -> np.ndarray:
    """(x, y, z) size in pixels of tomogram ``name`` from a {name: (z, y, x)} mapping."""
    if tomo_shapes is None or name not in tomo_shapes:
        known = sorted(tomo_shapes) if tomo_shapes else []
        raise CoordinateFormatError(
            f"{path}: RELION 5 centred coordinates of tomogram {name!r} need its size; "
            f"known tomograms: {known} (give the tomogram files, e.g. --tomograms)."
        )
    return np.asarray(tomo_shapes[name], dtype=float)[::-1]


_STAR_NAME_COLUMNS = ("rlnTomoName", "rlnMicrographName")
_R4_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_R5_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
_OPTICS_PIXEL_COLUMNS = ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize", "rlnMicrographPixelSize")
_WARP_PIXEL_COLUMNS = ("rlnDetectorPixelSize", "rlnMagnification")
_WARP_MAGNIFICATION = 10000.0
_WARP_TOMO_SUFFIX = ".tomostar"


def _star_blocks(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    blocks = starfile.read(path, always_dict=True)
    particles = next(
        (
            df
            for name, df in blocks.items()
            if isinstance(df, pd.DataFrame)
            and name != "optics"
            and any(c in df.columns for c in _R4_COLUMNS + _R5_COLUMNS)
        ),
        None,
    )
    if particles is None:
        raise CoordinateFormatError(
            f"{path}: no data block with coordinate columns; expected {list(_R4_COLUMNS)} "
            f"(RELION 3.1/4) or {list(_R5_COLUMNS)} (RELION 5)."
        )
    optics = blocks.get("optics")
    return particles, optics if isinstance(optics, pd.DataFrame) else None


def coordinate_pixel_size(path: os.PathLike | str) -> float | None:
    """Pixel size in Å that a coordinate file states (a STAR optics block, or Warp's detector
    pixel size and magnification), else None."""
    path = Path(path)
    if path.suffix.lower() != ".star" or not path.is_file():
        return None
    try:
        particles, optics = _star_blocks(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    return _optics_pixel_size(optics) or _warp_pixel_size(particles)


def _warp_pixel_size(particles: pd.DataFrame) -> float | None:
    if not all(c in particles.columns for c in _WARP_PIXEL_COLUMNS) or particles.empty:
        return None
    detector_um, magnification = (float(particles[c].iloc[0]) for c in _WARP_PIXEL_COLUMNS)
    return detector_um / magnification * 1e4 if magnification > 0 else None


def _optics_pixel_size(optics: pd.DataFrame | None) -> float | None:
    if optics is None:
        return None
    for column in _OPTICS_PIXEL_COLUMNS:
        if column in optics.columns:
            return float(optics[column].iloc[0])
    return None


def _star_tomo_names(df: pd.DataFrame, default_name: str) -> pd.Series:
    for column in _STAR_NAME_COLUMNS:
        if column in df.columns:
            # A micrograph name is a path (often 'tomo.mrc' or 'tomo.mrc:mrc'): keep the stem.
            names = df[column].astype(str)
            if column == "rlnMicrographName":
                names = names.map(lambda n: Path(n.split(":")[0]).stem)
            return names
    return pd.Series([default_name] * len(df), index=df.index)


def read_star(path: Path, default_name: str, pixel_size_a, tomo_shapes, **_) -> pd.DataFrame:
    df, optics = _star_blocks(path)
    names = _star_tomo_names(df, default_name)
    pixel_size = pixel_size_a or _optics_pixel_size(optics) or _warp_pixel_size(df)
    if all(c in df.columns for c in _R5_COLUMNS):
        if not pixel_size:
            raise CoordinateFormatError(
                f"{path}: RELION 5 centred coordinates need the pixel size (none in the optics block and none given)."
            )
        centred_px = df[list(_R5_COLUMNS)].to_numpy(float) / pixel_size
        half_size = np.stack([_shape_of(tomo_shapes, n, path) for n in names]) / 2.0 if len(df) else np.zeros((0, 3))
        xyz = centred_px + half_size
    elif all(c in df.columns for c in _R4_COLUMNS):
        xyz = df[list(_R4_COLUMNS)].to_numpy(float)
        if any(c in df.columns for c in _ORIGIN_COLUMNS):
            if not pixel_size:
                raise CoordinateFormatError(
                    f"{path}: rlnOrigin*Angst shifts need the pixel size (none in the optics block and none given)."
                )
            origin = np.stack(
                [df[c].to_numpy(float) if c in df.columns else np.zeros(len(df)) for c in _ORIGIN_COLUMNS], axis=1
            )
            xyz = xyz - origin / pixel_size
    else:
        raise CoordinateFormatError(
            f"{path}: incomplete coordinate columns; found {[c for c in df.columns if 'Coordinate' in c]}."
        )
    score = df["rlnAutopickFigureOfMerit"].to_numpy(float) if "rlnAutopickFigureOfMerit" in df else 1.0
    class_id = df["rlnClassNumber"].to_numpy(int) if "rlnClassNumber" in df else 1
    return coordinate_table(xyz, names.to_numpy(object), score, class_id)


def write_star(tmp: Path, table: pd.DataFrame, pixel_size_a, tomo_shapes, relion_version, **_):
    xyz = table[["x", "y", "z"]].to_numpy(float)
    particles = pd.DataFrame({"rlnTomoName": table["tomo_name"].astype(str).to_numpy()})
    if relion_version == 4:
        for i, column in enumerate(_R4_COLUMNS):
            particles[column] = xyz[:, i]
        optics_pixel = "rlnImagePixelSize"
    else:
        half = (
            np.stack([np.asarray(tomo_shapes[n], float)[::-1] for n in table["tomo_name"]]) / 2.0
            if len(table)
            else np.zeros((0, 3))
        )
        centred = (xyz - half) * pixel_size_a
        for i, column in enumerate(_R5_COLUMNS):
            particles[column] = centred[:, i]
        optics_pixel = "rlnTomoTiltSeriesPixelSize"
    particles["rlnAutopickFigureOfMerit"] = table["score"].to_numpy(float)
    particles["rlnClassNumber"] = table["class_id"].to_numpy(int)
    particles["rlnOpticsGroup"] = 1
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], optics_pixel: [float(pixel_size_a)]}
    )
    starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f", overwrite=True)


def write_warp_star(tmp: Path, table: pd.DataFrame, pixel_size_a, **_):
    xyz = table[["x", "y", "z"]].to_numpy(float)
    particles = pd.DataFrame({column: xyz[:, i] for i, column in enumerate(_R4_COLUMNS)})
    particles["rlnMicrographName"] = table["tomo_name"].astype(str).to_numpy() + _WARP_TOMO_SUFFIX
    particles["rlnAutopickFigureOfMerit"] = table["score"].to_numpy(float)
    particles["rlnClassNumber"] = table["class_id"].to_numpy(int)
    particles[_WARP_PIXEL_COLUMNS[0]] = float(pixel_size_a) * _WARP_MAGNIFICATION * 1e-4
    particles[_WARP_PIXEL_COLUMNS[1]] = _WARP_MAGNIFICATION
    starfile.write(particles, tmp, float_format="%.6f", overwrite=True)


def check_writable(path: Path, table: pd.DataFrame, fmt: str, pixel_size_a, tomo_shapes, relion_version, **_) -> None:
    """Refuse, before anything is written, a STAR file that would lack its pixel size or sizes."""
    if not pixel_size_a or pixel_size_a <= 0:
        raise ValueError(
            f"{path}: writing STAR needs the pixel size in Å (> 0), got {pixel_size_a}; give "
            f"it, or tomograms with it in their headers."
        )
    if fmt == "star" and relion_version not in (4, 5):
        raise ValueError(f"{path}: relion_version must be 4 or 5, got {relion_version}.")
    if fmt == "star" and relion_version == 5:
        for name in table["tomo_name"].unique():
            _shape_of(tomo_shapes, name, path)
