"""Option lists and defaults that the engine, its command line and the Scipion protocols all read.

Torch-free, so the plugin can build its forms from it without loading the numerics. The
first entry of each option tuple is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PEAK_METHODS",
    "PEAK_METHOD_LABELS",
    "DEFAULT_PEAK_METHOD",
    "REFINEMENTS",
    "SCORE_MAP_REFINEMENTS",
    "DEFAULT_CENTRING_STEPS",
    "LossSpec",
    "LOSS_SPECS",
    "PU_LOSSES",
    "FALLBACK_THRESHOLD",
    "Choice",
    "RecipeSpec",
    "RECIPE_SPECS",
    "BACKBONES",
    "MODEL_SIZES",
    "LABELS",
    "MERGE_MODES",
    "MATCH_CRITERIA",
    "SWEEP_GRIDS",
]


@dataclass(frozen=True)
class Choice:
    """One entry of an option list: the name the engine takes and the label a form shows."""

    name: str
    label: str


@dataclass(frozen=True)
class RecipeSpec:
    """One published picker's identity: what a form shows and what the rest of its settings
    (in :data:`.config.RECIPES`) are built around.

    Attributes
    ----------
    name : recipe name.
    label : what a form shows.
    backbone : its network (fine-tuning must keep it).
    loss : its loss (:data:`LOSS_SPECS`).
    citation : bibtex key of its paper.
    particle_template : makes particle templates by default (:mod:`.particle_template`).
    """

    name: str
    label: str
    backbone: str
    loss: str
    citation: str
    particle_template: bool

    @property
    def picker(self) -> str:
        """The published picker's name: the form label before its parenthesis."""
        return self.label.split(" (")[0]

    @property
    def partial_labels(self) -> bool:
        """Trained on partial annotations (positive-unlabelled): needs the expected number of
        particles per tomogram."""
        return LOSS_SPECS[self.loss].partial_labels


RECIPE_SPECS: dict[str, RecipeSpec] = {
    spec.name: spec
    for spec in (
        # not the paper's: templates took the CPU-sized ribosome models from F1 0.45 to 0.73 (3 seeds, README)
        RecipeSpec(
            "tomocpt",
            "tomoCPT (SwinUNETR, Gaussian centroids)",
            "swinunetr",
            "huber-gradient",
            "Shah2025tomocpt",
            True,
        ),
        # templates off: +0.065 and -0.025 F1 on two seeds' ribosomes, the distance up (README)
        RecipeSpec(
            "deepetpicker", "DeepETPicker (3D-ResUNet, TBall, Dice)", "resunet", "dice", "Liu2024deepetpicker", False
        ),
        # not the paper's: 6 labelled ribosomes do not teach a network the other large complexes (README)
        RecipeSpec(
            "tomopicker", "TomoPicker (PU learning, few labels)", "multiresunet", "nnpu", "Uddin2024tomopicker", True
        ),
    )
}

#: the recipe the command line and the train form start from (figures: README, Benchmarks)
DEFAULT_RECIPE = "tomopicker"
#: why, as the command line's and the train form's help say it
DEFAULT_RECIPE_REASON = (
    "it picks from complete and partial annotations alike; on the WBP benchmark it picked as well "
    "as DeepETPicker from complete ones and far better from a tenth of the particles (README, Benchmarks)"
)

#: networks (see :mod:`.models`)
BACKBONES = ("swinunetr", "resunet", "multiresunet")
#: network sizes: the papers' and one that trains in minutes on a CPU
MODEL_SIZES = ("default", "small")
#: training labels (see :mod:`.labels`)
LABELS = ("gaussian", "tball", "ball", "cube", "sphere")
#: how overlapping patch predictions are merged (see :mod:`.infer`)
MERGE_MODES = ("blend", "overlap-tile")
#: when a pick counts as a hit (see :mod:`.metrics`)
MATCH_CRITERIA = (
    Choice("half-diameter", "within half the diameter (tomoCPT)"),
    Choice("radius", "strictly within the radius (DeepETPicker)"),
    Choice("pixels", "within a number of pixels (TomoPicker)"),
)
#: score thresholds swept by the evaluation (see :func:`.metrics.threshold_sweep`)
SWEEP_GRIDS = (Choice("percentiles", "score percentiles 2-98 % (tomoCPT)"), Choice("fine", "50 even steps"))

#: peak extraction (see :mod:`.peaks`), with the labels the protocol form shows
PEAK_METHODS = ("local-max", "mp-nms", "greedy")
PEAK_METHOD_LABELS = ("local maxima (tomoCPT)", "mean-pooling NMS (DeepETPicker)", "greedy spheres (TomoPicker)")
DEFAULT_PEAK_METHOD = PEAK_METHODS[0]
#: network score down to which candidates are picked where a threshold is not on the network
#: score alone: calibration sweeps above it, and a particle template rescores from it
CANDIDATE_FLOOR = 0.02

#: sub-voxel refinement of picks on the score map (see :mod:`.peaks`)
SCORE_MAP_REFINEMENTS = ("centroid", "quadratic", "none")
#: refinement choices of ``predict``: ``learned`` = centroid on the score map, then the model's
#: centring network on the tomogram (:mod:`.centring`); centroid alone for a model without one
REFINEMENTS = ("learned", *SCORE_MAP_REFINEMENTS)
#: optimiser steps of the centring network (minutes on a CPU; on the WBP benchmark 3000 steps
#: took the mean hit distance from 1.9 to 0.9 px for ribosomes, README)
DEFAULT_CENTRING_STEPS = 3000


@dataclass(frozen=True)
class LossSpec:
    """What a loss needs and gives (the loss itself is in :mod:`.losses`).

    Attributes
    ----------
    name : registry name.
    target : ``centres`` (Gaussian centre maps, one channel per class), ``classes`` (class
        indices, 0 = background) or ``binary`` (0/1, one class).
    activation : logits → scores: ``clip`` to [0, 1], ``softmax`` (background first) or ``sigmoid``.
    needs_priors : needs the class priors, i.e. the expected particles per tomogram.
    partial_labels : positive-unlabelled: the annotations may be a small part of the particles.
    help : one line for command-line and form help.
    """

    name: str
    target: str
    activation: str
    needs_priors: bool
    partial_labels: bool
    help: str

    @property
    def multi_class(self) -> bool:
        """Whether one network of this loss can learn several particle classes."""
        return self.target != "binary"

    def out_channels(self, n_classes: int) -> int:
        """Network outputs for ``n_classes`` particle classes."""
        if self.activation == "softmax":
            return n_classes + 1
        return n_classes if self.target == "centres" else 1


LOSS_SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            "huber-gradient",
            "centres",
            "clip",
            False,
            False,
            "Huber + 10 x Huber of second derivatives, regressing Gaussian centres (tomoCPT)",
        ),
        LossSpec("dice", "classes", "softmax", False, False, "multi-class Dice on weak masks (DeepETPicker)"),
        LossSpec(
            "bce", "binary", "sigmoid", True, False, "prior-weighted positive-negative cross-entropy (TomoPicker)"
        ),
        LossSpec("nnpu", "binary", "sigmoid", True, True, "non-negative positive-unlabelled risk (TomoPicker)"),
        LossSpec("kl", "binary", "sigmoid", True, True, "KL-regularised positive-unlabelled risk (TomoPicker)"),
    )
}

#: positive-unlabelled losses: trained on partial annotations, with a prior on the particle count
PU_LOSSES = tuple(name for name, spec in LOSS_SPECS.items() if spec.partial_labels)

#: score threshold of a model that carries no calibrated one (tomoCPT's suggestion)
FALLBACK_THRESHOLD = 0.3
