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


def _reference_diameter_mm(finding: Finding) -> float:
    diameter = (finding.details or {}).get("reference_diameter_mm")
    return float(diameter if diameter is not None else (finding.long_axis_mm or 0.0))


def finding_comparison(*, user: User, study) -> dict:
    """Compare the detector's findings with the readers' nodules of a study, per nodule.

    References are the readers' grouped nodules (consensus findings of an LIDC import) or, without
    them, the imported LUNA16 nodules; the detections are those of the newest detector run. Matching
    is :func:`diagnosis.measurements.matching.luna16_match`, the function the FROC benchmark uses:
    a nodule is ``hit`` or ``missed``; a detection is ``hit``, ``extra`` (a false positive) or
    ``ignored`` (on a reader's nodule < 3 mm or non-nodule).

    Returns
    -------
    dict
        ``reference_source``, ``detector``, ``nodules``, ``detections``, ``summary`` (counts) and
        ``rule`` (the matching rule, in the user's language).
    """
    import numpy as np
    from django.utils.translation import gettext

    from .measurements.matching import Reference, luna16_match

    findings = list(finding_visible_queryset(user).filter(study=study).order_by("-confidence", "pk"))
    detections = [f for f in findings if f.source == Finding.Source.DETECTOR]
    runs = [f.segmentation_id for f in detections if f.segmentation_id is not None]
    if runs:
        detections = [f for f in detections if f.segmentation_id == max(runs)]
    references = [f for f in findings if f.source == Finding.Source.CONSENSUS]
    reference_source = Finding.Source.CONSENSUS if references else None
    if not references:
        references = [f for f in findings if f.source == Finding.Source.IMPORT and "reference_diameter_mm" in f.details]
        reference_source = Finding.Source.IMPORT if references else None
    points = [f for f in findings if f.source == Finding.Source.READER and f.segmentation_id is None]
    match = luna16_match(
        np.array([f.centroid_lps_mm for f in detections], dtype=float).reshape(-1, 3),
        [Reference(f.centroid_lps_mm, _reference_diameter_mm(f)) for f in references],
        np.array([f.centroid_lps_mm for f in points], dtype=float).reshape(-1, 3),
    )
    nodules = [{
        "finding_id": f.pk,
        "centroid_lps_mm": f.centroid_lps_mm,
        "diameter_mm": round(_reference_diameter_mm(f), 2),
        "agreement": (f.details or {}).get("lidc", {}).get("agreement"),
        "outcome": "hit" if match.hits_per_reference[n] else "missed",
        "detections": [detections[d].pk for d in match.hits_per_reference[n]],
    } for n, f in enumerate(references)]
    rows = [{
        "finding_id": f.pk,
        "centroid_lps_mm": f.centroid_lps_mm,
        "confidence": f.confidence,
        "status": f.status,
        "outcome": match.outcomes[n],
        "nodules": [references[r].pk for r in match.hit_references[n]],
    } for n, f in enumerate(detections)]
    outcomes = list(match.outcomes)
    detector = detections[0] if detections else None
    return {
        "reference_source": reference_source,
        "detector": {"name": detector.source_name, "version": detector.source_version} if detector else None,
        "nodules": nodules,
        "detections": rows,
        "summary": {"nodules": len(nodules), "hit": len(nodules) - len(match.missed), "missed": len(match.missed),
                    "extra": outcomes.count("extra"), "ignored": outcomes.count("ignored")},
        "rule": gettext("A detection hits a readers' nodule when its centre lies within the nodule's radius; a "
                        "detection on no nodule is extra, one on a nodule under 3 mm or a non-nodule is ignored "
                        "(LUNA16 rule, Setio et al. 2017)."),
    }
