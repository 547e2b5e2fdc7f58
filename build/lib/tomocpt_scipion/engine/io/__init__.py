"""File formats: MRC volumes and particle-coordinate tables.

Volumes are returned as (z, y, x) arrays together with their voxel size in Å. Coordinates
travel as a :class:`pandas.DataFrame` with the columns of :data:`COORDINATE_COLUMNS`:
``tomo_name`` (str), ``x``, ``y``, ``z`` (float, pixels of the tomogram file, 0-based voxel
index, origin at the centre of the first voxel), ``score`` (float) and ``class_id`` (int,
1-based). Every format-specific origin or unit convention is converted here and nowhere
else:

===========  =====================================================================
format       convention on disk
===========  =====================================================================
STAR (R3/4)  ``rlnCoordinateX/Y/Z`` in pixels, same origin as ours, minus
             ``rlnOriginX/Y/ZAngst`` / pixel size (the shift RELION applied)
STAR (R5)    ``rlnCenteredCoordinateX/Y/ZAngst``: Å from the tomogram centre
             (``size / 2`` pixels, float division), so it needs size and pixel size
Warp/M STAR  one ``data_`` block as WarpTools' template matching writes it:
             ``rlnCoordinateX/Y/Z`` in pixels, same origin as ours (Warp multiplies
             them by ``--coords_angpix``), ``rlnMicrographName`` = ``<tomogram>.tomostar``,
             score in ``rlnAutopickFigureOfMerit``; the pixel size as
             ``rlnDetectorPixelSize`` (µm) / ``rlnMagnification`` × 10⁴ (RELION 3.0 style).
             Read by the STAR reader (it names tomograms by the stem of the micrograph).
IMOD .mod    pixel centre of voxel (0, 0, 0) is at model point (0.5, 0.5, 0.0)
Dynamo .tbl  MATLAB 1-based: the first voxel centre is 1; x, y, z in columns 24-26,
             tomogram number in column 20, class in 22, score (cc) in 10
.coords      DeepETPicker text: ``class x y z`` per line, pixels
.txt         ``x y z`` per line, pixels (what Scipion's text import reads)
.csv         our columns with a header
===========  =====================================================================

All writers write to a temporary name in the destination folder and rename when the file
is complete, and refuse to overwrite an existing file unless ``overwrite=True``.

Modules: :mod:`.atomic` (atomic files and staged outputs), :mod:`.mrc`, :mod:`.table` (the
coordinate table), :mod:`.coordinates` (the format registry, reading and writing) and one
module per coordinate format: :mod:`.star` (RELION 4/5, Warp/M), :mod:`.imod`,
:mod:`.dynamo`, :mod:`.text` (``.coords``, ``.txt``, CSV).
"""

from .atomic import atomic_path, staged_outputs
from .coordinates import FORMAT_NAMES, FORMAT_SPECS, FORMATS, read_coordinates, write_coordinates
from .mrc import MrcFormatError, read_mrc, read_mrc_header, write_mrc
from .star import coordinate_pixel_size
from .table import COORDINATE_COLUMNS, CoordinateFormatError, coordinate_table

__all__ = [
    "COORDINATE_COLUMNS",
    "CoordinateFormatError",
    "MrcFormatError",
    "atomic_path",
    "coordinate_pixel_size",
    "coordinate_table",
    "read_coordinates",
    "read_mrc",
    "read_mrc_header",
    "staged_outputs",
    "write_coordinates",
    "write_mrc",
    "FORMATS",
    "FORMAT_NAMES",
    "FORMAT_SPECS",
]
