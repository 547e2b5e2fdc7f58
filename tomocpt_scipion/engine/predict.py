"""Picking pipeline: checkpoint + tomograms (+ masks) → coordinate tables and output files.

Peaks are found on the score map at the training scale (particle ≈ ``target_diameter_px``)
and scaled back to pixels of each tomogram file, so picking costs the same whatever the
tomogram's pixel size. With ``refine="learned"`` (the default) every pick is then moved by
the model's centring network on the tomogram itself (:mod:`.centring`). A model with particle
templates (:mod:`.particle_template`) picks down to :data:`.specs.CANDIDATE_FLOOR`, rescores those
classes' picks by their local match to the template and applies the threshold to that score. Masks (MRC, any
shape) are looked up at the training grid by nearest neighbour, scaled by the ratio of the
mask's to the tomogram's shape.

Output files (names from :func:`output_names`, the one place that spells them):
:func:`write_picks` writes ``picks.star`` (RELION 4: pixels), ``picks_relion5.star``
(RELION 5: centred Å), ``picks.csv`` and ``<tomo>.coords`` per tomogram;
:func:`write_score_maps` writes ``<tomo>_scores.mrc`` (float16, at the tomogram's grid; one
file per class, ``_scores_<class>`` when there are several); :func:`write_preview` draws
the picks over slices of a tomogram (``<tomo>_picks.png``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .centring import CONVERGING_PASSES, centre_positions
from .config import EngineConfig
from .filtering import filter_picks, read_mask, resolve_class_overlaps, suppress_close
from .infer import ScoreMap, predict_scores, score_map_at_original_grid
from .io import coordinate_table, read_mrc, write_coordinates, write_mrc
from .outputs import PREDICT
from .particle_template import TEMPLATE_SCALE, ParticleTemplate, has_template, rescored
from .peaks import find_peaks
from .plots import plot_picks
from .preprocess import load_at_training_scale
from .specs import CANDIDATE_FLOOR, DEFAULT_PEAK_METHOD, REFINEMENTS, SCORE_MAP_REFINEMENTS

__all__ = [
    "pick_tomogram",
    "picks_from_scores",
    "centre_picks",
    "template_rescored",
    "write_picks",
    "write_score_maps",
    "write_preview",
    "mask_at_training_grid",
    "output_names",
    "predict_tomograms",
]

logger = logging.getLogger(__name__)


def output_names(
    tomo_names: Sequence[str], classes: Sequence[str], scores: bool = False, preview: bool = False
) -> list[str]:
    """Every file a pick run writes, in its output folder."""
    names = list(PREDICT.tables)
    for name in tomo_names:
        names.append(PREDICT.coords(name))
        names += [PREDICT.score_map(name, classes, c) for c in range(len(classes))] if scores else []
        names += [PREDICT.preview(name)] if preview else []
    return names


def mask_at_training_grid(mask: np.ndarray, score_map: ScoreMap) -> np.ndarray:
    """(z, y, x) bool mask on the score map's grid, from a mask of the tomogram's shape or
    binned from it by a whole factor (:func:`.filtering.read_mask` reads and checks it)."""
    ratio = np.array(mask.shape) / np.array(score_map.original_shape)
    indices = [
        np.clip(np.rint(np.arange(n) / score_map.zoom * r).astype(int), 0, m - 1)
        for n, r, m in zip(score_map.scores.shape[1:], ratio, mask.shape)
    ]
    return np.asarray(mask[np.ix_(*indices)]) > 0


def picks_from_scores(
    score_map: ScoreMap,
    config: EngineConfig,
    tomo_name: str,
    method: str = DEFAULT_PEAK_METHOD,
    threshold: float | None = None,
    min_distance_a: float | None = None,
    max_picks: int | None = None,
    refine: str = REFINEMENTS[0],
    mask: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Coordinate table (pixels of the tomogram file) of every class's peaks.

    ``threshold`` None uses each class's calibrated threshold (:meth:`.EngineConfig.class_threshold`).
    ``refine="learned"`` refines on the score map by ``centroid`` here; :func:`centre_picks`
    does the rest.
    """
    refine = SCORE_MAP_REFINEMENTS[0] if refine == "learned" else refine
    voxel_a = score_map.pixel_size_a / score_map.zoom
    tables = []
    for channel in range(score_map.scores.shape[0]):
        diameter_a = config.diameters_a[channel]
        # mp-nms pools over the blobs the network was taught (the label's size); the others over the particle
        radius_px = config.label_radii_px[channel] if method == "mp-nms" else diameter_a / 2 / voxel_a
        min_distance_px = (min_distance_a if min_distance_a is not None else diameter_a) / voxel_a
        peaks = find_peaks(
            score_map.scores[channel],
            method,
            radius_px=radius_px,
            min_distance_px=min_distance_px,
            threshold=config.class_threshold(channel) if threshold is None else threshold,
            max_picks=max_picks,
            refine=refine,
            refine_radius_px=config.training_diameters_px[channel] / 2,
            mask=mask,
            device=device,
        )
        tables.append(coordinate_table(peaks[:, :3] / score_map.zoom, tomo_name, peaks[:, 3], channel + 1))
    table = pd.concat(tables, ignore_index=True)
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def centre_picks(
    table: pd.DataFrame,
    tomogram: str | Path,
    config: EngineConfig,
    centring: torch.nn.Module | None,
    pixel_size_a: float | None = None,
    device: torch.device | str = "cpu",
    min_distance_a: float | None = None,
    templates: dict[int, ParticleTemplate] | None = None,
) -> pd.DataFrame:
    """The picks of one tomogram moved onto the centres its model's centring network finds.

    Two picks of one particle (a broad score blob can give two) move onto the same centre:
    of picks of one class that end closer than half the diameter (or ``min_distance_a``, when
    smaller), the best-scoring one is kept. Picks that a particle template placed
    (:func:`template_rescored`) are centred until they converge
    (:func:`.centring.centre_positions` with ``converge``), and dropped when they do not.

    Parameters
    ----------
    table : coordinate table of ``tomogram`` (pixels of the file).
    tomogram : its MRC file.
    config : the model's config (diameter, centring scale, normalisation).
    centring : the model's centring network (:func:`.checkpoint.load_centring`); None keeps
        the picks as they are (logged).
    pixel_size_a : pixel size when the header has none.
    device : torch device.
    min_distance_a : the smallest distance between picks asked for, Å (default: the diameter).
    templates : the model's particle templates, whose classes' picks ``table`` holds where
        they matched (:func:`template_rescored`); None or empty: every pick is centred as
        one found on the score map.
    """
    name = Path(tomogram).name
    if centring is None or not config.centring_diameter_px:
        logger.info("%s: the model has no centring network; picks stay refined on the score map", name)
        return table
    if table.empty:
        return table
    loaded = load_at_training_scale(
        tomogram, config.diameter_a, config.centring_diameter_px, config.normalisation, pixel_size_a
    )
    before = table[["x", "y", "z"]].to_numpy(float)
    placed = has_template(table, templates)
    after, converged = before.copy(), np.ones(len(table), bool)
    for picks, converge in ((~placed, False), (placed, True)):
        if picks.any():
            after[picks], converged[picks] = centre_positions(
                centring,
                loaded.volume,
                loaded.zoom,
                before[picks],
                config.centring_crop_diameter_px,
                device,
                converge=converge,
            )
    after = np.clip(after, 0, np.array(loaded.original_shape[::-1]) - 1)
    moved = table.assign(x=after[:, 0], y=after[:, 1], z=after[:, 2])[converged]
    kept = _merged(moved, config, loaded.pixel_size_a, min_distance_a) if len(moved) else []
    unconverged = (
        f"; {int((~converged).sum())} placed by a particle template did not converge in {CONVERGING_PASSES} "
        "passes and were dropped"
        if placed.any()
        else ""
    )
    logger.info(
        "%s: centring network moved %d pick(s) by %.2f px on average%s; %d landed on a better pick's particle "
        "and were dropped",
        name,
        len(table),
        float(np.linalg.norm(after - before, axis=1).mean()),
        unconverged,
        len(moved) - len(kept),
    )
    return moved.loc[kept].sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _merged(moved: pd.DataFrame, config: EngineConfig, pixel_size_a: float, min_distance_a: float | None) -> np.ndarray:
    """Index labels of the moved picks kept: of picks of one class that ended closer than half the
    diameter (or ``min_distance_a``, when smaller), the best-scoring one."""

    def merge_px(class_id: int) -> float:
        diameter_a = config.diameters_a[class_id - 1]
        return min(diameter_a / 2, diameter_a if min_distance_a is None else min_distance_a) / pixel_size_a

    return np.concatenate(
        [
            rows.index.to_numpy()[
                suppress_close(rows[["x", "y", "z"]].to_numpy(), rows["score"].to_numpy(), merge_px(class_id))
            ]
            for class_id, rows in moved.groupby("class_id", sort=False)
        ]
    )


def template_rescored(
    table: pd.DataFrame,
    tomogram: str | Path,
    config: EngineConfig,
    templates: dict[int, ParticleTemplate],
    pixel_size_a: float | None = None,
    min_distance_a: float | None = None,
) -> pd.DataFrame:
    """The picks of one tomogram (pixels of the file), those of every class with a particle
    template moved to where it matches best and scored by :func:`.particle_template.combined_scores`,
    best first; two that end on one particle (closer than half the diameter, or ``min_distance_a``
    when smaller) merge into the better one, as after the centring network. Unchanged without templates."""
    if not templates or table.empty:
        return table
    loaded = load_at_training_scale(
        tomogram, config.diameter_a, config.target_diameter_px * TEMPLATE_SCALE, config.normalisation, pixel_size_a
    )
    diameters_px = [d * TEMPLATE_SCALE for d in config.training_diameters_px]
    logger.info(
        "%s: %d pick(s) rescored by their match to the particle template of %s, and moved to where it matches",
        Path(tomogram).name,
        int(has_template(table, templates).sum()),
        ", ".join(config.classes[i] for i in sorted(templates)),
    )
    moved = rescored(table, loaded.volume, loaded.zoom, diameters_px, templates, config.expected_particles)
    kept = moved.loc[_merged(moved, config, loaded.pixel_size_a, min_distance_a)]
    return kept.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _above_thresholds(
    table: pd.DataFrame, config: EngineConfig, threshold: float | None, max_picks: int | None
) -> pd.DataFrame:
    """The picks at or above ``threshold`` (None: each class's calibrated one), at most ``max_picks`` a class."""
    limits = table["class_id"].map(lambda c: config.class_threshold(c - 1) if threshold is None else threshold)
    kept = table[table["score"] >= limits]
    if max_picks is not None:
        kept = kept.groupby("class_id", sort=False).head(max_picks)
    return kept.reset_index(drop=True)


def pick_tomogram(
    model,
    config: EngineConfig,
    tomogram: str | Path,
    *,
    pixel_size_a: float | None = None,
    mask: str | Path | None = None,
    method: str = DEFAULT_PEAK_METHOD,
    threshold: float | None = None,
    min_distance_a: float | None = None,
    max_picks: int | None = None,
    refine: str = REFINEMENTS[0],
    centring: torch.nn.Module | None = None,
    templates: dict[int, ParticleTemplate] | None = None,
    device: torch.device | str = "cpu",
    **network_options,
) -> tuple[pd.DataFrame, ScoreMap]:
    """Score and pick one tomogram.

    Parameters
    ----------
    model, config : from :func:`.checkpoint.load_model`.
    tomogram : MRC file; its stem names the tomogram.
    pixel_size_a : pixel size when the header has none.
    mask : MRC mask; picks only where it is > 0.
    method, threshold, min_distance_a, max_picks, refine : see :func:`.peaks.find_peaks`
        (``min_distance_a`` in Å, default the particle diameter; ``threshold`` None: the
        model's calibrated threshold per class; ``refine="learned"``: see :func:`centre_picks`).
    centring : the model's centring network (:func:`.checkpoint.load_centring`), or None.
    templates : the model's particle templates (:func:`.checkpoint.load_templates`), or None:
        ``threshold`` and ``max_picks`` then apply to the rescored picks.
    device : torch device.
    **network_options : merge, window, overlap, pad, batch_size, tta (see :func:`.infer.run_network`).

    Returns
    -------
    The coordinate table and the score map.
    """
    score_map = predict_scores(model, config, tomogram, pixel_size_a, device, **network_options)
    read = read_mask(mask, score_map.original_shape) if mask else None
    mask_array = mask_at_training_grid(read[0], score_map) if read else None
    candidates = min(CANDIDATE_FLOOR, CANDIDATE_FLOOR if threshold is None else threshold)
    table = picks_from_scores(
        score_map,
        config,
        Path(tomogram).stem,
        method,
        candidates if templates else threshold,
        min_distance_a,
        None if templates else max_picks,
        refine,
        mask_array,
        device,
    )
    if templates:
        table = _above_thresholds(
            template_rescored(table, tomogram, config, templates, pixel_size_a, min_distance_a),
            config,
            threshold,
            max_picks,
        )
    if refine == "learned":
        table = centre_picks(table, tomogram, config, centring, pixel_size_a, device, min_distance_a, templates)
        if read:  # centring can move a pick across the mask's edge
            table = filter_picks(table, masks={Path(tomogram).stem: read})
    if config.n_classes > 1:
        file_pixel_a = score_map.pixel_size_a
        table = resolve_class_overlaps(table, {c + 1: d / 2 / file_pixel_a for c, d in enumerate(config.diameters_a)})
    used = (
        threshold
        if threshold is not None
        else ", ".join(f"{config.class_threshold(c):.3g}" for c in range(config.n_classes))
    )
    logger.info("%s: %d pick(s) (%s, threshold %s)", Path(tomogram).name, len(table), method, used)
    return table, score_map


def write_picks(
    out_dir: str | Path,
    table: pd.DataFrame,
    pixel_size_a: float,
    tomo_shapes: dict[str, Sequence[int]],
    overwrite: bool = False,
) -> list[Path]:
    """Write picks in every coordinate format; returns the paths."""
    out_dir = Path(out_dir)
    star, relion5, csv = (out_dir / name for name in PREDICT.tables)
    written = [
        write_coordinates(star, table, pixel_size_a=pixel_size_a, overwrite=overwrite),
        write_coordinates(
            relion5, table, pixel_size_a=pixel_size_a, tomo_shapes=tomo_shapes, relion_version=5, overwrite=overwrite
        ),
        write_coordinates(csv, table, overwrite=overwrite),
    ]
    for name in tomo_shapes:
        written.append(
            write_coordinates(out_dir / PREDICT.coords(name), table[table["tomo_name"] == name], overwrite=overwrite)
        )
    return written


def write_score_maps(
    out_dir: str | Path, tomo_name: str, score_map: ScoreMap, classes: Sequence[str], overwrite: bool = False
) -> list[Path]:
    """One float16 MRC per class at the tomogram's grid; returns the paths."""
    return [
        write_mrc(
            Path(out_dir) / PREDICT.score_map(tomo_name, classes, channel),
            score_map_at_original_grid(score_map, channel).astype(np.float16),
            score_map.pixel_size_a,
            overwrite=overwrite,
        )
        for channel in range(score_map.scores.shape[0])
    ]


def write_preview(
    out_dir: str | Path, tomogram: str | Path, table: pd.DataFrame, diameter_a: float, pixel_size_a: float
) -> Path:
    """``<tomo>_picks.png``: the picks of one tomogram over three of its z-slices."""
    volume, _ = read_mrc(tomogram)
    name = Path(tomogram).stem
    picks = table[table["tomo_name"] == name][["x", "y", "z"]].to_numpy(float)
    return plot_picks(volume, picks, diameter_a / 2 / pixel_size_a, Path(out_dir) / PREDICT.preview(name), name)


def predict_tomograms(
    model_path: str | Path,
    tomograms: Sequence[str | Path],
    out_dir: str | Path,
    *,
    masks: Sequence[str | Path] = (),
    pixel_size_a: float | None = None,
    diameter_a: float | None = None,
    save_scores: bool = False,
    preview: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    refine: str = REFINEMENTS[0],
    **pick_options,
) -> list[str]:
    """Pick every tomogram with a model and write the outputs (:data:`.outputs.PREDICT`) together.

    Parameters
    ----------
    model_path : ``model.pt``.
    tomograms : MRC files, one name each (their stems name the picks).
    out_dir : output folder; its files appear together or not at all.
    masks : one MRC mask per tomogram, or none.
    pixel_size_a : pixel size when the headers have none.
    diameter_a : pick particles of this diameter (Å) instead of the model's (see
        :meth:`.EngineConfig.for_diameter`).
    save_scores, preview : also write the score maps, a preview PNG per tomogram.
    overwrite : replace existing outputs.
    device : torch device (default: CUDA when available).
    refine, **pick_options : see :func:`pick_tomogram`.

    Returns
    -------
    The names of the files written.
    """
    from .checkpoint import load_centring, load_model, load_templates
    from .device import select_device
    from .inputs import check_distinct_tomograms, check_mask_count, tomogram_geometry
    from .io import staged_outputs

    check_distinct_tomograms(tomograms, "--tomograms")
    check_mask_count(masks, tomograms)
    shapes, header_pixel = tomogram_geometry(tomograms)
    device = select_device(device)
    model, config = load_model(model_path, device)
    centring = load_centring(model_path, device) if refine == "learned" else None
    templates = load_templates(model_path)
    if diameter_a:
        if templates:
            logger.warning(
                "Particle templates not used: they show particles of %.0f Å, not the %.0f Å asked for",
                config.diameter_a,
                diameter_a,
            )
            templates = {}
        config = config.for_diameter(diameter_a)
    expected = output_names(list(shapes), config.classes, save_scores, preview)
    tables = []
    with staged_outputs(out_dir, overwrite, expected) as staging:
        for i, tomogram in enumerate(tomograms):
            table, score_map = pick_tomogram(
                model,
                config,
                tomogram,
                pixel_size_a=pixel_size_a,
                mask=masks[i] if masks else None,
                refine=refine,
                centring=centring,
                templates=templates,
                device=device,
                **pick_options,
            )
            tables.append(table)
            if save_scores:
                write_score_maps(staging, Path(tomogram).stem, score_map, config.classes)
            if preview:
                write_preview(staging, tomogram, table, config.diameter_a, score_map.pixel_size_a)
        write_picks(staging, pd.concat(tables, ignore_index=True), pixel_size_a or header_pixel, shapes)
    return expected
