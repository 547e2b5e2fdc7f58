"""Transmission-electron-microscope optics shared by both simulation modes.

Spatial frequencies ``k_a`` are in 1/Å; defocus in µm, positive = underfocus. The contrast
transfer function follows the weak-phase convention in which protein (positive potential)
images dark at low frequency under underfocus:

    CTF(k) = -(√(1 - A²) sin χ(k) + A cos χ(k)),
    χ(k) = π λ Δf k² - π/2 Cs λ³ k⁴.

The exposure filter is Grant & Grigorieff (eLife 2015): the signal at frequency k after a
cumulative exposure N (e/Å²) falls as exp(-N / (2 Nₑ(k))), Nₑ(k) = 0.245 k^-1.665 + 2.81.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ELECTRON_WAVELENGTH_A", "ctf", "bfactor_envelope", "exposure_filter"]

#: relativistic electron wavelength in Å at 200 and 300 kV
ELECTRON_WAVELENGTH_A = {300: 0.019687, 200: 0.025079}
SPHERICAL_ABERRATION_A = 2.7e7
AMPLITUDE_CONTRAST = 0.07
_CRITICAL_EXPOSURE = (0.245, -1.665, 2.81)


def ctf(k_a: np.ndarray, defocus_um: float | np.ndarray, voltage_kv: int = 300) -> np.ndarray:
    """Contrast transfer at spatial frequencies ``k_a`` (1/Å), same shape as the broadcast inputs.

    Raises
    ------
    ValueError
        ``voltage_kv`` is not 200 or 300.
    """
    if voltage_kv not in ELECTRON_WAVELENGTH_A:
        raise ValueError(f"voltage_kv must be one of {sorted(ELECTRON_WAVELENGTH_A)}, got {voltage_kv}.")
    wavelength = ELECTRON_WAVELENGTH_A[voltage_kv]
    chi = (
        np.pi * wavelength * np.asarray(defocus_um) * 1e4 * k_a**2
        - 0.5 * np.pi * SPHERICAL_ABERRATION_A * wavelength**3 * k_a**4
    )
    return -(np.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi))


def bfactor_envelope(k_a: np.ndarray, bfactor_a2: float) -> np.ndarray:
    """Amplitude envelope exp(-B k² / 4) of a B-factor in Å²."""
    return np.exp(-bfactor_a2 * k_a**2 / 4)


def exposure_filter(k_a: np.ndarray, exposure_e_per_a2: float) -> np.ndarray:
    """Fraction of the signal left at ``k_a`` after a cumulative exposure (e/Å²)."""
    a, b, c = _CRITICAL_EXPOSURE
    critical = a * np.power(np.maximum(k_a, 1e-6), b) + c
    return np.exp(-exposure_e_per_a2 / (2 * critical))
