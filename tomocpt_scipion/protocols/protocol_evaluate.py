"""ProtTomoCPTEvaluate: compare picks with reference coordinates."""

import json
from enum import Enum

import pyworkflow.object as pwobj
from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.utils import Message
from tomo.objects import SetOfCoordinates3D
from tomo.protocols import ProtTomoBase

from .. import Plugin
from ..convert import coordinatesTable, readMetrics, writeCoordinatesCsv
from ..engine.outputs import EVALUATE
from ..engine.specs import MATCH_CRITERIA, SWEEP_GRIDS
from .checks import NON_NEGATIVE, POSITIVE, particleFitsErrors

CRITERIA = [choice.name for choice in MATCH_CRITERIA]
CRITERIA_LABELS = [choice.label for choice in MATCH_CRITERIA]
SWEEPS = [choice.name for choice in SWEEP_GRIDS]


class EvaluateOutputs(Enum):
    coordinates = SetOfCoordinates3D


class ProtTomoCPTEvaluate(EMProtocol, ProtTomoBase):
    """Measure how well picks find reference particles: precision, recall, F1, F4 and localisation.

    Picks and reference coordinates are matched one-to-one per tomogram (Hungarian
    algorithm). The score threshold is swept to find the one with the best F1 (F1max); the
    metrics are reported at that threshold per tomogram and overall, and the picks kept at
    it can be output as a new coordinate set.
    """

    _label = "evaluate picks"
    _devStatus = BETA
    _possibleOutputs = EvaluateOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "inputPicks",
            params.PointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Picked coordinates",
            important=True,
            help="Picks with scores to evaluate.",
        )
        form.addParam(
            "inputReference",
            params.PointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Reference coordinates",
            important=True,
            help="The particles that should be found (ground truth).",
        )
        form.addParam(
            "diameter",
            params.FloatParam,
            default=0.0,
            label="Particle diameter (Å)",
            validators=[NON_NEGATIVE],
            help="0 = the picks' box size.",
        )
        form.addParam(
            "criterion",
            params.EnumParam,
            choices=CRITERIA_LABELS,
            default=0,
            label="A pick is a hit when it is",
            help="Each reference particle is matched to at most one pick (Hungarian algorithm); a "
            "matched pick is a hit when its distance passes this test. tomoCPT counts hits "
            "within half the diameter, DeepETPicker strictly within the radius, TomoPicker "
            "within a fixed number of pixels.",
        )
        form.addParam(
            "distancePx",
            params.FloatParam,
            default=10.0,
            condition=f"criterion == {CRITERIA.index('pixels')}",
            validators=[POSITIVE],
            label="Distance (px)",
            help="TomoPicker counts hits within 10 voxels.",
        )
        form.addParam(
            "sweep",
            params.EnumParam,
            choices=[choice.label for choice in SWEEP_GRIDS],
            default=0,
            label="Threshold sweep",
            help="Score thresholds tried to find the best F1: the 2nd to 98th percentile of the pick "
            "scores in steps of 8 (tomoCPT), or 50 evenly spaced scores between the lowest and "
            "the highest (finer, for the threshold to use when picking).",
        )
        form.addParam(
            "outputFiltered",
            params.BooleanParam,
            default=True,
            label="Output the picks kept at the best threshold?",
            help="Also output the picks scoring at or above the F1max threshold as a new coordinate set.",
        )

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.evaluateStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        tomograms = self.inputPicks.get().getPrecedents()
        picks = coordinatesTable(self.inputPicks.get(), tomograms)
        writeCoordinatesCsv(picks, self._getExtraPath("picks.csv"))
        writeCoordinatesCsv(coordinatesTable(self.inputReference.get(), tomograms), self._getExtraPath("reference.csv"))

    def evaluateStep(self):
        Plugin.runEngine(
            self,
            [
                "evaluate",
                "--picks",
                self._getExtraPath("picks.csv"),
                "--truth",
                self._getExtraPath("reference.csv"),
                "--diameter",
                str(self._getDiameter()),
                "--pixel-size",
                str(self.inputPicks.get().getSamplingRate()),
                "--criterion",
                CRITERIA[self.criterion.get()],
                "--distance-px",
                str(self.distancePx.get()),
                "--sweep",
                SWEEPS[self.sweep.get()],
                "--out",
                self._getExtraPath("evaluation"),
                "--overwrite",
            ],
        )

    def createOutputStep(self):
        metrics = readMetrics(self.getMetricsPath())
        overall = metrics[metrics["tomo_name"] == "all"].iloc[0]
        sweep = readMetrics(self._getExtraPath("evaluation", EVALUATE.sweep))
        best = float(sweep.iloc[int(sweep["f1"].to_numpy().argmax())]["threshold"])
        self.bestThreshold = pwobj.Float(best)
        for key in ("precision", "recall", "f1", "f4", "ad_px", "ad_a", "tp", "fp", "fn"):
            setattr(self, key, pwobj.Float(float(overall[key])))
        self.perTomogram = pwobj.String(metrics.to_json(orient="records"))
        self._store()
        if self.outputFiltered:
            picks = self.inputPicks.get()
            kept = self._createSetOfCoordinates3D(picks.getPrecedents(), "_f1max")
            kept.copyInfo(picks)
            for coord in picks.iterCoordinates():
                if (coord.getScore() or 0.0) >= best:
                    kept.append(coord.clone())
            self._defineOutputs(**{EvaluateOutputs.coordinates.name: kept})
            self._defineSourceRelation(self.inputPicks, kept)
            self._defineSourceRelation(self.inputReference, kept)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        picks, reference = self.inputPicks.get(), self.inputReference.get()
        errors = []
        if picks is None or reference is None:
            return ["Give both the picks and the reference coordinates."]
        if not self.diameter.get() and not picks.getBoxSize():
            errors.append("Give the particle diameter: the picks have no box size to take it from.")
        errors += particleFitsErrors(self._getDiameter(), picks.getPrecedents())
        pickTomos = {t.getTsId() for t in picks.getPrecedents()}
        refTomos = {t.getTsId() for t in reference.getPrecedents()}
        if not pickTomos & refTomos:
            errors.append("The picks and the reference share no tomogram (tsId).")
        return errors

    def _summary(self):
        if not hasattr(self, "f1"):
            return ["Not evaluated yet."]
        return [
            f"At the best score threshold {self.bestThreshold.get():.3g}: precision {self.precision.get():.3f}, "
            f"recall {self.recall.get():.3f}, F1 {self.f1.get():.3f}, F4 (β = 4, the CZII challenge's) "
            f"{self.f4.get():.3f}, AD {self.ad_px.get():.2f} px "
            f"({self.ad_a.get():.1f} Å); {int(self.tp.get())} hits, {int(self.fp.get())} false picks, "
            f"{int(self.fn.get())} missed. Table: {self.getMetricsPath()}"
        ]

    # --------------------------- UTILS functions -----------------------------
    def getMetricsPath(self):
        return self._getExtraPath("evaluation", EVALUATE.metrics)

    def getPlotPath(self):
        return self._getExtraPath("evaluation", EVALUATE.plot)

    def getPerTomogramMetrics(self):
        return json.loads(self.perTomogram.get()) if hasattr(self, "perTomogram") else []

    def _getDiameter(self):
        picks = self.inputPicks.get()
        return self.diameter.get() or (picks.getBoxSize() or 0) * (picks.getSamplingRate() or 0)
