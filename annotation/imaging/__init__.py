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
    VolumeTooLargeError,
)
from .volume import Geometry, Volume
from .archive import ArchiveLimits, extract_zip
from .dicom import DicomReadResult, DicomSeries, read_dicom_files, read_dicom_series
from .formats import VolumeLimits, read_volume, sniff_format, write_labelmap_nifti, write_nifti
from .loader import LoadedSeries, LoadResult, load_inputs
from .windowing import WINDOW_PRESETS, apply_window

__all__ = [
    "ArchiveLimits",
    "CorruptFileError",
    "DicomReadResult",
    "DicomSeries",
    "Geometry",
    "ImagingError",
    "InconsistentSeriesError",
    "LoadResult",
    "LoadedSeries",
    "MissingCompanionFileError",
    "UnsafeArchiveError",
    "UnsupportedFileError",
    "Volume",
    "VolumeLimits",
    "VolumeTooLargeError",
    "WINDOW_PRESETS",
    "apply_window",
    "extract_zip",
    "load_inputs",
    "read_dicom_files",
    "read_dicom_series",
    "read_volume",
    "sniff_format",
    "write_labelmap_nifti",
    "write_nifti",
]
