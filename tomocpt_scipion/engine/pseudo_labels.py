"""Pseudo-labels for sparse annotations: a first model's confident picks become labels.

With a few labelled particles per tomogram (TomoPicker's setting, 10 % of the particles) the
network sees each of them hundreds of times and learns them rather than the species: its
training loss falls to ~0.01 within ten epochs while the validation loss stalls. The
unlabelled particles are in the training tomograms all along. A first model, trained on the
labels, picks there; its most confident picks are added to the labels and the network is
trained again from fresh weights (self-training, as in semi-supervised detection).

Only the first :data:`PSEUDO_LABEL_SHARE` of the *missing* particles of each tomogram
(expected − labelled) are added, highest scores first, never below the first model's
calibrated threshold, nor within a particle radius of a labelled centre. The annotation
therefore stays partial: the second training keeps the positive-unlabeled loss, which treats
the particles still unlabelled as unlabelled, not as background, so a wrong or missing
pseudo-label costs less than it would in a complete (positive-negative) annotation.

Coordinates are (x, y, z) pixels of the tomogram files, as everywhere in the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from scipy.spatial import cKDTree

from .config import EngineConfig
from .infer import predict_scores
from .predict import picks_from_scores

__all__ = ["PSEUDO_LABEL_SHARE", "pseudo_label_count", "pseudo_labelled"]

logger = logging.getLogger(__name__)

#: share of a tomogram's missing particles (expected − labelled) taken from the first model's picks
PSEUDO_LABEL_SHARE = 0.5


def pseudo_label_count(expected: float, labelled: int) -> int:
    """Pseudo-labels to add to a tomogram of ``labelled`` of ``expected`` particles."""
    return max(0, int(round(PSEUDO_LABEL_SHARE * (expected - labelled))))


def pseudo_labelled(
    model: torch.nn.Module,
    config: EngineConfig,
    tomograms: Sequence[str | Path],
    coordinates: pd.DataFrame,
    pixel_size_a: float | None = None,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """``coordinates`` with the confident picks of ``model`` in ``tomograms`` added.

    Parameters
    ----------
    model, config : the first model (eval mode, on ``device``) and its calibrated config;
        ``config.expected_particles`` is the expected particles per tomogram and class.
    tomograms : the training tomograms (MRC files; stems are tomogram names).
    coordinates : their labelled particles (``tomo_name``, x, y, z in pixels, ``class_id``).
    pixel_size_a : pixel size when MRC headers have none.

    Returns
    -------
    The labelled rows, then the added ones, which carry their ``score``.
    """
    if not config.expected_particles:
        raise ValueError("pseudo-labels need the expected particles per tomogram (expected_particles).")
    added = []
    for path in tomograms:
        name = Path(path).stem
        score_map = predict_scores(model, config, path, pixel_size_a, device)
        picks = picks_from_scores(score_map, config, name, refine="centroid", device=device)
        for class_id in range(1, config.n_classes + 1):
            labelled = coordinates[(coordinates["tomo_name"] == name) & (coordinates["class_id"] == class_id)]
            candidates = picks[picks["class_id"] == class_id]
            if len(labelled) and len(candidates):
                radius_px = config.diameters_a[class_id - 1] / 2 / score_map.pixel_size_a
                distance, _ = cKDTree(labelled[["x", "y", "z"]].to_numpy(float)).query(
                    candidates[["x", "y", "z"]].to_numpy(float)
                )
                candidates = candidates[distance > radius_px]
            wanted = pseudo_label_count(config.expected_particles, len(labelled))
            chosen = candidates.head(wanted)
            added.append(chosen)
            logger.info(
                "%s, class %s: %d labelled, %d pseudo-labels added (of %d wanted; scores %s)",
                name,
                config.classes[class_id - 1],
                len(labelled),
                len(chosen),
                wanted,
                f"{chosen['score'].min():.3f}-{chosen['score'].max():.3f}" if len(chosen) else "none",
            )
    return pd.concat([coordinates, *added], ignore_index=True)
