"""ProtTomoCPTImportModel: bring a trained checkpoint into the project."""

import os
import shutil
from enum import Enum

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.utils import Message

from .. import Plugin
from ..convert import readModelSummary
from ..engine.outputs import TRAIN
from ..objects import TomoCPTModel


class ImportModelOutputs(Enum):
    model = TomoCPTModel


class ProtTomoCPTImportModel(EMProtocol):
    """Import a checkpoint trained outside this project (``tomocpt-engine train`` or another project).

    The file is checked first (it must be a tomocpt checkpoint, readable without unpickling
    code) and then copied into the project, so the project keeps working if the original
    moves.
    """

    _label = "import model"
    _devStatus = BETA
    _possibleOutputs = ImportModelOutputs

    def _defineParams(self, form):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(
            "checkpointFile",
            params.PathParam,
            label="Checkpoint (model.pt)",
            important=True,
            help="A model.pt written by tomocpt-engine train or by 'train picker'.",
        )

    def _insertAllSteps(self):
        self._insertFunctionStep(self.checkStep)
        self._insertFunctionStep(self.createOutputStep)

    def checkStep(self):
        Plugin.runEngine(
            self, ["inspect", os.path.abspath(self.checkpointFile.get()), "--json", self._getExtraPath(TRAIN.summary)]
        )

    def createOutputStep(self):
        checkpoint = self._getExtraPath(TRAIN.model)
        shutil.copyfile(self.checkpointFile.get(), checkpoint)
        model = TomoCPTModel(checkpoint=checkpoint)
        model.setFromSummary(readModelSummary(self._getExtraPath(TRAIN.summary)))
        self._defineOutputs(**{ImportModelOutputs.model.name: model})

    def _validate(self):
        path = self.checkpointFile.get()
        if not path or not os.path.isfile(path):
            return [f"The checkpoint file {path} does not exist."]
        return []

    def _summary(self):
        if self.hasAttribute(ImportModelOutputs.model.name):
            return [f"Imported {self.checkpointFile.get()}: {getattr(self, ImportModelOutputs.model.name)}"]
        return []
