"""Training loop: AdamW, plateau LR halving, early stopping, best checkpoint, resume, fine-tune, DDP.

Files written in ``out_dir`` (each atomically):

- after every epoch: ``last.pt``, the full training state for ``resume`` (the run's settings,
  the current and the best weights, optimiser, history); ``training_log.csv`` (epoch,
  train_loss, val_loss, lr, seconds); ``learning_curve.png``;
- when training ends, together: ``model.pt``, the best checkpoint (lowest validation loss,
  see :mod:`.checkpoint`; the last epoch's where the validation annotation is partial under a
  PU loss, see below) whose config carries the score thresholds calibrated on the
  validation tomograms (and, for a PU loss, the training ones too: :mod:`.calibrate`), and
  ``model.json``, its config, epoch and validation loss (readable without torch).

Where a positive-unlabelled loss validates on a partial annotation (fewer labelled particles
per validation tomogram than :data:`.annotation.COMPLETE_ANNOTATION` of the expected ones),
the validation loss rests on a handful of particles (3 for 10 % of a tomogram's ribosomes):
every epoch is trained, with no early stop, and the last weights are kept. On the WBP
benchmark's twenty-tomogram ribosome runs at 10 % of the labels (README, "what was tried"),
the validation loss chose epochs 13-20 of 30, and with the last weights instead the worst of
four seeds went from 0.155 to 0.101 below full labels (mean 0.080 → 0.065; F1 at the best
cut 0.851 → 0.861, two seeds up, two down).

An ensemble (``config.ensemble`` = N > 1) trains its members one after the other, each a
full run as above in ``member_1`` … ``member_N`` (seeds ``seed`` … ``seed + N - 1``); then
the members together are calibrated on the validation tomograms and written as one
``model.pt`` / ``model.json``, with ``training_log.csv`` and ``learning_curve.png`` of all
members. ``resume`` keeps the finished members and resumes the interrupted one.

With ``config.pseudo_labels`` on a sparse annotation, a first run (no centring network) in
``first_pass`` picks in the training tomograms; its confident picks join the labels of the
run in ``out_dir`` (:mod:`.pseudo_labels`). ``resume`` keeps a finished first pass.

A write that fails (full disk, read-only folder) removes what this run created, unless it
resumes a run; an interruption (:class:`TrainingInterrupted`) keeps ``last.pt`` to resume from.

Multi-GPU: run under ``torchrun --nproc_per_node N``; each process trains on every N-th
patch, gradients are averaged by DDP (NCCL on CUDA, gloo on CPU), and only rank 0 writes.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .annotation import ENOUGH_PARTIAL_LABELS, few_partial_labels_warning, is_partial_annotation, labelled_per_class
from .calibrate import (
    CENTRING_EVIDENCE,
    calibrate_thresholds,
    centring_helps,
    fit_score_temperature,
    training_scale_picks,
)
from .centring import centring_diameter_px, centring_network, train_centring
from .checkpoint import load_model, read_checkpoint, save_checkpoint, write_model_summary
from .config import EngineConfig
from .data import (
    PatchDataset,
    PreparedTomogram,
    missing_label_patches,
    prepare_tomogram,
    sample_patches,
    split_validation,
)
from .device import autocast, place_batch, place_model, select_device
from .io import atomic_path, read_mrc, staged_outputs
from .labels import label_voxel_count
from .losses import build_loss, pu_priors
from .models import Ensemble, build_model, encoder_prefixes
from .outputs import TRAIN
from .particle_template import (
    COMPLETE_NETWORK_WEIGHT,
    SPARSE_NETWORK_WEIGHT,
    TEMPLATE_SCALE,
    ParticleTemplate,
    build_template,
)
from .plots import plot_learning_curve
from .preprocess import load_at_training_scale, tomogram_pixel_size
from .pseudo_labels import pseudo_labelled
from .specs import CANDIDATE_FLOOR, LOSS_SPECS, PU_LOSSES

__all__ = ["train", "particle_templates", "TrainingResult", "TrainingInterrupted", "RESUMABLE_SETTINGS"]

logger = logging.getLogger(__name__)

_LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")
#: settings a resumed run may change (more epochs, more patience); every other one must match
RESUMABLE_SETTINGS = ("epochs", "patience")
_UNCOMPARED = ("thresholds", "score_temperature", "engine_version")
#: share of the labelled training particles held out of the centring network's training to show
#: whether it helps, where the validation tomograms hold too few particles (:func:`_centring_network`)
CENTRING_HOLDOUT_FRACTION = 0.2


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by the user (SIGINT) after ``epoch`` finished epochs; ``last.pt`` holds them."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


@dataclass
class TrainingResult:
    """Where the model went and how training went."""

    checkpoint: Path
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    config: EngineConfig


@dataclass(frozen=True)
class _Data:
    """What a run learns from and validates on: MRC files, their coordinate tables (pixels of
    those files) and the pixel size for files whose headers have none."""

    tomograms: Sequence[str | Path]
    coordinates: pd.DataFrame
    validation_tomograms: Sequence[str | Path]
    validation_coordinates: pd.DataFrame | None
    pixel_size_a: float | None


@dataclass(frozen=True)
class _Centring:
    """A trained centring network and the tomograms whose particles it did not learn from,
    on which :func:`.calibrate.centring_helps` decides whether it is kept."""

    weights: dict
    evidence: list


@dataclass(frozen=True)
class _Calibration:
    """What a finished model is calibrated on (:func:`.calibrate.calibrate_thresholds`): the
    validation and training tomograms, prepared with the user's labels (no pseudo-labels), and
    the labelled training particles per class."""

    validation: list
    training: list
    training_labels: Sequence[int]


@dataclass(frozen=True)
class _Runtime:
    """How a run executes, the same for every run of one :func:`train` call."""

    finetune: str | Path | None
    device: str | None
    workers: int
    on_epoch_end: Callable[[dict], None] | None


def _distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _grad_scaler(device: torch.device):
    """fp16 autocast needs loss scaling; bf16 and the CPU do not."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.amp.GradScaler("cuda")
    return None


def _group_by_tomogram(paths: Sequence[str | Path], coordinates: pd.DataFrame) -> list[pd.DataFrame]:
    names = [Path(p).stem for p in paths]
    unknown = sorted(set(coordinates["tomo_name"]) - set(names))
    if unknown:
        raise ValueError(f"coordinates name tomogram(s) {unknown} that are not among the training tomograms {names}.")
    return [coordinates[coordinates["tomo_name"] == name] for name in names]


def _priors(config: EngineConfig, tomograms) -> dict[str, float] | None:
    if not LOSS_SPECS[config.loss].needs_priors:
        return None
    labelled = sum(int(t.positive_mask.sum()) for t in tomograms)
    total = sum(t.volume.size for t in tomograms)
    priors = pu_priors(
        labelled,
        total,
        config.expected_particles or _labelled_particles(tomograms),
        label_voxel_count(config.label, config.label_radius_px),
        total / len(tomograms),
        _labelled_particles(tomograms),
    )
    logger.info(
        "Class priors: %.3g of the voxels are expected to be particle (π'), %.3g are labelled (π, %.0f %%)",
        priors["pi_expected"],
        priors["pi"],
        100 * priors["pi"] / priors["pi_expected"],
    )
    return priors


def _first_pass_model(
    data: _Data, config: EngineConfig, folder: Path, resume: bool, runtime: _Runtime
) -> tuple[nn.Module, EngineConfig]:
    """The model whose picks become pseudo-labels: trained on the labels alone in ``folder``
    (no centring network), or the one a resumed run already finished there."""
    if resume and (folder / TRAIN.model).exists():
        logger.info("First pass: already trained in %s, kept", folder)
    else:
        logger.info("First pass: training on the %d labels alone, for pseudo-labels", len(data.coordinates))
        _train_run(
            data,
            replace(config, pseudo_labels=False, centring_steps=0, thresholds=[]),
            folder,
            resume and (folder / TRAIN.state).exists(),
            True,
            runtime,
        )
    return load_model(folder / TRAIN.model, select_device(runtime.device))


def _sparse_pu_annotation(config: EngineConfig, labelled: int, n_tomograms: int) -> bool:
    """Whether a PU loss learns from fewer labelled particles per tomogram than a complete
    annotation holds (``config`` validated: a PU loss has its expected particles)."""
    return config.loss in PU_LOSSES and is_partial_annotation(labelled / n_tomograms, config.expected_particles)


def _warn_few_partial_labels(config: EngineConfig, coordinates: pd.DataFrame, n_tomograms: int) -> None:
    if config.loss not in PU_LOSSES or not config.expected_particles:
        return  # a PU loss without expected particles is refused by the config's validation
    for name, labelled in zip(config.classes, labelled_per_class(coordinates["class_id"], config.n_classes)):
        warning = few_partial_labels_warning(name, labelled, n_tomograms, config.expected_particles)
        if warning:
            logger.warning(warning)


def _expected_from_annotation(config: EngineConfig, coordinates: pd.DataFrame, n_tomograms: int) -> None:
    """Where a model makes particle templates and the particles expected per tomogram are not
    given (a PU loss always has them, ``config`` validated: this is a loss that learns from a
    complete annotation), they are the labelled ones per tomogram and class: a template matches
    that many best picks per tomogram (:func:`.particle_template.candidate_limit`)."""
    if config.expected_particles or not config.particle_template:
        return
    config.expected_particles = len(coordinates) / n_tomograms / config.n_classes
    logger.info(
        "Expected particles per tomogram and class: %.1f, the labelled ones (the annotation of a %s loss is complete)",
        config.expected_particles,
        config.loss,
    )


def _label_radius_for_annotation(config: EngineConfig, coordinates: pd.DataFrame, n_tomograms: int) -> None:
    """Switch ``config`` to its sparse label radius where a PU loss trains on sparse annotations."""
    sparse_fraction = config.sparse_label_radius_fraction
    if sparse_fraction is None or config.label_radius_fraction == sparse_fraction:
        return
    if not _sparse_pu_annotation(config, len(coordinates), n_tomograms):
        return
    logger.info(
        "Sparse annotation (%.1f labelled of %g expected particles per tomogram): labels of radius %g "
        "instead of %g particle diameters",
        len(coordinates) / n_tomograms,
        config.expected_particles,
        sparse_fraction,
        config.label_radius_fraction,
    )
    config.label_radius_fraction = sparse_fraction


def _log_missing_label_patches(tomograms, config: EngineConfig) -> None:
    for tomo in tomograms:
        extra = missing_label_patches(tomo, config)
        if extra:
            logger.info(
                "%s: %d labelled of %g expected particles; each labelled particle also gets %d centred "
                "patches per epoch, as many as a complete annotation would show",
                tomo.name,
                len(tomo.xyz_px),
                config.expected_particles,
                extra,
            )


def _labelled_particles(tomograms) -> float:
    """Mean labelled particles per prepared tomogram."""
    return float(np.mean([len(t.xyz_px) for t in tomograms]))


def _parameter_groups(model: nn.Module, config: EngineConfig, finetuning: bool) -> list[dict]:
    prefixes = encoder_prefixes(config.backbone)
    if not finetuning or config.encoder_lr_factor == 1.0 or not prefixes:
        return [{"params": list(model.parameters()), "lr": config.lr}]
    encoder, rest = [], []
    for name, parameter in model.named_parameters():
        (encoder if name.startswith(prefixes) else rest).append(parameter)
    return [{"params": encoder, "lr": config.lr * config.encoder_lr_factor}, {"params": rest, "lr": config.lr}]


def _load_finetune_weights(model: nn.Module, path: str | Path, config: EngineConfig) -> None:
    payload = read_checkpoint(path)
    source = EngineConfig.from_dict(payload["config"])
    if source.backbone != config.backbone or source.model_size != config.model_size:
        raise ValueError(
            f"{path}: model is a {source.model_size} {source.backbone}; cannot fine-tune "
            f"it as a {config.model_size} {config.backbone}."
        )
    own = model.state_dict()
    compatible = {k: v for k, v in payload["state_dict"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)
    skipped = len(own) - len(compatible)
    logger.info(
        "Fine-tuning from %s: %d tensors loaded%s",
        path,
        len(compatible),
        f", {skipped} re-initialised (different classes)" if skipped else "",
    )


def _read_state(path: Path, config: EngineConfig) -> dict:
    """The training state of an interrupted run, refused when it is unreadable or its settings differ."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a bad file
        raise ValueError(
            f"{path}: not a readable training state ({type(error).__name__}); start a new run instead of --resume."
        ) from None
    needed = (
        "model",
        "best_model",
        "optimizer",
        "scheduler",
        "history",
        "epoch",
        "best_loss",
        "best_epoch",
        "bad_epochs",
        "config",
    )
    if not isinstance(state, dict) or any(key not in state for key in needed):
        raise ValueError(f"{path}: not a training state of this engine version; start a new run instead of --resume.")
    saved, now = state["config"], config.to_dict()
    differ = [
        f"{key} {saved.get(key)!r} → {now.get(key)!r}"
        for key in sorted(set(saved) | set(now))
        if key not in RESUMABLE_SETTINGS + _UNCOMPARED and saved.get(key) != now.get(key)
    ]
    if differ:
        raise ValueError(
            f"{path}: --resume with other settings than the run's ({'; '.join(differ)}); give the "
            f"same ones, or start a new run in another folder."
        )
    return state


@contextmanager
def _removed_on_failed_write(out_dir: Path, keep: bool):
    """When the run fails (a write error, or no usable epoch), delete the files it created in
    ``out_dir`` (and the folder if it created it) unless ``keep``: nothing half-written stays."""
    created = not out_dir.exists()
    before = set(out_dir.iterdir()) if not created else set()
    try:
        yield
    except (OSError, ValueError):
        if not keep:
            for path in (set(out_dir.iterdir()) if out_dir.exists() else set()) - before:
                if path.is_file():
                    path.unlink(missing_ok=True)
            if created and out_dir.exists() and not any(out_dir.iterdir()):
                out_dir.rmdir()
        raise


def _run_epoch(
    model, loader, loss_fn, device, backbone: str, optimizer=None, scaler=None, progress: str | None = None
) -> tuple[float, int]:
    training = optimizer is not None
    model.train(training)
    total, count = 0.0, 0
    batches = loader
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        batches = tqdm(loader, desc=progress, leave=False, file=sys.stderr)
    context = torch.enable_grad() if training else torch.inference_mode()
    with context:
        for image, target in batches:
            image, target = place_batch(image, backbone, device), target.to(device)
            with autocast(device):
                loss = loss_fn(model(image).float(), target)
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            total += float(loss.detach()) * len(image)
            count += len(image)
    return total, count


def _write_log(out_dir: Path, history: list[dict]) -> None:
    columns = (("member",) if history and "member" in history[0] else ()) + _LOG_COLUMNS
    with atomic_path(out_dir / TRAIN.log, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: row[k] for k in columns} for row in history)
    plot_learning_curve(history, out_dir / TRAIN.curve)


def train(
    tomograms: Sequence[str | Path],
    coordinates: pd.DataFrame,
    config: EngineConfig,
    out_dir: str | Path,
    validation_tomograms: Sequence[str | Path] = (),
    validation_coordinates: pd.DataFrame | None = None,
    pixel_size_a: float | None = None,
    resume: bool = False,
    finetune: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    workers: int = 0,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> TrainingResult:
    """Train a picker.

    Parameters
    ----------
    tomograms : MRC files to train on; their stems are the tomogram names.
    coordinates : coordinate table (pixels of those files, ``class_id`` 1..n).
    config : engine config (see :func:`.config.recipe_config`).
    out_dir : folder for the checkpoint, log and plot.
    validation_tomograms, validation_coordinates : held-out data; without them ~20 % of the
        tomograms (or of the patches, with one tomogram) are held out.
    pixel_size_a : pixel size when MRC headers have none.
    resume : continue the run in ``out_dir`` from its last completed epoch.
    finetune : checkpoint whose weights start the training.
    overwrite : replace a finished run in ``out_dir``. Defaults to False.
    device : torch device; default CUDA when available.
    workers : data-loader worker processes. Defaults to 0.
    on_epoch_end : called with each epoch's log row (progress reporting, tests).

    Raises
    ------
    ValueError
        Bad config, coordinates outside tomograms or naming unknown ones, missing pixel size,
        expected particles smaller than labelled.
    FileExistsError
        ``out_dir`` holds a model and neither ``resume`` nor ``overwrite`` is set.
    """
    _warn_few_partial_labels(config, coordinates, len(tomograms))
    return _train_run(
        _Data(tomograms, coordinates, validation_tomograms, validation_coordinates, pixel_size_a),
        config,
        Path(out_dir),
        resume,
        overwrite,
        _Runtime(finetune, device, workers, on_epoch_end),
    )


def _train_run(
    data: _Data, config: EngineConfig, out_dir: Path, resume: bool, overwrite: bool, runtime: _Runtime
) -> TrainingResult:
    """:func:`train` without its once-per-call warnings: the ensemble's members and the
    pseudo-label first pass are runs of this on the same labels."""
    config.voxel_size_a = config.diameter_a / config.target_diameter_px if config.diameter_a else 0.0
    config.validate()
    state_path = out_dir / TRAIN.state
    if not resume and not overwrite and (out_dir / TRAIN.model).exists():
        raise FileExistsError(f"{out_dir / TRAIN.model}: a trained model exists; resume or overwrite it.")
    labelled = data  # the centring network learns from these labels alone: pseudo-labels sit off-centre
    training_labels = labelled_per_class(data.coordinates["class_id"], config.n_classes)
    if config.pseudo_labels and _sparse_pu_annotation(config, len(data.coordinates), len(data.tomograms)):
        first_model, first_config = _first_pass_model(data, config, out_dir / TRAIN.first_pass, resume, runtime)
        data = replace(
            data,
            coordinates=pseudo_labelled(
                first_model,
                first_config,
                data.tomograms,
                data.coordinates,
                data.pixel_size_a,
                select_device(runtime.device),
            ),
        )
        logger.info("Second pass: training again from fresh weights on %d labels", len(data.coordinates))
    _label_radius_for_annotation(config, data.coordinates, len(data.tomograms))
    _expected_from_annotation(config, data.coordinates, len(data.tomograms))

    def centring(torch_device: torch.device, validation: list) -> _Centring | None:
        return _centring_network(labelled, config, torch_device, validation)

    if config.ensemble > 1:

        def train_member(member_config: EngineConfig, member_dir: Path, resume_member: bool) -> TrainingResult:
            return _train_run(data, member_config, member_dir, resume_member, overwrite, runtime)

        def calibration() -> _Calibration:
            training, validation = _prepared_data(labelled, config)
            return _Calibration(validation, training, training_labels)

        return _train_ensemble(config, out_dir, resume, train_member, calibration, centring, runtime.device)
    if resume and not state_path.exists():
        raise FileNotFoundError(f"{state_path}: nothing to resume in {out_dir}.")
    torch_device = select_device(runtime.device)
    rank, world = _distributed(torch_device)

    training, validation = _prepared_data(data, config)
    shared_tomogram = not data.validation_tomograms and len(data.tomograms) == 1
    loss_fn = build_loss(
        config.loss,
        _priors(config, training),
        config.gamma_scale,
        config.kl_weight,
        label_voxel_count(config.label, config.label_radius_px),
    )

    val_corners = sample_patches(validation, config, epoch=0, seed=config.seed + 1)
    if shared_tomogram:  # one tomogram: a fixed 20 % of its patches is held out
        rng = np.random.default_rng([config.seed, 2])
        held = rng.choice(len(val_corners), max(1, round(config.validation_fraction * len(val_corners))), replace=False)
        val_corners = val_corners[np.sort(held)]
        logger.warning(
            "One tomogram: validating on %d of its patches; the validation loss is "
            "optimistic. Give a validation tomogram for an honest one.",
            len(val_corners),
        )
    held_keys = {tuple(row) for row in val_corners} if shared_tomogram else set()
    validation_labelled = sum(len(t.xyz_px) for t in validation)
    keeps_last = _sparse_pu_annotation(config, validation_labelled, len(validation))
    if keeps_last:
        logger.info(
            "Partial validation annotation (%d labelled particle(s) in %d tomogram(s), %g expected per "
            "tomogram): its loss rests on too few particles to choose an epoch by; training all %d epochs "
            "and keeping the last weights",
            validation_labelled,
            len(validation),
            config.expected_particles,
            config.epochs,
        )

    torch.manual_seed(config.seed)
    model = build_model(config.backbone, config.out_channels, config.model_size)
    if runtime.finetune:
        _load_finetune_weights(model, runtime.finetune, config)
    place_model(model, config.backbone, torch_device)
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config, bool(runtime.finetune)), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=config.plateau_patience
    )
    progress = _Progress()
    if resume:
        state = _read_state(state_path, config)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ValueError(
                f"{state_path}: its weights do not fit this network ({str(error).strip().splitlines()[0]})."
            ) from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = _Progress(
            state["history"],
            state["epoch"],
            state["best_loss"],
            state["best_epoch"],
            state["bad_epochs"],
            state["best_model"],
        )
        logger.info(
            "Resuming %s after epoch %d (best validation loss %.4g)", out_dir, progress.epoch, progress.best_loss
        )
    _log_missing_label_patches(training, config)
    network = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    scaler = _grad_scaler(torch_device)
    val_loader = DataLoader(
        PatchDataset(validation, _shard(val_corners, rank, world), config, augment=False),
        batch_size=config.batch_size,
        num_workers=runtime.workers,
    )
    if world > 1:
        parallel = f", {world} processes"
    else:
        parallel = f" ({torch.get_num_threads()} threads)" if torch_device.type == "cpu" else ""
    logger.info(
        "Training %s (%s, %s labels, %s loss) on %d tomogram(s), validating on %d patch(es); "
        "%.2f Å/px at the training scale, device %s%s",
        config.backbone,
        config.model_size,
        config.label,
        config.loss,
        len(training),
        len(val_corners),
        config.voxel_size_a,
        torch_device,
        parallel,
    )

    run = _Run(
        config,
        model,
        network,
        optimizer,
        scheduler,
        scaler,
        loss_fn,
        torch_device,
        training,
        val_loader,
        held_keys,
        keeps_last,
        rank,
        world,
        runtime.workers,
        out_dir,
    )
    with _removed_on_failed_write(out_dir, keep=resume or rank != 0):
        try:
            _train_epochs(run, progress, runtime.on_epoch_end)
        except KeyboardInterrupt:
            raise TrainingInterrupted(len(progress.history)) from None
        if progress.best_epoch < 1:
            raise ValueError(
                f"no epoch gave a finite validation loss (last "
                f"{progress.history[-1]['val_loss'] if progress.history else None}); no model was "
                f"written to {out_dir}. Check the tomograms and the labels."
            )
        if rank == 0:
            model.load_state_dict(progress.best_weights)
            if labelled is not data:  # calibrated and checked against the user's labels, not pseudo-labels
                training, validation = _prepared_data(labelled, config)
            _calibrate_and_save(
                model.eval(),
                config,
                _Calibration(validation, training, training_labels),
                torch_device,
                out_dir,
                progress.best_epoch,
                progress.best_loss,
                centring=centring(torch_device, validation),
            )
    if world > 1:
        dist.barrier()
    return TrainingResult(out_dir / TRAIN.model, progress.history, progress.best_epoch, progress.best_loss, config)


def _prepared_data(data: _Data, config: EngineConfig) -> tuple[list, list]:
    """Training and validation tomograms at the training scale: the given validation ones, or
    ~20 % of the training ones (all of a single one, whose patches are then split)."""

    def prepare(paths, table) -> list:
        return [
            prepare_tomogram(p, c, config, data.pixel_size_a) for p, c in zip(paths, _group_by_tomogram(paths, table))
        ]

    prepared = prepare(data.tomograms, data.coordinates)
    if data.validation_tomograms:
        validation = prepare(data.validation_tomograms, data.validation_coordinates)
        training = prepared
    else:
        train_idx, val_idx = split_validation([t.name for t in prepared])
        training = [prepared[i] for i in train_idx]
        validation = [prepared[i] for i in val_idx]
    unlabelled = [t.name for t in validation if not len(t.xyz_px)]
    if unlabelled:
        raise ValueError(
            f"validation tomogram(s) {unlabelled} have no particle: the validation loss and the "
            f"score threshold would mean nothing; give their coordinates or leave them out."
        )
    return training, validation


def _train_ensemble(
    config: EngineConfig,
    out_dir: Path,
    resume: bool,
    train_member: Callable[[EngineConfig, Path, bool], TrainingResult],
    calibration: Callable[[], _Calibration],
    centring: Callable[[torch.device, list], _Centring | None],
    device: str | None,
) -> TrainingResult:
    """Train the members one after the other (see the module doc), then one centring network,
    then calibrate and write them as one."""
    results = []
    for k in range(config.ensemble):
        member_dir = out_dir / TRAIN.member_folder.format(k + 1)
        member_config = replace(
            config, ensemble=1, seed=config.seed + k, thresholds=[], centring_steps=0, pseudo_labels=False
        )
        if resume and (member_dir / TRAIN.model).exists():
            payload = read_checkpoint(member_dir / TRAIN.model)
            logger.info("Member %d of %d: already trained in %s, kept", k + 1, config.ensemble, member_dir)
            results.append(
                TrainingResult(
                    member_dir / TRAIN.model,
                    _read_log(member_dir),
                    payload["epoch"],
                    payload["val_loss"],
                    EngineConfig.from_dict(payload["config"]),
                )
            )
            continue
        logger.info("Member %d of %d (seed %d)", k + 1, config.ensemble, member_config.seed)
        results.append(train_member(member_config, member_dir, resume and (member_dir / TRAIN.state).exists()))
    torch_device = select_device(device)
    rank, world = _distributed(torch_device)
    history = [{"member": k + 1, **row} for k, result in enumerate(results) for row in result.history]
    best_epoch = max(result.best_epoch for result in results)
    best_loss = float(np.mean([result.best_val_loss for result in results]))
    if rank == 0:
        ensemble = Ensemble([load_model(result.checkpoint)[0] for result in results])
        place_model(ensemble, config.backbone, torch_device)
        prepared = calibration()
        _calibrate_and_save(
            ensemble,
            config,
            prepared,
            torch_device,
            out_dir,
            best_epoch,
            best_loss,
            history,
            centring(torch_device, prepared.validation),
        )
    if world > 1:
        dist.barrier()
    return TrainingResult(out_dir / TRAIN.model, history, best_epoch, best_loss, config)


def _calibrate_and_save(
    model: nn.Module,
    config: EngineConfig,
    calibration: _Calibration,
    device: torch.device,
    out_dir: Path,
    best_epoch: int,
    best_loss: float,
    history: list[dict] | None = None,
    centring: _Centring | None = None,
) -> None:
    """Calibrate the score thresholds of the finished model (in eval mode), keep the centring
    network only where it helps on its evidence (:mod:`.calibrate`), then write ``model.pt``
    (with the centring network, when kept) and ``model.json`` (and the log of all ensemble
    members, when given) together."""
    config.score_temperature = fit_score_temperature(model, config, calibration.validation, device)
    templates = particle_templates(model, config, calibration.training, calibration.training_labels, device)
    config.thresholds = calibrate_thresholds(
        model, config, calibration.validation, device, calibration.training_labels, calibration.training, templates
    )
    weights = None
    if centring is not None and centring_helps(
        model, config, centring_network(centring.weights, device), centring.evidence, device, templates
    ):
        weights = centring.weights
    if weights is None:
        config.centring_diameter_px = 0.0
    with staged_outputs(out_dir, overwrite=True) as staging:
        save_checkpoint(
            staging / TRAIN.model, model, config, best_epoch, best_loss, centring=weights, templates=templates
        )
        write_model_summary(staging / TRAIN.summary, config, best_epoch, best_loss)
        if history is not None:
            _write_log(staging, history)


def particle_templates(
    model: nn.Module,
    config: EngineConfig,
    training: Sequence[PreparedTomogram],
    training_labels: Sequence[int],
    device: torch.device | str = "cpu",
) -> dict[int, ParticleTemplate]:
    """The particle templates (:mod:`.particle_template`) of the classes the model learned, built
    on the ``training`` tomograms (prepared with the user's labels): their labelled particles and
    the finished model's picks there, the network weighted by whether the annotation of the
    class is sparse or complete. A class the network picks nothing of there gets none (warned).

    Parameters
    ----------
    training_labels : labelled training particles per class (class order).
    """
    device = torch.device(device)
    tomograms = [t for t in training if t.path is not None]
    if not (config.particle_template and config.expected_particles and tomograms):
        return {}
    expected = config.expected_particles * len(tomograms)
    weights = {
        index: SPARSE_NETWORK_WEIGHT if is_partial_annotation(labelled, expected) else COMPLETE_NETWORK_WEIGHT
        for index, labelled in enumerate(training_labels)
        if labelled
    }
    picks = training_scale_picks(model, config, tomograms, device) if weights else []
    for index in [i for i in weights if picks[i].empty]:
        # the match is standardised over the network's picks: with none there is no scale to add it on
        logger.warning(
            "Class %s: no particle template, the network picks nothing above a score of %g in the training "
            "tomograms (train longer?); its picks keep the network's scores",
            config.classes[index],
            CANDIDATE_FLOOR,
        )
        del weights[index]
    if not weights:
        return {}
    loaded = [
        load_at_training_scale(
            t.path, config.diameter_a, config.target_diameter_px * TEMPLATE_SCALE, config.normalisation, t.pixel_size_a
        )
        for t in tomograms
    ]
    templates = {}
    for index, weight in weights.items():
        started = time.time()
        # pixels at the training scale → at the template scale, (z, y, x)
        ratios = [volume.zoom / t.zoom for volume, t in zip(loaded, tomograms)]
        labelled = [t.xyz_px[t.class_ids == index + 1][:, ::-1] * r for t, r in zip(tomograms, ratios)]
        candidates = []
        for t, ratio in zip(tomograms, ratios):
            own = picks[index][picks[index]["tomo_name"] == t.name]
            candidates.append(own.assign(**{axis: own[axis] * ratio for axis in "xyz"}))
        templates[index] = build_template(
            [volume.volume for volume in loaded],
            labelled,
            candidates,
            config.training_diameters_px[index] * TEMPLATE_SCALE,
            config.expected_particles,
            weight,
        )
        logger.info(
            "Class %s: particle template made from %d labelled particle(s) and the best-matching picks of %d "
            "training tomogram(s) in %.0f s; every pick is rescored by its match to it",
            config.classes[index],
            sum(len(c) for c in labelled),
            len(tomograms),
            time.time() - started,
        )
    return templates


def _centring_network(data: _Data, config: EngineConfig, device: torch.device, validation: list) -> _Centring | None:
    """Train the centring network on the labelled centres (:mod:`.centring`) and set
    ``config.centring_diameter_px``; None when ``config.centring_steps`` is 0, or when nothing
    can show that it helps (:func:`.calibrate.centring_helps`).

    Its evidence is the ``validation`` tomograms (prepared, with their particles), whose particles
    it does not learn from, also where they were split off the training tomograms. Where they
    hold fewer than :data:`.calibrate.CENTRING_EVIDENCE` particles, or are the one training
    tomogram itself, and the training ones hold at least :data:`.annotation.ENOUGH_PARTIAL_LABELS`
    labelled particles (a partial annotation of a project, whose validation tomogram holds a few),
    :data:`CENTRING_HOLDOUT_FRACTION` of those are held out of the centring network's training and
    join the evidence."""
    if not config.centring_steps:
        return None
    validation_names = {t.name for t in validation}
    coordinates = data.coordinates.reset_index(drop=True)  # drop() goes by index
    validating = coordinates["tomo_name"].isin(validation_names)
    if validating.all():  # one tomogram trains and validates: its particles show nothing the network did not see
        evidence, split_off, split_off_rows = [], [], coordinates.iloc[:0]
    else:
        evidence = list(validation)
        split_off = [p for p in data.tomograms if Path(p).stem in validation_names]
        split_off_rows = coordinates[validating]
        coordinates = coordinates[~validating].reset_index(drop=True)
    validation_particles = sum(len(t.xyz_px) for t in evidence)
    if validation_particles < CENTRING_EVIDENCE and len(coordinates) >= ENOUGH_PARTIAL_LABELS:
        held_out = coordinates.sample(frac=CENTRING_HOLDOUT_FRACTION, random_state=config.seed)
        coordinates = coordinates.drop(held_out.index)
        names = set(held_out["tomo_name"])
        holding = [p for p in data.tomograms if Path(p).stem in names]
        evidence += [
            prepare_tomogram(p, rows, config, data.pixel_size_a)
            for p, rows in zip(holding, _group_by_tomogram(holding, held_out))
        ]
        logger.info(
            "Centring network: %d of the %d labelled training particles held out to show whether it helps "
            "(the validation tomograms hold %d it does not learn from)",
            len(held_out),
            len(held_out) + len(coordinates),
            validation_particles,
        )
    elif validation_particles < CENTRING_EVIDENCE:
        logger.info(
            "Centring network not trained: the validation tomograms hold %d particle(s) it would not learn "
            "from, fewer than the %d needed to show that it helps, and the training ones %d labelled, fewer "
            "than the %d of which a share would be held out to show it; picks stay refined on the score map",
            validation_particles,
            CENTRING_EVIDENCE,
            len(coordinates),
            ENOUGH_PARTIAL_LABELS,
        )
        return None
    _, header_pixel = read_mrc(data.tomograms[0])
    file_diameter_px = config.diameter_a / tomogram_pixel_size(data.tomograms[0], header_pixel, data.pixel_size_a)
    config.centring_diameter_px = centring_diameter_px(config.target_diameter_px, file_diameter_px)

    def at_centring_scale(paths, table) -> list[tuple[np.ndarray, np.ndarray]]:
        pairs = []
        for path, rows in zip(paths, _group_by_tomogram(paths, table)):
            loaded = load_at_training_scale(
                path, config.diameter_a, config.centring_diameter_px, config.normalisation, data.pixel_size_a
            )
            pairs.append((loaded.volume, rows[["x", "y", "z"]].to_numpy(float)[:, ::-1] * loaded.zoom))
        return pairs

    if data.validation_tomograms:
        validation_pairs = at_centring_scale(data.validation_tomograms, data.validation_coordinates)
    else:
        validation_pairs = at_centring_scale(split_off, split_off_rows)
    learned_from = [p for p in data.tomograms if p not in split_off]
    weights, distance = train_centring(
        at_centring_scale(learned_from, coordinates),
        validation_pairs,
        config.centring_crop_diameter_px,
        config.centring_steps,
        config.seed,
        device,
    )
    logger.info(
        "Centring network: mean validation distance %.2f px of the tomogram",
        distance * file_diameter_px / config.centring_diameter_px,
    )
    return _Centring(weights, evidence)


def _read_log(out_dir: Path) -> list[dict]:
    """The rows of a finished run's ``training_log.csv`` (numbers as floats, epochs as ints)."""
    table = pd.read_csv(out_dir / TRAIN.log)
    return [{**row, "epoch": int(row["epoch"])} for row in table.to_dict("records")]


@dataclass
class _Run:
    """What the epochs of one training run need (set up once by :func:`train`)."""

    config: EngineConfig
    model: nn.Module
    network: nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module
    device: torch.device
    training: list
    val_loader: DataLoader
    held_keys: set
    #: partial validation annotation under a PU loss: no early stop, the last epoch's weights are kept
    keeps_last: bool
    rank: int
    world: int
    workers: int
    out_dir: Path


@dataclass
class _Progress:
    """Where a run stands; saved in ``last.pt`` after every epoch."""

    history: list[dict] = field(default_factory=list)
    epoch: int = 0
    best_loss: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    best_weights: dict | None = None


def _train_epochs(run: _Run, progress: _Progress, on_epoch_end) -> None:
    """Epochs from ``progress.epoch`` until the last or an early stop, updating ``progress``."""
    config, rank, world, torch_device = run.config, run.rank, run.world, run.device
    for epoch in range(progress.epoch, config.epochs):
        started = time.time()
        corners = sample_patches(
            run.training, config, epoch, min_patches=config.min_patches_per_epoch, shift_grid=not run.held_keys
        )
        if run.held_keys:
            corners = np.array([c for c in corners if tuple(c) not in run.held_keys]).reshape(-1, 4)
        order = np.random.default_rng([config.seed, epoch, 3]).permutation(len(corners))
        dataset = PatchDataset(run.training, _shard(corners[order], rank, world), config, augment=True, epoch=epoch)
        # one batch shape all epoch: a short last batch would pay the kernels' set-up for a new shape
        loader = DataLoader(
            dataset, batch_size=config.batch_size, num_workers=run.workers, drop_last=len(dataset) > config.batch_size
        )
        train_sum = _run_epoch(
            run.network,
            loader,
            run.loss_fn,
            torch_device,
            config.backbone,
            run.optimizer,
            run.scaler,
            progress=f"epoch {epoch + 1}" if rank == 0 else None,
        )
        val_sum = _run_epoch(run.network, run.val_loader, run.loss_fn, torch_device, config.backbone)
        train_loss, val_loss = (_all_mean(s, torch_device, world) for s in (train_sum, val_sum))
        run.scheduler.step(val_loss)
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": run.optimizer.param_groups[-1]["lr"],
            "seconds": round(time.time() - started, 2),
        }
        progress.history.append(row)
        progress.epoch = epoch + 1
        improved = val_loss < progress.best_loss or (run.keeps_last and math.isfinite(val_loss))
        if improved:
            progress.best_loss, progress.best_epoch, progress.bad_epochs = val_loss, epoch + 1, 0
            progress.best_weights = _cpu_weights(run.model)
        else:
            progress.bad_epochs += 1
        if rank == 0:
            _save_state(run, progress)
            _write_log(run.out_dir, progress.history)
            logger.info(
                "epoch %d/%d  loss %.4g  val %.4g%s  lr %.2g  %.1f s",
                epoch + 1,
                config.epochs,
                train_loss,
                val_loss,
                " *" if improved else "",
                row["lr"],
                row["seconds"],
            )
        if on_epoch_end is not None:
            on_epoch_end(row)
        if progress.bad_epochs >= config.patience:
            logger.info("Early stop: no improvement for %d epochs.", progress.bad_epochs)
            break


def _cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _shard(corners: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank's share of the patches; every rank gets as many (DDP steps in lock-step), by wrap-around."""
    if world == 1 or len(corners) == 0:
        return corners
    padded = np.resize(corners, (-(-len(corners) // world) * world, corners.shape[1]))
    return padded[rank::world]


def _all_mean(total_count: tuple[float, int], device: torch.device, world: int) -> float:
    total, count = total_count
    if world > 1:
        values = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(values)
        total, count = values.tolist()
    return total / max(count, 1)


def _save_state(run: _Run, progress: _Progress) -> None:
    state = {
        "model": _cpu_weights(run.model),
        "best_model": progress.best_weights,
        "config": run.config.to_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "history": progress.history,
        "epoch": progress.epoch,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs,
    }
    with atomic_path(run.out_dir / TRAIN.state, overwrite=True) as tmp:
        torch.save(state, tmp)
