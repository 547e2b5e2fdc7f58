"""DeepETPicker's 3D-ResUNet: residual blocks, ELU, CoordConv and image-pyramid inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResUNet3D"]


def _coordinates(like: torch.Tensor) -> torch.Tensor:
    """(B, 3, Z, Y, X) voxel coordinates in [-1, 1] (CoordConv channels)."""
    b, _, *spatial = like.shape
    axes = [torch.linspace(-1, 1, n, device=like.device, dtype=like.dtype) for n in spatial]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return grid.unsqueeze(0).expand(b, -1, -1, -1, -1)


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.ELU(),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm3d(out_channels),
        )
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.activation = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.skip(x))


class ResUNet3D(nn.Module):
    """Residual 3-D U-Net with three down- and three up-sampling levels.

    Every encoder level sees its features concatenated with the input image average-pooled to
    that level (image pyramid) and with three coordinate channels (CoordConv). Upsampling is
    a transposed convolution; skips are concatenated.

    Args:
        in_channels: input channels. Defaults to 1.
        out_channels: output channels (n classes + background for Dice). Defaults to 2.
        channels: feature channels of the four levels. Defaults to (16, 32, 64, 128).

    Examples::

        >>> net = ResUNet3D(out_channels=2, channels=(8, 16, 32, 64))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 2, 32, 32, 32])

    Input (B, in_channels, Z, Y, X) with Z, Y, X multiples of 8 → (B, out_channels, Z, Y, X).
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, channels: Sequence[int] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must give 4 levels, got {tuple(channels)}.")
        extra = in_channels + 3  # pyramid image + coordinates at every level
        self.encoders = nn.ModuleList()
        previous = 0
        for c in channels:
            self.encoders.append(_ResidualBlock(previous + extra, c))
            previous = c
        self.ups = nn.ModuleList(
            nn.ConvTranspose3d(channels[i + 1], channels[i], 2, stride=2) for i in reversed(range(3))
        )
        self.decoders = nn.ModuleList(_ResidualBlock(2 * channels[i], channels[i]) for i in reversed(range(3)))
        self.head = nn.Conv3d(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        image = x
        features = None
        for level, encoder in enumerate(self.encoders):
            if level:
                image = F.avg_pool3d(image, 2)
                features = F.max_pool3d(features, 2)
            inputs = [image, _coordinates(image)] + ([features] if features is not None else [])
            features = encoder(torch.cat(inputs, dim=1))
            skips.append(features)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            features = decoder(torch.cat([up(features), skip], dim=1))
        return self.head(features)
