"""Wizards: fill the particle diameter from the coordinates' box size."""
from pyworkflow.wizard import Wizard

from .protocols import ProtTomoCPTTrain


class TomoCPTDiameterWizard(Wizard):
    """Particle diameter (Å) = box size × sampling rate of the first coordinate set."""

    _targets = [(ProtTomoCPTTrain, ["diameter"])]

    def show(self, form, *params):
        protocol = form.protocol
        if not len(protocol.inputCoordinates):
            return
        coordinates = protocol.inputCoordinates[0].get()
        if coordinates is not None and coordinates.getBoxSize():
            form.setVar("diameter", round(coordinates.getBoxSize() * coordinates.getSamplingRate(), 1))
