"""Checkpoints: one file with the weights and the full engine config, safe to load.

A checkpoint is a dict of plain types and tensors, so ``torch.load(weights_only=True)``
reads it without unpickling arbitrary objects:
``{"format": CHECKPOINT_FORMAT, "state_dict": ..., "config": EngineConfig.to_dict(),
"epoch": int, "val_loss": float}``, and ``"centring"``, the weights of the centring network
(:mod:`.centring`), when one was trained, and ``"templates"``, ``{class index: template}``
(:class:`.particle_template.ParticleTemplate`), when training made any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .centring import centring_network
from .config import EngineConfig
from .device import place_model
from .io import atomic_path
from .models import build_network
from .particle_template import ParticleTemplate

__all__ = [
    "CHECKPOINT_FORMAT",
    "save_checkpoint",
    "read_checkpoint",
    "load_model",
    "load_centring",
    "load_templates",
    "write_model_summary",
]

CHECKPOINT_FORMAT = "tomocpt-checkpoint-1"


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: EngineConfig,
    epoch: int,
    val_loss: float,
    overwrite: bool = True,
    centring: dict[str, torch.Tensor] | None = None,
    templates: dict[int, ParticleTemplate] | None = None,
) -> Path:
    """Write weights + config (+ the centring network's weights, the particle templates)
    atomically (plain CPU tensors)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state,
        "config": config.to_dict(),
        "epoch": int(epoch),
        "val_loss": float(val_loss),
    }
    if centring is not None:
        payload["centring"] = {k: v.detach().cpu() for k, v in centring.items()}
    if templates:
        payload["templates"] = {str(index): template.to_payload() for index, template in templates.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint file (on the CPU).

    Raises
    ------
    ValueError
        The file is not a tomocpt checkpoint (with what was found instead).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a bad file
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error}).") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a tomocpt checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}).")
    return payload


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, EngineConfig]:
    """Rebuild the network of a checkpoint with its weights, in eval mode on ``device``.

    Raises
    ------
    ValueError
        Not a checkpoint, an unreadable config, or weights that do not fit the network the
        config describes (the message names the file and the network).
    """
    payload = read_checkpoint(path)
    try:
        config = EngineConfig.from_dict(payload["config"])
        model = build_network(config.backbone, config.out_channels, config.model_size, config.ensemble)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: its config cannot be read ({type(error).__name__}: {error}).") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        members = f", an ensemble of {config.ensemble}" if config.ensemble > 1 else ""
        raise ValueError(
            f"{path}: its weights do not fit the network its config describes ({config.model_size} "
            f"{config.backbone}, {config.out_channels} output channel(s){members}): {first_line}"
        ) from None
    return place_model(model, config.backbone, device).eval(), config


def load_centring(path: str | Path, device: torch.device | str = "cpu") -> nn.Module | None:
    """The centring network of a checkpoint in eval mode on ``device``; None when it has none.

    Raises
    ------
    ValueError
        Not a checkpoint, or centring weights that do not fit the centring network.
    """
    payload = read_checkpoint(path)
    if "centring" not in payload:
        return None
    try:
        return centring_network(payload["centring"], device)
    except (RuntimeError, AttributeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"{path}: its centring weights do not fit the centring network: {first_line}") from None


def load_templates(path: str | Path) -> dict[int, ParticleTemplate]:
    """The particle templates of a checkpoint, class index (0-based) → template; empty when it has none.

    Raises
    ------
    ValueError
        Not a checkpoint, or a template entry that is not one.
    """
    payload = read_checkpoint(path)
    try:
        return {
            int(index): ParticleTemplate.from_payload(entry) for index, entry in payload.get("templates", {}).items()
        }
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: its particle templates cannot be read ({type(error).__name__}: {error}).") from None


def write_model_summary(path: str | Path, config: EngineConfig, epoch: int, val_loss: float) -> Path:
    """JSON beside a checkpoint: its config, epoch and validation loss, for readers without torch."""
    summary = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "epoch": int(epoch),
        "val_loss": float(val_loss),
    }
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return Path(path)
