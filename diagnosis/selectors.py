"""Reads of measurements and reports, scoped through the studies the user may see."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from annotation.selectors import study_visible_queryset
from portal.models import Role, User

from .models import Measurement, Report


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
