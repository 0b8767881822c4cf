"""Web pages of the model registry: the models a hospital is offered (with the default model per
organ), each model's card, and importing a model file (hospital administrators)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from portal import services as portal_services
from portal.api_errors import ServiceError
from portal.models import AuditLog, Role
from portal.selectors import hospital_review_threshold
from portal.services import audit_record

from . import selectors, selectors_models, services
from .models import SegmentationModel

# The suffixes segmentation_model_import tells apart: ONNX, a MONAI bundle zip, TorchScript.
IMPORT_SUFFIXES = (".onnx", ".zip", ".pt", ".ts")
_PALETTE = ["#e6550d", "#3182bd", "#31a354", "#756bb1", "#e7298a", "#d95f02", "#66a61e", "#e6ab02"]
_LABEL = re.compile(r"^\s*(\d+)\s*=\s*(\S.*?)\s*$")


def _staff_only(user) -> None:
    if not (user.is_platform_admin or user.role in (Role.HOSPITAL_ADMIN, Role.DOCTOR, Role.ANNOTATOR)):
        raise Http404


def _is_hospital_admin(user) -> bool:
    return user.role == Role.HOSPITAL_ADMIN and user.hospital_id is not None


@login_required
def model_list(request):
    """Models offered to the hospital, each linked to its card; the default model per organ, which a
    hospital administrator sets here (POST ``body_part``, ``model``)."""
    user = request.user
    _staff_only(user)
    status = 200
    if request.method == "POST":
        model_id = request.POST.get("model", "")
        try:
            default = services.organ_default_model_set(user=user, body_part=request.POST.get("body_part", ""),
                                                       model_id=int(model_id) if model_id.isdigit() else 0)
            messages.success(request, _("%(model)s is now the default model for %(body_part)s.")
                             % {"model": default.segmentation_model, "body_part": default.body_part})
            return redirect(reverse("annotation:model-list"))
        except ServiceError as exc:
            # Shown on the page with the refusal's own status (403 not an administrator, 400 wrong body part).
            messages.error(request, exc.message)
            status = exc.status_code
    return _model_list_render(request, status=status)


def _model_list_render(request, *, status: int = 200, threshold_error: str = "", threshold_value=None):
    user = request.user
    models = list(selectors.segmentation_model_list(user=user))
    defaults = list(selectors_models.organ_default_model_list(user=user))
    default_ids = {d.segmentation_model_id for d in defaults}
    hospital = user.hospital if user.hospital_id else None
    own = hospital.segment_confidence_review_threshold if hospital is not None else None
    return render(request, "annotation/model_list.html", {
        "models": [(m, m.pk in default_ids) for m in models],
        "defaults": defaults,
        "body_parts": sorted({selectors_models.body_part_key(m.body_part) for m in models if m.body_part.strip()}),
        "can_manage": _is_hospital_admin(user),
        "review_threshold": hospital_review_threshold(hospital),
        "review_threshold_is_default": own is None,
        "review_threshold_value": own if threshold_value is None else threshold_value,
        "review_threshold_error": threshold_error,
    }, status=status)


@login_required
@require_POST
def review_threshold_set(request):
    """Set the hospital's review threshold of segment confidence (POST ``threshold``, 0 to 1, empty for
    the portal's default): the hospital's administrator only (403 for anyone else); a bad value is
    shown on the models page with status 400 and changes nothing."""
    user = request.user
    _staff_only(user)
    if not _is_hospital_admin(user):
        raise PermissionDenied(_("Only this hospital's administrator may set its review threshold."))
    raw = request.POST.get("threshold", "")
    try:
        hospital = portal_services.hospital_review_threshold_set(user=user, hospital=user.hospital, threshold=raw)
    except ServiceError as exc:
        return _model_list_render(request, status=exc.status_code, threshold_error=exc.message,
                                  threshold_value=raw[:32])
    messages.success(request, _("Segmentations with a segment less confident than %(threshold)s are now flagged "
                                "for review.") % {"threshold": hospital_review_threshold(hospital)})
    return redirect(reverse("annotation:model-list"))


@login_required
def model_card(request, model_id: int):
    """One model's card: training data, network and settings, validation Dice, hardware and time,
    provenance; "not recorded" where the registry holds nothing."""
    _staff_only(request.user)
    card = selectors_models.segmentation_model_card(user=request.user, model_id=model_id)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="segmentation_model",
                 target_id=card.model.pk)
    model = card.model
    user = request.user
    return render(request, "annotation/model_card.html", {
        "card": card, "model": model,
        "can_export": (bool(model.weights_file) and model.kind == SegmentationModel.Kind.SEGMENTATION
                       and (user.is_platform_admin or user.role in (Role.HOSPITAL_ADMIN, Role.DOCTOR))),
        "can_deploy": _is_hospital_admin(user) and bool(selectors_models.body_part_key(model.body_part)),
    })


@login_required
def model_export_onnx(request, model_id: int):
    """Download a registered network as ONNX (``segmentation_model_export_file``, the file
    ``manage.py export_model --format onnx`` writes, checked with ``onnx.checker``; ``?int8=1`` for the
    int8-quantised file) — for the doctors and administrators of a hospital the model is offered to.

    Responses: 200 ``application/octet-stream`` attachment; 403 for annotators; 404 for a model the
    hospital is not offered (and for patients); 400 with the reason when the model cannot be exported
    (a classical method, a detector, a model without weights).
    """
    user = request.user
    _staff_only(user)
    if not (user.is_platform_admin or user.role in (Role.HOSPITAL_ADMIN, Role.DOCTOR)):
        raise PermissionDenied(_("Only doctors and hospital administrators may export models."))
    model = selectors.segmentation_model_get(user=user, model_id=model_id)
    int8 = request.GET.get("int8") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="model-export-"))
    try:
        path = services.segmentation_model_export_file(model=model, fmt="onnx", out_path=tmp / "model.onnx",
                                                       int8=int8, user=user)
        data = path.read_bytes()
    except ServiceError as exc:
        return HttpResponse(str(exc.message), status=exc.status_code, content_type="text/plain; charset=utf-8")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    filename = f"{model.name}-v{model.version}{'-int8' if int8 else ''}.onnx"
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ModelImportForm(forms.Form):
    """The import page's fields: the same inputs as ``manage.py import_model``."""

    file = forms.FileField(label=_("Model file"),
                           help_text=_("A MONAI bundle (.zip), a TorchScript file (.pt) or an ONNX file (.onnx)."))
    name = forms.SlugField(label=_("Name"), max_length=64)
    modality = forms.ChoiceField(label=_("Modality"), choices=[("CT", "CT"), ("MR", "MR")])
    body_part = forms.CharField(label=_("Body part"), max_length=64)
    labels = forms.CharField(label=_("Labels"), max_length=2000,
                             help_text=_("INDEX=NAME separated by commas, e.g. 1=liver,2=spleen."))
    backend = forms.ChoiceField(label=_("Runs with"), required=False,
                                choices=[("", _("Automatic")), ("torch", "PyTorch"), ("onnx", "ONNX Runtime")])

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith(IMPORT_SUFFIXES):
            raise forms.ValidationError(_("Upload a MONAI bundle (.zip), a TorchScript file (.pt) or an ONNX "
                                          "file (.onnx)."))
        return upload

    def clean_labels(self):
        table, seen = [], set()
        for part in self.cleaned_data["labels"].split(","):
            match = _LABEL.match(part)
            index = int(match.group(1)) if match else 0
            if not match or not 1 <= index <= 65535 or index in seen:
                raise forms.ValidationError(
                    _("Bad label \"%(label)s\": write INDEX=NAME with distinct indices from 1 to 65535, "
                      "e.g. 1=anterior,2=posterior.") % {"label": part.strip()})
            seen.add(index)
            table.append({"index": index, "name": match.group(2), "color": _PALETTE[(index - 1) % len(_PALETTE)]})
        return table


@login_required
def model_import(request):
    """Upload a model file and register it for the hospital through ``segmentation_model_import``
    (hospital administrators only); a refused file registers nothing and says why."""
    user = request.user
    _staff_only(user)
    if not _is_hospital_admin(user):
        raise PermissionDenied(_("Only a hospital administrator may import models."))
    form = ModelImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            upload = data["file"]
            tmp = Path(tempfile.mkdtemp(prefix="model-import-"))
            try:
                # The service tells the formats apart by suffix: keep the uploaded file's.
                path = tmp / Path(upload.name).name
                with path.open("wb") as out:
                    for chunk in upload.chunks():
                        out.write(chunk)
                model = services.segmentation_model_import(
                    path=path, name=data["name"], modality=data["modality"], body_part=data["body_part"].strip(),
                    label_table=data["labels"], backend=data["backend"] or None, user=user, hospital=user.hospital)
            except ServiceError as exc:
                form.add_error(None, exc.message)
                status = exc.status_code
            else:
                messages.success(request, _("Imported %(model)s.") % {"model": model})
                return redirect(reverse("annotation:model-card", args=[model.pk]))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            status = 400
    return render(request, "annotation/model_import.html", {"form": form}, status=status)
