"""MRC volumes: (z, y, x) arrays with their voxel size in Å, read memory-mapped and checked,
written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np

from .atomic import atomic_path

__all__ = ["MrcFormatError", "read_mrc", "read_mrc_header", "write_mrc"]


class MrcFormatError(ValueError):
    """An MRC file that cannot be read as a volume."""


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
