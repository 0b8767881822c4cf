"""Follow-up plans: the patient's plans and upcoming reminders, marking a reminder done, and the staff's
plans of a patient (start one, add re-examination, medication or questionnaire items)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ErrorSerializer
from portal.models import AuditLog
from portal.permissions import IsClinician, IsClinicianOrPatient
from portal.services import audit_record

from .. import selectors, services
from ..models import FollowUpPlan, PlanItem, PlanOccurrence
from .common import ERRORS, READ_ERRORS, IsPatient


def occurrence_payload(o) -> dict:
    return {"id": o.pk, "due_date": o.due_date.isoformat(), "status": o.status,
            "reminded": o.reminded_at is not None, "completed_at": o.completed_at.isoformat() if o.completed_at else None}


def plan_payload(plan) -> dict:
    return {
        "id": plan.pk, "title": plan.title, "notes": plan.notes, "status": plan.status, "patient_id": plan.patient_id,
        "items": [{
            "id": item.pk, "kind": item.kind, "title": item.title, "instructions": item.instructions,
            "modality": item.modality, "start_date": item.start_date.isoformat(), "interval_days": item.interval_days,
            "end_date": item.end_date.isoformat() if item.end_date else None, "grace_days": item.grace_days,
            "questionnaire_id": item.questionnaire_id,
            "occurrences": [occurrence_payload(o) for o in item.occurrences.all()],
        } for item in plan.items.all()],
    }


class PlanOccurrenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    due_date = serializers.DateField()
    status = serializers.ChoiceField(choices=PlanOccurrence.Status.choices)
    reminded = serializers.BooleanField(help_text="A reminder has been sent.")
    completed_at = serializers.DateTimeField(allow_null=True)


class PlanItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PlanItem.Kind.choices)
    title = serializers.CharField()
    instructions = serializers.CharField(allow_blank=True)
    modality = serializers.CharField(allow_blank=True, help_text="The re-examination's modality (CT, MR).")
    start_date = serializers.DateField()
    interval_days = serializers.IntegerField()
    end_date = serializers.DateField(allow_null=True)
    grace_days = serializers.IntegerField(help_text="Overdue this many days after the due date.")
    questionnaire_id = serializers.IntegerField(allow_null=True)
    occurrences = PlanOccurrenceSerializer(many=True)


class PlanSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    notes = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=FollowUpPlan.Status.choices)
    patient_id = serializers.IntegerField()
    items = PlanItemSerializer(many=True)


class PlanListSerializer(serializers.Serializer):
    results = PlanSerializer(many=True)


class UpcomingItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PlanItem.Kind.choices)
    title = serializers.CharField()
    instructions = serializers.CharField(allow_blank=True)


class UpcomingOccurrenceSerializer(PlanOccurrenceSerializer):
    item = UpcomingItemSerializer()


class MyPlanSerializer(serializers.Serializer):
    plans = PlanSerializer(many=True)
    upcoming = UpcomingOccurrenceSerializer(many=True)


class MyPlanApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={200: MyPlanSerializer, **READ_ERRORS}, summary="My follow-up plans and upcoming reminders")
    def get(self, request):
        patient = selectors.patient_of_user(user=request.user)
        plans = selectors.plan_list_for_patient(user=request.user, patient=patient)
        upcoming = selectors.upcoming_occurrences(patient=patient)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_plan", target_id=patient.pk)
        return Response({"plans": [plan_payload(p) for p in plans], "upcoming": [
            {**occurrence_payload(o), "item": {"id": o.item_id, "kind": o.item.kind, "title": o.item.title,
                                               "instructions": o.item.instructions}} for o in upcoming]})


class OccurrenceCompleteApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    @extend_schema(request=None, responses={200: PlanOccurrenceSerializer, 409: ErrorSerializer, **READ_ERRORS},
                   summary="Mark a reminder done (the patient or their doctor)")
    def post(self, request, occurrence_id: int):
        occurrence = selectors.occurrence_get(user=request.user, occurrence_id=occurrence_id)
        occurrence = services.occurrence_complete(actor=request.user, occurrence=occurrence)
        return Response(occurrence_payload(occurrence))


class PatientPlansApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=200)
        notes = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(responses={200: PlanListSerializer, **READ_ERRORS}, summary="A patient's follow-up plans")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get(user=request.user, patient_id=patient_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_plan", target_id=patient.pk,
                     hospital=patient.hospital)
        return Response({"results": [plan_payload(p) for p in selectors.plan_list_for_patient(user=request.user,
                                                                                               patient=patient)]})

    @extend_schema(request=InputSerializer, responses={201: PlanSerializer, **ERRORS}, summary="Start a follow-up plan")
    def post(self, request, patient_id: int):
        patient = selectors.patient_get(user=request.user, patient_id=patient_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = services.plan_create(actor=request.user, patient=patient, **data.validated_data)
        return Response(plan_payload(selectors.plan_get(user=request.user, plan_id=plan.pk)), status=status.HTTP_201_CREATED)


class PlanItemsApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=PlanItem.Kind.choices)
        title = serializers.CharField(max_length=200)
        start_date = serializers.DateField()
        interval_days = serializers.IntegerField(min_value=1, max_value=3660)
        end_date = serializers.DateField(required=False, allow_null=True, default=None)
        instructions = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
        modality = serializers.CharField(required=False, allow_blank=True, max_length=16, default="")
        questionnaire_id = serializers.IntegerField(required=False, allow_null=True, default=None)
        grace_days = serializers.IntegerField(required=False, min_value=0, max_value=365, default=0)

    @extend_schema(request=InputSerializer, responses={201: PlanSerializer, **ERRORS},
                   summary="Add a re-examination, medication or questionnaire item")
    def post(self, request, plan_id: int):
        plan = selectors.plan_get(user=request.user, plan_id=plan_id)
        data = dict(self._valid(request))
        qid = data.pop("questionnaire_id")
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=qid) if qid else None
        services.plan_item_add(actor=request.user, plan=plan, questionnaire=questionnaire, **data)
        return Response(plan_payload(selectors.plan_get(user=request.user, plan_id=plan.pk)), status=status.HTTP_201_CREATED)

    def _valid(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data
