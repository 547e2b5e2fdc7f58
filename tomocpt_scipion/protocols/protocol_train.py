"""ProtTomoCPTTrain: train a particle picker on annotated tomograms."""

import glob
import os
import re
from enum import Enum

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.utils import Message

from .. import Plugin
from ..constants import BOX_TO_DIAMETER, RECIPE_BACKBONES, RECIPE_CITATIONS
from ..convert import coordinatesTable, linkTomograms, readModelSummary, writeCoordinatesCsv
from ..engine.annotation import ENOUGH_PARTIAL_LABELS, few_partial_labels_warning
from ..engine.outputs import TRAIN
from ..engine.specs import BACKBONES as ENGINE_BACKBONES
from ..engine.specs import (
    DEFAULT_CENTRING_STEPS,
    DEFAULT_RECIPE,
    DEFAULT_RECIPE_REASON,
    LOSS_SPECS,
    MODEL_SIZES,
    PU_LOSSES,
    RECIPE_SPECS,
)
from ..engine.specs import LABELS as ENGINE_LABELS
from ..objects import TomoCPTModel
from .arguments import setFlags
from .checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, particleFitsErrors

RECIPES = list(RECIPE_SPECS)
RECIPE_LABELS = [spec.label for spec in RECIPE_SPECS.values()]
RECIPE_DEFAULT = "recipe default"
BACKBONES = [RECIPE_DEFAULT, *ENGINE_BACKBONES]
LABELS = [RECIPE_DEFAULT, *ENGINE_LABELS]
LOSSES = [RECIPE_DEFAULT, *LOSS_SPECS]
PARTICLE_TEMPLATE = [RECIPE_DEFAULT, "yes", "no"]
SIZES = list(MODEL_SIZES)
PU_RECIPE = next(name for name, spec in RECIPE_SPECS.items() if spec.partial_labels)


def _particleTemplateDefaults() -> str:
    """The recipes' particle-template defaults, as the form's help says them."""

    def names(wanted) -> str:
        return " and ".join(spec.picker for spec in RECIPE_SPECS.values() if wanted(spec)) or "none"

    return (
        f"Recipe default: yes for {names(lambda s: s.particle_template)}; "
        f"no for {names(lambda s: not s.particle_template)}."
    )


class TrainOutputs(Enum):
    model = TomoCPTModel


class ProtTomoCPTTrain(EMProtocol):
    """Train a deep-learning particle picker on tomograms with a few annotated particles.

    Three recipes reproduce the published pickers: tomoCPT (SwinUNETR-V2 predicting Gaussian
    centroid maps), DeepETPicker (light 3D-ResUNet with CoordConv and image pyramid trained
    on truncated-ball weak labels with Dice loss) and TomoPicker (positive-unlabeled learning
    for when only ~0.5 % of the particles are annotated). Every coordinate set is one class,
    named after the set. The tomograms are rescaled so the particle spans ~10 pixels.
    """

    _label = "train picker"
    _devStatus = BETA
    _possibleOutputs = TrainOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Training tomograms",
            important=True,
            help="Tomograms with annotated particles. TomoPicker learns from a partial "
            "annotation; label a few particles in many tomograms rather than many in a few: how "
            "many are labelled counts more than their share (on the benchmark it wanted at least "
            f"{ENOUGH_PARTIAL_LABELS} per class, README).",
        )
        form.addParam(
            "inputCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Training coordinates",
            important=True,
            help="One set per particle class; each set becomes one class named after it. "
            "Coordinates of tomograms not in the training set are ignored.",
        )
        form.addParam(
            "validationTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            allowsNull=True,
            label="Validation tomograms (optional)",
            help="Held-out tomograms for the validation loss. Without them ~20 % of the "
            "training tomograms are held out (or 20 % of the patches of a single one).",
        )
        form.addParam(
            "validationCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            allowsNull=True,
            condition="validationTomograms",
            label="Validation coordinates",
            help="One set per class, in the same order as above.",
        )
        form.addParam(
            "diameter",
            params.FloatParam,
            label="Particle diameter (Å)",
            important=True,
            validators=[POSITIVE],
            help="Longest dimension of the particle. The wizard estimates it from the box size "
            f"of the first coordinate set: box × sampling rate / {BOX_TO_DIAMETER:g} (boxes are "
            "usually 1.5-2 times the particle).",
        )
        form.addParam(
            "recipe",
            params.EnumParam,
            choices=RECIPE_LABELS,
            default=RECIPES.index(DEFAULT_RECIPE),
            label="Recipe",
            help="Settings of one published picker; change any of them under Advanced. "
            f"{RECIPE_SPECS[DEFAULT_RECIPE].picker} is the default: {DEFAULT_RECIPE_REASON}.",
        )
        form.addParam(
            "expectedParticles",
            params.IntParam,
            default=0,
            condition=f"recipe == {RECIPES.index(PU_RECIPE)}",
            validators=[NON_NEGATIVE],
            label="Expected particles per tomogram",
            help="TomoPicker needs the total number of particles expected in one training "
            "tomogram (labelled or not) to set its class prior. 0: every particle of the "
            "training tomograms is annotated.",
        )
        form.addParam(
            "inputModel",
            params.PointerParam,
            pointerClass="TomoCPTModel",
            allowsNull=True,
            label="Model to fine-tune (optional)",
            help="Start from this model instead of random weights (same backbone).",
        )
        form.addParam(
            "encoderLrFactor",
            params.FloatParam,
            default=1.0,
            condition="inputModel",
            validators=[POSITIVE],
            expertLevel=params.LEVEL_ADVANCED,
            label="Encoder learning-rate factor",
            help="When fine-tuning, multiply the encoder's learning rate by this (e.g. 0.1).",
        )

        form.addSection(label="Engine")
        form.addParam(
            "backbone",
            params.EnumParam,
            choices=BACKBONES,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Backbone",
            help="swinunetr: SwinUNETR-V2 transformer (tomoCPT, slowest, largest). resunet: light "
            "3D-ResUNet with CoordConv and image pyramid (DeepETPicker). multiresunet: the network "
            "TomoPicker calls MultiRes-UNet, which its paper (section 3.3) describes as a residual U-Net: "
            "4 levels of residual blocks, 32-256 channels, concatenated skips (MONAI UNet with residual units; "
            "not the MultiRes blocks and Res paths of Ibtehaz and Rahman's MultiResUNet).",
        )
        form.addParam(
            "modelSize",
            params.EnumParam,
            choices=SIZES,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Network size",
            help="small trains in minutes on a CPU; default is the papers' size.",
        )
        form.addParam(
            "labelType",
            params.EnumParam,
            choices=LABELS,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Label",
            help="gaussian: centroid map (tomoCPT; needs the huber-gradient loss). tball / ball / "
            "cube: weak masks with the class index (DeepETPicker). sphere: binary balls "
            "(TomoPicker).",
        )
        form.addParam(
            "loss",
            params.EnumParam,
            choices=LOSSES,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Loss",
            help=" ".join(f"{spec.name}: {spec.help}." for spec in LOSS_SPECS.values())
            + " The priors of bce, nnpu and kl need the expected particles per tomogram.",
        )
        form.addParam(
            "patchSize",
            params.IntParam,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Patch size (px)",
            help="Cube edge at the training scale; 0 = recipe default (64).",
        )
        form.addParam(
            "targetSize",
            params.FloatParam,
            default=10.0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[POSITIVE],
            label="Particle size after rescaling (px)",
            help="tomoCPT uses 10 pixels.",
        )
        form.addParam(
            "epochs",
            params.IntParam,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Maximum epochs",
            help="0 = recipe default.",
        )
        form.addParam(
            "patience",
            params.IntParam,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Early-stopping patience (epochs)",
            help="0 = recipe default. Not applied where a positive-unlabelled loss validates on a partial "
            "annotation: its validation loss rests on a few particles, so every epoch is trained and the last "
            "one kept.",
        )
        form.addParam(
            "batchSize",
            params.IntParam,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Batch size",
            help="0 = recipe default.",
        )
        form.addParam(
            "learningRate",
            params.FloatParam,
            default=0.0,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Learning rate",
            help="0 = recipe default.",
        )
        form.addParam(
            "centringSteps",
            params.IntParam,
            default=DEFAULT_CENTRING_STEPS,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[NON_NEGATIVE],
            label="Centring network steps",
            help="After the picking network, a small network learns to move every pick onto its "
            "particle's centre, on the tomogram at about 20 px per particle (minutes on a CPU). "
            "On the WBP benchmark it took the mean distance of the picks from the true centres "
            "from 1.9 to 0.9 px (ribosomes). 0 = none: picks are refined on the score map only.",
        )
        form.addParam(
            "particleTemplate",
            params.EnumParam,
            choices=PARTICLE_TEMPLATE,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Particle template",
            help="The labelled particles are aligned and averaged, with the training picks that match them "
            "best, into a template, and every pick is rescored by how well it matches it and moved to where it "
            "matches (minutes on a CPU); the network's score weighs more where the annotation is complete. "
            "On the WBP benchmark, with 6 labelled ribosomes, it kept a PU network from ranking other large "
            f"complexes beside the ribosome. {_particleTemplateDefaults()}",
        )
        form.addParam(
            "seed",
            params.IntParam,
            default=0,
            expertLevel=params.LEVEL_ADVANCED,
            label="Random seed",
            validators=[NON_NEGATIVE],
            help="Same inputs and seed give the same model on the same hardware.",
        )
        form.addParam(
            "ensemble",
            params.IntParam,
            default=1,
            expertLevel=params.LEVEL_ADVANCED,
            validators=[AT_LEAST_ONE],
            label="Networks in the ensemble",
            help="Train this many networks, with seeds seed, seed + 1, …, and average their scores "
            "when picking, at N times the training and picking time. On the WBP benchmark with "
            "small CPU-trained networks two networks did not pick better than one (README, "
            "Benchmarks); 1 is the default.",
        )
        form.addHidden(
            params.GPU_LIST,
            params.StringParam,
            default="0",
            label="GPU IDs",
            help="GPUs to train on, e.g. 0 or 0 1 2 3. With several, training runs "
            "data-parallel under torchrun: one process per GPU, each on its share of the "
            "patches of every epoch, gradients averaged; the batch size is per GPU, so the "
            "effective batch grows with the GPU count. Without a GPU it trains on the CPU.",
        )

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        self._convertSet(self.inputTomograms.get(), self.inputCoordinates, "train")
        if self.validationTomograms.get() is not None:
            self._convertSet(self.validationTomograms.get(), self.validationCoordinates, "validation")

    def trainStep(self):
        Plugin.runEngine(self, self._getTrainArgs(), processes=max(1, len(self.getGpuList())))

    def createOutputStep(self):
        summary = readModelSummary(self._getExtraPath("training", TRAIN.summary))
        model = TomoCPTModel(checkpoint=self._getExtraPath("training", TRAIN.model))
        model.setFromSummary(summary)
        self._defineOutputs(**{TrainOutputs.model.name: model})
        for pointer in [
            self.inputTomograms,
            *self.inputCoordinates,
            self.validationTomograms,
            *self.validationCoordinates,
            self.inputModel,
        ]:
            if pointer is not None and pointer.get() is not None:
                self._defineSourceRelation(pointer, model)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        tomograms = self.inputTomograms.get()
        if tomograms is None or not tomograms.getSize():
            return ["Give the training tomograms."]
        tsIds = {t.getTsId() for t in tomograms}
        for pointer in self.inputCoordinates:
            coordinates = pointer.get()
            if coordinates is None:
                continue
            if not coordinates.getSize():
                errors.append(f"Coordinates {pointer.getObjValue().getRunName()}: the set is empty.")
            elif not {tomo.getTsId() for tomo in coordinates.getPrecedents()} & tsIds:
                errors.append(
                    f"Coordinates {pointer.getObjValue().getRunName()}: none of their tomograms "
                    f"is among the training tomograms."
                )
        validation = self.validationTomograms.get()
        if validation is not None:
            if len(self.validationCoordinates) != len(self.inputCoordinates):
                errors.append("Give one validation coordinate set per training coordinate set (class).")
            shared = sorted(tsIds & {t.getTsId() for t in validation})
            if shared:
                errors.append(
                    f"Tomograms {', '.join(shared)} are both training and validation tomograms; "
                    f"validate on held-out ones."
                )
        errors += particleFitsErrors(self.diameter.get(), tomograms)
        errors += particleFitsErrors(self.diameter.get(), validation)
        if self._trainsPositiveUnlabelled():
            if not self.expectedParticles.get():
                errors.append(
                    "Positive-unlabeled training needs the expected number of particles per "
                    "tomogram (all of them, labelled or not)."
                )
        if self.inputModel.get() is not None:
            backbone = self._choice(BACKBONES, self.backbone) or RECIPE_BACKBONES[self._recipeName()]
            if self.inputModel.get().getBackbone() != backbone:
                errors.append(
                    f"The model to fine-tune is a {self.inputModel.get().getBackbone()}; this run "
                    f"trains a {backbone}. Choose the same backbone."
                )
        return errors

    def _warnings(self):
        warnings = []
        if self.inputTomograms.get() is None:
            return warnings
        tomoRate = self.inputTomograms.get().getSamplingRate()
        for pointer in self.inputCoordinates:
            coordRate = pointer.get().getSamplingRate() if pointer.get() is not None else None
            if coordRate and abs(coordRate - tomoRate) > 1e-3 * tomoRate:
                warnings.append(
                    f"Coordinates at {coordRate:.2f} Å/px will be rescaled to the tomograms' {tomoRate:.2f} Å/px."
                )
        if self._trainsPositiveUnlabelled() and self.expectedParticles.get():
            tomograms = self.inputTomograms.get()
            for name, pointer in zip(self._classNames(), self.inputCoordinates):
                if pointer.get() is None:
                    continue
                labelled = len(coordinatesTable(pointer.get(), tomograms, classId=1))
                warning = few_partial_labels_warning(name, labelled, tomograms.getSize(), self.expectedParticles.get())
                if warning:
                    warnings.append(warning)
        return warnings

    def _summary(self):
        diameter = f"{self.diameter.get():.0f} Å" if self.diameter.get() else "not set"
        summary = [
            f"Recipe: {RECIPE_LABELS[self.recipe.get()]}; particle diameter {diameter}; "
            f"classes: {', '.join(self._classNames())}."
        ]
        tomoRate = self.inputTomograms.get().getSamplingRate() if self.inputTomograms.get() else None
        for pointer in self.inputCoordinates:
            coordRate = pointer.get().getSamplingRate() if pointer.get() is not None else None
            if tomoRate and coordRate and abs(coordRate - tomoRate) > 1e-3 * tomoRate:
                summary.append(
                    f"{pointer.get().getSize()} coordinates rescaled from {coordRate:.2f} to {tomoRate:.2f} Å/px."
                )
        if self.hasAttribute(TrainOutputs.model.name):
            model = getattr(self, TrainOutputs.model.name)
            summary.append(
                f"Model: {model.getBackbone()}, trained at {model.getTrainingSamplingRate():.2f} Å/px. "
                f"Learning curve: {self.getLearningCurvePath()}"
            )
        return summary

    def _methods(self):
        return [
            f"Particles were picked with the {RECIPES[self.recipe.get()]} recipe of tomocpt_scipion "
            f"[{RECIPE_CITATIONS[self._recipeName()]}], trained on {self.inputTomograms.get().getSize()} "
            f"tomograms for a particle diameter of {self.diameter.get():.0f} Å."
        ]

    def _citations(self):
        return [RECIPE_CITATIONS[self._recipeName()]]

    # --------------------------- UTILS functions -----------------------------
    def getLearningCurvePath(self):
        return self._getExtraPath("training", TRAIN.curve)

    def getTrainingLogPath(self):
        return self._getExtraPath("training", TRAIN.log)

    def _trainsPositiveUnlabelled(self):
        return self._recipeName() == PU_RECIPE or self._choice(LOSSES, self.loss) in PU_LOSSES

    def _recipeName(self):
        return RECIPES[self.recipe.get()]

    @staticmethod
    def _choice(choices, param):
        return None if param.get() == 0 else choices[param.get()]

    def _classNames(self):
        """One name per coordinate set: its producing protocol's label, made file-safe and unique."""
        names = []
        for pointer in self.inputCoordinates:
            label = pointer.getObjValue().getObjLabel() or pointer.getObjValue().getClassName()
            name = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "class"
            names.append(name if name not in names else f"{name}_{len(names) + 1}")
        return names

    def _convertSet(self, tomograms, coordinatePointers, kind):
        links = linkTomograms(tomograms, self._getExtraPath(kind, "tomograms"))
        for classId, pointer in enumerate(coordinatePointers, start=1):
            table = coordinatesTable(pointer.get(), tomograms, classId)
            writeCoordinatesCsv(table, self._getExtraPath(kind, f"class_{classId}.csv"))
        return links

    def _getTrainArgs(self):
        tomoFolder = self._getExtraPath("train", "tomograms")
        tomograms = [os.path.join(tomoFolder, f"{t.getTsId()}.mrc") for t in self.inputTomograms.get()]
        coordinates = [self._getExtraPath("train", f"class_{i}.csv") for i in range(1, len(self.inputCoordinates) + 1)]
        args = [
            "train",
            "--tomograms",
            *tomograms,
            "--coordinates",
            *coordinates,
            "--class-names",
            *self._classNames(),
            "--diameter",
            str(self.diameter.get()),
            "--pixel-size",
            str(self.inputTomograms.get().getSamplingRate()),
            "--recipe",
            self._recipeName(),
            "--model-size",
            SIZES[self.modelSize.get()],
            "--target-size",
            str(self.targetSize.get()),
            "--seed",
            str(self.seed.get()),
            "--ensemble",
            str(self.ensemble.get()),
            "--centring-steps",
            str(self.centringSteps.get()),
            "--out",
            self._getExtraPath("training"),
        ]
        if self.validationTomograms.get() is not None:
            valFolder = self._getExtraPath("validation", "tomograms")
            args += [
                "--val-tomograms",
                *[os.path.join(valFolder, f"{t.getTsId()}.mrc") for t in self.validationTomograms.get()],
                "--val-coordinates",
                *[
                    self._getExtraPath("validation", f"class_{i}.csv")
                    for i in range(1, len(self.validationCoordinates) + 1)
                ],
            ]
        for flag, choices, param in (
            ("--backbone", BACKBONES, self.backbone),
            ("--label", LABELS, self.labelType),
            ("--loss", LOSSES, self.loss),
        ):
            if self._choice(choices, param):
                args += [flag, self._choice(choices, param)]
        template = self._choice(PARTICLE_TEMPLATE, self.particleTemplate)
        if template:
            args.append("--particle-template" if template == "yes" else "--no-particle-template")
        args += setFlags(
            ("--patch-size", self.patchSize),
            ("--epochs", self.epochs),
            ("--patience", self.patience),
            ("--batch-size", self.batchSize),
            ("--lr", self.learningRate),
            ("--expected-particles", self.expectedParticles),
        )
        if self.inputModel.get() is not None:
            args += [
                "--finetune",
                os.path.abspath(self.inputModel.get().getCheckpoint()),
                "--encoder-lr-factor",
                str(self.encoderLrFactor.get()),
            ]
        if glob.glob(self._getExtraPath("training", "**", TRAIN.state), recursive=True):
            args.append("--resume")  # continue mode after an interruption (of a network or an ensemble member)
        return args
