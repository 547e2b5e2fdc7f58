"""Learned centring: a second, small network that moves every pick onto its particle's centre.

Picks are found on the score map at the training scale (particle ≈ 10 px), where one voxel is
up to 3.3 pixels of the tomogram (a ribosome at 10 Å/px); the score map's centroid leaves them
1.9-2.4 px from the true centres on WBP tomograms, and neither finer score maps nor aligning the
picks to their own average did better (README, "What was tried"). The centring network looks
at the tomogram itself, at a finer scale: a crop around each pick, with the particle spanning
``centring_diameter_px`` (20 px, never coarser than the training scale nor finer than the file).
It outputs a heatmap over the crop; the softmax-weighted mean position (soft-argmax) is the
particle's centre, at sub-voxel precision.

Training (after the picking network, on the same labelled centres): crops (zero beyond the
tomogram's faces, so a particle the face cuts is seen cut) around each centre moved by a
Gaussian offset (σ = 0.1 particle diameter per axis, beyond the picking network's errors),
flipped at random along every axis (the missing wedge stays where it was), intensity scaled
and shifted; loss = cross-entropy of the heatmap against a Gaussian of σ = 1 px at the
true centre + 0.1 × smooth-L1 of the soft-argmax position. AdamW, batches of 8, the weights
with the lowest validation distance are kept.

At prediction each crop is scored in its 8 flips; each flip's position is the soft-argmax over
the voxels within 2 px of its heatmap's maximum (over the whole crop, the heatmap's tail pulls
positions back towards the pick), and the answer is the mean of the largest group of flips that
agree within 2 px. A plain mean of the eight let one flip that took a neighbouring membrane for
the centre drag the others' answer: on the WBP benchmark's DeepETPicker ribosome models the
consensus took the mean hit distance from 0.78 / 1.13 / 1.18 to 0.77 / 1.17 / 1.06 px (seeds
1-3), F1 unchanged, and the tomoCPT models' F1 from 0.74 to 0.76 (fewer false picks left after
converging; README, "What was tried"). A second pass looks again from the
crop centred on the first answer and keeps moves of up to 0.15 diameter (a larger jump is the
network drifting onto a membrane or a neighbour). Picks that a particle template placed
(:mod:`.particle_template`) start up to half a diameter off, beyond the training offsets, and
are centred until they converge instead (:func:`centre_positions` with ``converge``). On the held-out
WBP tomograms of ``benchmarks/accuracy.py`` this took the mean hit distance of the DeepETPicker
recipe from 1.9 to 0.9 px (ribosome 4v94), 1.1 to 0.7 px (1bxn) and 2.4 to 1.0 px (3d2f).

Arrays are (z, y, x); coordinates given and returned are (x, y, z) pixels of the tomogram file.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from .boxes import cut_boxes

__all__ = [
    "CENTRING_DIAMETER_PX",
    "centring_diameter_px",
    "crop_size",
    "build_centring_network",
    "centring_network",
    "train_centring",
    "centre_positions",
    "CONVERGED_FRACTION",
    "CONVERGING_PASSES",
]

logger = logging.getLogger(__name__)

#: particle diameter, pixels, at the centring scale (capped, see :func:`centring_diameter_px`)
CENTRING_DIAMETER_PX = 20.0
_CROP_FRACTION = 1.2  # crop edge / particle diameter
_OFFSET_SIGMA_FRACTION = 0.1  # training offsets, per axis, as a fraction of the diameter
_TARGET_SIGMA_PX = 1.0
_POSITION_WEIGHT = 0.1
_BATCH = 8
_VALIDATION_CROPS = 64
_VALIDATE_EVERY = 250
_LOCAL_RADIUS_PX = 2.0
_REFINE_LIMIT_FRACTION = 0.15  # largest move of a refining pass, as a fraction of the diameter
_FLIPS = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
#: a pick has converged when a centring pass moves it at most this fraction of the diameter; on the
#: WBP benchmark's tomoCPT ribosome models a tighter limit dropped true particles too, a looser one
#: kept more false picks (a look outside the benchmark, README)
CONVERGED_FRACTION = 0.05
#: most centring passes of a pick centred until it converges (:func:`centre_positions`)
CONVERGING_PASSES = 4


def centring_diameter_px(target_diameter_px: float, file_diameter_px: float) -> float:
    """Particle diameter at the centring scale: 20 px, but not below the training scale's
    ``target_diameter_px`` nor above the file's own ``file_diameter_px`` (no upsampling beyond it)."""
    return float(max(target_diameter_px, min(CENTRING_DIAMETER_PX, file_diameter_px)))


def crop_size(diameter_px: float) -> int:
    """Edge of the cubic crop, pixels: 1.2 diameters, rounded up to a multiple of 8 (≥ 16)."""
    return max(16, int(np.ceil(_CROP_FRACTION * diameter_px / 8)) * 8)


def build_centring_network() -> nn.Module:
    """MONAI residual UNet, 1 → 1 channel, two poolings (16, 32, 64 channels)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(16, 32, 64), strides=(2, 2), num_res_units=1)


def centring_network(weights: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> nn.Module:
    """A centring network with ``weights`` (from :func:`train_centring`), in eval mode on ``device``.

    Raises
    ------
    RuntimeError
        Weights that do not fit the network.
    """
    net = build_centring_network()
    net.load_state_dict(weights)
    return net.to(torch.device(device)).eval()


def _grid(crop: int, device: torch.device) -> torch.Tensor:
    axis = torch.arange(crop, dtype=torch.float32, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def _soft_argmax(logits: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, 1, c, c, c) logits → (B, 3) expected z, y, x position in the crop, over the voxels
    within ``_LOCAL_RADIUS_PX`` of the most likely one (the heatmap's far tail would pull every
    position towards the crop's centre, that is, back towards the pick)."""
    weights = torch.softmax(logits.reshape(len(logits), -1).float(), 1)
    peak = grid[weights.argmax(1)]
    weights = weights * (((grid[None] - peak[:, None]) ** 2).sum(-1) <= _LOCAL_RADIUS_PX**2)
    return (weights @ grid) / weights.sum(1, keepdim=True)


class _Volumes:
    """Volumes at the centring scale, cropped with zeros beyond their faces (:func:`.boxes.cut_boxes`).

    Zero, not reflection: a particle cut by a face of the tomogram stays cut, and the network
    learns where its centre lies beyond the face. Reflecting would mirror it into a whole
    particle centred on the face, so the network could not tell the two apart and pulled cut
    particles onto the face."""

    def __init__(self, volumes: list[np.ndarray], crop: int) -> None:
        self.crop = crop
        self.volumes = volumes

    def crops(self, index: int, centres_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops of volume ``index`` whose centre voxel is the rounded centre, and their corners (z, y, x)."""
        corners = np.rint(centres_zyx).astype(int) - self.crop // 2
        return cut_boxes(self.volumes[index], corners, self.crop), corners


def _sample(
    volumes: _Volumes,
    particles: list[tuple[int, np.ndarray]],
    n: int,
    sigma: float,
    rng: np.random.Generator,
    augment: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets, crop = [], [], volumes.crop
    for k in rng.integers(len(particles), size=n):
        index, centre = particles[k]
        image, corner = volumes.crops(index, (centre + rng.normal(0, sigma, 3))[None])
        image, target = image[0], centre - corner[0]
        if augment:
            for axis in range(3):
                if rng.random() < 0.5:
                    image, target[axis] = np.flip(image, axis), crop - 1 - target[axis]
            image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 0.1)
        images.append(np.ascontiguousarray(image))
        targets.append(target)
    return (
        torch.from_numpy(np.stack(images)[:, None].astype(np.float32)),
        torch.from_numpy(np.stack(targets).astype(np.float32)),
    )


def _loss(logits: torch.Tensor, target: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    flat = logits.reshape(len(logits), -1).float()
    heatmap = torch.exp(-((grid[None] - target[:, None]) ** 2).sum(-1) / (2 * _TARGET_SIGMA_PX**2))
    heatmap = heatmap / heatmap.sum(1, keepdim=True)
    cross_entropy = -(heatmap * torch.log_softmax(flat, 1)).sum(1).mean()
    position = nn.functional.smooth_l1_loss(torch.softmax(flat, 1) @ grid, target)
    return cross_entropy + _POSITION_WEIGHT * position


def train_centring(
    training: list[tuple[np.ndarray, np.ndarray]],
    validation: list[tuple[np.ndarray, np.ndarray]],
    diameter_px: float,
    steps: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], float]:
    """Train a centring network.

    Parameters
    ----------
    training, validation : (volume, centres) pairs: a (z, y, x) normalised volume at the
        centring scale and its (N, 3) labelled centres, z, y, x pixels of that volume.
        Validation may be empty (the training centres then validate).
    diameter_px : particle diameter at the centring scale, pixels.
    steps : optimiser steps (batches of 8 crops).
    seed : seed of the crops, offsets, flips and initial weights.
    device : torch device.

    Returns
    -------
    The best weights (CPU tensors) and their mean validation distance, pixels of the
    centring scale, from crops offset as in training.
    """
    if not steps > 0:
        raise ValueError(f"steps must be > 0, got {steps}.")
    validation = validation if any(len(c) for _, c in validation) else training
    if not any(len(c) for _, c in training):
        raise ValueError("no labelled centre to train the centring network on.")
    device = torch.device(device)
    crop, sigma = crop_size(diameter_px), _OFFSET_SIGMA_FRACTION * diameter_px
    train_volumes = _Volumes([v for v, _ in training], crop)
    val_volumes = _Volumes([v for v, _ in validation], crop)
    train_particles = [(i, c) for i, (_, centres) in enumerate(training) for c in np.asarray(centres, float)]
    val_particles = [(i, c) for i, (_, centres) in enumerate(validation) for c in np.asarray(centres, float)]
    rng = np.random.default_rng([seed, 7])
    val_images, val_targets = _sample(
        val_volumes, val_particles, _VALIDATION_CROPS, sigma, np.random.default_rng([seed, 8]), augment=False
    )
    val_images, val_targets = val_images.to(device), val_targets.to(device)
    torch.manual_seed(seed)
    net = build_centring_network().to(device)
    grid = _grid(crop, device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    started, best = time.time(), (np.inf, None)
    # each validation crop is centred on its offset pick (voxel crop // 2): the distance to beat
    start_distance = float((val_targets - crop // 2).norm(dim=1).mean())
    logger.info(
        "Centring network: %d steps on %d particle(s), crops of %d px at %.1f px per particle diameter; "
        "the validation crops start %.2f px from the centres",
        steps,
        len(train_particles),
        crop,
        diameter_px,
        start_distance,
    )
    for step in range(1, steps + 1):
        net.train()
        images, targets = _sample(train_volumes, train_particles, _BATCH, sigma, rng, augment=True)
        loss = _loss(net(images.to(device)), targets.to(device), grid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % _VALIDATE_EVERY == 0 or step == steps:
            net.eval()
            with torch.no_grad():
                distance = float((_soft_argmax(net(val_images), grid) - val_targets).norm(dim=1).mean())
            if distance < best[0]:
                best = (distance, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
            logger.info(
                "Centring step %d/%d: validation distance %.2f px (best %.2f), %.0f s",
                step,
                steps,
                distance,
                best[0],
                time.time() - started,
            )
    return best[1], best[0]


def _centre_once(
    net: nn.Module, volumes: _Volumes, grid: torch.Tensor, centres: np.ndarray, device: torch.device, batch_size: int
) -> np.ndarray:
    """One centring pass: (N, 3) z, y, x positions of the centring grid → the centres found in crops around them."""
    crop, out = volumes.crop, np.empty_like(centres)
    with torch.inference_mode():
        for start in range(0, len(centres), batch_size):
            images, corners = volumes.crops(0, centres[start : start + batch_size])
            images = torch.from_numpy(images[:, None].astype(np.float32)).to(device)
            found = []
            for flips in _FLIPS:
                position = _soft_argmax(net(images.flip(flips) if flips else images), grid)
                for axis in flips:
                    position[:, axis - 2] = crop - 1 - position[:, axis - 2]
                found.append(position)
            out[start : start + len(images)] = _consensus(torch.stack(found, 1)).cpu().numpy() + corners
    return out


def _consensus(found: torch.Tensor) -> torch.Tensor:
    """(B, F, 3) positions that the F flips of each crop found → (B, 3): the mean of the largest
    group of flips within ``_LOCAL_RADIUS_PX`` of one of them (of equal groups, the one whose
    centre flip lies closest to all the others). A flip that sees a neighbouring membrane or
    particle as the centre no longer drags the answer of the flips that agree."""
    distances = torch.cdist(found, found)
    agree = distances <= _LOCAL_RADIUS_PX
    spread = distances.sum(-1)
    support = agree.sum(-1) * (spread.max() + 1) - spread
    members = agree[torch.arange(len(found)), support.argmax(-1)].to(found.dtype)
    return (members[..., None] * found).sum(1) / members.sum(1, keepdim=True)


def centre_positions(
    net: nn.Module,
    volume: np.ndarray,
    zoom: float,
    xyz_px: np.ndarray,
    diameter_px: float,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    passes: int | None = None,
    converge: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Move picks onto the particle centres the centring network finds.

    The first pass moves each pick as far as the network says. A pick that started far off
    saw its particle near the crop's edge; later passes look again from the crop centred on
    the last answer. By default they keep moves of at most ``0.15 × diameter_px`` (1.5 σ of
    the training offsets): a refinement. A larger jump is the network drifting onto another
    feature (a membrane the particle sits on, a neighbour), and is refused.

    With ``converge`` (for picks that may start up to half a diameter off, placed by a particle
    template, beyond the offsets the network learned from) every move is kept, and a pick stops
    once a pass moves it at most ``CONVERGED_FRACTION × diameter_px``. One that has not
    converged after ``passes`` wanders from feature to feature: on the WBP benchmark's tomoCPT
    models with templates those were mostly no particle (README).

    Parameters
    ----------
    net : a trained centring network (:func:`build_centring_network`), eval mode.
    volume : (z, y, x) normalised tomogram at the centring scale.
    zoom : centring grid = file grid × zoom.
    xyz_px : (N, 3) picks, x, y, z pixels of the file.
    diameter_px : particle diameter at the centring scale, pixels.
    device : where the network runs.
    batch_size : crops per forward pass (each in 8 flips).
    passes : centring passes (≥ 1; with ``converge`` at most that many, ≥ 2); None: 2, or
        :data:`CONVERGING_PASSES` with ``converge``.
    converge : centre until converged (above) instead of refining within the cap.

    Returns
    -------
    (N, 3) centred picks, x, y, z pixels of the file, and (N,) whether each converged
    (every pick without ``converge``).
    """
    passes = (CONVERGING_PASSES if converge else 2) if passes is None else passes
    if passes < 1 + converge:
        raise ValueError(f"passes must be >= {1 + converge}{' to converge' if converge else ''}, got {passes}.")
    xyz_px = np.asarray(xyz_px, dtype=float).reshape(-1, 3)
    converged = np.full(len(xyz_px), not converge)
    if not len(xyz_px):
        return xyz_px, converged
    device = torch.device(device)
    crop = crop_size(diameter_px)
    volumes, grid = _Volumes([volume], crop), _grid(crop, device)
    centres = _centre_once(net, volumes, grid, xyz_px[:, ::-1] * zoom, device, batch_size)
    for _ in range(passes - 1):
        moving = np.flatnonzero(~converged) if converge else np.arange(len(centres))
        if not len(moving):
            break
        again = _centre_once(net, volumes, grid, centres[moving], device, batch_size)
        moves = np.linalg.norm(again - centres[moving], axis=1)
        if converge:
            converged[moving] = moves <= CONVERGED_FRACTION * diameter_px
            centres[moving] = again
        else:
            centres = np.where((moves <= _REFINE_LIMIT_FRACTION * diameter_px)[:, None], again, centres)
    return centres[:, ::-1] / zoom, converged
