"""Scipion objects of the plugin: the trained picking model."""

import json

import pyworkflow.object as pwobj
from pwem.objects import EMObject


class TomoCPTModel(EMObject):
    """A trained picker: one checkpoint file (weights + full engine config) and what it was trained for.

    The checkpoint path is relative to the project (inside the producing protocol's
    ``extra/``), so projects can be moved.
    """

    def __init__(self, checkpoint=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._checkpoint = pwobj.String(checkpoint)
        self._recipe = pwobj.String()
        self._backbone = pwobj.String()
        self._labelType = pwobj.String()
        self._loss = pwobj.String()
        self._trainingSamplingRate = pwobj.Float()
        self._diameter = pwobj.Float()
        self._classes = pwobj.String()
        self._classDiameters = pwobj.String()
        self._thresholds = pwobj.String()
        self._engineVersion = pwobj.String()

    def getCheckpoint(self):
        """Checkpoint file, relative to the project folder."""
        return self._checkpoint.get()

    def setCheckpoint(self, path):
        self._checkpoint.set(path)

    def getFiles(self):
        return {self.getCheckpoint()}

    def setFromSummary(self, summary: dict):
        """Fill the attributes from the engine's model summary (model.json)."""
        config = summary["config"]
        self._recipe.set(config["recipe"])
        self._backbone.set(config["backbone"])
        self._labelType.set(config["label"])
        self._loss.set(config["loss"])
        self._trainingSamplingRate.set(config["voxel_size_a"])
        self._diameter.set(config["diameter_a"])
        self._classes.set(json.dumps(config["classes"]))
        self._classDiameters.set(json.dumps(config.get("class_diameters_a", [])))
        self._thresholds.set(json.dumps(config.get("thresholds", [])))
        self._engineVersion.set(config["engine_version"])

    def getRecipe(self):
        return self._recipe.get()

    def getBackbone(self):
        return self._backbone.get()

    def getLabelType(self):
        return self._labelType.get()

    def getLoss(self):
        return self._loss.get()

    def getTrainingSamplingRate(self):
        """Å per pixel at which the network saw the particles."""
        return self._trainingSamplingRate.get()

    def getDiameter(self):
        """Particle diameter in Å."""
        return self._diameter.get()

    def getClasses(self):
        return json.loads(self._classes.get() or "[]")

    def getClassDiameters(self):
        """Particle diameter of each class in Å (every class: the diameter, unless trained with one each)."""
        return json.loads(self._classDiameters.get() or "[]") or [self.getDiameter()] * max(1, len(self.getClasses()))

    def getThresholds(self):
        """Score threshold per class calibrated after training ([] for an uncalibrated model)."""
        return json.loads(self._thresholds.get() or "[]")

    def getEngineVersion(self):
        return self._engineVersion.get()

    def __str__(self):
        return (
            f"TomoCPTModel ({self.getBackbone()}, {self.getLabelType()} labels, "
            f"{self.getDiameter() or 0:.0f} Å particles, classes {self.getClasses()}, "
            f"thresholds {self.getThresholds() or 'not calibrated'})"
        )
