"""Form checks the protocols share, so an empty or impossible field is refused with a message
before a job starts.

pyworkflow's own ``Positive`` / ``GT`` compare ``None > 0`` on an empty field and raise a
``TypeError`` inside Tk, which leaves the Execute button failing silently; these validators
answer an empty field with a message instead.
"""

import math

from pyworkflow.protocol.params import Validator

from ..engine.preprocess import check_particle_fits


class Number(Validator):
    """A finite number of at least ``minimum`` (strictly above it unless ``inclusive``), at
    most ``maximum`` when given; an empty field gets "needs a value"."""

    def __init__(self, minimum, inclusive=True, maximum=None):
        self.minimum, self.inclusive, self.maximum = minimum, inclusive, maximum

    def __call__(self, value):
        if value is None:
            return ["needs a value."]
        if not math.isfinite(value):
            return [f"{value} is not a finite number."]
        below = value < self.minimum if self.inclusive else value <= self.minimum
        if below or (self.maximum is not None and value > self.maximum):
            return [f"{value:g} is out of range: it must be {self._range()}."]
        return []

    def _range(self):
        lower = f"{'≥' if self.inclusive else '>'} {self.minimum:g}"
        return lower if self.maximum is None else f"{lower} and ≤ {self.maximum:g}"


#: the usual cases, named for the forms
POSITIVE = Number(0, inclusive=False)
NON_NEGATIVE = Number(0)
AT_LEAST_ONE = Number(1)
FRACTION = Number(0, maximum=1)


def particleFitsErrors(diameterA, tomograms):
    """One message per tomogram (named by tsId) whose smallest side is not wider than a particle
    of ``diameterA`` Å: a diameter in the wrong unit, caught before the engine rescales anything."""
    if not diameterA or tomograms is None:
        return []
    errors = []
    for tomo in tomograms.iterItems():
        sampling, dims = tomo.getSamplingRate(), tomo.getDimensions()
        if sampling and dims:
            try:  # the engine's rule; Scipion gives x, y, z, the engine takes (z, y, x)
                check_particle_fits(f"Tomogram {tomo.getTsId()}", diameterA, sampling, tuple(dims)[::-1])
            except ValueError as error:
                errors.append(str(error))
    return errors
