"""REST API of a study compared with its prior: the stored comparison, and the doctor's re-linking and
unlinking of finding pairs. The comparison itself is made by ``manage.py compare`` (registration is
CPU work that does not belong in a request).

Reads are for hospital staff of the study's hospital, writes for clinicians; another hospital's study,
comparison or finding is not found (404); a patient is refused (403).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.models import AuditLog
from portal.permissions import IsClinician, IsClinicianOrPatient, IsHospitalStaff
from portal.services import audit_record

from .. import selectors, services

StudyComparisonSerializer = inline_serializer("StudyComparison", {
    "registration_id": serializers.IntegerField(),
    "study_id": serializers.IntegerField(),
    "prior_study_id": serializers.IntegerField(),
    "series_id": serializers.IntegerField(),
    "prior_series_id": serializers.IntegerField(),
    "study_date": serializers.DateField(allow_null=True),
    "prior_study_date": serializers.DateField(allow_null=True),
    "interval_days": serializers.IntegerField(allow_null=True),
    "registration": serializers.DictField(help_text="method, transform (matrix_lps_mm: prior → study frame, "
                                                    "SimpleITK parameters) and quality figures"),
    "matches": serializers.ListField(child=serializers.DictField(),
                                     help_text="per matched finding or segment: volumes, change, VDT, axes, "
                                               "mean HU and centroids (LPS mm) at both time points"),
    "new": serializers.ListField(child=serializers.DictField()),
    "resolved": serializers.ListField(child=serializers.DictField()),
    "rule": serializers.CharField(),
    "updated_at": serializers.DateTimeField(),
})


class StudyComparisonApi(APIView):
    def get_permissions(self):
        return [IsClinician()] if self.request.method == "POST" else [IsHospitalStaff()]

    @extend_schema(request=None, responses={202: inline_serializer("StudyComparisonQueued", {
                       "queued": serializers.BooleanField(), "study_id": serializers.IntegerField(),
                       "prior_study_id": serializers.IntegerField()})},
                   summary="Compare a study with a prior on a worker (register, then match findings)")
    def post(self, request, study_id: int, prior_id: int):
        from annotation import selectors as annotation_selectors

        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        prior = annotation_selectors.study_get(user=request.user, study_id=prior_id)
        services.study_compare_request(user=request.user, study=study, prior=prior)
        return Response({"queued": True, "study_id": study.pk, "prior_study_id": prior.pk},
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=StudyComparisonSerializer, summary="A study compared with a prior (as stored)")
    def get(self, request, study_id: int, prior_id: int):
        registration = selectors.study_registration_get(user=request.user, study_id=study_id, prior_id=prior_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_registration",
                     target_id=registration.pk, hospital=registration.study.hospital)
        return Response(selectors.study_comparison_payload(registration))


class StudyGrowthApi(APIView):
    """Figures over time of a study's matched findings and segments (the line charts): live for the
    clinicians of its hospital; for the patient, only what their latest signed report froze."""

    permission_classes = [IsClinicianOrPatient]

    @extend_schema(responses=inline_serializer("StudyGrowth", {
                       "study_id": serializers.IntegerField(),
                       "figures": serializers.ListField(child=serializers.DictField(), help_text="key and unit"),
                       "series": serializers.ListField(
                           child=serializers.DictField(),
                           help_text="per matched finding or segment: points (study date, t_ms, volume_ml, "
                                     "long_axis_mm, short_axis_mm, mean_hu and their change from the point "
                                     "before, absolute and %) and the total change"),
                       "source": serializers.ChoiceField(choices=["live", "signed_report"]),
                       "report_id": serializers.IntegerField(allow_null=True)}),
                   summary="Figures over time of a study's matched findings and segments")
    def get(self, request, study_id: int):
        from ..selectors_growth import study_growth_for

        body = study_growth_for(user=request.user, study_id=study_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_growth",
                     target_id=study_id, detail={"source": body["source"]})
        return Response(body)


class StudyComparisonPriorVolumeApi(APIView):
    """The prior of a stored comparison on the current series' grid (NIfTI), for the linked comparison view."""

    permission_classes = [IsClinician]

    @extend_schema(responses={(200, "application/gzip"): bytes},
                   summary="The prior volume registered onto the study's grid (NIfTI)")
    def get(self, request, study_id: int, prior_id: int):
        from django.http import HttpResponse

        registration = selectors.study_registration_get(user=request.user, study_id=study_id, prior_id=prior_id)
        data = selectors.registered_prior_volume_nifti(registration=registration)
        audit_record(actor=request.user, action=AuditLog.Action.DOWNLOAD, target_type="series",
                     target_id=registration.prior_series_id, hospital=registration.study.hospital,
                     detail={"registered_onto_series": registration.series_id, "registration": registration.pk})
        response = HttpResponse(data, content_type="application/gzip")
        response["Content-Disposition"] = f'inline; filename="prior-{registration.prior_series_id}-registered.nii.gz"'
        return response


class StudyComparisonLinkApi(APIView):
    permission_classes = [IsClinician]

    class LinkInputSerializer(serializers.Serializer):
        prior_finding = serializers.IntegerField(help_text="a finding of the prior study")
        finding = serializers.IntegerField(help_text="a finding of this study")

    @extend_schema(request=LinkInputSerializer, responses={201: StudyComparisonSerializer},
                   summary="Link a prior finding with a finding of this study by hand")
    def post(self, request, study_id: int, prior_id: int):
        registration = selectors.study_registration_get(user=request.user, study_id=study_id, prior_id=prior_id)
        serializer = self.LinkInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prior_finding = selectors.finding_get(user=request.user, finding_id=serializer.validated_data["prior_finding"])
        finding = selectors.finding_get(user=request.user, finding_id=serializer.validated_data["finding"])
        services.finding_match_link(user=request.user, registration=registration, prior_finding=prior_finding,
                                    finding=finding)
        return Response(selectors.study_comparison_payload(registration), status=status.HTTP_201_CREATED)


class FindingMatchUnlinkApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=None, responses=StudyComparisonSerializer,
                   summary="Unlink a pair: the prior finding becomes resolved, the current one new")
    def post(self, request, match_id: int):
        match = selectors.finding_match_get(user=request.user, match_id=match_id)
        services.finding_match_unlink(user=request.user, match=match)
        return Response(selectors.study_comparison_payload(match.registration))
