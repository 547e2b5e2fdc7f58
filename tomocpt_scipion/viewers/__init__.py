"""Viewers: learning curves, evaluation table and plots, picks over tomogram slices."""
from .viewers import TomoCPTEvaluateViewer, TomoCPTPickViewer, TomoCPTTrainViewer

__all__ = ["TomoCPTTrainViewer", "TomoCPTPickViewer", "TomoCPTEvaluateViewer"]
