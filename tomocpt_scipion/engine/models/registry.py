"""Backbone registry: name and size → network, and what training and inference need to know of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..specs import MODEL_SIZES

__all__ = [
    "BackboneSpec",
    "MODELS",
    "MODEL_SIZES",
    "build_model",
    "patch_multiple",
    "smallest_patch",
    "encoder_prefixes",
    "channels_last",
]


def _swinunetr(out_channels: int, size: str) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=1,
        out_channels=out_channels,
        feature_size=12 if size == "small" else 48,
        use_v2=True,
        spatial_dims=3,
    )


def _resunet(out_channels: int, size: str) -> nn.Module:
    from .resunet import ResUNet3D

    return ResUNet3D(1, out_channels, (8, 16, 32, 64) if size == "small" else (16, 32, 64, 128))


def _multiresunet(out_channels: int, size: str) -> nn.Module:
    # The name is TomoPicker's ("MultiRes-Unet"), but its §3.3 describes the network as four
    # down / four up levels of *ResUNet blocks* (a residual connection around two
    # convolutions), 32-64-128-256 channels, concatenated skips, transposed-convolution
    # upsampling and "the default configuration of using ResUNet layer": that is MONAI's
    # residual UNet with those channels, not Ibtehaz & Rahman's MultiRes blocks and Res paths.
    from monai.networks.nets import UNet

    channels = (8, 16, 32, 64, 64) if size == "small" else (32, 64, 128, 256, 256)
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=out_channels,
        channels=channels,
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone.

    Attributes
    ----------
    builder : (out_channels, size) → network.
    patch_multiple : patch edges must be multiples of this (the network's total downsampling).
    smallest_patch : smallest patch edge it trains on.
    encoder_prefixes : parameter-name prefixes of its encoder (fine-tuning learning rate).
    channels_last : its convolutions run faster in the channels-last-3d layout (oneDNN on
        CPUs, cuDNN under mixed precision); measured by ``benchmarks/speed.py``.
    """

    builder: Callable[[int, str], nn.Module]
    patch_multiple: int
    smallest_patch: int
    encoder_prefixes: tuple[str, ...]
    channels_last: bool


MODELS: dict[str, BackboneSpec] = {
    # SwinUNETR reduces by 32; its instance norms need more than one voxel at the bottom
    "swinunetr": BackboneSpec(
        _swinunetr, 32, 64, ("swinViT", "encoder1.", "encoder2.", "encoder3.", "encoder4.", "encoder10."), False
    ),
    "resunet": BackboneSpec(_resunet, 8, 16, ("encoders.",), True),
    "multiresunet": BackboneSpec(_multiresunet, 16, 32, (), True),
}


def build_model(name: str, out_channels: int, size: str = "default") -> nn.Module:
    """Backbone ``name`` with ``out_channels`` outputs at ``size`` (small or default).

    Input (B, 1, Z, Y, X), each a multiple of :func:`patch_multiple` → (B, out_channels, Z, Y, X).

    Raises
    ------
    ValueError
        Unknown name or size (the valid ones are listed).
    """
    spec = _entry(name)
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; valid: {list(MODEL_SIZES)}.")
    return spec.builder(out_channels, size)


def _entry(name: str) -> BackboneSpec:
    if name not in MODELS:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(MODELS)}.")
    return MODELS[name]


def patch_multiple(name: str) -> int:
    """Patch sizes of backbone ``name`` must be multiples of this."""
    return _entry(name).patch_multiple


def smallest_patch(name: str) -> int:
    """Smallest patch edge backbone ``name`` trains on."""
    return _entry(name).smallest_patch


def encoder_prefixes(name: str) -> tuple[str, ...]:
    """Parameter-name prefixes of the encoder of backbone ``name`` (empty: not split)."""
    return _entry(name).encoder_prefixes


def channels_last(name: str) -> bool:
    """Whether backbone ``name`` runs in the channels-last-3d memory layout."""
    return _entry(name).channels_last
