"""How diagnosis joins in annotation's operations, through ``annotation.hooks``.

Registered from ``DiagnosisConfig.ready``: annotation never imports diagnosis, so the arrow of
imports stays diagnosis → annotation.
"""

from __future__ import annotations


def measure_model_segmentation(*, segmentation, label_map, volume) -> None:
    """Measure the segments of a label map a one-click run has just stored (reusing the arrays in memory)."""
    from .services import segmentation_measure

    segmentation_measure(segmentation=segmentation, label_map=label_map, volume=volume)


def segmentation_measurement_rows(*, segmentation) -> list[dict]:
    """Return the JSON rows of a segmentation's measurements, measuring it first when it has none."""
    from portal.selectors import hospital_review_threshold

    from .selectors import measurement_list
    from .services import measurement_payload, segmentation_measure

    rows = list(measurement_list(segmentation=segmentation))
    if not rows:
        segmentation_measure(segmentation=segmentation)
        rows = list(measurement_list(segmentation=segmentation))
    threshold = hospital_review_threshold(segmentation.series.study.hospital)
    return [measurement_payload(row, segmentation.label_table, segmentation.label_confidence,
                                review_threshold=threshold) for row in rows]


def study_page_reports(*, user, study) -> dict:
    """Return the study page's ``reports``: the study's reports the user may see, newest version first."""
    from .selectors import report_list_for_study

    return {"reports": report_list_for_study(user=user, study=study)}


def study_page_findings(*, user, study) -> dict:
    """Return the study page's comparison of the detector's findings with the readers' nodules (staff only)."""
    from .selectors import finding_comparison

    comparison = finding_comparison(user=user, study=study)
    if not comparison["nodules"] and not comparison["detections"]:
        return {}
    return {"finding_comparison": comparison, "study_sections": ["diagnosis/_finding_comparison.html"]}


def study_page_terms(*, user, study) -> dict:
    """Return the study page's knowledge-graph terms: the findings' kinds and the latest report's impression.

    The page links them to the knowledge graph in the browser (``frontend/src/lib/kg-links.js`` calls
    the graph's API), so diagnosis never imports knowledge_graph.
    """
    from .selectors import finding_kind_terms, report_list_for_study

    kinds = finding_kind_terms(user=user, study=study)
    reports = list(report_list_for_study(user=user, study=study))
    impression = next((r.impression for r in reports if r.impression), "")
    if not kinds and not impression:
        return {}
    return {"kg_terms": {"kinds": kinds, "impression": impression},
            "study_sections": ["diagnosis/_kg_terms.html"]}


def study_page_findings_panel(*, user, study) -> dict:
    """Return the viewer's findings panel for hospital staff: its template (``viewer_panels``) and the
    ``findings_panel`` configuration its script reads (API URLs, the detector model, what the user may do).

    Patients get nothing: findings are the reading doctors' working material.
    """
    from django.urls import reverse

    from annotation.models import SegmentationModel
    from annotation.selectors import segmentation_model_list
    from portal.models import Role
    from portal.permissions import is_clinician

    if not user.is_authenticated or user.role == Role.PATIENT:
        return {}
    detector = (segmentation_model_list(user=user).filter(kind=SegmentationModel.Kind.DETECTION)
                .order_by("name", "-version").first())
    return {
        "viewer_panels": ["diagnosis/_findings_panel.html"],
        "findings_panel": {
            "findingsUrl": reverse("study-findings", args=[study.pk]),
            "comparisonUrl": reverse("study-finding-comparison", args=[study.pk]),
            "acceptUrlTemplate": reverse("finding-accept", args=[0]).replace("/0/", "/{id}/"),
            "rejectUrlTemplate": reverse("finding-reject", args=[0]).replace("/0/", "/{id}/"),
            "canDecide": is_clinician(user),
            "detector": None if detector is None else {
                "id": detector.pk, "name": detector.name, "version": detector.version,
                "modality": detector.modality,
            },
        },
    }


def study_page_postprocessing(*, user, study) -> dict:
    """Return the study page's post-processing block for hospital staff: the study's runs (figures, plots,
    errors) and, for doctors, the active scripts of the hospital to run."""
    from portal.permissions import is_clinician

    from .selectors import postprocessing_run_list_for_study, postprocessing_script_list
    from .services import postprocessing_run_payload

    if not user.is_authenticated or user.role == "patient":
        return {}
    runs = [postprocessing_run_payload(r) for r in postprocessing_run_list_for_study(user=user, study=study)]
    scripts = ([s for s in postprocessing_script_list(user=user) if s.is_active and s.hospital_id == study.hospital_id]
               if is_clinician(user) else [])
    if not runs and not scripts:
        return {}
    return {"postprocessing": {"runs": runs, "scripts": scripts},
            "study_sections": ["diagnosis/_postprocessing.html"]}


def study_page_prior_comparison(*, user, study) -> dict:
    """Return the study page's comparison with the prior for clinicians: the stored comparison of the
    latest compared prior, and the priors it can be compared with (same patient, modality, body part)."""
    from portal.permissions import is_clinician

    from .selectors import study_prior_candidates, study_prior_comparison

    if not is_clinician(user):
        return {}
    candidates = study_prior_candidates(study=study)
    comparison = study_prior_comparison(study=study)
    if not candidates and comparison is None:
        return {}
    return {"prior_comparison": {"comparison": comparison, "candidates": candidates},
            "study_sections": ["diagnosis/_prior_comparison.html"]}


def study_page_growth(*, user, study) -> dict:
    """Return the study page's figures over time for clinicians: each matched finding and segment at every
    compared study (:func:`diagnosis.selectors_growth.study_growth_series`), drawn as line charts."""
    from portal.permissions import is_clinician

    from .selectors_growth import growth_page_payload, study_growth_series

    if not is_clinician(user):
        return {}
    page = growth_page_payload(study_growth_series(study=study))
    if page is None:
        return {}
    return {"growth_page": page, "study_sections": ["diagnosis/_growth_charts.html"]}


def study_page_recist(*, user, study) -> dict:
    """Return the study page's RECIST 1.1 section for clinicians: the assessment that applies to the study
    and, when the study is (or may become) the baseline, its findings to choose target lesions from."""
    from portal.permissions import is_clinician

    from .longitudinal.recist import NON_TARGET_RESPONSES
    from .models import Finding, RecistLesion
    from .selectors import recist_assessment
    from .services.recist import default_organ

    if not is_clinician(user):
        return {}
    assessment = recist_assessment(study=study)
    findings = []
    if assessment is None or assessment["baseline_study_id"] == study.pk:
        chosen = {le.finding_id: le for le in RecistLesion.objects.filter(selection__study=study)}
        for f in Finding.objects.filter(study=study).exclude(status=Finding.Status.REJECTED).order_by("pk"):
            le = chosen.get(f.pk)
            findings.append({"id": f.pk, "kind": f.kind, "long_axis_mm": f.long_axis_mm,
                             "role": le.role if le else "", "organ": le.organ if le else default_organ(f),
                             "lymph_node": le.lymph_node if le else False})
    if assessment is None and not findings:
        return {}
    non_target = None  # the doctor's judgement of the non-target lesions at this follow-up
    if assessment is not None and assessment["baseline_study_id"] != study.pk and any(
            le["role"] == RecistLesion.Role.NON_TARGET for le in assessment["lesions"]):
        point = next((p for p in assessment["time_points"] if p["study_id"] == study.pk), None)
        if point is not None:
            non_target = {"response": point["non_target_response"], "source": point["non_target_source"],
                          "derived": point["non_target_derived"],
                          "choices": list(NON_TARGET_RESPONSES)}
    return {"recist": {"assessment": assessment, "findings": findings, "non_target": non_target},
            "study_sections": ["diagnosis/_recist.html"]}


def study_page_similar_cases(*, user, study) -> dict:
    """Return the study page's similar cases for clinicians: the 5 earlier cases of the hospital most like a
    study that has a finding and a signed report, with their impressions and recommendations as suggestions.

    Showing the panel is a read of other patients' reports: it is audit-logged
    (:func:`diagnosis.services.similar_cases_read`).
    """
    from portal.permissions import is_clinician

    from .selectors_similar import similar_cases_available
    from .services import similar_cases_read, similarity_weights_may_edit

    if not is_clinician(user) or not similar_cases_available(study=study):
        return {}
    result = similar_cases_read(user=user, study=study, k=5, channel="page")
    result["may_edit_weights"] = similarity_weights_may_edit(user, study.hospital)
    return {"similar_cases": result, "study_sections": ["diagnosis/_similar_cases.html"]}


def study_page_reference_ranges(*, user, study) -> dict:
    """Return the study page's reference ranges for hospital staff: each figure of the study beside its
    published range (for the patient's sex and age at the study date) and the hospital's cohort.

    ``reference_ranges`` feeds the section's table; ``reference_chart`` (JSON in the page) the box plots
    (``frontend/src/lib/reference-chart.js``) and the badges of the measurement table. Patients get
    nothing: the cohort summarises other patients' figures.
    """
    from portal.models import Role

    from .selectors_reference_ranges import study_reference_comparison

    if not user.is_authenticated or user.role == Role.PATIENT:
        return {}
    items = study_reference_comparison(user=user, study_id=study.pk)
    if not items:
        return {}
    chart = {
        "items": items,
        "flags": [{"segmentationId": i["segmentation_id"], "labels": i["labels"], "measure": i["measure"],
                   "name": i["name"], "direction": i["direction"], "source": i["reference"]["source"]}
                  for i in items if i["outside"]],
    }
    return {"reference_ranges": items, "reference_chart": chart,
            "study_sections": ["diagnosis/_reference_ranges.html"]}


def findings_from_model_detection(*, segmentation, label_map, volume) -> None:
    """Store a detector's objects as suggested findings (only for models of kind detection)."""
    from .services import findings_from_detection

    model = segmentation.model
    if model is None or model.kind != model.Kind.DETECTION:
        return
    findings_from_detection(segmentation=segmentation, label_map=label_map, volume=volume)


def worklist_report_status(queryset):
    """Annotate a ``QuerySet[Study]`` with ``report_status``: the newest report's status, or ``"none"``."""
    from django.db.models import OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce

    from .models import Report

    newest = Report.objects.filter(study=OuterRef("pk")).order_by("-created_at", "-pk").values("status")[:1]
    return queryset.annotate(report_status=Coalesce(Subquery(newest), Value("none")))


def dicomweb_result_instances(*, studies, build: bool) -> list:
    """Return the signed reports' SEG, SR and PDF of ``studies`` for DICOMweb (building them when asked)."""
    from .services.pacs import report_result_instances

    return report_result_instances(studies=studies, build=build)


def register() -> None:
    """Register diagnosis's functions on annotation's hooks (idempotent)."""
    from annotation import hooks

    hooks.after_model_segmentation.register("measuring", measure_model_segmentation)
    hooks.after_model_segmentation.register("findings", findings_from_model_detection)
    hooks.segmentation_measurements.register("diagnosis", segmentation_measurement_rows)
    hooks.dicomweb_result_instances.register("diagnosis", dicomweb_result_instances)
    hooks.study_page_context.register("diagnosis", study_page_reports)
    hooks.study_page_context.register("diagnosis-findings", study_page_findings)
    hooks.study_worklist_report_status.register("diagnosis", worklist_report_status)
    hooks.study_page_context.register("diagnosis-kg-terms", study_page_terms)
    hooks.study_page_context.register("diagnosis-findings-panel", study_page_findings_panel)
    hooks.study_page_context.register("diagnosis-postprocessing", study_page_postprocessing)
    hooks.study_page_context.register("diagnosis-prior-comparison", study_page_prior_comparison)
    hooks.study_page_context.register("diagnosis-growth", study_page_growth)
    hooks.study_page_context.register("diagnosis-recist", study_page_recist)
    hooks.study_page_context.register("diagnosis-similar-cases", study_page_similar_cases)
    hooks.study_page_context.register("diagnosis-reference-ranges", study_page_reference_ranges)
