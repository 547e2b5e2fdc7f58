"""Model registry: name and size → network, and the patch-size multiple each needs."""
from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["MODELS", "MODEL_SIZES", "build_model", "patch_multiple", "smallest_patch"]

MODEL_SIZES = ("small", "default")


def _swinunetr(out_channels: int, size: str) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=out_channels, feature_size=12 if size == "small" else 48,
                     use_v2=True, spatial_dims=3)


def _resunet(out_channels: int, size: str) -> nn.Module:
    from .resunet import ResUNet3D

    return ResUNet3D(1, out_channels, (8, 16, 32, 64) if size == "small" else (16, 32, 64, 128))


def _multiresunet(out_channels: int, size: str) -> nn.Module:
    # TomoPicker §3.3: four down / four up, 32-64-128-256, residual blocks, concatenated
    # skips, transposed-convolution upsampling: MONAI's residual UNet with those channels.
    from monai.networks.nets import UNet

    channels = (8, 16, 32, 64, 64) if size == "small" else (32, 64, 128, 256, 256)
    return UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=channels,
                strides=(2, 2, 2, 2), num_res_units=2)


#: name -> (builder(out_channels, size), patch multiple, smallest patch)
MODELS: dict[str, tuple[Callable[[int, str], nn.Module], int, int]] = {
    # SwinUNETR reduces by 32; its instance norms need more than one voxel at the bottom
    "swinunetr": (_swinunetr, 32, 64),
    "resunet": (_resunet, 8, 16),
    "multiresunet": (_multiresunet, 16, 32),
}


def build_model(name: str, out_channels: int, size: str = "default") -> nn.Module:
    """Backbone ``name`` with ``out_channels`` outputs at ``size`` (small or default).

    Input (B, 1, Z, Y, X), each a multiple of :func:`patch_multiple` → (B, out_channels, Z, Y, X).

    Raises
    ------
    ValueError
        Unknown name or size (the valid ones are listed).
    """
    _entry(name)
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; valid: {list(MODEL_SIZES)}.")
    return MODELS[name][0](out_channels, size)


def _entry(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(MODELS)}.")
    return MODELS[name]


def patch_multiple(name: str) -> int:
    """Patch sizes of backbone ``name`` must be multiples of this."""
    return _entry(name)[1]


def smallest_patch(name: str) -> int:
    """Smallest patch edge backbone ``name`` trains on."""
    return _entry(name)[2]
