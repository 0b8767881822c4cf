"""Pixels: decode each instance once (uncompressed little-endian data read straight from the file,
anything else through pydicom with pylibjpeg preferred, so a truncated stream is always reported),
apply the modality LUT into an int16 volume that widens to float32 only when needed, and build the
:class:`DicomSeries` with its identifying attributes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, N_
from ..volume import Volume
from .geometry import _sorted_geometry
from .headers import _float_or_none, _get, _int_or_none, _parse_da, _text
from .records import DicomSeries, _Frame, _Instance


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
            N_("%(instance_name)s: Pixel Data (7FE0,0010) holds %(native_pixel_length)s bytes, %(count)s expected"),
            params={"instance_name": instance.name, "native_pixel_length": instance.native_pixel_length,
                    "count": count * dtype.itemsize},
            filename=instance.name,
        )
    pixels = np.fromfile(instance.path, dtype=dtype, count=count, offset=instance.native_pixel_offset)
    if pixels.size != count:
        raise CorruptFileError(N_("%(instance_name)s: the pixel data are truncated"),
                               params={"instance_name": instance.name}, filename=instance.name)
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
            N_("%(instance_name)s: the pixel data cannot be decoded (%(name)s); the file is truncated or damaged"),
            params={"instance_name": instance.name, "name": type(exc).__name__},
            filename=instance.name,
        ) from None
    pixels = pixels.reshape((-1, *pixels.shape[-2:])) if pixels.ndim == 2 else pixels
    if pixels.shape != (expected_frames, rows, columns):
        raise CorruptFileError(
            N_("%(instance_name)s: decoded pixel data of shape %(shape)s, expected %(value)s"),
            params={"instance_name": instance.name, "shape": pixels.shape, "value": (expected_frames, rows, columns)},
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
