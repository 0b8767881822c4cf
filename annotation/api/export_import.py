"""Workbench: export and import. Download a segmentation version (NIfTI, JSON or DICOM SEG) or the current
segmentations of many studies as one zip, import a label map onto a series or a zipped MSD / nnU-Net
dataset into the user's hospital, and download a registered model as a MONAI bundle."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.permissions import IsHospitalStaff

from .. import selectors, services
from .common import ErrorSerializer, VersionSerializer, _bytes_response, _store_uploads, version_payload


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
        deidentified = serializers.BooleanField(
            required=False, default=False,
            help_text="De-identified (DICOM PS3.15 Basic Profile, Modified Dates Option): the patient's research "
                      "pseudonym and remapped study/series UIDs, no portal id, MRN, name or accession number.")

    @extend_schema(request=InputSerializer, responses={(200, "application/zip"): bytes, 400: ErrorSerializer},
                   summary="Export many studies as one zip")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        studies = [selectors.study_get(user=request.user, study_id=pk) for pk in serializer.validated_data["studies"]]
        data = services.studies_export_zip(user=request.user, studies=studies, formats=serializer.validated_data["formats"],
                                           deidentified=serializer.validated_data["deidentified"])
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
        from ..imaging.archive import ArchiveLimits, extract_zip

        if request.user.hospital is None:
            raise ServiceError(_("Platform administrators import datasets with the import_labelled_dataset "
                                 "command."),
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
                raise ServiceError(_("The zip must hold exactly one dataset.json (MSD or nnU-Net layout)."),
                                   code="bad_dataset")
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
