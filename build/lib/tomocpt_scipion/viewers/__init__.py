"""Viewers: learning curves, evaluation table and plots, picks over tomogram slices, the pick browser."""

from .viewers import TomoCPTEvaluateViewer, TomoCPTPickBrowser, TomoCPTPickViewer, TomoCPTTrainViewer

__all__ = ["TomoCPTTrainViewer", "TomoCPTPickViewer", "TomoCPTPickBrowser", "TomoCPTEvaluateViewer"]
