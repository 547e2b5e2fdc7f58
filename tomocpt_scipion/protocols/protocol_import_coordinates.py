"""ProtTomoCPTImportCoordinates: a coordinate set from any file the engine reads."""

import os
from enum import Enum

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.utils import Message
from tomo.objects import SetOfCoordinates3D
from tomo.protocols import ProtTomoBase

from .. import Plugin
from ..convert import fillCoordinates, linkTomograms, readPicks
from ..engine.io import FORMAT_NAMES
from .checks import AT_LEAST_ONE


class ImportCoordinatesOutputs(Enum):
    coordinates = SetOfCoordinates3D


class ProtTomoCPTImportCoordinates(EMProtocol, ProtTomoBase):
    """Import particle coordinates from RELION 4/5 STAR, Warp/M STAR, IMOD .mod, Dynamo .tbl,
    DeepETPicker .coords, x y z text or CSV, with their scores and classes.

    The file's tomogram names must be the tomograms' tsIds (a format that names no tomogram
    is taken as the one tomogram given). Conversion is done by the engine (`tomocpt-engine
    export`), the same code that writes these formats. A copick project (its configuration
    file) gives the picks of its runs named like the tomograms (`tomocpt-engine copick-import`).
    """

    _label = "import coordinates (any format)"
    _devStatus = BETA
    _possibleOutputs = ImportCoordinatesOutputs
    #: form choices: the file suffix decides, one engine format by name, or a copick project
    FORMAT_CHOICES = ["from the file suffix", *FORMAT_NAMES, "copick"]
    COPICK = len(FORMAT_CHOICES) - 1

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="The tomograms the coordinates belong to, matched by tsId.",
        )
        form.addParam(
            "coordinatesFile",
            params.FileParam,
            label="Coordinate file",
            important=True,
            help="Coordinates in pixels of these tomograms (RELION 5 STAR: Å from the centre, "
            "converted with the tomograms' sizes and sampling rate), or a copick project's configuration "
            "(JSON; format 'copick').",
        )
        form.addParam(
            "fileFormat",
            params.EnumParam,
            choices=self.FORMAT_CHOICES,
            default=0,
            label="Format",
            help="The file's format; 'warp' reads a Warp/M particle STAR, 'copick' the picks of a copick "
            "project (locations in Å, converted at the tomograms' sampling rate). By default the suffix "
            "decides (.star, .mod, .tbl, .coords, .txt, .csv).",
        )
        form.addParam(
            "copickObjects",
            params.StringParam,
            default="",
            condition=f"fileFormat == {self.COPICK}",
            label="copick objects",
            help="Particle objects to import, separated by spaces, in class order (class 1 first); empty = "
            "every particle object of the project.",
        )
        for name, what in (("copickUser", "user"), ("copickSession", "session")):
            form.addParam(
                name,
                params.StringParam,
                default="",
                condition=f"fileFormat == {self.COPICK}",
                label=f"copick {what}",
                help=f"Import only the picks of this copick {what} id; empty = any {what}.",
            )
        form.addParam(
            "boxSize",
            params.IntParam,
            default=32,
            validators=[AT_LEAST_ONE],
            label="Box size (px)",
            help="Box size of the output set, in pixels of the tomograms.",
        )

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertStep(self):
        tomograms = self.inputTomograms.get()
        source = os.path.abspath(self.coordinatesFile.get())
        if self.fileFormat.get() == self.COPICK:
            args = ["copick-import", source, self._getOutputCsv(), "--voxel-size", str(tomograms.getSamplingRate())]
            args += ["--runs", *sorted(t.getTsId() for t in tomograms), "--overwrite"]
            for flag, value in (("--user", self.copickUser.get()), ("--session", self.copickSession.get())):
                args += [flag, value] if value else []
            args += ["--objects", *self.copickObjects.get().split()] if (self.copickObjects.get() or "").split() else []
            Plugin.runEngine(self, args)
            return
        links = linkTomograms(tomograms, self._getExtraPath("tomograms"))
        args = [
            "export",
            source,
            self._getOutputCsv(),
            "--tomograms",
            *links.values(),
            "--pixel-size",
            str(tomograms.getSamplingRate()),
            "--overwrite",
        ]
        if self.fileFormat.get():
            args += ["--from-format", self.FORMAT_CHOICES[self.fileFormat.get()]]
        if len(links) == 1:
            args += ["--tomo-name", next(iter(links))]
        Plugin.runEngine(self, args)

    def createOutputStep(self):
        tomograms = self.inputTomograms.get()
        coordinates = self._createSetOfCoordinates3D(self.inputTomograms)
        coordinates.setSamplingRate(tomograms.getSamplingRate())
        coordinates.setBoxSize(self.boxSize.get())
        fillCoordinates(coordinates, readPicks(self._getOutputCsv()), {t.getTsId(): t.clone() for t in tomograms})
        self._defineOutputs(**{ImportCoordinatesOutputs.coordinates.name: coordinates})
        self._defineSourceRelation(self.inputTomograms, coordinates)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        path = self.coordinatesFile.get()
        if not path:
            return ["Give the coordinate file."]
        if not os.path.isfile(path):
            return [f"{path}: no such file."]
        return []

    def _summary(self):
        if not self.hasAttribute(ImportCoordinatesOutputs.coordinates.name):
            return []
        output = getattr(self, ImportCoordinatesOutputs.coordinates.name)
        return [f"Imported {output.getSize()} coordinates from {self.coordinatesFile.get()}."]

    # --------------------------- UTILS functions -----------------------------
    def _getOutputCsv(self):
        return self._getExtraPath("coordinates.csv")
