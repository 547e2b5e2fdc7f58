"""Tilt series of a density volume and its weighted back-projection (the realistic simulation).

The specimen is tilted about the y axis. A voxel at centred position (x, z) projects to the
detector column ``u = x cos θ + z sin θ`` (all in pixels, centres at ``(n - 1) / 2``); the
back-projection smears each filtered image back along the same rays, on the volume's own
grid, so the ground-truth centres of the density are the centres in the reconstruction.

Image formation per tilt, in acquisition order (dose-symmetric, starting at 0°):

1. line integral of the density (protein ≈ 1) → phase shift, :data:`PROTEIN_PHASE_RAD_PER_A`
   per Å of protein path;
2. exposure filter for the dose already received (Grant & Grigorieff), B-factor envelope,
   and a random residual alignment shift (``alignment_error_px``, not corrected later);
3. CTF at the defocus of each detector strip (defocus varies across the tilt axis by
   ``u tan θ``), weak-phase image ``1 + 2 · CTF ⊛ φ``;
4. inelastic loss ``exp(-thickness / (λ cos θ))`` and Poisson counting noise at the dose per
   tilt (``dose_e_per_a2`` split evenly).

Reconstruction: counts → contrast, phase flipping per strip with the true defocus (CTF
correction as IMOD's ``ctfphaseflip``), ramp filter along x with IMOD's default radial
fall-off (cut-off 0.35, σ 0.035 cycles/px) and back-projection. Protein comes out dark.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .optics import bfactor_envelope, ctf, exposure_filter

__all__ = [
    "tilt_angles",
    "dose_symmetric_order",
    "project",
    "back_project",
    "ramp_filter",
    "simulate_tilt_series",
    "reconstruct",
    "PROTEIN_PHASE_RAD_PER_A",
]

#: phase shift per Å of protein relative to vitreous ice at 300 kV: interaction constant
#: 6.5e-4 rad/(V·Å) × a mean-inner-potential difference of ≈ 2 V
PROTEIN_PHASE_RAD_PER_A = 1.3e-3
#: inelastic mean free path of 300 keV electrons in ice with an energy filter, Å
INELASTIC_MEAN_FREE_PATH_A = 3800.0
#: IMOD's default radial filter of the back-projection: cut-off and fall-off, cycles/px
RADIAL_CUTOFF, RADIAL_FALLOFF = 0.35, 0.035
#: largest defocus change within one CTF strip, µm
_STRIP_DEFOCUS_STEP_UM = 0.2


def tilt_angles(tilt_range_deg: float, tilt_step_deg: float) -> np.ndarray:
    """Tilt angles from -range to +range in steps, in degrees, ascending (0° included)."""
    if not tilt_step_deg > 0:
        raise ValueError(f"tilt_step_deg must be > 0, got {tilt_step_deg}.")
    half = int(math.floor(tilt_range_deg / tilt_step_deg + 1e-9))
    return np.arange(-half, half + 1) * float(tilt_step_deg)


def dose_symmetric_order(angles_deg: np.ndarray) -> np.ndarray:
    """Acquisition order of a dose-symmetric scheme (Hagen et al. 2017): from 0° outwards,
    alternating sides; returns indices into ``angles_deg``."""
    angles = np.asarray(angles_deg, dtype=float)
    return np.lexsort((-np.sign(angles), np.abs(angles)))


def _normalised(index: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel index → grid_sample coordinate (align_corners=False: pixel i spans [i, i+1))."""
    return (2 * index + 1) / size - 1


def project(density: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Line integrals of a (z, y, x) volume along the beam, one image per tilt.

    Parameters
    ----------
    density : (z, y, x) volume.
    angles_deg : tilt angles in degrees (about y).

    Returns
    -------
    (n_tilts, y, x) float32 projections, in voxel units of density × path length.
    """
    nz, ny, nx = density.shape
    volume = torch.from_numpy(np.ascontiguousarray(density, dtype=np.float32)).permute(1, 0, 2)[None]
    cz, cx = (nz - 1) / 2, (nx - 1) / 2
    u = torch.arange(nx, dtype=torch.float64) - cx
    images = []
    for angle in np.deg2rad(np.asarray(angles_deg, dtype=float)):
        cos, sin = math.cos(angle), math.sin(angle)
        half_path = min(math.ceil(nz / 2 / max(cos, 1e-3)) + 1, math.ceil(math.hypot(nz, nx) / 2) + 1)
        t = torch.arange(-half_path, half_path + 1, dtype=torch.float64)
        x = u[None, :] * cos - t[:, None] * sin + cx
        z = u[None, :] * sin + t[:, None] * cos + cz
        grid = torch.stack([_normalised(x, nx), _normalised(z, nz)], dim=-1)[None].float()
        samples = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        images.append(samples[0].sum(dim=1))
    return torch.stack(images).numpy()


def ramp_filter(images: np.ndarray) -> np.ndarray:
    """Weight (n, y, x) projections by |k| along x with the radial fall-off; zero-padded twice."""
    n_x = images.shape[-1]
    padded = 2 * n_x
    k = np.fft.rfftfreq(padded)
    weight = np.maximum(np.abs(k), 0.25 / padded)
    weight = weight * np.where(k > RADIAL_CUTOFF, np.exp(-((k - RADIAL_CUTOFF) ** 2) / (2 * RADIAL_FALLOFF**2)), 1.0)
    spectrum = np.fft.rfft(images, n=padded, axis=-1) * weight
    return np.fft.irfft(spectrum, n=padded, axis=-1)[..., :n_x].astype(np.float32)


def back_project(images: np.ndarray, angles_deg: np.ndarray, shape_zyx) -> np.ndarray:
    """Smear (n_tilts, y, x) images back into a (z, y, x) volume along their rays (no filter)."""
    nz, ny, nx = shape_zyx
    n_u = images.shape[-1]
    cz, cx, cu = (nz - 1) / 2, (nx - 1) / 2, (n_u - 1) / 2
    z = torch.arange(nz, dtype=torch.float64)[:, None] - cz
    x = torch.arange(nx, dtype=torch.float64)[None, :] - cx
    volume = torch.zeros((1, ny, nz, nx), dtype=torch.float32)
    for image, angle in zip(images, np.deg2rad(np.asarray(angles_deg, dtype=float))):
        u = x * math.cos(angle) + z * math.sin(angle) + cu
        grid = torch.stack([_normalised(u, n_u), torch.zeros_like(u)], dim=-1)[None].float()
        source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, :, None, :]
        volume += F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return volume[0].permute(1, 0, 2).contiguous().numpy()


def _frequencies_a(shape_yx, pixel_size_a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ky = np.fft.fftfreq(shape_yx[0])[:, None]
    kx = np.fft.rfftfreq(shape_yx[1])[None, :]
    return ky, kx, np.sqrt(ky**2 + kx**2) / pixel_size_a


def _strips(n_x: int, angle_rad: float, pixel_size_a: float) -> list[tuple[int, int, float]]:
    """(start, stop, defocus offset µm) of detector strips across the tilt axis."""
    gradient_um = abs(math.tan(angle_rad)) * pixel_size_a * 1e-4  # defocus change per column
    n_strips = max(1, math.ceil(n_x * gradient_um / _STRIP_DEFOCUS_STEP_UM))
    edges = np.linspace(0, n_x, n_strips + 1).round().astype(int)
    centre = (n_x - 1) / 2
    return [
        (a, b, ((a + b - 1) / 2 - centre) * math.tan(angle_rad) * pixel_size_a * 1e-4)
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    ]


def _per_strip(spectrum: np.ndarray, transfer, n_x: int, angle_rad: float, pixel_size_a: float) -> np.ndarray:
    """Inverse FFT of ``spectrum × transfer(defocus offset)``, strip by strip across x."""
    out = np.empty((spectrum.shape[0], n_x), dtype=np.float32)
    for start, stop, offset_um in _strips(n_x, angle_rad, pixel_size_a):
        out[:, start:stop] = np.fft.irfft2(spectrum * transfer(offset_um), s=(spectrum.shape[0], n_x))[:, start:stop]
    return out


def simulate_tilt_series(
    density: np.ndarray,
    angles_deg: np.ndarray,
    pixel_size_a: float,
    *,
    defocus_um: float,
    voltage_kv: int,
    bfactor_a2: float,
    dose_e_per_a2: float,
    alignment_error_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy, CTF-modulated images of a density volume.

    Parameters
    ----------
    density : (z, y, x) volume, protein ≈ 1, solvent 0.
    angles_deg : tilt angles, degrees, ascending.
    pixel_size_a : voxel (and detector pixel) size in Å.
    defocus_um, voltage_kv, bfactor_a2 : optics (see :mod:`.optics`).
    dose_e_per_a2 : total exposure of the series, e/Å², split evenly over the tilts.
    alignment_error_px : standard deviation of the uncorrected shift of every image, pixels.
    rng : random generator (noise, defocus of each tilt, shifts).

    Returns
    -------
    images : (n_tilts, y, x) float32 electron counts, in the order of ``angles_deg``.
    defocus_um : (n_tilts,) defocus of each image at the tilt axis, µm.
    """
    angles = np.asarray(angles_deg, dtype=float)
    phase = project(density, angles) * (PROTEIN_PHASE_RAD_PER_A * pixel_size_a)
    n_tilts, ny, nx = phase.shape
    ky, kx, k_a = _frequencies_a((ny, nx), pixel_size_a)
    dose_per_tilt = dose_e_per_a2 / n_tilts
    thickness_a = density.shape[0] * pixel_size_a
    defoci = defocus_um + rng.normal(0.0, 0.1, n_tilts)
    images = np.empty_like(phase)
    for rank, index in enumerate(dose_symmetric_order(angles)):
        angle = math.radians(angles[index])
        shift = rng.normal(0.0, alignment_error_px, 2)
        damage = (
            exposure_filter(k_a, (rank + 0.5) * dose_per_tilt)
            * bfactor_envelope(k_a, bfactor_a2)
            * np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
        )
        spectrum = np.fft.rfft2(phase[index]) * damage
        contrast = _per_strip(
            spectrum, lambda off, d=defoci[index]: 2 * ctf(k_a, d + off, voltage_kv), nx, angle, pixel_size_a
        )
        electrons = (
            dose_per_tilt * pixel_size_a**2 * math.exp(-thickness_a / (INELASTIC_MEAN_FREE_PATH_A * math.cos(angle)))
        )
        images[index] = rng.poisson(electrons * np.clip(1.0 + contrast, 0.0, None))
    return images, defoci


def reconstruct(
    images: np.ndarray,
    angles_deg: np.ndarray,
    shape_zyx,
    pixel_size_a: float,
    *,
    defocus_um: np.ndarray,
    voltage_kv: int,
    phase_flip: bool = True,
) -> np.ndarray:
    """Phase-flipped weighted back-projection of a tilt series, standardised (mean 0, std 1).

    Parameters
    ----------
    images : (n_tilts, y, x) counts.
    angles_deg : their tilt angles, degrees.
    shape_zyx : size of the reconstruction.
    pixel_size_a : pixel size in Å.
    defocus_um : (n_tilts,) defocus at the tilt axis, µm.
    voltage_kv : 200 or 300.
    phase_flip : correct the CTF by phase flipping. Defaults to True.

    Returns
    -------
    (z, y, x) float32 tomogram; protein dark.
    """
    n_tilts, ny, nx = images.shape
    _, _, k_a = _frequencies_a((ny, nx), pixel_size_a)
    corrected = np.empty(images.shape, dtype=np.float32)
    for index, angle in enumerate(np.deg2rad(np.asarray(angles_deg, dtype=float))):
        contrast = images[index] / max(float(images[index].mean()), 1e-6) - 1.0
        if not phase_flip:
            corrected[index] = contrast
            continue
        # flip every band to the sign of the first lobe (negative): protein stays dark
        corrected[index] = _per_strip(
            np.fft.rfft2(contrast),
            lambda off, d=defocus_um[index]: -np.sign(ctf(k_a, d + off, voltage_kv)),
            nx,
            angle,
            pixel_size_a,
        )
    volume = back_project(ramp_filter(corrected), angles_deg, shape_zyx)
    return ((volume - volume.mean()) / max(float(volume.std()), 1e-12)).astype(np.float32)
