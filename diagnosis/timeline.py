"""A patient over time: every study, report, finding, measurement and questionnaire of one patient
on one timeline, newest first (issue 14).

Clinicians only (doctors, hospital admins, platform admins) within the tenancy rules of the study
pages: annotators and patients are refused, another hospital's patient does not exist. The apps
above diagnosis add their own events (followup: completed questionnaires) through
:data:`patient_timeline_sources`, so diagnosis imports none of them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from annotation.hooks import Hook
from annotation.models import Patient, Segmentation, Series, Study
from portal.permissions import is_clinician
from portal.selectors import tenancy_scope

from .models import Finding, Measurement, Report

__all__ = ["KIND_ORDER", "TimelineEvent", "patient_timeline", "patient_timeline_sources"]

#: Kinds of events; on the same instant they are listed in this order (a study before its report).
KIND_ORDER = ("report", "finding", "measurement", "study", "questionnaire")

#: At most this many segments are named in a measurement event (the largest first).
MEASUREMENT_SEGMENTS_SHOWN = 6


@dataclass(frozen=True)
class TimelineEvent:
    """One entry of a patient's timeline.

    ``at`` is an aware datetime: the acquisition date of a study (midnight, local time zone, when the
    study has a date) or the moment the record was made (a report's signature, a questionnaire's
    submission). ``kind`` is one of :data:`KIND_ORDER`; ``title`` and ``detail`` are in the active
    language except for names as stored (labels, graph names); ``url`` opens the record.
    """

    at: dt.datetime
    kind: str
    title: str
    detail: str = ""
    url: str = ""
    study_id: int | None = None
    status: str = ""


patient_timeline_sources = Hook(
    "patient_timeline_sources",
    """Events of the apps above diagnosis on a patient's timeline.

    Each function is called as ``f(user=User, patient=Patient)`` (a clinician of the patient's
    hospital) and returns a list of :class:`TimelineEvent`.
    """,
)


def _study_moment(study: Study) -> dt.datetime:
    if study.study_date:
        return timezone.make_aware(dt.datetime.combine(study.study_date, dt.time.min))
    return study.created_at


def _study_title(study: Study) -> str:
    series = list(study.series.all())
    modalities = sorted({s.modality for s in series if s.modality})
    body_parts = sorted({s.body_part for s in series if s.body_part})
    description = study.description or next((s.description for s in series if s.description), "")
    parts = [" / ".join(modalities), " / ".join(body_parts), description]
    return " · ".join(p for p in parts if p) or _("Study %(id)s") % {"id": study.pk}


def _report_events(patient: Patient, studies: dict[int, Study]) -> list[TimelineEvent]:
    events = []
    for report in Report.objects.filter(study__patient=patient).order_by("pk"):
        signed = report.status == Report.Status.FINAL and report.signed_at
        title = (_("Report version %(version)s signed") if signed else _("Report version %(version)s, %(status)s")) % {
            "version": report.version, "status": report.get_status_display()}
        impression = (report.impression or report.findings or "").strip()
        events.append(TimelineEvent(
            at=report.signed_at if signed else report.created_at, kind="report", title=title,
            detail=impression[:240] + ("…" if len(impression) > 240 else ""),
            url=reverse("diagnosis:report-detail", args=[report.pk]), study_id=report.study_id,
            status=report.status))
    return events


def _nodule_growth(study: Study, findings: list[Finding]) -> str:
    """The volume doubling time (Schwartz 1961) and growth category of each nodule of ``study`` paired with
    its prior in the stored comparison, as the comparison table shows them ("" when none)."""
    from .longitudinal.growth import growth
    from .selectors_finding_chain import registration_for, registration_pairings

    registration = registration_for(study)
    if registration is None or not registration.interval_days or registration.interval_days <= 0:
        return ""
    pairings = registration_pairings(registration)
    parts = []
    for finding in sorted(findings, key=lambda f: f.pk):
        prior = pairings.prior_findings.get(pairings.prior_of.get(finding.pk))
        if finding.kind != Finding.Kind.LUNG_NODULE or prior is None or not prior.volume_ml or not finding.volume_ml:
            continue
        figures = growth(prior.volume_ml, finding.volume_ml, registration.interval_days).to_dict()
        if figures["vdt_days"] is None or not math.isfinite(figures["vdt_days"]):
            continue
        parts.append(_("nodule #%(finding)s: VDT %(days).0f days (%(category)s)") % {
            "finding": finding.pk, "days": figures["vdt_days"],
            "category": _growth_words().get(figures["growth_category"], figures["growth_category"] or "—")})
    return "; ".join(parts)


def _growth_words() -> dict:
    return {"stable": _("stable"), "shrinking": _("shrinking"), "slow": _("slow growth"),
            "intermediate": _("intermediate growth"), "fast": _("fast growth")}


def _finding_events(patient: Patient, studies: dict[int, Study]) -> list[TimelineEvent]:
    by_study: dict[int, list[Finding]] = {}
    for finding in Finding.objects.filter(study__patient=patient).exclude(status=Finding.Status.REJECTED):
        by_study.setdefault(finding.study_id, []).append(finding)
    events = []
    for study_id, findings in by_study.items():
        accepted = [f for f in findings if f.status in (Finding.Status.ACCEPTED, Finding.Status.EDITED)]
        largest = max(findings, key=lambda f: (f.long_axis_mm or 0.0, f.volume_ml or 0.0))
        title = ngettext("%(count)d finding (%(accepted)d accepted)", "%(count)d findings (%(accepted)d accepted)",
                         len(findings)) % {"count": len(findings), "accepted": len(accepted)}
        detail = ""
        if largest.long_axis_mm is not None:
            detail = _("Largest: %(kind)s, %(long).1f × %(short).1f mm") % {
                "kind": largest.get_kind_display(), "long": largest.long_axis_mm, "short": largest.short_axis_mm or 0.0}
            if largest.volume_ml is not None:
                detail += ", " + _("%(volume).2f mL") % {"volume": largest.volume_ml}
        growth_text = _nodule_growth(studies[study_id], findings)
        if growth_text:
            detail = f"{detail}; {growth_text}" if detail else growth_text
        events.append(TimelineEvent(at=_study_moment(studies[study_id]), kind="finding", title=title, detail=detail,
                                    url=reverse("annotation:study-detail", args=[study_id]), study_id=study_id))
    return events


def _measurement_events(patient: Patient, studies: dict[int, Study]) -> list[TimelineEvent]:
    chinese = (translation.get_language() or "").lower().startswith("zh")
    current = (Segmentation.objects.filter(series__study__patient=patient, is_current=True)
               .select_related("series").prefetch_related(Prefetch("measurements", queryset=Measurement.objects.order_by("-volume_ml"))))
    events = []
    for segmentation in current:
        rows = list(segmentation.measurements.all())
        if not rows:
            continue
        # Label names in the page's language: the label table's Chinese name, else the stored name.
        zh_names = {entry.get("index"): entry.get("name_zh") for entry in segmentation.label_table or []
                    if isinstance(entry, dict)} if chinese else {}
        named = ", ".join(_("%(label)s %(volume).1f mL") % {"label": zh_names.get(row.label) or row.label_name,
                                                             "volume": row.volume_ml}
                          for row in rows[:MEASUREMENT_SEGMENTS_SHOWN])
        if len(rows) > MEASUREMENT_SEGMENTS_SHOWN:
            named += " " + _("and %(count)d more") % {"count": len(rows) - MEASUREMENT_SEGMENTS_SHOWN}
        study_id = segmentation.series.study_id
        events.append(TimelineEvent(
            at=_study_moment(studies[study_id]), kind="measurement",
            title=_("Measurements of “%(name)s” (version %(version)s)") % {"name": segmentation.name,
                                                                          "version": segmentation.version},
            detail=named, url=reverse("annotation:study-detail", args=[study_id]) + f"?series={segmentation.series_id}",
            study_id=study_id))
    return events


def patient_timeline(*, user, patient_id: int) -> tuple[Patient, list[TimelineEvent]]:
    """Return a patient and their timeline, newest first.

    Raises
    ------
    PermissionDenied
        ``user`` is not a clinician (annotators see images, not the patient's record).
    Http404
        No patient ``patient_id`` in ``user``'s hospital (the same answer as for one that does not exist).
    """
    if not is_clinician(user):
        raise PermissionDenied
    try:
        patient = tenancy_scope(Patient.objects.select_related("hospital"), user).get(pk=patient_id)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None
    studies = {s.pk: s for s in Study.objects.filter(patient=patient).prefetch_related(
        Prefetch("series", queryset=Series.objects.only("id", "study_id", "modality", "body_part", "description")))}
    events = [TimelineEvent(at=_study_moment(s), kind="study", title=_study_title(s),
                            detail=_("Accession %(number)s") % {"number": s.accession_number} if s.accession_number else "",
                            url=reverse("annotation:study-detail", args=[s.pk]), study_id=s.pk)
              for s in studies.values()]
    events += _report_events(patient, studies)
    events += _finding_events(patient, studies)
    events += _measurement_events(patient, studies)
    for _key, source in patient_timeline_sources.items():
        events += source(user=user, patient=patient)
    events.sort(key=lambda e: (-e.at.timestamp(), KIND_ORDER.index(e.kind) if e.kind in KIND_ORDER else 99))
    return patient, events
