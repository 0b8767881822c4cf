"""Writes of the diagnosis app: measuring segmentations and drafting, signing and amending reports."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import uuid
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from annotation.imaging.volume import Volume
from annotation.models import Segmentation, Study
from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.selectors import hospital_review_threshold
from portal.services import audit_record
from portal.validators import is_color_hex

from ..models import Finding, Measurement, Report
from .pacs import report_results_queue

logger = logging.getLogger(__name__)


def _label_names(label_table: list[dict]) -> dict[int, dict]:
    return {int(entry["index"]): entry for entry in label_table}


def segmentation_measure(
    *, segmentation: Segmentation, label_map: np.ndarray | None = None, volume: Volume | None = None
) -> list[Measurement]:
    """Measure every labelled segment of a segmentation and store one row per label (idempotent).

    ``label_map`` (k, j, i) and ``volume`` are read from storage when not given.
    """
    from annotation.storage import segmentation_labelmap_load, series_geometry, series_volume_load

    from ..measurements.shape import measure_segments

    if label_map is None:
        label_map = segmentation_labelmap_load(segmentation)
    if volume is None:
        volume = series_volume_load(segmentation.series)
    geometry = series_geometry(segmentation.series)
    labels = _label_names(segmentation.label_table)
    results = measure_segments(label_map, geometry, image=volume.array, labels=sorted(labels) or None)
    rows = []
    with transaction.atomic():
        Measurement.objects.filter(segmentation=segmentation).delete()
        for m in results:
            entry = labels.get(m.label, {})
            rows.append(
                Measurement(
                    segmentation=segmentation, label=m.label,
                    label_name=str(entry.get("name", f"label {m.label}"))[:100],
                    voxel_count=m.voxel_count, volume_ml=m.volume_ml, surface_area_mm2=m.surface_area_mm2,
                    max_diameter_mm=m.max_diameter_mm, axial_long_mm=m.axial_long_mm, axial_short_mm=m.axial_short_mm,
                    component_count=m.component_count, mean_intensity=m.mean_intensity, std_intensity=m.std_intensity,
                    centroid_lps_mm=list(m.centroid_lps_mm), details=m.to_dict(),
                )
            )
        Measurement.objects.bulk_create(rows)
    return rows


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def measurement_payload(row: Measurement, label_table: list[dict], confidence: dict | None = None,
                        *, review_threshold: float | None = None) -> dict:
    """Return one segment's figures; ``confidence`` is the segmentation's ``label_confidence``.

    ``confidence`` is the network's mean confidence of the segment (1 - mean normalised softmax
    entropy, None for classical, imported and edited segmentations); ``low_confidence`` marks a
    figure from a segment below ``review_threshold`` (the study hospital's,
    ``portal.selectors.hospital_review_threshold``; ``None``: ``settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD``).
    """
    from django.conf import settings

    if review_threshold is None:
        review_threshold = float(settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD)
    entry = _label_names(label_table).get(row.label, {})
    value = (confidence or {}).get(str(row.label))
    value = None if value is None else round(float(value), 3)
    return {
        "label": row.label,
        "name": row.label_name,
        "name_zh": entry.get("name_zh", ""),
        # Only a #rrggbb colour reaches the PDF's style attribute (rows stored before validation included).
        "color": entry["color"] if is_color_hex(entry.get("color")) else "#ff0000",
        "voxel_count": row.voxel_count,
        "volume_ml": round(row.volume_ml, 3),
        "surface_area_mm2": round(row.surface_area_mm2, 1),
        "surface_area_crofton_mm2": _rounded(row.details.get("surface_area_crofton_mm2"), 1),
        "max_diameter_mm": round(row.max_diameter_mm, 1),
        "axial_long_mm": round(row.axial_long_mm, 1),
        "axial_short_mm": round(row.axial_short_mm, 1),
        "component_count": row.component_count,
        "mean_intensity": None if row.mean_intensity is None else round(row.mean_intensity, 1),
        "std_intensity": None if row.std_intensity is None else round(row.std_intensity, 1),
        "centroid_lps_mm": [round(v, 1) for v in row.centroid_lps_mm],
        "confidence": value,
        "low_confidence": value is not None and value < review_threshold,
    }


# --- reports --------------------------------------------------------------------------------

def _patient_display(study: Study) -> str:
    patient = study.patient
    mode = study.hospital.report_patient_display
    if mode == Hospital.PatientDisplay.MRN_ONLY or not patient.name:
        return f"MRN {patient.mrn}"
    if mode == Hospital.PatientDisplay.INITIALS:
        parts = patient.name.replace("^", " ").split()
        initials = "".join(p[0].upper() for p in parts if p) if all(p.isascii() for p in parts) else patient.name[0] + "*" * (len(patient.name) - 1)
        return f"{initials} (MRN {patient.mrn})"
    return f"{patient.name} (MRN {patient.mrn})"


def _default_segmentation(study: Study) -> Segmentation | None:
    return (
        Segmentation.objects.filter(series__study=study).select_related("model", "series").order_by("-created_at").first()
    )


def _draft_findings(segmentation: Segmentation | None) -> str:
    if segmentation is None:
        return ""
    lines = []
    for row in segmentation.measurements.order_by("label"):
        entry = _label_names(segmentation.label_table).get(row.label, {})
        name = entry.get("name_zh") or row.label_name
        lines.append(
            f"{name}：体积 {row.volume_ml:.1f} mL，最大径 {row.max_diameter_mm:.1f} mm，"
            f"连通分量 {row.component_count} 个。"
        )
    return "\n".join(lines)


@transaction.atomic
def report_create_draft(*, user: User, study: Study, segmentation: Segmentation | None = None) -> Report:
    """Start a draft report for a study, pre-filled with the measurements of its latest segmentation."""
    segmentation = segmentation or _default_segmentation(study)
    if segmentation is not None and segmentation.series.study_id != study.pk:
        raise ServiceError(_("The segmentation belongs to another study."), code="wrong_study")
    version = (Report.objects.filter(study=study).order_by("-version").values_list("version", flat=True).first() or 0) + 1
    report = Report(study=study, segmentation=segmentation, version=version, created_by=user,
                    findings=_draft_findings(segmentation))
    report.full_clean()
    report.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="report", target_id=report.pk, hospital=study.hospital)
    return report


@transaction.atomic
def report_update(*, user: User, report: Report, findings: str | None = None, impression: str | None = None) -> Report:
    """Edit a draft's findings and impression. A final report never changes.

    Raises
    ------
    ServiceError
        (409) when the report is final.
    """
    report = Report.objects.select_for_update().get(pk=report.pk)
    if report.status != Report.Status.DRAFT:
        raise ServiceError(_("A final report cannot be changed; amend it instead."),
                           code="report_final", status_code=409)
    if findings is not None:
        report.findings = findings
    if impression is not None:
        report.impression = impression
    report.full_clean()
    report.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="report", target_id=report.pk)
    return report


def report_prior_comparison(study: Study) -> dict | None:
    """Return the report's comparison with the prior, or None when the study was not compared.

    From :func:`diagnosis.selectors.study_prior_comparison`: the prior's date and id, the interval
    (days), and one row per matched finding or segment (kind code or segment name, volumes in mL,
    change in %, VDT in days and the growth category of :mod:`diagnosis.longitudinal.growth`, long
    axes in mm), plus the new and resolved findings. Codes, not labels, so that the snapshot can be
    shown in either language.
    """
    from ..selectors import study_prior_comparison

    comparison = study_prior_comparison(study=study)
    if comparison is None:
        return None
    keep = ("kind", "finding_kind", "name", "prior_volume_ml", "volume_ml", "volume_change_pct", "vdt_days",
            "growth_category", "prior_long_axis_mm", "long_axis_mm")
    return {
        "prior_study_id": comparison["prior_study_id"],
        "prior_study_date": comparison["prior_study_date"],
        "interval_days": comparison["interval_days"],
        "matches": [{k: row.get(k) for k in keep} for row in comparison["matches"]],
        "new": [{k: row.get(k) for k in ("finding_kind", "volume_ml", "long_axis_mm")} for row in comparison["new"]],
        "resolved": [{k: row.get(k) for k in ("finding_kind", "prior_volume_ml", "prior_long_axis_mm")}
                     for row in comparison["resolved"]],
    }


def report_growth(study: Study) -> dict | None:
    """Return the figures over time of the study's matched findings and segments, or None when nothing
    was paired over two time points (:func:`diagnosis.selectors_growth.study_growth_series`: codes, names
    as stored, dates and numbers, so that the snapshot can be shown and charted in either language)."""
    from ..selectors_growth import study_growth_series

    growth = study_growth_series(study=study)
    return growth if growth["series"] else None


def report_growth_charts(content: dict) -> list[dict]:
    """Return the PDF's growth charts in the active language, drawn from the content's ``growth``.

    One entry per series (``title``; ``svgs``: an inline SVG line chart of the volume (mL) and one of the
    long axis (mm) over a real time axis, :func:`diagnosis.reporting.growth_chart.render_growth_chart_svg`),
    only where two time points have the figure. A signed report draws them from its frozen snapshot.
    """
    from django.utils.safestring import mark_safe

    from portal.templatetags.portal_dates import isodate

    from ..reporting.growth_chart import render_growth_chart_svg
    from ..selectors_growth import segment_display_name
    from ..templatetags.report_units import finding_kind_label

    def date_label(t_ms: int) -> str:
        return isodate(dt.datetime.fromtimestamp(t_ms / 1000, tz=dt.UTC).date())

    charts = []
    for series in (content.get("growth") or {}).get("series", []):
        if series["kind"] == "segment":
            title = segment_display_name(series)
        else:
            title = f"{finding_kind_label(series['finding_kind'])} #{series['finding_id']}"
        svgs = []
        for figure, label in (("volume_ml", gettext("Volume (mL)")), ("long_axis_mm", gettext("Long axis (mm)"))):
            values = [(p["t_ms"], p.get(figure)) for p in series["points"]]
            if sum(1 for t, v in values if t is not None and v is not None) < 2:
                continue
            svgs.append(mark_safe(render_growth_chart_svg(  # noqa: S308 (built from numbers and escaped text)
                values, title=gettext("%(name)s: %(figure)s over time") % {"name": title, "figure": label},
                y_label=label, x_label=gettext("Study date"), date_label=date_label)))
        if svgs:
            charts.append({"title": title, "key": series["key"], "svgs": svgs})
    return charts


def report_reference_flags(report: Report) -> list[dict]:
    """Return the report's figures outside their published reference range, each with its source.

    Figures of the report's segmentation when it has one, else of the study's newest segmentations
    (:func:`diagnosis.selectors_reference_ranges.study_reference_comparison_for`).
    """
    from ..selectors_reference_ranges import study_reference_comparison_for

    flags = []
    # Names in English in the content (the snapshot): each template translates them to its reader's language.
    with translation.override("en"):
        items = study_reference_comparison_for(study=report.study)
    for item in items:
        if not item["outside"] or (report.segmentation_id and item["segmentation_id"] != report.segmentation_id):
            continue
        reference = item["reference"]
        flags.append({"measure": item["measure"], "name": item["name"], "value": item["value"], "unit": item["unit"],
                      "direction": item["direction"], "p2_5": reference["p2_5"], "p97_5": reference["p97_5"],
                      "source": reference["source"], "source_locator": reference["source_locator"]})
    return flags


def report_recist(study: Study) -> dict | None:
    """Return the report's RECIST 1.1 table, or None when no selection applies to the study.

    :func:`diagnosis.selectors.recist_assessment` up to this study: the lesions (finding id, kind code,
    role, organ) and per time point the diameters and sum (mm), nadir (mm), changes and the
    target/non-target/overall response codes (Eisenhauer et al., Eur J Cancer 45:228–247, 2009). The
    rule sentence is rendered from the figures in the reader's language (``recist_rule`` filter).
    """
    from ..selectors import recist_assessment

    assessment = recist_assessment(study=study, until=study)
    if assessment is None:
        return None
    for point in assessment["time_points"]:
        point.pop("rule", None)
    return assessment


def report_content(report: Report) -> dict:
    """Return the structured content of a report (the JSON form, and what the PDF shows)."""
    if report.status != Report.Status.DRAFT and report.snapshot:
        return report.snapshot
    study = report.study
    segmentation = report.segmentation
    measurements = []
    model = None
    if segmentation is not None:
        threshold = hospital_review_threshold(study.hospital)
        measurements = [measurement_payload(m, segmentation.label_table, segmentation.label_confidence,
                                            review_threshold=threshold)
                        for m in segmentation.measurements.order_by("label")]
        if segmentation.model is not None:
            model = {"name": segmentation.model.name, "display_name": segmentation.model.display_name,
                     "display_name_zh": segmentation.model.display_name_zh,
                     "version": segmentation.model.version, "architecture": segmentation.model.architecture}
    return {
        "report_id": report.pk,
        "version": report.version,
        "status": report.status,
        "supersedes": report.supersedes_id,
        "hospital": {"code": study.hospital.code, "name": study.hospital.name},
        "patient": _patient_display(study),
        "study": {
            "id": study.pk, "study_instance_uid": study.study_instance_uid,
            "study_date": study.study_date.isoformat() if study.study_date else None,
            "description": study.description,
            # What the study shows, for a study imported without a description (NIfTI, NRRD).
            "modalities": sorted({s.modality for s in study.series.all() if s.modality}),
            "body_parts": sorted({s.body_part for s in study.series.all() if s.body_part}),
        },
        "series": None if segmentation is None else {
            "id": segmentation.series_id, "modality": segmentation.series.modality,
            "body_part": segmentation.series.body_part, "description": segmentation.series.description, "series_instance_uid": segmentation.series.series_instance_uid,
        },
        "segmentation": None if segmentation is None else {"id": segmentation.pk, "name": segmentation.name,
                                                          "version": segmentation.version},
        "model": model,
        "measurements": measurements,
        # A network's segmentation shows each segment's mean confidence; a figure from a segment below
        # the review threshold carries a note.
        "confidence_shown": any(m["confidence"] is not None for m in measurements),
        "low_confidence": any(m["low_confidence"] for m in measurements),
        "findings": report.findings,
        "impression": report.impression,
        "accepted_findings": report_accepted_findings(report),
        # "Compared with prior of DATE": the latest stored comparison of this study (frozen at signing).
        "prior_comparison": report_prior_comparison(study),
        # Figures over time of the matched findings and segments (frozen at signing: the charts of the
        # signed PDF and of the patient's pages are drawn from these numbers).
        "growth": report_growth(study),
        # RECIST 1.1 of the doctor's target lesions up to this study (frozen at signing with the rest).
        "recist": report_recist(study),
        # Figures outside their published reference range, with the source (frozen at signing).
        "reference_flags": report_reference_flags(report),
        # What the software suggests, kept beside (never in place of) the doctor's confirmed category.
        "lung_rads_suggestion": _lung_rads_suggestion(report),
        # Only ever set by the doctor's confirmation (report_lung_rads_confirm), never by the suggestion.
        "lung_rads": None if not report.lung_rads_category else {
            "category": report.lung_rads_category, "rule": report.lung_rads_rule,
            "confirmed_by": str(report.lung_rads_confirmed_by) if report.lung_rads_confirmed_by else None,
            "confirmed_at": report.lung_rads_confirmed_at.isoformat() if report.lung_rads_confirmed_at else None,
        },
        "signed_by": str(report.signed_by) if report.signed_by else None,
        "signed_at": report.signed_at.isoformat() if report.signed_at else None,
    }


ACCEPTED_STATUSES = (Finding.Status.ACCEPTED, Finding.Status.EDITED)


def report_accepted_findings(report: Report) -> list[dict]:
    """Return the rows of a report's findings table: its study's accepted (or edited) findings, in order.

    Each row holds what the table and the key image need: id, kind (and its label), side, region,
    long/short axis (mm), volume (mL), composition (and its label), confidence, source, the series, the
    voxel [k, j, i] and the outlining segmentation and segment label.
    """
    rows = []
    for f in Finding.objects.filter(study=report.study, status__in=ACCEPTED_STATUSES).order_by("pk"):
        rows.append({
            "id": f.pk, "kind": f.kind, "kind_label": str(f.get_kind_display()), "side": f.side,
            "side_label": str(f.get_side_display()) if f.side else "", "region": f.region,
            "long_axis_mm": None if f.long_axis_mm is None else round(f.long_axis_mm, 1),
            "short_axis_mm": None if f.short_axis_mm is None else round(f.short_axis_mm, 1),
            "volume_ml": None if f.volume_ml is None else round(f.volume_ml, 3),
            "composition": f.composition,
            "composition_label": str(f.get_composition_display()) if f.composition else "",
            "confidence": None if f.confidence is None else round(f.confidence, 2),
            "source": f.source, "source_label": str(f.get_source_display()), "status": f.status,
            "series_id": f.series_id, "centroid_voxel": list(f.centroid_voxel),
            "segmentation_id": f.segmentation_id, "segment_label": f.segment_label,
        })
    return rows


def _lung_rads_suggestion(report: Report) -> dict | None:
    from ..selectors import report_lung_rads_suggestion

    suggestion = report_lung_rads_suggestion(report=report)
    return {key: suggestion[key] for key in ("category", "rule_code", "rule", "source")}


def report_finding_key_images(rows: list[dict]) -> dict[int, str]:
    """Render one key image per findings-table row: the axial slice through the finding's voxel,
    lung-windowed (WINDOW_PRESETS["lung"]) on CT, cropped around it, with its segment's contour or a box.

    Returns a PNG data URI per finding id. Volumes and label maps are loaded once per series and
    segmentation; a finding whose image cannot be loaded gets none (logged by id, never by patient).
    """
    from annotation.imaging.windowing import WINDOW_PRESETS, window_for_series
    from annotation.models import Series
    from annotation.storage import segmentation_labelmap_load, series_volume_load

    from ..reporting.keyimages import render_finding_key_image

    volumes: dict[int, tuple] = {}
    label_maps: dict[int, np.ndarray | None] = {}
    images: dict[int, str] = {}
    for row in rows:
        try:
            if row["series_id"] not in volumes:
                series = Series.objects.get(pk=row["series_id"])
                volume = series_volume_load(series)
                window = (WINDOW_PRESETS["lung"] if (series.modality or "").upper() == "CT"
                          else window_for_series(volume.array, modality=series.modality or ""))
                volumes[row["series_id"]] = (volume, window)
            volume, window = volumes[row["series_id"]]
            label_map = None
            if row["segmentation_id"] is not None and row["segment_label"] is not None:
                if row["segmentation_id"] not in label_maps:
                    segmentation = Segmentation.objects.filter(pk=row["segmentation_id"]).first()
                    label_maps[row["segmentation_id"]] = (
                        None if segmentation is None else segmentation_labelmap_load(segmentation))
                label_map = label_maps[row["segmentation_id"]]
            key = render_finding_key_image(
                volume.array, volume.geometry, center_index=tuple(row["centroid_voxel"]), window=window,
                label_map=label_map, label=row["segment_label"], long_axis_mm=row["long_axis_mm"],
            )
        except (OSError, ValueError, Series.DoesNotExist) as exc:
            logger.warning("no key image for finding %s: %s", row["id"], type(exc).__name__)
            continue
        images[row["id"]] = "data:image/png;base64," + base64.b64encode(key.png).decode()
    return images


def _largest_finding_centroid(segmentation: Segmentation) -> list[float] | None:
    """Return the LPS centroid (mm) of the largest stored component (most voxels), if measured."""
    best = None
    for row in segmentation.measurements.all():
        for component in row.details.get("components", []):
            key = (component["voxel_count"], component.get("axial_long_mm", 0.0))
            if best is None or key > best[0]:
                best = (key, component["centroid_lps_mm"])
    return None if best is None else list(best[1])


def report_key_images(report: Report) -> dict[str, str]:
    """Render the three planes through the largest finding with the overlay, as data URIs."""
    from annotation.storage import segmentation_labelmap_load, series_geometry, series_volume_load

    from ..measurements.shape import largest_finding, measure_segments
    from annotation.imaging.windowing import window_for_series

    from ..reporting.keyimages import label_colors_rgb, render_key_images

    segmentation = report.segmentation
    if segmentation is None:
        return {}
    volume = series_volume_load(segmentation.series)
    label_map = segmentation_labelmap_load(segmentation)
    geometry = series_geometry(segmentation.series)
    centroid = _largest_finding_centroid(segmentation)
    if centroid is None:
        finding = largest_finding(measure_segments(label_map, geometry))
        centroid = None if finding is None else finding[1].centroid_lps_mm
    if centroid is None:
        center = tuple(n // 2 for n in geometry.shape)
    else:
        center = tuple(int(round(v)) for v in geometry.lps_to_index(np.asarray(centroid)))
        center = tuple(min(max(c, 0), n - 1) for c, n in zip(center, geometry.shape))
    colors = label_colors_rgb(segmentation.label_table)
    body_part = segmentation.model.body_part if segmentation.model else ""
    window = window_for_series(volume.array, modality=segmentation.series.modality, hints=(body_part,))
    images = render_key_images(volume.array, label_map, geometry, center_index=center, window=window, colors=colors)
    return {plane: "data:image/png;base64," + base64.b64encode(png).decode() for plane, png in images.items()}


PDF_LANGUAGES = ("zh-hans", "en")


def pdf_language(language: str | None) -> str:
    """Return the PDF language for a request language: ``"en"`` for any English, else ``"zh-hans"``."""
    return "en" if (language or "").lower().startswith("en") else "zh-hans"


def _suggestion_rule(content: dict) -> str:
    """The Lung-RADS suggestion's rule in the active language (the snapshot keeps its code)."""
    from ..selectors import lung_rads_rule_text

    suggestion = content.get("lung_rads_suggestion") or {}
    return lung_rads_rule_text(suggestion.get("rule_code", "")) or suggestion.get("rule", "")


def report_study_label(content: dict) -> str:
    """The study as the report names it: its description, else the series' modality and body part."""
    study = content.get("study") or {}
    series = content.get("series") or {}
    if study.get("description"):
        return study["description"]
    modalities = study.get("modalities") or ([series["modality"]] if series.get("modality") else [])
    body_parts = study.get("body_parts") or ([series["body_part"]] if series.get("body_part") else [])
    return " · ".join([*modalities, *body_parts]) or series.get("description") or "—"


def _page_footer_parts() -> tuple[str, str, str]:
    """The page footer's text around the page number and count, in the active language."""
    text = gettext("Page %(page)s of %(pages)s")
    before, _sep, rest = text.partition("%(page)s")
    between, _sep2, after = rest.partition("%(pages)s")
    return before, between, after


def report_render_pdf(report: Report, language: str = "zh-hans") -> bytes:
    """Render a report to PDF in one language (weasyprint, Noto CJK for Chinese). Drafts carry a DRAFT mark.

    Every heading and label is in ``language`` only (``"zh-hans"`` or ``"en"``); names the report
    stores (hospital, patient, the doctor's own text) are shown as written. The renderer fetches
    nothing but the portal's static files and the key images rendered here
    (:func:`report_url_fetcher`): a URL that reached the HTML is refused, never requested.
    """
    from weasyprint import HTML

    with translation.override(pdf_language(language)):
        content = report_content(report)
        images = report_key_images(report)
        finding_images = report_finding_key_images(content.get("accepted_findings") or [])
        growth_charts = report_growth_charts(content)
        before, between, after = _page_footer_parts()
        series = content.get("series") or {}
        html = render_to_string(
            "diagnosis/report_pdf.html",
            {"content": content, "images": images, "draft": report.status == Report.Status.DRAFT,
             "finding_images": finding_images, "growth_charts": growth_charts, "generated_at": timezone.localtime(),
             "study_label": report_study_label(content),
             "suggestion_rule": _suggestion_rule(content),
             "intensity_unit": "HU" if (series.get("modality") or "").upper() == "CT" else "",
             "page_label_before": before, "page_label_between": between, "page_label_after": after},
        )
    data_uris = [*images.values(), *finding_images.values()]
    return HTML(string=html, url_fetcher=report_url_fetcher(data_uris=data_uris)).write_pdf()


def report_url_fetcher(*, data_uris=()):
    """Build the PDF renderer's fetcher: files under the static roots (``STATICFILES_DIRS`` and
    ``STATIC_ROOT``) and the given ``data:`` URIs only (:class:`diagnosis.reporting.fetcher.StaticOnlyURLFetcher`)."""
    from django.conf import settings

    from ..reporting.fetcher import StaticOnlyURLFetcher

    roots = [Path(p) for p in getattr(settings, "STATICFILES_DIRS", [])]
    if getattr(settings, "STATIC_ROOT", None):
        roots.append(Path(settings.STATIC_ROOT))
    return StaticOnlyURLFetcher(static_roots=roots, data_uris=data_uris)


def report_pdf_bytes(*, user: User | None, report: Report, language: str | None = None) -> bytes:
    """Return the PDF of a report in the reader's ``language`` (the active language when None).

    A final report gives its stored PDF: the Chinese one signed, or the English one, rendered once
    from the frozen snapshot on first request and stored beside it. A draft is rendered afresh.
    """
    language = pdf_language(language or translation.get_language())
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="report", target_id=report.pk,
                 hospital=report.study.hospital, detail={"language": language})
    if report.status != Report.Status.FINAL or not report.pdf_file:
        return report_render_pdf(report, language)
    if language == "zh-hans":
        with report.pdf_file.open("rb") as fh:
            return fh.read()
    if not report.pdf_file_en:
        pdf = report_render_pdf(report, language)
        name = default_storage.save(f"studies/{report.study_id}/reports/{uuid.uuid4().hex}-en.pdf",
                                    ContentFile(pdf, name="report-en.pdf"))
        with transaction.atomic():
            stored = Report.objects.select_for_update().get(pk=report.pk)
            if stored.pdf_file_en:  # another request stored it meanwhile: keep that one
                default_storage.delete(name)
            else:
                stored.pdf_file_en = name
                stored.save(update_fields=["pdf_file_en"])
        report.pdf_file_en = stored.pdf_file_en
    with report.pdf_file_en.open("rb") as fh:
        return fh.read()


def report_finalize(*, user: User, report: Report) -> Report:
    """Sign a draft: freeze its content, render and store the PDF, make it final, and queue its
    results (SEG, SR, PDF) for the hospital's PACS (:func:`diagnosis.services.pacs.report_results_queue`).

    Raises
    ------
    ServiceError
        (409) when the report is already final; (400) when it has no impression.
    """
    with transaction.atomic():
        report = Report.objects.select_for_update().select_related("study", "study__hospital").get(pk=report.pk)
        if report.status != Report.Status.DRAFT:
            raise ServiceError(_("This report is already final."), code="report_final", status_code=409)
        if not report.impression.strip():
            raise ServiceError(_("Write an impression before signing the report."), code="impression_required")
        report.signed_by = user
        report.signed_at = timezone.now()
        report.status = Report.Status.FINAL
        report.snapshot = {}
        report.snapshot = report_content(report)
        pdf = report_render_pdf(report, "zh-hans")
        key = f"studies/{report.study_id}/reports/{uuid.uuid4().hex}.pdf"
        name = default_storage.save(key, ContentFile(pdf, name="report.pdf"))
        try:
            report.pdf_file = name
            report.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
            report.save()
            audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="report", target_id=report.pk,
                         detail={"finalized": True})
            # The SEG, SR and PDF go to the hospital's PACS once this commits (diagnosis.services.pacs).
            report_results_queue(report=report)
        except BaseException:
            default_storage.delete(name)
            raise
    return report


@transaction.atomic
def report_amend(*, user: User, report: Report) -> Report:
    """Start an amendment of a final report: a new draft version that supersedes it.

    Raises
    ------
    ServiceError
        (409) when the report is a draft or was already amended.
    """
    report = Report.objects.select_for_update().get(pk=report.pk)
    if report.status != Report.Status.FINAL:
        raise ServiceError(_("Only a final report can be amended."), code="report_not_final", status_code=409)
    if Report.objects.filter(supersedes=report).exists():
        raise ServiceError(_("This report has already been amended."), code="report_amended", status_code=409)
    version = Report.objects.filter(study=report.study).order_by("-version").values_list("version", flat=True).first() + 1
    amendment = Report(
        study=report.study, segmentation=report.segmentation, version=version, supersedes=report,
        findings=report.findings, impression=report.impression, created_by=user,
    )
    amendment.full_clean()
    amendment.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="report", target_id=amendment.pk,
                 detail={"amends": report.pk})
    return amendment
