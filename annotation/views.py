"""Pages: the study list, the upload page, the study page with the viewer, label sets and training datasets."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_POST
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from portal.api_errors import ServiceError
from portal.models import STAFF_ROLES, AuditLog, Role
from portal.permissions import is_clinician
from portal.services import audit_record

from . import hooks, selectors
from .forms import REPORT_STATUS_LABELS, SEGMENTATION_STATUS_LABELS, WorklistFilterForm
from .api import segmentation_payload
from .imaging.windowing import WINDOW_PRESETS, initial_window
from .models import InferenceRun

WORKLIST_PAGE_SIZE = 25


@login_required
def study_list(request):
    """The worklist: visible studies with search, filters and paging (25 a page)."""
    choices = selectors.study_worklist_choices(user=request.user)
    form = WorklistFilterForm(request.GET or None, modalities=choices["modalities"], body_parts=choices["body_parts"])
    filters = {}
    status = 200
    if form.is_bound:
        if form.is_valid():
            data = form.cleaned_data
            filters = {
                "query": data["q"], "modality": data["modality"], "body_part": data["body_part"],
                "date_from": data["date_from"], "date_to": data["date_to"],
                "segmentation_status": data["segmentation"], "report_status": data["report"],
            }
        else:
            status = 400
    studies = selectors.study_worklist(user=request.user, **filters) if status == 200 else selectors.study_worklist(
        user=request.user
    ).none()
    page = Paginator(studies, WORKLIST_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "annotation/study_list.html",
        {
            "page": page,
            "studies": page.object_list,
            "form": form,
            "page_query": query.urlencode(),
            "has_report_status": bool(hooks.study_worklist_report_status.items()),
            "segmentation_labels": SEGMENTATION_STATUS_LABELS,
            "report_labels": REPORT_STATUS_LABELS,
            "can_export": request.user.is_platform_admin or (
                request.user.role in STAFF_ROLES and request.user.hospital_id is not None),
        },
        status=status,
    )


@login_required
@require_POST
def studies_export(request):
    """The worklist's "export selected": the chosen studies' current segmentations as one zip, de-identified
    when asked (the research pseudonym, remapped UIDs and shifted dates; no MRN or name). Hospital staff
    only, as the API (``POST /api/studies/export/``); each study must be visible to the user (404)."""
    from . import services

    user = request.user
    if not (user.is_platform_admin or (user.role in STAFF_ROLES and user.hospital_id is not None)):
        raise Http404
    try:
        ids = [int(v) for v in request.POST.getlist("studies")]
    except ValueError:
        ids = []
    formats = request.POST.getlist("formats")
    error = None
    if not ids:
        error = _("Select at least one study to export.")
    elif len(ids) > 500:
        error = _("Export at most 500 studies at a time.")
    else:
        studies = [selectors.study_get(user=user, study_id=pk) for pk in dict.fromkeys(ids)]
        try:
            data = services.studies_export_zip(user=user, studies=studies, formats=formats,
                                               deidentified=request.POST.get("deidentified") == "1")
        except ServiceError as exc:
            error = exc.message
    if error is not None:
        return render(request, "annotation/studies_export_error.html", {"error": error}, status=400)
    name = "segmentations-deidentified.zip" if request.POST.get("deidentified") == "1" else "segmentations.zip"
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


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
        from .selectors_models import segmentation_models_for_series

        # One organ, one model: only the models whose modality and body part fit, the hospital's default first.
        models = [
            {"id": m.pk, "name": m.name, "display_name": m.shown_name, "version": m.version, "modality": m.modality,
             "body_part": m.body_part, "is_default": is_default}
            for m, is_default in segmentation_models_for_series(user=request.user, series=series)
        ]
    # Review-only: an annotator assigned this study to label by hand; no model is offered.
    review_only = study.assignments.filter(annotator=request.user, review_only=True).exists()
    viewer_config = None
    if series is not None:
        viewer_config = {
            "studyId": study.pk,
            "seriesId": series.pk,
            "volumeUrl": reverse("series-volume", args=[series.pk]),
            "modality": series.modality,
            "intensityRange": [series.intensity_min, series.intensity_max],
            # The viewer's window menu: annotation.imaging.windowing.WINDOW_PRESETS, in its order; HU
            # presets only for CT (an MR has no Hounsfield scale and gets the auto window).
            "windowPresets": [{"name": name, "center": center, "width": width}
                              for name, (center, width) in WINDOW_PRESETS.items()]
            if (series.modality or "").upper() == "CT" else [],
            # The window the viewer opens in: the series' DICOM window, else a preset by body part.
            "initialWindow": initial_window(
                modality=series.modality or "",
                hints=(series.body_part, series.description, study.description),
                dicom_center=series.window_center,
                dicom_width=series.window_width,
            ).as_dict(),
            "segmentations": [
                {
                    **segmentation_payload(s),
                    "labelmapUrl": reverse("segmentation-labelmap", args=[s.pk]),
                    "measurementsUrl": reverse("segmentation-measurements", args=[s.pk]),
                    "labels": s.label_table,
                }
                for s in series.segmentations.all()
                if s.is_current
            ],
            "models": models,
            "runsUrl": reverse("series-inference-runs", args=[series.pk]),
            "wsUrl": f"/ws/studies/{study.pk}/",
            "studyApiUrl": reverse("study-detail-api", args=[study.pk]),
            "csrfToken": get_token(request),
            "canSegment": request.user.role != Role.PATIENT and not review_only,
        }
        if request.user.role != Role.PATIENT:
            viewer_config["workbench"] = {
                "labelSetsUrl": reverse("label-set-list"),
                "blankUrl": reverse("series-segmentation-create", args=[series.pk]),
                "fromLabelSetUrl": reverse("series-segmentation-from-label-set", args=[series.pk]),
                "importUrl": reverse("segmentation-import", args=[series.pk]),
                "reviewUrl": reverse("study-review", args=[study.pk]),
                "canReview": is_clinician(request.user),
                "reviewOnly": review_only,
                "assignmentsUrl": reverse("study-assignments", args=[study.pk]),
                "staff": [{"id": u.pk, "name": str(u), "role": u.role}
                          for u in selectors.assignable_staff(user=request.user, study=study)],
            }
    context = {
        "study": study,
        "series": series,
        "viewer_config": viewer_config,
        "reports": [],
        "active_runs": [r for r in study.run_list if r.status not in InferenceRun.FINISHED],
        "can_report": is_clinician(request.user),
        "can_edit": request.user.role != Role.PATIENT,
        "review_only": review_only,
        "study_sections": [],
        "viewer_panels": [],
    }
    # Apps above annotation (diagnosis: the reports, the findings' comparison) add their records through this hook.
    for _key, provide in hooks.study_page_context.items():
        extra = dict(provide(user=request.user, study=study))
        sections = extra.pop("study_sections", [])
        panels = extra.pop("viewer_panels", [])
        context.update(extra)
        context["study_sections"].extend(sections)
        context["viewer_panels"].extend(panels)
    return render(request, "annotation/study_detail.html", context)


@login_required
def next_studies(request):
    """Active learning: unlabelled studies ranked by a model's uncertainty, and the user's assignments."""
    from django.contrib import messages
    from django.shortcuts import redirect
    from django.utils.translation import gettext as _

    from portal.api_errors import ServiceError

    from . import services

    if request.user.role == Role.PATIENT:
        raise Http404
    models = [m for m in selectors.segmentation_model_list(user=request.user) if m.architecture != "classical_lung"]
    chosen = None
    wanted = request.POST.get("model") or request.GET.get("model")
    if wanted and wanted.isdigit():
        chosen = next((m for m in models if m.pk == int(wanted)), None)
    chosen = chosen or (models[0] if models else None)
    method = (request.POST.get("method") or request.GET.get("method") or "entropy")
    method = method if method in ("entropy", "mc_dropout") else "entropy"
    if request.method == "POST" and chosen is not None:
        try:
            queued = services.uncertainty_rank_start(user=request.user, model=chosen, method=method)
            messages.success(request, _("Scoring was queued for {count} series.").format(count=len(queued)))
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect(f"{reverse('annotation:next-studies')}?model={chosen.pk}&method={method}")
    ranking = list(selectors.uncertainty_ranking(user=request.user, model=chosen, method=method)) if chosen else []
    return render(request, "annotation/next_studies.html", {
        "models": models, "chosen": chosen, "method": method, "ranking": ranking,
        "assignments": selectors.assignment_list(user=request.user)[:100],
        "low_confidence": [
            (s, min(s.label_confidence.values(), default=None))
            for s in selectors.segmentation_list_needing_review(user=request.user)[:100]
        ],
    })


@login_required
def label_sets(request):
    """Label sets of the hospital (create, rename, recolour, describe, SNOMED CT code) and the
    label searches: which studies have label X, which models produce it."""
    from django.contrib import messages
    from django.core.exceptions import ValidationError
    from django.shortcuts import redirect

    from portal.api_errors import ServiceError

    from . import services

    if request.user.role == Role.PATIENT or not request.user.is_authenticated:
        raise Http404
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if request.user.hospital is None:
                raise ServiceError(_("Label sets belong to a hospital."), code="hospital_required")
            if action == "create_set":
                services.label_set_create(
                    user=request.user, hospital=request.user.hospital, name=request.POST.get("name", "").strip(),
                    project=request.POST.get("project", "").strip(), description=request.POST.get("description", ""),
                    allow_overlap=bool(request.POST.get("allow_overlap")))
            elif action in ("update_set", "upsert_label"):
                pk = request.POST.get("label_set", "")
                label_set = selectors.label_set_get(user=request.user, label_set_id=int(pk) if pk.isdigit() else 0)
                if action == "update_set":
                    services.label_set_update(user=request.user, label_set=label_set,
                                              name=request.POST.get("name") or None,
                                              description=request.POST.get("description"),
                                              allow_overlap=bool(request.POST.get("allow_overlap")))
                else:
                    index = request.POST.get("index", "")
                    services.label_upsert(
                        user=request.user, label_set=label_set, index=int(index) if index.isdigit() else 0,
                        name=request.POST.get("name") or None, color=request.POST.get("color") or None,
                        description=request.POST.get("description"),
                        snomed_code=(request.POST["snomed_code"].strip() if "snomed_code" in request.POST else None))
        except ServiceError as exc:
            messages.error(request, exc.message)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        return redirect(reverse("annotation:label-sets"))
    query = request.GET.get("q", "").strip()
    found = None
    if query:
        code = query if query.isdigit() else ""
        found = {
            "studies": selectors.studies_with_label(user=request.user, name="" if code else query, snomed_code=code),
            "models": selectors.models_with_label(user=request.user, name="" if code else query, snomed_code=code),
        }
    return render(request, "annotation/label_sets.html", {
        "label_sets": selectors.label_set_list(user=request.user), "query": query, "found": found,
        "palette": ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#000075"],
    })


@login_required
def training_datasets(request):
    """The hospital's training datasets (name, version, cases, label statistics, manifest hash) and
    building a new version from the approved segmentations of a label set.

    Hospital staff (administrators, doctors, annotators) see and build their hospital's datasets;
    platform administrators see every hospital's; patients get 404.
    """
    from django.contrib import messages
    from django.core.exceptions import PermissionDenied, ValidationError
    from django.shortcuts import redirect

    from portal.api_errors import ServiceError, error_message

    from . import services

    user = request.user
    if not (user.is_platform_admin or user.is_hospital_staff):
        raise Http404
    if request.method == "POST":
        if not user.is_hospital_staff:
            raise PermissionDenied(_("Training datasets are built by the staff of their hospital."))
        pk = request.POST.get("label_set", "")
        try:
            label_set = selectors.label_set_get(user=user, label_set_id=int(pk) if pk.isdigit() else 0)
            dataset = services.training_dataset_build(hospital=user.hospital, name=request.POST.get("name", "").strip(),
                                                      label_set=label_set, user=user)
            messages.success(request, _("Built %(name)s version %(version)s with %(count)s cases.") % {
                "name": dataset.name, "version": dataset.version, "count": dataset.case_count})
        except Http404:
            messages.error(request, _("No such label set in this hospital."))
        except ServiceError as exc:
            messages.error(request, error_message(exc))
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        return redirect(reverse("annotation:training-datasets"))
    from .models import TrainingRun

    return render(request, "annotation/training_datasets.html", {
        "datasets": selectors.training_dataset_list(user=user),
        "can_train": is_clinician(user) and user.hospital_id is not None,
        "architectures": TrainingRun.Architecture.choices,
        "runs": selectors.training_run_list(user=user)[:20],
        "label_sets": selectors.label_set_list(user=user).filter(allow_overlap=False) if user.is_hospital_staff else [],
    })


@login_required
def training_dataset_download(request, dataset_id: int):
    """A training dataset as one zip (MSD layout, ``manifest.json``): the labelled dataset's research export.

    Its files are what :func:`annotation.services.training_dataset_build` wrote: the portal's canonical
    NIfTI volumes and label maps under case names ``<name>_NNN``, with only the patients' research
    pseudonyms in the manifest (no MRN, name, study UID or original file name), so the export is
    de-identified by construction. It is downloaded through the manifest's hash checks (a damaged or
    tampered snapshot is refused, 409) and audit-logged as an export. Doctors and hospital administrators
    of the dataset's hospital only; others get 404.
    """
    import io
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    from django.conf import settings

    from . import services

    user = request.user
    if not is_clinician(user) or user.hospital_id is None:
        raise Http404
    dataset = selectors.training_dataset_get_by_id(user=user, dataset_id=dataset_id)
    workdir = Path(tempfile.mkdtemp(prefix="dataset-export-", dir=settings.VAR_DIR))
    try:
        try:
            folder = services.training_dataset_materialise(dataset=dataset, dest=workdir / dataset.name)
        except ServiceError as exc:
            return render(request, "annotation/studies_export_error.html", {"error": exc.message},
                          status=exc.status_code)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{dataset.name}-v{dataset.version}/{path.relative_to(folder)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="training_dataset", target_id=dataset.pk,
                 hospital=dataset.hospital, detail={"version": dataset.version, "deidentified": True,
                                                    "manifest_sha256": dataset.manifest_sha256})
    response = HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{dataset.name}-v{dataset.version}.zip"'
    return response


@login_required
@require_POST
def training_run_start(request, dataset_id: int):
    """The datasets page's "Train" form: start a training run and open its page (doctors and hospital
    administrators of the dataset's hospital; others get 403, another hospital's dataset 404)."""
    from django.contrib import messages
    from django.core.exceptions import PermissionDenied
    from django.shortcuts import redirect

    from portal.api_errors import ServiceError, error_message

    from . import services

    user = request.user
    dataset = selectors.training_dataset_get_by_id(user=user, dataset_id=dataset_id)
    if not (is_clinician(user) and user.hospital_id == dataset.hospital_id):
        raise PermissionDenied(_("Only the doctors and administrators of the dataset's hospital can train on it."))
    form = request.POST
    try:
        settings = {"augmentation": form.get("augmentation") in ("on", "true", "1")}
        for name, kind in (("epochs", int), ("learning_rate", float), ("patience", int), ("seed", int)):
            if form.get(name, "").strip():
                settings[name] = kind(form[name])
        if form.get("patch_size", "").strip():
            settings["patch_size"] = [int(v) for v in form["patch_size"].replace("×", ",").split(",")]
    except ValueError:
        messages.error(request, _("The training settings are not valid numbers."))
        return redirect(reverse("annotation:training-datasets"))
    try:
        run = services.training_run_start(user=user, dataset=dataset, architecture=form.get("architecture", ""),
                                          settings=settings)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
        return redirect(reverse("annotation:training-datasets"))
    return redirect(reverse("annotation:training-run", args=[run.pk]))


@login_required
def training_run_detail(request, run_id: int):
    """A training run: live chart of loss and validation Dice per epoch, cancel, and the registered model."""
    from .events import training_run_payload

    run = selectors.training_run_get(user=request.user, run_id=run_id)
    config = {
        "run": training_run_payload(run),
        "api_url": reverse("training-run-detail", args=[run.pk]),
        "cancel_url": reverse("training-run-cancel", args=[run.pk]),
        "socket_path": f"/ws/training-runs/{run.pk}/",
        "can_cancel": is_clinician(request.user) and request.user.hospital_id == run.dataset.hospital_id,
        "models_url": reverse("annotation:training-datasets"),
    }
    return render(request, "annotation/training_run.html", {"run": run, "config": config})
