"""Headers: read one DICOM file's header without its pixels, decide whether it is an image (SEG, RTSTRUCT,
SR, DICOMDIR, localizers … are skipped with a reason), find where uncompressed pixel data start, key it
to its series, and turn it into frames with patient geometry (single-frame images, or enhanced
multi-frame images through their functional groups, PS3.3 C.7.6.16.2)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, ImagingError, N_, UnsupportedFileError
from ..formats import sniff_format
from .records import _Frame, _Instance

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
        raise UnsupportedFileError(N_("%(name)s: not a DICOM file"), params={"name": name}, filename=name)
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
            N_("%(name)s: the DICOM file is damaged and cannot be parsed (%(name2)s)"),
            params={"name": name, "name2": type(exc).__name__}, filename=name
        ) from None

    if sop_class == _DICOMDIR_SOP_CLASS:
        return None, "DICOMDIR (a media index, not an image)"
    if not sop_class:
        raise CorruptFileError(
            N_("%(name)s: the DICOM file has no SOP Class UID (0008,0016); it is truncated or damaged"),
            params={"name": name}, filename=name
        )
    class_name = UID(sop_class).name
    has_pixels = _at_pixel_data(next_element)
    if modality in _NON_IMAGE_MODALITIES:
        return None, f"{_NON_IMAGE_MODALITIES[modality]} ({class_name}), not an image series"
    is_image_class = "Image Storage" in class_name
    if not has_pixels:
        if is_image_class:
            raise CorruptFileError(
                N_("%(name)s: %(class_name)s without Pixel Data (7FE0,0010); the file is truncated or damaged"),
                params={"name": name, "class_name": class_name},
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
        raise CorruptFileError(N_("%(name)s: the pixel data are truncated (the file ends early)"),
                               params={"name": name}, filename=name)
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
            N_("%(name)s: colour images (%(samples)s samples per pixel) are not supported; only greyscale volumes"),
            params={"name": name, "samples": samples},
            filename=name,
        )
    number_of_frames = _int_or_none(ds, "NumberOfFrames") or 1
    rows, columns = _int_or_none(ds, "Rows"), _int_or_none(ds, "Columns")
    if not rows or not columns:
        raise CorruptFileError(N_("%(name)s: Rows (0028,0010) / Columns (0028,0011) missing"),
                               params={"name": name}, filename=name)

    if _PER_FRAME in ds or _SHARED in ds:
        return _enhanced_frames(instance, number_of_frames, rows, columns)
    if number_of_frames > 1:
        raise UnsupportedFileError(
            N_("%(name)s: a multi-frame %(value)s without per-frame positions (no functional groups); only "
               "single-frame series and enhanced CT/MR/PET multi-frame are supported"),
            params={"name": name, "value": _text(ds, 'Modality') or 'image'},
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
        raise CorruptFileError(N_("%(name)s: %(what)s must hold %(length)s numbers"),
                               params={"name": name, "what": what, "length": length}, filename=name)
    return vector


def _pixel_spacing(ds, name: str) -> np.ndarray:
    if "PixelSpacing" not in ds:
        raise CorruptFileError(N_("%(name)s: Pixel Spacing (0028,0030) is missing"),
                               params={"name": name}, filename=name)
    spacing = _vector(ds.PixelSpacing, 2, "PixelSpacing (0028,0030)", name)
    if np.any(spacing <= 0):
        raise CorruptFileError(N_("%(name)s: Pixel Spacing (0028,0030) must be positive"),
                               params={"name": name}, filename=name)
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
            N_("%(name)s: %(per_frame_count)s per-frame functional groups for %(number_of_frames)s frames"),
            params={"name": name, "per_frame_count": len(per_frame),
                    "number_of_frames": number_of_frames}, filename=name
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
                N_("%(name)s: frame %(index)s has no Plane Position / Plane Orientation / Pixel Measures "
                   "functional group; cannot place it in patient space"), params={"name": name, "index": index + 1},
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
