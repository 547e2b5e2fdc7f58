"""Backbones by name: ``swinunetr`` (tomoCPT), ``resunet`` (DeepETPicker), ``multiresunet`` (TomoPicker)."""

from .ensemble import Ensemble
from .registry import MODELS, build_model, channels_last, encoder_prefixes, patch_multiple, smallest_patch

__all__ = [
    "MODELS",
    "build_model",
    "build_network",
    "patch_multiple",
    "smallest_patch",
    "encoder_prefixes",
    "channels_last",
    "Ensemble",
]


def build_network(backbone: str, out_channels: int, size: str = "default", members: int = 1):
    """:func:`build_model`, or an :class:`Ensemble` of ``members`` of them when ``members`` > 1."""
    if members == 1:
        return build_model(backbone, out_channels, size)
    return Ensemble([build_model(backbone, out_channels, size) for _ in range(members)])
