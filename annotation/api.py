"""REST API of the annotation app: one APIView per operation; selectors scope, services write."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital
from portal.permissions import IsHospitalStaff
from portal.services import audit_record

from . import selectors, services
from .events import inference_run_payload
from .models import Segmentation, SegmentationModel, Series, Study


def segmentation_payload(segmentation: Segmentation) -> dict:
    return {
        "id": segmentation.pk,
        "name": segmentation.name,
        "version": segmentation.version,
        "source": segmentation.source,
        "model": segmentation.model_id,
        "label_table": segmentation.label_table,
        "labelmap_url": reverse("segmentation-labelmap", args=[segmentation.pk]),
        "measurements_url": reverse("segmentation-measurements", args=[segmentation.pk]),
        "created_at": segmentation.created_at.isoformat(),
        "is_current": segmentation.is_current,
    }


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


ErrorSerializer = inline_serializer(
    "Error", {"error": inline_serializer("ErrorBody", {"code": serializers.CharField(), "message": serializers.CharField()})}
)
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


def _store_uploads(files, directory: Path) -> list[Path]:
    """Write uploaded files under their own base names; a repeated name goes to another folder,
    so an .mhd keeps its .raw beside it."""
    paths: list[Path] = []
    total = 0
    for upload in files:
        name = Path(upload.name).name
        if not name or name in {".", ".."}:
            raise ServiceError("An uploaded file has no usable name.", code="bad_filename")
        total += upload.size
        if total > settings.IMPORT_MAX_UPLOAD_BYTES:
            raise ServiceError("The upload is larger than this portal accepts.", code="upload_too_large", status_code=413)
        slot = 0
        while (directory / f"u{slot}" / name).exists():
            slot += 1
        target = directory / f"u{slot}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        paths.append(target)
    return paths


class StudyImportApi(APIView):
    """Upload DICOM files or zips, NIfTI, MetaImage (.mhd with .raw, or .mha) or NRRD as a study."""

    permission_classes = [IsHospitalStaff]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
        patient_mrn = serializers.CharField(max_length=64)
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
                raise ServiceError("Platform administrators must name the hospital.", code="hospital_required")
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
    @extend_schema(responses=StudyListSerializer, summary="Studies the user may see")
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


def model_payload(model: SegmentationModel) -> dict:
    return {
        "id": model.pk, "name": model.name, "version": model.version, "display_name": model.display_name,
        "body_part": model.body_part, "modality": model.modality, "architecture": model.architecture,
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

    @extend_schema(request=InputSerializer, responses={201: RunSerializer, 400: ErrorSerializer},
                   summary="Start one-click segmentation")
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


# --- workbench: versions, diffs, refinements, comparison -------------------------------------

def version_payload(segmentation: Segmentation) -> dict:
    """One version of a segmentation tree as the API returns it (no PHI: the author's display name only)."""
    author = segmentation.created_by
    return {
        **segmentation_payload(segmentation),
        "parent": segmentation.parent_id,
        "root": segmentation.root_id or segmentation.pk,
        "is_current": segmentation.is_current,
        "comment": segmentation.comment,
        "tool": segmentation.tool,
        "parameters": segmentation.parameters,
        "author": (author.display_name or author.username) if author else None,
        "series": segmentation.series_id,
        "review_status": segmentation.review_status,
        "label_set": segmentation.label_set_id,
        "layer_group": str(segmentation.layer_group) if segmentation.layer_group else None,
        "layer_index": segmentation.layer_index,
        "versions_url": reverse("segmentation-versions", args=[segmentation.pk]),
    }


VersionSerializer = inline_serializer("SegmentationVersion", {
    "id": serializers.IntegerField(), "version": serializers.IntegerField(),
    "parent": serializers.IntegerField(allow_null=True), "root": serializers.IntegerField(),
    "is_current": serializers.BooleanField(), "name": serializers.CharField(), "comment": serializers.CharField(),
    "tool": serializers.CharField(), "parameters": serializers.DictField(), "author": serializers.CharField(allow_null=True),
    "created_at": serializers.DateTimeField(), "label_table": serializers.ListField(child=serializers.DictField()),
})


class LabelTableField(serializers.ListField):
    child = serializers.DictField()


class SeriesSegmentationCreateApi(APIView):
    """Start an empty segmentation (a new version tree) on a series, to paint from scratch."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        label_table = LabelTableField(allow_empty=False)

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Create an empty segmentation")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segmentation = services.segmentation_create_blank(user=request.user, series=series, **serializer.validated_data)
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationVersionsApi(APIView):
    """The version tree of a segmentation; POST saves a browser diff as a new version (a branch
    when the parent is not the newest)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        diff = serializers.DictField(help_text='{"format": "runs-v1", "shape": [K, J, I], "runs": base64(zlib(uint32 LE (start, length, value)...))}')
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
        tool = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        locked_labels = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
        label_table = LabelTableField(required=False, allow_null=True, default=None)

    @extend_schema(responses=inline_serializer("SegmentationVersionList", {"results": VersionSerializer}),
                   summary="Versions of a segmentation (its whole tree)")
    def get(self, request, segmentation_id: int):
        versions = selectors.segmentation_versions(user=request.user, segmentation_id=segmentation_id)
        return Response({"results": [version_payload(v) for v in versions]})

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Save an edit (sparse diff) as a new version")
    def post(self, request, segmentation_id: int):
        parent = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segmentation = services.segmentation_save_diff(user=request.user, parent=parent, **serializer.validated_data)
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationRefineApi(APIView):
    """Run a server-side refinement on a version; the result is a new version."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        operation = serializers.ChoiceField(choices=["largest_component", "remove_small_components", "fill_holes",
                                                     "opening", "closing", "restrict_to_mask"])
        params = serializers.DictField(required=False, default=dict)
        mask_segmentation = serializers.IntegerField(required=False, allow_null=True, default=None)
        comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Refine a segmentation (new version)")
    def post(self, request, segmentation_id: int):
        parent = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        mask = None
        if data["mask_segmentation"] is not None:
            mask = selectors.segmentation_get(user=request.user, segmentation_id=data["mask_segmentation"])
        segmentation = services.segmentation_refine(
            user=request.user, parent=parent, operation=data["operation"], params=data["params"],
            mask_segmentation=mask, comment=data["comment"],
        )
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationMakeCurrentApi(APIView):
    """Roll back: make this (older) version the current one of its tree."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(request=None, responses={200: VersionSerializer}, summary="Make a version current (roll back)")
    def post(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        segmentation = services.segmentation_make_current(user=request.user, segmentation=segmentation)
        return Response(version_payload(segmentation))


class SegmentationCompareApi(APIView):
    """Compare two segmentations of one series: per-label voxels added and removed, and Dice."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: inline_serializer("SegmentationComparison", {
        "a": serializers.IntegerField(), "b": serializers.IntegerField(),
        "labels": serializers.ListField(child=serializers.DictField())}), 400: ErrorSerializer},
        summary="Compare two versions")
    def get(self, request, segmentation_id: int, other_id: int):
        result = selectors.segmentation_compare(user=request.user, segmentation_id=segmentation_id, other_id=other_id)
        names = {int(e["index"]): e.get("name", "") for e in result["a"].label_table + result["b"].label_table}
        return Response({
            "a": result["a"].pk, "b": result["b"].pk,
            "labels": [{**entry, "name": names.get(entry["label"], "")} for entry in result["labels"]],
            "changes_url": reverse("segmentation-compare-changes", args=[result["a"].pk, result["b"].pk]),
        })


class SegmentationCompareChangesApi(APIView):
    """The difference between two versions as a label map for the viewer (1 added, 2 removed)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={(200, "application/gzip"): bytes}, summary="Difference map of two versions (NIfTI)")
    def get(self, request, segmentation_id: int, other_id: int):
        data, filename = services.segmentation_change_map_nifti(user=request.user, segmentation_id=segmentation_id,
                                                                other_id=other_id)
        return _bytes_response(data, filename, "application/gzip")


def _bytes_response(data: bytes, filename: str, content_type: str, *, attachment: bool = False):
    from django.http import HttpResponse

    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'{"attachment" if attachment else "inline"}; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- workbench: export and import --------------------------------------------------------------

class SegmentationExportApi(APIView):
    """Download a segmentation version as NIfTI, JSON or DICOM SEG."""

    permission_classes = [IsHospitalStaff]

    # "type", not "format": DRF reserves ?format= for choosing a renderer.
    @extend_schema(parameters=[OpenApiParameter("type", str, enum=list(services.EXPORT_FORMATS))],
                   responses={(200, "application/octet-stream"): bytes, 400: ErrorSerializer},
                   summary="Export a segmentation")
    def get(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        data, filename, content_type = services.segmentation_export(
            user=request.user, segmentation=segmentation, fmt=request.query_params.get("type", "nifti_gz"))
        return _bytes_response(data, filename, content_type, attachment=True)


class StudiesExportApi(APIView):
    """Export the current segmentations of many studies as one zip with a manifest."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        studies = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=500)
        formats = serializers.ListField(child=serializers.ChoiceField(choices=list(services.EXPORT_FORMATS)),
                                        allow_empty=False)

    @extend_schema(request=InputSerializer, responses={(200, "application/zip"): bytes, 400: ErrorSerializer},
                   summary="Export many studies as one zip")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        studies = [selectors.study_get(user=request.user, study_id=pk) for pk in serializer.validated_data["studies"]]
        data = services.studies_export_zip(user=request.user, studies=studies, formats=serializer.validated_data["formats"])
        return _bytes_response(data, "segmentations.zip", "application/zip", attachment=True)


class SegmentationImportApi(APIView):
    """Import a label map (NIfTI, NRRD, MetaImage or DICOM SEG) onto a series."""

    permission_classes = [IsHospitalStaff]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        name = serializers.CharField(max_length=190, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Import a label map onto a series")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data={"file": request.FILES.get("file"), "name": request.data.get("name", "")})
        serializer.is_valid(raise_exception=True)
        directory = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.VAR_DIR))
        try:
            [path] = _store_uploads([serializer.validated_data["file"]], directory)
            created = services.segmentation_import(user=request.user, series=series, path=path,
                                                   name=serializer.validated_data["name"])
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return Response({"results": [version_payload(s) for s in created]}, status=status.HTTP_201_CREATED)


class DatasetImportApi(APIView):
    """Import a zipped labelled dataset (MSD / nnU-Net layout) into the user's hospital."""

    permission_classes = [IsHospitalStaff]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="zip holding dataset.json, imagesTr/ and labelsTr/")
        limit = serializers.IntegerField(required=False, min_value=1, allow_null=True, default=None)
        mrn_prefix = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: inline_serializer("DatasetImportResult", {
        "study_ids": serializers.ListField(child=serializers.IntegerField()),
        "segmentation_ids": serializers.ListField(child=serializers.IntegerField())}), 400: ErrorSerializer},
        summary="Import an MSD / nnU-Net dataset")
    def post(self, request):
        from .imaging.archive import ArchiveLimits, extract_zip

        if request.user.hospital is None:
            raise ServiceError("Platform administrators import datasets with the import_labelled_dataset command.",
                               code="hospital_required")
        serializer = self.InputSerializer(data={"file": request.FILES.get("file"), **{
            k: request.data[k] for k in ("limit", "mrn_prefix") if request.data.get(k) not in (None, "")}})
        serializer.is_valid(raise_exception=True)
        directory = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.VAR_DIR))
        try:
            [archive] = _store_uploads([serializer.validated_data["file"]], directory)
            limits = ArchiveLimits(max_total_bytes=settings.IMPORT_MAX_ARCHIVE_BYTES,
                                   max_files=settings.IMPORT_MAX_ARCHIVE_FILES,
                                   max_ratio=settings.IMPORT_MAX_COMPRESSION_RATIO)
            files = extract_zip(archive, directory / "dataset", limits)
            manifests = [f for f in files if f.name == "dataset.json"]
            if len(manifests) != 1:
                raise ServiceError("The zip must hold exactly one dataset.json (MSD or nnU-Net layout).", code="bad_dataset")
            result = services.dataset_import(user=request.user, hospital=request.user.hospital, root=manifests[0].parent,
                                             limit=serializer.validated_data["limit"],
                                             mrn_prefix=serializer.validated_data["mrn_prefix"])
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return Response({
            "study_ids": [s.pk for s in result.studies], "segmentation_ids": [s.pk for s in result.segmentations],
            "skipped": result.skipped,
        }, status=status.HTTP_201_CREATED)


class SegmentationModelBundleApi(APIView):
    """Download a registered model as a MONAI bundle (zip, with TorchScript in models/model.ts)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={(200, "application/zip"): bytes, 400: ErrorSerializer}, summary="Export a model as a MONAI bundle")
    def get(self, request, model_id: int):
        model = selectors.segmentation_model_get(user=request.user, model_id=model_id)
        data, filename = services.segmentation_model_export_bundle(user=request.user, model=model)
        return _bytes_response(data, filename, "application/zip", attachment=True)


# --- workbench: label sets and searches -------------------------------------------------------------

def label_set_payload(label_set) -> dict:
    return {
        "id": label_set.pk, "name": label_set.name, "project": label_set.project, "description": label_set.description,
        "allow_overlap": label_set.allow_overlap, "hospital": label_set.hospital.code,
        "labels": [{**label.to_entry(), "id": label.pk} for label in label_set.labels.all()],
    }


class LabelInputSerializer(serializers.Serializer):
    index = serializers.IntegerField(min_value=1, max_value=65535)
    name = serializers.CharField(max_length=100, required=False)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    snomed_code = serializers.CharField(max_length=20, required=False, allow_blank=True)
    snomed_meaning = serializers.CharField(max_length=100, required=False, allow_blank=True)


class LabelSetListApi(APIView):
    """Label sets of the user's hospital; POST creates one (clinicians and annotators)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        project = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        description = serializers.CharField(required=False, allow_blank=True, default="")
        allow_overlap = serializers.BooleanField(required=False, default=False)
        labels = LabelInputSerializer(many=True, required=False, default=list)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Label sets")
    def get(self, request):
        return Response({"results": [label_set_payload(s) for s in selectors.label_set_list(user=request.user)]})

    @extend_schema(request=InputSerializer, responses={201: None, 400: ErrorSerializer, 409: ErrorSerializer},
                   summary="Create a label set")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if request.user.hospital is None:
            raise ServiceError("Label sets belong to a hospital.", code="hospital_required")
        label_set = services.label_set_create(user=request.user, hospital=request.user.hospital, **serializer.validated_data)
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set.pk)
        return Response(label_set_payload(label_set), status=status.HTTP_201_CREATED)


class LabelSetDetailApi(APIView):
    """Read, rename or describe a label set; POST to /labels/ adds or edits one label."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        project = serializers.CharField(max_length=100, required=False, allow_blank=True)
        description = serializers.CharField(required=False, allow_blank=True)
        allow_overlap = serializers.BooleanField(required=False)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="A label set")
    def get(self, request, label_set_id: int):
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Rename or describe a label set")
    def patch(self, request, label_set_id: int):
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.label_set_update(user=request.user, label_set=label_set, **serializer.validated_data)
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))


class LabelUpsertApi(APIView):
    """Add a label to a set, or rename / recolour / describe / code an existing one (by value)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=LabelInputSerializer, summary="Add or edit a label")
    def post(self, request, label_set_id: int):
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set_id)
        serializer = LabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        services.label_upsert(user=request.user, label_set=label_set, index=data.pop("index"), **data)
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))


class SeriesLabelSetSegmentationApi(APIView):
    """Start empty segmentations on a series from a label set (one layer per label when overlap is allowed)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        label_set = serializers.IntegerField()
        name = serializers.CharField(max_length=180, required=False, allow_blank=True, default="")

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Create segmentations from a label set")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label_set = selectors.label_set_get(user=request.user, label_set_id=serializer.validated_data["label_set"])
        created = services.segmentation_create_from_label_set(user=request.user, series=series, label_set=label_set,
                                                              name=serializer.validated_data["name"])
        return Response({"results": [version_payload(s) for s in created]}, status=status.HTTP_201_CREATED)


class LabelSearchApi(APIView):
    """Which studies have label X, and which models produce it (by name or SNOMED CT code)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, parameters=[OpenApiParameter("name", str), OpenApiParameter("snomed_code", str)],
                   summary="Search studies and models by label")
    def get(self, request):
        name = request.query_params.get("name", "").strip()
        code = request.query_params.get("snomed_code", "").strip()
        if not name and not code:
            raise ServiceError("Give a label name or a SNOMED CT code.", code="invalid_input")
        studies = selectors.studies_with_label(user=request.user, name=name, snomed_code=code)
        models = selectors.models_with_label(user=request.user, name=name, snomed_code=code)
        return Response({
            "studies": [{"id": s.pk, "description": s.description, "url": reverse("annotation:study-detail", args=[s.pk])}
                        for s in studies],
            "models": [{"id": m.pk, "name": m.name, "version": m.version, "display_name": m.display_name} for m in models],
        })


# --- workbench: review workflow -------------------------------------------------------------------------

def comment_payload(comment) -> dict:
    return {"id": comment.pk, "segmentation": comment.segmentation_id, "decision": comment.decision, "text": comment.text,
            "author": str(comment.author) if comment.author else None, "created_at": comment.created_at.isoformat()}


class StudyAssignmentsApi(APIView):
    """Assignments of a study; POST assigns it to an annotator of the hospital (doctors only)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        annotator = serializers.IntegerField()
        review_only = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Assignments of a study")
    def get(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        return Response({"results": [
            {"id": a.pk, "annotator": a.annotator_id, "annotator_name": str(a.annotator), "status": a.status,
             "review_only": a.review_only} for a in selectors.assignment_list(user=request.user, study=study)]})

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Assign a study to an annotator")
    def post(self, request, study_id: int):
        from portal.models import User
        from portal.permissions import is_clinician

        study = selectors.study_get(user=request.user, study_id=study_id)
        if not is_clinician(request.user):
            raise ServiceError("Only doctors assign studies.", code="not_reviewer", status_code=403)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        annotator = User.objects.filter(pk=serializer.validated_data["annotator"]).first()
        if annotator is None:
            raise ServiceError("No such user.", code="bad_annotator")
        assignment = services.study_assign(user=request.user, study=study, annotator=annotator,
                                           review_only=serializer.validated_data["review_only"])
        return Response({"id": assignment.pk, "status": assignment.status, "review_only": assignment.review_only},
                        status=status.HTTP_201_CREATED)


class MyAssignmentsApi(APIView):
    """The studies assigned to the signed-in annotator (or, for doctors, their hospital's)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Assigned studies")
    def get(self, request):
        return Response({"results": [
            {"id": a.pk, "study": a.study_id, "annotator": a.annotator_id, "status": a.status, "review_only": a.review_only,
             "url": reverse("annotation:study-detail", args=[a.study_id])}
            for a in selectors.assignment_list(user=request.user)]})


class SegmentationReviewApi(APIView):
    """Submit a version for review, or approve / reject it with a comment."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=["submit", "approve", "reject"])
        text = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: None, 403: ErrorSerializer, 409: ErrorSerializer},
                   summary="Review a version")
    def post(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = services.segmentation_review(user=request.user, segmentation=segmentation, **serializer.validated_data)
        return Response({**comment_payload(comment), "review_status": segmentation.review_status},
                        status=status.HTTP_201_CREATED)


class StudyReviewApi(APIView):
    """Comments and review decisions on a study, and the annotators' agreement (Dice per label)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(max_length=4000)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Review comments and inter-annotator agreement")
    def get(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        agreement = selectors.study_agreement(user=request.user, study_id=study.pk)
        return Response({"comments": [comment_payload(c) for c in selectors.review_comments(study=study)],
                         "agreement": agreement["series"]})

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Comment on a study")
    def post(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = services.review_comment_add(user=request.user, study=study, text=serializer.validated_data["text"])
        return Response(comment_payload(comment), status=status.HTTP_201_CREATED)


# --- workbench: active learning --------------------------------------------------------------------------

class ActiveLearningApi(APIView):
    """GET: unlabelled studies ranked by the model's uncertainty (scored ones first); POST: queue scoring."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        model = serializers.IntegerField()
        method = serializers.ChoiceField(choices=["entropy", "mc_dropout"], default="entropy")
        limit = serializers.IntegerField(min_value=1, max_value=200, default=20)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, parameters=[OpenApiParameter("model", int), OpenApiParameter("method", str)],
                   summary="Next studies to annotate")
    def get(self, request):
        model_id = request.query_params.get("model", "")
        if not model_id.isdigit():
            raise ServiceError("Give the model id.", code="invalid_input")
        model = selectors.segmentation_model_get(user=request.user, model_id=int(model_id))
        method = request.query_params.get("method", "entropy")
        scores = selectors.uncertainty_ranking(user=request.user, model=model, method=method)
        return Response({"model": model.pk, "method": method, "results": [
            {"series": s.series_id, "study": s.series.study_id, "score": s.score, "details": s.details,
             "computed_at": s.computed_at.isoformat(), "url": reverse("annotation:study-detail", args=[s.series.study_id])}
            for s in scores]})

    @extend_schema(request=InputSerializer, responses={202: None}, summary="Score unlabelled series for active learning")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = selectors.segmentation_model_get(user=request.user, model_id=serializer.validated_data["model"])
        series_ids = services.uncertainty_rank_start(user=request.user, model=model,
                                                     method=serializer.validated_data["method"],
                                                     limit=serializer.validated_data["limit"])
        return Response({"queued_series": series_ids}, status=status.HTTP_202_ACCEPTED)


# drf-spectacular names request components after the serializer class; every view's nested
# "InputSerializer" would become the same "InputRequest" component, so give each its own name.
for _view in list(globals().values()):
    if isinstance(_view, type) and issubclass(_view, APIView) and "InputSerializer" in _view.__dict__:
        extend_schema_serializer(component_name=f"{_view.__name__.removesuffix('Api')}Input")(_view.InputSerializer)
