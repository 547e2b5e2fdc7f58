"""A template made from the labelled particles, and its local match: a second score for each pick.

A network trained on a handful of labelled particles (10 % of a tomogram's ribosomes: 6 in
two tomograms) learns "a large dark particle" and ranks other large complexes (the 26S
proteasome) beside the target (README). Template matching with the exact structure tells
them apart, but a user rarely has it. The labelled particles are the structure, seen in
noise in unknown orientations: aligned to one another (reference-free) and averaged, then
re-averaged with the picks of the training tomograms that match that average best, they make
a template of the target, centred where the labelled centres fall (:func:`label_centred`).
Each pick is then matched locally: the best
normalised cross-correlation (NCC) of the template over a fixed set of rotations and shifts
of up to :data:`PICK_SHIFT_FRACTION` of a diameter around it. The pick's score becomes

    sigmoid(logit(network score) × w + (NCC − mean) / std),

mean and std those of the NCC of the training tomograms' picks, w the network's weight:
:data:`SPARSE_NETWORK_WEIGHT` where the network learned from a sparse annotation (the
template's verdict leads and the network's score breaks its ties),
:data:`COMPLETE_NETWORK_WEIGHT` where it learned from a complete one (there the template still
tells a distractor of the same size from the target better than the network alone, README).
The pick moves to where the template matches best, refined below a pixel: without a centring
network (too few labels to train one) the score map alone leaves picks up to half a diameter off.

All volumes here are (z, y, x) arrays at the template scale, :data:`TEMPLATE_SCALE` times the
training scale (a particle of ``EngineConfig.training_diameters_px`` × that), and centres are
(z, y, x) in their pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from .boxes import cut_boxes

__all__ = [
    "ParticleTemplate",
    "build_template",
    "rescored",
    "TemplateGeometry",
    "template_geometry",
    "rotation_set",
    "particle_boxes",
    "local_match",
    "reference_free_average",
    "label_centred",
    "REFERENCE_CANDIDATES",
    "bootstrap_template",
    "template_matches",
    "combined_scores",
    "N_ROTATIONS",
    "BOOTSTRAP_SHARE",
    "CANDIDATES_PER_EXPECTED",
    "candidate_limit",
    "has_template",
    "TEMPLATE_SCALE",
    "SPARSE_NETWORK_WEIGHT",
    "COMPLETE_NETWORK_WEIGHT",
    "ALIGNMENT_SHIFT_FRACTION",
    "PICK_SHIFT_FRACTION",
]

#: template scale / training scale: a ribosome of 10 training pixels is matched at 16; on the WBP
#: benchmark's 10 %-label ribosome models (seeds 1-3) the template picked better at 16.6 px than at 11
TEMPLATE_SCALE = 1.6
#: rotations searched (seeded uniform draws: about 25° apart, finer than a 10 px particle resolves)
N_ROTATIONS = 1000
#: largest shift searched when the template is made (the labelled particles and the training picks
#: aligned to it), as a fraction of the diameter: noisy particles aligned over half a diameter
#: averaged into a template that moved the WBP benchmark's ribosome picks 10 px off (README)
ALIGNMENT_SHIFT_FRACTION = 0.25
#: largest shift searched around a pick, as a fraction of the diameter: without a centring network
#: a sparse model's score map peaks up to half a diameter off some particles (at their rim, or
#: between a ribosome and its neighbour); a quarter left those picks there (README)
PICK_SHIFT_FRACTION = 0.5
#: weight of the network's logit beside the template's standardised NCC, for a network that
#: learned from a sparse annotation
SPARSE_NETWORK_WEIGHT = 1.0 / 8.0
#: the same for a network that learned from a complete annotation
COMPLETE_NETWORK_WEIGHT = 1.0 / 2.0
#: rounds of aligning the labelled particles to their average
ALIGNMENT_ROUNDS = 3
#: labelled particles compared with one another to choose the first reference: choosing among
#: all n costs n (n - 1) local matches (3540 for the 60 labelled particles of a twenty-tomogram
#: annotation at 10 %, against 56 for 8)
REFERENCE_CANDIDATES = 8
#: rounds of re-averaging with the best-matching picks of the training tomograms
BOOTSTRAP_ROUNDS = 2
#: share of the particles expected in the training tomograms that join the labelled ones' average
BOOTSTRAP_SHARE = 2.0 / 3.0
#: picks matched per expected particle: the network's weaker picks are dropped unmatched (the match
#: searches 1000 rotations for every pick; a RuBisCO model at 10 % of the labels gives hundreds)
CANDIDATES_PER_EXPECTED = 4
#: picks matched at once (memory: picks × rotations chunk × box³ complex values)
_CHUNK = 8


@dataclass(frozen=True)
class TemplateGeometry:
    """Box edge, mask radius and largest shift of a local match, pixels."""

    box: int
    mask_radius: float
    max_shift: int

    @property
    def mask(self) -> np.ndarray:
        """(box, box, box) float32 sphere of ``mask_radius`` around the box centre."""
        grid = np.mgrid[: self.box, : self.box, : self.box] - (self.box - 1) / 2
        return (np.sqrt((grid**2).sum(0)) <= self.mask_radius).astype(np.float32)


def template_geometry(diameter_px: float, shift_fraction: float = ALIGNMENT_SHIFT_FRACTION) -> TemplateGeometry:
    """The geometry for a particle of ``diameter_px``: a mask one pixel wider than the particle,
    shifts up to ``shift_fraction`` of its diameter, an odd box that holds the mask at every
    shift, its edge a product of 3, 5 and 7 (fast FFTs). A template is made in the box of
    :data:`ALIGNMENT_SHIFT_FRACTION`."""
    mask_radius = diameter_px / 2 + 1
    max_shift = max(1, int(np.ceil(shift_fraction * diameter_px)))
    box = 2 * int(np.ceil(mask_radius + max_shift)) + 1
    while not _fast_fft_size(box):  # a prime edge (29) takes twice as long as 27
        box += 2
    return TemplateGeometry(box, mask_radius, max_shift)


def _fast_fft_size(n: int) -> bool:
    for factor in (3, 5, 7):
        while n % factor == 0:
            n //= factor
    return n == 1


def rotation_set(n: int | None = None) -> np.ndarray:
    """(n, 3, 3) float32 rotation matrices (default :data:`N_ROTATIONS`), uniform on SO(3), the same on every call."""
    return Rotation.random(n or N_ROTATIONS, random_state=0).as_matrix().astype(np.float32)


def _box_centres(volume: np.ndarray, centres_zyx: np.ndarray) -> np.ndarray:
    """(n, 3) the centres rounded to whole pixels and moved inside ``volume``: where boxes are centred."""
    return np.clip(np.rint(np.asarray(centres_zyx, float).reshape(-1, 3)), 0, np.array(np.shape(volume)) - 1)


def particle_boxes(volume: np.ndarray, centres_zyx: np.ndarray, box: int) -> np.ndarray:
    """(n, box, box, box) float32 boxes centred on the rounded centres (``box`` odd; a centre
    outside the volume moves to its edge), zero outside the volume, each standardised (mean 0, std 1)."""
    corners = _box_centres(volume, centres_zyx).astype(int) - box // 2
    boxes = cut_boxes(np.asarray(volume), corners, box).astype(np.float32, copy=False)
    centred = boxes - boxes.mean(axis=(1, 2, 3), keepdims=True)
    return centred / np.maximum(centred.std(axis=(1, 2, 3), keepdims=True), 1e-6)


def _resampled(volumes: torch.Tensor, matrices: torch.Tensor, shifts_zyx: torch.Tensor | None = None) -> torch.Tensor:
    """out(p) = volume(M p + s) about the box centre (p, s in (x, y, z) box pixels), linear."""
    n = volumes.shape[-1]
    theta = torch.zeros(len(matrices), 3, 4)
    theta[:, :, :3] = matrices
    if shifts_zyx is not None:
        theta[:, :, 3] = shifts_zyx.flip(1).float() * 2 / (n - 1)
    grid = F.affine_grid(theta, (len(matrices), 1, n, n, n), align_corners=True)
    return F.grid_sample(volumes[:, None], grid, align_corners=True)[:, 0]


def _turned_templates(reference: torch.Tensor, matrices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``reference`` turned by each of ``matrices``, masked, zero-mean under the mask and of unit norm."""
    edge = reference.shape[-1]
    turned = _resampled(reference.expand(len(matrices), edge, edge, edge), matrices) * mask
    turned = turned - turned.sum((-3, -2, -1), keepdim=True) / mask.sum() * mask
    return turned / turned.flatten(1).norm(dim=1).clamp(min=1e-6)[:, None, None, None]


def local_match(
    boxes: np.ndarray, template: np.ndarray, geometry: TemplateGeometry, rotations: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best NCC of the rotated ``template`` in each box, over ``rotations`` and shifts of up to
    ``geometry.max_shift`` pixels from the box centre, under the geometry's spherical mask.

    Returns
    -------
    (n,) best NCC, (n,) index of its rotation, (n, 3) its shift (z, y, x), pixels: the box
    content at centre + shift matches the template rotated by that rotation. The shift is
    refined below a pixel by a parabola through the NCC at the peak and its two neighbours on
    each axis (at most half a pixel).
    """
    n, edge = len(boxes), geometry.box
    template = _fitted(template, edge)
    if n == 0:
        return np.zeros(0), np.zeros(0, int), np.zeros((0, 3), int)
    data = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
    mask = torch.from_numpy(geometry.mask)
    voxels = mask.sum()
    spectra = torch.fft.rfftn(data, dim=(-3, -2, -1))
    mask_spectrum = torch.fft.rfftn(mask).conj()
    local_sum = torch.fft.irfftn(spectra * mask_spectrum, s=(edge,) * 3)
    local_squares = torch.fft.irfftn(torch.fft.rfftn(data**2, dim=(-3, -2, -1)) * mask_spectrum, s=(edge,) * 3)
    shifts = torch.arange(-geometry.max_shift, geometry.max_shift + 1)
    near = shifts % edge

    def around(volume: torch.Tensor) -> torch.Tensor:
        return volume[..., near, :, :][..., near, :][..., near]

    spread = around(torch.sqrt(torch.clamp(local_squares - local_sum**2 / voxels, min=1e-6)))
    best = torch.full((n,), -2.0)
    best_rotation = torch.zeros(n, dtype=torch.long)
    best_shift = torch.zeros(n, dtype=torch.long)
    reference = torch.from_numpy(np.ascontiguousarray(template, dtype=np.float32))
    for start in range(0, len(rotations), _CHUNK):
        matrices = torch.from_numpy(rotations[start : start + _CHUNK])
        rotated = _turned_templates(reference, matrices, mask)
        correlation = torch.fft.irfftn(
            spectra[:, None] * torch.fft.rfftn(rotated, dim=(-3, -2, -1)).conj()[None], s=(edge,) * 3
        )
        ncc = (around(correlation) / spread[:, None]).flatten(1)
        value, where = ncc.max(1)
        better = value > best
        best = torch.where(better, value, best)
        best_rotation = torch.where(better, start + where // len(shifts) ** 3, best_rotation)
        best_shift = torch.where(better, where % len(shifts) ** 3, best_shift)
    side = len(shifts)
    peak = torch.stack([best_shift // side**2, best_shift // side % side, best_shift % side], 1)
    # the NCC around each box's peak, at its best rotation, for a parabola through the peak on each axis
    matrices = torch.from_numpy(rotations[best_rotation.numpy()])
    rotated = _turned_templates(reference, matrices, mask)
    ncc = around(torch.fft.irfftn(spectra * torch.fft.rfftn(rotated, dim=(-3, -2, -1)).conj(), s=(edge,) * 3)) / spread
    offsets = torch.zeros(n, 3)
    rows = torch.arange(n)
    for axis in range(3):
        inside = (peak[:, axis] > 0) & (peak[:, axis] < side - 1)
        lower, upper = peak.clone(), peak.clone()
        lower[:, axis] = (peak[:, axis] - 1).clamp(min=0)
        upper[:, axis] = (peak[:, axis] + 1).clamp(max=side - 1)
        below, centre, above = (ncc[rows, p[:, 0], p[:, 1], p[:, 2]] for p in (lower, peak, upper))
        curvature = below - 2 * centre + above
        step = torch.where(inside & (curvature < 0), (below - above) / (2 * curvature.clamp(max=-1e-6)), 0.0)
        offsets[:, axis] = step.clamp(-0.5, 0.5)
    shift_zyx = peak - geometry.max_shift + offsets
    return best.numpy().astype(float), best_rotation.numpy(), shift_zyx.numpy().astype(float)


def _fitted(template: np.ndarray, edge: int) -> np.ndarray:
    """``template`` zero-padded or cropped about its centre to an ``edge``-pixel cube: a template
    kept from a search of another largest shift (the mask, set by the diameter alone, fits both)."""
    margin = (edge - template.shape[-1]) // 2
    if margin >= 0:
        return np.pad(template, margin)
    return template[-margin:margin, -margin:margin, -margin:margin]


def _aligned_average(
    boxes: np.ndarray, reference: np.ndarray, geometry: TemplateGeometry, rotations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The average of ``boxes`` each turned into the frame of ``reference``, and their NCC to it."""
    ncc, rotation, shift = local_match(boxes, reference, geometry, rotations)
    # box(c + s + R q) matches reference(q): sample each box there
    inverse = torch.from_numpy(rotations[rotation]).transpose(1, 2)
    turned = _resampled(torch.from_numpy(np.ascontiguousarray(boxes)), inverse, torch.from_numpy(shift))
    return turned.mean(0).numpy(), ncc


def label_centred(
    template: np.ndarray, labelled: np.ndarray, geometry: TemplateGeometry, rotations: np.ndarray
) -> np.ndarray:
    """``template`` moved so that its centre is where the labelled particles' centres fall once
    aligned to it (the median on each axis).

    An average made without a reference has no centre of its own: its first reference is one
    noisy particle, and every alignment may move it by a fraction of a pixel. Each pick matched
    to it would move by that much too (the template's offset, turned by the pick's rotation).
    The user's labels define the centre. The median, not the mean: a labelled particle that
    aligns wrongly lands anywhere up to the largest shift. On the WBP benchmark's 10 %-label
    ribosome model of seed 1 the mean left the median hit 2.27 px from its particle, the
    median 1.00 px (README).

    Parameters
    ----------
    labelled : standardised boxes centred on the labelled particles (:func:`particle_boxes`).
    """
    _, rotation, shift = local_match(labelled, template, geometry, rotations)
    # the aligned box(R^T p + s) matches template(p) (_aligned_average): its centre, the labelled
    # centre, is at p = -R s in the template's frame ((x, y, z) like the matrices)
    centres_xyz = -np.einsum("nij,nj->ni", rotations[rotation], shift[:, ::-1])
    offset_zyx = torch.from_numpy(np.median(centres_xyz, 0)[::-1].copy())[None]
    volume = torch.from_numpy(np.ascontiguousarray(template, dtype=np.float32))[None]
    return _resampled(volume, torch.eye(3)[None], offset_zyx)[0].numpy()


def reference_free_average(
    boxes: np.ndarray, geometry: TemplateGeometry, rotations: np.ndarray, rounds: int = ALIGNMENT_ROUNDS
) -> np.ndarray:
    """Average of particles in unknown orientations: the first reference is the particle the
    others match best among :data:`REFERENCE_CANDIDATES` of them (spread evenly over ``boxes``),
    then every particle is aligned to the average ``rounds`` times.

    Parameters
    ----------
    boxes : (n, box, box, box) standardised particle boxes (:func:`particle_boxes`), n ≥ 1.
    """
    if len(boxes) == 1:
        return boxes[0].copy()
    chosen = boxes[np.unique(np.linspace(0, len(boxes) - 1, REFERENCE_CANDIDATES).round().astype(int))]
    agreement = [
        local_match(np.delete(chosen, i, 0), chosen[i], geometry, rotations)[0].mean() for i in range(len(chosen))
    ]
    reference = chosen[int(np.argmax(agreement))]
    for _ in range(rounds):
        reference, _ = _aligned_average(boxes, reference, geometry, rotations)
    return reference


def bootstrap_template(
    labelled: np.ndarray,
    candidates: np.ndarray,
    network_scores: np.ndarray,
    n_particles: int,
    geometry: TemplateGeometry,
    rotations: np.ndarray,
    network_weight: float,
) -> tuple[np.ndarray, float, float]:
    """A template from the labelled particles, re-averaged :data:`BOOTSTRAP_ROUNDS` times with
    the ``n_particles`` candidates that score best (:func:`combined_scores`) against it.

    Parameters
    ----------
    labelled : standardised boxes of the labelled particles.
    candidates : standardised boxes of the network's picks in the same tomograms.
    network_scores : their network scores.
    n_particles : how many candidates join the average (0: the labelled particles alone).
    network_weight : the network's weight in :func:`combined_scores`.

    Returns
    -------
    The template and the mean and std of the candidates' NCC against it (the standardisation
    of :func:`combined_scores`).
    """
    template = label_centred(reference_free_average(labelled, geometry, rotations), labelled, geometry, rotations)
    ncc = local_match(candidates, template, geometry, rotations)[0]
    for _ in range(BOOTSTRAP_ROUNDS if n_particles > 0 and len(candidates) else 0):
        ranked = np.argsort(-combined_scores(network_scores, ncc, ncc.mean(), ncc.std(), network_weight), kind="stable")
        template, _ = _aligned_average(candidates[ranked[:n_particles]], template, geometry, rotations)
        template = label_centred(template, labelled, geometry, rotations)
        ncc = local_match(candidates, template, geometry, rotations)[0]
    return template, float(ncc.mean()), float(max(ncc.std(), 1e-6))


def template_matches(
    volume: np.ndarray,
    centres_zyx: np.ndarray,
    template: np.ndarray,
    diameter_px: float,
    rotations: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best local NCC of ``template`` around each centre of ``volume`` (default rotations:
    :func:`rotation_set`), within :data:`PICK_SHIFT_FRACTION` of a diameter, and where it
    matches: (n,) NCC, (n, 3) centres (z, y, x), pixels."""
    geometry = template_geometry(diameter_px, PICK_SHIFT_FRACTION)
    rotations = rotation_set() if rotations is None else rotations
    ncc, _, shift = local_match(particle_boxes(volume, centres_zyx, geometry.box), template, geometry, rotations)
    return ncc, _box_centres(volume, centres_zyx) + shift


def has_template(table: pd.DataFrame, templates: Mapping[int, ParticleTemplate] | None) -> np.ndarray:
    """Whether each pick of ``table`` (``class_id``, 1-based) is of a class with a template
    (``templates``: class index, 0-based → its template; None: none has)."""
    return table["class_id"].isin([i + 1 for i in templates or {}]).to_numpy()


def candidate_limit(expected_particles: float) -> int:
    """How many of a tomogram's best network picks of a class are matched: :data:`CANDIDATES_PER_EXPECTED`
    times the particles expected there."""
    return int(np.ceil(CANDIDATES_PER_EXPECTED * expected_particles))


def combined_scores(
    network_scores: np.ndarray, ncc: np.ndarray, mean: float, std: float, network_weight: float
) -> np.ndarray:
    """sigmoid(logit(network score) × ``network_weight`` + (NCC − mean) / std), in (0, 1)."""
    scores = np.clip(np.asarray(network_scores, float), 1e-6, 1 - 1e-6)
    logit = np.log(scores / (1 - scores)) * network_weight + (np.asarray(ncc, float) - mean) / std
    return 1.0 / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class ParticleTemplate:
    """A class's template at the template scale, in the box it was made in, the mean and std
    of the training picks' NCC against it there (the standardisation of :func:`combined_scores`)
    and the network's weight beside it there."""

    volume: np.ndarray
    ncc_mean: float
    ncc_std: float
    network_weight: float

    def to_payload(self) -> dict:
        """Tensors and floats, for a checkpoint read with ``torch.load(weights_only=True)``."""
        return {
            "volume": torch.from_numpy(np.ascontiguousarray(self.volume)),
            "ncc_mean": self.ncc_mean,
            "ncc_std": self.ncc_std,
            "network_weight": self.network_weight,
        }

    @classmethod
    def from_payload(cls, payload: Mapping) -> ParticleTemplate:
        return cls(
            np.asarray(payload["volume"], dtype=np.float32),
            float(payload["ncc_mean"]),
            float(payload["ncc_std"]),
            # checkpoints written before complete annotations had templates hold sparse ones alone
            float(payload.get("network_weight", SPARSE_NETWORK_WEIGHT)),
        )


def build_template(
    volumes: Sequence[np.ndarray],
    labelled_zyx: Sequence[np.ndarray],
    candidates: Sequence[pd.DataFrame],
    diameter_px: float,
    expected_particles: float,
    network_weight: float,
    rotations: np.ndarray | None = None,
) -> ParticleTemplate:
    """The template of one class from its labelled particles and the network's picks.

    Parameters
    ----------
    volumes : the training tomograms at the template scale, (z, y, x).
    labelled_zyx : per tomogram, (n, 3) labelled centres (z, y, x), pixels of its volume (at least one in all).
    candidates : per tomogram, the network's picks of the class (``x``, ``y``, ``z`` pixels of
        its volume, ``score``), down to a low floor; the :func:`candidate_limit` best of each are used.
    diameter_px : the class's diameter at the template scale.
    expected_particles : particles of the class expected per tomogram (:data:`BOOTSTRAP_SHARE`
        of all of them re-average the template).
    network_weight : the network's weight in :func:`combined_scores`: :data:`SPARSE_NETWORK_WEIGHT`
        or :data:`COMPLETE_NETWORK_WEIGHT`, by the annotation it learned from.
    rotations : (n, 3, 3) rotations searched (default :func:`rotation_set`).
    """
    geometry = template_geometry(diameter_px)
    rotations = rotation_set() if rotations is None else rotations
    labelled = np.concatenate([particle_boxes(v, c, geometry.box) for v, c in zip(volumes, labelled_zyx)])
    candidates = [t.nlargest(candidate_limit(expected_particles), "score") for t in candidates]
    picked = np.concatenate(
        [particle_boxes(v, t[["z", "y", "x"]].to_numpy(float), geometry.box) for v, t in zip(volumes, candidates)]
    )
    scores = np.concatenate([t["score"].to_numpy(float) for t in candidates])
    n_particles = min(len(picked), int(round(BOOTSTRAP_SHARE * expected_particles * len(volumes))))
    template, mean, std = bootstrap_template(labelled, picked, scores, n_particles, geometry, rotations, network_weight)
    return ParticleTemplate(template, mean, std, network_weight)


def rescored(
    table: pd.DataFrame,
    volume: np.ndarray,
    zoom: float,
    diameters_px: Sequence[float],
    templates: Mapping[int, ParticleTemplate],
    expected_particles: float | None = None,
) -> pd.DataFrame:
    """``table`` (``x``, ``y``, ``z`` pixels of the file, ``class_id``, ``score``) with every pick
    of a class that has a template moved to where the template matches it best and its score
    replaced by :func:`combined_scores`, best first.

    Parameters
    ----------
    volume : the tomogram at the template scale, (z, y, x).
    zoom : template scale / file scale.
    diameters_px : diameter of each class at the template scale (class order).
    templates : class index (0-based) → its template.
    expected_particles : particles expected in this tomogram per class: of a class with a
        template only the :func:`candidate_limit` best picks by network score are matched and
        kept, the rest dropped; None: all.
    """
    if expected_particles:
        limit = candidate_limit(expected_particles)
        rank = table.groupby("class_id")["score"].rank(ascending=False, method="first")
        table = table[(rank <= limit).to_numpy() | ~has_template(table, templates)]
    scores = table["score"].to_numpy(float).copy()
    xyz = table[["x", "y", "z"]].to_numpy(float).copy()
    for index, template in templates.items():
        rows = np.flatnonzero(table["class_id"].to_numpy() == index + 1)
        if not len(rows):
            continue
        ncc, matched = template_matches(volume, xyz[rows, ::-1] * zoom, template.volume, diameters_px[index])
        scores[rows] = combined_scores(scores[rows], ncc, template.ncc_mean, template.ncc_std, template.network_weight)
        xyz[rows] = matched[:, ::-1] / zoom
    moved = table.assign(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], score=scores)
    return moved.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
