"""Pages: the study list, the upload page and the study page with the viewer."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from portal.models import AuditLog, Role
from portal.permissions import is_clinician
from portal.services import audit_record

from . import selectors
from .api import segmentation_payload
from .models import InferenceRun


@login_required
def study_list(request):
    studies = selectors.study_list(user=request.user)[:200]
    return render(request, "annotation/study_list.html", {"studies": studies})


@login_required
def study_upload(request):
    if request.user.role == Role.PATIENT:
        raise Http404
    return render(request, "annotation/study_upload.html", {"upload_url": reverse("study-import")})


@login_required
def study_detail(request, study_id: int):
    study = selectors.study_detail(user=request.user, study_id=study_id)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study", target_id=study.pk,
                 hospital=study.hospital)
    series = study.series_list[0] if study.series_list else None
    wanted = request.GET.get("series")
    if wanted and wanted.isdigit():
        series = next((s for s in study.series_list if s.pk == int(wanted)), series)
    models = []
    if request.user.role != Role.PATIENT and series is not None:
        models = [
            {"id": m.pk, "name": m.name, "display_name": m.display_name, "version": m.version, "modality": m.modality}
            for m in selectors.segmentation_model_list(user=request.user)
            if not m.modality or not series.modality or m.modality.upper() == series.modality.upper()
        ]
    viewer_config = None
    if series is not None:
        viewer_config = {
            "studyId": study.pk,
            "seriesId": series.pk,
            "volumeUrl": reverse("series-volume", args=[series.pk]),
            "modality": series.modality,
            "intensityRange": [series.intensity_min, series.intensity_max],
            "segmentations": [
                {
                    **segmentation_payload(s),
                    "labelmapUrl": reverse("segmentation-labelmap", args=[s.pk]),
                    "measurementsUrl": reverse("segmentation-measurements", args=[s.pk]),
                    "labels": s.label_table,
                }
                for s in series.segmentations.all()
            ],
            "models": models,
            "runsUrl": reverse("series-inference-runs", args=[series.pk]),
            "wsUrl": f"/ws/studies/{study.pk}/",
            "studyApiUrl": reverse("study-detail-api", args=[study.pk]),
            "csrfToken": get_token(request),
            "canSegment": request.user.role != Role.PATIENT,
        }
    from diagnosis.selectors import report_list_for_study

    context = {
        "study": study,
        "series": series,
        "viewer_config": viewer_config,
        "reports": report_list_for_study(user=request.user, study=study),
        "active_runs": [r for r in study.run_list if r.status not in InferenceRun.FINISHED],
        "can_report": is_clinician(request.user),
    }
    return render(request, "annotation/study_detail.html", context)
