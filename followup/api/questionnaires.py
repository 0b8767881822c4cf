"""Questionnaires: the patient's assignments (fill in, autosave, submit and score, FHIR in and out) and the
staff's questionnaires (list, build, FHIR import and export, assign, cohort view, CSV for research, a
patient's scores over time)."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ErrorSerializer, ServiceError
from portal.models import AuditLog
from portal.permissions import ClinicianReadsPatientWrites, IsClinician
from portal.services import audit_record

from .. import selectors, services
from ..models import QuestionnaireAssignment
from .common import ERRORS, FHIR_RESOURCE, READ_ERRORS, IsPatient


def questionnaire_payload(q, *, full: bool = True) -> dict:
    data = {"id": q.pk, "code": q.code, "version": q.version, "title": q.title, "description": q.description,
            "is_standard": q.is_standard, "question_count": len(q.definition.get("items", []))}
    if full:
        data["definition"] = q.definition
    return data


def assignment_payload(a: QuestionnaireAssignment, *, full: bool = False) -> dict:
    data = {"id": a.pk, "questionnaire": questionnaire_payload(a.questionnaire, full=full), "patient_id": a.patient_id,
            "due_date": a.due_date.isoformat(), "status": a.status, "score": a.score,
            "submitted_at": a.submitted_at.isoformat() if a.submitted_at else None,
            "url": reverse("followup:my-questionnaire", args=[a.pk])}
    if full:
        data["answers"] = a.answers
    return data


# --- schema components ------------------------------------------------------------------------

class QuestionnaireSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.SlugField(help_text="Versions of one questionnaire share the code (phq-9, gad-7, …).")
    version = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    is_standard = serializers.BooleanField(help_text="A standard instrument shipped with the portal.")
    question_count = serializers.IntegerField()


class QuestionnaireSerializer(QuestionnaireSummarySerializer):
    definition = serializers.DictField(help_text="Items (questions, enable_when) and scoring rules; see "
                                                 "followup.questionnaires.definition.")


class ScoreAlertSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField(allow_blank=True)
    label_en = serializers.CharField(allow_blank=True)


class QuestionnaireScoreSerializer(serializers.Serializer):
    """The score of a submitted response; an empty object until it is scored."""

    total = serializers.FloatField(required=False, allow_null=True, help_text="None when a scored question is unanswered.")
    item_scores = serializers.DictField(child=serializers.FloatField(), required=False)
    band = serializers.CharField(required=False, allow_null=True, help_text="The matching band's code.")
    band_label = serializers.CharField(required=False, allow_blank=True)
    band_label_en = serializers.CharField(required=False, allow_blank=True)
    attention = serializers.BooleanField(required=False, help_text="The band or an alert asks for the doctor's attention.")
    alerts = ScoreAlertSerializer(many=True, required=False)
    max_total = serializers.FloatField(required=False, allow_null=True)


class AssignmentSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    questionnaire = QuestionnaireSummarySerializer()
    patient_id = serializers.IntegerField()
    due_date = serializers.DateField()
    status = serializers.ChoiceField(choices=QuestionnaireAssignment.Status.choices)
    score = QuestionnaireScoreSerializer()
    submitted_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField(help_text="The patient's page to fill it in.")


class AssignmentSerializer(AssignmentSummarySerializer):
    questionnaire = QuestionnaireSerializer()
    answers = serializers.DictField(help_text="Answers by question link_id.")


class AssignmentListSerializer(serializers.Serializer):
    results = AssignmentSummarySerializer(many=True)


class QuestionnaireListSerializer(serializers.Serializer):
    results = QuestionnaireSummarySerializer(many=True)


class CohortPatientSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField()
    mrn = serializers.CharField()
    total = serializers.FloatField(allow_null=True)
    band = serializers.CharField(allow_null=True)
    band_label = serializers.CharField(allow_blank=True)
    submitted_at = serializers.DateTimeField()


class CohortSerializer(serializers.Serializer):
    questionnaire = QuestionnaireSummarySerializer()
    band_counts = serializers.DictField(child=serializers.IntegerField(),
                                       help_text="Patients per band code (\"unscored\" for none), latest response each.")
    patients = CohortPatientSerializer(many=True)


class ResultPointSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField()
    title = serializers.CharField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    total = serializers.FloatField(allow_null=True)
    band = serializers.CharField(allow_null=True)
    band_label = serializers.CharField(allow_blank=True)
    max_total = serializers.FloatField(allow_null=True)


class PatientResultsSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField()
    series = serializers.DictField(child=ResultPointSerializer(many=True),
                                   help_text="Completed responses by questionnaire code, oldest first.")


def _group_parameter() -> OpenApiParameter:
    return OpenApiParameter("group_id", int, description="Only the patients of this group.")


DEIDENTIFIED_PARAMETER = OpenApiParameter(
    "deidentified", str, enum=["1", "0", "true", "false"], required=False,
    description="1: de-identified (DICOM PS3.15 Basic Profile, Modified Dates Option): no assignment id, patient id, "
                "MRN, name or free-text answers; the patient column is the research pseudonym of the DICOM research "
                "export and dates are shifted by the same per-patient offset. Default 0: identified.")


def _deidentified_flag(request) -> bool:
    """The ``deidentified`` query parameter: 1/true or 0/false (absent: false); anything else is a 400."""
    value = request.query_params.get("deidentified", "0").strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false", ""):
        return False
    raise ServiceError(_("deidentified must be 1 or 0."), code="invalid_parameter")


# --- the patient's assignments ----------------------------------------------------------------

class MyQuestionnaireListApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={200: AssignmentListSerializer, **READ_ERRORS}, summary="My questionnaires (to fill in and done)")
    def get(self, request):
        patient = selectors.patient_of_user(user=request.user)
        return Response({"results": [assignment_payload(a) for a in selectors.assignment_list_for_patient(patient=patient)]})


class AssignmentDetailApi(APIView):
    permission_classes = [ClinicianReadsPatientWrites]
    class InputSerializer(serializers.Serializer):
        answers = serializers.DictField()

    @extend_schema(responses={200: AssignmentSerializer, **READ_ERRORS},
                   summary="A questionnaire assignment with its definition and saved answers")
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_assignment",
                     target_id=assignment.pk, hospital=assignment.patient.hospital)
        return Response(assignment_payload(assignment, full=True))

    @extend_schema(request=InputSerializer, responses={200: AssignmentSerializer, 409: ErrorSerializer, **ERRORS},
                   summary="Autosave answers (the patient)")
    def patch(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_autosave(user=request.user, assignment=assignment,
                                                  answers=data.validated_data["answers"])
        return Response(assignment_payload(assignment, full=True))


class AssignmentSubmitApi(APIView):
    permission_classes = [ClinicianReadsPatientWrites]
    class InputSerializer(serializers.Serializer):
        answers = serializers.DictField(required=False, default=dict)

    @extend_schema(request=InputSerializer, responses={200: AssignmentSerializer, 409: ErrorSerializer, **ERRORS},
                   summary="Submit and score a questionnaire (the patient)")
    def post(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_submit(user=request.user, assignment=assignment,
                                                answers=data.validated_data["answers"])
        return Response(assignment_payload(assignment, full=True))


class AssignmentFhirApi(APIView):
    permission_classes = [ClinicianReadsPatientWrites]
    @extend_schema(responses={200: FHIR_RESOURCE, **READ_ERRORS},
                   summary="The answers as a FHIR R4 QuestionnaireResponse")
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        return Response(services.assignment_export_fhir(user=request.user, assignment=assignment))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: AssignmentSerializer, 409: ErrorSerializer, **ERRORS},
                   summary="Fill (and, when completed, submit) from a FHIR R4 QuestionnaireResponse",
                   description="The body is a FHIR R4 QuestionnaireResponse resource (JSON).")
    def put(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        assignment = services.assignment_import_fhir(user=request.user, assignment=assignment, resource=request.data)
        return Response(assignment_payload(assignment, full=True))


# --- the staff's questionnaires ---------------------------------------------------------------

class QuestionnaireListApi(APIView):
    permission_classes = [IsClinician]
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        code = serializers.SlugField(max_length=64)
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        definition = serializers.DictField()

    @extend_schema(operation_id="followup_questionnaires_list", responses={200: QuestionnaireListSerializer, 403: ErrorSerializer},
                   summary="Questionnaires: the standard instruments and my hospital's")
    def get(self, request):
        services.instruments_install()
        rows = selectors.questionnaire_visible_queryset(request.user).order_by("code", "-version")
        return Response({"results": [questionnaire_payload(q, full=False) for q in rows]})

    @extend_schema(request=InputSerializer, responses={201: QuestionnaireSerializer, 400: ErrorSerializer, 403: ErrorSerializer},
                   summary="Build a questionnaire (a new version when the code exists)")
    def post(self, request):
        if not IsClinician().has_permission(request, self):
            raise ServiceError(_("This action is for doctors."), code="forbidden", status_code=403)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        questionnaire = services.questionnaire_create(actor=request.user, **data.validated_data)
        return Response(questionnaire_payload(questionnaire), status=status.HTTP_201_CREATED)


class QuestionnaireDetailApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: QuestionnaireSerializer, **READ_ERRORS}, summary="A questionnaire's definition")
    def get(self, request, questionnaire_id: int):
        return Response(questionnaire_payload(selectors.questionnaire_get(user=request.user,
                                                                          questionnaire_id=questionnaire_id)))


class QuestionnaireFhirApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: FHIR_RESOURCE, **READ_ERRORS}, summary="Export as a FHIR R4 Questionnaire")
    def get(self, request, questionnaire_id: int):
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        return Response(services.questionnaire_export_fhir(questionnaire))


class QuestionnaireFhirImportApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: QuestionnaireSerializer, 400: ErrorSerializer, 403: ErrorSerializer},
                   summary="Import a FHIR R4 Questionnaire (validated with fhir.resources)",
                   description="The body is a FHIR R4 Questionnaire resource (JSON).")
    def post(self, request):
        questionnaire = services.questionnaire_import_fhir(actor=request.user, resource=request.data)
        return Response(questionnaire_payload(questionnaire), status=status.HTTP_201_CREATED)


class QuestionnaireAssignApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        patient_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
        group_id = serializers.IntegerField(required=False, allow_null=True, default=None)
        due_date = serializers.DateField()

    @extend_schema(request=InputSerializer, responses={201: AssignmentListSerializer, **ERRORS},
                   summary="Assign to patients or a group with a due date")
    def post(self, request, questionnaire_id: int):
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patients = [selectors.patient_get(user=request.user, patient_id=pid) for pid in data.validated_data["patient_ids"]]
        group = (selectors.group_get(user=request.user, group_id=data.validated_data["group_id"])
                 if data.validated_data["group_id"] else None)
        rows = services.questionnaire_assign(actor=request.user, questionnaire=questionnaire, patients=patients,
                                             group=group, due_date=data.validated_data["due_date"])
        return Response({"results": [assignment_payload(a) for a in rows]}, status=status.HTTP_201_CREATED)


class QuestionnaireCohortApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(parameters=[_group_parameter()], responses={200: CohortSerializer, **READ_ERRORS},
                   summary="Cohort view: latest score per patient and band counts")
    def get(self, request, questionnaire_id: int):
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        group = (selectors.group_get(user=request.user, group_id=int(request.query_params["group_id"]))
                 if request.query_params.get("group_id", "").isdigit() else None)
        rows = selectors.cohort_results(user=request.user, questionnaire=questionnaire, group=group)
        latest = {}
        for a in rows:
            latest[a.patient_id] = a
        bands: dict[str, int] = {}
        for a in latest.values():
            key = a.score.get("band") or "unscored"
            bands[key] = bands.get(key, 0) + 1
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_cohort",
                     target_id=questionnaire.pk, detail={"patients": len(latest)})
        return Response({"questionnaire": questionnaire_payload(questionnaire, full=False), "band_counts": bands,
                         "patients": [{"patient_id": a.patient_id, "mrn": a.patient.mrn, "total": a.score.get("total"),
                                       "band": a.score.get("band"), "band_label": a.score.get("band_label", ""),
                                       "submitted_at": a.submitted_at.isoformat()} for a in latest.values()]})


class QuestionnaireCsvApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(parameters=[_group_parameter(), DEIDENTIFIED_PARAMETER],
                   responses={(200, "text/csv"): OpenApiResponse(
                       OpenApiTypes.STR, description="UTF-8 with a byte-order mark; one row per completed response."),
                       **READ_ERRORS},
                   summary="CSV export of completed responses for research")
    def get(self, request, questionnaire_id: int):
        deidentified = _deidentified_flag(request)
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        group = (selectors.group_get(user=request.user, group_id=int(request.query_params["group_id"]))
                 if request.query_params.get("group_id", "").isdigit() else None)
        rows = services.results_csv_rows(user=request.user, questionnaire=questionnaire, assignments=selectors.cohort_results(
            user=request.user, questionnaire=questionnaire, group=group), deidentified=deidentified)
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        response = HttpResponse("\ufeff" + buffer.getvalue(), content_type="text/csv; charset=utf-8")
        suffix = "-deidentified" if deidentified else ""
        response["Content-Disposition"] = f'attachment; filename="{questionnaire.code}-v{questionnaire.version}{suffix}.csv"'
        return response


class PatientResultsApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: PatientResultsSerializer, **READ_ERRORS},
                   summary="A patient's questionnaire scores over time (for charts)")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get(user=request.user, patient_id=patient_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_results",
                     target_id=patient.pk, hospital=patient.hospital)
        return Response({"patient_id": patient.pk, "series": selectors.results_over_time(patient=patient)})
