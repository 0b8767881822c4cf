"""What reading DICOM produces and passes between its steps: the public :class:`DicomSeries` (one image
series read into a volume, PHI hidden from ``repr``) and :class:`DicomReadResult` (the series and the
objects left out), and the private header and frame records (``_Instance``, ``_Frame``) the header,
geometry and pixel steps hand to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..volume import Volume


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM image series read into a volume.

    Attributes
    ----------
    volume : Volume
        Array (k, j, i) after the modality LUT (HU for CT), int16 when every value is an integer
        that fits, else float32; LPS geometry; ``modality`` set.
    files : tuple of Path
        The instances of the series, sorted along the slice normal.
    sop_instance_uids, instance_numbers : tuple
        SOP Instance UID (0008,0018) and Instance Number (0020,0013) of each file, in ``files`` order.
    patient_id, patient_name : str
        PHI: never log them or put them in messages (hidden from ``repr``).
    """

    volume: Volume
    files: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]
    instance_numbers: tuple[int | None, ...]
    series_instance_uid: str
    study_instance_uid: str
    series_number: int | None
    series_description: str
    study_description: str
    study_date: date | None
    modality: str
    body_part: str
    patient_id: str = field(repr=False)
    patient_name: str = field(repr=False)
    accession_number: str = field(repr=False)


@dataclass(frozen=True)
class DicomReadResult:
    """The series read from a set of DICOM files, and the objects that were not images.

    Attributes
    ----------
    series : tuple of DicomSeries
        One per Series Instance UID, in the order their first file was given.
    skipped : tuple of (str, str)
        (file name, reason) for every object left out (SEG, RTSTRUCT, SR, DICOMDIR, localizers …).
    """

    series: tuple[DicomSeries, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass
class _Instance:
    """The header of one DICOM file (no pixels)."""

    path: Path
    name: str
    ds: object  # pydicom Dataset without Pixel Data
    sop_class_uid: str
    sop_instance_uid: str
    # Where the value of an uncompressed, defined-length Pixel Data (7FE0,0010) starts, and its
    # length in bytes; None when it is encapsulated (compressed) or the encoding is unusual.
    native_pixel_offset: int | None = None
    native_pixel_length: int | None = None


@dataclass
class _Frame:
    """One 2-D image: a single-frame instance, or one frame of an enhanced multi-frame instance."""

    instance: _Instance
    frame_index: int | None  # 0-based frame of a multi-frame instance; None for single-frame
    position: np.ndarray  # (3,) LPS mm, Image Position (Patient)
    orientation: np.ndarray  # (6,) Image Orientation (Patient)
    pixel_spacing: np.ndarray  # (2,) mm: (row spacing, column spacing)
    rows: int
    columns: int
    slope: float
    intercept: float
    thickness: float | None
