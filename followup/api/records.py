"""The patient's own records: signed reports with a plain-language summary (and as PDF), studies and
their key images. Patients only; every read is audited."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.models import AuditLog
from portal.services import audit_record

from .. import selectors, services
from ..plain_summary import report_summary
from .common import READ_ERRORS, IsPatient

PLANES = ("axial", "coronal", "sagittal")


def report_payload(report, content: dict) -> dict:
    return {"id": report.pk, "version": report.version, "study_id": report.study_id,
            "signed_at": report.signed_at.isoformat() if report.signed_at else None,
            "signed_by": str(report.signed_by) if report.signed_by else None,
            "impression": content.get("impression", ""), "findings": content.get("findings", ""),
            "measurements": content.get("measurements", []),
            "summary": report_summary(content),
            "pdf_url": reverse("followup-api:my-report-pdf", args=[report.pk])}


class PatientReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    study_id = serializers.IntegerField()
    signed_at = serializers.DateTimeField(allow_null=True)
    signed_by = serializers.CharField(allow_null=True, help_text="The signing doctor's display name.")
    impression = serializers.CharField(allow_blank=True)
    findings = serializers.CharField(allow_blank=True)
    measurements = serializers.ListField(child=serializers.DictField(),
                                         help_text="One row per segment: name, name_zh, volume_ml, max_diameter_mm, …")
    summary = serializers.ListField(child=serializers.CharField(),
                                    help_text="The report in plain Chinese, one paragraph per item.")
    pdf_url = serializers.CharField()


class PatientReportListSerializer(serializers.Serializer):
    results = PatientReportSerializer(many=True)


class KeyImagesSerializer(serializers.Serializer):
    axial = serializers.CharField()
    coronal = serializers.CharField()
    sagittal = serializers.CharField()


class PatientStudySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    study_date = serializers.DateField(allow_null=True)
    description = serializers.CharField(allow_blank=True)
    modalities = serializers.ListField(child=serializers.CharField(), help_text="DICOM modalities of its series (CT, MR).")
    key_images = KeyImagesSerializer(help_text="The PNG address of each plane's key image.")


class PatientStudyListSerializer(serializers.Serializer):
    results = PatientStudySerializer(many=True)


class MyReportListApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(operation_id="followup_me_reports_list", responses={200: PatientReportListSerializer, **READ_ERRORS},
                   summary="My signed reports, with a plain-language summary")
    def get(self, request):
        from diagnosis.selectors import report_visible_queryset
        from diagnosis.services import report_content

        patient = selectors.patient_of_user(user=request.user)
        reports = (report_visible_queryset(request.user).filter(study__patient=patient)
                   .select_related("study", "study__hospital", "study__patient", "signed_by").order_by("-signed_at"))
        results = [report_payload(r, report_content(r)) for r in reports]
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="report_list", target_id=patient.pk,
                     detail={"reports": len(results)})
        return Response({"results": results})


class MyReportDetailApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={200: PatientReportSerializer, **READ_ERRORS},
                   summary="One of my reports with a plain-language summary")
    def get(self, request, report_id: int):
        from diagnosis.selectors import report_get
        from diagnosis.services import report_content

        report = report_get(user=request.user, report_id=report_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="report", target_id=report.pk,
                     hospital=report.study.hospital)
        return Response(report_payload(report, report_content(report)))


class MyReportPdfApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The signed report."),
                              **READ_ERRORS},
                   summary="One of my reports as PDF")
    def get(self, request, report_id: int):
        from diagnosis.selectors import report_get
        from diagnosis.services import report_pdf_bytes

        report = report_get(user=request.user, report_id=report_id)
        response = HttpResponse(report_pdf_bytes(user=request.user, report=report), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="report-{report.pk}-v{report.version}.pdf"'
        response["Cache-Control"] = "private, no-store"
        return response


class MyStudyListApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={200: PatientStudyListSerializer, **READ_ERRORS},
                   summary="My studies with links to their key images")
    def get(self, request):
        from annotation.selectors import study_list

        selectors.patient_of_user(user=request.user)
        studies = study_list(user=request.user)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_list", target_id="",
                     detail={"studies": len(studies)})
        return Response({"results": [{
            "id": s.pk, "study_date": s.study_date.isoformat() if s.study_date else None, "description": s.description,
            "modalities": sorted({x.modality for x in s.series.all()}),
            "key_images": {p: reverse("followup-api:my-study-key-image", args=[s.pk, p]) for p in PLANES},
        } for s in studies]})


class MyStudyKeyImageApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="A PNG image."),
                              **READ_ERRORS},
                   parameters=[OpenApiParameter("plane", str, OpenApiParameter.PATH, enum=PLANES)],
                   summary="A key image of my study (axial, coronal, sagittal)")
    def get(self, request, study_id: int, plane: str):
        from annotation.selectors import study_get

        study = study_get(user=request.user, study_id=study_id)
        if plane not in PLANES:
            raise ServiceError(_("The plane is axial, coronal or sagittal."), code="invalid_plane", status_code=404)
        keys = services.study_key_images(user=request.user, study=study)
        if not keys:
            raise ServiceError(_("This study has no image."), code="no_image", status_code=404)
        response = HttpResponse(services.stored_bytes(keys[plane]), content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response
