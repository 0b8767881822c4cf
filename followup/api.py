"""REST API of the follow-up app (JWT or session): conversations and messages, the patient's own
records, plans, questionnaires and notifications. One APIView per operation; selectors scope every
read (another patient's or another hospital's id → 404), services write."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.permissions import IsClinician, IsHospitalStaff
from portal.services import audit_record

from . import selectors, services
from .events import message_payload
from .models import Conversation, Message, PlanItem, QuestionnaireAssignment
from .plain_summary import report_summary

AnyJson = inline_serializer("FollowupAnyJson", {"detail": serializers.DictField(required=False)})


class IsPatient(BasePermission):
    message = "This is for patients."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_patient)


# --- payloads ---------------------------------------------------------------------------------

def member_payload(member) -> dict:
    return {"user_id": member.user_id, "name": str(member.user), "role": member.user.role,
            "last_delivered_id": member.last_delivered_id, "last_read_id": member.last_read_id}


def conversation_payload(conversation: Conversation, *, user: User) -> dict:
    members = list(conversation.members.all())
    data = {
        "id": conversation.pk, "kind": conversation.kind, "title": conversation.title,
        "patient": {"id": conversation.patient_id, "mrn": conversation.patient.mrn, "name": conversation.patient.name},
        "members": [member_payload(m) for m in members],
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
        "url": reverse("followup:conversation", args=[conversation.pk]),
        "websocket": f"/ws/followup/conversations/{conversation.pk}/",
    }
    if hasattr(conversation, "unread_count"):
        data["unread_count"] = conversation.unread_count
    if hasattr(conversation, "last_message"):
        last = conversation.last_message
        data["last_message"] = None if last is None else {"id": last.pk, "kind": last.kind,
                                                           "preview": last.body[:80], "created_at": last.created_at.isoformat()}
    return data


def notification_payload(n) -> dict:
    return {"id": n.pk, "kind": n.kind, "title": n.title, "body": n.body, "url": n.url,
            "created_at": n.created_at.isoformat(), "read": n.read_at is not None, "delivered_via": n.delivered_via}


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


def report_payload(report, content: dict) -> dict:
    return {"id": report.pk, "version": report.version, "study_id": report.study_id,
            "signed_at": report.signed_at.isoformat() if report.signed_at else None,
            "signed_by": str(report.signed_by) if report.signed_by else None,
            "impression": content.get("impression", ""), "findings": content.get("findings", ""),
            "measurements": content.get("measurements", []),
            "summary": report_summary(content),
            "pdf_url": reverse("followup-api:my-report-pdf", args=[report.pk])}


# --- conversations ----------------------------------------------------------------------------

class ConversationListApi(APIView):
    class InputSerializer(serializers.Serializer):
        patient_id = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=Conversation.Kind.choices, default=Conversation.Kind.DIRECT)
        staff_ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
        title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")

    @extend_schema(summary="My conversations with unread counts (the inbox)")
    def get(self, request):
        conversations = selectors.conversation_list(user=request.user)
        return Response({
            "results": [conversation_payload(c, user=request.user) for c in conversations],
            "unread_total": sum(c.unread_count for c in conversations),
            "notifications_unread": selectors.notification_unread_count(user=request.user),
        })

    @extend_schema(request=InputSerializer, summary="Open a conversation about a patient")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patient = selectors.patient_get(user=request.user, patient_id=data.validated_data["patient_id"])
        staff = list(User.objects.filter(pk__in=data.validated_data["staff_ids"]))
        if len(staff) != len(set(data.validated_data["staff_ids"])):
            raise ServiceError("A staff member does not exist.", code="unknown_user")
        conversation = services.conversation_create(actor=request.user, patient=patient, staff=staff,
                                                    kind=data.validated_data["kind"], title=data.validated_data["title"])
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation.pk)
        return Response(conversation_payload(conversation, user=request.user), status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    @extend_schema(summary="A conversation and its members")
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(conversation, user=request.user))


class ConversationMembersApi(APIView):
    class InputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField()

    @extend_schema(request=InputSerializer, summary="Add a staff member to a care-team conversation")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(pk=data.validated_data["user_id"]).first()
        if user is None:
            raise ServiceError("No such user.", code="unknown_user")
        services.conversation_member_add(actor=request.user, conversation=conversation, user=user)
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(conversation, user=request.user), status=status.HTTP_201_CREATED)


class MessageListApi(APIView):
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(required=False, allow_blank=True, max_length=services.MAX_MESSAGE_CHARS, default="")
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
        link_type = serializers.ChoiceField(choices=Message.LinkType.choices, required=False, allow_blank=True, default="")
        link_id = serializers.IntegerField(required=False, allow_null=True, default=None)

    @extend_schema(
        parameters=[OpenApiParameter("after_id", int), OpenApiParameter("before_id", int),
                    OpenApiParameter("limit", int), OpenApiParameter("q", str, description="search text")],
        summary="Messages, paged by id (after_id to resume, before_id to scroll back), or searched")
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        try:
            after = int(request.query_params["after_id"]) if "after_id" in request.query_params else None
            before = int(request.query_params["before_id"]) if "before_id" in request.query_params else None
            limit = int(request.query_params.get("limit", 50))
        except ValueError:
            raise ServiceError("after_id, before_id and limit are whole numbers.", code="invalid_request") from None
        query = request.query_params.get("q", "").strip()[:100]
        messages = selectors.message_list(conversation=conversation, after_id=after, before_id=before, limit=limit,
                                          query=query)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="conversation",
                     target_id=conversation.pk, hospital=conversation.hospital,
                     detail={"messages": len(messages), "search": bool(query)})
        return Response({"results": [message_payload(m) for m in messages],
                         "has_more": len(messages) == max(1, min(limit, selectors.MESSAGE_PAGE_MAX))})

    @extend_schema(request=InputSerializer, summary="Send a message (stored, then broadcast)")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.message_send(sender=request.user, conversation=conversation, **data.validated_data)
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class AssistantAskApi(APIView):
    class InputSerializer(serializers.Serializer):
        question = serializers.CharField(max_length=300)
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")

    @extend_schema(request=InputSerializer, summary="Ask the knowledge-graph assistant in a conversation")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        question, answer = services.assistant_ask(user=request.user, conversation=conversation, **data.validated_data)
        return Response({"question": message_payload(question), "answer": message_payload(answer)},
                        status=status.HTTP_201_CREATED)


class ConversationReadApi(APIView):
    class InputSerializer(serializers.Serializer):
        read_id = serializers.IntegerField(required=False, min_value=0)
        delivered_id = serializers.IntegerField(required=False, min_value=0)

    @extend_schema(request=InputSerializer, summary="Move my delivery/read marks (receipts)")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.message_mark(user=request.user, conversation=conversation, **data.validated_data)
        return Response({"last_delivered_id": member.last_delivered_id, "last_read_id": member.last_read_id})


class AttachmentUploadApi(APIView):
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")

    @extend_schema(request=InputSerializer, summary="Attach an image (PNG, JPEG) or a PDF")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.attachment_send(sender=request.user, conversation=conversation,
                                           upload=data.validated_data["file"], client_id=data.validated_data["client_id"])
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class AttachmentDownloadApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes}, summary="An attachment (members only)")
    def get(self, request, attachment_id: int):
        attachment = selectors.attachment_get(user=request.user, attachment_id=attachment_id)
        data = services.attachment_read(user=request.user, attachment=attachment)
        response = HttpResponse(data, content_type=attachment.content_type)
        disposition = "inline" if attachment.content_type.startswith("image/") else "attachment"
        response["Content-Disposition"] = f'{disposition}; filename="attachment-{attachment.pk}"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response


# --- notifications ----------------------------------------------------------------------------

class NotificationListApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("unread", bool)], summary="My notifications")
    def get(self, request):
        rows = selectors.notification_list(user=request.user, unread_only=request.query_params.get("unread") == "true")
        return Response({"results": [notification_payload(n) for n in rows],
                         "unread": selectors.notification_unread_count(user=request.user)})


class NotificationReadApi(APIView):
    @extend_schema(request=None, summary="Mark a notification read")
    def post(self, request, notification_id: int):
        notification = selectors.notification_get(user=request.user, notification_id=notification_id)
        return Response(notification_payload(services.notification_mark_read(user=request.user, notification=notification)))


class ContactPreferenceApi(APIView):
    class InputSerializer(serializers.Serializer):
        phone = serializers.RegexField(r"^\+?[0-9 \-]{0,31}$", required=False, allow_blank=True, default="")
        email_enabled = serializers.BooleanField(default=True)
        sms_enabled = serializers.BooleanField(default=True)

    @extend_schema(request=InputSerializer, summary="Set my mobile number and reminder channels")
    def put(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contact = services.contact_preference_set(user=request.user, **data.validated_data)
        return Response({"phone": contact.phone, "email_enabled": contact.email_enabled, "sms_enabled": contact.sms_enabled})


# --- the patient's own records ------------------------------------------------------------------

class MyReportListApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(summary="My signed reports, with a plain-language summary")
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

    @extend_schema(summary="One of my reports with a plain-language summary")
    def get(self, request, report_id: int):
        from diagnosis.selectors import report_get
        from diagnosis.services import report_content

        report = report_get(user=request.user, report_id=report_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="report", target_id=report.pk,
                     hospital=report.study.hospital)
        return Response(report_payload(report, report_content(report)))


class MyReportPdfApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={(200, "application/pdf"): bytes}, summary="One of my reports as PDF")
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

    @extend_schema(summary="My studies with links to their key images")
    def get(self, request):
        from annotation.selectors import study_list

        selectors.patient_of_user(user=request.user)
        studies = study_list(user=request.user)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_list", target_id="",
                     detail={"studies": len(studies)})
        return Response({"results": [{
            "id": s.pk, "study_date": s.study_date.isoformat() if s.study_date else None, "description": s.description,
            "modalities": sorted({x.modality for x in s.series.all()}),
            "key_images": {p: reverse("followup-api:my-study-key-image", args=[s.pk, p])
                           for p in ("axial", "coronal", "sagittal")},
        } for s in studies]})


class MyStudyKeyImageApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(responses={(200, "image/png"): bytes}, summary="A key image of my study (axial, coronal, sagittal)")
    def get(self, request, study_id: int, plane: str):
        from annotation.selectors import study_get

        study = study_get(user=request.user, study_id=study_id)
        if plane not in ("axial", "coronal", "sagittal"):
            raise ServiceError("The plane is axial, coronal or sagittal.", code="invalid_plane", status_code=404)
        keys = services.study_key_images(user=request.user, study=study)
        if not keys:
            raise ServiceError("This study has no image.", code="no_image", status_code=404)
        response = HttpResponse(services.stored_bytes(keys[plane]), content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response


class MyPlanApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(summary="My follow-up plans and upcoming reminders")
    def get(self, request):
        patient = selectors.patient_of_user(user=request.user)
        plans = selectors.plan_list_for_patient(user=request.user, patient=patient)
        upcoming = selectors.upcoming_occurrences(patient=patient)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_plan", target_id=patient.pk)
        return Response({"plans": [plan_payload(p) for p in plans], "upcoming": [
            {**occurrence_payload(o), "item": {"id": o.item_id, "kind": o.item.kind, "title": o.item.title,
                                               "instructions": o.item.instructions}} for o in upcoming]})


class OccurrenceCompleteApi(APIView):
    @extend_schema(request=None, summary="Mark a reminder done (the patient or their doctor)")
    def post(self, request, occurrence_id: int):
        occurrence = selectors.occurrence_get(user=request.user, occurrence_id=occurrence_id)
        occurrence = services.occurrence_complete(actor=request.user, occurrence=occurrence)
        return Response(occurrence_payload(occurrence))


class MyQuestionnaireListApi(APIView):
    permission_classes = [IsPatient]

    @extend_schema(summary="My questionnaires (to fill in and done)")
    def get(self, request):
        patient = selectors.patient_of_user(user=request.user)
        return Response({"results": [assignment_payload(a) for a in selectors.assignment_list_for_patient(patient=patient)]})


class AssignmentDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        answers = serializers.DictField()

    @extend_schema(summary="A questionnaire assignment with its definition and saved answers")
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_assignment",
                     target_id=assignment.pk, hospital=assignment.patient.hospital)
        return Response(assignment_payload(assignment, full=True))

    @extend_schema(request=InputSerializer, summary="Autosave answers (the patient)")
    def patch(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_autosave(user=request.user, assignment=assignment,
                                                  answers=data.validated_data["answers"])
        return Response(assignment_payload(assignment, full=True))


class AssignmentSubmitApi(APIView):
    class InputSerializer(serializers.Serializer):
        answers = serializers.DictField(required=False, default=dict)

    @extend_schema(request=InputSerializer, summary="Submit and score a questionnaire (the patient)")
    def post(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_submit(user=request.user, assignment=assignment,
                                                answers=data.validated_data["answers"])
        return Response(assignment_payload(assignment, full=True))


class AssignmentFhirApi(APIView):
    @extend_schema(summary="The answers as a FHIR R4 QuestionnaireResponse")
    def get(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        return Response(services.assignment_export_fhir(user=request.user, assignment=assignment))

    @extend_schema(request=AnyJson, summary="Fill (and, when completed, submit) from a FHIR R4 QuestionnaireResponse")
    def put(self, request, assignment_id: int):
        assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
        assignment = services.assignment_import_fhir(user=request.user, assignment=assignment, resource=request.data)
        return Response(assignment_payload(assignment, full=True))


# --- staff: questionnaires, plans, attention ----------------------------------------------------

class QuestionnaireListApi(APIView):
    permission_classes = [IsHospitalStaff]
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        code = serializers.SlugField(max_length=64)
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        definition = serializers.DictField()

    @extend_schema(summary="Questionnaires: the standard instruments and my hospital's")
    def get(self, request):
        services.instruments_install()
        rows = selectors.questionnaire_visible_queryset(request.user).order_by("code", "-version")
        return Response({"results": [questionnaire_payload(q, full=False) for q in rows]})

    @extend_schema(request=InputSerializer, summary="Build a questionnaire (a new version when the code exists)")
    def post(self, request):
        if not IsClinician().has_permission(request, self):
            raise ServiceError("This action is for doctors.", code="forbidden", status_code=403)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        questionnaire = services.questionnaire_create(actor=request.user, **data.validated_data)
        return Response(questionnaire_payload(questionnaire), status=status.HTTP_201_CREATED)


class QuestionnaireDetailApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(summary="A questionnaire's definition")
    def get(self, request, questionnaire_id: int):
        return Response(questionnaire_payload(selectors.questionnaire_get(user=request.user,
                                                                          questionnaire_id=questionnaire_id)))


class QuestionnaireFhirApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(summary="Export as a FHIR R4 Questionnaire")
    def get(self, request, questionnaire_id: int):
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        return Response(services.questionnaire_export_fhir(questionnaire))


class QuestionnaireFhirImportApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(request=AnyJson, summary="Import a FHIR R4 Questionnaire (validated with fhir.resources)")
    def post(self, request):
        questionnaire = services.questionnaire_import_fhir(actor=request.user, resource=request.data)
        return Response(questionnaire_payload(questionnaire), status=status.HTTP_201_CREATED)


class QuestionnaireAssignApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        patient_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
        group_id = serializers.IntegerField(required=False, allow_null=True, default=None)
        due_date = serializers.DateField()

    @extend_schema(request=InputSerializer, summary="Assign to patients or a group with a due date")
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
    permission_classes = [IsHospitalStaff]

    @extend_schema(parameters=[OpenApiParameter("group_id", int)], summary="Cohort view: latest score per patient and band counts")
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
    permission_classes = [IsHospitalStaff]

    @extend_schema(parameters=[OpenApiParameter("group_id", int)], responses={(200, "text/csv"): bytes},
                   summary="CSV export of completed responses for research")
    def get(self, request, questionnaire_id: int):
        questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
        group = (selectors.group_get(user=request.user, group_id=int(request.query_params["group_id"]))
                 if request.query_params.get("group_id", "").isdigit() else None)
        rows = services.results_csv_rows(user=request.user, questionnaire=questionnaire, assignments=selectors.cohort_results(
            user=request.user, questionnaire=questionnaire, group=group))
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        response = HttpResponse("\ufeff" + buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{questionnaire.code}-v{questionnaire.version}.csv"'
        return response


class GroupListApi(APIView):
    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        patient_ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)

    @extend_schema(summary="Patient groups (cohorts) of my hospital")
    def get(self, request):
        return Response({"results": [{"id": g.pk, "name": g.name, "size": g.size} for g in selectors.group_list(user=request.user)]})

    @extend_schema(request=InputSerializer, summary="Create a patient group")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patients = [selectors.patient_get(user=request.user, patient_id=pid) for pid in data.validated_data["patient_ids"]]
        group = services.group_create(actor=request.user, name=data.validated_data["name"], patients=patients)
        return Response({"id": group.pk, "name": group.name, "size": len(patients)}, status=status.HTTP_201_CREATED)


class PatientResultsApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(summary="A patient's questionnaire scores over time (for charts)")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get(user=request.user, patient_id=patient_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_results",
                     target_id=patient.pk, hospital=patient.hospital)
        return Response({"patient_id": patient.pk, "series": selectors.results_over_time(patient=patient)})


class PatientPlansApi(APIView):
    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=200)
        notes = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(summary="A patient's follow-up plans")
    def get(self, request, patient_id: int):
        patient = selectors.patient_get(user=request.user, patient_id=patient_id)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_plan", target_id=patient.pk,
                     hospital=patient.hospital)
        return Response({"results": [plan_payload(p) for p in selectors.plan_list_for_patient(user=request.user,
                                                                                               patient=patient)]})

    @extend_schema(request=InputSerializer, summary="Start a follow-up plan")
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

    @extend_schema(request=InputSerializer, summary="Add a re-examination, medication or questionnaire item")
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


class AttentionApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(summary="Patients needing attention (overdue items, scores, unread messages)")
    def get(self, request):
        rows = selectors.patients_needing_attention(user=request.user)
        return Response({"results": [{"patient": {"id": r["patient"].pk, "mrn": r["patient"].mrn,
                                                  "name": r["patient"].name},
                                      "reasons": r["reasons"]} for r in rows]})


class StaffPatientListApi(APIView):
    permission_classes = [IsHospitalStaff]

    @extend_schema(summary="Patients of my hospital (for choosing whom to follow up)")
    def get(self, request):
        patients = selectors.patient_visible_queryset(request.user).select_related("user").order_by("mrn")[:500]
        return Response({"results": [{"id": p.pk, "mrn": p.mrn, "name": p.name, "has_account": p.user_id is not None}
                                     for p in patients]})




def _name_schema_components() -> None:
    """Give each view's nested InputSerializer its own OpenAPI component name (they share a class name)."""
    from drf_spectacular.utils import extend_schema_serializer

    for name, view in list(globals().items()):
        serializer = getattr(view, "InputSerializer", None) if name.endswith("Api") else None
        if serializer is not None:
            extend_schema_serializer(component_name=f"Followup{name[:-3]}Input")(serializer)


_name_schema_components()
