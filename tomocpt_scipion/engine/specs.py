"""Option lists and defaults that the engine, its command line and the Scipion protocols all read.

Torch-free, so the plugin can build its forms from it without loading the numerics. The
first entry of each option tuple is the default.
"""
from __future__ import annotations

__all__ = ["PEAK_METHODS", "PEAK_METHOD_LABELS", "DEFAULT_PEAK_METHOD", "REFINEMENTS", "PU_LOSSES",
           "FALLBACK_THRESHOLD"]

#: peak extraction (see :mod:`.peaks`), with the labels the protocol form shows
PEAK_METHODS = ("local-max", "mp-nms", "greedy")
PEAK_METHOD_LABELS = ("local maxima (tomoCPT)", "mean-pooling NMS (DeepETPicker)", "greedy spheres (TomoPicker)")
DEFAULT_PEAK_METHOD = PEAK_METHODS[0]

#: sub-voxel refinement of picks (see :mod:`.peaks`)
REFINEMENTS = ("centroid", "quadratic", "none")

#: positive-unlabelled losses: trained on partial annotations, with a prior on the particle count
PU_LOSSES = ("nnpu", "kl")

#: score threshold of a model that carries no calibrated one (tomoCPT's suggestion)
FALLBACK_THRESHOLD = 0.3
