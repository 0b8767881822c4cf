"""REST API of the diagnosis app: measurements and reports."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors as annotation_selectors
from portal.models import AuditLog
from portal.permissions import IsClinician, IsClinicianOrReadOnly, IsHospitalStaff
from portal.selectors import hospital_review_threshold
from portal.services import audit_record

from .. import selectors, services

ReportSerializer = inline_serializer(
    "Report", {"report_id": serializers.IntegerField(), "version": serializers.IntegerField(),
               "status": serializers.CharField(), "findings": serializers.CharField(),
               "impression": serializers.CharField(),
               "accepted_findings": serializers.ListField(
                   child=serializers.DictField(), help_text="The findings table: the study's accepted findings."),
               "lung_rads_suggestion": serializers.DictField(
                   allow_null=True, help_text="The suggested Lung-RADS v2022 category, rule and source (not stored)."),
               "lung_rads": serializers.DictField(allow_null=True, help_text="The category the doctor confirmed.")},
)


_MEASUREMENT_FIELDS = {
    "label": serializers.IntegerField(help_text="The segment's value in the label map."),
    "name": serializers.CharField(), "name_zh": serializers.CharField(allow_blank=True), "color": serializers.CharField(),
    "voxel_count": serializers.IntegerField(), "volume_ml": serializers.FloatField(),
    "surface_area_mm2": serializers.FloatField(), "surface_area_crofton_mm2": serializers.FloatField(allow_null=True),
    "max_diameter_mm": serializers.FloatField(), "axial_long_mm": serializers.FloatField(),
    "axial_short_mm": serializers.FloatField(), "component_count": serializers.IntegerField(),
    "mean_intensity": serializers.FloatField(allow_null=True, help_text="Mean HU on CT."),
    "std_intensity": serializers.FloatField(allow_null=True),
    "centroid_lps_mm": serializers.ListField(child=serializers.FloatField(), help_text="Patient LPS coordinates."),
    "confidence": serializers.FloatField(
        allow_null=True, help_text="The network's mean confidence in the segment (1 - mean normalised entropy), 0–1."),
    "low_confidence": serializers.BooleanField(help_text="Below the hospital's review threshold."),
}


class SegmentationMeasurementsApi(APIView):
    # Working material of the staff; a patient reads the measurements in their signed reports.
    permission_classes = [IsHospitalStaff]

    @extend_schema(responses=inline_serializer("SegmentationMeasurements", {
                       "segmentation_id": serializers.IntegerField(), "segments": inline_serializer("SegmentMeasurement", _MEASUREMENT_FIELDS, many=True)}),
                   summary="Measurements of each segment (volume mL, diameters mm, HU)")
    def get(self, request, segmentation_id: int):
        segmentation = annotation_selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        rows = selectors.measurement_list(segmentation=segmentation)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="measurements",
                     target_id=segmentation.pk, hospital=segmentation.series.study.hospital)
        return Response({
            "segmentation_id": segmentation.pk,
            "segments": [services.measurement_payload(
                r, segmentation.label_table, segmentation.label_confidence,
                review_threshold=hospital_review_threshold(segmentation.series.study.hospital)) for r in rows],
        })


class StudyReportsApi(APIView):
    permission_classes = [IsClinicianOrReadOnly]

    @extend_schema_serializer(component_name="ReportCreateInput")
    class InputSerializer(serializers.Serializer):
        segmentation = serializers.IntegerField(required=False)

    @extend_schema(responses=inline_serializer("ReportList", {"results": serializers.ListField(child=serializers.DictField())}), summary="Reports of a study")
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        reports = selectors.report_list_for_study(user=request.user, study=study)
        return Response({"results": [services.report_content(r) for r in reports]})

    @extend_schema(request=InputSerializer, responses={201: ReportSerializer}, summary="Start a draft report")
    def post(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segmentation = None
        if "segmentation" in serializer.validated_data:
            segmentation = annotation_selectors.segmentation_get(
                user=request.user, segmentation_id=serializer.validated_data["segmentation"])
        report = services.report_create_draft(user=request.user, study=study, segmentation=segmentation)
        return Response(services.report_content(report), status=status.HTTP_201_CREATED)


class ReportDetailApi(APIView):
    permission_classes = [IsClinicianOrReadOnly]

    @extend_schema_serializer(component_name="ReportEditInput")
    class InputSerializer(serializers.Serializer):
        findings = serializers.CharField(required=False, allow_blank=True, max_length=20000)
        impression = serializers.CharField(required=False, allow_blank=True, max_length=20000)

    @extend_schema(responses=ReportSerializer, summary="A report's structured content")
    def get(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="report", target_id=report.pk,
                     hospital=report.study.hospital)
        return Response(services.report_content(report))

    @extend_schema(request=InputSerializer, responses=ReportSerializer, summary="Edit a draft report")
    def patch(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = services.report_update(user=request.user, report=report, **serializer.validated_data)
        return Response(services.report_content(report))


class ReportFinalizeApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=None, responses=ReportSerializer, summary="Sign a draft report (it never changes again)")
    def post(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        report = services.report_finalize(user=request.user, report=report)
        return Response(services.report_content(report))


class ReportAmendApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=None, responses={201: ReportSerializer}, summary="Amend a final report (new version)")
    def post(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        amendment = services.report_amend(user=request.user, report=report)
        return Response(services.report_content(amendment), status=status.HTTP_201_CREATED)


class ReportPdfApi(APIView):
    @extend_schema(responses={(200, "application/pdf"): bytes}, summary="The report as PDF")
    def get(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        pdf = services.report_pdf_bytes(user=request.user, report=report)
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="report-{report.pk}-v{report.version}.pdf"'
        response["Cache-Control"] = "private, no-store"
        return response
