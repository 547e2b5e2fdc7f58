"""IMOD models (``.mod``, read and written with imodmodel): one object per class."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .table import CoordinateFormatError, coordinate_table

__all__ = ["read_mod", "write_mod"]

_IMOD_ORIGIN_PX = np.array([0.5, 0.5, 0.0])  # IMOD point of voxel (0, 0, 0), x y z


class _EndCheckedBytes(io.BytesIO):
    """File contents whose reads fail at the end instead of returning short: imodmodel 0.1 loops
    for ever on a model without its end marker, reading b"" as an unknown chunk of 0 bytes."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size:
            raise EOFError(f"the file ends inside a chunk, at byte {self.tell()}")
        return data


def read_mod(path: Path, default_name: str, **_) -> pd.DataFrame:
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


def write_mod(tmp: Path, table: pd.DataFrame, **_):
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
