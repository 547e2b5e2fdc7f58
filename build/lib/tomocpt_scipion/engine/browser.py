"""Browse picks interactively: a tomogram slice by slice, in any of the three orthogonal views,
with the picks of the current slice drawn as circles coloured by score, a threshold slider,
the score histogram, and a button that keeps the current threshold.

Built on matplotlib widgets only, so the same window works in a local session, over a remote
X display (TkAgg) and headless (Agg, for screenshots and tests). Torch-free.

A pick is drawn on a slice when its centre lies within its class's radius of the slice, as
the cross-section of its sphere there: a circle of radius √(r² − Δ²) for a centre Δ pixels
away. Arrays are (z, y, x); coordinates x, y, z in pixels of the tomogram file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["VIEWS", "SlicePicks", "slice_picks", "PickBrowser"]

#: view name -> (array axis cut by the slice, coordinate column of that axis, the image's x and y columns)
VIEWS: dict[str, tuple[int, str, str, str]] = {
    "xy": (0, "z", "x", "y"),
    "xz": (1, "y", "x", "z"),
    "yz": (2, "x", "y", "z"),
}
_COLORMAP = "viridis"


@dataclass
class SlicePicks:
    """Picks crossing one slice: in-plane centres (image x, y), cross-section radii and scores."""

    u: np.ndarray
    v: np.ndarray
    radius: np.ndarray
    score: np.ndarray


def slice_picks(
    table: pd.DataFrame, view: str, index: int, radius_px: Mapping[int, float], threshold: float
) -> SlicePicks:
    """The picks at or above ``threshold`` whose spheres cross slice ``index`` of ``view``.

    Parameters
    ----------
    table : coordinate table (pixels of the tomogram file) of one tomogram.
    view : ``xy``, ``xz`` or ``yz`` (see :data:`VIEWS`).
    index : slice number along the view's normal axis.
    radius_px : {class id: particle radius in pixels}.
    threshold : lowest score drawn.
    """
    _, normal, u_column, v_column = VIEWS[view]
    kept = table[table["score"] >= threshold]
    radii = kept["class_id"].map(radius_px).to_numpy(float)
    offset = kept[normal].to_numpy(float) - index
    crossing = np.abs(offset) < radii
    section = np.sqrt(np.maximum(radii[crossing] ** 2 - offset[crossing] ** 2, 0.0))
    return SlicePicks(
        kept[u_column].to_numpy(float)[crossing],
        kept[v_column].to_numpy(float)[crossing],
        section,
        kept["score"].to_numpy(float)[crossing],
    )


class PickBrowser:
    """A matplotlib figure that browses one tomogram's picks (see the module doc).

    Parameters
    ----------
    volume : (z, y, x) tomogram (a memory map is fine: only the shown slice is read).
    table : its picks (pixels of the file), with scores and class ids.
    radius_px : {class id: particle radius in pixels}.
    threshold : initial score threshold.
    title : shown above the image.
    on_save : called with the current threshold by the "keep this threshold" button; None
        hides the button.
    figure : a matplotlib Figure to draw into (default: a new pyplot figure).
    """

    def __init__(
        self,
        volume: np.ndarray,
        table: pd.DataFrame,
        radius_px: Mapping[int, float],
        threshold: float = 0.0,
        title: str = "",
        on_save: Callable[[float], None] | None = None,
        figure=None,
    ):
        from matplotlib import colormaps
        from matplotlib.colors import Normalize
        from matplotlib.widgets import Button, RadioButtons, Slider

        if figure is None:
            import matplotlib.pyplot as plt

            figure = plt.figure(title or "picks", figsize=(11, 7.5))
        self.volume, self.table, self.radius_px, self.title = volume, table, dict(radius_px), title
        self.view, self.threshold, self.on_save = "xy", float(threshold), on_save
        self.figure = figure
        scores = table["score"].to_numpy(float)
        low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)
        self.norm = Normalize(low, high if high > low else low + 1e-6)
        self.cmap = colormaps[_COLORMAP]
        self.image_axis = figure.add_axes([0.05, 0.22, 0.55, 0.72])
        self.histogram_axis = figure.add_axes([0.73, 0.55, 0.24, 0.35])
        self.index = volume.shape[0] // 2
        self._image = None
        self._circles = []
        slice_axis = figure.add_axes([0.12, 0.11, 0.45, 0.03])
        self.slice_slider = Slider(slice_axis, "slice", 0, volume.shape[0] - 1, valinit=self.index, valstep=1)
        threshold_axis = figure.add_axes([0.12, 0.05, 0.45, 0.03])
        self.threshold_slider = Slider(
            threshold_axis, "threshold", low, max(high, low + 1e-6), valinit=min(max(self.threshold, low), high)
        )
        self.view_buttons = RadioButtons(figure.add_axes([0.68, 0.28, 0.12, 0.18]), list(VIEWS), active=0)
        self.save_button = (
            Button(figure.add_axes([0.82, 0.32, 0.14, 0.06]), "keep this threshold") if on_save is not None else None
        )
        self.slice_slider.on_changed(lambda value: self.show_slice(int(value)))
        self.threshold_slider.on_changed(self.set_threshold)
        self.view_buttons.on_clicked(self.set_view)
        if self.save_button is not None:
            self.save_button.on_clicked(lambda _: self.save())
        colorbar_axis = figure.add_axes([0.61, 0.22, 0.012, 0.72])
        from matplotlib.cm import ScalarMappable

        figure.colorbar(ScalarMappable(self.norm, self.cmap), cax=colorbar_axis, label="score")
        self._draw_histogram()
        self.show_slice(self.index)

    # ----------------------------------------------------------------- state changes
    def set_view(self, view: str) -> None:
        """Switch to the ``xy``, ``xz`` or ``yz`` view, at its middle slice."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; valid: {list(VIEWS)}.")
        self.view = view
        depth = self.volume.shape[VIEWS[view][0]]
        self.slice_slider.valmax = depth - 1
        self.slice_slider.ax.set_xlim(0, depth - 1)
        self._image = None
        self.slice_slider.set_val(depth // 2)  # draws through show_slice

    def set_threshold(self, threshold: float) -> None:
        """Draw only picks scoring at or above ``threshold``."""
        self.threshold = float(threshold)
        self._draw_histogram()
        self.show_slice(self.index)

    def save(self) -> None:
        """Hand the current threshold to ``on_save``."""
        if self.on_save is not None:
            self.on_save(self.threshold)

    def picks_shown(self) -> SlicePicks:
        """The picks drawn on the current slice."""
        return slice_picks(self.table, self.view, self.index, self.radius_px, self.threshold)

    def show_slice(self, index: int) -> None:
        """Draw slice ``index`` of the current view with its picks."""
        axis_index = VIEWS[self.view][0]
        self.index = int(np.clip(index, 0, self.volume.shape[axis_index] - 1))
        image = np.asarray(np.take(self.volume, self.index, axis=axis_index), dtype=np.float32)
        low, high = np.percentile(image, [1, 99])
        axis = self.image_axis
        if self._image is None:
            axis.clear()  # removes the circles too
            self._circles = []
            self._image = axis.imshow(image, cmap="gray", vmin=low, vmax=high, origin="lower")
            _, _, u_name, v_name = VIEWS[self.view]
            axis.set(xlabel=f"{u_name} (px)", ylabel=f"{v_name} (px)")
        else:
            self._image.set_data(image)
            self._image.set_clim(low, high)
        for circle in self._circles:
            circle.remove()
        shown = self.picks_shown()
        from matplotlib.patches import Circle

        self._circles = [
            axis.add_patch(Circle((u, v), r, fill=False, linewidth=1.5, color=self.cmap(self.norm(s))))
            for u, v, r, s in zip(shown.u, shown.v, shown.radius, shown.score)
        ]
        total = int((self.table["score"] >= self.threshold).sum())
        axis.set_title(
            f"{self.title}  {self.view} slice {self.index}: {len(shown.u)} pick(s) here, "
            f"{total} at score ≥ {self.threshold:.3g}".strip()
        )
        self.figure.canvas.draw_idle()

    def _draw_histogram(self) -> None:
        axis = self.histogram_axis
        axis.clear()
        scores = self.table["score"].to_numpy(float)
        if len(scores):
            axis.hist(scores, bins=40, color="0.6")
            axis.hist(scores[scores >= self.threshold], bins=np.histogram_bin_edges(scores, 40), color="tab:orange")
        axis.axvline(self.threshold, color="k", linestyle="--")
        axis.set(xlabel="score", ylabel="picks", title="scores (orange: kept)")

    def screenshot(self, path: str | Path, dpi: int = 100) -> Path:
        """Write the figure as it is now to a PNG."""
        self.figure.savefig(path, dpi=dpi)
        return Path(path)
