"""copick projects (the CryoET data portal's layout): picks and tomograms in and out.

A copick project is a JSON configuration (``config_type: filesystem``) whose
``overlay_root`` / ``static_root`` folders hold one folder per run (tomogram): picks as
``Picks/<user>_<session>_<object>.json`` and tomograms as OME-Zarr per voxel spacing. A
copick point's ``location`` is in Å with the centre of the first voxel at 0, so a position
in pixels of a tomogram at ``voxel_size_a`` is ``location / voxel_size_a``, our origin too.

Picks map onto coordinate tables (:data:`.io.COORDINATE_COLUMNS`) as: run name ->
``tomo_name``, object -> ``class_id`` (its position in the list of objects asked for,
1-based), point score -> ``score``. The ``copick`` package is imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .io import coordinate_table, staged_outputs, write_mrc

__all__ = ["open_project", "read_picks", "write_picks", "export_tomograms", "DEFAULT_USER", "DEFAULT_SESSION"]

#: copick user and session of the picks the engine writes, unless told otherwise
DEFAULT_USER = "tomocpt"
DEFAULT_SESSION = "0"


def open_project(config: os.PathLike | str):
    """The copick root of the project configured in the JSON file ``config``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a copick configuration, or copick is not installed.
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such copick configuration file.")
    try:
        import copick
    except ImportError as err:
        raise ValueError(f"{config}: reading copick projects needs the copick package (pip install copick).") from err
    try:
        root = copick.from_file(str(config))
    except (ValueError, KeyError, TypeError) as err:  # JSON and pydantic errors are ValueErrors
        raise ValueError(f"{config}: not a copick configuration ({str(err).splitlines()[0]}).") from err
    if root is None:
        raise ValueError(f"{config}: unknown copick config_type; expected 'filesystem'.")
    return root


def _object_names(root, config: Path, objects: Sequence[str] | None) -> list[str]:
    known = [o.name for o in root.config.pickable_objects if o.is_particle]
    names = list(objects) if objects else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{config}: object(s) {unknown} are not particles of the project; its particles: {known}.")
    return names


def _runs(root, config: Path, runs: Sequence[str] | None) -> list:
    if not runs:
        return list(root.runs)
    found = {name: root.get_run(name) for name in runs}
    missing = sorted(name for name, run in found.items() if run is None)
    if missing:
        raise ValueError(f"{config}: no run(s) {missing}; the project has {sorted(r.name for r in root.runs)}.")
    return list(found.values())


def read_picks(
    config: os.PathLike | str,
    voxel_size_a: float,
    objects: Sequence[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    runs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Picks of a copick project as one coordinate table.

    Parameters
    ----------
    config : the project's JSON configuration.
    voxel_size_a : pixel size (Å) of the tomograms the coordinates are meant for.
    objects : particle objects to read, in class order (class 1 first); default: every
        particle object of the project, in the configuration's order.
    user_id, session_id : read only picks of this user / session (default: any).
    runs : read only these runs (default: all).

    Returns
    -------
    pandas.DataFrame with :data:`.io.COORDINATE_COLUMNS`, pixels at ``voxel_size_a``.
    """
    if not voxel_size_a > 0:
        raise ValueError(f"voxel size must be > 0 Å, got {voxel_size_a}.")
    config = Path(config)
    root = open_project(config)
    names = _object_names(root, config, objects)
    tables = []
    for run in _runs(root, config, runs):
        for class_id, name in enumerate(names, start=1):
            for picks in run.get_picks(object_name=name, user_id=user_id, session_id=session_id):
                if not picks.points:
                    continue
                xyz_a = np.array([[p.location.x, p.location.y, p.location.z] for p in picks.points], float)
                scores = np.array([1.0 if p.score is None else p.score for p in picks.points], float)
                tables.append(coordinate_table(xyz_a / voxel_size_a, run.name, scores, class_id))
    if not tables:
        return coordinate_table(np.zeros((0, 3)), "")
    return pd.concat(tables, ignore_index=True)


def write_picks(
    config: os.PathLike | str,
    table: pd.DataFrame,
    voxel_size_a: float,
    objects: Sequence[str] | None = None,
    user_id: str = DEFAULT_USER,
    session_id: str = DEFAULT_SESSION,
    overwrite: bool = False,
) -> list[str]:
    """Write a coordinate table into a copick project, one picks file per run and object.

    Parameters
    ----------
    config : the project's JSON configuration.
    table : coordinates with :data:`.io.COORDINATE_COLUMNS`, pixels at ``voxel_size_a``;
        ``tomo_name`` names the run (created when the project lacks it).
    voxel_size_a : pixel size (Å) of the coordinates.
    objects : the copick object of each class, ``objects[class_id - 1]``; default: the
        project's particle objects in the configuration's order.
    user_id, session_id : copick's owner of the new picks.
    overwrite : replace picks of the same run, object, user and session. Default False: such
        picks make the call fail before anything is written.

    Returns
    -------
    The picks files written.
    """
    if not voxel_size_a > 0:
        raise ValueError(f"voxel size must be > 0 Å, got {voxel_size_a}.")
    config = Path(config)
    root = open_project(config)
    names = _object_names(root, config, objects)
    classes = sorted(int(c) for c in table["class_id"].unique())
    if classes and (classes[0] < 1 or classes[-1] > len(names)):
        raise ValueError(f"{config}: classes {classes} need {classes[-1]} object name(s); got {names}.")
    groups = list(table.groupby(["tomo_name", "class_id"], sort=True))
    existing = [
        f"{run}/{names[class_id - 1]}"
        for (run, class_id), _ in groups
        if (found := root.get_run(run)) is not None
        and found.get_picks(object_name=names[class_id - 1], user_id=user_id, session_id=session_id)
    ]
    if existing and not overwrite:
        raise FileExistsError(
            f"{config}: picks of user {user_id!r}, session {session_id!r} exist for "
            f"{existing}; choose another session or overwrite."
        )
    from copick.models import CopickLocation, CopickPoint

    written = []
    for (run_name, class_id), rows in groups:
        run = root.get_run(run_name) or root.new_run(run_name)
        name = names[class_id - 1]
        found = run.get_picks(object_name=name, user_id=user_id, session_id=session_id)
        picks = found[0] if found else run.new_picks(object_name=name, session_id=session_id, user_id=user_id)
        xyz_a = rows[["x", "y", "z"]].to_numpy(float) * voxel_size_a
        picks.points = [
            CopickPoint(location=CopickLocation(x=x, y=y, z=z), score=float(s))
            for (x, y, z), s in zip(xyz_a, rows["score"].to_numpy(float))
        ]
        picks.store()
        written.append(picks.path)
    return written


def export_tomograms(
    config: os.PathLike | str,
    voxel_size_a: float,
    tomo_type: str,
    out_dir: os.PathLike | str,
    runs: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write each run's tomogram of ``tomo_type`` at ``voxel_size_a`` as ``<run>.mrc`` in ``out_dir``.

    All files appear together or none (:func:`.io.staged_outputs`); a run without that
    tomogram is an error naming the tomograms it has.
    """
    config = Path(config)
    root = open_project(config)
    chosen = _runs(root, config, runs)
    tomograms = {}
    for run in chosen:
        spacing = run.get_voxel_spacing(voxel_size_a)
        found = spacing.get_tomograms(tomo_type) if spacing is not None else []
        if not found:
            have = {vs.voxel_size: [t.tomo_type for t in vs.tomograms] for vs in run.voxel_spacings}
            raise ValueError(
                f"{config}: run {run.name!r} has no {tomo_type!r} tomogram at {voxel_size_a} Å; it has {have}."
            )
        tomograms[run.name] = found[0]
    names = [f"{name}.mrc" for name in tomograms]
    with staged_outputs(out_dir, overwrite, names) as staging:
        for name, tomogram in tomograms.items():
            write_mrc(staging / f"{name}.mrc", tomogram.numpy().astype(np.float32), voxel_size_a)
    return [Path(out_dir) / name for name in names]
