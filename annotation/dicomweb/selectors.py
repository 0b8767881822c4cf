"""Scoped reads of DICOMweb: the DICOM studies, series and instances a user may see, matched by a QIDO query.

Only series imported from DICOM take part (NIfTI, MetaImage and NRRD uploads have no original
instances). Another hospital's study is simply not found (404), as in the REST API.
"""

from __future__ import annotations

import re

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from portal.models import User

from ..models import Series, SourceFile, Study
from ..selectors import study_visible_queryset
from .qido import QidoQuery

DICOM = Series.SourceFormat.DICOM


def _text_q(field: str, value: object) -> Q:
    if isinstance(value, re.Pattern):
        return Q(**{f"{field}__regex": value.pattern})
    return Q(**{field: value})


def _study_q(query: QidoQuery, prefix: str = "") -> Q:
    q = Q()
    for keyword, value in query.match.items():
        if keyword == "StudyInstanceUID":
            q &= Q(**{f"{prefix}study_instance_uid__in": value})
        elif keyword == "PatientID":
            q &= _text_q(f"{prefix}patient__mrn", value)
        elif keyword == "AccessionNumber":
            q &= _text_q(f"{prefix}accession_number", value)
        elif keyword == "StudyDate":
            first, last = value
            if first:
                q &= Q(**{f"{prefix}study_date__gte": first})
            if last:
                q &= Q(**{f"{prefix}study_date__lte": last})
    return q


def _series_q(query: QidoQuery, prefix: str = "") -> Q:
    q = Q()
    for keyword, value in query.match.items():
        if keyword == "SeriesInstanceUID":
            q &= Q(**{f"{prefix}series_instance_uid__in": value})
        elif keyword == "Modality":
            q &= Q(**{f"{prefix}modality": value})
        elif keyword == "SeriesNumber":
            q &= Q(**{f"{prefix}series_number": value})
    return q


def dicomweb_studies(*, user: User, query: QidoQuery) -> QuerySet[Study]:
    """Return the visible studies with DICOM series that match ``query``, with series counts annotated.

    ``ModalitiesInStudy`` matches a study with at least one series of that modality (PS3.18 10.6.1.2).
    """
    studies = study_visible_queryset(user).filter(series__source_format=DICOM).filter(_study_q(query))
    if "ModalitiesInStudy" in query.match:
        studies = studies.filter(series__modality=query.match["ModalitiesInStudy"], series__source_format=DICOM)
    ids = studies.values("pk").distinct()
    return (Study.objects.filter(pk__in=ids).select_related("patient")
            .prefetch_related(Prefetch("series", queryset=Series.objects.filter(source_format=DICOM)))
            .order_by("pk"))


def dicomweb_study_get(*, user: User, study_uid: str) -> Study:
    """Return the visible study with DICOM series of this StudyInstanceUID.

    Raises
    ------
    django.http.Http404
        Unknown, another hospital's, or without DICOM originals.
    """
    study = (study_visible_queryset(user).filter(study_instance_uid=study_uid, series__source_format=DICOM)
             .select_related("patient", "hospital").order_by("pk").first())
    if study is None:
        raise Http404
    return study


def dicomweb_result_studies(*, user: User, query: QidoQuery) -> QuerySet[Study]:
    """Return the visible studies with DICOM series that match the study keys of ``query``: those whose
    stored results (``annotation.dicomweb.results``) a search across studies lists."""
    ids = (study_visible_queryset(user).filter(series__source_format=DICOM).filter(_study_q(query))
           .values("pk").distinct())
    return Study.objects.filter(pk__in=ids)


def dicomweb_series(*, user: User, query: QidoQuery, study: Study | None = None) -> QuerySet[Series]:
    """Return the visible DICOM series matching ``query`` (inside ``study`` when given), with instance counts."""
    if study is not None:
        series = Series.objects.filter(study=study)
    else:
        series = Series.objects.filter(study__in=study_visible_queryset(user)).filter(_study_q(query, "study__"))
    return (series.filter(source_format=DICOM).filter(_series_q(query))
            .select_related("study", "study__patient").annotate(instances=Count("source_files"))
            .order_by("study_id", "series_number", "pk"))


def dicomweb_series_get(*, study: Study, series_uid: str) -> Series:
    """Return the DICOM series of ``study`` with this SeriesInstanceUID, or raise Http404."""
    series = (Series.objects.filter(study=study, series_instance_uid=series_uid, source_format=DICOM)
              .select_related("study", "study__patient").first())
    if series is None:
        raise Http404
    return series


def dicomweb_instances(*, user: User, query: QidoQuery, study: Study | None = None,
                       series: Series | None = None) -> QuerySet[SourceFile]:
    """Return the visible DICOM instances matching ``query``, inside ``series`` or ``study`` when given."""
    files = SourceFile.objects.filter(series__source_format=DICOM).exclude(sop_instance_uid="")
    if series is not None:
        files = files.filter(series=series)
    elif study is not None:
        files = files.filter(series__study=study).filter(_series_q(query, "series__"))
    else:
        files = (files.filter(series__study__in=study_visible_queryset(user))
                 .filter(_study_q(query, "series__study__")).filter(_series_q(query, "series__")))
    for keyword, value in query.match.items():
        if keyword == "SOPInstanceUID":
            files = files.filter(sop_instance_uid__in=value)
        elif keyword == "InstanceNumber":
            files = files.filter(instance_number=value)
    return files.select_related("series", "series__study", "series__study__patient").order_by(
        "series__study_id", "series__series_number", "series_id", "instance_number", "pk")


def dicomweb_instance_get(*, series: Series, sop_uid: str) -> SourceFile:
    """Return the instance of ``series`` with this SOPInstanceUID, or raise Http404."""
    instance = SourceFile.objects.filter(series=series, sop_instance_uid=sop_uid).select_related("series").first()
    if instance is None:
        raise Http404
    return instance
