"""Studies, volumes, models and one-click runs: import a study from uploaded files, list and read the
studies a user may see, stream a series' volume and a segmentation's label map, list the models offered
for one-click segmentation, and start, follow and cancel inference runs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital
from portal.permissions import IsHospitalStaff
from portal.services import audit_record
from portal.validators import validate_mrn

from .. import selectors, services
from ..events import inference_run_payload
from ..models import SegmentationModel, Series, Study
from .common import ErrorSerializer, _store_uploads, segmentation_payload


def series_payload(series: Series, segmentations=None) -> dict:
    return {
        "id": series.pk,
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.series_number,
        "modality": series.modality,
        "description": series.description,
        "source_format": series.source_format,
        "instance_count": series.instance_count,
        "shape": series.shape,
        "spacing_mm": series.spacing_mm,
        "origin_mm": series.origin_mm,
        "direction": series.direction,
        "intensity_range": [series.intensity_min, series.intensity_max],
        "volume_url": reverse("series-volume", args=[series.pk]),
        "inference_runs_url": reverse("series-inference-runs", args=[series.pk]),
        "segmentations": [segmentation_payload(s) for s in (segmentations if segmentations is not None else [])],
    }


def study_payload(study: Study, *, detail: bool = False) -> dict:
    data = {
        "id": study.pk,
        "study_instance_uid": study.study_instance_uid,
        "study_date": study.study_date.isoformat() if study.study_date else None,
        "description": study.description,
        "hospital": study.hospital.code,
        "patient": {"id": study.patient_id, "mrn": study.patient.mrn},
        "created_at": study.created_at.isoformat(),
        "url": reverse("annotation:study-detail", args=[study.pk]),
    }
    if detail:
        data["series"] = [series_payload(s, list(s.segmentations.all())) for s in study.series_list]
        data["inference_runs"] = [inference_run_payload(r) for r in study.run_list]
    else:
        data["series"] = [{"id": s.pk, "modality": s.modality, "description": s.description} for s in study.series.all()]
    return data


def _study_fields():
    return {"id": serializers.IntegerField(), "url": serializers.CharField()}


StudySerializer = inline_serializer("Study", _study_fields())
StudyListSerializer = inline_serializer("StudyList", {"results": inline_serializer("StudyItem", _study_fields(), many=True)})


def _run_fields():
    return {
        "id": serializers.IntegerField(), "status": serializers.CharField(),
        "progress_percent": serializers.FloatField(), "stage": serializers.CharField(),
        "error_message": serializers.CharField(), "segmentation_id": serializers.IntegerField(allow_null=True),
    }


RunSerializer = inline_serializer("InferenceRun", _run_fields())
RunListSerializer = inline_serializer("InferenceRunList", {"results": inline_serializer("InferenceRunItem", _run_fields(), many=True)})


class StudyImportApi(APIView):
    """Upload DICOM files or zips, NIfTI, MetaImage (.mhd with .raw, or .mha) or NRRD as a study."""

    permission_classes = [IsHospitalStaff]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
        patient_mrn = serializers.CharField(max_length=64, validators=[validate_mrn])
        patient_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        modality = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
        hospital = serializers.SlugField(required=False, help_text="Hospital code (platform admins only).")

    @extend_schema(
        request=InputSerializer,
        responses={201: inline_serializer("ImportResult", {
            "study_ids": serializers.ListField(child=serializers.IntegerField()),
            "series_ids": serializers.ListField(child=serializers.IntegerField()),
            "studies": inline_serializer("ImportedStudy", _study_fields(), many=True)}), 400: ErrorSerializer, 409: ErrorSerializer},
        summary="Import a study",
    )
    def post(self, request):
        data = request.data
        serializer = self.InputSerializer(data={
            "files": request.FILES.getlist("files"),
            "patient_mrn": data.get("patient_mrn", ""),
            "patient_name": data.get("patient_name", ""),
            "modality": data.get("modality", ""),
            **({"hospital": data["hospital"]} if data.get("hospital") else {}),
        })
        serializer.is_valid(raise_exception=True)
        hospital = request.user.hospital
        if request.user.is_platform_admin:
            code = serializer.validated_data.get("hospital")
            hospital = Hospital.objects.filter(code=code).first() if code else None
            if hospital is None:
                raise ServiceError(_("Platform administrators must name the hospital."), code="hospital_required")
        directory = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.VAR_DIR))
        try:
            paths = _store_uploads(serializer.validated_data["files"], directory)
            result = services.study_import(
                user=request.user, hospital=hospital, patient_mrn=serializer.validated_data["patient_mrn"],
                patient_name=serializer.validated_data["patient_name"], paths=paths,
                modality=serializer.validated_data["modality"],
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return Response(
            {
                "study_ids": [s.pk for s in result.studies],
                "series_ids": [s.pk for s in result.series],
                "studies": [{"id": s.pk, "url": reverse("annotation:study-detail", args=[s.pk])} for s in result.studies],
                "skipped": result.skipped,
            },
            status=status.HTTP_201_CREATED,
        )


class StudyListApi(APIView):
    @extend_schema(operation_id="studies_list", responses=StudyListSerializer, summary="Studies the user may see")
    def get(self, request):
        studies = list(selectors.study_list(user=request.user)[:200])
        return Response({"results": [study_payload(s) for s in studies]})


class StudyDetailApi(APIView):
    @extend_schema(responses=StudySerializer, summary="A study with its series, segmentations and runs")
    def get(self, request, study_id: int):
        study = selectors.study_detail(user=request.user, study_id=study_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study", target_id=study.pk,
                     hospital=study.hospital)
        return Response(study_payload(study, detail=True))


def _stream(field_file, filename: str, content_type: str) -> FileResponse:
    response = FileResponse(field_file.open("rb"), content_type=content_type, as_attachment=False, filename=filename)
    response["Cache-Control"] = "private, no-store"
    return response


class SeriesVolumeApi(APIView):
    @extend_schema(responses={(200, "application/gzip"): bytes}, summary="The series' canonical volume (NIfTI)")
    def get(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        audit_record(actor=request.user, action=AuditLog.Action.DOWNLOAD, target_type="series", target_id=series.pk,
                     hospital=series.study.hospital)
        return _stream(series.volume_file, f"series-{series.pk}.nii.gz", "application/gzip")


class SegmentationLabelmapApi(APIView):
    @extend_schema(responses={(200, "application/gzip"): bytes}, summary="A segmentation's label map (NIfTI)")
    def get(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        audit_record(actor=request.user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation",
                     target_id=segmentation.pk, hospital=segmentation.series.study.hospital)
        return _stream(segmentation.labelmap_file, f"segmentation-{segmentation.pk}.nii.gz", "application/gzip")


class SegmentationUncertaintyApi(APIView):
    @extend_schema(responses={(200, "application/gzip"): bytes},
                   summary="A network segmentation's voxel-wise uncertainty (uint8 NIfTI, 255 = normalised entropy 1)")
    def get(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        if not segmentation.uncertainty_file:
            raise Http404(_("This segmentation has no uncertainty map."))
        audit_record(actor=request.user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation",
                     target_id=segmentation.pk, hospital=segmentation.series.study.hospital)
        return _stream(segmentation.uncertainty_file, f"segmentation-{segmentation.pk}-uncertainty.nii.gz",
                       "application/gzip")


def model_payload(model: SegmentationModel) -> dict:
    return {
        "id": model.pk, "name": model.name, "version": model.version, "display_name": model.display_name,
        "display_name_zh": model.display_name_zh,
        "body_part": model.body_part, "modality": model.modality, "architecture": model.architecture, "kind": model.kind,
        "label_table": model.label_table, "preprocessing": model.preprocessing,
        "validation_metrics": model.validation_metrics,
    }


class SegmentationModelListApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(parameters=[OpenApiParameter("modality", str)], responses={200: OpenApiTypes.OBJECT},
                   summary="Models offered for one-click segmentation")
    def get(self, request):
        models = selectors.segmentation_model_list(user=request.user, modality=request.query_params.get("modality"))
        return Response({"results": [model_payload(m) for m in models]})


class InferenceRunCreateApi(APIView):
    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        model = serializers.IntegerField(help_text="Segmentation model id")

    @extend_schema(request=InputSerializer, responses={201: RunSerializer, 400: ErrorSerializer, 503: ErrorSerializer},
                   summary="Start one-click segmentation",
                   description="503 `queue_unavailable`: the job queue did not take the run within a few seconds; "
                               "the run is saved as queued and published again by the sweeper.")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = selectors.segmentation_model_get(user=request.user, model_id=serializer.validated_data["model"])
        run = services.inference_run_create(user=request.user, series=series, model=model)
        return Response(inference_run_payload(run), status=status.HTTP_201_CREATED)

    @extend_schema(responses=RunListSerializer, summary="Inference runs of a series")
    def get(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        runs = series.inference_runs.select_related("model").order_by("-created_at")
        return Response({"results": [inference_run_payload(r) for r in runs]})


class InferenceRunDetailApi(APIView):
    @extend_schema(responses=RunSerializer, summary="An inference run's state")
    def get(self, request, run_id: int):
        run = selectors.inference_run_get(user=request.user, run_id=run_id)
        return Response(inference_run_payload(run))


class InferenceRunCancelApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(request=None, responses={202: RunSerializer, 409: ErrorSerializer}, summary="Cancel a run")
    def post(self, request, run_id: int):
        run = selectors.inference_run_get(user=request.user, run_id=run_id)
        run = services.inference_run_cancel(user=request.user, run=run)
        return Response(inference_run_payload(run), status=status.HTTP_202_ACCEPTED)
