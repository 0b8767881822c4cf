"""Reads of measurements and reports, scoped through the studies the user may see."""

from __future__ import annotations

import math

import numpy as np
from django.db.models import F, QuerySet
from django.http import Http404

from annotation.selectors import study_visible_queryset
from portal.models import Role, User

from .longitudinal.growth import growth
from .longitudinal.matching import MATCH_RULE
from .longitudinal.registration import transform_points
from .models import (
    Finding,
    FindingMatch,
    Measurement,
    PostProcessingRun,
    PostProcessingScript,
    PriorRetrieve,
    RecistLesion,
    RecistSelection,
    Report,
    ResultSend,
    StudyRegistration,
)
from .selectors_finding_chain import finding_chain, registration_for, registration_pairings
from .selectors_lung_rads import _lung_rads_rule_texts, _lung_rads_suggestion


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


def result_send_list(*, report: Report) -> list[ResultSend]:
    """The PACS sends of a report (visible to who may see the report), oldest first."""
    return list(ResultSend.objects.filter(report=report).order_by("pk"))


def patient_get_for_clinician(*, user: User, patient_id: int):
    """Return a patient of the clinician's hospital (the patient page's and the PACS priors' check).

    Raises
    ------
    PermissionDenied
        ``user`` is not a clinician.
    Http404
        No patient ``patient_id`` that ``user`` may see (the same answer as for one that does not exist).
    """
    from django.core.exceptions import PermissionDenied

    from annotation.models import Patient
    from portal.permissions import is_clinician
    from portal.selectors import tenancy_scope

    if not is_clinician(user):
        raise PermissionDenied
    try:
        return tenancy_scope(Patient.objects.select_related("hospital"), user).get(pk=patient_id)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None


def prior_retrieve_list(*, patient, limit: int = 20) -> list[PriorRetrieve]:
    """The patient's latest retrieves of priors from the PACS, newest first."""
    return list(PriorRetrieve.objects.filter(patient=patient).select_related("requested_by")[:limit])


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


def finding_kind_terms(*, user: User, study) -> list[dict]:
    """Return the kinds of a study's findings (rejected ones left out) as terms to link to the knowledge graph.

    Returns
    -------
    list of dict
        One per kind, in the order of :class:`~.models.Finding.Kind`: ``kind``, ``label`` (in the
        request's language), ``term_zh`` (the Simplified Chinese name, which is what the graph's
        entities are named in) and ``count``.
    """
    from django.db.models import Count
    from django.utils import translation

    counts = dict(
        finding_visible_queryset(user).filter(study=study).exclude(status=Finding.Status.REJECTED)
        .values_list("kind").annotate(n=Count("id")).order_by()
    )
    terms = []
    for kind in Finding.Kind:
        if counts.get(kind.value):
            with translation.override("zh-hans"):
                term_zh = str(kind.label)
            terms.append({"kind": kind.value, "label": str(kind.label), "term_zh": term_zh,
                          "count": counts[kind.value]})
    return terms


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


def lung_rads_suggestion(*, user: User, study, prior_study=None) -> dict:
    """Suggest a Lung-RADS v2022 category from a study's accepted (or edited) lung nodules.

    With a prior (``prior_study``, the same patient's earlier study; without it, the latest prior
    this study was compared with, if any) each nodule is new, growing or stable
    (:func:`diagnosis.measurements.lung_rads.lung_rads_suggest`, ACR Lung-RADS v2022: growing is a
    mean diameter increase > 1.5 mm), and the months between the study dates decide whether a stable
    nodule is category 2. Which prior nodule a nodule is comes from the stored comparison
    (:class:`diagnosis.models.StudyRegistration`: its ``matched`` / ``new`` FindingMatch rows, so the
    doctor's re-link or unlink changes the course; ``"matching": "registered"``), or without one from
    centroid distance to the prior's accepted nodules (``"matching": "distance"``). Each nodule also
    reports ``matched_prior_finding_id``, and, when both volumes and the dates are known,
    ``vdt_days`` (volume doubling time, Schwartz 1961), ``growth_category`` and ``volume_change_pct``
    (:mod:`diagnosis.longitudinal.growth`), beside its category, which they do not change. Nothing is
    stored: the doctor confirms a category with :func:`diagnosis.services.report_lung_rads_confirm`.

    Raises
    ------
    portal.api_errors.ServiceError
        ``prior_mismatch`` when the prior study is another patient's, or not earlier.
    """
    return _lung_rads_suggestion(finding_visible_queryset(user), study, prior_study)


def report_lung_rads_suggestion(*, report: Report) -> dict:
    """Suggest the Lung-RADS v2022 category of a report's study from its accepted (or edited) nodules.

    The report's visibility was checked when it was read, and every finding of its study belongs to
    it, so no further scoping applies. Same result as :func:`lung_rads_suggestion` without a prior
    (so against the latest prior the study was compared with, if any).
    """
    return _lung_rads_suggestion(Finding.objects.all(), report.study, None)


def lung_rads_rule_text(rule_code: str) -> str:
    """Return the wording of a Lung-RADS v2022 rule (``"no_nodules"``, …) in the active language, or
    ``""`` for an unknown code (a report signed with a rule this version no longer has)."""
    text = _lung_rads_rule_texts().get(rule_code)
    return str(text) if text is not None else ""


# --- Post-processing scripts and runs -----------------------------------------------------------


def postprocessing_script_list(*, user: User) -> QuerySet[PostProcessingScript]:
    """Return the scripts of the user's hospital (hospital staff; platform admins see every hospital's)."""
    if not user.is_authenticated or user.role == Role.PATIENT:
        return PostProcessingScript.objects.none()
    qs = PostProcessingScript.objects.select_related("uploaded_by")
    if not user.is_platform_admin:
        qs = qs.filter(hospital_id=user.hospital_id) if user.hospital_id else qs.none()
    return qs.order_by("name", "-created_at")


def postprocessing_script_get(*, user: User, script_id: int) -> PostProcessingScript:
    """Return one script the user may see, or raise Http404 (another hospital's script is not found)."""
    try:
        return postprocessing_script_list(user=user).get(pk=script_id)
    except PostProcessingScript.DoesNotExist:
        raise Http404("No such script.") from None


def postprocessing_run_visible_queryset(user: User) -> QuerySet[PostProcessingRun]:
    """Runs of the studies the user may see, staff only (a script's figures are the doctors' working material)."""
    if not user.is_authenticated or user.role == Role.PATIENT:
        return PostProcessingRun.objects.none()
    return PostProcessingRun.objects.filter(study__in=study_visible_queryset(user))


def postprocessing_run_list_for_study(*, user: User, study) -> list[PostProcessingRun]:
    """Return a study's runs, newest first, with their scripts."""
    return list(postprocessing_run_visible_queryset(user).filter(study=study).select_related("script")
                .order_by("-created_at", "-pk"))


def postprocessing_run_get(*, user: User, run_id: int) -> PostProcessingRun:
    """Return one visible run or raise Http404."""
    try:
        return postprocessing_run_visible_queryset(user).select_related("script", "study").get(pk=run_id)
    except PostProcessingRun.DoesNotExist:
        raise Http404("No such run.") from None

def study_registration_get(*, user: User, study_id: int, prior_id: int):
    """Return the stored comparison of a visible study with a prior, or raise Http404."""
    try:
        return (StudyRegistration.objects.filter(study__in=study_visible_queryset(user))
                .select_related("study", "prior", "study__hospital").get(study_id=study_id, prior_id=prior_id))
    except StudyRegistration.DoesNotExist:
        raise Http404("No such comparison.") from None


def registered_prior_volume_nifti(*, registration) -> bytes:
    """Return the prior series of a stored comparison resampled onto the current series' grid, as
    gzip-compressed NIfTI-1 bytes (float32, the current series' shape and geometry).

    The caller has checked that the user may see the study
    (:func:`study_registration_get`). See
    :func:`diagnosis.longitudinal.registration.resample_prior_onto` for the direction of the transform.

    Raises
    ------
    diagnosis.longitudinal.registration.RegistrationError
        The stored matrix is not an invertible affine transform.
    """
    import tempfile
    from pathlib import Path

    from annotation.imaging.formats import write_nifti
    from annotation.storage import series_volume_load

    from .longitudinal.registration import resample_prior_onto

    prior = series_volume_load(registration.prior_series)
    current = series_volume_load(registration.series)
    resampled = resample_prior_onto(prior, current, registration.transform["matrix_lps_mm"])
    with tempfile.TemporaryDirectory(prefix="prior-") as folder:
        path = Path(folder) / "prior.nii.gz"
        write_nifti(resampled, path)
        return path.read_bytes()


def finding_match_get(*, user: User, match_id: int):
    """Return one finding match of a visible study's comparison, or raise Http404."""
    try:
        return (FindingMatch.objects.filter(registration__study__in=study_visible_queryset(user))
                .select_related("registration", "registration__study").get(pk=match_id))
    except FindingMatch.DoesNotExist:
        raise Http404("No such finding match.") from None


# --- a study compared with its prior ----------------------------------------------------------

def _registered(row: StudyRegistration, point) -> list[float]:
    matrix = np.asarray(row.transform["matrix_lps_mm"], float)
    return [round(float(v), 2) for v in transform_points(matrix, np.asarray(point, float))]


def _finite(value, digits: int):
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _growth_figures(prior_ml, current_ml, interval_days) -> dict:
    if prior_ml is None or current_ml is None or prior_ml <= 0 or current_ml <= 0:
        return {"volume_change_ml": None, "volume_change_pct": None, "vdt_days": None, "growth_category": None}
    body = growth(prior_ml, current_ml, interval_days if interval_days and interval_days > 0 else None).to_dict()
    return {k: body[k] for k in ("volume_change_ml", "volume_change_pct", "vdt_days", "growth_category")}


def _change(before, after, digits=2):
    return None if before is None or after is None else round(float(after) - float(before), digits)


def study_comparison_payload(row: StudyRegistration) -> dict:
    """Return the JSON form of a comparison (the ``compare`` command's and the API's).

    ``matches`` lists matched findings (``kind`` ``"finding"``) and organ segments paired by name
    (``"segment"``), each with volumes, volume change, VDT (:mod:`diagnosis.longitudinal.growth`),
    long and short axes, mean HU and the centroid at both time points (LPS mm; the prior's also mapped
    into the study's frame, ``prior_centroid_registered_lps_mm``). ``new`` and ``resolved`` list the
    unpaired findings.
    """
    matches, new, resolved = [], [], []
    interval = row.interval_days
    for match in row.matches.select_related("prior_finding", "finding").order_by("pk"):
        before, after = match.prior_finding, match.finding
        common = {"match_id": match.pk, "origin": match.origin, "linked_by": match.linked_by_id,
                  "linked_at": match.linked_at.isoformat() if match.linked_at else None}
        if match.status == FindingMatch.Status.MATCHED:
            matches.append({
                "kind": "finding", **common,
                "prior_finding_id": before.pk, "finding_id": after.pk, "finding_kind": after.kind,
                "distance_mm": _finite(match.distance_mm, 2), "overlap": _finite(match.overlap, 4),
                "prior_volume_ml": _finite(before.volume_ml, 4), "volume_ml": _finite(after.volume_ml, 4),
                **_growth_figures(before.volume_ml, after.volume_ml, interval),
                "prior_long_axis_mm": _finite(before.long_axis_mm, 2), "long_axis_mm": _finite(after.long_axis_mm, 2),
                "long_axis_change_mm": _change(before.long_axis_mm, after.long_axis_mm),
                "prior_short_axis_mm": _finite(before.short_axis_mm, 2),
                "short_axis_mm": _finite(after.short_axis_mm, 2),
                "short_axis_change_mm": _change(before.short_axis_mm, after.short_axis_mm),
                "prior_mean_hu": _finite(before.mean_hu, 1), "mean_hu": _finite(after.mean_hu, 1),
                "prior_centroid_lps_mm": before.centroid_lps_mm, "centroid_lps_mm": after.centroid_lps_mm,
                "prior_centroid_registered_lps_mm": _registered(row, before.centroid_lps_mm),
            })
        elif match.status == FindingMatch.Status.NEW:
            new.append({**common, "finding_id": after.pk, "finding_kind": after.kind,
                        "volume_ml": _finite(after.volume_ml, 4), "long_axis_mm": _finite(after.long_axis_mm, 2),
                        "centroid_lps_mm": after.centroid_lps_mm})
        else:
            resolved.append({**common, "prior_finding_id": before.pk, "finding_kind": before.kind,
                             "prior_volume_ml": _finite(before.volume_ml, 4),
                             "prior_long_axis_mm": _finite(before.long_axis_mm, 2),
                             "prior_centroid_lps_mm": before.centroid_lps_mm,
                             "prior_centroid_registered_lps_mm": _registered(row, before.centroid_lps_mm)})
    for segment in row.segment_matches:
        matches.append({
            "kind": "segment", "match_id": None, "origin": "auto", "name": segment["name"],
            "prior_measurement_id": segment["prior_measurement_id"], "measurement_id": segment["measurement_id"],
            "prior_volume_ml": _finite(segment["prior_volume_ml"], 4), "volume_ml": _finite(segment["volume_ml"], 4),
            **_growth_figures(segment["prior_volume_ml"], segment["volume_ml"], interval),
            "prior_long_axis_mm": _finite(segment["prior_long_axis_mm"], 2),
            "long_axis_mm": _finite(segment["long_axis_mm"], 2),
            "long_axis_change_mm": _change(segment["prior_long_axis_mm"], segment["long_axis_mm"]),
            "prior_short_axis_mm": _finite(segment["prior_short_axis_mm"], 2),
            "short_axis_mm": _finite(segment["short_axis_mm"], 2),
            "short_axis_change_mm": _change(segment["prior_short_axis_mm"], segment["short_axis_mm"]),
            "prior_mean_hu": _finite(segment["prior_mean_hu"], 1), "mean_hu": _finite(segment["mean_hu"], 1),
            "prior_centroid_lps_mm": segment["prior_centroid_lps_mm"], "centroid_lps_mm": segment["centroid_lps_mm"],
            "prior_centroid_registered_lps_mm": segment["prior_centroid_registered_lps_mm"],
        })
    return {
        "registration_id": row.pk,
        "study_id": row.study_id,
        "prior_study_id": row.prior_id,
        "series_id": row.series_id,
        "prior_series_id": row.prior_series_id,
        "study_date": row.study.study_date.isoformat() if row.study.study_date else None,
        "prior_study_date": row.prior.study_date.isoformat() if row.prior.study_date else None,
        "interval_days": row.interval_days,
        "registration": {"method": row.method, "transform": row.transform, "quality": row.quality},
        "matches": matches,
        "new": new,
        "resolved": resolved,
        "rule": MATCH_RULE,
        "updated_at": row.updated_at.isoformat(),
    }


def study_prior_comparison(*, study) -> dict | None:
    """Return the comparison of ``study`` with its latest compared prior for the report, or None.

    The "compared with prior of DATE" section: :func:`study_comparison_payload` of the registration
    whose prior is the most recent (by study date, then by id) among those stored for ``study``.
    The caller has already checked that the user may see ``study``.
    """
    row = (StudyRegistration.objects.filter(study=study).select_related("study", "prior")
           .order_by(F("prior__study_date").desc(nulls_last=True), "-prior_id").first())
    return None if row is None else study_comparison_payload(row)


def study_prior_candidates(*, study) -> list:
    """Return the earlier studies of the same patient that ``study`` can be compared with, newest first.

    A candidate has a series of a modality the study has and, where both name a body part, the same
    body part (DICOM BodyPartExamined (0018,0015)); it is dated before the study (studies without a
    date are not candidates). The caller has already checked that the user may see ``study``.
    """
    from annotation.models import Study

    series = list(study.series.all())
    modalities = {s.modality.upper() for s in series if s.modality}
    body_parts = {s.body_part.upper() for s in series if s.body_part}
    if not study.study_date or not modalities:
        return []
    candidates = []
    for prior in (Study.objects.filter(patient_id=study.patient_id, hospital_id=study.hospital_id,
                                       study_date__lt=study.study_date)
                  .prefetch_related("series").order_by("-study_date", "-pk")):
        prior_series = [s for s in prior.series.all() if (s.modality or "").upper() in modalities]
        prior_parts = {s.body_part.upper() for s in prior_series if s.body_part}
        if prior_series and (not body_parts or not prior_parts or body_parts & prior_parts):
            candidates.append(prior)
    return candidates


# --- RECIST 1.1 over the patient's studies --------------------------------------------------------

def recist_selection_for(*, study) -> RecistSelection | None:
    """Return the RECIST 1.1 selection that applies to ``study``: its own, else that of the latest earlier
    study of the same patient and hospital (by study date) that has one, or None."""
    own = RecistSelection.objects.filter(study=study).first()
    if own is not None or not study.study_date:
        return own
    return (RecistSelection.objects.filter(study__patient_id=study.patient_id, study__hospital_id=study.hospital_id,
                                           study__study_date__lt=study.study_date)
            .select_related("study").order_by("-study__study_date", "-study_id").first())


def _pct(value):
    return "—" if value is None else f"{abs(value):.0f}"


def recist_rule_text(point: dict) -> str:
    """Return the RECIST 1.1 rule that gave a time point its response, with its figures, in the active
    language (Eisenhauer et al., Eur J Cancer 45:228–247, 2009: §4.3.1 target response, §4.3.2 non-target
    response, §4.3.3 and Table 1 overall response). ``point`` is a row of :func:`recist_assessment`."""
    from django.utils.translation import gettext

    target = point.get("target_response")
    figures = {"sum": "—" if point.get("sum_mm") is None else f"{point['sum_mm']:.1f}",
               "nadir": "—" if point.get("nadir_mm") is None else f"{point['nadir_mm']:.1f}",
               "pct_base": _pct(point.get("change_from_baseline_pct")),
               "pct_nadir": _pct(point.get("change_from_nadir_pct")),
               "mm_nadir": "—" if point.get("change_from_nadir_mm") is None else f"{point['change_from_nadir_mm']:.1f}",
               "overall": point.get("overall_response") or "", "non_target": point.get("non_target_response") or ""}
    base_up = (point.get("change_from_baseline_pct") or 0) > 0
    if point.get("table") == 2:
        if not point.get("overall_response"):
            return gettext("Baseline: non-target disease only (no target lesion); RECIST 1.1 Table 2 applies.")
        return recist_overall_rule_text(point)
    if target is None:
        return gettext("Baseline: the sum of the diameters of the target lesions is %(sum)s mm.") % figures
    texts = {
        "CR": gettext("Every target lesion gone and every lymph node < 10 mm short axis: CR (RECIST 1.1 §4.3.1)."),
        "PR": gettext("Sum %(sum)s mm, %(pct_base)s %% below baseline: PR (≥ 30 %% decrease, RECIST 1.1 §4.3.1)."),
        "PD": gettext("Sum %(sum)s mm, %(pct_nadir)s %% and %(mm_nadir)s mm above the nadir of %(nadir)s mm: PD "
                      "(≥ 20 %% and ≥ 5 mm increase, RECIST 1.1 §4.3.1)."),
        "SD": (gettext("Sum %(sum)s mm, %(pct_base)s %% above baseline and %(mm_nadir)s mm from the nadir of "
                       "%(nadir)s mm: SD (neither ≥ 30 %% decrease nor ≥ 20 %% and ≥ 5 mm increase, RECIST 1.1 "
                       "§4.3.1).") if base_up else
               gettext("Sum %(sum)s mm, %(pct_base)s %% below baseline and %(mm_nadir)s mm from the nadir of "
                       "%(nadir)s mm: SD (neither ≥ 30 %% decrease nor ≥ 20 %% and ≥ 5 mm increase, RECIST 1.1 "
                       "§4.3.1).")),
        "NE": gettext("A target lesion was not measured: NE (RECIST 1.1 §4.3.1)."),
    }
    text = texts[target] % figures
    overall = point.get("overall_response")
    if point.get("new_lesions"):
        text += " " + gettext("Overall PD: a new lesion (RECIST 1.1 §4.3.3, Table 1).")
    elif overall and overall != target:
        text += " " + gettext("Overall %(overall)s: non-target lesions %(non_target)s (RECIST 1.1 Table 1).") % figures
    return text


def recist_overall_rule_text(point: dict) -> str:
    """Return the row of RECIST 1.1 Table 1 (targets) or Table 2 (non-target disease only) that gave a time
    point its overall response, with its inputs, in the active language (Eisenhauer et al., Eur J Cancer
    45:228–247, 2009, §4.3.3–4.3.4). ``point`` is a row of :func:`recist_assessment`; "" at the baseline."""
    from django.utils.translation import gettext

    if not point.get("overall_response") or not point.get("table_row"):
        return ""  # the baseline, or a report signed before the table rows were kept
    source = (gettext("the doctor's judgement") if point.get("non_target_source") == "doctor"
              else gettext("derived from the lesions followed"))
    figures = {"target": point.get("target_response") or "", "non_target": point.get("non_target_response") or "",
               "source": source, "new": gettext("yes") if point.get("new_lesions") else gettext("no"),
               "overall": point["overall_response"], "row": point.get("table_row") or ""}
    if point.get("table") == 2:
        return gettext("Non-target %(non_target)s (%(source)s), new lesions: %(new)s → overall %(overall)s "
                       "(RECIST 1.1 Table 2, row %(row)s: non-target disease only).") % figures
    return gettext("Target %(target)s, non-target %(non_target)s (%(source)s), new lesions: %(new)s → overall "
                   "%(overall)s (RECIST 1.1 Table 1, row %(row)s).") % figures


_GONE = "gone"  # a lesion resolved at a time point (0 mm from then on)


def _recist_chain(selection: RecistSelection, until) -> list[tuple]:
    """The later studies followed from the baseline: (study, registration), each registered to the
    latest earlier time point of the chain (the baseline or a follow-up already in it)."""
    from annotation.models import Study

    baseline = selection.study
    if not baseline.study_date:
        return []
    later = Study.objects.filter(patient_id=baseline.patient_id, hospital_id=baseline.hospital_id,
                                 study_date__gt=baseline.study_date)
    if until is not None and until.study_date:
        later = later.filter(study_date__lte=until.study_date)
    chain, dates = [], {baseline.pk: baseline.study_date}
    for study in later.order_by("study_date", "pk"):
        registration = registration_for(study, among=dates)
        if registration is not None:
            chain.append((study, registration))
            dates[study.pk] = study.study_date
    return chain


def recist_assessment(*, study, until=None) -> dict | None:
    """Return the RECIST 1.1 assessment that applies to ``study``, or None when no selection applies.

    The baseline is the study of :func:`recist_selection_for`; each later study of the patient (up to
    ``until``, a study, when given) that was compared with an earlier time point follows every lesion
    through the stored :class:`~diagnosis.models.FindingMatch` rows: a matched finding gives its diameter
    (long axis, mm; a lymph node's short axis), a resolved one 0 mm, a lesion not followed none (NE). New
    findings of a comparison (not rejected) are new lesions (PD). The non-target response is the doctor's
    judgement recorded for that follow-up (:func:`diagnosis.services.recist_non_target_set`; PD is
    "unequivocal progression", never derived); without one it is CR when every non-target lesion resolved
    (or there is none), NE when one was not followed, else non-CR/non-PD. The overall response is
    RECIST 1.1 Table 1's, or Table 2's for non-target disease only (no target chosen). Lesions are followed
    through the pairings of :mod:`diagnosis.selectors_finding_chain`, which Lung-RADS reads too. The
    figures and responses are :func:`diagnosis.longitudinal.recist.evaluate`'s (Eisenhauer et al., Eur J
    Cancer 45:228–247, 2009).

    Returns
    -------
    dict
        ``baseline_study_id``, ``chosen_by``, ``chosen_at``, ``lesions`` (finding id, kind, role, organ,
        lymph_node), ``time_points`` (study id and date, per-target ``diameters_mm``, ``sum_mm``,
        ``nadir_mm``, changes in % and mm, target/non-target/overall responses, ``non_target_source``
        (``doctor`` or ``derived``) and ``non_target_derived``, ``new_lesions``, ``table`` and ``table_row``
        (RECIST 1.1 Table 1 or 2), the ``rule`` and ``overall_rule`` applied, ``findings`` (per baseline
        lesion, the finding it is at that time point, or None)), ``error`` (a RECIST rule the stored
        selection now breaks, else None). Each lesion also has ``current_finding_id`` and ``history``
        (:func:`diagnosis.selectors_finding_chain.finding_chain` of it back to the baseline).
    """
    from .longitudinal.recist import (
        CR,
        NE,
        NON_CR_NON_PD,
        RecistError,
        TargetLesion,
        TimePoint,
        evaluate,
    )

    selection = recist_selection_for(study=study)
    if selection is None:
        return None
    baseline = selection.study
    lesions = list(selection.lesions.select_related("finding", "finding__series").order_by("role", "pk"))
    targets = [le for le in lesions if le.role == RecistLesion.Role.TARGET]
    others = [le for le in lesions if le.role == RecistLesion.Role.NON_TARGET]
    where = {baseline.pk: {le.finding_id: le.finding_id for le in lesions}}  # baseline finding → finding now
    points, rows = [], []
    judged = selection.non_target_responses or {}
    for later, registration in _recist_chain(selection, until):
        paired = registration_pairings(registration)  # the pairings Lung-RADS reads too
        found = paired.findings
        now = {}
        for origin, at_prior in where[registration.prior_id].items():
            if at_prior in (_GONE, None):
                now[origin] = at_prior  # gone stays gone, lost stays lost
                continue
            state = paired.follow(at_prior)
            now[origin] = _GONE if state == "resolved" else state
        where[later.pk] = now

        def diameter(lesion):
            state = now[lesion.finding_id]
            if state is None or state == _GONE:
                return None if state is None else 0.0
            finding = found[state]
            return finding.short_axis_mm if lesion.lymph_node else finding.long_axis_mm

        diameters = {str(t.finding_id): diameter(t) for t in targets}
        states = [now[o.finding_id] for o in others]
        derived = (NE if any(s is None for s in states) else
                   CR if all(s == _GONE for s in states) else NON_CR_NON_PD)
        doctor = (judged.get(str(later.pk)) or {}).get("response") if others else None
        new = any(found[k].status != Finding.Status.REJECTED for k in paired.new)
        points.append(TimePoint(label=str(later.pk), diameters_mm=diameters, non_target=doctor or derived,
                                new_lesions=new))
        rows.append({"study_id": later.pk, "study_date": later.study_date.isoformat() if later.study_date else None,
                     "diameters_mm": {k: _finite(v, 1) for k, v in diameters.items()},
                     "non_target_source": "doctor" if doctor else "derived",
                     "non_target_derived": derived,
                     "findings": {str(origin): (state if isinstance(state, int) else None)
                                  for origin, state in now.items()}})
    body = {
        "baseline_study_id": baseline.pk,
        "baseline_study_date": baseline.study_date.isoformat() if baseline.study_date else None,
        "chosen_by": str(selection.chosen_by) if selection.chosen_by else None,
        "chosen_at": selection.chosen_at.isoformat(),
        "lesions": [{"finding_id": le.finding_id, "finding_kind": le.finding.kind, "role": le.role,
                     "organ": le.organ, "lymph_node": le.lymph_node,
                     "baseline_mm": _finite(le.finding.short_axis_mm if le.lymph_node else le.finding.long_axis_mm, 1)}
                    for le in lesions],
        "time_points": [], "error": None,
        "source": "RECIST 1.1: Eisenhauer et al., Eur J Cancer 45:228–247, 2009",
    }
    thickness = max([float((t.finding.series.spacing_mm or [5.0])[0]) for t in targets] or [5.0])
    try:
        assessed = evaluate([TargetLesion(key=str(t.finding_id), organ=t.organ,
                                          long_axis_mm=t.finding.long_axis_mm or 0.0,
                                          short_axis_mm=t.finding.short_axis_mm or 0.0, lymph_node=t.lymph_node)
                             for t in targets], points, slice_thickness_mm=thickness,
                            non_target_only=not targets and bool(others))
    except RecistError as exc:
        body["error"] = exc.code
        return body
    baseline_row = {"study_id": baseline.pk, "study_date": body["baseline_study_date"],
                    "diameters_mm": {str(t.finding_id): next(le["baseline_mm"] for le in body["lesions"]
                                                             if le["finding_id"] == t.finding_id) for t in targets},
                    "non_target_source": None, "non_target_derived": None,
                    "findings": {str(le.finding_id): le.finding_id for le in lesions}}
    for row, figures in zip([baseline_row, *rows], assessed):
        point = {**row, **{k: v for k, v in figures.to_dict().items() if k not in ("label", "rule")}}
        point["rule"] = recist_rule_text(point)
        point["overall_rule"] = recist_overall_rule_text(point)
        body["time_points"].append(point)
    # Each lesion's history: the finding it is at the last time point, followed back through the same
    # comparisons by the selector Lung-RADS shares (so both name the same prior finding).
    last = body["time_points"][-1]["findings"]
    for le in body["lesions"]:
        current = last.get(str(le["finding_id"]))
        le["current_finding_id"] = current
        le["history"] = ([] if current is None else
                         finding_chain(finding=Finding.objects.select_related("study").get(pk=current), since=baseline))
    return body
    baseline_row = {"study_id": baseline.pk, "study_date": body["baseline_study_date"],
                    "diameters_mm": {str(t.finding_id): next(le["baseline_mm"] for le in body["lesions"]
                                                             if le["finding_id"] == t.finding_id) for t in targets}}
    for row, figures in zip([baseline_row, *rows], assessed):
        point = {**row, **{k: v for k, v in figures.to_dict().items() if k not in ("label", "rule")}}
        point["rule"] = recist_rule_text(point)
        body["time_points"].append(point)
    return body
