"""REST API of radiologists' reads: upload an LIDC-IDRI XML read or a LUNA16-style annotations.csv for
a series. Doctors only; another hospital's series is not found (404)."""

from __future__ import annotations

import shutil

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors as annotation_selectors
from annotation.storage import work_dir
from portal.api_errors import ServiceError
from portal.permissions import IsClinician

from .. import services
from .findings import FindingSerializer

MAX_READS_BYTES = 20 * 1024 * 1024

ReadsImportSerializer = inline_serializer("ReadsImport", {
    "series_id": serializers.IntegerField(),
    "segmentations": serializers.ListField(child=inline_serializer("ReadsSegmentation", {
        "id": serializers.IntegerField(), "name": serializers.CharField()})),
    "nodules": serializers.ListField(child=inline_serializer("ReadNodule", {
        "finding_id": serializers.IntegerField(), "agreement": serializers.IntegerField(),
        "readers": serializers.ListField(child=serializers.IntegerField()), "diameter_mm": serializers.FloatField()})),
    "findings": serializers.ListField(child=FindingSerializer.__class__()),
})


class _UploadSerializer(serializers.Serializer):
    file = serializers.FileField()


def _with_upload(request, suffix: str, action):
    serializer = _UploadSerializer(data={"file": request.FILES.get("file")})
    serializer.is_valid(raise_exception=True)
    upload = serializer.validated_data["file"]
    if upload.size > MAX_READS_BYTES:
        raise ServiceError(_("The file is larger than %(max_reads_bytes)s MB."),
                           params={"max_reads_bytes": MAX_READS_BYTES // (1024 * 1024)}, code="too_large")
    directory = work_dir()
    try:
        path = directory / f"reads{suffix}"
        with open(path, "wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        return action(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class SeriesLidcReadsApi(APIView):
    permission_classes = [IsClinician]
    parser_classes = [MultiPartParser]

    @extend_schema(request=_UploadSerializer, responses={201: ReadsImportSerializer},
                   summary="Import an LIDC-IDRI XML read of a series (label map per reader, findings, consensus)")
    def post(self, request, series_id: int):
        series = annotation_selectors.series_get(user=request.user, series_id=series_id)
        result = _with_upload(request, ".xml",
                              lambda path: services.lidc_reads_import(user=request.user, series=series, xml_path=path))
        return Response(services.reads_import_payload(series=series, result=result), status=status.HTTP_201_CREATED)


class SeriesLuna16AnnotationsApi(APIView):
    permission_classes = [IsClinician]
    parser_classes = [MultiPartParser]

    @extend_schema(request=_UploadSerializer,
                   responses={201: inline_serializer("Luna16Import", {"findings": serializers.ListField(child=FindingSerializer.__class__())})},
                   summary="Import the rows of a LUNA16-style annotations.csv for a series as point findings")
    def post(self, request, series_id: int):
        series = annotation_selectors.series_get(user=request.user, series_id=series_id)
        findings = _with_upload(
            request, ".csv", lambda path: services.luna16_annotations_import(user=request.user, series=series, csv_path=path))
        return Response({"findings": [services.finding_payload(f) for f in findings]}, status=status.HTTP_201_CREATED)
