"""The coordinate table every format converts to and from (see the package doc)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["COORDINATE_COLUMNS", "CoordinateFormatError", "coordinate_table"]

COORDINATE_COLUMNS = ("tomo_name", "x", "y", "z", "score", "class_id")


class CoordinateFormatError(ValueError):
    """A coordinate file that lacks what its format requires."""


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
