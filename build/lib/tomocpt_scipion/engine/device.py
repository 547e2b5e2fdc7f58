"""Where and how networks run: device choice, mixed precision and memory layout.

Shared by training and inference, so neither imports the other.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .models.registry import channels_last

__all__ = ["select_device", "autocast", "place_model", "place_batch"]


def select_device(device: str | None = None) -> torch.device:
    """CUDA (the local rank's GPU under torchrun) when available, else the CPU; or ``device``."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def autocast(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16), full precision on the CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def _memory_format(backbone: str) -> torch.memory_format:
    return torch.channels_last_3d if channels_last(backbone) else torch.contiguous_format


def place_model(model: nn.Module, backbone: str, device: torch.device | str) -> nn.Module:
    """Move ``model`` to ``device`` in the memory layout its convolutions run fastest in."""
    return model.to(device=torch.device(device), memory_format=_memory_format(backbone))


def place_batch(batch: torch.Tensor, backbone: str, device: torch.device | str) -> torch.Tensor:
    """Move a (B, C, Z, Y, X) batch to ``device`` in its network's memory layout."""
    return batch.to(device=torch.device(device), memory_format=_memory_format(backbone))
