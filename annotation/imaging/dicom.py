"""Read DICOM image series into volumes (pydicom; compressed transfer syntaxes via pylibjpeg).

The pipeline is: read every header (``stop_before_pixels``), drop the objects that are not images
(SEG, RTSTRUCT, SR, presentation states, DICOMDIR …) into a ``skipped`` list, group the rest by
Series Instance UID (0020,000E), sort each group along the slice normal, check that it forms one
regular grid, then decode the pixels and apply the modality LUT.

Geometry (DICOM PS3.3 C.7.6.2.1.1, Image Plane module):

- Image Orientation (Patient) (0020,0037) holds the row cosine ``r`` (the LPS direction of
  increasing column index, array axis i) and the column cosine ``c`` (increasing row index, axis j);
  the slice normal is ``n = r × c`` (array axis k, slices sorted by ascending ``IPP · n``);
- Image Position (Patient) (0020,0032) is the LPS centre of the first transmitted voxel of a slice;
  the volume origin is that of the first sorted slice;
- Pixel Spacing (0028,0030) is (row spacing, column spacing) = (spacing j, spacing i); spacing k is
  the median distance between consecutive slice positions (Slice Thickness (0018,0050) may differ
  from it: overlapping or gapped reconstructions).

Enhanced multi-frame CT/MR/PET (PS3.3 C.7.6.16, Multi-frame Functional Groups) are read from the
Plane Position / Plane Orientation / Pixel Measures / Pixel Value Transformation functional groups.

PHI: patient name and ID are returned to the caller but never logged or put in messages.
pydicom's value warnings quote element values ("Invalid value for VR DA: '19560101'"): they are
silenced while headers are parsed, and the quoted values are redacted from the ``pydicom`` logger.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import CorruptFileError, ImagingError, InconsistentSeriesError, UnsupportedFileError
from .formats import sniff_format
from .volume import Geometry, Volume

__all__ = ["DicomReadResult", "DicomSeries", "read_dicom_files", "read_dicom_series"]

ORIENTATION_TOLERANCE = 1e-4  # direction cosines, unitless
PIXEL_SPACING_TOLERANCE_MM = 1e-4
DUPLICATE_POSITION_TOLERANCE_MM = 1e-2
GAP_RELATIVE_TOLERANCE = 0.10  # a gap more than 10 % away from the median gap is irregular
MISSING_GAP_RATIO = 1.5  # a gap of 1.5 median gaps or more means slices are missing
SHEAR_TOLERANCE_PIXELS = 0.5  # in-plane drift of slice positions (gantry tilt) tolerated, in pixels

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (PS3.10)
# Modalities (0008,0060) of objects that carry no image to annotate, even when they hold pixel data
# (a SEG's frames are segments; an RT Dose is a dose grid) — PS3.3 C.7.3.1.1.1 defined terms.
_NON_IMAGE_MODALITIES = {
    "SEG": "a DICOM SEG segmentation",
    "RTSTRUCT": "an RT Structure Set",
    "RTPLAN": "an RT Plan",
    "RTDOSE": "an RT Dose grid",
    "RTRECORD": "an RT treatment record",
    "SR": "a structured report",
    "PR": "a presentation state",
    "KO": "a key object selection",
    "REG": "a spatial registration",
    "FID": "a fiducials object",
    "DOC": "an encapsulated document",
    "PLAN": "a plan",
}
# Functional-group sequences of Enhanced multi-frame objects (PS3.3 C.7.6.16.2).
_PER_FRAME = "PerFrameFunctionalGroupsSequence"
_SHARED = "SharedFunctionalGroupsSequence"


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


class _RedactQuotedValues(logging.Filter):
    """Replace quoted values in pydicom log records: they may be a patient's name or birth date."""

    _QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("'<redacted>'", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact_pydicom_log() -> None:
    # pydicom logs (as well as warns) every invalid value it meets (pydicom.misc.warn_and_log).
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _RedactQuotedValues) for f in logger.filters):
        logger.addFilter(_RedactQuotedValues())


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def read_dicom_series(paths: Sequence[Path]) -> list[DicomSeries]:
    """Read DICOM files into one volume per image series; non-image objects are left out.

    Parameters
    ----------
    paths : sequence of Path
        DICOM files, any order, possibly several series (they are never merged).

    Returns
    -------
    list of DicomSeries
        See :func:`read_dicom_files` (this drops its ``skipped`` list).

    Raises
    ------
    UnsupportedFileError, CorruptFileError, InconsistentSeriesError
        See :func:`read_dicom_files`.
    """
    return list(read_dicom_files(paths).series)


def read_dicom_files(paths: Sequence[Path], *, names: Mapping[Path, str] | None = None) -> DicomReadResult:
    """Read DICOM files into series, and list the objects that hold no image.

    Parameters
    ----------
    paths : sequence of Path
        DICOM files (PS3.10), any order.
    names : mapping of Path to str, optional
        How to name each file in messages and in ``skipped`` (e.g. its path inside an upload);
        default ``path.name``.

    Returns
    -------
    DicomReadResult
        ``series`` (one per Series Instance UID (0020,000E), or, where that is empty, per Study
        Instance UID / Frame of Reference / Series Number / description) and ``skipped``.

    Raises
    ------
    UnsupportedFileError
        A file that is not DICOM; a colour image; an old-style multi-frame object without
        functional groups (NM, US cine).
    CorruptFileError
        A truncated or undecodable file (named in the message).
    InconsistentSeriesError
        Slices of one series that do not form a regular volume: different sizes, pixel spacings or
        orientations, duplicated positions, missing slices, irregular gaps, sheared (tilted) stacks.
    """
    _redact_pydicom_log()
    # pydicom converts values lazily, so its value warnings (which quote values) can fire anywhere below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _read_dicom_files(paths, dict(names or {}))


def _read_dicom_files(paths: Sequence[Path], names: dict) -> DicomReadResult:
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple, list[_Frame]] = {}
    for raw_path in paths:
        path = Path(raw_path)
        name = names.get(raw_path, names.get(path, path.name))
        instance, reason = _read_instance(path, name)
        if instance is None:
            skipped.append((name, reason))
            continue
        try:
            frames = _frames_of(instance)
        except ImagingError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed geometry values (DS "abc") raise on access
            raise CorruptFileError(
                f"{name}: unreadable image geometry attributes ({type(exc).__name__})", filename=name
            ) from None
        if isinstance(frames, str):
            skipped.append((name, frames))
            continue
        groups.setdefault(_series_key(instance.ds), []).extend(frames)
    series = tuple(_build_series(frames) for frames in groups.values())
    return DicomReadResult(series=series, skipped=tuple(skipped))


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------


def _get(ds, keyword: str):
    """Return an element's value, or None when absent or not convertible (pydicom converts lazily)."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value (IS "12a") must not abort reading the series
        return None


def _text(ds, keyword: str) -> str:
    value = _get(ds, keyword)
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _int_or_none(ds, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float_or_none(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
            value = list(value)[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _parse_da(value: str) -> date | None:
    """Parse a DA value (PS3.5 6.2: ``YYYYMMDD``; the ACR-NEMA ``YYYY.MM.DD`` form is accepted)."""
    digits = value.replace(".", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _read_instance(path: Path, name: str) -> tuple[_Instance | None, str]:
    """Read one header. Return (instance, "") for an image, (None, reason) for a skipped object."""
    import pydicom
    from pydicom.uid import UID

    if sniff_format(path) != "dicom":
        raise UnsupportedFileError(f"{name}: not a DICOM file", filename=name)
    try:
        with path.open("rb") as fh:
            ds = pydicom.dcmread(fh, force=True, stop_before_pixels=True)
            stop = fh.tell()
            next_element = fh.read(12)
        file_meta = getattr(ds, "file_meta", None)
        sop_class = _text(ds, "SOPClassUID") or (_text(file_meta, "MediaStorageSOPClassUID") if file_meta else "")
        sop_instance = _text(ds, "SOPInstanceUID") or (
            _text(file_meta, "MediaStorageSOPInstanceUID") if file_meta else ""
        )
        modality = _text(ds, "Modality").upper()
        image_type = [v.upper() for v in _text(ds, "ImageType").split("\\")]
    except ImagingError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged input
        raise CorruptFileError(
            f"{name}: the DICOM file is damaged and cannot be parsed ({type(exc).__name__})", filename=name
        ) from None

    if sop_class == _DICOMDIR_SOP_CLASS:
        return None, "DICOMDIR (a media index, not an image)"
    if not sop_class:
        raise CorruptFileError(
            f"{name}: the DICOM file has no SOP Class UID (0008,0016); it is truncated or damaged", filename=name
        )
    class_name = UID(sop_class).name
    has_pixels = _at_pixel_data(next_element)
    if modality in _NON_IMAGE_MODALITIES:
        return None, f"{_NON_IMAGE_MODALITIES[modality]} ({class_name}), not an image series"
    is_image_class = "Image Storage" in class_name
    if not has_pixels:
        if is_image_class:
            raise CorruptFileError(
                f"{name}: {class_name} without Pixel Data (7FE0,0010); the file is truncated or damaged",
                filename=name,
            )
        return None, f"{class_name} ({modality or 'no modality'}) holds no image"
    native = _native_pixel_extent(path, name, ds, stop, next_element)
    if "LOCALIZER" in image_type:
        return None, "a localizer (scout) image, not part of a volume"
    instance = _Instance(path=path, name=name, ds=ds, sop_class_uid=sop_class, sop_instance_uid=sop_instance)
    if native is not None:
        instance.native_pixel_offset, instance.native_pixel_length = native
    return instance, ""


def _at_pixel_data(element_head: bytes) -> bool:
    """True when the bytes where ``stop_before_pixels`` stopped are a (7FE0,0008/0009/0010) tag."""
    if len(element_head) < 4:
        return False
    for order in ("little", "big"):
        group = int.from_bytes(element_head[0:2], order)
        element = int.from_bytes(element_head[2:4], order)
        if group == 0x7FE0 and element in (0x0008, 0x0009, 0x0010):
            return True
    return False


def _native_pixel_extent(path: Path, name: str, ds, stop: int, element_head: bytes) -> tuple[int, int] | None:
    """Return (value offset, length) of uncompressed Pixel Data; catch a file cut inside it.

    Explicit VR little endian OB/OW header: tag (4) + VR (2) + reserved (2) + length (4); implicit VR
    little endian: tag (4) + length (4) (PS3.5 7.1.2). Undefined length (encapsulated, compressed)
    is left to the decoder, as are Float/Double Float Pixel Data and big endian files (None).
    """
    implicit_vr, little_endian = getattr(ds, "original_encoding", (None, None))
    if little_endian is not True or implicit_vr is None or element_head[:4] != b"\xe0\x7f\x10\x00":
        return None
    if implicit_vr:
        length = int.from_bytes(element_head[4:8], "little")
        header = 8
    else:
        length = int.from_bytes(element_head[8:12], "little")
        header = 12
    if length == 0xFFFFFFFF:
        return None
    if stop + header + length > path.stat().st_size:
        raise CorruptFileError(f"{name}: the pixel data are truncated (the file ends early)", filename=name)
    return stop + header, length


def _series_key(ds) -> tuple:
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return ("uid", uid)
    # De-identification sometimes blanks the UIDs (the TotalSegmentator example does): fall back on
    # attributes that stay constant within one series.
    return (
        "derived",
        _text(ds, "StudyInstanceUID"),
        _text(ds, "FrameOfReferenceUID"),
        _text(ds, "SeriesNumber"),
        _text(ds, "Modality"),
        _text(ds, "SeriesDescription"),
    )


def _frames_of(instance: _Instance) -> list[_Frame] | str:
    """Return the frames of an image instance, or a reason string when it has no patient geometry."""
    ds = instance.ds
    name = instance.name
    samples = _int_or_none(ds, "SamplesPerPixel") or 1
    if samples != 1:
        raise UnsupportedFileError(
            f"{name}: colour images ({samples} samples per pixel) are not supported; only greyscale volumes",
            filename=name,
        )
    number_of_frames = _int_or_none(ds, "NumberOfFrames") or 1
    rows, columns = _int_or_none(ds, "Rows"), _int_or_none(ds, "Columns")
    if not rows or not columns:
        raise CorruptFileError(f"{name}: Rows (0028,0010) / Columns (0028,0011) missing", filename=name)

    if _PER_FRAME in ds or _SHARED in ds:
        return _enhanced_frames(instance, number_of_frames, rows, columns)
    if number_of_frames > 1:
        raise UnsupportedFileError(
            f"{name}: a multi-frame {_text(ds, 'Modality') or 'image'} without per-frame positions "
            "(no functional groups); only single-frame series and enhanced CT/MR/PET multi-frame are supported",
            filename=name,
        )
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return "a 2-D image without Image Position/Orientation (Patient) (projection or screen capture)"
    position = _vector(ds.ImagePositionPatient, 3, "ImagePositionPatient (0020,0032)", name)
    orientation = _vector(ds.ImageOrientationPatient, 6, "ImageOrientationPatient (0020,0037)", name)
    spacing = _pixel_spacing(ds, name)
    slope, intercept = _rescale(ds)
    return [
        _Frame(
            instance=instance,
            frame_index=None,
            position=position,
            orientation=orientation,
            pixel_spacing=spacing,
            rows=rows,
            columns=columns,
            slope=slope,
            intercept=intercept,
            thickness=_float_or_none(ds.get("SliceThickness")),
        )
    ]


def _vector(value, length: int, what: str, name: str) -> np.ndarray:
    try:
        vector = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        vector = np.array([])
    if vector.shape != (length,) or not np.all(np.isfinite(vector)):
        raise CorruptFileError(f"{name}: {what} must hold {length} numbers", filename=name)
    return vector


def _pixel_spacing(ds, name: str) -> np.ndarray:
    if "PixelSpacing" not in ds:
        raise CorruptFileError(f"{name}: Pixel Spacing (0028,0030) is missing", filename=name)
    spacing = _vector(ds.PixelSpacing, 2, "PixelSpacing (0028,0030)", name)
    if np.any(spacing <= 0):
        raise CorruptFileError(f"{name}: Pixel Spacing (0028,0030) must be positive", filename=name)
    return spacing


def _rescale(ds) -> tuple[float, float]:
    """Rescale Slope (0028,1053) and Intercept (0028,1052); identity when absent (MR)."""
    slope = _float_or_none(ds.get("RescaleSlope"))
    intercept = _float_or_none(ds.get("RescaleIntercept"))
    return (1.0 if slope is None or slope == 0 else slope), (0.0 if intercept is None else intercept)


def _functional_item(groups, sequence: str):
    """Return the first item of ``sequence`` inside a functional-groups item, or None."""
    if groups is None or sequence not in groups:
        return None
    seq = groups.get(sequence)
    return seq[0] if seq else None


def _enhanced_frames(instance: _Instance, number_of_frames: int, rows: int, columns: int) -> list[_Frame]:
    """Frames of an enhanced multi-frame image (PS3.3 C.7.6.16.2: per-frame values override shared ones)."""
    ds = instance.ds
    name = instance.name
    shared = ds.get(_SHARED)
    shared = shared[0] if shared else None
    per_frame = ds.get(_PER_FRAME) or []
    if len(per_frame) != number_of_frames:
        raise CorruptFileError(
            f"{name}: {len(per_frame)} per-frame functional groups for {number_of_frames} frames", filename=name
        )

    def lookup(frame_groups, sequence: str):
        return _functional_item(frame_groups, sequence) or _functional_item(shared, sequence)

    frames = []
    for index, frame_groups in enumerate(per_frame):
        position_item = lookup(frame_groups, "PlanePositionSequence")
        orientation_item = lookup(frame_groups, "PlaneOrientationSequence")
        measures_item = lookup(frame_groups, "PixelMeasuresSequence")
        if position_item is None or orientation_item is None or measures_item is None:
            raise UnsupportedFileError(
                f"{name}: frame {index + 1} has no Plane Position / Plane Orientation / Pixel Measures "
                "functional group; cannot place it in patient space",
                filename=name,
            )
        transform_item = lookup(frame_groups, "PixelValueTransformationSequence")
        slope, intercept = _rescale(transform_item) if transform_item is not None else _rescale(ds)
        frames.append(
            _Frame(
                instance=instance,
                frame_index=index,
                position=_vector(position_item.get("ImagePositionPatient"), 3, "ImagePositionPatient", name),
                orientation=_vector(
                    orientation_item.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", name
                ),
                pixel_spacing=_pixel_spacing(measures_item, name),
                rows=rows,
                columns=columns,
                slope=slope,
                intercept=intercept,
                thickness=_float_or_none(measures_item.get("SliceThickness")),
            )
        )
    return frames


# --------------------------------------------------------------------------------------------
# Series geometry and validation
# --------------------------------------------------------------------------------------------


def _fmt_position(position: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in position) + ") mm"


def _validate_common_grid(frames: list[_Frame]) -> None:
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise InconsistentSeriesError(
                f"slices of one series have different sizes: {first.instance.name} is "
                f"{first.rows}×{first.columns}, {frame.instance.name} is {frame.rows}×{frame.columns}",
                filename=frame.instance.name,
            )
        if np.max(np.abs(frame.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise InconsistentSeriesError(
                "slice orientation (Image Orientation (Patient) (0020,0037)) varies within the series: "
                f"{first.instance.name} and {frame.instance.name} differ",
                filename=frame.instance.name,
            )
        if np.max(np.abs(frame.pixel_spacing - first.pixel_spacing)) > PIXEL_SPACING_TOLERANCE_MM:
            raise InconsistentSeriesError(
                "pixel spacing (0028,0030) varies within the series: "
                f"{first.instance.name} and {frame.instance.name} differ",
                filename=frame.instance.name,
            )


def _orientation_axes(frame: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return unit (row cosine r, column cosine c, normal n = r × c) of a frame (PS3.3 C.7.6.2.1.1)."""
    row = frame.orientation[:3]
    col = frame.orientation[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 1e-6:
        raise CorruptFileError(
            f"{frame.instance.name}: Image Orientation (Patient) (0020,0037) has a zero vector",
            filename=frame.instance.name,
        )
    row, col = row / norms[0], col / norms[1]
    if abs(float(row @ col)) > 1e-3:
        raise CorruptFileError(
            f"{frame.instance.name}: Image Orientation (Patient) (0020,0037) cosines are not orthogonal",
            filename=frame.instance.name,
        )
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def _check_gaps(frames: list[_Frame], distances: np.ndarray) -> float:
    """Validate slice distances along the normal (sorted ascending) and return the median gap in mm."""
    gaps = np.diff(distances)
    duplicate = np.flatnonzero(gaps < DUPLICATE_POSITION_TOLERANCE_MM)
    if duplicate.size:
        n = int(duplicate[0])
        raise InconsistentSeriesError(
            f"duplicated slice at position {_fmt_position(frames[n + 1].position)}: "
            f"{frames[n].instance.name} and {frames[n + 1].instance.name} lie at the same place "
            f"({duplicate.size} duplicate(s) in the series)",
            filename=frames[n + 1].instance.name,
        )
    median = float(np.median(gaps))
    ratios = gaps / median
    missing_gaps = np.flatnonzero(ratios >= MISSING_GAP_RATIO)
    if missing_gaps.size:
        missing = int(sum(round(float(ratios[n])) - 1 for n in missing_gaps))
        n = int(missing_gaps[0])
        raise InconsistentSeriesError(
            f"about {missing} slice(s) seem missing from the series: the gap between "
            f"{frames[n].instance.name} and {frames[n + 1].instance.name} is {gaps[n]:.2f} mm where the "
            f"slice spacing is {median:.2f} mm ({missing_gaps.size} such gap(s))",
            filename=frames[n + 1].instance.name,
        )
    irregular = np.flatnonzero(np.abs(ratios - 1.0) > GAP_RELATIVE_TOLERANCE)
    if irregular.size:
        n = int(irregular[0])
        raise InconsistentSeriesError(
            f"irregular slice spacing: the gap between {frames[n].instance.name} and "
            f"{frames[n + 1].instance.name} is {gaps[n]:.2f} mm where the median is {median:.2f} mm",
            filename=frames[n + 1].instance.name,
        )
    return median


def _sorted_geometry(frames: list[_Frame]) -> tuple[list[_Frame], Geometry]:
    _validate_common_grid(frames)
    first = frames[0]
    row, col, normal = _orientation_axes(first)
    positions = np.stack([f.position for f in frames])
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    frames = [frames[n] for n in order]
    positions, distances = positions[order], distances[order]

    if len(frames) > 1:
        spacing_k = _check_gaps(frames, distances)
        # Slice positions must move along the normal only: a drift within the slice plane means a
        # gantry-tilted or sheared stack, which a (k, j, i) grid with orthogonal axes cannot represent.
        offsets = positions - positions[0]
        in_plane = np.abs(np.stack([offsets @ row, offsets @ col], axis=1))
        if np.any(in_plane > SHEAR_TOLERANCE_PIXELS * first.pixel_spacing.min()):
            n = int(np.argmax(in_plane.max(axis=1)))
            raise InconsistentSeriesError(
                "slice positions are not perpendicular to the slices (gantry tilt or a sheared stack): "
                f"{frames[n].instance.name} is shifted {in_plane[n].max():.2f} mm within the slice plane",
                filename=frames[n].instance.name,
            )
    else:
        spacing_k = first.thickness if first.thickness and first.thickness > 0 else 1.0

    direction = np.column_stack([normal, col, row])  # columns: LPS directions of array axes k, j, i
    geometry = Geometry(
        shape=(len(frames), first.rows, first.columns),
        spacing_mm=(spacing_k, float(first.pixel_spacing[0]), float(first.pixel_spacing[1])),
        origin_mm=tuple(positions[0]),
        direction=tuple(direction.ravel()),
    )
    return frames, geometry


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------


class _VoxelBuffer:
    """Collects slices as int16 while every value is an integer that fits, else switches to float32."""

    def __init__(self, shape: tuple[int, int, int]):
        self.array = np.empty(shape, dtype=np.int16)

    def put_stored(self, k: int, stored: np.ndarray, frame: _Frame) -> None:
        """Store slice ``k`` from stored values, applying the modality LUT (PS3.3 C.11.1.1.2)."""
        slope, intercept = frame.slope, frame.intercept
        if (
            self.array.dtype == np.int16
            and stored.dtype.kind in "iu"
            and stored.size
            and float(slope).is_integer()
            and float(intercept).is_integer()
            and "ModalityLUTSequence" not in frame.instance.ds
        ):
            # The common CT case: decide from the extremes whether int16 holds the result, then
            # rescale in one pass straight into the output (no full-size temporaries).
            low, high = int(stored.min()), int(stored.max())
            ends = (low * int(slope) + int(intercept), high * int(slope) + int(intercept))
            if min(ends) >= -32768 and max(ends) <= 32767:
                if slope == 1:
                    np.add(stored, np.int32(intercept), out=self.array[k], casting="unsafe")
                else:
                    self.array[k] = stored.astype(np.int32) * int(slope) + int(intercept)
                return
        self.put(k, _modality_lut(stored, frame))

    def put(self, k: int, values: np.ndarray) -> None:
        if self.array.dtype == np.int16:
            if values.dtype.kind in "iu":
                fits = values.size == 0 or (int(values.min()) >= -32768 and int(values.max()) <= 32767)
            else:
                fits = bool(np.all(np.isfinite(values))) and bool(np.all(values == np.round(values)))
                fits = fits and (values.size == 0 or (values.min() >= -32768 and values.max() <= 32767))
            if fits:
                self.array[k] = values
                return
            self.array = self.array.astype(np.float32)
        self.array[k] = values


def _modality_lut(stored: np.ndarray, frame: _Frame) -> np.ndarray:
    """Apply the modality LUT: ``value = stored × slope + intercept`` (PS3.3 C.11.1.1.2).

    A Modality LUT Sequence (0028,3000), which replaces the linear rescale, goes through pydicom.
    """
    ds = frame.instance.ds
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return apply_modality_lut(stored, ds)
    if stored.dtype.kind in "iu" and frame.slope == 1.0 and float(frame.intercept).is_integer():
        wide = stored.astype(np.int64 if stored.dtype.itemsize >= 4 else np.int32)
        return wide + int(frame.intercept)
    return stored.astype(np.float64) * frame.slope + frame.intercept


def _read_native_pixels(instance: _Instance, frames: int, rows: int, columns: int) -> np.ndarray | None:
    """Read uncompressed little-endian pixels straight from the file (no second header parse).

    Returns None when the layout is not the plain case (then pydicom decodes). Bits outside Bits
    Stored (0028,0101) are not part of the value (PS3.5 8.1.1): they are masked, or sign-extended
    for Pixel Representation (0028,0103) 1, as pydicom does.
    """
    ds = instance.ds
    if instance.native_pixel_offset is None:
        return None
    bits_allocated = _int_or_none(ds, "BitsAllocated")
    bits_stored = _int_or_none(ds, "BitsStored") or bits_allocated
    signed = _int_or_none(ds, "PixelRepresentation") == 1
    if bits_allocated not in (8, 16, 32) or not bits_stored or bits_stored > bits_allocated:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    count = frames * rows * columns
    if instance.native_pixel_length < count * dtype.itemsize:
        raise CorruptFileError(
            f"{instance.name}: Pixel Data (7FE0,0010) holds {instance.native_pixel_length} bytes, "
            f"{count * dtype.itemsize} expected",
            filename=instance.name,
        )
    pixels = np.fromfile(instance.path, dtype=dtype, count=count, offset=instance.native_pixel_offset)
    if pixels.size != count:
        raise CorruptFileError(f"{instance.name}: the pixel data are truncated", filename=instance.name)
    if bits_stored < bits_allocated:
        shift = bits_allocated - bits_stored
        np.left_shift(pixels, shift, out=pixels)
        np.right_shift(pixels, shift, out=pixels)
    return pixels.astype(dtype.newbyteorder("="), copy=False).reshape(frames, rows, columns)


def _strict_plugin(path: Path) -> str:
    """Return "pylibjpeg" when it decodes the file's transfer syntax, else "" (pydicom chooses).

    Pillow, pydicom's other JPEG decoder, returns partial images from truncated streams once any
    library in the process sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` (weasyprint does on import),
    so a damaged file would import silently; pylibjpeg (OpenJPEG, libjpeg) always reports it.
    """
    import pydicom
    from pydicom.pixels.decoders.base import get_decoder

    try:
        syntax = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[]).file_meta.TransferSyntaxUID
        decoder = get_decoder(syntax)
    except Exception:  # noqa: BLE001 - unknown syntax: let pydicom report it while decoding
        return ""
    return "pylibjpeg" if "pylibjpeg" in decoder.available_plugins else ""


def _decode_instance(instance: _Instance, expected_frames: int, rows: int, columns: int) -> np.ndarray:
    """Decode every frame of an instance to an array of shape (frames, rows, columns)."""
    from pydicom.pixels import pixel_array

    native = _read_native_pixels(instance, expected_frames, rows, columns)
    if native is not None:
        return native
    try:
        pixels = pixel_array(instance.path, decoding_plugin=_strict_plugin(instance.path))
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on damaged data
        raise CorruptFileError(
            f"{instance.name}: the pixel data cannot be decoded ({type(exc).__name__}); "
            "the file is truncated or damaged",
            filename=instance.name,
        ) from None
    pixels = pixels.reshape((-1, *pixels.shape[-2:])) if pixels.ndim == 2 else pixels
    if pixels.shape != (expected_frames, rows, columns):
        raise CorruptFileError(
            f"{instance.name}: decoded pixel data of shape {pixels.shape}, expected "
            f"{(expected_frames, rows, columns)}",
            filename=instance.name,
        )
    return pixels


def _build_series(frames: list[_Frame]) -> DicomSeries:
    from pydicom.uid import generate_uid

    frames, geometry = _sorted_geometry(frames)

    # Decode each file once (a multi-frame file holds many slices) and drop its frames in place.
    slots: dict[int, list[tuple[int, _Frame]]] = defaultdict(list)
    instances: dict[int, _Instance] = {}
    for k, frame in enumerate(frames):
        slots[id(frame.instance)].append((k, frame))
        instances[id(frame.instance)] = frame.instance
    buffer = _VoxelBuffer(geometry.shape)
    for key, placed in slots.items():
        instance = instances[key]
        frame_count = _int_or_none(instance.ds, "NumberOfFrames") or 1
        pixels = _decode_instance(instance, frame_count, geometry.shape[1], geometry.shape[2])
        for k, frame in placed:
            buffer.put_stored(k, pixels[frame.frame_index or 0], frame)

    # Files in the order of their first slice (a multi-frame file appears once).
    ordered_instances = list({id(f.instance): f.instance for f in frames}.values())
    head = ordered_instances[0].ds
    modality = _text(head, "Modality").upper()
    metadata = {"frame_of_reference_uid": _text(head, "FrameOfReferenceUID")}
    center, width = _float_or_none(_get(head, "WindowCenter")), _float_or_none(_get(head, "WindowWidth"))
    if center is not None and width is not None:
        metadata.update(window_center=center, window_width=width)

    return DicomSeries(
        volume=Volume(array=buffer.array, geometry=geometry, modality=modality, metadata=metadata),
        files=tuple(i.path for i in ordered_instances),
        sop_instance_uids=tuple(i.sop_instance_uid for i in ordered_instances),
        instance_numbers=tuple(_int_or_none(i.ds, "InstanceNumber") for i in ordered_instances),
        # A blank Series Instance UID (de-identified data) gets a fresh one, as non-DICOM inputs do.
        series_instance_uid=_text(head, "SeriesInstanceUID") or str(generate_uid()),
        study_instance_uid=_text(head, "StudyInstanceUID"),
        series_number=_int_or_none(head, "SeriesNumber"),
        series_description=_text(head, "SeriesDescription"),
        study_description=_text(head, "StudyDescription"),
        study_date=_parse_da(_text(head, "StudyDate")),
        modality=modality,
        body_part=_text(head, "BodyPartExamined"),
        patient_id=_text(head, "PatientID"),
        patient_name=_text(head, "PatientName"),
        accession_number=_text(head, "AccessionNumber"),
    )
