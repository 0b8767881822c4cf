"""The single entry point for imported images: files, folders and zip archives in, series out.

``load_inputs`` is all-or-nothing: the first input that is not a readable medical image raises an
:class:`~annotation.imaging.errors.ImagingError` and nothing is returned, so the caller stores
nothing. Objects that are legitimately not images (DICOM SEG/RTSTRUCT/SR, ``__MACOSX`` clutter) are
not errors: they are listed in ``LoadResult.skipped``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Sequence

from .archive import ArchiveLimits, extract_zip, is_junk_name
from .dicom import DicomSeries, read_dicom_files
from .errors import ImagingError, N_, UnsupportedFileError
from .formats import VOLUME_FORMATS, VolumeLimits, companion_files, read_volume, sniff_format
from .volume import Volume

__all__ = ["LoadResult", "LoadedSeries", "load_inputs"]



@dataclass(frozen=True)
class LoadedSeries:
    """One imported image series with the identifiers the portal stores.

    Attributes
    ----------
    volume : Volume
        Array (k, j, i), LPS geometry (see :mod:`annotation.imaging.volume`).
    source_format : str
        "dicom", "nifti", "metaimage" or "nrrd".
    source_files : tuple of Path
        The files this series came from: DICOM instances sorted along the slice normal; a header and
        its data file(s) (``.mhd`` + ``.raw``, ``.nhdr`` + data); the one NIfTI/NRRD/MHA file.
    series_instance_uid : str
        DICOM's Series Instance UID (0020,000E); otherwise a new UID (``pydicom.uid.generate_uid``).
    sop_instance_uids, instance_numbers : tuple
        One per DICOM source file, in ``source_files`` order; empty for other formats.
    patient_id, patient_name, accession_number : str
        PHI: never log them or put them in messages (hidden from ``repr``). Accession Number
        (0008,0050) is empty for formats other than DICOM.
    """

    volume: Volume
    source_format: str
    source_files: tuple[Path, ...]
    series_instance_uid: str
    study_instance_uid: str
    series_number: int | None
    series_description: str
    study_description: str
    study_date: date | None
    modality: str
    body_part: str
    sop_instance_uids: tuple[str, ...]
    instance_numbers: tuple[int | None, ...]
    patient_id: str = field(repr=False)
    patient_name: str = field(repr=False)
    accession_number: str = field(default="", repr=False)


@dataclass(frozen=True)
class LoadResult:
    """What an import produced.

    Attributes
    ----------
    series : tuple of LoadedSeries
        DICOM series first (in the order their first file was met), then the other files in input order.
    skipped : tuple of (str, str)
        (file name, reason) for inputs that are not images but are no error either.
    """

    series: tuple[LoadedSeries, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass
class _Input:
    path: Path
    name: str  # shown to people: the path inside the upload
    format: str | None = None


def load_inputs(
    paths: Sequence[Path],
    *,
    workdir: Path,
    limits: ArchiveLimits = ArchiveLimits(),
    default_modality: str = "",
    volume_limits: VolumeLimits = VolumeLimits(),
) -> LoadResult:
    """Load every image series found in files, folders and zip archives.

    Parameters
    ----------
    paths : sequence of Path
        Files, folders (walked recursively, symlinks not followed) and zip archives.
    workdir : Path
        Scratch folder (created if needed) that archives are extracted into. ``source_files`` of
        series from an archive point inside it; the caller owns and deletes it.
    limits : ArchiveLimits
        Limits for each archive.
    default_modality : str
        Modality for inputs that carry none (NIfTI, MetaImage, NRRD, DICOM with empty Modality).
    volume_limits : VolumeLimits
        Largest NIfTI, MetaImage or NRRD volume, checked from its header before it is read.

    Returns
    -------
    LoadResult

    Raises
    ------
    UnsupportedFileError
        A file that is no medical image (text, PNG, random bytes, a ``.raw`` without its header, a zip
        inside a zip), a 2-D/4-D/colour image.
    MissingCompanionFileError
        An ``.mhd``/``.nhdr`` without its data file.
    CorruptFileError, InconsistentSeriesError, UnsafeArchiveError
        Damaged files, DICOM series that do not form a volume, dangerous archives.
    ImagingError
        Nothing loadable at all (only skipped objects or empty folders).
    FileNotFoundError
        A path that does not exist (a caller bug, not bad input).
    """
    workdir = Path(workdir)
    skipped: list[tuple[str, str]] = []
    inputs: list[_Input] = []

    def add_file(path: Path, name: str, *, inside_archive: bool) -> None:
        if is_junk_name(name):
            skipped.append((name, "operating-system metadata (__MACOSX, .DS_Store), not an image"))
            return
        fmt = sniff_format(path)
        if fmt != "zip":
            inputs.append(_Input(path=path, name=name, format=fmt))
            return
        if inside_archive:
            raise UnsupportedFileError(
                N_("%(name)s: a zip inside a zip is not expanded; upload the inner archive itself"),
                params={"name": name}, filename=name
            )
        workdir.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix="archive-", dir=workdir))
        extracted = extract_zip(
            path, dest, limits, on_skip=lambda entry, reason: skipped.append((f"{name}/{entry}", reason))
        )
        for file in extracted:
            add_file(file, f"{name}/{file.relative_to(dest.resolve()).as_posix()}", inside_archive=True)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path):
                add_file(file, file.relative_to(path.parent).as_posix(), inside_archive=False)
        elif path.is_file():
            add_file(path, path.name, inside_archive=False)
        else:
            raise FileNotFoundError(f"input does not exist: {path}")

    # Data files named by a header (.mhd → .raw, .nhdr → data) belong to that header.
    companions_of: dict[int, tuple[Path, ...]] = {}
    claimed: set[Path] = set()
    for n, item in enumerate(inputs):
        if item.format in ("metaimage", "nrrd"):
            companions_of[n] = companion_files(item.path)
            claimed.update(p.resolve() for p in companions_of[n])

    dicom_inputs: list[_Input] = []
    volume_inputs: list[tuple[int, _Input]] = []
    for n, item in enumerate(inputs):
        if item.path.resolve() in claimed:
            continue
        if item.format == "dicom":
            dicom_inputs.append(item)
        elif item.format in VOLUME_FORMATS:
            volume_inputs.append((n, item))
        elif item.name.lower().endswith((".raw", ".zraw")):
            raise UnsupportedFileError(
                N_("%(item_name)s: a raw data file without its header (.mhd or .nhdr); upload both together"),
                params={"item_name": item.name},
                filename=item.name,
            )
        else:
            raise UnsupportedFileError(N_("%(name)s: not a medical image (DICOM, NIfTI, MetaImage, NRRD)"),
                                       params={"name": item.name}, filename=item.name)

    series: list[LoadedSeries] = []
    if dicom_inputs:
        result = read_dicom_files([i.path for i in dicom_inputs], names={i.path: i.name for i in dicom_inputs})
        skipped.extend(result.skipped)
        series.extend(_from_dicom(s, default_modality) for s in result.series)
    for n, item in volume_inputs:
        try:
            volume = read_volume(item.path, modality=default_modality, limits=volume_limits)
        except ImagingError as exc:
            # Re-word with the name inside the upload, which is what the person can find.
            if exc.filename and exc.filename != item.name:
                params = {k: item.name if v == exc.filename else v for k, v in exc.params.items()}
                raise type(exc)(exc.template, params=params, filename=item.name) from None
            raise
        series.append(_from_volume(volume, item, companions_of.get(n, ()), default_modality))

    if not series:
        if skipped:
            raise ImagingError(N_("no image series found in the upload (%(count)s object(s) skipped: %(reason)s)"),
                               params={"count": len(skipped), "reason": skipped[0][1]})
        raise ImagingError(N_("no image series found in the upload"))
    return LoadResult(series=tuple(series), skipped=tuple(skipped))


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return files


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    for suffix in (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _from_dicom(series: DicomSeries, default_modality: str) -> LoadedSeries:
    return LoadedSeries(
        volume=series.volume,
        source_format="dicom",
        source_files=series.files,
        series_instance_uid=series.series_instance_uid,
        study_instance_uid=series.study_instance_uid,
        series_number=series.series_number,
        series_description=series.series_description,
        study_description=series.study_description,
        study_date=series.study_date,
        modality=series.modality or default_modality,
        body_part=series.body_part,
        sop_instance_uids=series.sop_instance_uids,
        instance_numbers=series.instance_numbers,
        patient_id=series.patient_id,
        patient_name=series.patient_name,
        accession_number=series.accession_number,
    )


def _from_volume(volume: Volume, item: _Input, companions: tuple[Path, ...], default_modality: str) -> LoadedSeries:
    from pydicom.uid import generate_uid

    return LoadedSeries(
        volume=volume,
        source_format=item.format or "",
        source_files=(item.path, *companions),
        series_instance_uid=str(generate_uid()),
        study_instance_uid="",
        series_number=None,
        series_description=_stem(item.name),
        study_description="",
        study_date=None,
        modality=default_modality,
        body_part="",
        sop_instance_uids=(),
        instance_numbers=(),
        patient_id="",
        patient_name="",
    )
