"""Text tables: DeepETPicker ``.coords`` (``class x y z``), ``.txt`` (``x y z``) and CSV (our columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .table import COORDINATE_COLUMNS, CoordinateFormatError, coordinate_table

__all__ = ["read_text", "write_text", "read_csv", "write_csv"]


def read_text(path: Path, default_name: str, fmt: str, **_) -> pd.DataFrame:
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


def write_text(tmp: Path, table: pd.DataFrame, fmt: str, **_):
    names = table["tomo_name"].unique()
    if len(names) > 1:
        raise ValueError(f"a .{fmt} file holds one tomogram; table has {len(names)}: {list(names)}.")
    xyz = table[["x", "y", "z"]].to_numpy(float)
    if fmt == "coords":
        np.savetxt(tmp, np.column_stack([table["class_id"].to_numpy(int), xyz]), fmt=["%d", "%.4f", "%.4f", "%.4f"])
    else:
        np.savetxt(tmp, xyz, fmt="%.4f")


def read_csv(path: Path, **_) -> pd.DataFrame:
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


def write_csv(tmp: Path, table: pd.DataFrame, **_):
    table[list(COORDINATE_COLUMNS)].to_csv(tmp, index=False, float_format="%.4f")
