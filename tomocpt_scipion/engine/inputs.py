"""Checks and readers of a command's input files, shared by the commands and usable from
Python: tomogram geometry from the MRC headers, distinct tomogram names, masks per
tomogram, and one coordinate file per class."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_coordinates, read_mrc_header

__all__ = ["tomogram_geometry", "check_mask_count", "check_distinct_tomograms", "read_class_sets", "class_diameters"]

logger = logging.getLogger(__name__)


def tomogram_geometry(paths: Sequence[str]) -> tuple[dict[str, tuple[int, int, int]], float | None]:
    """{stem: (z, y, x)} and the common pixel size (Å) of MRC files, from headers only."""
    shapes, files_by_pixel_size = {}, {}
    for path in paths:
        shape, pixel_size = read_mrc_header(path)
        shapes[Path(path).stem] = shape
        if pixel_size:
            files_by_pixel_size.setdefault(round(pixel_size, 4), []).append(str(path))
    if len(files_by_pixel_size) > 1:
        listing = "; ".join(f"{size:g} Å: {', '.join(files)}" for size, files in sorted(files_by_pixel_size.items()))
        raise ValueError(
            f"the tomograms have different pixel sizes ({listing}); give tomograms of one pixel size per command."
        )
    return shapes, (next(iter(files_by_pixel_size)) if files_by_pixel_size else None)


def check_mask_count(masks: Sequence[str], tomograms: Sequence[str]) -> None:
    if masks and len(masks) != len(tomograms):
        raise ValueError(f"{len(masks)} mask(s) for {len(tomograms)} tomogram(s); give one per tomogram.")


def check_distinct_tomograms(paths: Sequence[str], option: str) -> None:
    """Refuse a tomogram given twice, or two files of one name (picks and labels are keyed by name)."""
    seen: dict[str, str] = {}
    for path in paths:
        name = Path(path).stem
        if name in seen:
            same = Path(seen[name]).resolve() == Path(path).resolve()
            raise ValueError(
                f"{option}: {path} is given twice"
                if same
                else f"{option}: {seen[name]} and {path} share the name {name!r}; tomograms are "
                f"told apart by name, rename one."
            )
        seen[name] = path


def read_class_sets(
    paths: Sequence[str], names: Sequence[str] | None, tomograms: Sequence[str], pixel_size_a: float | None
):
    """One coordinate file per class: a table with class_id = file order + 1, and class names."""
    shapes, header_pixel = tomogram_geometry(tomograms)
    if names and len(names) != len(paths):
        raise ValueError(f"{len(names)} class name(s) for {len(paths)} coordinate file(s).")
    tables = []
    for class_id, path in enumerate(paths, start=1):
        table = read_coordinates(
            path,
            pixel_size_a=pixel_size_a or header_pixel,
            tomo_shapes=shapes,
            tomo_name=None if len(shapes) != 1 else next(iter(shapes)),
        )
        if table.empty:
            raise ValueError(f"{path}: holds no coordinates.")
        used = table["tomo_name"].isin(list(shapes))
        if not used.any():
            raise ValueError(
                f"{path}: none of its tomograms {sorted(set(table['tomo_name']))} is among "
                f"the given ones {sorted(shapes)}."
            )
        if not used.all():
            logger.info("%s: %d coordinate(s) of other tomograms ignored", path, int((~used).sum()))
        tables.append(table[used].assign(class_id=class_id))
    return pd.concat(tables, ignore_index=True), list(names or [Path(p).stem for p in paths])


def class_diameters(diameters_a: float | Sequence[float], classes: Sequence[int]) -> dict[int, float]:
    """{class id: diameter in Å} for ``classes``: one diameter serves every class, several are
    one per class in class order (class 1 first).

    Raises
    ------
    ValueError
        Fewer diameters than the highest class needs.
    """
    diameters = [float(diameters_a)] if np.ndim(diameters_a) == 0 else [float(d) for d in diameters_a]
    if len(diameters) == 1:
        return {int(c): diameters[0] for c in classes}
    if classes and max(classes) > len(diameters):
        raise ValueError(
            f"classes {sorted(classes)} but {len(diameters)} diameter(s) were given; give one, or one per class "
            f"in class order."
        )
    return {int(c): diameters[int(c) - 1] for c in classes}
