"""The portal's own results served by DICOMweb: the DICOM objects that the apps above annotation
produce for a study (diagnosis: a signed report's DICOM SEG, TID 1500 SR and Encapsulated PDF), listed
as further series of the study beside its originals.

annotation does not build them: the app that does registers a provider on
:data:`annotation.hooks.dicomweb_result_instances`, which returns :class:`ResultInstance` rows pointing at
the stored Part 10 files. Only studies the user may see are ever passed to it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pydicom
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from .. import hooks
from ..models import Study

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ResultInstance:
    """One stored DICOM object the portal produced for a study.

    Attributes
    ----------
    study_id : int
        The portal's study (``Study.pk``).
    study_instance_uid : str
        That study's StudyInstanceUID, which the object carries.
    series_instance_uid, sop_instance_uid, sop_class_uid : str
        Its UIDs, as stored in the file.
    modality : str
        (0008,0060): ``SEG``, ``SR`` or ``DOC``.
    series_number : int or None
        (0020,0011).
    series_description : str
        (0008,103E).
    instance_number : int or None
        (0020,0013).
    storage_key : str
        The Part 10 file's key in the default storage.
    """

    study_id: int
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    storage_key: str

    def header(self) -> pydicom.Dataset:
        """Read the stored object without its pixel data (a SEG's frames)."""
        with default_storage.open(self.storage_key, "rb") as fh:
            return pydicom.dcmread(fh, stop_before_pixels=True)

    def dataset(self) -> pydicom.Dataset:
        """Read the whole stored object."""
        with default_storage.open(self.storage_key, "rb") as fh:
            return pydicom.dcmread(io.BytesIO(fh.read()))

    def stream(self) -> Iterator[bytes]:
        """Yield the stored Part 10 bytes in chunks of 1 MiB."""
        with default_storage.open(self.storage_key, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk


@dataclass(frozen=True)
class ResultSeries:
    """The result instances of one series (all of one study), in instance order."""

    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instances: tuple[ResultInstance, ...]


def dicomweb_result_instances(*, studies: QuerySet[Study] | Iterable[Study], build: bool) -> list[ResultInstance]:
    """Return the registered providers' result instances of ``studies`` (already scoped to the user),
    ordered by study, series number, series UID and instance number. ``build`` as the hook says."""
    if not isinstance(studies, QuerySet):
        studies = Study.objects.filter(pk__in=[s.pk for s in studies])
    found: list[ResultInstance] = []
    for _key, provider in hooks.dicomweb_result_instances.items():
        found.extend(provider(studies=studies, build=build))
    return sorted(found, key=lambda r: (r.study_id, r.series_number if r.series_number is not None else 1 << 30,
                                        r.series_instance_uid, r.instance_number or 0, r.sop_instance_uid))


def result_series_group(instances: Iterable[ResultInstance]) -> list[ResultSeries]:
    """Group result instances by series, keeping their order."""
    groups: dict[str, list[ResultInstance]] = {}
    for item in instances:
        groups.setdefault(item.series_instance_uid, []).append(item)
    return [ResultSeries(series_instance_uid=uid, modality=items[0].modality, series_number=items[0].series_number,
                         series_description=items[0].series_description, instances=tuple(items))
            for uid, items in groups.items()]
