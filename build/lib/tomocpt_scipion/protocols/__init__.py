"""Protocols of the tomocpt_scipion plugin."""

from .protocol_evaluate import ProtTomoCPTEvaluate
from .protocol_filter import ProtTomoCPTFilter
from .protocol_import_coordinates import ProtTomoCPTImportCoordinates
from .protocol_import_model import ProtTomoCPTImportModel
from .protocol_pick import ProtTomoCPTPick
from .protocol_train import ProtTomoCPTTrain

__all__ = [
    "ProtTomoCPTTrain",
    "ProtTomoCPTPick",
    "ProtTomoCPTFilter",
    "ProtTomoCPTEvaluate",
    "ProtTomoCPTImportModel",
    "ProtTomoCPTImportCoordinates",
]
