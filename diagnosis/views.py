"""Report pages (draft, edit, sign, amend and download) and the study page's post-processing form."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from annotation import selectors as annotation_selectors
from portal.api_errors import ServiceError
from portal.models import AuditLog
from portal.permissions import is_clinician
from portal.services import audit_record

from . import selectors, services
from .forms import ReportForm, SimilarityWeightsForm
from .selectors_growth import growth_page_payload


def _require_clinician(user) -> None:
    if not is_clinician(user):
        raise PermissionDenied


@login_required
@require_POST
def report_create(request, study_id: int):
    _require_clinician(request.user)
    study = annotation_selectors.study_get(user=request.user, study_id=study_id)
    report = services.report_create_draft(user=request.user, study=study)
    return redirect("diagnosis:report-detail", report_id=report.pk)


@login_required
def report_detail(request, report_id: int):
    report = selectors.report_get(user=request.user, report_id=report_id)
    content = services.report_content(report)
    form = ReportForm(initial={"findings": report.findings, "impression": report.impression})
    if request.method == "POST":
        _require_clinician(request.user)
        form = ReportForm(request.POST)
        if form.is_valid():
            try:
                services.report_update(user=request.user, report=report, **form.cleaned_data)
                if "finalize" in request.POST:
                    services.report_finalize(user=request.user, report=report)
                    messages.success(request, _("Report signed."))
                else:
                    messages.success(request, _("Draft saved."))
                return redirect("diagnosis:report-detail", report_id=report.pk)
            except ServiceError as exc:
                messages.error(request, exc.message)
    return render(request, "diagnosis/report_detail.html", {
        "report": report, "content": content, "form": form,
        "growth_page": growth_page_payload(content.get("growth")),
        "finding_images": services.report_finding_key_images(content.get("accepted_findings") or []),
        # The same key images as the PDF, and the same units.
        "images": services.report_key_images(report),
        "study_label": services.report_study_label(content),
        "suggestion_rule": selectors.lung_rads_rule_text((content.get("lung_rads_suggestion") or {}).get("rule_code", "")),
        "intensity_unit": "HU" if ((content.get("series") or {}).get("modality") or "").upper() == "CT" else "",
        "lung_rads_categories": services.LUNG_RADS_CATEGORIES,
        "can_edit": report.status == "draft" and is_clinician(request.user),
        "can_amend": report.status == "final" and is_clinician(request.user),
        "finding_kinds": selectors.finding_kind_terms(user=request.user, study=report.study),
        "result_sends": selectors.result_send_list(report=report) if request.user.is_hospital_staff else [],
    })


@login_required
@require_POST
def report_lung_rads_confirm(request, report_id: int):
    """Record the Lung-RADS category the doctor confirms on a draft (the form beside the suggestion)."""
    _require_clinician(request.user)
    report = selectors.report_get(user=request.user, report_id=report_id)
    try:
        services.report_lung_rads_confirm(user=request.user, report=report,
                                          category=request.POST.get("category", ""),
                                          rule=request.POST.get("rule", "")[:2000])
        messages.success(request, _("Lung-RADS category confirmed."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("diagnosis:report-detail", report_id=report.pk)


@login_required
@require_POST
def report_amend(request, report_id: int):
    _require_clinician(request.user)
    report = selectors.report_get(user=request.user, report_id=report_id)
    try:
        amendment = services.report_amend(user=request.user, report=report)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("diagnosis:report-detail", report_id=report.pk)
    return redirect("diagnosis:report-detail", report_id=amendment.pk)


@login_required
@require_POST
def report_results_resend(request, report_id: int):
    """Send a signed report's SEG, SR and PDF to the PACS again (the "Resend" button)."""
    _require_clinician(request.user)
    report = selectors.report_get(user=request.user, report_id=report_id)
    try:
        services.report_results_resend(user=request.user, report=report)
        messages.success(request, _("Results queued for the PACS."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("diagnosis:report-detail", report_id=report.pk)


@login_required
def report_pdf(request, report_id: int):
    report = selectors.report_get(user=request.user, report_id=report_id)
    pdf = services.report_pdf_bytes(user=request.user, report=report)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="report-{report.pk}-v{report.version}.pdf"'
    return response


def _patient_growth(patient):
    """The figures over time of the patient's newest compared study (its chain reaches back through the
    earlier comparisons), or None."""
    from .models import StudyRegistration
    from .selectors_growth import study_growth_series

    row = (StudyRegistration.objects.filter(study__patient=patient).select_related("study")
           .order_by(F("study__study_date").desc(nulls_last=True), "-study_id").first())
    return None if row is None else growth_page_payload(study_growth_series(study=row.study))


@login_required
def patient_timeline(request, patient_id: int):
    """The clinicians' page of one patient over time: studies, reports, findings, measurements and
    questionnaires, newest first (issue 14). Every view is audit-logged like a study page's."""
    from .timeline import patient_timeline as timeline

    patient, events = timeline(user=request.user, patient_id=patient_id)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="patient", target_id=patient.pk,
                 hospital=patient.hospital, detail={"page": "timeline"})
    # "Find priors in PACS" (?pacs=1) asks the hospital's PACS for the patient's studies (C-FIND).
    pacs_source = services.pacs_query_source(hospital=patient.hospital)
    pacs_studies, pacs_error = None, None
    if pacs_source is not None and request.GET.get("pacs"):
        try:
            pacs_studies = services.pacs_priors_find(user=request.user, patient=patient)
        except ServiceError as exc:
            pacs_error = exc
    return render(request, "diagnosis/patient_timeline.html", {
        "patient": patient, "events": events, "growth_page": _patient_growth(patient), "pacs_source": pacs_source, "pacs_studies": pacs_studies,
        "pacs_error": pacs_error, "prior_retrieves": selectors.prior_retrieve_list(patient=patient),
    })


@login_required
@require_POST
def patient_pacs_retrieve(request, patient_id: int):
    """Queue the retrieve of one of the patient's studies from the PACS (the "Retrieve" button of the
    PACS priors list) and go back to the list."""
    patient = selectors.patient_get_for_clinician(user=request.user, patient_id=patient_id)
    try:
        services.pacs_study_retrieve(user=request.user, patient=patient,
                                     study_instance_uid=request.POST.get("study_instance_uid", "")[:64])
        messages.success(request, _("The study is being retrieved from the PACS; it appears on the timeline once "
                                    "the DICOM service has filed it."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(f"{reverse('patient-timeline', args=[patient.pk])}?pacs=1#pacs-priors")


@login_required
@require_POST
def postprocessing_run_start(request, study_id: int):
    """Queue a run of the chosen script on the study (the study page's form) and go back to the page."""
    _require_clinician(request.user)
    study = annotation_selectors.study_get(user=request.user, study_id=study_id)
    try:
        script_id = int(request.POST.get("script", ""))
    except ValueError:
        raise Http404("No such script.") from None
    script = selectors.postprocessing_script_get(user=request.user, script_id=script_id)
    try:
        services.postprocessing_run_create(user=request.user, script=script, study=study)
        messages.success(request, _("The script is queued; its results appear here when it has run."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(f"{reverse('annotation:study-detail', args=[study.pk])}#postprocessing")


@login_required
@require_POST
def study_compare_start(request, study_id: int, prior_id: int):
    """Queue the comparison of the study with a prior (the study page's button) and go back to the page."""
    _require_clinician(request.user)
    study = annotation_selectors.study_get(user=request.user, study_id=study_id)
    prior = annotation_selectors.study_get(user=request.user, study_id=prior_id)
    try:
        services.study_compare_request(user=request.user, study=study, prior=prior)
        messages.success(request, _("The comparison with the prior is running; reload the page in a minute."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(f"{reverse('annotation:study-detail', args=[study.pk])}#prior-comparison")


@login_required
def study_compare_view(request, study_id: int, prior_id: int):
    """The comparison view: the study and its prior side by side, the prior registered onto the study's
    grid, so one crosshair, scrolling, zoom and window drive both; with the matched findings' table.
    Clinicians of the study's hospital; no stored comparison is 404."""
    from annotation.imaging.windowing import initial_window

    _require_clinician(request.user)
    registration = selectors.study_registration_get(user=request.user, study_id=study_id, prior_id=prior_id)
    series, study = registration.series, registration.study
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_registration",
                 target_id=registration.pk, hospital=study.hospital)
    window = initial_window(modality=series.modality or "", hints=(series.body_part, series.description,
                                                                   study.description),
                            dicom_center=series.window_center, dicom_width=series.window_width).as_dict()
    config = {
        "currentVolumeUrl": reverse("series-volume", args=[series.pk]),
        "priorVolumeUrl": reverse("study-comparison-prior-volume", args=[study.pk, registration.prior_id]),
        "initialWindow": window,
    }
    return render(request, "diagnosis/compare_view.html", {
        "registration": registration, "study": study, "prior": registration.prior,
        "comparison": selectors.study_comparison_payload(registration), "page_config": config,
    })


@login_required
@require_POST
def study_recist_set(request, study_id: int):
    """Store the RECIST 1.1 lesions chosen in the study page's form (``role_<finding>``, ``organ_<finding>``,
    ``lymph_node_<finding>``), or at a follow-up the doctor's ``non_target_response``, and go back to the
    page; a refusal is shown as a message."""
    _require_clinician(request.user)
    study = annotation_selectors.study_get(user=request.user, study_id=study_id)
    if "non_target_response" in request.POST:
        try:
            services.recist_non_target_set(user=request.user, study=study,
                                           response=request.POST["non_target_response"])
            messages.success(request, _("The non-target response is saved."))
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect(f"{reverse('annotation:study-detail', args=[study.pk])}#recist")
    chosen = {"target": [], "non_target": []}
    for key, role in request.POST.items():
        if key.startswith("role_") and role in chosen and key[5:].isdigit():
            finding = key[5:]
            chosen[role].append({"finding": int(finding), "organ": request.POST.get(f"organ_{finding}", ""),
                                 "lymph_node": bool(request.POST.get(f"lymph_node_{finding}"))})
    try:
        services.recist_selection_set(user=request.user, study=study, targets=chosen["target"],
                                      non_targets=chosen["non_target"])
        messages.success(request, _("The RECIST 1.1 lesions are saved."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(f"{reverse('annotation:study-detail', args=[study.pk])}#recist")


@login_required
def similarity_weights_edit(request):
    """The hospital admin's form of the similar-cases weights of their hospital (a platform admin names the
    hospital with ``?hospital=ID``). Hospital admins and platform admins only."""
    from portal.models import Hospital

    from .selectors_similar import similarity_weights_for
    from .similarity import FEATURES

    user = request.user
    hospital_id = request.GET.get("hospital") if user.is_platform_admin else user.hospital_id
    hospital = Hospital.objects.filter(pk=hospital_id).first() if str(hospital_id or "").isdigit() else None
    if hospital is None or not services.similarity_weights_may_edit(user, hospital):
        raise PermissionDenied(_("Only the hospital's administrators can change the similar-cases weights."))
    form = SimilarityWeightsForm(initial=similarity_weights_for(hospital_id=hospital.pk))
    if request.method == "POST":
        form = SimilarityWeightsForm(request.POST)
        if form.is_valid():
            try:
                services.similarity_weights_set(user=user, hospital=hospital,
                                                weights={name: form.cleaned_data[name] for name in FEATURES})
                messages.success(request, _("Similar-cases weights saved."))
                return redirect(request.get_full_path())
            except ServiceError as exc:
                form.add_error(None, exc.message)
    return render(request, "diagnosis/similarity_weights.html", {"form": form, "hospital": hospital})
