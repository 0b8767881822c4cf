"""Reads behind the FHIR endpoint, scoped like the REST API: a hospital's staff see their hospital's
records, platform admins every hospital's; a record the user may not see is not found."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404

from annotation.models import Patient, Series, Study
from annotation.selectors import study_visible_queryset
from portal.models import User
from portal.selectors import tenancy_scope

from ..models import Measurement, Report
from ..selectors import report_visible_queryset


def fhir_patient_queryset(user: User) -> QuerySet[Patient]:
    """Return the patients ``user`` may see, with their hospital."""
    return tenancy_scope(Patient.objects.all(), user, patient_user_field="user").select_related("hospital")


def fhir_patient_get(*, user: User, patient_id: int) -> Patient:
    """Return one visible patient or raise Http404."""
    try:
        return fhir_patient_queryset(user).get(pk=patient_id)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None


def fhir_patient_search(*, user: User, patient_id: int | None = None, mrn: str | None = None,
                        hospital_code: str | None = None) -> list[Patient]:
    """Return the visible patients matching every given criterion (MRN within a hospital's system)."""
    qs = fhir_patient_queryset(user)
    if patient_id is not None:
        qs = qs.filter(pk=patient_id)
    if mrn is not None:
        qs = qs.filter(mrn=mrn)
    if hospital_code is not None:
        qs = qs.filter(hospital__code=hospital_code)
    return list(qs.order_by("pk"))


def _studies(user: User) -> QuerySet[Study]:
    return (study_visible_queryset(user).select_related("patient", "hospital")
            .prefetch_related(Prefetch("series", queryset=Series.objects.order_by("series_number", "pk"))))


def fhir_study_get(*, user: User, study_id: int) -> Study:
    """Return one visible study with its series, or raise Http404."""
    try:
        return _studies(user).get(pk=study_id)
    except Study.DoesNotExist:
        raise Http404("No such study.") from None


def fhir_study_search(*, user: User, patient_id: int) -> list[Study]:
    """Return the visible studies of a patient, oldest first."""
    return list(_studies(user).filter(patient_id=patient_id).order_by("study_date", "pk"))


def _reports(user: User) -> QuerySet[Report]:
    return report_visible_queryset(user).select_related("study", "study__patient", "study__hospital", "signed_by")


def fhir_report_get(*, user: User, report_id: int) -> Report:
    """Return one visible report or raise Http404."""
    try:
        return _reports(user).get(pk=report_id)
    except Report.DoesNotExist:
        raise Http404("No such report.") from None


def fhir_report_search(*, user: User, patient_id: int) -> list[Report]:
    """Return the visible reports of a patient, oldest study and version first."""
    return list(_reports(user).filter(study__patient_id=patient_id).order_by("study_id", "version"))


def _measurements(user: User) -> QuerySet[Measurement]:
    """Measurements of segmentations that a visible report cites, each annotated ``is_final`` (a signed
    report cites its segmentation) and loaded with its segmentation, series and study."""
    reports = report_visible_queryset(user)
    return (
        Measurement.objects
        .filter(Exists(reports.filter(segmentation_id=OuterRef("segmentation_id"))))
        .annotate(is_final=Exists(reports.filter(segmentation_id=OuterRef("segmentation_id"),
                                                 status=Report.Status.FINAL)))
        .select_related("segmentation", "segmentation__series", "segmentation__series__study")
    )


def fhir_measurement_get(*, user: User, measurement_id: int) -> Measurement:
    """Return one measurement a visible report cites, or raise Http404."""
    try:
        return _measurements(user).get(pk=measurement_id)
    except Measurement.DoesNotExist:
        raise Http404("No such measurement.") from None


def fhir_measurement_search(*, user: User, patient_id: int) -> list[Measurement]:
    """Return the measurements that visible reports of a patient cite."""
    return list(_measurements(user).filter(segmentation__series__study__patient_id=patient_id)
                .order_by("segmentation_id", "label"))


def fhir_report_measurements(*, reports: list[Report]) -> dict[int, list[Measurement]]:
    """Return the measurements (by label, with segmentation and series) of each report's segmentation,
    keyed by report id."""
    segmentation_ids = {r.segmentation_id for r in reports if r.segmentation_id}
    by_segmentation: dict[int, list[Measurement]] = {}
    for row in (Measurement.objects.filter(segmentation_id__in=segmentation_ids)
                .select_related("segmentation__series").order_by("label")):
        by_segmentation.setdefault(row.segmentation_id, []).append(row)
    return {r.pk: by_segmentation.get(r.segmentation_id, []) for r in reports}
