"""ProtTomoCPTPick: pick particles in tomograms with a trained model."""

import os
from enum import Enum

import pandas as pd
from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import STEPS_PARALLEL, params
from pyworkflow.utils import Message
from tomo.objects import SetOfCoordinates3D, SetOfTomograms, Tomogram
from tomo.protocols import ProtTomoBase

from .. import Plugin
from ..constants import RECIPE_CITATIONS
from ..convert import fillCoordinates, linkTomograms, readPicks
from ..engine.outputs import PREDICT
from ..engine.specs import FALLBACK_THRESHOLD, MERGE_MODES, PEAK_METHOD_LABELS, PEAK_METHODS, REFINEMENTS
from .arguments import setFlags
from .checks import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, particleFitsErrors

_DIAMETER_TOLERANCE = 0.25  # relative difference from the model's particle size accepted as the same


class PickOutputs(Enum):
    coordinates = SetOfCoordinates3D
    scoreMaps = SetOfTomograms


class ProtTomoCPTPick(EMProtocol, ProtTomoBase):
    """Pick particles in tomograms with a model trained by "train picker" (or imported).

    Each tomogram is rescaled and normalised as the model was trained, scored by the network
    over overlapping patches, and its particle centres are extracted from the score map.
    The picks come out as 3D coordinates with scores, ready for subtomogram extraction in
    RELION or Dynamo; one set per class for multi-class models.
    """

    _label = "pick particles"
    _devStatus = BETA
    _possibleOutputs = PickOutputs
    stepsExecutionMode = STEPS_PARALLEL

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="Tomograms to pick.",
        )
        form.addParam(
            "inputModel",
            params.PointerParam,
            pointerClass="TomoCPTModel",
            label="Model",
            important=True,
            help="A trained picker (from 'train picker' or 'import model').",
        )
        form.addParam(
            "inputMasks",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            allowsNull=True,
            label="Masks (optional)",
            help="Pick only where the mask of the tomogram (same tsId) is > 0. A mask may be "
            "binned: it is scaled to the tomogram by the ratio of their sizes.",
        )
        form.addParam(
            "diameter",
            params.FloatParam,
            default=0.0,
            label="Particle diameter (Å)",
            validators=[NON_NEGATIVE],
            help="0 = the diameter the model was trained for. A different one needs "
            "'Rescale to the model's particle size'.",
        )
        form.addParam(
            "rescaleToModel",
            params.BooleanParam,
            default=False,
            condition="diameter",
            label="Rescale to the model's particle size?",
            help="Rescale the tomograms so these particles span as many pixels as the "
            "model's training particles did (zero-shot use of a model on another particle).",
        )
        form.addParam(
            "method",
            params.EnumParam,
            choices=PEAK_METHOD_LABELS,
            default=0,
            label="Peak extraction",
            help="local maxima: the highest point in each cube of the minimum distance "
            "(tomoCPT). mean-pooling NMS: segment at the threshold, then find blob "
            "centres (DeepETPicker). greedy spheres: take the best voxel, remove a "
            "sphere of the particle radius, repeat (TomoPicker).",
        )
        form.addParam(
            "useModelThreshold",
            params.BooleanParam,
            default=True,
            label="Use the model's score threshold?",
            help="Yes: each class uses the threshold calibrated on the validation tomograms at "
            "the end of training (the one with the best F1 there; for positive-unlabelled "
            "training on partial labels, one set from the expected number of particles and the "
            f"scores); {FALLBACK_THRESHOLD} "
            "for a model trained by an older version. No: give your own.",
        )
        form.addParam(
            "threshold",
            params.FloatParam,
            default=FALLBACK_THRESHOLD,
            label="Score threshold",
            validators=[FRACTION],
            condition="not useModelThreshold",
            help="Picks below this score are dropped (0-1), for every class.",
        )
        form.addParam(
            "minDistance",
            params.FloatParam,
            default=0.0,
            label="Minimum distance (Å)",
            validators=[NON_NEGATIVE],
            help="Smallest distance between picks; 0 = the model's particle diameter.",
        )
        form.addParam(
            "maxPicks",
            params.IntParam,
            default=0,
            label="Maximum picks per tomogram",
            validators=[NON_NEGATIVE],
            help="0 = no limit.",
        )
        form.addParam(
            "boxSize",
            params.IntParam,
            default=0,
            label="Box size (px)",
            validators=[NON_NEGATIVE],
            help="Box size of the output coordinates, in pixels of the tomograms; 0 = the "
            "particle diameter plus 20 %, rounded up to an even number.",
        )
        form.addParam(
            "saveScoreMaps",
            params.BooleanParam,
            default=False,
            label="Save score maps?",
            help="Also output the score maps as tomograms (float16).",
        )
        form.addParam(
            "refine",
            params.EnumParam,
            choices=REFINEMENTS,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Sub-voxel refinement",
            help="centroid: each pick moves to the centroid of its score blob above half its "
            "peak (mean shift), which centres Gaussian and flat-topped score blobs alike. "
            "quadratic: a parabola through the peak voxel and its neighbours. none: the "
            "voxel of the score map (several pixels of the tomogram per voxel).",
        )
        form.addParam(
            "merge",
            params.EnumParam,
            choices=MERGE_MODES,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Patch merging",
            help="blend: Gaussian-weighted overlapping patches. overlap-tile: keep only the "
            "centre of each patch (DeepETPicker).",
        )
        form.addParam(
            "tta",
            params.BooleanParam,
            default=True,
            expertLevel=params.LEVEL_ADVANCED,
            label="Flip test-time augmentation?",
            help="Average four passes flipped along x, y and z (4x slower): picks sit closer to the particle "
            "centres. No: one pass, for speed.",
        )
        form.addParam(
            "batchSize",
            params.IntParam,
            default=4,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[AT_LEAST_ONE],
            label="Patches per batch",
            help="Patches scored together by the network; more is faster on a GPU with the memory for "
            "it. It does not change the picks.",
        )
        form.addHidden(
            params.GPU_LIST,
            params.StringParam,
            default="0",
            label="GPU IDs",
            help="GPUs to use; with several threads, tomograms run in parallel.",
        )
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        convert = self._insertFunctionStep(self.convertInputStep)
        picks = [
            self._insertFunctionStep(self.pickStep, tomo.getTsId(), prerequisites=[convert])
            for tomo in self.inputTomograms.get()
        ]
        self._insertFunctionStep(self.createOutputStep, prerequisites=picks)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        linkTomograms(self.inputTomograms.get(), self._getExtraPath("tomograms"))
        if self.inputMasks.get() is not None:
            linkTomograms(self.inputMasks.get(), self._getExtraPath("masks"))

    def pickStep(self, tsId):
        Plugin.runEngine(self, self._getPickArgs(tsId))

    def createOutputStep(self):
        tomograms = self.inputTomograms.get()
        tomosById = {t.getTsId(): t.clone() for t in tomograms}
        classes = self.inputModel.get().getClasses() or ["particle"]
        tables = [readPicks(self._getPicksFile(tsId)) for tsId in tomosById]
        picks = pd.concat(tables, ignore_index=True)
        outputs = {}
        for classId in range(1, len(classes) + 1):
            suffix = PREDICT.class_suffix(classes, classId - 1)
            coordSet = self._createSetOfCoordinates3D(self.inputTomograms, suffix)
            coordSet.setSamplingRate(tomograms.getSamplingRate())
            coordSet.setBoxSize(self._getBoxSize(classId))
            fillCoordinates(coordSet, picks[picks["class_id"] == classId], tomosById)
            outputs[PickOutputs.coordinates.name + suffix] = coordSet
        if self.saveScoreMaps:
            for channel in range(len(classes)):
                outputs[PickOutputs.scoreMaps.name + PREDICT.class_suffix(classes, channel)] = self._scoreMapSet(
                    tomograms, classes, channel
                )
        self._defineOutputs(**outputs)
        for output in outputs.values():
            self._defineSourceRelation(self.inputTomograms, output)
            self._defineSourceRelation(self.inputModel, output)
            if self.inputMasks.get() is not None:
                self._defineSourceRelation(self.inputMasks, output)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        tomograms, model = self.inputTomograms.get(), self.inputModel.get()
        if tomograms is None or not tomograms.getSize():
            errors.append("There are no tomograms to pick.")
            return errors
        if model is None:
            return errors
        if not os.path.exists(model.getCheckpoint()):
            errors.append(f"The model's checkpoint {model.getCheckpoint()} is missing.")
        errors += particleFitsErrors(self.diameter.get() or model.getDiameter(), tomograms)
        if model is not None and self.diameter.get() and not self.rescaleToModel:
            trained = model.getDiameter()
            if abs(self.diameter.get() - trained) > _DIAMETER_TOLERANCE * trained:
                errors.append(
                    f"The model was trained for particles of {trained:.0f} Å; you asked for "
                    f"{self.diameter.get():.0f} Å. Set 'Rescale to the model's particle size' to "
                    f"rescale the tomograms so your particles look like its training ones, or "
                    f"train a model for this size."
                )
        masks = self.inputMasks.get()
        if masks is not None:
            maskIds = {m.getTsId(): m for m in masks}
            for tomo in tomograms:
                mask = maskIds.get(tomo.getTsId())
                if mask is None:
                    errors.append(f"Tomogram {tomo.getTsId()} has no mask (masks are matched by tsId).")
                    continue
                ratios = [m / t for m, t in zip(mask.getDimensions(), tomo.getDimensions())]
                if max(ratios) - min(ratios) > 0.02:
                    errors.append(
                        f"The mask of {tomo.getTsId()} ({'x'.join(map(str, mask.getDimensions()))} "
                        f"voxels) does not have the shape of its tomogram "
                        f"({'x'.join(map(str, tomo.getDimensions()))}), even binned."
                    )
        return errors

    def _warnings(self):
        model = self.inputModel.get()
        tomograms = self.inputTomograms.get()
        if model is None or tomograms is None or not model.getTrainingSamplingRate():
            return []
        zoom = tomograms.getSamplingRate() / model.getTrainingSamplingRate()
        if zoom > 4:
            return [
                f"The model was trained at {model.getTrainingSamplingRate():.1f} Å/px; these tomograms "
                f"({tomograms.getSamplingRate():.1f} Å/px) will be upsampled {zoom:.1f}x: the particles may "
                f"be too small in them to be found."
            ]
        return []

    def _summary(self):
        summary = [f"Peak extraction: {PEAK_METHOD_LABELS[self.method.get()]}, threshold {self._thresholdText()}."]
        for name, output in self.iterOutputAttributes():
            if isinstance(output, SetOfCoordinates3D):
                summary.append(
                    f"{name}: {output.getSize()} coordinates in "
                    f"{self.inputTomograms.get().getSize()} tomograms, box {output.getBoxSize()} px."
                )
        return summary

    def _methods(self):
        model = self.inputModel.get()
        recipe = model.getRecipe() if model else None
        citation = f" [{RECIPE_CITATIONS[recipe]}]" if recipe in RECIPE_CITATIONS else ""
        return [
            f"Particles were picked with a {model.getBackbone() if model else ''} network{citation} "
            f"using {PEAK_METHOD_LABELS[self.method.get()]} at a score threshold of {self._thresholdText()}."
        ]

    def _citations(self):
        model = self.inputModel.get()
        return [RECIPE_CITATIONS[model.getRecipe()]] if model and model.getRecipe() in RECIPE_CITATIONS else []

    # --------------------------- UTILS functions -----------------------------
    def _thresholdText(self):
        if not self.useModelThreshold:
            return f"{self.threshold.get()}"
        model = self.inputModel.get()
        thresholds = model.getThresholds() if model else []
        return (
            f"the model's ({', '.join(f'{t:.3g}' for t in thresholds)})"
            if thresholds
            else f"{FALLBACK_THRESHOLD} (model not calibrated)"
        )

    def _getPicksFile(self, tsId):
        return self._getExtraPath("picks", tsId, PREDICT.table)

    def getPreviewPath(self, tsId):
        """PNG of the picks of one tomogram over three of its slices."""
        return self._getExtraPath("picks", tsId, PREDICT.preview(tsId))

    def _getBoxSize(self, classId=1):
        """The form's box size, or 1.2 × the diameter of class ``classId`` (scaled like the picking diameter)."""
        if self.boxSize.get():
            return self.boxSize.get()
        model = self.inputModel.get()
        scale = (self.diameter.get() or model.getDiameter()) / model.getDiameter()
        diameterPx = model.getClassDiameters()[classId - 1] * scale / self.inputTomograms.get().getSamplingRate()
        return int(2 * -(-1.2 * diameterPx // 2))

    def _getPickArgs(self, tsId):
        out = self._getExtraPath("picks", tsId)
        args = [
            "predict",
            "--model",
            os.path.abspath(self.inputModel.get().getCheckpoint()),
            "--tomograms",
            self._getExtraPath("tomograms", f"{tsId}.mrc"),
            "--out",
            out,
            "--pixel-size",
            str(self.inputTomograms.get().getSamplingRate()),
            "--method",
            PEAK_METHODS[self.method.get()],
            "--refine",
            REFINEMENTS[self.refine.get()],
            "--merge",
            MERGE_MODES[self.merge.get()],
            "--batch-size",
            str(self.batchSize.get()),
            "--preview",
            "--overwrite",
        ]
        if not self.useModelThreshold:
            args += ["--threshold", str(self.threshold.get())]
        args += setFlags(
            ("--min-distance", self.minDistance), ("--diameter", self.diameter), ("--max-picks", self.maxPicks)
        )
        if self.inputMasks.get() is not None:
            args += ["--masks", self._getExtraPath("masks", f"{tsId}.mrc")]
        if not self.tta:
            args.append("--no-tta")
        if self.saveScoreMaps:
            args.append("--save-scores")
        return args

    def _scoreMapSet(self, tomograms, classes, channel):
        """Score maps of class ``classes[channel]``."""
        scoreMaps = self._createSetOfTomograms(f"_scores{PREDICT.class_suffix(classes, channel)}")
        scoreMaps.copyInfo(tomograms)
        for tomo in tomograms:
            scoreMap = Tomogram()
            scoreMap.copyInfo(tomo)
            scoreMap.setTsId(tomo.getTsId())
            scoreMap.setLocation(
                self._getExtraPath("picks", tomo.getTsId(), PREDICT.score_map(tomo.getTsId(), classes, channel))
            )
            scoreMaps.append(scoreMap)
        return scoreMaps
