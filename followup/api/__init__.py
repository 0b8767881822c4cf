"""REST API of the follow-up app (JWT or session): one APIView per operation; selectors scope every read
(another patient's or another hospital's id → 404), services write.

One module per section, as in Zulip's ``zerver/actions/``: :mod:`.conversations` (conversations,
messages, attachments, receipts, the assistant), :mod:`.notifications` (notifications and reminder
channels), :mod:`.records` (the patient's own reports and studies), :mod:`.plans`, :mod:`.questionnaires`
and :mod:`.staff` (patients, groups, attention); the permission, error responses and small shared
schema components live in :mod:`.common`. URLconfs and tests import from ``followup.api``.
"""

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from . import common, conversations, notifications, plans, questionnaires, records, staff
from .common import IsPatient
from .conversations import (
    AssistantAskApi,
    AttachmentDownloadApi,
    AttachmentUploadApi,
    ConversationDetailApi,
    ConversationListApi,
    ConversationMembersApi,
    ConversationReadApi,
    MessageListApi,
    conversation_payload,
    member_payload,
)
from .notifications import ContactPreferenceApi, NotificationListApi, NotificationReadApi, notification_payload
from .plans import MyPlanApi, OccurrenceCompleteApi, PatientPlansApi, PlanItemsApi, occurrence_payload, plan_payload
from .questionnaires import (
    AssignmentDetailApi,
    AssignmentFhirApi,
    AssignmentSubmitApi,
    MyQuestionnaireListApi,
    PatientResultsApi,
    QuestionnaireAssignApi,
    QuestionnaireCohortApi,
    QuestionnaireCsvApi,
    QuestionnaireDetailApi,
    QuestionnaireFhirApi,
    QuestionnaireFhirImportApi,
    QuestionnaireListApi,
    assignment_payload,
    questionnaire_payload,
)
from .records import (
    MyReportDetailApi,
    MyReportListApi,
    MyReportPdfApi,
    MyStudyKeyImageApi,
    MyStudyListApi,
    report_payload,
)
from .staff import AttentionApi, GroupListApi, StaffPatientListApi

__all__ = [
    "AssignmentDetailApi",
    "AssignmentFhirApi",
    "AssignmentSubmitApi",
    "AssistantAskApi",
    "AttachmentDownloadApi",
    "AttachmentUploadApi",
    "AttentionApi",
    "ContactPreferenceApi",
    "ConversationDetailApi",
    "ConversationListApi",
    "ConversationMembersApi",
    "ConversationReadApi",
    "GroupListApi",
    "IsPatient",
    "MessageListApi",
    "MyPlanApi",
    "MyQuestionnaireListApi",
    "MyReportDetailApi",
    "MyReportListApi",
    "MyReportPdfApi",
    "MyStudyKeyImageApi",
    "MyStudyListApi",
    "NotificationListApi",
    "NotificationReadApi",
    "OccurrenceCompleteApi",
    "PatientPlansApi",
    "PatientResultsApi",
    "PlanItemsApi",
    "QuestionnaireAssignApi",
    "QuestionnaireCohortApi",
    "QuestionnaireCsvApi",
    "QuestionnaireDetailApi",
    "QuestionnaireFhirApi",
    "QuestionnaireFhirImportApi",
    "QuestionnaireListApi",
    "StaffPatientListApi",
    "assignment_payload",
    "conversation_payload",
    "member_payload",
    "notification_payload",
    "occurrence_payload",
    "plan_payload",
    "questionnaire_payload",
    "report_payload",
]

# drf-spectacular names a component after its serializer class: every view's nested "InputSerializer"
# would become one "InputRequest" component, and "Message" or "Plan" may clash with another app's. So the
# follow-up components carry the app's name: FollowupMessage, FollowupConversationListInputRequest, ….
for _module in (common, conversations, notifications, plans, questionnaires, records, staff):
    for _name, _obj in list(vars(_module).items()):
        if not isinstance(_obj, type) or _obj.__module__ != _module.__name__:
            continue
        if issubclass(_obj, serializers.Serializer):
            extend_schema_serializer(component_name=f"Followup{_name.removesuffix('Serializer')}")(_obj)
        elif issubclass(_obj, APIView) and "InputSerializer" in _obj.__dict__:
            extend_schema_serializer(component_name=f"Followup{_name.removesuffix('Api')}Input")(_obj.InputSerializer)
