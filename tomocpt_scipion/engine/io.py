"""File formats: MRC volumes and particle-coordinate tables.

Volumes are returned as (z, y, x) arrays together with their voxel size in Å. Coordinates
travel as a :class:`pandas.DataFrame` with the columns of :data:`COORDINATE_COLUMNS`:
``tomo_name`` (str), ``x``, ``y``, ``z`` (float, pixels of the tomogram file, 0-based voxel
index, origin at the centre of the first voxel), ``score`` (float) and ``class_id`` (int,
1-based). Every format-specific origin or unit convention is converted here and nowhere
else:

===========  =====================================================================
format       convention on disk
===========  =====================================================================
STAR (R3/4)  ``rlnCoordinateX/Y/Z`` in pixels, same origin as ours, minus
             ``rlnOriginX/Y/ZAngst`` / pixel size (the shift RELION applied)
STAR (R5)    ``rlnCenteredCoordinateX/Y/ZAngst``: Å from the tomogram centre
             (``size / 2`` pixels, float division), so it needs size and pixel size
Warp/M STAR  one ``data_`` block as WarpTools' template matching writes it:
             ``rlnCoordinateX/Y/Z`` in pixels, same origin as ours (Warp multiplies
             them by ``--coords_angpix``), ``rlnMicrographName`` = ``<tomogram>.tomostar``,
             score in ``rlnAutopickFigureOfMerit``; the pixel size as
             ``rlnDetectorPixelSize`` (µm) / ``rlnMagnification`` × 10⁴ (RELION 3.0 style).
             Read by the STAR reader (it names tomograms by the stem of the micrograph).
IMOD .mod    pixel centre of voxel (0, 0, 0) is at model point (0.5, 0.5, 0.0)
Dynamo .tbl  MATLAB 1-based: the first voxel centre is 1; x, y, z in columns 24-26,
             tomogram number in column 20, class in 22, score (cc) in 10
.coords      DeepETPicker text: ``class x y z`` per line, pixels
.txt         ``x y z`` per line, pixels (what Scipion's text import reads)
.csv         our columns with a header
===========  =====================================================================

All writers write to a temporary name in the destination folder and rename when the file
is complete, and refuse to overwrite an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

__all__ = [
    "COORDINATE_COLUMNS",
    "CoordinateFormatError",
    "MrcFormatError",
    "atomic_path",
    "coordinate_pixel_size",
    "coordinate_table",
    "read_coordinates",
    "read_mrc",
    "read_mrc_header",
    "staged_outputs",
    "write_coordinates",
    "write_mrc",
    "FORMATS",
    "FORMAT_NAMES",
]

COORDINATE_COLUMNS = ("tomo_name", "x", "y", "z", "score", "class_id")

#: file suffix -> format name understood by :func:`read_coordinates` / :func:`write_coordinates`
FORMATS = {".star": "star", ".mod": "mod", ".tbl": "tbl", ".coords": "coords", ".txt": "txt", ".csv": "csv"}
#: every format name; ``warp`` is a STAR flavour, so it has no suffix of its own
FORMAT_NAMES = (*dict.fromkeys(FORMATS.values()), "warp")

_IMOD_ORIGIN_PX = np.array([0.5, 0.5, 0.0])  # IMOD point of voxel (0, 0, 0), x y z
_DYNAMO_ORIGIN_PX = 1.0
_DYNAMO_N_COLUMNS = 35
_DYNAMO_COL = {"tag": 0, "aligned": 1, "averaged": 2, "score": 9, "tomo": 19, "class": 21, "x": 23, "y": 24, "z": 25}


class MrcFormatError(ValueError):
    """An MRC file that cannot be read as a volume."""


class CoordinateFormatError(ValueError):
    """A coordinate file that lacks what its format requires."""


# ----------------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` once the block succeeds.

    Parameters
    ----------
    path : destination file.
    overwrite : replace an existing ``path``. Defaults to False.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    OSError
        The folder cannot be written, or writing failed (disk full): the message names
        ``path``, and nothing is left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; refusing to overwrite it (use --overwrite or overwrite=True).")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    except OSError as error:
        raise OSError(error.errno, f"{path}: cannot write here ({error.strerror})") from error
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a finished output gets the mode any new file gets (the umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        raise OSError(getattr(error, "errno", None), f"{path}: could not be written ({error})") from error
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def staged_outputs(out_dir: os.PathLike | str, overwrite: bool = False, expected: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir``; move everything written there into
    ``out_dir`` once the block succeeds, so a run's outputs appear together or not at all.

    Parameters
    ----------
    out_dir : destination folder (created if needed; removed again on failure if it was
        created here and is empty).
    overwrite : replace existing files of the same names. Defaults to False.
    expected : relative names the block will write, checked before it runs, so a clash is
        reported before any work is done. Whatever is written is checked again at the end.

    Raises
    ------
    FileExistsError
        A file to be written exists and ``overwrite`` is False (all of them are named).
    OSError
        The folder cannot be written, or writing failed: nothing of this run is left.
    """
    out_dir = Path(out_dir)

    def refuse_clashes(names) -> None:
        clashes = sorted(str(out_dir / n) for n in names if (out_dir / n).exists())
        if clashes and not overwrite:
            raise FileExistsError(
                f"{', '.join(clashes[:5])}{' …' if len(clashes) > 5 else ''}: "
                f"{len(clashes)} output file(s) exist; refusing to overwrite "
                f"(use --overwrite or overwrite=True)."
            )

    refuse_clashes(expected)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    except OSError as error:
        raise OSError(error.errno, f"{out_dir}: cannot write here ({error.strerror})") from error
    try:
        yield staging
        written = [p.relative_to(staging) for p in sorted(staging.rglob("*")) if p.is_file()]
        refuse_clashes(written)
        for name in written:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- MRC
def read_mrc(path: os.PathLike | str, mmap: bool = True) -> tuple[np.ndarray, float | None]:
    """Read a volume from an MRC file.

    Parameters
    ----------
    path : MRC file.
    mmap : memory-map the data instead of reading it into RAM. Defaults to True.

    Returns
    -------
    data : (z, y, x) array, read-only when memory-mapped.
    voxel_size_a : voxel size along x in Å, or None when the header holds 0.

    Raises
    ------
    MrcFormatError
        The file is not a readable MRC volume (truncated, bad header, not 3-D).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MRC file.")
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with opener(path, mode="r", permissive=False) as mrc:
            data = mrc.data
            voxel_size = float(mrc.voxel_size.x)
    except (ValueError, OSError) as err:
        raise MrcFormatError(f"{path}: not a readable MRC file ({err}).") from err
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise MrcFormatError(f"{path}: expected a 3-D volume, found data of shape {shape}.")
    return data, (voxel_size if voxel_size > 0 else None)


def read_mrc_header(path: os.PathLike | str) -> tuple[tuple[int, int, int], float | None]:
    """Return the (z, y, x) shape and voxel size (Å, or None) of an MRC file, reading only its header.

    Raises
    ------
    MrcFormatError
        The header is unreadable or the file is shorter than the header announces.
    """
    path = Path(path)
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
            header = mrc.header
            shape = (int(header.nz), int(header.ny), int(header.nx))
            voxel_size = float(mrc.voxel_size.x)
            dtype = mrcfile.utils.data_dtype_from_header(header)
    except (ValueError, OSError) as err:
        raise MrcFormatError(f"{path}: not a readable MRC file ({err}).") from err
    expected_bytes = header.nbytes + int(header.nsymbt) + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected_bytes:
        raise MrcFormatError(
            f"{path}: truncated MRC file: {path.stat().st_size} bytes, the header "
            f"announces {expected_bytes} for {shape[::-1]} (x, y, z) voxels."
        )
    return shape, (voxel_size if voxel_size > 0 else None)


def write_mrc(path: os.PathLike | str, data: np.ndarray, voxel_size_a: float, overwrite: bool = False) -> Path:
    """Write a (z, y, x) volume to an MRC file atomically.

    Parameters
    ----------
    path : destination file.
    data : (z, y, x) array; float64 is stored as float32.
    voxel_size_a : voxel size in Å written to the header; must be > 0.
    overwrite : replace an existing file. Defaults to False.

    Raises
    ------
    ValueError
        ``data`` is not 3-D or ``voxel_size_a`` is not positive.
    FileExistsError
        The file exists and ``overwrite`` is False.
    """
    if data.ndim != 3:
        raise ValueError(f"data must be a (z, y, x) volume, got shape {data.shape}.")
    if not voxel_size_a or voxel_size_a <= 0:
        raise ValueError(f"voxel_size_a must be > 0, got {voxel_size_a}.")
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    with atomic_path(path, overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = voxel_size_a
    return Path(path)


# ----------------------------------------------------------------------------- tables
def coordinate_table(xyz_px: np.ndarray, tomo_name: str | Sequence[str], score=1.0, class_id=1) -> pd.DataFrame:
    """Build a coordinate table.

    Parameters
    ----------
    xyz_px : (N, 3) array of x, y, z in pixels.
    tomo_name : one tomogram name, or one per row.
    score : scalar or (N,) scores. Defaults to 1.0.
    class_id : scalar or (N,) 1-based class indices. Defaults to 1.
    """
    xyz_px = np.asarray(xyz_px, dtype=float).reshape(-1, 3)
    n = len(xyz_px)
    return pd.DataFrame(
        {
            "tomo_name": np.broadcast_to(np.asarray(tomo_name, dtype=object), (n,)),
            "x": xyz_px[:, 0],
            "y": xyz_px[:, 1],
            "z": xyz_px[:, 2],
            "score": np.broadcast_to(np.asarray(score, dtype=float), (n,)).copy(),
            "class_id": np.broadcast_to(np.asarray(class_id, dtype=int), (n,)).copy(),
        },
        columns=list(COORDINATE_COLUMNS),
    )


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


def _shape_of(tomo_shapes: Mapping[str, Sequence[int]] | None, name: str, path: Path) -> np.ndarray:
    """(x, y, z) size in pixels of tomogram ``name`` from a {name: (z, y, x)} mapping."""
    if tomo_shapes is None or name not in tomo_shapes:
        known = sorted(tomo_shapes) if tomo_shapes else []
        raise CoordinateFormatError(
            f"{path}: RELION 5 centred coordinates of tomogram {name!r} need its size; "
            f"known tomograms: {known} (give the tomogram files, e.g. --tomograms)."
        )
    return np.asarray(tomo_shapes[name], dtype=float)[::-1]


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
    reader = {
        "star": _read_star,
        "warp": _read_star,
        "mod": _read_mod,
        "tbl": _read_tbl,
        "coords": _read_text,
        "txt": _read_text,
        "csv": _read_csv,
    }[fmt]
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
    if fmt in ("star", "warp"):  # checked before anything is written, so errors name the destination
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
    writer = {
        "star": _write_star,
        "warp": _write_warp_star,
        "mod": _write_mod,
        "tbl": _write_tbl,
        "coords": _write_text,
        "txt": _write_text,
        "csv": _write_csv,
    }[fmt]
    with atomic_path(path, overwrite) as tmp:
        writer(
            tmp,
            table,
            pixel_size_a=pixel_size_a,
            tomo_shapes=tomo_shapes,
            relion_version=relion_version,
            tomo_names=tomo_names,
            fmt=fmt,
        )
    return path


# ----------------------------------------------------------------------------- STAR
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


def _read_star(path: Path, default_name: str, pixel_size_a, tomo_shapes, **_) -> pd.DataFrame:
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


def _write_star(tmp: Path, table: pd.DataFrame, pixel_size_a, tomo_shapes, relion_version, **_):
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


def _write_warp_star(tmp: Path, table: pd.DataFrame, pixel_size_a, **_):
    xyz = table[["x", "y", "z"]].to_numpy(float)
    particles = pd.DataFrame({column: xyz[:, i] for i, column in enumerate(_R4_COLUMNS)})
    particles["rlnMicrographName"] = table["tomo_name"].astype(str).to_numpy() + _WARP_TOMO_SUFFIX
    particles["rlnAutopickFigureOfMerit"] = table["score"].to_numpy(float)
    particles["rlnClassNumber"] = table["class_id"].to_numpy(int)
    particles[_WARP_PIXEL_COLUMNS[0]] = float(pixel_size_a) * _WARP_MAGNIFICATION * 1e-4
    particles[_WARP_PIXEL_COLUMNS[1]] = _WARP_MAGNIFICATION
    starfile.write(particles, tmp, float_format="%.6f", overwrite=True)


# ----------------------------------------------------------------------------- IMOD
class _EndCheckedBytes(io.BytesIO):
    """File contents whose reads fail at the end instead of returning short: imodmodel 0.1 loops
    for ever on a model without its end marker, reading b"" as an unknown chunk of 0 bytes."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size:
            raise EOFError(f"the file ends inside a chunk, at byte {self.tell()}")
        return data


def _read_mod(path: Path, default_name: str, **_) -> pd.DataFrame:
    import struct

    from imodmodel.dataframe import model_to_dataframe
    from imodmodel.parsers import parse_model

    contents = path.read_bytes()
    if not contents.startswith(b"IMOD"):
        raise CoordinateFormatError(f"{path}: not an IMOD model (it does not start with 'IMOD').")
    try:
        df = model_to_dataframe(parse_model(_EndCheckedBytes(contents)))
    except (struct.error, ValueError, EOFError, UnicodeDecodeError, IndexError) as err:  # pydantic's are ValueErrors
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CoordinateFormatError(f"{path}: not a readable IMOD model ({first_line}).") from None
    xyz = df[["x", "y", "z"]].to_numpy(float) - _IMOD_ORIGIN_PX
    return coordinate_table(xyz, default_name, 1.0, df["object_id"].to_numpy(int) + 1)


def _write_mod(tmp: Path, table: pd.DataFrame, **_):
    import imodmodel

    names = table["tomo_name"].unique()
    if len(names) > 1:
        raise ValueError(f"an IMOD model holds one tomogram; table has {len(names)}: {list(names)}.")
    xyz = table[["x", "y", "z"]].to_numpy(float) + _IMOD_ORIGIN_PX
    df = pd.DataFrame(
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "object_id": table["class_id"].to_numpy(int) - 1,
            "contour_id": 0,
        }
    )
    imodmodel.write(df, tmp)


# ----------------------------------------------------------------------------- Dynamo
def _read_tbl(path: Path, tomo_names, **_) -> pd.DataFrame:
    values = np.loadtxt(path, ndmin=2)
    if values.shape[1] < _DYNAMO_COL["z"] + 1:
        raise CoordinateFormatError(f"{path}: a Dynamo table needs at least 26 columns, found {values.shape[1]}.")
    numbers = values[:, _DYNAMO_COL["tomo"]].astype(int)
    if tomo_names is None:
        names = np.array([str(n) for n in numbers], dtype=object)
    else:
        bad = sorted(set(numbers[(numbers < 1) | (numbers > len(tomo_names))].tolist()))
        if bad:
            raise CoordinateFormatError(
                f"{path}: tomogram number(s) {bad} in column 20 do not exist; {len(tomo_names)} tomogram(s) given."
            )
        names = np.asarray(tomo_names, dtype=object)[numbers - 1]
    xyz = values[:, [_DYNAMO_COL["x"], _DYNAMO_COL["y"], _DYNAMO_COL["z"]]] - _DYNAMO_ORIGIN_PX
    return coordinate_table(
        xyz, names, values[:, _DYNAMO_COL["score"]], np.maximum(values[:, _DYNAMO_COL["class"]].astype(int), 1)
    )


def _write_tbl(tmp: Path, table: pd.DataFrame, tomo_names, **_):
    order = list(tomo_names) if tomo_names is not None else sorted(table["tomo_name"].unique())
    index = {name: i + 1 for i, name in enumerate(order)}
    missing = sorted(set(table["tomo_name"]) - set(index))
    if missing:
        raise ValueError(f"tomograms {missing} are not in tomo_names {order}.")
    values = np.zeros((len(table), _DYNAMO_N_COLUMNS))
    values[:, _DYNAMO_COL["tag"]] = np.arange(1, len(table) + 1)
    values[:, _DYNAMO_COL["aligned"]] = 1
    values[:, _DYNAMO_COL["averaged"]] = 1
    values[:, _DYNAMO_COL["score"]] = table["score"].to_numpy(float)
    values[:, _DYNAMO_COL["tomo"]] = [index[n] for n in table["tomo_name"]]
    values[:, _DYNAMO_COL["class"]] = table["class_id"].to_numpy(int)
    values[:, [_DYNAMO_COL["x"], _DYNAMO_COL["y"], _DYNAMO_COL["z"]]] = (
        table[["x", "y", "z"]].to_numpy(float) + _DYNAMO_ORIGIN_PX
    )
    integer_columns = {_DYNAMO_COL[k] for k in ("tag", "aligned", "averaged", "tomo", "class")}
    formats = ["%d" if i in integer_columns else "%.6g" for i in range(_DYNAMO_N_COLUMNS)]
    for i in (_DYNAMO_COL["x"], _DYNAMO_COL["y"], _DYNAMO_COL["z"]):
        formats[i] = "%.4f"
    np.savetxt(tmp, values, fmt=formats)


# ----------------------------------------------------------------------------- text / CSV
def _read_text(path: Path, default_name: str, fmt: str, **_) -> pd.DataFrame:
    try:
        values = np.loadtxt(path, ndmin=2, comments="#")
    except ValueError as err:
        raise CoordinateFormatError(f"{path}: {_first_bad_text_cell(path) or err}") from None
    n_expected = 4 if fmt == "coords" else 3
    if values.size == 0:
        return coordinate_table(np.zeros((0, 3)), default_name)
    if values.shape[1] < n_expected:
        raise CoordinateFormatError(
            f"{path}: expected {n_expected} columns "
            f"({'class x y z' if fmt == 'coords' else 'x y z'}), "
            f"found {values.shape[1]}."
        )
    if fmt == "coords":
        return coordinate_table(values[:, 1:4], default_name, 1.0, values[:, 0].astype(int))
    return coordinate_table(values[:, :3], default_name)


def _first_bad_text_cell(path: Path) -> str | None:
    """Where a whitespace-separated numeric file first holds something else (line numbers from 1)."""
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            for column, cell in enumerate(line.split("#", 1)[0].split(), start=1):
                try:
                    float(cell)
                except ValueError:
                    return f"line {number}, column {column}: {cell!r} is not a number."
    return None


def _write_text(tmp: Path, table: pd.DataFrame, fmt: str, **_):
    names = table["tomo_name"].unique()
    if len(names) > 1:
        raise ValueError(f"a .{fmt} file holds one tomogram; table has {len(names)}: {list(names)}.")
    xyz = table[["x", "y", "z"]].to_numpy(float)
    if fmt == "coords":
        np.savetxt(tmp, np.column_stack([table["class_id"].to_numpy(int), xyz]), fmt=["%d", "%.4f", "%.4f", "%.4f"])
    else:
        np.savetxt(tmp, xyz, fmt="%.4f")


def _read_csv(path: Path, **_) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"tomo_name": str})
    missing = [c for c in ("tomo_name", "x", "y", "z") if c not in df.columns]
    if missing:
        raise CoordinateFormatError(
            f"{path}: CSV lacks the column(s) {missing}; expected a header with {list(COORDINATE_COLUMNS)}."
        )
    numeric = {
        column: _numeric_column(df, column, path) for column in ("x", "y", "z", "score", "class_id") if column in df
    }
    return coordinate_table(
        np.column_stack([numeric["x"], numeric["y"], numeric["z"]]),
        df["tomo_name"].to_numpy(object),
        numeric.get("score", 1.0),
        numeric["class_id"].astype(int) if "class_id" in numeric else 1,
    )


def _numeric_column(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """A CSV column as floats; a cell that is not a number is named by its line in the file."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise CoordinateFormatError(
            f"{path}: line {row + 2}, column {column!r}: {df[column].iloc[row]!r} is not a number."
        )
    return values.to_numpy(float)


def _write_csv(tmp: Path, table: pd.DataFrame, **_):
    table[list(COORDINATE_COLUMNS)].to_csv(tmp, index=False, float_format="%.4f")
