"""Plain-Python medical image I/O and geometry. Imports no Django.

Axis order: every voxel array is indexed ``[k, j, i]`` (slice, row, column), the order
SimpleITK's ``GetArrayFromImage`` returns. Spacing and shape are given in that same order.
Physical coordinates are DICOM patient coordinates, LPS (x to the patient's left, y posterior,
z superior), in millimetres (DICOM PS3.3 C.7.6.2.1.1).
"""

from .errors import (
    CorruptFileError,
    ImagingError,
    InconsistentSeriesError,
    MissingCompanionFileError,
    UnsafeArchiveError,
    UnsupportedFileError,
)
from .volume import Geometry, Volume

__all__ = [
    "CorruptFileError",
    "Geometry",
    "ImagingError",
    "InconsistentSeriesError",
    "MissingCompanionFileError",
    "UnsafeArchiveError",
    "UnsupportedFileError",
    "Volume",
]
