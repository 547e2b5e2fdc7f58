"""Engine configuration: one typed dataclass, three named recipes, plain-type round trip.

A checkpoint stores :meth:`EngineConfig.to_dict` (plain types only), so inference rebuilds
exactly the network, the rescaling and the normalisation used at training time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from . import __version__
from .labels import LABELS
from .losses import LOSSES
from .models.registry import MODEL_SIZES, MODELS, patch_multiple, smallest_patch
from .preprocess import NORMALISATIONS
from .specs import DEFAULT_CENTRING_STEPS, FALLBACK_THRESHOLD, LOSS_SPECS, RECIPE_SPECS

__all__ = ["EngineConfig", "RECIPES", "recipe_config", "SAMPLINGS", "AUGMENTATIONS"]

#: patch sampling strategies (see data.py)
SAMPLINGS = ("cubes", "centred", "all")
AUGMENTATIONS = ("rot90", "flip", "affine", "invert", "wedge")


@dataclass
class EngineConfig:
    """Everything that defines a model and how it was trained.

    Attributes
    ----------
    recipe : name of the recipe this config started from (informational).
    backbone, model_size : network, see :mod:`.models`.
    label : label kind, see :mod:`.labels`.
    loss : loss name, see :mod:`.losses`.
    classes : class names, one per coordinate set; class i + 1 is ``classes[i]``.
    diameter_a : particle diameter in Å that sets the training scale (with several class
        diameters: the smallest).
    class_diameters_a : diameter of each class, Å, in class order; empty = every class has
        ``diameter_a``. Label radius, peak radius, minimum distance, merge and hit radius of a
        class scale with its diameter (see :attr:`diameters_a`).
    target_diameter_px : particle diameter after rescaling, pixels (tomoCPT: 10).
    label_radius_fraction : label radius R as a fraction of the rescaled particle diameter
        (0.5 = the particle radius; DeepETPicker's TBall of d = 7 for 10 px particles is 0.3).
    sparse_label_radius_fraction : label radius fraction used instead where a PU loss trains on
        sparse annotations (fewer labelled particles per tomogram than
        :data:`.annotation.COMPLETE_ANNOTATION` of the expected ones); None = never. Training
        stores the fraction it used in ``label_radius_fraction``.
    normalisation : ``robust``, ``std-clip`` or ``none``.
    patch_size : cubic patch edge, pixels at the training scale.
    stride : stride of the ``cubes`` and ``all`` samplings, pixels.
    sampling : ``cubes`` (tomoCPT), ``centred`` (DeepETPicker) or ``all`` (TomoPicker PU).
    jitter_px : random shift of particle-centred patches, pixels.
    pseudo_labels : on sparse annotations with a PU loss, train a first model, add its
        confident picks in the training tomograms to the labels and train again
        (:mod:`.pseudo_labels`).
    particle_template : average each class's labelled particles (and the training picks that
        match them best) into a template and rescore every pick by its local match, the
        network's score weighing more where the annotation is complete
        (:mod:`.particle_template`). A loss that is not PU then takes its expected particles per
        tomogram, where not given, from the labels.
    min_patches_per_epoch : an epoch repeats its sampling until it holds at least this many
        patches (see :func:`.data.sample_patches`); 0 = one sampling per epoch.
    augment : augmentations switched on, from :data:`AUGMENTATIONS`.
    epochs, batch_size, lr, weight_decay, patience, plateau_patience : training loop.
    encoder_lr_factor : learning-rate factor of the encoder when fine-tuning (1 = same).
    seed : random seed of everything.
    ensemble : networks trained (seeds ``seed``, ``seed + 1``, …) and scored together, their
        scores averaged; 1 = one network.
    expected_particles : expected particles per tomogram (PU losses).
    gamma_scale, kl_weight : TomoPicker γ = gamma_scale |P| / bs, and λ of the KL loss.
    validation_fraction : patch fraction held out when there is one training tomogram.
    centring_steps : optimiser steps of the centring network trained after the picking
        network (:mod:`.centring`); 0 = none (picks are refined on the score map only).
    voxel_size_a : Å per pixel at the training scale (set by training).
    centring_diameter_px : particle diameter at the centring scale, pixels (set by training).
    thresholds : score threshold per class, calibrated on the validation tomograms after
        training (empty: not calibrated, :data:`.specs.FALLBACK_THRESHOLD` applies).
    score_temperature : the logits are divided by it before the sigmoid or softmax, so that
        the best particles' scores stay apart below 1 in float32 (set by calibration, see
        :func:`.calibrate.fit_score_temperature`; 1 = plain probabilities).
    engine_version : engine version that trained the model.
    """

    recipe: str = "custom"
    backbone: str = "resunet"
    model_size: str = "default"
    label: str = "tball"
    loss: str = "dice"
    classes: list[str] = field(default_factory=lambda: ["particle"])
    diameter_a: float = 0.0
    class_diameters_a: list[float] = field(default_factory=list)
    target_diameter_px: float = 10.0
    label_radius_fraction: float = 0.3
    sparse_label_radius_fraction: float | None = None
    normalisation: str = "robust"
    patch_size: int = 64
    stride: int = 32
    sampling: str = "centred"
    jitter_px: int = 8
    min_patches_per_epoch: int = 0
    pseudo_labels: bool = False
    particle_template: bool = False
    augment: list[str] = field(default_factory=lambda: ["rot90", "flip", "invert"])
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 20
    plateau_patience: int = 6
    encoder_lr_factor: float = 1.0
    seed: int = 0
    ensemble: int = 1
    expected_particles: float | None = None
    gamma_scale: float = 10.0
    kl_weight: float = 1.0
    validation_fraction: float = 0.2
    centring_steps: int = DEFAULT_CENTRING_STEPS
    voxel_size_a: float = 0.0
    centring_diameter_px: float = 0.0
    thresholds: list[float] = field(default_factory=list)
    score_temperature: float = 1.0
    engine_version: str = __version__

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        self.augment = list(self.augment)
        self.thresholds = [float(t) for t in self.thresholds]
        self.class_diameters_a = [float(d) for d in self.class_diameters_a]
        if self.class_diameters_a and not self.diameter_a:
            self.diameter_a = min(self.class_diameters_a)

    def class_threshold(self, class_index: int) -> float:
        """Calibrated score threshold of class ``class_index`` (0-based), or the fallback."""
        return self.thresholds[class_index] if self.thresholds else FALLBACK_THRESHOLD

    @property
    def n_classes(self) -> int:
        """Number of particle classes."""
        return len(self.classes)

    @property
    def out_channels(self) -> int:
        """Network outputs: n + 1 for Dice (background first), n for centre maps, 1 for binary losses."""
        return LOSS_SPECS[self.loss].out_channels(self.n_classes)

    @property
    def label_radius_px(self) -> float:
        """Label radius R in pixels at the training scale (of a ``diameter_a`` particle)."""
        return self.label_radius_fraction * self.target_diameter_px

    @property
    def diameters_a(self) -> list[float]:
        """Particle diameter of each class, Å."""
        return list(self.class_diameters_a) or [self.diameter_a] * self.n_classes

    @property
    def class_sizes(self) -> list[float]:
        """Each class's diameter relative to ``diameter_a`` (the training scale's particle)."""
        return [d / self.diameter_a for d in self.diameters_a]

    @property
    def training_diameters_px(self) -> list[float]:
        """Particle diameter of each class at the training scale, pixels."""
        return [self.target_diameter_px * size for size in self.class_sizes]

    @property
    def centring_crop_diameter_px(self) -> float:
        """Diameter of the largest class at the centring scale: centring crops are sized by it."""
        return self.centring_diameter_px * max(self.class_sizes)

    @property
    def label_radii_px(self) -> list[float]:
        """Label radius of each class, pixels at the training scale."""
        return [self.label_radius_px * size for size in self.class_sizes]

    def validate(self) -> EngineConfig:
        """Check every value; return self.

        Raises
        ------
        ValueError
            The first bad value, with the valid choices.
        """
        choices = {
            "backbone": MODELS,
            "model_size": MODEL_SIZES,
            "label": LABELS,
            "loss": LOSSES,
            "normalisation": NORMALISATIONS,
            "sampling": SAMPLINGS,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: {sorted(valid)}.")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; valid: {list(AUGMENTATIONS)}.")
        if not self.diameter_a > 0:
            raise ValueError(f"particle diameter must be > 0 Å, got {self.diameter_a}.")
        if not self.classes:
            raise ValueError("at least one class is needed.")
        if self.class_diameters_a and len(self.class_diameters_a) != self.n_classes:
            raise ValueError(
                f"{len(self.class_diameters_a)} class diameter(s) for {self.n_classes} class(es) "
                f"{self.classes}: give one diameter, or one per class."
            )
        if not all(d > 0 for d in self.class_diameters_a):
            raise ValueError(f"class diameters must be > 0 Å, got {self.class_diameters_a}.")
        multiple, smallest = patch_multiple(self.backbone), smallest_patch(self.backbone)
        if self.patch_size % multiple or self.patch_size < smallest:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of {multiple} and at "
                f"least {smallest} for backbone {self.backbone}."
            )
        if self.stride > self.patch_size:
            raise ValueError(
                f"stride {self.stride} is larger than patch_size {self.patch_size}: "
                f"parts of the tomograms would never be seen."
            )
        spec = LOSS_SPECS[self.loss]
        if (spec.target == "centres") != (self.label == "gaussian"):
            raise ValueError(
                f"loss {self.loss!r} does not fit label {self.label!r}: huber-gradient "
                f"learns Gaussian centre labels, the others classify voxels."
            )
        if not spec.multi_class and self.n_classes > 1:
            raise ValueError(f"loss {self.loss!r} is binary; got {self.n_classes} classes.")
        if spec.partial_labels and not self.expected_particles:
            raise ValueError(f"loss {self.loss!r} needs the expected number of particles per tomogram.")
        for name in ("target_diameter_px", "label_radius_fraction", "lr", "stride", "batch_size", "epochs", "ensemble"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.sparse_label_radius_fraction is not None and not self.sparse_label_radius_fraction > 0:
            raise ValueError(f"sparse_label_radius_fraction must be > 0, got {self.sparse_label_radius_fraction}.")
        if not self.centring_steps >= 0:
            raise ValueError(f"centring_steps must be >= 0, got {self.centring_steps}.")
        return self

    def for_diameter(self, diameter_a: float) -> EngineConfig:
        """A copy that picks particles of ``diameter_a`` (Å) instead of ``diameter_a``: every
        class's diameter scales by the same ratio, so tomograms are rescaled to make them look
        like the training particles."""
        ratio = diameter_a / self.diameter_a
        return replace(self, diameter_a=diameter_a, class_diameters_a=[d * ratio for d in self.class_diameters_a])

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (safe for ``torch.load(weights_only=True)``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EngineConfig:
        """Rebuild from :meth:`to_dict`, ignoring keys of other engine versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


#: recipe -> the settings of its paper beside its :data:`.specs.RECIPE_SPECS` (network, loss,
#: particle templates); every one can still be changed afterwards
RECIPES: dict[str, dict[str, Any]] = {
    "tomocpt": dict(
        label="gaussian",
        label_radius_fraction=0.5,
        normalisation="robust",
        patch_size=64,
        stride=32,
        sampling="cubes",
        epochs=150,
        batch_size=10,
        lr=4e-4,
        weight_decay=1e-10,
        patience=36,
        plateau_patience=6,
    ),
    "deepetpicker": dict(
        label="tball",
        label_radius_fraction=0.3,
        normalisation="robust",
        patch_size=64,
        sampling="centred",
        jitter_px=8,
        epochs=100,
        batch_size=8,
        lr=1e-3,
        weight_decay=0.01,
        patience=20,
        augment=["rot90", "flip", "affine", "invert"],
    ),
    "tomopicker": dict(
        label="sphere",
        label_radius_fraction=0.5,
        # not the paper's: smaller spheres picked better from sparse labels on the WBP benchmark (README)
        sparse_label_radius_fraction=0.25,
        normalisation="std-clip",
        patch_size=64,
        stride=64,
        sampling="all",
        # not the paper's: a small tomogram's grid is a few optimiser steps per epoch (README)
        min_patches_per_epoch=256,
        epochs=20,
        batch_size=8,
        lr=2e-3,
        weight_decay=0.0,
        patience=10,
        plateau_patience=5,
    ),
}


def recipe_config(recipe: str, **overrides: Any) -> EngineConfig:
    """Config of a named recipe with ``overrides`` applied (None values are ignored).

    Raises
    ------
    ValueError
        Unknown recipe or unknown override name.
    """
    if recipe not in RECIPES and recipe != "custom":
        raise ValueError(f"unknown recipe {recipe!r}; valid: {sorted(RECIPES)}.")
    known = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}.")
    spec = RECIPE_SPECS.get(recipe)
    identity = (
        {} if spec is None else dict(backbone=spec.backbone, loss=spec.loss, particle_template=spec.particle_template)
    )
    base = {**identity, **RECIPES.get(recipe, {})}
    given = {k: v for k, v in overrides.items() if v is not None}
    if "patch_size" in given and "stride" not in given and "stride" in base:
        # keep the recipe's overlap: tomoCPT's stride is half a cube, TomoPicker's a whole one
        given["stride"] = max(1, round(given["patch_size"] * base["stride"] / base["patch_size"]))
    return EngineConfig(recipe=recipe, **{**base, **given})
