"""Training loop: AdamW, plateau LR halving, early stopping, best checkpoint, resume, fine-tune, DDP.

Files written in ``out_dir`` (each atomically, after every epoch):

- ``model.pt``: best checkpoint so far (lowest validation loss), see :mod:`.checkpoint`;
  once training ends, its config carries the score thresholds calibrated on the
  validation tomograms (:mod:`.calibrate`);
- ``model.json``: its config, epoch and validation loss (readable without torch);
- ``last.pt``: the full training state, for ``resume``;
- ``training_log.csv``: epoch, train_loss, val_loss, lr, seconds;
- ``learning_curve.png``.

Multi-GPU: run under ``torchrun --nproc_per_node N``; each process trains on every N-th
patch, gradients are averaged by DDP (NCCL on CUDA, gloo on CPU), and only rank 0 writes.
"""
from __future__ import annotations

import csv
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .calibrate import calibrate_thresholds
from .checkpoint import read_checkpoint, save_checkpoint, write_model_summary
from .config import EngineConfig
from .data import PatchDataset, prepare_tomogram, sample_patches, split_validation
from .io import atomic_path
from .labels import label_voxel_count
from .losses import build_loss, pu_priors
from .device import autocast, place_batch, place_model, select_device
from .models import build_model, encoder_prefixes
from .plots import plot_learning_curve
from .specs import LOSS_SPECS

__all__ = ["train", "TrainingResult"]

logger = logging.getLogger(__name__)

_STATE_FILE = "last.pt"
_MODEL_FILE = "model.pt"
_SUMMARY_FILE = "model.json"
_LOG_FILE = "training_log.csv"
_CURVE_FILE = "learning_curve.png"
_LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


@dataclass
class TrainingResult:
    """Where the model went and how training went."""

    checkpoint: Path
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    config: EngineConfig


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
        raise ValueError(f"coordinates name tomogram(s) {unknown} that are not among the training "
                         f"tomograms {names}.")
    return [coordinates[coordinates["tomo_name"] == name] for name in names]


def _priors(config: EngineConfig, tomograms) -> dict[str, float] | None:
    if not LOSS_SPECS[config.loss].needs_priors:
        return None
    labelled = sum(int(t.positive_mask.sum()) for t in tomograms)
    total = sum(t.volume.size for t in tomograms)
    return pu_priors(labelled, total, config.expected_particles or _labelled_particles(tomograms),
                     label_voxel_count(config.label, config.label_radius_px), total / len(tomograms),
                     _labelled_particles(tomograms))


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
        raise ValueError(f"{path}: model is a {source.model_size} {source.backbone}; cannot fine-tune "
                         f"it as a {config.model_size} {config.backbone}.")
    own = model.state_dict()
    compatible = {k: v for k, v in payload["state_dict"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)
    skipped = len(own) - len(compatible)
    logger.info("Fine-tuning from %s: %d tensors loaded%s", path, len(compatible),
                f", {skipped} re-initialised (different classes)" if skipped else "")


def _run_epoch(model, loader, loss_fn, device, backbone: str, optimizer=None, scaler=None,
               progress: str | None = None) -> tuple[float, int]:
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
    with atomic_path(out_dir / _LOG_FILE, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_LOG_COLUMNS)
            writer.writeheader()
            writer.writerows({k: row[k] for k in _LOG_COLUMNS} for row in history)
    plot_learning_curve(history, out_dir / _CURVE_FILE)


def train(tomograms: Sequence[str | Path], coordinates: pd.DataFrame, config: EngineConfig,
          out_dir: str | Path, validation_tomograms: Sequence[str | Path] = (),
          validation_coordinates: pd.DataFrame | None = None, pixel_size_a: float | None = None,
          resume: bool = False, finetune: str | Path | None = None, overwrite: bool = False,
          device: str | None = None, workers: int = 0,
          on_epoch_end: Callable[[dict], None] | None = None) -> TrainingResult:
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
    out_dir = Path(out_dir)
    config.voxel_size_a = config.diameter_a / config.target_diameter_px if config.diameter_a else 0.0
    config.validate()
    state_path = out_dir / _STATE_FILE
    if not resume and not overwrite and (out_dir / _MODEL_FILE).exists():
        raise FileExistsError(f"{out_dir / _MODEL_FILE}: a trained model exists; resume or overwrite it.")
    if resume and not state_path.exists():
        raise FileNotFoundError(f"{state_path}: nothing to resume in {out_dir}.")
    torch_device = select_device(device)
    rank, world = _distributed(torch_device)

    prepared = [prepare_tomogram(p, c, config, pixel_size_a)
                for p, c in zip(tomograms, _group_by_tomogram(tomograms, coordinates))]
    if validation_tomograms:
        validation = [prepare_tomogram(p, c, config, pixel_size_a) for p, c in zip(
            validation_tomograms, _group_by_tomogram(validation_tomograms, validation_coordinates))]
        training = prepared
    else:
        train_idx, val_idx = split_validation([t.name for t in prepared])
        training = [prepared[i] for i in train_idx]
        validation = [prepared[i] for i in val_idx]
    shared_tomogram = not validation_tomograms and len(prepared) == 1
    unlabelled = [t.name for t in validation if not len(t.xyz_px)]
    if unlabelled:
        raise ValueError(f"validation tomogram(s) {unlabelled} have no particle: the validation loss and the "
                         f"score threshold would mean nothing; give their coordinates or leave them out.")
    loss_fn = build_loss(config.loss, _priors(config, training), config.gamma_scale, config.kl_weight,
                         label_voxel_count(config.label, config.label_radius_px))

    val_corners = sample_patches(validation, config, epoch=0, seed=config.seed + 1)
    if shared_tomogram:  # one tomogram: a fixed 20 % of its patches is held out
        rng = np.random.default_rng([config.seed, 2])
        held = rng.choice(len(val_corners), max(1, round(config.validation_fraction * len(val_corners))),
                          replace=False)
        val_corners = val_corners[np.sort(held)]
        logger.warning("One tomogram: validating on %d of its patches; the validation loss is "
                       "optimistic. Give a validation tomogram for an honest one.", len(val_corners))
    held_keys = {tuple(row) for row in val_corners} if shared_tomogram else set()

    torch.manual_seed(config.seed)
    model = build_model(config.backbone, config.out_channels, config.model_size)
    if finetune:
        _load_finetune_weights(model, finetune, config)
    place_model(model, config.backbone, torch_device)
    optimizer = torch.optim.AdamW(_parameter_groups(model, config, bool(finetune)), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=config.plateau_patience)
    history: list[dict] = []
    start_epoch, best_loss, best_epoch, bad_epochs = 0, float("inf"), -1, 0
    if resume:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_epoch, best_loss, best_epoch, bad_epochs = (state["epoch"], state["best_loss"],
                                                          state["best_epoch"], state["bad_epochs"])
        logger.info("Resuming %s after epoch %d (best validation loss %.4g)", out_dir, start_epoch, best_loss)
    network = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    scaler = _grad_scaler(torch_device)
    val_loader = DataLoader(PatchDataset(validation, _shard(val_corners, rank, world), config, augment=False),
                            batch_size=config.batch_size, num_workers=workers)
    logger.info("Training %s (%s, %s labels, %s loss) on %d tomogram(s), validating on %d patch(es); "
                "%.2f Å/px at the training scale, device %s%s", config.backbone, config.model_size,
                config.label, config.loss, len(training), len(val_corners), config.voxel_size_a,
                torch_device, f", {world} processes" if world > 1 else "")

    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        corners = sample_patches(training, config, epoch)
        if held_keys:
            corners = np.array([c for c in corners if tuple(c) not in held_keys]).reshape(-1, 4)
        order = np.random.default_rng([config.seed, epoch, 3]).permutation(len(corners))
        dataset = PatchDataset(training, _shard(corners[order], rank, world), config, augment=True, epoch=epoch)
        # one batch shape all epoch: a short last batch would pay the kernels' set-up for a new shape
        loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=workers,
                            drop_last=len(dataset) > config.batch_size)
        train_sum = _run_epoch(network, loader, loss_fn, torch_device, config.backbone, optimizer, scaler,
                               progress=f"epoch {epoch + 1}" if rank == 0 else None)
        val_sum = _run_epoch(network, val_loader, loss_fn, torch_device, config.backbone)
        train_loss, val_loss = (_all_mean(s, torch_device, world) for s in (train_sum, val_sum))
        scheduler.step(val_loss)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "lr": optimizer.param_groups[-1]["lr"], "seconds": round(time.time() - started, 2)}
        history.append(row)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch + 1, 0
        else:
            bad_epochs += 1
        if rank == 0:
            if improved:
                save_checkpoint(out_dir / _MODEL_FILE, model, config, epoch + 1, val_loss)
                write_model_summary(out_dir / _SUMMARY_FILE, config, epoch + 1, val_loss)
            _save_state(state_path, model, optimizer, scheduler, history, epoch + 1, best_loss,
                        best_epoch, bad_epochs)
            _write_log(out_dir, history)
            logger.info("epoch %d/%d  loss %.4g  val %.4g%s  lr %.2g  %.1f s", epoch + 1, config.epochs,
                        train_loss, val_loss, " *" if improved else "", row["lr"], row["seconds"])
        if on_epoch_end is not None:
            on_epoch_end(row)
        if bad_epochs >= config.patience:
            logger.info("Early stop: no improvement for %d epochs.", bad_epochs)
            break
    if best_epoch < 1:
        raise ValueError(f"no epoch gave a finite validation loss (last {history[-1]['val_loss'] if history else None}); "
                         f"no model was written to {out_dir}. Check the tomograms and the labels.")
    if rank == 0:
        _calibrate(model, config, validation, torch_device, out_dir, best_epoch, best_loss)
    if world > 1:
        dist.barrier()
    return TrainingResult(out_dir / _MODEL_FILE, history, best_epoch, best_loss, config)


def _calibrate(model, config: EngineConfig, validation, device, out_dir: Path, best_epoch: int,
               best_loss: float) -> None:
    """Reload the best weights, calibrate the score thresholds, store them in the checkpoint."""
    model.load_state_dict(read_checkpoint(out_dir / _MODEL_FILE)["state_dict"])
    model.eval()
    config.thresholds = calibrate_thresholds(model, config, validation, device)
    save_checkpoint(out_dir / _MODEL_FILE, model, config, best_epoch, best_loss)
    write_model_summary(out_dir / _SUMMARY_FILE, config, best_epoch, best_loss)


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


def _save_state(path: Path, model, optimizer, scheduler, history, epoch, best_loss, best_epoch, bad_epochs):
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history, "epoch": epoch, "best_loss": best_loss, "best_epoch": best_epoch,
             "bad_epochs": bad_epochs}
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
