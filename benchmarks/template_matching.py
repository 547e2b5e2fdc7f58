"""Classical baseline: normalised cross-correlation template matching over an angular grid.

For every orientation of the (true) template, the locally normalised cross-correlation
with the tomogram is computed with FFTs (``scipy.fft``):

    NCC(x) = Σ_m t'(m) T(x + m) / (N σ_T(x)),   t' = template standardised inside its mask,

where σ_T(x) is the tomogram's standard deviation under the mask at x and N the mask
size. The score map is the maximum over orientations.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage
from scipy.spatial.transform import Rotation

__all__ = ["template_matching_scores"]


def _padded_fft(array: np.ndarray, shape) -> np.ndarray:
    return fft.rfftn(array, s=shape, axes=(0, 1, 2), workers=-1)


def _correlate(volume_fft: np.ndarray, kernel: np.ndarray, shape) -> np.ndarray:
    """Σ_m kernel(m) V(x + m) for kernels centred on their middle voxel."""
    flipped = kernel[::-1, ::-1, ::-1]
    full = fft.irfftn(volume_fft * _padded_fft(flipped, shape), s=shape, axes=(0, 1, 2), workers=-1)
    half = np.array(kernel.shape) // 2
    return np.roll(full, tuple(-half), axis=(0, 1, 2))


def template_matching_scores(
    volume: np.ndarray, template: np.ndarray, n_orientations: int = 60, seed: int = 0
) -> np.ndarray:
    """Maximum NCC over ``n_orientations`` random-uniform rotations of ``template``.

    Parameters
    ----------
    volume : (z, y, x) tomogram.
    template : (n, n, n) template at the tomogram's pixel size, same contrast as the tomogram.
    n_orientations : rotations sampled uniformly on SO(3) (seeded).

    Returns
    -------
    (z, y, x) float32 NCC map in [-1, 1].
    """
    volume = np.asarray(volume, dtype=np.float64)
    shape = volume.shape
    radius = (template.shape[0] - 1) / 2
    grid = np.indices(template.shape) - radius
    mask = (np.sqrt((grid**2).sum(0)) <= radius).astype(np.float64)
    n = mask.sum()
    volume_fft = _padded_fft(volume, shape)
    mean = _correlate(volume_fft, mask, shape) / n
    mean_sq = _correlate(_padded_fft(volume**2, shape), mask, shape) / n
    sigma = np.sqrt(np.clip(mean_sq - mean**2, 1e-12, None))
    best = np.full(shape, -np.inf)
    centre = np.full(3, radius)
    for rotation in Rotation.random(n_orientations, random_state=seed).as_matrix():
        rotated = ndimage.affine_transform(template, rotation, offset=centre - rotation @ centre, order=1)
        inside = rotated[mask > 0]
        standardised = np.where(mask > 0, (rotated - inside.mean()) / (inside.std() + 1e-12), 0.0)
        np.maximum(best, _correlate(volume_fft, standardised, shape) / (n * sigma), out=best)
    return best.astype(np.float32)
