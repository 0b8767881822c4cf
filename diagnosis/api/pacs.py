"""REST API of a signed report's deliveries to the hospital's PACS: their state, and "resend"."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.permissions import IsClinician, IsHospitalStaff

from .. import selectors, services
from ..models import ResultSend


class ResultSendSerializer(serializers.ModelSerializer):
    state_label = serializers.CharField(source="get_state_display")
    last_status = serializers.IntegerField(allow_null=True,
                                           help_text="The peer's DIMSE failure status, if it answered.")
    instances = serializers.SerializerMethodField(help_text="The DICOM objects sent: kind (seg, sr, pdf) and UIDs.")

    class Meta:
        model = ResultSend
        fields = ["id", "destination", "state", "state_label", "attempts", "error_code", "last_error", "last_status",
                  "instances", "retry_at", "sent_at", "created_at", "updated_at"]

    def get_instances(self, send: ResultSend) -> list[dict]:
        return [{k: item[k] for k in ("kind", "sop_class_uid", "sop_instance_uid")} for item in send.instances]


class ReportPacsSendsApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(responses=ResultSendSerializer(many=True), summary="The report's deliveries to the PACS")
    def get(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        return Response(ResultSendSerializer(selectors.result_send_list(report=report), many=True).data)


class ReportPacsResendApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=None, responses={202: ResultSendSerializer(many=True)},
                   summary="Send a signed report's SEG, SR and PDF to the PACS again")
    def post(self, request, report_id: int):
        report = selectors.report_get(user=request.user, report_id=report_id)
        queued = services.report_results_resend(user=request.user, report=report)
        return Response(ResultSendSerializer(queued, many=True).data, status=202)
