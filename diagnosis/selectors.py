"""Reads of measurements and reports, scoped through the studies the user may see."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from annotation.selectors import study_visible_queryset
from portal.models import Role, User

from .models import Finding, Measurement, Report


def report_visible_queryset(user: User) -> QuerySet[Report]:
    qs = Report.objects.filter(study__in=study_visible_queryset(user))
    if user.is_authenticated and user.role == Role.PATIENT:
        # Patients read signed reports only.
        qs = qs.filter(status=Report.Status.FINAL)
    return qs


def report_get(*, user: User, report_id: int) -> Report:
    try:
        return report_visible_queryset(user).select_related(
            "study", "study__patient", "study__hospital", "segmentation", "segmentation__model", "signed_by"
        ).get(pk=report_id)
    except Report.DoesNotExist:
        raise Http404("No such report.") from None


def report_list_for_study(*, user: User, study) -> list[Report]:
    return list(report_visible_queryset(user).filter(study=study).select_related("signed_by").order_by("-version"))


def measurement_list(*, segmentation) -> QuerySet[Measurement]:
    return Measurement.objects.filter(segmentation=segmentation).order_by("label")


def finding_visible_queryset(user: User) -> QuerySet[Finding]:
    """Return the findings ``user`` may see: those of the studies they may see, staff only.

    Findings are working material of the reading doctors (suggestions included); patients read their
    signed reports instead, so a patient sees no finding.
    """
    if not user.is_authenticated or user.role == Role.PATIENT:
        return Finding.objects.none()
    return Finding.objects.filter(study__in=study_visible_queryset(user))


def finding_list_for_study(*, user: User, study, status: str | None = None) -> QuerySet[Finding]:
    """Return a study's findings, most confident first."""
    qs = finding_visible_queryset(user).filter(study=study).select_related("decided_by")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-confidence", "pk")


def finding_get(*, user: User, finding_id: int) -> Finding:
    """Return one visible finding or raise Http404 (another hospital's finding is not found)."""
    try:
        return finding_visible_queryset(user).select_related("study", "study__hospital", "series").get(pk=finding_id)
    except Finding.DoesNotExist:
        raise Http404("No such finding.") from None


def finding_list_for_segmentation(*, segmentation) -> QuerySet[Finding]:
    """Return the findings a detector run stored with its segmentation, most confident first."""
    return Finding.objects.filter(segmentation=segmentation).order_by("-confidence", "pk")
