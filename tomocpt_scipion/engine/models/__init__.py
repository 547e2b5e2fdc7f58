"""Backbones by name: ``swinunetr`` (tomoCPT), ``resunet`` (DeepETPicker), ``multiresunet`` (TomoPicker)."""
from .registry import MODELS, build_model, channels_last, encoder_prefixes, patch_multiple, smallest_patch

__all__ = ["MODELS", "build_model", "patch_multiple", "smallest_patch", "encoder_prefixes", "channels_last"]
