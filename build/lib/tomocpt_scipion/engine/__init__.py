"""Particle-picking engine of tomocpt_scipion: no Scipion imports, only the numerics.

Conventions (see ARCHITECTURE.md): volumes are (z, y, x) arrays; coordinates are (x, y, z)
in pixels of the tomogram file, 0-based voxel index; lengths typed by a user are in Å.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
