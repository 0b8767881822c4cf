"""REST API of a patient's priors in the hospital's PACS: the PACS's studies of the patient (C-FIND),
and the retrieves (C-MOVE) queued and their DIMSE outcome."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.permissions import IsClinician

from .. import selectors, services
from ..models import PriorRetrieve


class PacsStudySerializer(serializers.Serializer):
    study_instance_uid = serializers.CharField(help_text="Study Instance UID (0020,000D).")
    study_date = serializers.DateField(allow_null=True, help_text="Study Date (0008,0020).")
    modalities = serializers.ListField(child=serializers.CharField(), help_text="Modalities in Study (0008,0061).")
    description = serializers.CharField(allow_blank=True, help_text="Study Description (0008,1030).")
    instances = serializers.IntegerField(allow_null=True, help_text="Number of Study Related Instances (0020,1208).")
    held = serializers.BooleanField(help_text="Whether the portal holds a study of this UID in the hospital.")
    held_study_id = serializers.IntegerField(allow_null=True, help_text="The portal's study, when held.")


class PriorRetrieveSerializer(serializers.ModelSerializer):
    state_label = serializers.CharField(source="get_state_display")
    last_status = serializers.IntegerField(allow_null=True, help_text="The final C-MOVE DIMSE status.")

    class Meta:
        model = PriorRetrieve
        fields = ["id", "source", "study_instance_uid", "study_date", "description", "state", "state_label",
                  "completed", "failed", "warning", "last_status", "error_code", "last_error", "created_at",
                  "finished_at"]


class PriorRetrieveInput(serializers.Serializer):
    study_instance_uid = serializers.CharField(max_length=64)


class PatientPacsStudiesApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses=PacsStudySerializer(many=True),
                   summary="The patient's studies in the hospital's PACS (C-FIND), those held marked")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get_for_clinician(user=request.user, patient_id=patient_id)
        studies = services.pacs_priors_find(user=request.user, patient=patient)
        return Response(PacsStudySerializer(studies, many=True).data)


class PatientPacsRetrievesApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses=PriorRetrieveSerializer(many=True), summary="The patient's retrieves from the PACS")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get_for_clinician(user=request.user, patient_id=patient_id)
        return Response(PriorRetrieveSerializer(selectors.prior_retrieve_list(patient=patient), many=True).data)

    @extend_schema(request=PriorRetrieveInput, responses={202: PriorRetrieveSerializer},
                   summary="Retrieve one of the patient's studies from the PACS (C-MOVE to the portal's AE)")
    def post(self, request, patient_id: int):
        patient = selectors.patient_get_for_clinician(user=request.user, patient_id=patient_id)
        data = PriorRetrieveInput(data=request.data)
        data.is_valid(raise_exception=True)
        retrieve = services.pacs_study_retrieve(user=request.user, patient=patient,
                                                study_instance_uid=data.validated_data["study_instance_uid"])
        return Response(PriorRetrieveSerializer(retrieve).data, status=202)
