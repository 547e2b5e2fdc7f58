"""References the speed benchmark measures the engine against (measured, never shipped).

- :func:`deepetpicker_mp_nms`: DeepETPicker's own post-processing as its ``test.py`` and
  ``utils/misc.py`` describe it, re-implemented here from that description: binarise,
  ``ceil(2r / 2)`` rounds of 3³ mean pooling, a (2r + 1)³ max pooling (one 3-D kernel), the
  local maxima, then ``de_dup``: a point is kept when it is farther than the minimum
  distance from every point kept before it (a loop over the points, each compared with
  all kept ones at once).
- :func:`previous_engine_peaks`: this engine's ``peaks`` module as it was at
  :data:`PREVIOUS_COMMIT` (the release before the torch local-max and the scan greedy),
  loaded from the git history so "before" and "after" run in the same process.
- :func:`previous_engine_tree`: the whole package of that release, for the training
  measurements, which run in their own processes.
"""

from __future__ import annotations

import math
import subprocess
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["deepetpicker_mp_nms", "previous_engine_peaks", "previous_engine_tree", "PREVIOUS_COMMIT"]

PREVIOUS_COMMIT = "38d4866"
ROOT = Path(__file__).resolve().parents[1]


def deepetpicker_mp_nms(
    scores: np.ndarray, radius_px: float, threshold: float, min_distance_px: float, device: torch.device | str = "cpu"
) -> np.ndarray:
    """(N, 3) z, y, x picks of DeepETPicker's MP-NMS + de_dup, best first."""
    binary = torch.from_numpy((scores >= threshold).astype(np.float32)).to(device)[None, None]
    soft = binary
    for _ in range(max(1, math.ceil(2 * radius_px / 2))):
        soft = F.avg_pool3d(soft, 3, stride=1, padding=1)
    size = 2 * int(round(radius_px)) + 1
    maxima = F.max_pool3d(soft, size, stride=1, padding=size // 2)
    zyx = torch.nonzero(((soft == maxima) & (binary > 0))[0, 0]).cpu().numpy()
    values = soft[0, 0][tuple(torch.from_numpy(zyx.T).to(device))].cpu().numpy() if len(zyx) else np.zeros(0)
    kept = np.zeros((0, 3))
    for point in zyx[np.argsort(-values, kind="stable")]:
        if not len(kept) or np.linalg.norm(kept - point, axis=1).min() > min_distance_px:
            kept = np.vstack([kept, point])
    return kept.astype(int)


def previous_engine_peaks() -> types.ModuleType | None:
    """The ``peaks`` module of :data:`PREVIOUS_COMMIT`, or None outside a git checkout."""
    try:
        source = subprocess.run(
            ["git", "show", f"{PREVIOUS_COMMIT}:tomocpt_scipion/engine/peaks.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("previous_peaks")
    exec(compile(source, f"{PREVIOUS_COMMIT}:peaks.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def previous_engine_tree(folder: Path) -> Path | None:
    """The package of :data:`PREVIOUS_COMMIT`, unpacked under ``folder`` (put the returned
    folder first on ``sys.path`` to import it), or None outside a git checkout."""
    tree = Path(folder) / f"engine_{PREVIOUS_COMMIT}"
    if (tree / "tomocpt_scipion" / "engine").is_dir():
        return tree
    tree.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "archive", PREVIOUS_COMMIT, "tomocpt_scipion"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return tree
