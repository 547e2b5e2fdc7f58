"""Names of the files the engine's commands write: the one place that spells them, read by the
engine when it writes and by the Scipion protocols when they read. Torch-free.

A static registry rather than a manifest written by every run: the names depend on nothing
but the tomogram and class names, and a registry is checked by import, not at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TRAIN", "PREDICT", "EVALUATE", "TrainOutputs", "PredictOutputs", "EvaluateOutputs"]


@dataclass(frozen=True)
class TrainOutputs:
    """``train --out``: the model and its readable summary, the resumable state, the log and its plot."""

    model: str = "model.pt"
    summary: str = "model.json"
    state: str = "last.pt"
    log: str = "training_log.csv"
    curve: str = "learning_curve.png"
    member_folder: str = "member_{}"
    first_pass: str = "first_pass"


@dataclass(frozen=True)
class PredictOutputs:
    """``predict --out``: all tomograms' picks in three tables, and per tomogram its DeepETPicker
    coordinates, optional score maps (one per class) and optional preview."""

    relion4: str = "picks.star"
    relion5: str = "picks_relion5.star"
    table: str = "picks.csv"

    @property
    def tables(self) -> tuple[str, str, str]:
        return self.relion4, self.relion5, self.table

    @staticmethod
    def coords(tomo_name: str) -> str:
        return f"{tomo_name}.coords"

    @staticmethod
    def score_map(tomo_name: str, classes: Sequence[str], channel: int) -> str:
        return f"{tomo_name}_scores{PredictOutputs.class_suffix(classes, channel)}.mrc"

    @staticmethod
    def class_suffix(classes: Sequence[str], channel: int) -> str:
        """ "" for a one-class model, else "_<class name>"."""
        return "" if len(classes) == 1 else f"_{classes[channel]}"

    @staticmethod
    def preview(tomo_name: str) -> str:
        return f"{tomo_name}_picks.png"


@dataclass(frozen=True)
class EvaluateOutputs:
    """``evaluate --out``: metrics at F1max, the sweep, the plot (one per class when the
    reference has several) and, when asked, the picks kept at F1max."""

    metrics: str = "metrics.csv"
    sweep: str = "sweep.csv"
    plot: str = "evaluation.png"
    filtered: str = "picks_at_f1max.star"

    @staticmethod
    def class_plot(class_id: int) -> str:
        return f"evaluation_class{class_id}.png"


TRAIN = TrainOutputs()
PREDICT = PredictOutputs()
EVALUATE = EvaluateOutputs()
