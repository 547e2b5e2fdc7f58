"""Wizards: estimate the particle diameter from the coordinates' box size."""

from pyworkflow.wizard import Wizard

from .constants import BOX_TO_DIAMETER
from .protocols import ProtTomoCPTTrain


def diameterFromBox(boxSize, samplingRate):
    """Particle diameter (Å) that a box of ``boxSize`` px at ``samplingRate`` Å/px usually holds."""
    return round(boxSize * samplingRate / BOX_TO_DIAMETER, 1)


class TomoCPTDiameterWizard(Wizard):
    """Particle diameter (Å) = box size × sampling rate / BOX_TO_DIAMETER, from the first coordinate set."""

    _targets = [(ProtTomoCPTTrain, ["diameter"])]

    def show(self, form, *params):
        protocol = form.protocol
        if not len(protocol.inputCoordinates):
            form.showWarning("Choose the training coordinates first: the diameter is estimated from their box size.")
            return
        coordinates = protocol.inputCoordinates[0].get()
        if coordinates is None or not coordinates.getBoxSize():
            form.showWarning("The first coordinate set has no box size to estimate the diameter from; type it.")
            return
        diameter = diameterFromBox(coordinates.getBoxSize(), coordinates.getSamplingRate())
        form.setVar("diameter", diameter)
        form.showInfo(
            f"Estimated {diameter:g} Å: the box of {coordinates.getBoxSize()} px at "
            f"{coordinates.getSamplingRate():g} Å/px divided by {BOX_TO_DIAMETER:g}, since boxes are "
            f"usually 1.5-2 times the particle. Check it: the diameter sets the rescaling."
        )
