"""Synthetic cryo-ET tomograms with known particle centres.

The specimen: crowded, non-overlapping particles of a target species and of distractor
species (real protein maps shipped in ``templates/`` and generated shapes), random 3-D
rotations and sub-voxel positions, an optional lipid-bilayer vesicle and gold beads.

Two imaging modes (``SimulationConfig.mode``):

- ``wbp`` (realistic, the default): a tilt series (±``tilt_range_deg`` in ``tilt_step_deg``
  steps, or ``tilt_angles_deg``), dose-symmetric, with per-tilt CTF (defocus gradient across
  the tilt axis), exposure filter, B-factor, residual alignment error, inelastic loss and
  Poisson noise at ``dose_e_per_a2``, reconstructed by phase-flipped weighted
  back-projection (see :mod:`.tilt_series`); back-projection streaks, the missing wedge and
  thickness-dependent noise come out of the reconstruction itself. ``snr`` is not used.
- ``fourier`` (fast, for unit tests): the volume passes once through missing wedge × CTF ×
  envelope in Fourier space, plus noise through the same filter scaled to ``snr``
  (var(filtered noise-free volume) / var(filtered noise)).

Not modelled in either: beam-induced motion within a tilt, a solvent density gradient, and
molecular crowding at realistic protein densities (particles never interpenetrate).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial.transform import Rotation

from .io import atomic_path, coordinate_table, read_mrc, staged_outputs, write_coordinates, write_mrc
from .optics import ELECTRON_WAVELENGTH_A, bfactor_envelope, ctf
from .tilt_series import reconstruct, simulate_tilt_series, tilt_angles

__all__ = [
    "SIMULATION_MODES",
    "SimulationConfig",
    "SimulatedTomogram",
    "simulate_tomogram",
    "simulate_dataset",
    "species_density",
    "available_species",
]

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_PIXEL_SIZE_A = 10.0
#: generated shapes: name -> (kind, size parameters in Å)
GENERATED_SHAPES = {"sphere": ("ball", 160.0), "rod": ("rod", 70.0, 260.0), "shell": ("shell", 220.0)}
SIMULATION_MODES = ("wbp", "fourier")
_MEMBRANE_LEAFLET_SEPARATION_A = 40.0
_MEMBRANE_LEAFLET_SIGMA_A = 10.0
_GOLD_DIAMETER_A = 100.0
_GOLD_DENSITY = 6.0
_PLACEMENT_TRIES = 60


def available_species() -> list[str]:
    """Names accepted as species: the shipped protein maps and the generated shapes."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.mrc")) + sorted(GENERATED_SHAPES)


@dataclass
class SimulationConfig:
    """Parameters of one synthetic tomogram.

    Attributes
    ----------
    shape_zyx : volume size in voxels, (z, y, x). Defaults to (64, 128, 128).
    pixel_size_a : voxel size in Å. Defaults to 10.
    target : species whose centres are the picking target. Defaults to "4v94" (ribosome).
    distractors : other species placed in the volume. Defaults to RuBisCO, Hsp70 complex,
        a ball and a rod.
    n_target : target particles to place (fewer if the volume is full). Defaults to 40.
    n_distractors : distractor particles, spread evenly over ``distractors``. Defaults to 40.
    mode : ``wbp`` (tilt series + weighted back-projection) or ``fourier`` (one filter).
        Defaults to "wbp".
    snr : ``fourier`` mode: signal-to-noise variance ratio after filtering. Defaults to 0.5.
    tilt_range_deg : tilt range ±degrees of the simulated tilt series. Defaults to 60.
    tilt_step_deg : ``wbp``: tilt increment in degrees. Defaults to 3.
    tilt_angles_deg : ``wbp``: explicit tilt angles (degrees), instead of range and step.
    dose_e_per_a2 : ``wbp``: total exposure of the tilt series, e/Å². Defaults to 120.
    alignment_error_px : ``wbp``: standard deviation of the residual, uncorrected shift of
        each tilt image, pixels. Defaults to 0.5.
    defocus_um : defocus in µm (positive = underfocus). Defaults to 3.
    voltage_kv : 200 or 300. Defaults to 300.
    bfactor_a2 : envelope B-factor in Å². Defaults to 400.
    phase_flip : CTF-corrected tomogram (|CTF| in ``fourier`` mode, phase-flipped tilts in
        ``wbp`` mode) instead of the raw CTF. Defaults to True.
    membrane : add a lipid-bilayer vesicle. Defaults to True.
    n_gold : gold beads. Defaults to 2.
    dark_protein : protein darker than ice, as in cryo-ET. Defaults to True.
    """

    shape_zyx: tuple[int, int, int] = (64, 128, 128)
    pixel_size_a: float = 10.0
    target: str = "4v94"
    distractors: tuple[str, ...] = ("1bxn", "3d2f", "sphere", "rod")
    n_target: int = 40
    n_distractors: int = 40
    mode: str = "wbp"
    snr: float = 0.5
    tilt_range_deg: float = 60.0
    tilt_step_deg: float = 3.0
    tilt_angles_deg: tuple[float, ...] | None = None
    dose_e_per_a2: float = 120.0
    alignment_error_px: float = 0.5
    defocus_um: float = 3.0
    voltage_kv: int = 300
    bfactor_a2: float = 400.0
    phase_flip: bool = True
    membrane: bool = True
    n_gold: int = 2
    dark_protein: bool = True

    def __post_init__(self):
        self.shape_zyx = tuple(int(s) for s in self.shape_zyx)
        self.distractors = tuple(self.distractors)
        if self.tilt_angles_deg is not None:
            self.tilt_angles_deg = tuple(sorted(float(a) for a in self.tilt_angles_deg))
        if self.mode not in SIMULATION_MODES:
            raise ValueError(f"unknown simulation mode {self.mode!r}; valid: {list(SIMULATION_MODES)}.")
        known = available_species()
        for name in (self.target, *self.distractors):
            if name not in known:
                raise ValueError(f"unknown species {name!r}; valid: {known}.")
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be three sizes >= 8, got {self.shape_zyx}.")
        if self.pixel_size_a <= 0:
            raise ValueError(f"pixel_size_a must be > 0, got {self.pixel_size_a}.")
        if self.snr <= 0:
            raise ValueError(f"snr must be > 0, got {self.snr}.")
        if not 0 < self.tilt_range_deg <= 90:
            raise ValueError(f"tilt_range_deg must be in (0, 90], got {self.tilt_range_deg}.")
        if self.voltage_kv not in ELECTRON_WAVELENGTH_A:
            raise ValueError(f"voltage_kv must be one of {sorted(ELECTRON_WAVELENGTH_A)}, got {self.voltage_kv}.")
        if not self.tilt_step_deg > 0 or not self.dose_e_per_a2 > 0 or self.alignment_error_px < 0:
            raise ValueError(
                f"tilt_step_deg ({self.tilt_step_deg}) and dose_e_per_a2 "
                f"({self.dose_e_per_a2}) must be > 0 and alignment_error_px "
                f"({self.alignment_error_px}) >= 0."
            )
        if self.tilt_angles_deg is not None and (
            len(self.tilt_angles_deg) < 2 or max(abs(a) for a in self.tilt_angles_deg) >= 90
        ):
            raise ValueError(
                f"tilt_angles_deg must hold at least two angles within (-90, 90), got {self.tilt_angles_deg}."
            )

    @property
    def angles_deg(self) -> np.ndarray:
        """Tilt angles of the ``wbp`` mode, degrees, ascending."""
        if self.tilt_angles_deg is not None:
            return np.array(self.tilt_angles_deg)
        return tilt_angles(self.tilt_range_deg, self.tilt_step_deg)


@dataclass
class SimulatedTomogram:
    """One simulated volume and its ground truth.

    Attributes
    ----------
    volume : (z, y, x) float32 tomogram.
    coordinates : {species: (N, 3) x, y, z in pixels}.
    diameters_a : {species: diameter in Å}.
    tilt_series : ``wbp`` mode: (n_tilts, y, x) float32 electron counts, else None.
    tilt_angles_deg : ``wbp`` mode: (n_tilts,) angles of ``tilt_series``, degrees.
    """

    volume: np.ndarray
    coordinates: dict[str, np.ndarray]
    diameters_a: dict[str, float] = field(default_factory=dict)
    tilt_series: np.ndarray | None = None
    tilt_angles_deg: np.ndarray | None = None


# ----------------------------------------------------------------------------- species
@lru_cache(maxsize=32)
def _template_density(name: str, pixel_size_a: float) -> np.ndarray:
    data, _ = read_mrc(TEMPLATE_DIR / f"{name}.mrc", mmap=False)
    data = np.clip(np.asarray(data, dtype=np.float32), 0, None)
    data = (
        ndimage.zoom(data, TEMPLATE_PIXEL_SIZE_A / pixel_size_a, order=1)
        if pixel_size_a != TEMPLATE_PIXEL_SIZE_A
        else data
    )
    return _centred_on_mass(data / np.percentile(data[data > 0.05 * data.max()], 90))


def _generated_density(name: str, pixel_size_a: float) -> np.ndarray:
    kind, *sizes_a = GENERATED_SHAPES[name]
    return _shape_density(kind, [s / pixel_size_a for s in sizes_a])


def _shape_density(kind: str, sizes: list[float]) -> np.ndarray:
    """Ball / shell of diameter sizes[0], or rod of diameter sizes[0] and length sizes[1] (px)."""
    half = int(np.ceil(max(sizes) / 2)) + 2
    z, y, x = np.mgrid[-half : half + 1, -half : half + 1, -half : half + 1].astype(np.float32)
    if kind == "ball":
        inside = np.sqrt(x**2 + y**2 + z**2) - sizes[0] / 2
    elif kind == "shell":
        inside = np.abs(np.sqrt(x**2 + y**2 + z**2) - sizes[0] / 2 + 1.0) - 1.0
    else:  # rod along x
        inside = np.maximum(np.sqrt(y**2 + z**2) - sizes[0] / 2, np.abs(x) - sizes[1] / 2)
    # soft edge of about one voxel, as a real map low-passed to the pixel size
    return (1.0 / (1.0 + np.exp(4.0 * inside))).astype(np.float32)


def _centred_on_mass(density: np.ndarray) -> np.ndarray:
    """Crop to a cube centred on the centre of mass, large enough for any rotation."""
    com = np.array(ndimage.center_of_mass(density))
    mask = density > 0.1 * density.max()
    radius = np.sqrt(((np.argwhere(mask) - com) ** 2).sum(axis=1)).max()
    half = int(np.ceil(radius)) + 2
    grid = np.mgrid[-half : half + 1, -half : half + 1, -half : half + 1].reshape(3, -1).T + com
    cube = ndimage.map_coordinates(density, grid.T, order=1, mode="constant")
    return cube.reshape((2 * half + 1,) * 3).astype(np.float32)


def species_density(name: str, pixel_size_a: float) -> np.ndarray:
    """Density of a species in a cube centred on its centre of mass, at ``pixel_size_a``.

    Parameters
    ----------
    name : species name, see :func:`available_species`.
    pixel_size_a : voxel size in Å.

    Returns
    -------
    (n, n, n) float32 array, protein ≈ 1, solvent 0, n odd.
    """
    if name in GENERATED_SHAPES:
        return _generated_density(name, pixel_size_a)
    return _template_density(name, float(pixel_size_a)).copy()


def species_diameter_a(name: str, pixel_size_a: float) -> float:
    """Diameter in Å of the sphere that holds 98 % of the species' above-threshold voxels."""
    density = species_density(name, pixel_size_a)
    centre = (np.array(density.shape) - 1) / 2
    points = np.argwhere(density > 0.2 * density.max())
    radius_px = np.percentile(np.sqrt(((points - centre) ** 2).sum(axis=1)), 98)
    return float(2 * radius_px * pixel_size_a)


# ----------------------------------------------------------------------------- placement
def _rotated(density: np.ndarray, rotation: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    centre = (np.array(density.shape) - 1) / 2
    offset = centre - rotation @ (centre + shift_px)
    return ndimage.affine_transform(density, rotation, offset=offset, order=1, mode="constant")


def _stamp(volume: np.ndarray, occupancy: np.ndarray, density: np.ndarray, corner: np.ndarray) -> bool:
    """Add ``density`` at ``corner`` (z, y, x) if its mask does not touch occupied voxels."""
    lo = np.maximum(corner, 0)
    hi = np.minimum(corner + density.shape, volume.shape)
    if np.any(hi <= lo):
        return False
    src = tuple(slice(a - c, b - c) for a, b, c in zip(lo, hi, corner))
    dst = tuple(slice(a, b) for a, b in zip(lo, hi))
    mask = density[src] > 0.1 * density.max()
    if np.any(occupancy[dst] & mask):
        return False
    volume[dst] += density[src]
    occupancy[dst] |= mask
    return True


def _place(volume, occupancy, density, rng, n, record: list) -> None:
    half = (np.array(density.shape) - 1) // 2
    for _ in range(n):
        # One rotation and sub-voxel offset per particle; only the integer position is retried.
        fraction = rng.uniform(0, 1, 3)
        rotated = _rotated(density, Rotation.random(random_state=rng).as_matrix(), fraction)
        for _ in range(_PLACEMENT_TRIES):
            base = rng.integers(0, np.array(volume.shape) - 1)
            if _stamp(volume, occupancy, rotated, base - half):
                record.append((base + fraction)[::-1])
                break


def _add_membrane(volume, occupancy, rng, pixel_size_a) -> None:
    shape = np.array(volume.shape)
    radius_px = rng.uniform(0.35, 0.6) * shape[1:].min()
    centre = np.array([shape[0] / 2, *rng.uniform(0, shape[1:])])
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    distance_a = (
        np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) - radius_px
    ) * pixel_size_a
    half_sep, sigma = _MEMBRANE_LEAFLET_SEPARATION_A / 2, _MEMBRANE_LEAFLET_SIGMA_A
    bilayer = np.exp(-((distance_a - half_sep) ** 2) / (2 * sigma**2)) + np.exp(
        -((distance_a + half_sep) ** 2) / (2 * sigma**2)
    )
    volume += bilayer.astype(np.float32)
    occupancy |= np.abs(distance_a) < half_sep + 2 * sigma


# ----------------------------------------------------------------------------- optics
def _reconstruction_filter(shape_zyx, config: SimulationConfig) -> np.ndarray:
    """Missing wedge × CTF × envelope on the ``rfftn`` grid of a (z, y, x) volume."""
    kz = np.fft.fftfreq(shape_zyx[0])[:, None, None]
    ky = np.fft.fftfreq(shape_zyx[1])[None, :, None]
    kx = np.fft.rfftfreq(shape_zyx[2])[None, None, :]
    wedge = np.abs(kz) <= np.abs(kx) * np.tan(np.deg2rad(config.tilt_range_deg)) + 1e-9
    k_a = np.sqrt(kx**2 + ky**2 + kz**2) / config.pixel_size_a
    transfer = ctf(k_a, config.defocus_um, config.voltage_kv)
    if config.phase_flip:
        transfer = np.abs(transfer)
    return (wedge * transfer * bfactor_envelope(k_a, config.bfactor_a2)).astype(np.float32)


def _filtered(volume: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    return np.fft.irfftn(np.fft.rfftn(volume) * transfer, s=volume.shape, axes=(0, 1, 2)).astype(np.float32)


# ----------------------------------------------------------------------------- public
def simulate_tomogram(config: SimulationConfig, seed: int = 0) -> SimulatedTomogram:
    """Simulate one tomogram; the same ``config`` and ``seed`` give the same volume.

    Parameters
    ----------
    config : simulation parameters.
    seed : random seed. Defaults to 0.

    Returns
    -------
    SimulatedTomogram with the (z, y, x) volume and the x, y, z pixel centres of every species.
    """
    rng = np.random.default_rng(seed)
    density = np.zeros(config.shape_zyx, dtype=np.float32)
    occupancy = np.zeros(config.shape_zyx, dtype=bool)
    if config.membrane:
        _add_membrane(density, occupancy, rng, config.pixel_size_a)
    gold: list = []
    if config.n_gold:
        gold_density = _GOLD_DENSITY * _shape_density("ball", [_GOLD_DIAMETER_A / config.pixel_size_a])
        _place(density, occupancy, gold_density, rng, config.n_gold, gold)
    counts = {config.target: config.n_target}
    if config.distractors:
        per, extra = divmod(config.n_distractors, len(config.distractors))
        for i, name in enumerate(config.distractors):
            counts[name] = counts.get(name, 0) + per + (i < extra)
    # Largest first: big particles find room before the volume fills.
    order = sorted(counts, key=lambda n: -species_density(n, config.pixel_size_a).shape[0])
    records: dict[str, list] = {name: [] for name in counts}
    pending = {name: counts[name] for name in order}
    while any(pending.values()):  # interleave species so none is starved of space
        for name in order:
            if pending[name]:
                _place(density, occupancy, species_density(name, config.pixel_size_a), rng, 1, records[name])
                pending[name] -= 1
    coordinates = {name: np.array(points, dtype=float).reshape(-1, 3) for name, points in records.items()}
    coordinates["gold"] = np.array(gold, dtype=float).reshape(-1, 3)
    diameters = {name: species_diameter_a(name, config.pixel_size_a) for name in counts}
    diameters["gold"] = _GOLD_DIAMETER_A
    if config.mode == "fourier":
        transfer = _reconstruction_filter(config.shape_zyx, config)
        signal = _filtered(-density if config.dark_protein else density, transfer)
        noise = _filtered(rng.standard_normal(config.shape_zyx).astype(np.float32), transfer)
        noise *= np.sqrt(signal.var() / (config.snr * noise.var()))
        return SimulatedTomogram(signal + noise, coordinates, diameters)
    angles = config.angles_deg
    images, defoci = simulate_tilt_series(
        density,
        angles,
        config.pixel_size_a,
        defocus_um=config.defocus_um,
        voltage_kv=config.voltage_kv,
        bfactor_a2=config.bfactor_a2,
        dose_e_per_a2=config.dose_e_per_a2,
        alignment_error_px=config.alignment_error_px,
        rng=rng,
    )
    volume = reconstruct(
        images,
        angles,
        config.shape_zyx,
        config.pixel_size_a,
        defocus_um=defoci,
        voltage_kv=config.voltage_kv,
        phase_flip=config.phase_flip,
    )
    return SimulatedTomogram(volume if config.dark_protein else -volume, coordinates, diameters, images, angles)


def simulate_dataset(
    out_dir: str | Path,
    n_tomograms: int = 2,
    config: SimulationConfig | None = None,
    seed: int = 0,
    prefix: str = "tomo",
    overwrite: bool = False,
) -> dict:
    """Simulate tomograms and write them with their ground truth.

    Writes ``tomograms/<prefix>_NNN.mrc``, ``coordinates/<species>.star`` (RELION 4 style,
    all tomograms, pixels), ``coordinates/<species>/<tomo>.txt`` (x y z per tomogram, the
    layout Scipion's coordinate import reads) and ``simulation.json``; in ``wbp`` mode also
    ``tilt_series/<tomo>.mrc`` (the images in ascending angle order, electron counts) and
    ``tilt_series/<tomo>.tlt`` (IMOD: one angle in degrees per line).

    Parameters
    ----------
    out_dir : output folder.
    n_tomograms : number of tomograms. Defaults to 2.
    config : simulation parameters. Defaults to :class:`SimulationConfig()`.
    seed : tomogram i uses seed ``seed + i``. Defaults to 0.
    prefix : tomogram name prefix. Defaults to "tomo".
    overwrite : replace existing files. Defaults to False.

    Returns
    -------
    The contents of ``simulation.json``: config, tomogram names and paths, species
    diameters (Å) and particle counts per tomogram.
    """
    if n_tomograms < 1:
        raise ValueError(f"n_tomograms must be >= 1, got {n_tomograms}.")
    config = config or SimulationConfig()
    out_dir = Path(out_dir)
    summary_path = out_dir / "simulation.json"
    if summary_path.exists() and not overwrite:
        raise FileExistsError(f"{summary_path}: a simulation exists here; refusing to overwrite it.")
    tables: dict[str, list[pd.DataFrame]] = {}
    summary = {
        "config": asdict(config),
        "seed": seed,
        "target": config.target,
        "tomograms": {},
        "diameters_a": {},
        "counts": {},
    }
    # staged: the whole data set appears at the end, or nothing of it does
    with staged_outputs(out_dir, overwrite) as staging:
        for i in range(n_tomograms):
            name = f"{prefix}_{i:03d}"
            tomo = simulate_tomogram(config, seed + i)
            path = write_mrc(staging / "tomograms" / f"{name}.mrc", tomo.volume, config.pixel_size_a)
            summary["tomograms"][name] = str(path.relative_to(staging))
            if tomo.tilt_series is not None:
                write_mrc(staging / "tilt_series" / f"{name}.mrc", tomo.tilt_series, config.pixel_size_a)
                with atomic_path(staging / "tilt_series" / f"{name}.tlt") as tmp:
                    tmp.write_text("".join(f"{angle:.2f}\n" for angle in tomo.tilt_angles_deg))
            summary["diameters_a"] = tomo.diameters_a
            summary["counts"][name] = {s: len(c) for s, c in tomo.coordinates.items()}
            for species, xyz in tomo.coordinates.items():
                table = coordinate_table(xyz, name)
                tables.setdefault(species, []).append(table)
                write_coordinates(staging / "coordinates" / species / f"{name}.txt", table)
        for species, parts in tables.items():
            write_coordinates(
                staging / "coordinates" / f"{species}.star", pd.concat(parts), pixel_size_a=config.pixel_size_a
            )
        with atomic_path(staging / summary_path.name) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    return summary
