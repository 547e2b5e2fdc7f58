"""Training data: prepared tomograms, patch sampling, augmentation and the validation split.

Patch samplings (``EngineConfig.sampling``):

- ``cubes`` (tomoCPT §2.1.1): the grid of ``patch_size`` cubes at ``stride``; every cube
  holding a positive label voxel, plus as many random label-free cubes.
- ``centred`` (DeepETPicker): one patch per labelled particle, centred on it with a
  uniform random shift of up to ``jitter_px`` per axis, drawn anew every epoch.
- ``all`` (TomoPicker PU): every grid cube; unlabeled voxels stay unlabeled (label 0 is
  "unlabeled" for the PU losses, not "negative"). When the labels of a tomogram are fewer
  than its expected particles, each labelled particle also gets centred patches (as
  ``centred``), ``round(expected / labelled) - 1`` of them per epoch, so an epoch shows as
  many labelled particles as a complete annotation would. Without them most batches of a
  sparse annotation hold no positive voxel and the non-negative PU risk teaches the network
  to call everything unlabelled: with 10 % of the labels (3 per tomogram) the best F1 of
  RuBisCO went from 0.06 to 0.31, of 3d2f from 0.06 to 0.40 and of the ribosome from 0.61
  to 0.67 (WBP benchmark, README).

Patch positions are corners (z, y, x) in pixels of the prepared (rescaled) tomogram. All
randomness derives from ``(seed, epoch, index)``, so an interrupted run resumes to the
same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from .config import EngineConfig
from .labels import CLASS_INDEX_LABELS, make_label
from .preprocess import load_at_training_scale, scale_coordinates

__all__ = [
    "PreparedTomogram",
    "prepare_tomogram",
    "sample_patches",
    "missing_label_patches",
    "PatchDataset",
    "split_validation",
]

_AFFINE_MAX_DEG = 15.0
_AFFINE_SCALE = (0.95, 1.05)
_WEDGE_RANGE_DEG = (40.0, 70.0)


@dataclass
class PreparedTomogram:
    """A tomogram at the training scale with its label.

    Attributes
    ----------
    name : tomogram name.
    volume : (z, y, x) float32, rescaled and normalised, padded up to one patch.
    target : (C, z, y, x) float32 Gaussians, or (z, y, x) uint8 class indices.
    xyz_px : (N, 3) labelled centres, x, y, z in pixels of ``volume``.
    class_ids : (N,) 1-based classes.
    zoom : rescale factor from the file's grid to ``volume``'s.
    path : the MRC file it was read from (None when made in memory).
    pixel_size_a : the file's pixel size, Å, as used (None when made in memory).
    """

    name: str
    volume: np.ndarray
    target: np.ndarray
    xyz_px: np.ndarray
    class_ids: np.ndarray
    zoom: float
    path: Path | None = None
    pixel_size_a: float | None = None

    @property
    def positive_mask(self) -> np.ndarray:
        """(z, y, x) bool: voxels with a positive label."""
        return self.target.max(axis=0) > 0 if self.target.ndim == 4 else self.target > 0


def _check_inside(path, xyz_px: np.ndarray, shape_zyx) -> None:
    upper = np.asarray(shape_zyx[::-1], dtype=float) - 0.5
    outside = np.any((xyz_px < -0.5) | (xyz_px > upper), axis=1)
    if outside.any():
        first = xyz_px[np.argmax(outside)]
        raise ValueError(
            f"{path}: {int(outside.sum())} coordinate(s) outside the tomogram of "
            f"{tuple(shape_zyx[::-1])} (x, y, z) voxels, e.g. "
            f"({first[0]:.1f}, {first[1]:.1f}, {first[2]:.1f})."
        )


def _pad_to(volume: np.ndarray, size: int, mode: str) -> np.ndarray:
    pad = [(0, max(size - n, 0)) for n in volume.shape[-3:]]
    if not any(p for _, p in pad):
        return volume
    pad = [(0, 0)] * (volume.ndim - 3) + pad
    return np.pad(volume, pad, mode=mode) if mode != "constant" else np.pad(volume, pad)


def prepare_tomogram(
    path: str | Path, coordinates: pd.DataFrame, config: EngineConfig, pixel_size_a: float | None = None
) -> PreparedTomogram:
    """Rescale, normalise and label one tomogram for training.

    Parameters
    ----------
    path : MRC file.
    coordinates : its rows of a coordinate table (pixels of the file).
    config : engine config (diameter, target size, label, normalisation, patch size).
    pixel_size_a : pixel size in Å when the header has none (or to override it).

    Raises
    ------
    ValueError
        No pixel size, bad voxels or diameter (see :func:`.preprocess.load_at_training_scale`),
        or coordinates outside the tomogram.
    """
    tomogram = load_at_training_scale(
        path, config.diameter_a, config.target_diameter_px, config.normalisation, pixel_size_a
    )
    xyz = coordinates[["x", "y", "z"]].to_numpy(float)
    _check_inside(path, xyz, tomogram.original_shape)
    volume, zoom = tomogram.volume, tomogram.zoom
    xyz = scale_coordinates(xyz, zoom)
    class_ids = coordinates["class_id"].to_numpy(int)
    target = make_label(config.label, volume.shape, xyz, config.label_radii_px, class_ids, config.n_classes)
    return PreparedTomogram(
        Path(path).stem,
        _pad_to(volume, config.patch_size, "reflect"),
        _pad_to(target, config.patch_size, "constant"),
        xyz,
        class_ids,
        zoom,
        Path(path),
        tomogram.pixel_size_a,
    )


def _grid(shape_zyx, patch: int, stride: int) -> np.ndarray:
    axes = []
    for n in shape_zyx:
        starts = list(range(0, n - patch + 1, stride))
        if starts[-1] != n - patch:
            starts.append(n - patch)
        axes.append(starts)
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _centred_corners(
    tomo: PreparedTomogram, config: EngineConfig, rng: np.random.Generator, shape: np.ndarray, repeats: int
) -> np.ndarray:
    """``repeats`` corners per labelled particle, each centring the patch on it with its own
    uniform random shift of up to ``jitter_px`` per axis; (N * repeats, 3) z, y, x."""
    patch = config.patch_size
    centres = np.repeat(np.rint(tomo.xyz_px[:, ::-1]).astype(int), repeats, axis=0)
    jitter = rng.integers(-config.jitter_px, config.jitter_px + 1, centres.shape)
    return np.clip(centres + jitter - patch // 2, 0, shape - patch)


def missing_label_patches(tomo: PreparedTomogram, config: EngineConfig) -> int:
    """Centred patches per labelled particle and epoch that make up for the unlabelled particles
    of ``tomo``: 0 unless the sampling is ``all`` and its labels are fewer than expected."""
    n_labelled = len(tomo.xyz_px)
    if config.sampling != "all" or not n_labelled or not config.expected_particles:
        return 0
    return max(0, int(round(config.expected_particles / n_labelled)) - 1)


def _one_pass(
    tomograms: list[PreparedTomogram], config: EngineConfig, rng: np.random.Generator, shift_grid: bool
) -> np.ndarray:
    """One sampling of every tomogram; ``shift_grid`` moves the grid by a random origin."""
    patch = config.patch_size
    rows = []
    for index, tomo in enumerate(tomograms):
        shape = np.array(tomo.volume.shape)
        if config.sampling == "centred":
            corners = _centred_corners(tomo, config, rng, shape, repeats=1)
        else:
            corners = _grid(shape, patch, config.stride)
            if shift_grid:
                corners = np.clip(corners + rng.integers(0, config.stride, 3), 0, shape - patch)
            if config.sampling == "all":
                extra = _centred_corners(tomo, config, rng, shape, missing_label_patches(tomo, config))
                corners = np.concatenate([corners, extra])
            elif config.sampling == "cubes":
                positive = tomo.positive_mask
                has_label = np.array(
                    [positive[z : z + patch, y : y + patch, x : x + patch].any() for z, y, x in corners], dtype=bool
                )
                negatives = corners[~has_label]
                chosen = rng.choice(len(negatives), min(has_label.sum(), len(negatives)), replace=False)
                corners = np.concatenate([corners[has_label], negatives[np.sort(chosen)]])
        rows.append(np.column_stack([np.full(len(corners), index), corners]))
    return np.concatenate(rows).astype(int) if rows else np.zeros((0, 4), int)


def sample_patches(
    tomograms: list[PreparedTomogram],
    config: EngineConfig,
    epoch: int = 0,
    seed: int | None = None,
    min_patches: int = 0,
    shift_grid: bool = True,
) -> np.ndarray:
    """Patch positions for one epoch.

    The sampling is repeated until the epoch holds at least ``min_patches`` patches: small
    tomograms (a ribosome tomogram rescaled to particles of 10 px is a few patches of 32³)
    otherwise give an epoch of a handful of optimiser steps. Each repeat draws its random
    parts anew and, with ``shift_grid``, moves the grid of the ``cubes`` and ``all``
    samplings by a random origin, so that the particles a grid cuts at its faces are seen
    whole in another pass. Keep ``shift_grid`` off where some of the grid's own patches
    are held out for validation.

    Returns
    -------
    (P, 4) int array of (tomogram index, z, y, x) corners.
    """
    rng = np.random.default_rng([config.seed if seed is None else seed, epoch])
    passes = [_one_pass(tomograms, config, rng, shift_grid=False)]
    while len(passes[0]) and sum(map(len, passes)) < min_patches:
        passes.append(_one_pass(tomograms, config, rng, shift_grid))
    return np.concatenate(passes)


def split_validation(names: list[str], n_validation_tomograms: int | None = None) -> tuple[list[int], list[int]]:
    """Training and validation tomogram indices: the last ~20 % (at least one) are held out.

    With one tomogram both lists hold it; :class:`PatchDataset` then splits its patches.
    """
    if len(names) == 1:
        return [0], [0]
    n_val = n_validation_tomograms or max(1, round(0.2 * len(names)))
    return list(range(len(names) - n_val)), list(range(len(names) - n_val, len(names)))


def _wedge_mask(shape_zyx, tilt_deg: float) -> np.ndarray:
    kz = np.abs(np.fft.fftfreq(shape_zyx[0]))[:, None, None]
    kx = np.abs(np.fft.fftfreq(shape_zyx[2]))[None, None, :]
    return np.broadcast_to(kz <= kx * np.tan(np.deg2rad(tilt_deg)) + 1e-9, shape_zyx)


class PatchDataset(Dataset):
    """Patches (image, target) of prepared tomograms, augmented deterministically.

    Items are ``(image, target)``: image (1, P, P, P) float32; target (C, P, P, P) float32
    for Gaussian labels, else (1, P, P, P) float32 class indices.

    Args:
        tomograms: prepared tomograms.
        corners: (N, 4) rows of (tomogram index, z, y, x).
        config: engine config (patch size, augmentations, seed).
        augment: apply ``config.augment``. Defaults to True.
        epoch: seeds the augmentation of this epoch. Defaults to 0.
    """

    def __init__(
        self,
        tomograms: list[PreparedTomogram],
        corners: np.ndarray,
        config: EngineConfig,
        augment: bool = True,
        epoch: int = 0,
    ) -> None:
        self.tomograms = tomograms
        self.corners = np.asarray(corners, dtype=int).reshape(-1, 4)
        self.config = config
        self.augment = augment
        self.epoch = epoch
        self.class_index = config.label in CLASS_INDEX_LABELS

    def __len__(self) -> int:
        return len(self.corners)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index, z, y, x = self.corners[item]
        p = self.config.patch_size
        tomo = self.tomograms[index]
        image = np.array(tomo.volume[z : z + p, y : y + p, x : x + p], dtype=np.float32)
        target = np.array(tomo.target[..., z : z + p, y : y + p, x : x + p], dtype=np.float32)
        if target.ndim == 3:
            target = target[None]
        if self.augment and self.config.augment:
            rng = np.random.default_rng([self.config.seed, self.epoch, item, 1])
            image, target = self._augmented(image, target, rng)
        return torch.from_numpy(np.ascontiguousarray(image[None])), torch.from_numpy(np.ascontiguousarray(target))

    def _augmented(self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
        ops = self.config.augment
        if "rot90" in ops:
            k = int(rng.integers(4))
            image, target = np.rot90(image, k, axes=(1, 2)), np.rot90(target, k, axes=(2, 3))
        if "flip" in ops:
            for axis in range(3):
                if rng.random() < 0.5:
                    image, target = np.flip(image, axis), np.flip(target, axis + 1)
        if "affine" in ops:
            angle = rng.uniform(-_AFFINE_MAX_DEG, _AFFINE_MAX_DEG)
            matrix = Rotation.from_rotvec(np.deg2rad(angle) * _unit(rng)).as_matrix() / rng.uniform(*_AFFINE_SCALE)
            centre = (np.array(image.shape) - 1) / 2
            offset = centre - matrix @ centre
            image = ndimage.affine_transform(image, matrix, offset, order=1, mode="reflect")
            order = 0 if self.class_index else 1
            target = np.stack(
                [ndimage.affine_transform(t, matrix, offset, order=order, mode="constant") for t in target]
            )
        if "invert" in ops and rng.random() < 0.5:
            image = -image
        if "wedge" in ops and rng.random() < 0.5:
            mask = _wedge_mask(image.shape, rng.uniform(*_WEDGE_RANGE_DEG))
            image = np.real(np.fft.ifftn(np.fft.fftn(image) * mask)).astype(np.float32)
        return image, target


def _unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)
