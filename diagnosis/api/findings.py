"""REST API of findings: list per study, detail, accept / reject / edit, and create by hand at a point.

Findings are read and decided by hospital staff of the study's hospital; writes are for clinicians.
Another hospital's study or finding is not found (404); a patient is refused (403).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors as annotation_selectors
from portal.api_errors import ServiceError
from portal.models import AuditLog
from portal.permissions import IsClinician, IsHospitalStaff
from portal.services import audit_record

from .. import selectors, services
from ..models import Finding


FindingSerializer = inline_serializer("Finding", {
    "id": serializers.IntegerField(),
    "study_id": serializers.IntegerField(),
    "series_id": serializers.IntegerField(),
    "kind": serializers.ChoiceField(choices=Finding.Kind.choices),
    "centroid_lps_mm": serializers.ListField(child=serializers.FloatField(), help_text="[x, y, z] LPS mm"),
    "centroid_voxel": serializers.ListField(child=serializers.IntegerField(), help_text="[k, j, i]"),
    "side": serializers.CharField(),
    "region": serializers.CharField(),
    "long_axis_mm": serializers.FloatField(allow_null=True),
    "short_axis_mm": serializers.FloatField(allow_null=True),
    "volume_ml": serializers.FloatField(allow_null=True),
    "mean_hu": serializers.FloatField(allow_null=True),
    "max_hu": serializers.FloatField(allow_null=True),
    "composition": serializers.CharField(),
    "solid_component_mm": serializers.FloatField(allow_null=True),
    "confidence": serializers.FloatField(allow_null=True),
    "source": serializers.ChoiceField(choices=Finding.Source.choices),
    "source_name": serializers.CharField(),
    "source_version": serializers.CharField(),
    "status": serializers.ChoiceField(choices=Finding.Status.choices),
    "decided_by": serializers.IntegerField(allow_null=True),
    "decided_at": serializers.DateTimeField(allow_null=True),
    "note": serializers.CharField(),
    "segmentation_id": serializers.IntegerField(allow_null=True),
    "segment_label": serializers.IntegerField(allow_null=True),
    "characteristics": serializers.DictField(),
    "details": serializers.DictField(),
})


class _StaffReadClinicianWrite(IsHospitalStaff):
    """Reads for hospital staff (doctors, annotators, admins); writes for clinicians."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return super().has_permission(request, view)
        return IsClinician().has_permission(request, view)


class StudyFindingsApi(APIView):
    permission_classes = [_StaffReadClinicianWrite]

    class FindingCreateInputSerializer(serializers.Serializer):
        series = serializers.IntegerField(help_text="The series whose grid the point is on.")
        kind = serializers.ChoiceField(choices=Finding.Kind.choices, default=Finding.Kind.LUNG_NODULE)
        centroid_lps_mm = serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3, required=False,
                                           help_text="The clicked point, [x, y, z] LPS mm.")
        centroid_voxel = serializers.ListField(child=serializers.IntegerField(), min_length=3, max_length=3,
                                               required=False, help_text="The clicked voxel, [k, j, i].")
        side = serializers.ChoiceField(choices=Finding.Side.choices, required=False)
        region = serializers.CharField(required=False, allow_blank=True, max_length=64)
        long_axis_mm = serializers.FloatField(required=False, min_value=0.0)
        short_axis_mm = serializers.FloatField(required=False, min_value=0.0)
        composition = serializers.ChoiceField(choices=Finding.Composition.choices, required=False)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

        def validate(self, data):
            if ("centroid_lps_mm" in data) == ("centroid_voxel" in data):
                raise serializers.ValidationError(_("Give the point either as centroid_lps_mm or as "
                                                    "centroid_voxel."))
            if "long_axis_mm" in data and "short_axis_mm" in data and data["short_axis_mm"] > data["long_axis_mm"]:
                raise serializers.ValidationError(_("The short axis cannot be longer than the long axis."))
            return data

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=Finding.Status.values, required=False)],
        responses=inline_serializer("FindingList", {"results": serializers.ListField(child=FindingSerializer)}),
        summary="Findings of a study, most confident first",
    )
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        wanted = request.query_params.get("status") or None
        if wanted and wanted not in Finding.Status.values:
            raise ServiceError(_("Unknown status %(wanted)r."), params={"wanted": wanted}, code="bad_status")
        findings = selectors.finding_list_for_study(user=request.user, study=study, status=wanted)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="findings", target_id=study.pk,
                     hospital=study.hospital)
        return Response({"results": [services.finding_payload(f) for f in findings]})

    @extend_schema(request=FindingCreateInputSerializer, responses={201: FindingSerializer},
                   summary="Place a finding by hand at a clicked point (mm or voxel index)")
    def post(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        serializer = self.FindingCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        series = annotation_selectors.series_get(user=request.user, series_id=data.pop("series"))
        if series.study_id != study.pk:
            raise ServiceError(_("This series belongs to another study."), code="series_mismatch")
        finding = services.finding_create(user=request.user, series=series, source=Finding.Source.MANUAL,
                                          source_name=request.user.username, **data)
        return Response(services.finding_payload(finding), status=status.HTTP_201_CREATED)


class FindingDetailApi(APIView):
    permission_classes = [_StaffReadClinicianWrite]

    class FindingEditInputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Finding.Kind.choices, required=False)
        side = serializers.ChoiceField(choices=Finding.Side.choices, required=False, allow_blank=True)
        region = serializers.CharField(required=False, allow_blank=True, max_length=64)
        long_axis_mm = serializers.FloatField(required=False, min_value=0.0)
        short_axis_mm = serializers.FloatField(required=False, min_value=0.0)
        volume_ml = serializers.FloatField(required=False, min_value=0.0)
        composition = serializers.ChoiceField(choices=Finding.Composition.choices, required=False, allow_blank=True)
        solid_component_mm = serializers.FloatField(required=False, min_value=0.0, allow_null=True)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(responses=FindingSerializer, summary="One finding")
    def get(self, request, finding_id: int):
        finding = selectors.finding_get(user=request.user, finding_id=finding_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="finding", target_id=finding.pk,
                     hospital=finding.study.hospital)
        return Response(services.finding_payload(finding))

    @extend_schema(request=FindingEditInputSerializer, responses=FindingSerializer,
                   summary="Correct a finding (its status becomes edited)")
    def patch(self, request, finding_id: int):
        finding = selectors.finding_get(user=request.user, finding_id=finding_id)
        serializer = self.FindingEditInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        finding = services.finding_edit(user=request.user, finding=finding, **serializer.validated_data)
        return Response(services.finding_payload(finding))


class FindingAcceptApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=None, responses=FindingSerializer, summary="Accept a finding")
    def post(self, request, finding_id: int):
        finding = selectors.finding_get(user=request.user, finding_id=finding_id)
        return Response(services.finding_payload(services.finding_accept(user=request.user, finding=finding)))


class FindingRejectApi(APIView):
    permission_classes = [IsClinician]

    class FindingRejectInputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(request=FindingRejectInputSerializer, responses=FindingSerializer, summary="Reject a finding")
    def post(self, request, finding_id: int):
        finding = selectors.finding_get(user=request.user, finding_id=finding_id)
        serializer = self.FindingRejectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        finding = services.finding_reject(user=request.user, finding=finding, **serializer.validated_data)
        return Response(services.finding_payload(finding))


class StudyFindingComparisonApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(
        responses=inline_serializer("FindingComparison", {
            "reference_source": serializers.CharField(allow_null=True),
            "detector": serializers.DictField(allow_null=True),
            "nodules": serializers.ListField(child=serializers.DictField(),
                                             help_text="per readers' nodule: outcome hit | missed"),
            "detections": serializers.ListField(child=serializers.DictField(),
                                                help_text="per detection: outcome hit | extra | ignored"),
            "summary": serializers.DictField(child=serializers.IntegerField()),
            "rule": serializers.CharField(),
        }),
        summary="The detector's findings compared with the readers' nodules (LUNA16 rule)",
    )
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        return Response(selectors.finding_comparison(user=request.user, study=study))


class StudyLungRadsApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(
        parameters=[OpenApiParameter("prior", int, required=False,
                                     description="An earlier study of the same patient, for new / growing nodules "
                                                 "(default: the latest prior this study was compared with)")],
        responses=inline_serializer("LungRadsSuggestion", {
            "category": serializers.CharField(), "rule_code": serializers.CharField(),
            "rule": serializers.CharField(), "source": serializers.CharField(),
            "nodules": serializers.ListField(child=serializers.DictField()),
            "unassessed": serializers.ListField(child=serializers.DictField()),
            "prior_study_id": serializers.IntegerField(allow_null=True),
            "prior_interval_months": serializers.FloatField(allow_null=True),
            "matching": serializers.ChoiceField(choices=["registered", "distance"], allow_null=True,
                                                help_text="How each nodule's prior nodule was found: the "
                                                          "stored comparison's matches, or centroid distance"),
            "registration_id": serializers.IntegerField(allow_null=True),
            "suggestion_only": serializers.BooleanField(),
        }),
        summary="Suggest a Lung-RADS v2022 category from the accepted nodules (nothing is stored)",
    )
    def get(self, request, study_id: int):
        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        prior = request.query_params.get("prior")
        prior_study = None
        if prior:
            if not prior.isdigit():
                raise ServiceError(_("prior is a study id."), code="invalid_request")
            prior_study = annotation_selectors.study_get(user=request.user, study_id=int(prior))
        return Response(selectors.lung_rads_suggestion(user=request.user, study=study, prior_study=prior_study))


class ReportLungRadsConfirmApi(APIView):
    permission_classes = [IsClinician]

    class LungRadsConfirmInputSerializer(serializers.Serializer):
        category = serializers.CharField(max_length=4, help_text="0, 1, 2, 3, 4A, 4B or 4X, optionally with S")
        rule = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    @extend_schema(request=LungRadsConfirmInputSerializer,
                   responses=inline_serializer("LungRadsConfirmed", {
                       "report_id": serializers.IntegerField(), "lung_rads": serializers.DictField()}),
                   summary="Record the Lung-RADS category the doctor confirms on a draft report")
    def post(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        serializer = self.LungRadsConfirmInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = services.report_lung_rads_confirm(user=request.user, report=report, **serializer.validated_data)
        return Response({"report_id": report.pk, "lung_rads": services.report_content(report)["lung_rads"]})
