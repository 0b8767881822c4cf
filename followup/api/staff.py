"""The staff's overview: the hospital's patients to follow up, patient groups (cohorts) and the patients
needing attention (overdue items, worrying scores, unread messages)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ErrorSerializer
from portal.permissions import IsClinician

from .. import selectors, services
from .common import ERRORS, PatientBriefSerializer


class PatientGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="Number of patients.")


class PatientGroupListSerializer(serializers.Serializer):
    results = PatientGroupSerializer(many=True)


class AttentionReasonSerializer(serializers.Serializer):
    """Why a patient needs attention; the fields beside ``code`` depend on it."""

    code = serializers.CharField(help_text="overdue_reexam, overdue_medication, overdue_questionnaire, score or "
                                           "unread_messages.")
    title = serializers.CharField(required=False, help_text="The plan item or questionnaire (overdue_*, score).")
    due_date = serializers.DateField(required=False, help_text="overdue_*.")
    total = serializers.FloatField(required=False, allow_null=True, help_text="score.")
    band_label = serializers.CharField(required=False, allow_blank=True, help_text="score.")
    alerts = serializers.ListField(child=serializers.CharField(allow_null=True), required=False,
                                   help_text="score: the alert codes.")
    count = serializers.IntegerField(required=False, help_text="unread_messages.")
    conversation_id = serializers.IntegerField(required=False, help_text="unread_messages.")


class AttentionPatientSerializer(serializers.Serializer):
    patient = PatientBriefSerializer()
    reasons = AttentionReasonSerializer(many=True)


class AttentionListSerializer(serializers.Serializer):
    results = AttentionPatientSerializer(many=True)


class StaffPatientSerializer(PatientBriefSerializer):
    has_account = serializers.BooleanField(help_text="The patient has a portal login (can chat and fill in forms).")


class StaffPatientListSerializer(serializers.Serializer):
    results = StaffPatientSerializer(many=True)


class GroupListApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        patient_ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)

    @extend_schema(responses={200: PatientGroupListSerializer, 403: ErrorSerializer},
                   summary="Patient groups (cohorts) of my hospital")
    def get(self, request):
        return Response({"results": [{"id": g.pk, "name": g.name, "size": g.size} for g in selectors.group_list(user=request.user)]})

    @extend_schema(request=InputSerializer, responses={201: PatientGroupSerializer, **ERRORS}, summary="Create a patient group")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patients = [selectors.patient_get(user=request.user, patient_id=pid) for pid in data.validated_data["patient_ids"]]
        group = services.group_create(actor=request.user, name=data.validated_data["name"], patients=patients)
        return Response({"id": group.pk, "name": group.name, "size": len(patients)}, status=status.HTTP_201_CREATED)


class AttentionApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: AttentionListSerializer, 403: ErrorSerializer},
                   summary="Patients needing attention (overdue items, scores, unread messages)")
    def get(self, request):
        rows = selectors.patients_needing_attention(user=request.user)
        return Response({"results": [{"patient": {"id": r["patient"].pk, "mrn": r["patient"].mrn,
                                                  "name": r["patient"].name},
                                      "reasons": r["reasons"]} for r in rows]})


class StaffPatientListApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: StaffPatientListSerializer, 403: ErrorSerializer},
                   summary="Patients of my hospital (for choosing whom to follow up)")
    def get(self, request):
        patients = selectors.patient_visible_queryset(request.user).select_related("user").order_by("mrn")[:500]
        return Response({"results": [{"id": p.pk, "mrn": p.mrn, "name": p.name, "has_account": p.user_id is not None}
                                     for p in patients]})
