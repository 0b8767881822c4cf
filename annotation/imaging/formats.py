"""Read and write single-file volume formats: NIfTI, MetaImage and NRRD (through SimpleITK).

Every reader returns a :class:`~annotation.imaging.volume.Volume` in the package convention
(array ``[k, j, i]``, spacing in (k, j, i) order, LPS origin and direction). SimpleITK already
converts NIfTI's RAS to LPS (ITK's physical space is LPS), so only the axis order is converted here.

SimpleITK is lenient with damaged input (a truncated ``.nii.gz`` reads "successfully" with garbage
or zeros at the end), so the completeness checks that matter for clinical data are done here
before SimpleITK sees the file.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, MissingCompanionFileError, N_, UnsupportedFileError, VolumeTooLargeError
from .volume import Geometry, Volume, array_to_sitk, volume_from_sitk

__all__ = [
    "VolumeLimits",
    "companion_files",
    "read_volume",
    "sniff_format",
    "write_labelmap_nifti",
    "write_nifti",
]

VOLUME_FORMATS = ("nifti", "metaimage", "nrrd")

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_METAIMAGE_SUFFIXES = (".mhd", ".mha")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
# Sizes of MetaIO element types in bytes (MetaIO metaTypes.h, MET_ValueTypeSize).
_MET_TYPE_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
_HEADER_READ_LIMIT = 64 * 1024  # text headers are a few hundred bytes; never slurp a data file


@dataclass(frozen=True)
class VolumeLimits:
    """The largest volume one import may load into memory, checked from the header before any voxel is read.

    Attributes
    ----------
    max_voxels : int
        Largest number of voxels (the product of the header's dimensions). Default 512 × 512 × 2048.
    max_bytes : int
        Largest size of the voxel data as stored (voxels × components × bytes per component), bytes.
        Default 1 GiB (512 × 512 × 2048 int16).
    """

    max_voxels: int = 512 * 512 * 2048
    max_bytes: int = 1024**3


def check_volume_size(name: str, size: tuple[int, ...], bytes_per_voxel: int, limits: VolumeLimits) -> None:
    """Refuse a volume whose declared ``size`` (any axis order) is over ``limits``.

    Raises
    ------
    VolumeTooLargeError
        Naming the declared size, the voxel count or byte count, and the limit.
    """
    dims = [max(int(d), 1) for d in size]
    voxels = int(np.prod(dims, dtype=object))  # Python ints: a crafted header cannot overflow
    declared = " × ".join(str(d) for d in dims)
    if voxels > limits.max_voxels:
        raise VolumeTooLargeError(
            N_("%(name)s: the header declares %(declared)s = %(voxels)s voxels; at most %(max_voxels)s can be "
               "imported"),
            params={"name": name, "declared": declared, "voxels": voxels, "max_voxels": limits.max_voxels},
            filename=name,
        )
    nbytes = voxels * max(int(bytes_per_voxel), 1)
    if nbytes > limits.max_bytes:
        raise VolumeTooLargeError(
            N_("%(name)s: the header declares %(declared)s voxels of %(bytes_per_voxel)s bytes = %(nbytes)s "
               "bytes; at most %(max_bytes)s bytes can be imported"),
            params={"name": name, "declared": declared, "bytes_per_voxel": bytes_per_voxel, "nbytes": nbytes,
                    "max_bytes": limits.max_bytes},
            filename=name,
        )


def _lower_name(path: Path) -> str:
    return path.name.lower()


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return _lower_name(path).endswith(suffixes)


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def sniff_format(path: Path) -> str | None:
    """Return the format of ``path`` from its magic bytes (and, where the format has none, its name).

    Parameters
    ----------
    path : Path
        A regular file.

    Returns
    -------
    str or None
        ``"dicom"`` (``DICM`` at byte 128, DICOM PS3.10 7.1; or a preamble-less PS3.10 stream
        that pydicom parses into a dataset with a SOP Class UID (0008,0016)), ``"nifti"``
        (``sizeof_hdr`` 348 / 540 and magic ``n+1`` / ``n+2``; ``.nii.gz`` by gzip magic and name),
        ``"metaimage"`` (``.mhd``/``.mha`` whose text header has ``NDims``/``ObjectType``),
        ``"nrrd"`` (``NRRD000`` magic), ``"zip"`` (``PK`` local header or empty-archive record),
        or None for anything else, including a ``.raw`` data file on its own.

    Raises
    ------
    OSError
        When the file cannot be opened.
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(1024)
    name = _lower_name(path)

    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if name.endswith(".nii.gz"):
        return "nifti" if head.startswith(b"\x1f\x8b") else None
    if name.endswith(".nii"):
        if len(head) < 348:
            # Too short to hold a header: let the reader report it as truncated, not unknown.
            return "nifti" if len(head) > 0 else None
        return "nifti" if _nifti_header_kind(head) else None
    if name.endswith(_METAIMAGE_SUFFIXES):
        text = head.decode("latin-1")
        if re.search(r"^\s*(NDims|ObjectType)\s*=", text, re.MULTILINE):
            return "metaimage"
        return None
    if _looks_like_raw_dicom(head) and _is_preambleless_dicom(path):
        return "dicom"
    return None


def _nifti_header_kind(head: bytes) -> str | None:
    """Return "nifti1", "nifti2" or None for the first bytes of a NIfTI header (either byte order)."""
    # Only the single-file magics: "ni1"/"ni2" mean a .hdr/.img pair, which we do not read.
    if len(head) >= 348 and head[344:347] == b"n+1":
        for order in "<>":
            if struct.unpack(order + "i", head[:4])[0] == 348:
                return "nifti1"
    if len(head) >= 12 and head[4:7] == b"n+2":
        for order in "<>":
            if struct.unpack(order + "i", head[:4])[0] == 540:
                return "nifti2"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """Cheap pre-filter before a forced pydicom parse: the stream must open with a group 0002 or 0008 tag."""
    if len(head) < 8:
        return False
    group_le = struct.unpack("<H", head[:2])[0]
    group_be = struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be == 0x0008


def _is_preambleless_dicom(path: Path) -> bool:
    """Return True when pydicom's forced read yields a dataset with a plausible SOP Class UID."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if not sop_class and getattr(ds, "file_meta", None) is not None:
            sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    except Exception:  # noqa: BLE001 - a forced parse of arbitrary bytes can fail in any way
        return False
    # Every DICOM SOP Class UID is rooted at the DICOM standard's UID (PS3.6 Annex A).
    return sop_class.startswith("1.2.840.10008.")


# --------------------------------------------------------------------------------------------
# Companion (detached data) files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Companions:
    files: tuple[Path, ...]
    is_local: bool  # the data sit in the header file itself (.mha, attached .nrrd)


def companion_files(path: Path) -> tuple[Path, ...]:
    """Return the data files a MetaImage (``ElementDataFile``) or NRRD (``data file``) header names.

    Parameters
    ----------
    path : Path
        An ``.mhd``/``.mha``/``.nrrd``/``.nhdr`` header. Other files have no companions.

    Returns
    -------
    tuple of Path
        The detached data files (relative names resolved against the header's folder), whether
        or not they exist; empty when the data are stored in the header file itself.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "metaimage":
        return _metaimage_companions(path).files
    if fmt == "nrrd":
        return _nrrd_companions(path).files
    return ()


def _read_text_header(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.read(_HEADER_READ_LIMIT).decode("latin-1")


def _data_file(base: Path, name: str, header: Path) -> Path:
    """Resolve a data file a header names, refusing any that does not lie below the header's folder.

    An uploaded header is untrusted: ``ElementDataFile = /etc/passwd`` or ``../../secret.raw`` would
    otherwise make SimpleITK read a server file and hand it back as an image.
    """
    parts = Path(name.replace("\\", "/")).parts
    if not parts or Path(name).is_absolute() or ".." in parts or ":" in parts[0]:
        raise UnsupportedFileError(
            N_("%(header_name)s: its data file %(name)r must lie in the header's folder (no absolute path or "
               "'..')"), params={"header_name": header.name, "name": name},
            filename=header.name,
        )
    return base.joinpath(*parts)


def _expand_file_pattern(spec: str) -> list[str] | None:
    """Expand a ``name%03d.raw start stop step`` pattern (MetaIO and NRRD both use it)."""
    parts = spec.split()
    if len(parts) >= 4 and "%" in parts[0]:
        try:
            start, stop, step = int(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            return None
        if step == 0:
            return None
        numbers = range(start, stop + (1 if step > 0 else -1), step)
        if len(numbers) > 100_000:  # no real volume has that many slice files; refuse to build the list
            return None
        try:
            return [parts[0] % n for n in numbers]
        except (TypeError, ValueError):
            return None
    return None


def _metaimage_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break  # MetaIO: ElementDataFile is the last header field; data or a file list follows
    return fields


def _metaimage_companions(path: Path) -> _Companions:
    text = _read_text_header(path)
    fields = _metaimage_fields(text)
    spec = fields.get("ElementDataFile", "")
    if not spec or spec.upper() == "LOCAL":
        return _Companions((), True)
    if spec.split()[0].upper() == "LIST":
        after = text.split("ElementDataFile", 1)[1].splitlines()[1:]
        names = [line.strip() for line in after if line.strip()]
    else:
        pattern = _expand_file_pattern(spec)
        names = pattern if pattern is not None else [spec]
    return _Companions(tuple(_data_file(path.parent, name, path) for name in names), False)


def _nrrd_header_lines(text: str) -> tuple[list[str], list[str]]:
    """Split an NRRD file's text into header lines and the lines after the blank separator."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if n > 0 and not line.strip():
            return lines[:n], lines[n + 1 :]
    return lines, []


def _nrrd_companions(path: Path) -> _Companions:
    header, after = _nrrd_header_lines(_read_text_header(path))
    spec = ""
    for line in header[1:]:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        # "key:=value" lines are key/value pairs, not fields (NRRD format spec, "Key/value pairs").
        if sep and not value.startswith("=") and key.strip().lower() in ("data file", "datafile"):
            spec = value.strip()
    if not spec:
        return _Companions((), True)
    if spec.split()[0].upper() == "LIST":
        names = [line.strip() for line in after if line.strip()]
    else:
        pattern = _expand_file_pattern(spec)
        names = pattern if pattern is not None else [spec]
    return _Companions(tuple(_data_file(path.parent, name, path) for name in names), False)


def _require_companions(path: Path, companions: _Companions) -> None:
    missing = [f for f in companions.files if not f.is_file()]
    if missing:
        names = ", ".join(f.name for f in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise MissingCompanionFileError(
            N_("%(path_name)s: its data file %(names)s is missing; upload the header together with its data file"),
            params={"path_name": path.name, "names": names},
            filename=path.name,
        )


# --------------------------------------------------------------------------------------------
# Completeness checks SimpleITK does not make
# --------------------------------------------------------------------------------------------


def _corrupt(path: Path, detail: str) -> CorruptFileError:
    return CorruptFileError(N_("%(path_name)s: the file is truncated or damaged (%(detail)s)"),
                            params={"path_name": path.name, "detail": detail}, filename=path.name)


def _check_metaimage_size(path: Path, companions: _Companions) -> None:
    """Compare the data bytes with DimSize × ElementNumberOfChannels × element size."""
    fields = _metaimage_fields(_read_text_header(path))
    if fields.get("CompressedData", "False").lower() == "true":
        return  # compressed size is unknown up front; SimpleITK reports short zlib streams itself
    if fields.get("BinaryData", "True").lower() != "true":
        return
    element_bytes = _MET_TYPE_BYTES.get(fields.get("ElementType", ""))
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
    except ValueError:
        raise _corrupt(path, "unreadable DimSize/ElementNumberOfChannels/HeaderSize") from None
    if element_bytes is None or not dims:
        return
    expected = int(np.prod(dims, dtype=np.int64)) * channels * element_bytes
    if companions.is_local:
        with path.open("rb") as fh:
            raw = fh.read(_HEADER_READ_LIMIT)
        marker = raw.find(b"ElementDataFile")
        end_of_header = raw.find(b"\n", marker) + 1 if marker >= 0 else -1
        available = path.stat().st_size - end_of_header if end_of_header > 0 else None
    else:
        available = sum(f.stat().st_size for f in companions.files) - max(header_size, 0) * len(companions.files)
    if available is not None and available < expected:
        raise _corrupt(path, f"{available} data bytes where the header declares {expected}")


def _check_nifti_complete(path: Path) -> None:
    """Make sure the whole voxel block is present (and, for .nii.gz, the gzip stream is intact).

    NIfTI-1/-2 header layout: dim at byte 40 (int16 ×8) / 16 (int64 ×8), bitpix at 72 / 14,
    vox_offset at 108 (float32) / 168 (int64) (nifti1.h, nifti2.h).
    """
    compressed = _lower_name(path).endswith(".gz")
    opener = gzip.open if compressed else open
    total = 0
    head = b""
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                if len(head) < 540:
                    head += chunk[: 540 - len(head)]
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise _corrupt(path, f"compressed stream ends early or is damaged: {type(exc).__name__}") from None

    dims, bitpix, vox_offset = _nifti_header_fields(path, head)
    ndim = int(dims[0])
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]], dtype=np.int64))
    expected = vox_offset + voxels * bitpix // 8
    if total < expected:
        raise _corrupt(path, f"{total} bytes where the header declares {expected}")


def _nifti_header_fields(path: Path, head: bytes) -> tuple[tuple[int, ...], int, int]:
    """Return (dim[0..7], bitpix, vox_offset) from the first 540 bytes of a NIfTI-1 or NIfTI-2 file."""
    kind = _nifti_header_kind(head)
    if kind is None:
        raise _corrupt(path, "no valid NIfTI header")
    dims: tuple[int, ...] = ()
    bitpix = vox_offset = 0
    for order in "<>":
        if kind == "nifti1" and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            vox_offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if kind == "nifti2" and struct.unpack(order + "i", head[:4])[0] == 540:
            dims = struct.unpack(order + "8q", head[16:80])
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            vox_offset = struct.unpack(order + "q", head[168:176])[0]
            break
    if not dims or not 1 <= int(dims[0]) <= 7 or bitpix <= 0:
        raise _corrupt(path, "invalid dim/bitpix in the NIfTI header")
    return dims, bitpix, vox_offset


def _check_nifti_size(path: Path, limits: VolumeLimits) -> None:
    """Check the NIfTI header's dimensions against ``limits`` reading only its first 540 bytes."""
    opener = gzip.open if _lower_name(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(540)
    except (EOFError, OSError, zlib.error) as exc:
        raise _corrupt(path, f"compressed stream ends early or is damaged: {type(exc).__name__}") from None
    dims, bitpix, _ = _nifti_header_fields(path, head)
    ndim = int(dims[0])
    check_volume_size(path.name, tuple(dims[1 : ndim + 1]), max(bitpix // 8, 1), limits)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_volume(path: Path, *, modality: str = "", limits: VolumeLimits = VolumeLimits()) -> Volume:
    """Read a 3-D NIfTI, MetaImage or NRRD file.

    Parameters
    ----------
    path : Path
        ``.nii``, ``.nii.gz``, ``.mhd`` (with its data file beside it), ``.mha``, ``.nrrd`` or ``.nhdr``
        (with its data file).
    modality : str, optional
        Stored on the volume (these formats carry no modality).
    limits : VolumeLimits, optional
        Checked against the header (voxel count and data size) before any voxel is read or decompressed.

    Returns
    -------
    Volume
        ``array`` of shape (k, j, i) in the file's own dtype (int16 CT stays int16; a NIfTI with
        ``scl_slope`` ≠ 1 comes back as float, as SimpleITK applies the scaling); geometry in LPS mm.

    Raises
    ------
    UnsupportedFileError
        Not one of these formats (DICOM goes through :mod:`annotation.imaging.dicom`), or an image
        that is 2-D, 4-D or has several components per voxel (vector, RGB).
    MissingCompanionFileError
        An ``.mhd``/``.nhdr`` whose data file (``ElementDataFile`` / ``data file``) is absent.
    CorruptFileError
        Truncated or undecodable data (a short ``.raw``, a truncated ``.nii.gz``, a bad header).
    VolumeTooLargeError
        The header declares more voxels or bytes than ``limits`` (a gzip bomb, a crafted header).
    """
    import SimpleITK as sitk

    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "dicom":
        raise UnsupportedFileError(
            N_("%(path_name)s: DICOM files are read as a series (read_dicom_series), not one by one"),
            params={"path_name": path.name},
            filename=path.name,
        )
    if fmt not in VOLUME_FORMATS:
        raise UnsupportedFileError(
            N_("%(path_name)s: not a medical image (DICOM, NIfTI, MetaImage, NRRD)"),
            params={"path_name": path.name}, filename=path.name
        )

    if fmt == "metaimage":
        companions = _metaimage_companions(path)
        _require_companions(path, companions)
        _check_metaimage_size(path, companions)
    elif fmt == "nrrd":
        _require_companions(path, _nrrd_companions(path))
    else:
        _check_nifti_size(path, limits)  # before _check_nifti_complete inflates the whole stream
        _check_nifti_complete(path)

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()  # the header only
    except RuntimeError as exc:
        raise _corrupt(path, _itk_reason(exc, path)) from None
    check_volume_size(
        path.name, tuple(reader.GetSize()),
        # Unknown pixel types count as 8 bytes a component, the widest.
        reader.GetNumberOfComponents() * _sitk_component_bytes().get(reader.GetPixelID(), 8), limits,
    )
    dimension = reader.GetDimension()
    size = reader.GetSize()
    if dimension == 4 and size[3] == 1:
        pass  # a 4-D file with one time point is a 3-D volume; squeezed below
    elif dimension != 3:
        kind = "a 2-D image" if dimension == 2 else f"a {dimension}-D image (time series or several volumes)"
        raise UnsupportedFileError(
            N_("%(path_name)s: %(kind)s of size %(size)s; only single 3-D volumes can be imported"),
            params={"path_name": path.name, "kind": kind, "size": tuple(size)},
            filename=path.name,
        )
    if reader.GetNumberOfComponents() != 1:
        raise UnsupportedFileError(
            N_("%(path_name)s: %(get_number_of_components)s components per voxel (vector or colour image); only "
               "scalar 3-D volumes can be imported"),
            params={"path_name": path.name, "get_number_of_components": reader.GetNumberOfComponents()},
            filename=path.name,
        )
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise _corrupt(path, _itk_reason(exc, path)) from None
    if image.GetDimension() == 4:
        image = sitk.Extract(image, (*size[:3], 0), (0, 0, 0, 0))
    return volume_from_sitk(image, modality=modality)


def _sitk_component_bytes() -> dict[int, int]:
    """Bytes per component of SimpleITK's scalar pixel types."""
    import SimpleITK as sitk

    return {
        sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
        sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
    }

def _itk_reason(exc: RuntimeError, path: Path) -> str:
    """Keep the last meaningful line of an ITK exception, without server paths."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    if "No such file or directory" in reason:
        # MetaIO reports a short compressed data block as a missing file; the file is there.
        reason = "the image data could not be read completely"
    return reason.replace(str(path), path.name)[:300]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` as NIfTI-1 (gzip-compressed when ``path`` ends with ``.nii.gz``).

    The array dtype is kept (int16 CT stays int16, uint8/uint16 label maps stay so; bool is
    written as uint8). Geometry goes into both the sform and the qform (SimpleITK's NIfTI writer,
    converting LPS to the RAS of the NIfTI standard); the header stores them as float32, so positions
    round-trip to about 1e-5 relative precision.

    Parameters
    ----------
    volume : Volume
        Array (k, j, i) and LPS geometry.
    path : Path
        Destination ending with ``.nii`` or ``.nii.gz``; an existing file is replaced.

    Raises
    ------
    ValueError
        For another suffix, or a dtype NIfTI cannot hold (complex, object).
    """
    import SimpleITK as sitk

    path = Path(path)
    if not _has_suffix(path, _NIFTI_SUFFIXES):
        raise ValueError(f"a NIfTI path must end with .nii or .nii.gz, got {path.name!r}")
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"cannot write a {array.dtype} array as NIfTI")
    image = array_to_sitk(array, volume.geometry)
    sitk.WriteImage(image, str(path), useCompression=_lower_name(path).endswith(".gz"))


def write_labelmap_nifti(label_map: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Write an integer label map (0 = background) as NIfTI on ``geometry``.

    Parameters
    ----------
    label_map : ndarray, shape (k, j, i)
        bool or integer labels. uint8 and uint16 are written as they are; other integer types are
        narrowed to uint8 (max ≤ 255) or uint16 (max ≤ 65535).
    geometry : Geometry
        The grid of the image the labels belong to; ``geometry.shape == label_map.shape``.
    path : Path
        Destination ending with ``.nii`` or ``.nii.gz``.

    Raises
    ------
    ValueError
        Non-integer dtype, negative labels, labels above 65535, or a shape that does not match.
    """
    labels = np.asarray(label_map)
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"a label map must hold integers, got {labels.dtype}")
    if labels.dtype not in (np.uint8, np.uint16) and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise ValueError("a label map cannot hold negative labels")
        if high > np.iinfo(np.uint16).max:
            raise ValueError(f"label {high} does not fit in uint16")
        labels = labels.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)
    write_nifti(Volume(array=labels, geometry=geometry), path)
