"""Figures over time (issue 14): per matched finding and per organ segment of a study, its volume, long
axis, short axis and mean HU at each time point back through the stored comparisons, with the change
from one time point to the next (absolute and %), for the line charts of the study, patient, report and
the patient's own pages, and the charts of the signed PDF.

Findings are followed by :func:`diagnosis.selectors_finding_chain.finding_chain` (the pairings RECIST and
Lung-RADS read too); segments are followed by name through the ``segment_matches`` of the same
comparisons (:class:`diagnosis.models.StudyRegistration`). Only what was paired over at least two time
points is charted. The caller has already checked that the user may see the study.
"""

from __future__ import annotations

import datetime as dt
import math

from .models import Finding
from .selectors_finding_chain import finding_chain, registration_for

__all__ = ["GROWTH_FIGURES", "growth_page_payload", "segment_display_name", "study_growth_for", "study_growth_series"]

#: The figures charted, with their unit: volume (mL), RECIST long and short axial axes (mm), mean HU.
GROWTH_FIGURES = (("volume_ml", "mL"), ("long_axis_mm", "mm"), ("short_axis_mm", "mm"), ("mean_hu", "HU"))

_DIGITS = {"volume_ml": 4, "long_axis_mm": 2, "short_axis_mm": 2, "mean_hu": 1}


def _epoch_ms(date_iso: str | None) -> int | None:
    """Midnight UTC of an ISO date in milliseconds since 1970-01-01 (the charts' linear time axis)."""
    if not date_iso:
        return None
    day = dt.date.fromisoformat(date_iso)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _value(value, figure: str):
    return None if value is None or not math.isfinite(float(value)) else round(float(value), _DIGITS[figure])


def _with_changes(points: list[dict]) -> list[dict]:
    """Add ``<figure>_change`` (absolute, the figure's unit) and ``<figure>_change_pct`` (% of the earlier
    value) from the time point before; None at the first point or where either value is missing."""
    previous = None
    for point in points:
        for figure, _unit in GROWTH_FIGURES:
            before = previous.get(figure) if previous else None
            after = point.get(figure)
            change = None if before is None or after is None else round(after - before, _DIGITS[figure])
            point[f"{figure}_change"] = change
            point[f"{figure}_change_pct"] = (None if change is None or before == 0
                                             else round(100.0 * change / abs(before), 1))
        previous = point
    return points


def _summary(points: list[dict]) -> dict:
    """The change from the first time point to the last, per figure (absolute and %)."""
    first, last = points[0], points[-1]
    out = {}
    for figure, _unit in GROWTH_FIGURES:
        before, after = first.get(figure), last.get(figure)
        change = None if before is None or after is None else round(after - before, _DIGITS[figure])
        out[figure] = {"change": change,
                       "change_pct": None if change is None or before == 0 else round(100.0 * change / abs(before), 1)}
    return out


def _finding_series(study) -> list[dict]:
    series = []
    findings = (Finding.objects.filter(study=study).exclude(status=Finding.Status.REJECTED)
                .select_related("study").order_by("pk"))
    for finding in findings:
        chain = finding_chain(finding=finding)
        if len(chain) < 2:
            continue
        points = [{"study_id": p["study_id"], "study_date": p["study_date"], "t_ms": _epoch_ms(p["study_date"]),
                   "finding_id": p["finding_id"],
                   **{figure: _value(p.get(figure), figure) for figure, _unit in GROWTH_FIGURES}} for p in chain]
        _with_changes(points)
        series.append({"kind": "finding", "key": f"finding-{finding.pk}", "finding_id": finding.pk,
                       "finding_kind": finding.kind, "name": "", "side": finding.side, "region": finding.region,
                       "points": points, "total": _summary(points)})
    return series


def _segment_series(study) -> list[dict]:
    by_name: dict[str, dict[int, dict]] = {}
    current, seen, first = study, {study.pk}, True
    while True:
        registration = registration_for(current)
        if registration is None or registration.prior_id in seen:
            break
        prior = registration.prior
        for segment in registration.segment_matches:
            name = segment["name"]
            if first:
                by_name[name] = {current.pk: _segment_point(current, segment, "")}
            if name in by_name and current.pk in by_name[name] and prior.pk not in by_name[name]:
                by_name[name][prior.pk] = _segment_point(prior, segment, "prior_")
        seen.add(prior.pk)
        current, first = prior, False
    names_zh = _segment_names_zh(registration_for(study), set(by_name))
    series = []
    for name in sorted(by_name):
        points = sorted(by_name[name].values(), key=lambda p: (p["t_ms"] is None, p["t_ms"] or 0, p["study_id"]))
        if len(points) < 2:
            continue
        _with_changes(points)
        series.append({"kind": "segment", "key": f"segment-{name}", "finding_id": None, "finding_kind": "",
                       "name": name, "name_zh": names_zh.get(name, ""), "side": "", "region": "",
                       "points": points, "total": _summary(points)})
    return series


def _segment_names_zh(registration, names: set[str]) -> dict[str, str]:
    """The Chinese names (``name_zh`` of the label table) of the study's segments paired by name."""
    from .models import Measurement

    if registration is None or not names:
        return {}
    ids = [m["measurement_id"] for m in registration.segment_matches if m.get("measurement_id")]
    out = {}
    for row in Measurement.objects.filter(pk__in=ids).select_related("segmentation"):
        entry = next((e for e in row.segmentation.label_table if e.get("index") == row.label), {})
        if row.label_name in names and entry.get("name_zh"):
            out[row.label_name] = entry["name_zh"]
    return out


def _segment_point(study, segment: dict, prefix: str) -> dict:
    date_iso = study.study_date.isoformat() if study.study_date else None
    return {"study_id": study.pk, "study_date": date_iso, "t_ms": _epoch_ms(date_iso), "finding_id": None,
            **{figure: _value(segment.get(f"{prefix}{figure}"), figure) for figure, _unit in GROWTH_FIGURES}}


def study_growth_series(*, study) -> dict:
    """Return the figures over time of a study's matched findings and segments.

    Returns
    -------
    dict
        ``study_id``, ``figures`` (``[{"key", "unit"}]``: volume_ml mL, long_axis_mm mm, short_axis_mm mm,
        mean_hu HU) and ``series``: per matched finding (``kind`` ``"finding"``, ``finding_id``,
        ``finding_kind`` code, ``side``, ``region``) and per segment paired by name (``kind``
        ``"segment"``, ``name`` as stored, ``name_zh`` from its label table or ""), ``key`` (unique) and ``points``, earliest first: ``study_id``,
        ``study_date`` (ISO), ``t_ms`` (midnight UTC of the date, ms since the epoch; None without a
        date), each figure, and its change from the point before, ``<figure>_change`` (the figure's unit)
        and ``<figure>_change_pct`` (% of the earlier value); ``total`` holds the change from the first
        point to the last per figure (``change``, ``change_pct``). Only series of at least two time points.
    """
    return {"study_id": study.pk,
            "figures": [{"key": key, "unit": unit} for key, unit in GROWTH_FIGURES],
            "series": _finding_series(study) + _segment_series(study)}


def study_growth_for(*, user, study_id: int) -> dict:
    """Return the figures over time of a study for ``user``: live for a clinician of its hospital, and for
    a patient what the latest signed report of their own study froze (``growth`` of its snapshot; an
    empty ``series`` when it froze none). Adds ``source`` (``"live"`` or ``"signed_report"``) and
    ``report_id`` (the signed report read, else None).

    Raises
    ------
    Http404
        When the study is not visible to ``user`` (another hospital's, another patient's), or for a
        patient when the study has no signed report.
    PermissionDenied
        For any other role (annotators).
    """
    from django.core.exceptions import PermissionDenied
    from django.http import Http404
    from django.utils.translation import gettext as _

    from annotation.selectors import study_visible_queryset
    from portal.permissions import is_clinician, is_patient

    from .models import Report

    if not (is_clinician(user) or is_patient(user)):
        raise PermissionDenied(_("Figures over time are for doctors and the patient."))
    study = study_visible_queryset(user).filter(pk=study_id).first()
    if study is None:
        raise Http404("No such study.")
    if is_clinician(user):
        return {**study_growth_series(study=study), "source": "live", "report_id": None}
    report = (Report.objects.filter(study=study, status=Report.Status.FINAL)
              .order_by("-signed_at", "-version").first())
    if report is None:
        raise Http404("No signed report for this study.")
    frozen = report.snapshot.get("growth") or {"study_id": study.pk, "figures": [
        {"key": key, "unit": unit} for key, unit in GROWTH_FIGURES], "series": []}
    return {**frozen, "source": "signed_report", "report_id": report.pk}


def segment_display_name(series: dict) -> str:
    """A segment series' name in the active language: its label table's Chinese name (``name_zh``) on a
    Chinese page when it has one, else the name as stored."""
    from django.utils.translation import get_language

    if (get_language() or "").lower().startswith("zh") and series.get("name_zh"):
        return series["name_zh"]
    return series["name"]


def growth_page_payload(growth: dict | None) -> dict | None:
    """Return ``growth`` (of :func:`study_growth_series` or a signed snapshot) with the words the charts
    show, in the active language: per series ``label`` (the finding's kind, side and number, or the
    segment's name as stored), and ``labels`` (the figures' names with their unit, the time axis, the
    change columns). None when there is no series (the page shows no chart section)."""
    from django.utils.translation import gettext as _

    from .templatetags.report_units import finding_kind_label

    if not growth or not growth.get("series"):
        return None
    series = []
    for row in growth["series"]:
        if row["kind"] == "segment":
            label = segment_display_name(row)
        else:
            side = Finding.Side(row["side"]).label if row.get("side") in Finding.Side.values else ""
            label = " · ".join(p for p in (str(finding_kind_label(row["finding_kind"])), str(side),
                                           row.get("region") or "") if p) + f" #{row['finding_id']}"
        series.append({**row, "label": label})
    return {**growth, "series": series, "labels": {
        "figures": {"volume_ml": _("Volume (mL)"), "long_axis_mm": _("Long axis (mm)"),
                    "short_axis_mm": _("Short axis (mm)"), "mean_hu": _("Mean HU")},
        "x": _("Study date"), "change": _("Change from the study before"), "date": _("Date")}}
