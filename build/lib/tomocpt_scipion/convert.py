"""Conversion between Scipion sets and the engine's files. The only place that knows both.

Engine files name tomograms by file stem, so every tomogram (and mask) is linked into the
protocol's folder as ``<tsId>.mrc``: engine names are Scipion ``tsId`` values. Coordinates
go out and come back in pixels of the tomogram files, through ``Coordinate3D.setVolume`` and
``get/setPosition(BOTTOM_LEFT_CORNER)`` only.
"""

import json
import os

import numpy as np
import pandas as pd
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D

from .engine.io import coordinate_table, read_coordinates, write_coordinates

IDENTITY = np.eye(4)


def tomogramFile(tomo) -> str:
    """Absolute path of a tomogram's MRC file (Scipion may append ':mrc')."""
    return os.path.abspath(tomo.getFileName().split(":")[0])


def linkTomograms(tomograms, folder) -> dict:
    """Link each tomogram (or mask) as ``folder/<tsId>.mrc``; returns {tsId: link path}."""
    os.makedirs(folder, exist_ok=True)
    links = {}
    for tomo in tomograms:
        tsId = tomo.getTsId()
        link = os.path.join(folder, f"{tsId}.mrc")
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(tomogramFile(tomo), link)
        links[tsId] = link
    return links


def coordinatesTable(coordinates, tomograms, classId=None) -> pd.DataFrame:
    """Engine table of a SetOfCoordinates3D in pixels of the given tomograms' files.

    ``tomograms`` is a SetOfTomograms (iterated once; Scipion reuses the item object, so
    never keep the items of a set in a list without cloning them).

    Coordinates stored at another sampling rate than the tomograms are scaled to theirs.
    Coordinates of tomograms that are not in ``tomograms`` are left out. With ``classId``
    every row gets that class and score 1 (training annotations); without, each keeps its
    score and group id.
    """
    tomoRate = {t.getTsId(): t.getSamplingRate() for t in tomograms}
    coordRate = coordinates.getSamplingRate()
    positions, names, scores, classes = [], [], [], []
    for coord in coordinates.iterCoordinates():
        tsId = coord.getTomoId()
        if tsId not in tomoRate:
            continue
        scale = coordRate / tomoRate[tsId] if coordRate else 1.0
        positions.append(np.array(coord.getPosition(BOTTOM_LEFT_CORNER), dtype=float) * scale)
        names.append(tsId)
        scores.append(1.0 if classId else coord.getScore() or 0.0)
        classes.append(classId or coord.getGroupId() or 1)
    return coordinate_table(np.array(positions).reshape(-1, 3), np.array(names, dtype=object), scores, classes)


def writeCoordinatesCsv(table: pd.DataFrame, path) -> str:
    write_coordinates(path, table, overwrite=True)
    return path


def readPicks(path) -> pd.DataFrame:
    """The engine's ``picks.csv``."""
    return read_coordinates(path)


def fillCoordinates(coordSet, table: pd.DataFrame, tomosById: dict):
    """Append the rows of an engine table to a SetOfCoordinates3D (pixels of each tomogram file)."""
    for row in table.itertuples():
        tomo = tomosById[row.tomo_name]
        coord = Coordinate3D()
        coord.setVolume(tomo)
        coord.setPosition(row.x, row.y, row.z, BOTTOM_LEFT_CORNER)
        coord.setScore(float(row.score))
        coord.setGroupId(int(row.class_id))
        coord.setMatrix(IDENTITY)
        coordSet.append(coord)


def readModelSummary(path) -> dict:
    """The engine's ``model.json`` (config, epoch, validation loss)."""
    with open(path) as handle:
        return json.load(handle)


def readMetrics(path) -> pd.DataFrame:
    """The engine's ``metrics.csv`` (one row per tomogram and an ``all`` row)."""
    return pd.read_csv(path, dtype={"tomo_name": str})
