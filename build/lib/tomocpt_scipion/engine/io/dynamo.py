"""Dynamo tables (``.tbl``): 35 columns, 1-based positions (MATLAB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .table import CoordinateFormatError, coordinate_table

__all__ = ["read_tbl", "write_tbl"]

_DYNAMO_ORIGIN_PX = 1.0
_DYNAMO_N_COLUMNS = 35
_DYNAMO_COL = {"tag": 0, "aligned": 1, "averaged": 2, "score": 9, "tomo": 19, "class": 21, "x": 23, "y": 24, "z": 25}


def read_tbl(path: Path, tomo_names, **_) -> pd.DataFrame:
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


def write_tbl(tmp: Path, table: pd.DataFrame, tomo_names, **_):
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
