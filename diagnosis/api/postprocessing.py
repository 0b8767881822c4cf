"""REST API of post-processing scripts: upload and list scripts, run one on a study, read a run and its plots.

Hospital administrators upload; doctors (clinicians) of the study's hospital run; hospital staff read.
Another hospital's script, study or run is not found (404); a patient is refused (403).
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors as annotation_selectors
from portal.models import AuditLog
from portal.permissions import IsClinician, IsHospitalStaff
from portal.services import audit_record

from .. import selectors, services
from ..models import PostProcessingRun

ScriptSerializer = inline_serializer("PostProcessingScript", {
    "id": serializers.IntegerField(),
    "name": serializers.CharField(),
    "description": serializers.CharField(),
    "sha256": serializers.CharField(),
    "is_active": serializers.BooleanField(),
    "uploaded_by": serializers.IntegerField(allow_null=True),
    "created_at": serializers.DateTimeField(),
})

RunSerializer = inline_serializer("PostProcessingRun", {
    "id": serializers.IntegerField(),
    "script": inline_serializer("PostProcessingRunScript", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "sha256": serializers.CharField()}),
    "study_id": serializers.IntegerField(),
    "series_id": serializers.IntegerField(),
    "segmentation_id": serializers.IntegerField(allow_null=True),
    "status": serializers.ChoiceField(choices=PostProcessingRun.Status.choices),
    "status_label": serializers.CharField(help_text="The status in the request's language."),
    "figures": serializers.DictField(help_text="The JSON object the script wrote to figures.json."),
    "plots": serializers.ListField(child=inline_serializer("PostProcessingPlot", {
        "name": serializers.CharField(), "size": serializers.IntegerField(), "url": serializers.CharField()})),
    "error": inline_serializer("PostProcessingError", {
        "code": serializers.CharField(help_text="timeout, cpu_limit, memory_limit, process_limit, output_too_large, "
                                                "bad_output, script_failed, sandbox_unavailable, worker_lost"),
        "message": serializers.CharField(),
        "detail": serializers.CharField(),
        "stderr_tail": serializers.CharField(),
    }, allow_null=True),
    "duration_s": serializers.FloatField(allow_null=True),
    "cpu_s": serializers.FloatField(allow_null=True),
    "requested_by": serializers.IntegerField(allow_null=True),
    "created_at": serializers.DateTimeField(),
    "finished_at": serializers.DateTimeField(allow_null=True),
})


def _script_payload(script) -> dict:
    return {"id": script.pk, "name": script.name, "description": script.description, "sha256": script.sha256,
            "is_active": script.is_active, "uploaded_by": script.uploaded_by_id,
            "created_at": script.created_at.isoformat()}


class _StaffReadClinicianWrite(IsHospitalStaff):
    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return super().has_permission(request, view)
        return IsClinician().has_permission(request, view)


class PostProcessingScriptsApi(APIView):
    """List the hospital's scripts (staff); upload one (hospital administrators, checked by the service)."""

    permission_classes = [_StaffReadClinicianWrite]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class UploadInputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
        code = serializers.CharField(required=False, trim_whitespace=False, help_text="The Python source.")
        file = serializers.FileField(required=False, help_text="The script as a .py file (instead of code).")

        def validate(self, data):
            if ("code" in data) == ("file" in data):
                raise serializers.ValidationError(_("Give the script either as code or as file."))
            return data

    @extend_schema(responses=inline_serializer("PostProcessingScriptList",
                                               {"results": serializers.ListField(child=ScriptSerializer)}),
                   summary="Post-processing scripts of the user's hospital")
    def get(self, request):
        scripts = selectors.postprocessing_script_list(user=request.user)
        return Response({"results": [_script_payload(s) for s in scripts]})

    @extend_schema(request=UploadInputSerializer, responses={201: ScriptSerializer},
                   summary="Upload a post-processing script (hospital administrators)")
    def post(self, request):
        # Who may upload is decided before what is uploaded: a doctor gets 403, not a validation error.
        services.postprocessing_script_upload_allowed(user=request.user)
        serializer = self.UploadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # One byte over the limit is enough for the service to refuse a larger file.
        code = data["code"] if "code" in data else data["file"].read(settings.POSTPROCESS_SCRIPT_MAX_BYTES + 1)
        script = services.postprocessing_script_upload(user=request.user, name=data["name"], code=code,
                                                       description=data.get("description", ""))
        return Response(_script_payload(script), status=status.HTTP_201_CREATED)


class StudyPostProcessingRunsApi(APIView):
    """List a study's runs (staff); run a script on it (doctors of its hospital)."""

    permission_classes = [_StaffReadClinicianWrite]

    class RunInputSerializer(serializers.Serializer):
        script = serializers.IntegerField()
        series = serializers.IntegerField(required=False, help_text="Default: the study's first series.")

    @extend_schema(responses=inline_serializer("PostProcessingRunList",
                                               {"results": serializers.ListField(child=RunSerializer)}),
                   summary="Post-processing runs of a study, newest first")
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        runs = selectors.postprocessing_run_list_for_study(user=request.user, study=study)
        return Response({"results": [services.postprocessing_run_payload(r) for r in runs]})

    @extend_schema(request=RunInputSerializer, responses={202: RunSerializer},
                   summary="Run a post-processing script on a study in the sandbox (queued)")
    def post(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        serializer = self.RunInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        script = selectors.postprocessing_script_get(user=request.user, script_id=data["script"])
        series = (annotation_selectors.series_get(user=request.user, series_id=data["series"])
                  if "series" in data else None)
        run = services.postprocessing_run_create(user=request.user, script=script, study=study, series=series)
        return Response(services.postprocessing_run_payload(run), status=status.HTTP_202_ACCEPTED)


class PostProcessingRunDetailApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(responses=RunSerializer, summary="One post-processing run: status, figures, plots or error")
    def get(self, request, run_id: int):
        run = selectors.postprocessing_run_get(user=request.user, run_id=run_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="postprocessing_run",
                     target_id=run.pk, hospital=run.study.hospital)
        return Response(services.postprocessing_run_payload(run))


class PostProcessingRunPlotApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={(200, "image/png"): bytes}, summary="A PNG plot of a post-processing run")
    def get(self, request, run_id: int, name: str):
        run = selectors.postprocessing_run_get(user=request.user, run_id=run_id)
        plot = next((p for p in run.plots if p["name"] == name), None)
        if plot is None:
            raise Http404("No such plot.")
        response = FileResponse(default_storage.open(plot["key"], "rb"), content_type="image/png")
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
