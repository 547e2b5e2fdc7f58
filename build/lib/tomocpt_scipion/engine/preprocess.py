"""Rescaling and intensity normalisation of tomograms, chunk-wise on memory-mapped volumes.

Rescaling maps voxel centres so that voxel 0 stays voxel 0: a position ``p`` (pixels of the
input) becomes ``p * zoom`` on the rescaled grid, and the rescaled size along an axis is
``floor((n - 1) * zoom) + 1``. Coordinates therefore scale with :func:`scale_coordinates`
and come back exactly with ``1 / zoom``.

Normalisations:

- ``robust`` (tomoCPT eq. 5): ``(T - median) / (p95 - p5)``;
- ``std-clip`` (TomoPicker §3.1): standardise, clip at ±3 σ, standardise again.

Statistics that need sorting (median, percentiles) are estimated on a fixed, seeded sample
of voxels (two million by default), so peak memory stays a small multiple of one slab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import read_mrc

__all__ = [
    "rescale_zoom",
    "rescaled_shape",
    "rescale_volume",
    "scale_coordinates",
    "normalise_volume",
    "NORMALISATIONS",
    "tomogram_pixel_size",
    "TrainingScaleVolume",
    "check_particle_fits",
    "load_at_training_scale",
]

NORMALISATIONS = ("robust", "std-clip", "none")
_SAMPLE_VOXELS = 2_000_000
_CHUNK_SLICES = 32
_CLIP_SIGMAS = 3.0


def rescale_zoom(diameter_a: float, pixel_size_a: float, target_diameter_px: float) -> float:
    """Zoom factor that makes a particle of ``diameter_a`` span ``target_diameter_px`` pixels.

    Raises
    ------
    ValueError
        Any argument is missing or not positive.
    """
    for name, value in (
        ("diameter_a", diameter_a),
        ("pixel_size_a", pixel_size_a),
        ("target_diameter_px", target_diameter_px),
    ):
        if value is None or not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}.")
    return float(target_diameter_px * pixel_size_a / diameter_a)


def rescaled_shape(shape_zyx, zoom: float) -> tuple[int, int, int]:
    """(z, y, x) size of a volume of ``shape_zyx`` after rescaling by ``zoom``."""
    return tuple(int(np.floor((n - 1) * zoom + 1e-6)) + 1 for n in shape_zyx)


def scale_coordinates(xyz_px: np.ndarray, zoom: float) -> np.ndarray:
    """(N, 3) x, y, z pixels of the input grid → pixels of the grid rescaled by ``zoom``."""
    return np.asarray(xyz_px, dtype=float) * zoom


def rescale_volume(
    volume: np.ndarray, zoom: float, chunk_slices: int = _CHUNK_SLICES, out_shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Resample a (z, y, x) volume by ``zoom`` (trilinear, Gaussian anti-aliasing when shrinking).

    Works on z-slabs of ``chunk_slices`` output slices so a memory-mapped input is never
    loaded whole; the output is the only full-size array allocated.

    Parameters
    ----------
    volume : (z, y, x) array, possibly memory-mapped.
    zoom : scale factor (> 0); 1 returns a float32 copy.
    chunk_slices : output slices per slab. Defaults to 32.
    out_shape : output (z, y, x) size; defaults to :func:`rescaled_shape` (give the original
        shape to go back exactly to a file's grid).

    Returns
    -------
    (z', y', x') float32 array.
    """
    if not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom}.")
    out_shape = tuple(out_shape) if out_shape is not None else rescaled_shape(volume.shape, zoom)
    out = np.empty(out_shape, dtype=np.float32)
    sigma = 0.5 / zoom if zoom < 1 else 0.0  # anti-aliasing, in input pixels
    margin = int(np.ceil(4 * sigma)) + 2
    for z0 in range(0, out_shape[0], chunk_slices):
        z1 = min(z0 + chunk_slices, out_shape[0])
        lo = max(int(np.floor(z0 / zoom)) - margin, 0)
        hi = min(int(np.ceil((z1 - 1) / zoom)) + margin + 1, volume.shape[0])
        slab = np.asarray(volume[lo:hi], dtype=np.float32)
        if sigma:
            slab = ndimage.gaussian_filter(slab, sigma, mode="nearest")
        out[z0:z1] = ndimage.affine_transform(
            slab,
            np.diag(np.full(3, 1.0 / zoom)),
            offset=(z0 / zoom - lo, 0.0, 0.0),
            output_shape=(z1 - z0, *out_shape[1:]),
            order=1,
            mode="nearest",
        )
    return out


def _voxel_sample(volume: np.ndarray, n: int = _SAMPLE_VOXELS, seed: int = 0) -> np.ndarray:
    if volume.size <= n:
        return np.asarray(volume, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    flat = rng.choice(volume.size, size=n, replace=False)
    flat.sort()  # ordered reads of a memory map
    return (
        np.asarray(volume.reshape(-1)[flat], dtype=np.float64)
        if volume.flags.c_contiguous
        else np.asarray(volume[np.unravel_index(flat, volume.shape)], dtype=np.float64)
    )


def _chunked_moments(volume: np.ndarray, clip: tuple[float, float] | None = None) -> tuple[float, float]:
    total = total_sq = 0.0
    for z0 in range(0, volume.shape[0], _CHUNK_SLICES):
        slab = np.asarray(volume[z0 : z0 + _CHUNK_SLICES], dtype=np.float64)
        if clip is not None:
            slab = np.clip(slab, *clip)
        total += slab.sum()
        total_sq += np.square(slab).sum()
    mean = total / volume.size
    return mean, float(np.sqrt(max(total_sq / volume.size - mean**2, 0.0)))


def normalise_volume(volume: np.ndarray, method: str = "robust", in_place: bool = False) -> np.ndarray:
    """Normalise intensities of a (z, y, x) volume.

    Parameters
    ----------
    volume : (z, y, x) array; modified when ``in_place`` (must then be writable float32).
    method : ``robust`` (tomoCPT), ``std-clip`` (TomoPicker) or ``none``. Defaults to robust.
    in_place : overwrite ``volume`` instead of allocating a float32 copy. Defaults to False.

    Returns
    -------
    float32 (z, y, x) array.

    Raises
    ------
    ValueError
        Unknown method, or a constant volume (nothing to normalise).
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; valid: {list(NORMALISATIONS)}.")
    out = volume if in_place else np.empty(volume.shape, dtype=np.float32)
    if method == "robust":
        median, p5, p95 = np.percentile(_voxel_sample(volume), [50, 5, 95])
        offset, scale, clip = median, p95 - p5, None
    elif method == "std-clip":
        mean, std = _chunked_moments(volume)
        clip = (mean - _CLIP_SIGMAS * std, mean + _CLIP_SIGMAS * std)
        offset, scale = _chunked_moments(volume, clip)
    else:
        offset, scale, clip = 0.0, 1.0, None
    if not scale > 0:
        raise ValueError(f"cannot normalise a constant volume (spread {scale}).")
    for z0 in range(0, volume.shape[0], _CHUNK_SLICES):
        slab = np.asarray(volume[z0 : z0 + _CHUNK_SLICES], dtype=np.float32)
        if clip is not None:
            slab = np.clip(slab, *clip)
        out[z0 : z0 + _CHUNK_SLICES] = (slab - offset) / scale
    return out


def tomogram_pixel_size(path: str | Path, header_pixel_size_a: float | None, pixel_size_a: float | None) -> float:
    """The pixel size to use: the one given, else the header's.

    Raises
    ------
    ValueError
        Neither is available, or the one given is not a positive number.
    """
    if pixel_size_a is not None and not (np.isfinite(pixel_size_a) and pixel_size_a > 0):
        raise ValueError(f"{path}: the pixel size must be a positive number of Å, got {pixel_size_a}.")
    pixel = pixel_size_a or header_pixel_size_a
    if not pixel:
        raise ValueError(f"{path}: the MRC header holds no pixel size and none was given (pass the pixel size in Å).")
    return float(pixel)


def _check_voxels(path: str | Path, data: np.ndarray) -> None:
    bad = 0
    for z0 in range(0, data.shape[0], _CHUNK_SLICES):
        bad += int(np.count_nonzero(~np.isfinite(np.asarray(data[z0 : z0 + _CHUNK_SLICES]))))
    if bad:
        raise ValueError(f"{path}: {bad} voxel(s) are NaN or infinite; repair or mask them before picking.")


@dataclass
class TrainingScaleVolume:
    """A tomogram file brought to the network's scale.

    Attributes
    ----------
    volume : (z, y, x) float32, rescaled and normalised.
    zoom : training grid = file grid × zoom.
    pixel_size_a : pixel size of the file, Å.
    original_shape : (z, y, x) of the file.
    """

    volume: np.ndarray
    zoom: float
    pixel_size_a: float
    original_shape: tuple[int, int, int]


def check_particle_fits(path: str | Path, diameter_a: float, pixel_size_a: float, shape: tuple[int, ...]) -> None:
    """Refuse a particle (diameter in Å) wider than the smallest side of a tomogram of ``shape`` (z, y, x).

    A diameter in the wrong unit or a wrong pixel size shows up here: such a particle would make
    every label, peak radius and hit criterion meaningless (and the label filters run for hours).
    """
    diameter_px = diameter_a / pixel_size_a
    if not diameter_px < min(shape):
        raise ValueError(
            f"{path}: a particle of {diameter_a:g} Å is {diameter_px:.4g} px at {pixel_size_a:g} Å/px, "
            f"wider than the tomogram's smallest side ({min(shape)} px of {tuple(shape)[::-1]} x, y, z); "
            f"check the diameter (Å) and the pixel size."
        )


def load_at_training_scale(
    path: str | Path,
    diameter_a: float,
    target_diameter_px: float,
    normalisation: str,
    pixel_size_a: float | None = None,
) -> TrainingScaleVolume:
    """Read a tomogram, check it, rescale it so a particle spans ``target_diameter_px`` and normalise it.

    Parameters
    ----------
    path : MRC file (read memory-mapped).
    diameter_a : particle diameter, Å.
    target_diameter_px : particle diameter after rescaling, pixels.
    normalisation : see :func:`normalise_volume`.
    pixel_size_a : pixel size in Å when the header has none (or to override it).

    Raises
    ------
    ValueError
        Naming the file: no pixel size, NaN or infinite voxels, a particle wider than the
        tomogram's smallest side, or a constant volume.
    """
    data, header_pixel = read_mrc(path)
    pixel = tomogram_pixel_size(path, header_pixel, pixel_size_a)
    check_particle_fits(path, diameter_a, pixel, data.shape)
    _check_voxels(path, data)
    zoom = rescale_zoom(diameter_a, pixel, target_diameter_px)
    try:
        volume = normalise_volume(rescale_volume(data, zoom), normalisation, in_place=True)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return TrainingScaleVolume(volume, zoom, pixel, tuple(data.shape))
