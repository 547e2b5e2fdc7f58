"""ProtTomoCPTFilter: a new coordinate set from picks by score, count, spacing or mask, without the network."""

from enum import Enum

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.utils import Message
from tomo.objects import SetOfCoordinates3D
from tomo.protocols import ProtTomoBase

from .. import Plugin
from ..convert import coordinatesTable, fillCoordinates, linkTomograms, readPicks, writeCoordinatesCsv
from .arguments import setFlags
from .checks import NON_NEGATIVE


class FilterOutputs(Enum):
    coordinates = SetOfCoordinates3D


class ProtTomoCPTFilter(EMProtocol, ProtTomoBase):
    """Keep the picks that pass a score threshold, a number per tomogram, a minimum distance or a mask.

    Runs in seconds and never runs the network again: pick once with a low threshold (the
    pick form's "Score threshold", e.g. 0.05), then filter that set as often as needed.
    Each output is a new coordinate set with the input as its source.
    """

    _label = "filter picks"
    _devStatus = BETA
    _possibleOutputs = FilterOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "inputCoordinates",
            params.PointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Picks",
            important=True,
            help="Coordinates with scores, e.g. the output of 'pick particles' run with a low threshold.",
        )
        form.addParam(
            "useThreshold",
            params.BooleanParam,
            default=True,
            label="Filter by score?",
            help="Keep only picks scoring at least the threshold.",
        )
        form.addParam(
            "threshold",
            params.FloatParam,
            default=0.5,
            condition="useThreshold",
            validators=[NON_NEGATIVE],
            label="Score threshold",
            help="Picks scoring below this are dropped (the picker's scores are between 0 and 1).",
        )
        form.addParam(
            "topN",
            params.IntParam,
            default=0,
            validators=[NON_NEGATIVE],
            label="Maximum picks per tomogram",
            help="Keep at most this many of the best picks per tomogram (and class); 0 = no limit.",
        )
        form.addParam(
            "minDistance",
            params.FloatParam,
            default=0.0,
            validators=[NON_NEGATIVE],
            label="Minimum distance (Å)",
            help="Drop any pick closer than this to a better one of its tomogram (and class); 0 = keep all.",
        )
        form.addParam(
            "inputMasks",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            allowsNull=True,
            label="Masks (optional)",
            help="Keep only picks where the mask of their tomogram (same tsId) is > 0. A mask may be "
            "binned by a whole factor.",
        )

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.filterStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        coordinates = self.inputCoordinates.get()
        writeCoordinatesCsv(coordinatesTable(coordinates, coordinates.getPrecedents()), self._getExtraPath("picks.csv"))
        if self.inputMasks.get() is not None:
            linkTomograms(coordinates.getPrecedents(), self._getExtraPath("tomograms"))
            linkTomograms(self.inputMasks.get(), self._getExtraPath("masks"))

    def filterStep(self):
        Plugin.runEngine(self, self._getFilterArgs())

    def createOutputStep(self):
        coordinates = self.inputCoordinates.get()
        tomograms = coordinates.getPrecedents()
        kept = self._createSetOfCoordinates3D(tomograms, "_filtered")
        kept.setSamplingRate(tomograms.getSamplingRate())
        kept.setBoxSize(coordinates.getBoxSize())
        fillCoordinates(kept, readPicks(self._getExtraPath("kept.csv")), {t.getTsId(): t.clone() for t in tomograms})
        self._defineOutputs(**{FilterOutputs.coordinates.name: kept})
        self._defineSourceRelation(self.inputCoordinates, kept)
        if self.inputMasks.get() is not None:
            self._defineSourceRelation(self.inputMasks, kept)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        coordinates = self.inputCoordinates.get()
        if coordinates is None:
            return ["Give the picks to filter."]
        errors = []
        if not (self.useThreshold or self.topN.get() or self.minDistance.get() or self.inputMasks.get()):
            errors.append(
                "Choose at least one filter: a score threshold, a maximum number, a minimum distance or masks."
            )
        masks = self.inputMasks.get()
        if masks is not None:
            maskIds = {m.getTsId() for m in masks}
            missing = sorted({t.getTsId() for t in coordinates.getPrecedents()} - maskIds)
            if missing:
                errors.append(f"Tomograms {', '.join(missing)} have no mask (masks are matched by tsId).")
        return errors

    def _summary(self):
        if not self.hasAttribute(FilterOutputs.coordinates.name):
            return []
        output = getattr(self, FilterOutputs.coordinates.name)
        return [f"Kept {output.getSize()} of {self.inputCoordinates.get().getSize()} picks ({self._filtersText()})."]

    # --------------------------- UTILS functions -----------------------------
    def _filtersText(self):
        filters = [f"score ≥ {self.threshold.get():g}"] if self.useThreshold else []
        if self.topN.get():
            filters.append(f"at most {self.topN.get()} per tomogram")
        if self.minDistance.get():
            filters.append(f"at least {self.minDistance.get():g} Å apart")
        if self.inputMasks.get() is not None:
            filters.append("inside the masks")
        return ", ".join(filters)

    def _getFilterArgs(self):
        coordinates = self.inputCoordinates.get()
        args = [
            "filter",
            "--picks",
            self._getExtraPath("picks.csv"),
            "--out",
            self._getExtraPath("kept.csv"),
            "--pixel-size",
            str(coordinates.getPrecedents().getSamplingRate()),
            "--overwrite",
        ]
        if self.useThreshold:
            args += ["--threshold", str(self.threshold.get())]
        args += setFlags(("--top-n", self.topN), ("--min-distance", self.minDistance))
        if self.inputMasks.get() is not None:
            tsIds = [t.getTsId() for t in coordinates.getPrecedents()]
            args += [
                "--tomograms",
                *[self._getExtraPath("tomograms", f"{tsId}.mrc") for tsId in tsIds],
                "--masks",
                *[self._getExtraPath("masks", f"{tsId}.mrc") for tsId in tsIds],
            ]
        return args
