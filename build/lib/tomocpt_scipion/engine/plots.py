"""PNG figures people look at: learning curves, precision-recall, F1 vs threshold, scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path

__all__ = ["plot_learning_curve", "plot_evaluation", "plot_picks"]


def _figure(n_axes: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, n_axes, figsize=(5 * n_axes, 4), squeeze=False)
    return plt, figure, axes[0]


def _save(plt, figure, path: str | Path) -> Path:
    figure.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return Path(path)


def plot_learning_curve(history: Sequence[dict], path: str | Path) -> Path:
    """Training and validation loss (log scale) and learning rate per epoch; one pair of curves
    per ensemble member when the rows have a ``member`` key."""
    plt, figure, (loss_axis, lr_axis) = _figure(2)
    members = sorted({row.get("member") for row in history}, key=lambda m: m or 0)
    for member in members:
        rows = [row for row in history if row.get("member") == member]
        epochs = [row["epoch"] for row in rows]
        prefix = f"member {member}: " if member is not None else ""
        loss_axis.plot(epochs, [row["train_loss"] for row in rows], "o-", label=f"{prefix}training")
        loss_axis.plot(epochs, [row["val_loss"] for row in rows], "o-", label=f"{prefix}validation")
        best = int(np.argmin([row["val_loss"] for row in rows]))
        loss_axis.axvline(epochs[best], color="grey", linestyle=":", label=f"{prefix}best (epoch {epochs[best]})")
        lr_axis.plot(epochs, [row["lr"] for row in rows], "o-", label=prefix.rstrip(": ") or None)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Learning curve")
    if min(min(r["train_loss"], r["val_loss"]) for r in history) > 0:
        loss_axis.set_yscale("log")
    loss_axis.legend()
    lr_axis.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="Learning rate")
    return _save(plt, figure, path)


def plot_evaluation(
    sweep, hits_scores: np.ndarray, false_scores: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """Precision-recall curve, F1 vs score threshold and score histograms of hits vs false picks.

    Parameters
    ----------
    sweep : table with columns threshold, precision, recall, f1.
    hits_scores, false_scores : scores of matched and unmatched picks.
    """
    plt, figure, (pr_axis, f1_axis, hist_axis) = _figure(3)
    pr_axis.plot(sweep["recall"], sweep["precision"], "o-")
    pr_axis.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=f"Precision-recall {title}".strip()
    )
    best = int(np.argmax(sweep["f1"].to_numpy()))
    f1_axis.plot(sweep["threshold"], sweep["f1"], "o-")
    f1_axis.axvline(
        sweep["threshold"].iloc[best],
        color="grey",
        linestyle=":",
        label=f"F1max {sweep['f1'].iloc[best]:.3f} at {sweep['threshold'].iloc[best]:.3g}",
    )
    f1_axis.set(xlabel="score threshold", ylabel="F1", ylim=(0, 1.02), title="F1 vs threshold")
    f1_axis.legend()
    bins = np.linspace(
        min(np.min(hits_scores, initial=0), np.min(false_scores, initial=0)),
        max(np.max(hits_scores, initial=1), np.max(false_scores, initial=1)),
        30,
    )
    hist_axis.hist(hits_scores, bins=bins, alpha=0.6, label=f"hits ({len(hits_scores)})")
    hist_axis.hist(false_scores, bins=bins, alpha=0.6, label=f"false picks ({len(false_scores)})")
    hist_axis.set(xlabel="score", ylabel="picks", title="Score histogram")
    hist_axis.legend()
    return _save(plt, figure, path)


def plot_picks(
    volume: np.ndarray, xyz_px: np.ndarray, radius_px: float, path: str | Path, title: str = "", n_slices: int = 3
) -> Path:
    """Picks drawn as circles over ``n_slices`` evenly spaced z-slices of a (z, y, x) volume.

    A pick is drawn on a slice when its centre lies within ``radius_px`` of it, with the
    radius of its cross-section there.
    """
    plt, figure, axes = _figure(n_slices)
    depth = volume.shape[0]
    for axis, z in zip(axes, np.linspace(0, depth - 1, n_slices + 2)[1:-1].round().astype(int)):
        image = np.asarray(volume[z], dtype=np.float32)
        low, high = np.percentile(image, [1, 99])
        axis.imshow(image, cmap="gray", vmin=low, vmax=high, origin="lower")
        near = np.abs(xyz_px[:, 2] - z) < radius_px if len(xyz_px) else np.zeros(0, bool)
        for x, y, zc in xyz_px[near, :3]:
            axis.add_patch(plt.Circle((x, y), np.sqrt(radius_px**2 - (zc - z) ** 2), fill=False, color="tab:orange"))
        axis.set(title=f"{title} z = {z} ({int(near.sum())} picks)".strip(), xticks=[], yticks=[])
    return _save(plt, figure, path)
